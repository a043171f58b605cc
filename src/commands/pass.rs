//! One pass's view of the host and its decision, shared by `apply`, `plug` and `status`: the
//! switch check, the observation (OVS first, then the links and the guest configurations), and
//! the decision ([`decide_full`]) with the guests Proxmox is working on left to it
//! ([`decide_leaving_busy`]). Everything here reads; [`super::act`] changes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::mirrors::Mirrors;
use super::timing;
use crate::decide::config::Config;
use crate::decide::desired::{self, Decision, Desired, Guests, HostLink, Master, Record, Seen};
use crate::decide::firewall;
use crate::decide::guest::{GuestId, NicId};
use crate::decide::linkplan::{self, LinkState};
use crate::decide::mirrors::{MirrorPlan, Scope as MirrorScope};
use crate::decide::nic::{self, Role};
use crate::decide::observed::Observed;
use crate::decide::plan::{self, Change, Plan, Scope};
use crate::decide::ports::{self, HostPort};
use crate::host::hostfiles;
use crate::host::links::{self, Link, Rtnl};
use crate::host::vswitch::Vswitch;
use crate::host::{lxc, namespace, pve, sysctl};

/// Refuses unless the switch `ovs` serves is this host's, before anything is read further,
/// written or locked: its OVSDB server must be visible from this PID namespace
/// ([`namespace::check_server`]), and at least one of its bridges must be a network interface
/// in this network namespace (what a run in another namespace, or over TCP, sees otherwise is
/// someone else's links: a plug there would drop every host-file entry as gone).
pub(super) fn check_switch(ovs: &mut Vswitch, rtnl: &mut Rtnl) -> anyhow::Result<()> {
    ovs.check_same_host()?;
    let bridges = ovs.bridge_names()?;
    for bridge in &bridges {
        if rtnl.by_name(bridge)?.is_some() {
            return Ok(());
        }
    }
    if bridges.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = bridges.iter().map(String::as_str).collect();
    Err(namespace::foreign_switch(&names))
}

/// OVS, then the host. In this order, every port the OVS read returns had its link created
/// before the links are read (Proxmox creates a tap or veth before its `add-port`), so a port
/// of a guest started during the run is never taken for one whose link is gone. (That the
/// switch is this host's, [`check_switch`] made sure before.)
pub(super) fn observe(config: &Config, ovs: &mut Vswitch) -> anyhow::Result<(Host, Observed)> {
    let mut lap = Instant::now();
    let observed = ovs.observe_all()?;
    timing(&mut lap, "OVSDB read");
    let host = Host::scan(config)?;
    timing(&mut lap, "links and guest configurations");
    Ok((host, observed))
}

/// The host as the decision needs it: its links, the guest configurations they point at, and
/// the MTU of every link (for `mtu_request`, which Proxmox sets to the bridge's MTU).
pub(super) struct Host {
    pub links: Vec<HostLink>,
    pub guests: Guests,
    /// The guest configurations' stamps when they were read.
    pub stamps: pve::Stamps,
    pub names: BTreeSet<String>,
    /// The guest NICs among the links (see [`desired::candidates`]), computed once: the host
    /// files filter every OVS port through it.
    guest_nics: BTreeSet<String>,
    pub mtus: BTreeMap<String, u32>,
    /// Every link's state, for the kernel-side decisions ([`linkplan`]).
    pub states: BTreeMap<String, LinkState>,
    /// Where the tool last put each guest port (its stanzas file).
    pub record: Record,
}

impl Host {
    pub fn scan(config: &Config) -> anyhow::Result<Host> {
        let mut rtnl = Rtnl::open()?;
        let all = rtnl.dump()?;
        let addressed = rtnl.addressed()?;
        let limited = rtnl.rate_limited()?;
        let by_index: BTreeMap<u32, &Link> = all.iter().map(|l| (l.index, l)).collect();
        let links: Vec<HostLink> = all
            .iter()
            .map(|l| {
                let master = l.master.and_then(|m| by_index.get(&m).copied());
                host_link(l, master, addressed.contains(&l.index))
            })
            .collect();
        for name in desired::refused_names(config, &links) {
            log::warn!(
                "link {} is named like a guest NIC but is not a valid interface name (at most 15 bytes of letters, digits, '-', '_', '.'); never attached or written to any file",
                name.escape_debug()
            );
        }
        let (mut guests, stamps) = read_guests(config, &desired::guests_to_read(config, &links));
        let raw: BTreeSet<&str> = desired::raw_nics(config, &links).collect();
        guests.containers = lxc::containers(config, &mut rtnl, &all, &raw);
        Ok(Host {
            names: all.iter().map(|l| l.name.clone()).collect(),
            guest_nics: desired::guest_nics(config, &links)
                .map(|l| l.name.clone())
                .collect(),
            record: hostfiles::record(config),
            mtus: all
                .iter()
                .filter_map(|l| Some((l.name.clone(), l.mtu?)))
                .collect(),
            states: link_states(config, &all, Some(&limited)),
            links,
            guests,
            stamps,
        })
    }

    /// A port name the host files should list: a guest NIC that exists on the host.
    fn is_guest_nic(&self, name: &str) -> bool {
        self.guest_nics.contains(name)
    }
}

/// The links by name as [`linkplan`] sees them, their masters by name; `limited` the links with
/// Proxmox's rate limit in place, when that was looked at. IPv6 is read for the links that may
/// be asked to drop it: the candidates (Proxmox's NICs, raw container NICs, included links) and
/// the fwbr and fwln of a Proxmox NIC.
pub(super) fn link_states(
    config: &Config,
    all: &[Link],
    limited: Option<&BTreeSet<u32>>,
) -> BTreeMap<String, LinkState> {
    let names: BTreeMap<u32, &str> = all.iter().map(|l| (l.index, l.name.as_str())).collect();
    all.iter()
        .map(|l| {
            (
                l.name.clone(),
                LinkState {
                    up: l.up,
                    mtu: l.mtu,
                    master: l.master.and_then(|m| names.get(&m).map(|n| n.to_string())),
                    alias: l.alias.clone(),
                    rate_limited: limited.map(|set| set.contains(&l.index)),
                    ipv6: (nic::parse(&l.name).is_some() || config.is_candidate(&l.name))
                        && sysctl::ipv6_enabled(&l.name),
                },
            )
        })
        .collect()
}

/// `plug`'s view of the links [`linkplan`] looks at: the NIC, and its fwbr and fwln if it has
/// the firewall shape or had it. One lookup each, no dump.
pub(super) fn plug_links(
    config: &Config,
    rtnl: &mut Rtnl,
    iface: &str,
) -> anyhow::Result<BTreeMap<String, LinkState>> {
    let mut names = vec![iface.to_string()];
    if let Some(nic) = NicId::parse(iface) {
        let fw = firewall::names(nic);
        names.extend([fw.fwbr, fw.fwln]);
    }
    let mut found = Vec::new();
    for name in &names {
        if let Some(link) = rtnl.by_name(name)? {
            if let Some(m) = link.master
                && let Some(master) = rtnl.by_index(m)?
                && !found.iter().any(|l: &Link| l.index == master.index)
            {
                found.push(master);
            }
            found.push(link);
        }
    }
    Ok(link_states(config, &found, None))
}

pub(super) fn host_link(link: &Link, master: Option<&Link>, addressed: bool) -> HostLink {
    let master = match (link.master, master) {
        (None, _) => Master::None,
        (Some(_), Some(m)) if m.kind.as_deref() == Some("openvswitch") => Master::Ovs,
        (Some(_), Some(m)) => Master::Other(m.name.clone()),
        (Some(index), None) => Master::Other(format!("ifindex {index}")),
    };
    HostLink {
        name: link.name.clone(),
        kind: link.kind.clone(),
        master,
        peer_elsewhere: link.peer_elsewhere,
        addressed,
    }
}

/// Reads each guest configuration once (see [`pve`] for where they are looked up), with their
/// stamps taken before, so that a change made meanwhile is seen before acting
/// ([`pve::Stamps::changed`]).
pub(super) fn read_guests(config: &Config, ids: &BTreeSet<GuestId>) -> (Guests, pve::Stamps) {
    let stamps = pve::Stamps::take(&config.pve_config_dir, ids);
    let guests = Guests {
        proxmox: pve::present(&config.pve_config_dir),
        files: pve::read_guests(&config.pve_config_dir, ids),
        containers: BTreeMap::new(),
    };
    (guests, stamps)
}

/// What a full pass decides: `apply` carries it out, `status` reports it. One function, so that
/// the two can never disagree.
pub(super) struct Decided {
    pub desired: Desired,
    pub plan: Plan,
    pub mirrors: MirrorPlan,
    /// The kernel-link changes needed before the OVS transaction.
    pub release: Vec<linkplan::Op>,
}

fn decide_full(
    config: &Config,
    host: &Host,
    observed: &Observed,
    rules: &Mirrors,
    busy: &BTreeSet<GuestId>,
) -> anyhow::Result<Decided> {
    let seen = Seen {
        observed,
        record: &host.record,
        busy,
        plug: false,
    };
    let desired = desired::build(config, &host.links, &host.guests, seen);
    let plan = plan::build(
        config,
        &desired,
        observed,
        Scope::Full { live: &host.names },
    );
    let mirrors = rules.plan(observed, &plan, MirrorScope::Full)?;
    let release = linkplan::before_commit(&desired, &host.states);
    Ok(Decided {
        desired,
        plan,
        mirrors,
        release,
    })
}

/// [`decide_full`], with the guests Proxmox is working on right now left to it: Proxmox's own
/// plug must never meet a port of ours between its `del-port` and its `add-port`. The guests
/// the decision touches are probed (see [`pve::busy`]) as late as possible, right before
/// acting, and the decision is made again without those that are busy.
pub(super) fn decide_leaving_busy(
    config: &Config,
    host: &Host,
    observed: &Observed,
    rules: &Mirrors,
) -> anyhow::Result<Decided> {
    let decided = decide_full(config, host, observed, rules, &BTreeSet::new())?;
    let touched = touched_guests(&decided.plan, &decided.release);
    let mut busy = pve::busy(Some(&config.pve_lock_dir), &touched);
    busy.extend(host.stamps.changed(&config.pve_config_dir, &touched));
    if busy.is_empty() {
        Ok(decided)
    } else {
        decide_full(config, host, observed, rules, &busy)
    }
}

/// The Proxmox guests whose NICs a plan or a link operation touches.
pub(super) fn touched_guests(plan: &Plan, ops: &[linkplan::Op]) -> BTreeSet<GuestId> {
    plan.changes
        .iter()
        .map(|c| c.port())
        .chain(ops.iter().map(|op| op.link()))
        .flat_map(|name| match NicId::parse(name) {
            Some(nic) => vec![nic.guest],
            None => firewall::guests_of(name),
        })
        .collect()
}

/// Drops the prunes of ports that are not ours whose link exists after all (it appeared after
/// the links were read): the one path that deletes someone else's port asks the kernel again
/// right before it acts.
pub(super) fn confirm_prunes(plan: &mut Plan, observed: &Observed) {
    plan.changes.retain(|c| match c {
        Change::Prune { port, .. }
            if !observed.ports.get(port).is_some_and(|p| p.owned) && links::exists(port) =>
        {
            log::debug!("{port}: its link exists again; not pruned");
            false
        }
        _ => true,
    });
}

/// The guest ports the host files list once `plan` is committed (the fwln, not the NIC, for a
/// firewall NIC), and which names count as existing links for them.
pub(super) fn listed_ports(
    host: &Host,
    desired: &Desired,
    observed: &Observed,
    plan: &Plan,
) -> (Vec<HostPort>, impl Fn(&str) -> bool) {
    let fwlns = firewall_ports(desired, &host.record);
    let after = plan::after(observed, plan);
    let ports = ports::entries(&after, |name| {
        host.is_guest_nic(name) || fwlns.contains(name)
    });
    let names = host.names.clone();
    (ports, move |name: &str| {
        names.contains(name) || fwlns.contains(name)
    })
}

/// The OVS ports that carry firewall NICs in `desired` (their fwlns), and the fwlns the record
/// lists whose NIC is left alone this run (a guest Proxmox is working on): what the tool does
/// not touch keeps its entry, so the record still says where the port was.
fn firewall_ports(desired: &Desired, record: &Record) -> BTreeSet<String> {
    let left_alone = |fwln: &str| {
        nic::parse_as(fwln, Role::Fwln).is_some_and(|slot| {
            slot.hosts()
                .iter()
                .any(|nic| matches!(desired.nics.get(nic), Some(Decision::Ignore(_))))
        })
    };
    desired
        .nics
        .iter()
        .filter_map(|(name, d)| match d {
            Decision::Attach(t) if t.firewall.is_some() => Some(t.port(name).to_string()),
            _ => None,
        })
        .chain(record.keys().filter(|p| left_alone(p)).cloned())
        .collect()
}

/// MTUs of the bridges a plan attaches or moves ports to, and of the NIC's own target bridge,
/// looked up one by one (the plug path has no dump).
pub(super) fn bridge_mtus(
    rtnl: &mut Rtnl,
    decision: Option<&Decision>,
    plan: &Plan,
) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut bridges = BTreeSet::new();
    for c in &plan.changes {
        match c {
            Change::Attach { bridge, .. } => bridges.insert(bridge.as_str()),
            Change::Move { to, .. } => bridges.insert(to.as_str()),
            _ => false,
        };
    }
    if let Some(Decision::Attach(t)) = decision {
        bridges.insert(t.bridge.as_str());
    }
    let mut mtus = BTreeMap::new();
    for bridge in bridges {
        // A bridge whose link is missing (ovs-vswitchd down) gets the default MTU.
        if let Some(mtu) = rtnl.by_name(bridge)?.and_then(|l| l.mtu) {
            mtus.insert(bridge.to_string(), mtu);
        }
    }
    Ok(mtus)
}

/// Logs what was decided about NICs that will not be attached; returns how many are invalid.
pub(super) fn log_decisions(desired: &Desired) -> usize {
    let mut invalid = 0;
    for (name, decision) in &desired.nics {
        match decision {
            Decision::Attach(_) => {}
            Decision::Detach(why) => log::debug!("{name}: kept off OVS: {why}"),
            Decision::Ignore(why) => log::debug!("{name}: left alone: {why}"),
            Decision::Invalid(why) => {
                invalid += 1;
                log::warn!("{name}: not attached: {why}");
            }
        }
    }
    invalid
}
