//! The three commands. Each reads top to bottom: observe (links, guest configurations, OVS),
//! decide (desired state, then the plan, both pure), act (one OVSDB transaction, then the host
//! files), report (one line per change and a summary with counts and elapsed time). The
//! traffic mirrors of the rules file ride along in [`mirrors`].
//!
//! Two more, in modules of their own, never act: [`status`] observes and decides as `apply` does
//! and reports; [`validate`] parses the configurations and reports, without OVS or root.

mod mirrors;
mod status;
mod validate;

pub use status::status;
pub use validate::validate;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::config::Config;
use crate::decide::desired::{self, Decision, Desired, Guests, HostLink, Master, Record, Seen};
use crate::decide::firewall;
use crate::decide::guest::GuestId;
use crate::decide::guest::NicId;
use crate::decide::linkplan::{self, LinkState};
use crate::decide::mirrors::{MirrorPlan, Scope as MirrorScope};
use crate::decide::observed::Observed;
use crate::decide::plan::{self, Change, Plan, Scope};
use crate::decide::ports::{self, HostPort};
use crate::host::hostfiles::{self, Update, Written};
use crate::host::links::{self, Link, Rtnl};
use crate::host::lock::{self, Mode};
use crate::host::ovsdb::TxnError;
use crate::host::pve;
use crate::host::vswitch::{Unconfirmed, Vswitch};
use crate::host::{linkops, namespace, sysctl};
use mirrors::{Mirrors, Outcome};

/// How often a transaction refused because OVS changed under us is retried from a fresh read.
const ATTEMPTS: usize = 3;

/// Whether a command reached the desired state. `false` maps to exit code 1.
pub type Success = bool;

/// `apply`: full rescan and reconcile of every guest NIC, then both host files.
pub fn apply(config: &Config, dry_run: bool) -> anyhow::Result<Success> {
    let started = Instant::now();
    namespace::check_host()?;
    let mut ovs = Vswitch::connect(config)?;
    check_switch(&mut ovs, &mut Rtnl::open()?)?;
    let _lock = lock::main(
        &config.run_dir,
        if dry_run {
            Mode::Shared
        } else {
            Mode::Exclusive
        },
        lock::wait(config),
    )?;
    let rules = Mirrors::read(config, None);
    rules.log_refused(log::Level::Warn);
    retrying(|| {
        let mut lap = Instant::now();
        // Observe.
        let (host, observed) = observe(config, &mut ovs)?;
        timing(&mut lap, "observing");
        // Decide.
        let Decided {
            desired,
            mut plan,
            mirrors,
            release,
        } = decide_leaving_busy(config, &host, &observed, &rules)?;
        // A port that is not ours is pruned only when its link is gone: ask again, since a
        // guest may have been started since the links were read.
        confirm_prunes(&mut plan, &observed);
        let invalid = log_decisions(&desired);
        timing(&mut lap, "decision");
        if dry_run {
            print_plan(&plan, &mirrors);
            for op in &release {
                println!("{op}");
            }
            let after = linkplan::after_commit(
                &desired,
                &plan,
                &host.states,
                |b| bridge_mtu(&host.mtus, b),
                sysctl::ipv6_enabled,
            );
            for op in &after {
                println!("{op} (once the ports are in place)");
            }
            return Ok(invalid == 0 && rules.ok(&mirrors));
        }
        // Act.
        let mut rtnl = Rtnl::open()?;
        let mut failed = linkops::carry_out(&mut rtnl, &release);
        let write_files = || {
            let (ports, exists) = listed_ports(&host, &desired, &observed, &plan);
            (
                hostfiles::update(config, Update::All(&ports), &exists),
                ports.len(),
            )
        };
        let (ovs_failed, (files, listed)) = commit(
            &mut ovs,
            &observed,
            &plan,
            &mirrors,
            &host.mtus,
            write_files,
        )?;
        failed.extend(ovs_failed);
        let mirrored = rules.finish(&mirrors, log::Level::Info);
        // The links as the transaction left them (a new fwln's device exists now).
        let states = if plan.is_empty() && release.is_empty() {
            host.states.clone()
        } else {
            link_states(&rtnl.dump()?, Some(&rtnl.rate_limited()?))
        };
        let ops = linkplan::after_commit(
            &desired,
            &plan,
            &states,
            |b| bridge_mtu(&host.mtus, b),
            sysctl::ipv6_enabled,
        );
        failed.extend(linkops::carry_out(&mut rtnl, &ops));
        // Report.
        Ok(report(
            "apply",
            &plan,
            invalid,
            &failed,
            Some(listed),
            files,
            &mirrored,
            started,
        ))
    })
}

/// Runs `attempt` again, from a fresh read, when OVSDB refused its transaction because OVS
/// changed under it (a [`TxnError`]: nothing was committed); at most [`ATTEMPTS`] times.
fn retrying<T>(mut attempt: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut tries = 1;
    loop {
        match attempt() {
            Err(e) if e.is::<TxnError>() && tries < ATTEMPTS => {
                log::debug!("{e:#}; reading OVS again (attempt {tries})");
                tries += 1;
            }
            other => return other,
        }
    }
}

/// OVS, then the host. In this order, every port the OVS read returns had its link created
/// before the links are read (Proxmox creates a tap or veth before its `add-port`), so a port
/// of a guest started during the run is never taken for one whose link is gone. (That the
/// switch is this host's, [`check_switch`] made sure before.)
fn observe(config: &Config, ovs: &mut Vswitch) -> anyhow::Result<(Host, Observed)> {
    let mut lap = Instant::now();
    let observed = ovs.observe_all()?;
    timing(&mut lap, "OVSDB read");
    let host = Host::scan(config)?;
    timing(&mut lap, "links and guest configurations");
    Ok((host, observed))
}

/// Refuses unless the switch `ovs` serves is this host's, before anything is read further,
/// written or locked: its OVSDB server must be visible from this PID namespace
/// ([`namespace::check_server`]), and at least one of its bridges must be a network interface
/// in this network namespace (what a run in another namespace, or over TCP, sees otherwise is
/// someone else's links: a plug there would drop every host-file entry as gone).
pub(crate) fn check_switch(ovs: &mut Vswitch, rtnl: &mut Rtnl) -> anyhow::Result<()> {
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

/// The Proxmox guests whose NICs a plan or a link operation touches.
fn touched_guests(plan: &Plan, ops: &[linkplan::Op]) -> BTreeSet<GuestId> {
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
fn confirm_prunes(plan: &mut Plan, observed: &Observed) {
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

/// `plug IFACE`: the fast additive path for one interface. A narrow OVS read (the NIC and the
/// fwln that would carry it), then one link lookup and at most one guest configuration, and
/// one transaction; never removes another port. The host files get its one entry (and lose the
/// entries whose link is gone). `lock_held`: the caller holds the guest's Proxmox
/// configuration lock itself (the guest hookscript, in `post-start`), so the lock says nothing
/// about Proxmox plugging the NIC right now.
pub fn plug(config: &Config, iface: &str, lock_held: bool) -> anyhow::Result<Success> {
    let started = Instant::now();
    namespace::check_host()?;
    // Before anything is written, even for a link that is no guest NIC: a run inside a
    // container's setup must not touch files or locks that only look like the host's.
    let mut ovs = Vswitch::connect(config)?;
    let mut rtnl = Rtnl::open()?;
    check_switch(&mut ovs, &mut rtnl)?;
    let rules = Mirrors::read(config, Some(iface));
    rules.log_refused(log::Level::Debug);
    // A port that a mirror rule names (a SPAN port coming up) is plugged for its mirrors only.
    let mirrored = rules.involves(iface);
    if !config.is_candidate(iface) && !mirrored {
        return plug_nothing(
            config,
            iface,
            started,
            &format!(
                "{iface} is not a guest NIC (see prefixes, include and exclude in the configuration); left alone"
            ),
        );
    }
    // Before the lock: a container manager that creates a veth pair on the host moves the peer
    // into the container a moment later, and nobody should queue behind that wait.
    if rtnl
        .by_name(iface)?
        .is_some_and(|l| awaits_peer(config, &l))
    {
        wait_for_peer(&mut rtnl, iface)?;
    }
    let _lock = lock::main(&config.run_dir, Mode::Shared, lock::PLUG_WAIT)?;
    let mut lap = Instant::now();
    retrying(|| {
        // Each attempt times itself: a refused commit is no part of the next read.
        lap = Instant::now();
        // Observe: OVS first, then the link and its guest (see `observe`).
        let mut names = rules.ports_for(iface);
        names.insert(iface.to_string());
        if let Some(nic) = NicId::parse(iface) {
            names.insert(firewall::names(nic).fwln);
        }
        let observed = if mirrored {
            ovs.observe_ports(&names)?
        } else {
            ovs.observe_named(&names)?
        };
        timing(&mut lap, "OVSDB read");
        let Some(link) = rtnl.by_name(iface)? else {
            log::warn!("{iface} does not exist (any more); nothing to plug");
            return plug_nothing(config, iface, started, "plug: nothing attached");
        };
        let master = match link.master {
            Some(index) => rtnl.by_index(index)?,
            None => None,
        };
        let addressed = link.peer_elsewhere && rtnl.addressed()?.contains(&link.index);
        let links = [host_link(&link, master.as_ref(), addressed)];
        let guests = read_guests(config, &desired::guests_to_read(config, &links));
        let record = hostfiles::record(config);
        timing(&mut lap, "link and guest configuration");
        // Decide; then, right before acting, leave the NIC to Proxmox if Proxmox is plugging
        // it now (see `apply`).
        let decide = |busy: &BTreeSet<GuestId>| {
            let seen = Seen {
                observed: &observed,
                record: &record,
                busy,
            };
            let desired = desired::build(config, &links, &guests, seen);
            let plan = plan::build(config, &desired, &observed, Scope::Additive);
            (desired, plan)
        };
        let (mut desired, mut plan) = decide(&BTreeSet::new());
        let neighbours = plug_links(&mut rtnl, iface)?;
        let mut release = linkplan::before_commit(&desired, &neighbours);
        let lock_dir = (!lock_held).then_some(config.pve_lock_dir.as_path());
        let busy = pve::busy(lock_dir, &touched_guests(&plan, &release));
        if !busy.is_empty() {
            (desired, plan) = decide(&busy);
            release = linkplan::before_commit(&desired, &neighbours);
        }
        let mirrors = if mirrored {
            rules.plan(&observed, &plan, MirrorScope::Involving(iface))?
        } else {
            MirrorPlan::default()
        };
        let invalid = log_decisions(&desired);
        let port = match desired.nics.get(iface) {
            Some(Decision::Attach(t)) => t.port(iface).to_string(),
            _ => iface.to_string(),
        };
        let mtus = bridge_mtus(&mut rtnl, desired.nics.get(iface), &plan)?;
        // Act.
        let mut failed = linkops::carry_out(&mut rtnl, &release);
        let left_alone = matches!(desired.nics.get(iface), Some(Decision::Ignore(_)));
        let write_files = || {
            // A NIC left alone keeps its entry: the record still says where its port was.
            if left_alone {
                return Ok(Written::default());
            }
            let host_port = match plan::after(&observed, &plan).remove(&port) {
                Some(p) if matches!(desired.nics.get(iface), Some(Decision::Attach(_))) => {
                    Some(HostPort {
                        name: port.clone(),
                        bridge: p.bridge,
                        vlan: p.vlan,
                        owned: p.owned,
                    })
                }
                _ => None,
            };
            let update = Update::One {
                name: &port,
                port: host_port,
            };
            let exists = |name: &str| name == port || links::exists(name);
            hostfiles::update(config, update, &exists)
        };
        let (ovs_failed, files) = commit(&mut ovs, &observed, &plan, &mirrors, &mtus, write_files)?;
        failed.extend(ovs_failed);
        let mirrored = match mirrored {
            true => rules.finish(&mirrors, log::Level::Debug),
            false => Outcome::default(),
        };
        let states = if plan.is_empty() && release.is_empty() {
            neighbours
        } else {
            plug_links(&mut rtnl, iface)?
        };
        let ops = linkplan::after_commit(
            &desired,
            &plan,
            &states,
            |b| mtus.get(b).copied().unwrap_or(DEFAULT_MTU),
            sysctl::ipv6_enabled,
        );
        failed.extend(linkops::carry_out(&mut rtnl, &ops));
        // Report.
        Ok(report(
            "plug", &plan, invalid, &failed, None, files, &mirrored, started,
        ))
    })
}

/// `plug`'s answer when there is nothing to plug: the host files still drop the entry of a
/// link that is gone.
fn plug_nothing(
    config: &Config,
    iface: &str,
    started: Instant,
    why: &str,
) -> anyhow::Result<Success> {
    let files = hostfiles::update(
        config,
        Update::One {
            name: iface,
            port: None,
        },
        &links::exists,
    );
    log::info!("{why}");
    Ok(report(
        "plug",
        &Plan::default(),
        0,
        &[],
        None,
        files,
        &Outcome::default(),
        started,
    ))
}

/// How long `plug` waits for a new veth's peer to leave the host namespace. A container manager
/// that creates the pair on the host moves the peer within milliseconds; LXC creates the peer
/// in the container directly, and never makes anyone wait.
const PEER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether `link` is a veth that would be a raw container NIC once its peer leaves the host: a
/// candidate name, not Proxmox's, not opted in with `include`, both ends here now.
fn awaits_peer(config: &Config, link: &Link) -> bool {
    link.kind.as_deref() == Some("veth")
        && !link.peer_elsewhere
        && link.master.is_none()
        && NicId::parse(&link.name).is_none()
        && !config.is_included(&link.name)
}

/// Waits, at most [`PEER_WAIT`], until `iface`'s peer has left this network namespace (or
/// `iface` is gone). What it finds then is decided as usual: a veth whose peer stayed is not a
/// container's, and is left alone.
fn wait_for_peer(rtnl: &mut Rtnl, iface: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + PEER_WAIT;
    while Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        match rtnl.by_name(iface)? {
            Some(l) if !l.peer_elsewhere => {}
            _ => return Ok(()),
        }
    }
    log::debug!(
        "{iface}: its peer is still on the host after {} ms; not a container NIC",
        PEER_WAIT.as_millis()
    );
    Ok(())
}

/// `clear`: removes every port carrying the ownership mark and the host files. With
/// `keep_ports` (package removal), the marked ports of links that exist stay where they are and
/// only lose the mark, so that no running guest loses its network. The files are cleared even
/// when OVS cannot be reached, so that package removal never leaves stanzas behind; a name whose
/// link exists keeps a neutral stanza (see [`crate::decide::stanzas`]), so that ifupdown2 downs
/// no running guest on the next reload.
pub fn clear(config: &Config, keep_ports: bool) -> anyhow::Result<Success> {
    let started = Instant::now();
    namespace::check_host()?;
    // A switch that answers must be this host's before anything, files and locks included, is
    // touched; one that does not answer still lets package removal clear the files.
    let mut ovs = Vswitch::connect(config);
    if let Ok(ovs) = &mut ovs {
        check_switch(ovs, &mut Rtnl::open()?)?;
    }
    let _lock = lock::main(&config.run_dir, Mode::Exclusive, lock::wait(config))?;
    let live: BTreeSet<String> = Rtnl::open()?.dump()?.into_iter().map(|l| l.name).collect();
    let ovs_result = ovs.and_then(|mut ovs| {
        let observed = ovs.observe_all()?;
        let plan = if keep_ports {
            plan::release(&observed, &live)
        } else {
            plan::clear(&observed)
        };
        let mirrors = mirrors::clear_plan(&observed)?;
        let (failed, ()) = commit(
            &mut ovs,
            &observed,
            &plan,
            &mirrors,
            &BTreeMap::new(),
            || (),
        )?;
        Ok((plan, failed, mirrors::finish_clear(&mirrors)))
    });
    let files = hostfiles::update(config, Update::Clear, &|name: &str| live.contains(name));
    let (plan, failed, mirrored) = ovs_result?;
    Ok(report(
        "clear", &plan, 0, &failed, None, files, &mirrored, started,
    ))
}

/// The host as the decision needs it: its links, the guest configurations they point at, and
/// the MTU of every link (for `mtu_request`, which Proxmox sets to the bridge's MTU).
struct Host {
    links: Vec<HostLink>,
    guests: Guests,
    names: BTreeSet<String>,
    /// The guest NICs among the links (see [`desired::candidates`]), computed once: the host
    /// files filter every OVS port through it.
    guest_nics: BTreeSet<String>,
    mtus: BTreeMap<String, u32>,
    /// Every link's state, for the kernel-side decisions ([`linkplan`]).
    states: BTreeMap<String, LinkState>,
    /// Where the tool last put each guest port (its stanzas file).
    record: Record,
}

impl Host {
    fn scan(config: &Config) -> anyhow::Result<Host> {
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
        let guests = read_guests(config, &desired::guests_to_read(config, &links));
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
            states: link_states(&all, Some(&limited)),
            links,
            guests,
        })
    }

    /// A port name the host files should list: a guest NIC that exists on the host.
    fn is_guest_nic(&self, name: &str) -> bool {
        self.guest_nics.contains(name)
    }
}

/// The links by name as [`linkplan`] sees them, their masters by name; `limited` the links with
/// Proxmox's rate limit in place, when that was looked at.
fn link_states(all: &[Link], limited: Option<&BTreeSet<u32>>) -> BTreeMap<String, LinkState> {
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
                },
            )
        })
        .collect()
}

/// `plug`'s view of the links [`linkplan`] looks at: the NIC, and its fwbr and fwln if it has
/// the firewall shape or had it. One lookup each, no dump.
fn plug_links(rtnl: &mut Rtnl, iface: &str) -> anyhow::Result<BTreeMap<String, LinkState>> {
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
    Ok(link_states(&found, None))
}

/// What a full pass decides: `apply` carries it out, `status` reports it. One function, so that
/// the two can never disagree.
struct Decided {
    desired: Desired,
    plan: Plan,
    mirrors: MirrorPlan,
    /// The kernel-link changes needed before the OVS transaction.
    release: Vec<linkplan::Op>,
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
fn decide_leaving_busy(
    config: &Config,
    host: &Host,
    observed: &Observed,
    rules: &Mirrors,
) -> anyhow::Result<Decided> {
    let decided = decide_full(config, host, observed, rules, &BTreeSet::new())?;
    let busy = pve::busy(
        Some(&config.pve_lock_dir),
        &touched_guests(&decided.plan, &decided.release),
    );
    if busy.is_empty() {
        Ok(decided)
    } else {
        decide_full(config, host, observed, rules, &busy)
    }
}

/// The guest ports the host files list once `plan` is committed (the fwln, not the NIC, for a
/// firewall NIC), and which names count as existing links for them.
fn listed_ports(
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
        firewall::fwln_owner(fwln).is_some_and(|(vmid, index)| {
            [format!("tap{vmid}i{index}"), format!("veth{vmid}i{index}")]
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

/// MTU Proxmox falls back to nowhere (it refuses a bridge without one); a bridge whose link the
/// tool cannot see gets Linux's default.
const DEFAULT_MTU: u32 = 1500;

fn bridge_mtu(mtus: &BTreeMap<String, u32>, bridge: &str) -> u32 {
    mtus.get(bridge).copied().unwrap_or(DEFAULT_MTU)
}

fn host_link(link: &Link, master: Option<&Link>, addressed: bool) -> HostLink {
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

/// Reads each guest configuration once (see [`pve`] for where they are looked up).
fn read_guests(config: &Config, ids: &BTreeSet<GuestId>) -> Guests {
    Guests {
        proxmox: pve::present(&config.pve_config_dir),
        files: pve::read_guests(&config.pve_config_dir, ids),
    }
}

/// MTUs of the bridges a plan attaches or moves ports to, and of the NIC's own target bridge,
/// looked up one by one (the plug path has no dump).
fn bridge_mtus(
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
fn log_decisions(desired: &Desired) -> usize {
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

fn print_plan(plan: &Plan, mirror_plan: &MirrorPlan) {
    let flags = mirror_plan.promisc_on.len() + mirror_plan.promisc_off.len();
    if plan.is_empty() && mirror_plan.is_empty() && flags == 0 {
        println!("nothing to do");
    }
    for change in &plan.changes {
        println!("{change}");
    }
    mirrors::print(mirror_plan);
}

/// Commits `plan` and `mirrors` (in the same transaction), then runs `write_files` (the host-file
/// update, which describes the committed state) on a second thread while waiting for
/// ovs-vswitchd to apply the change: the wait is idle time, and on a host with thousands of ports
/// it is the longest part of a run. With nothing to commit, `write_files` just runs. Returns the ports whose interface failed (an
/// [`Unconfirmed`] wait is reported here and counted as a failure of every port it names) and
/// what `write_files` returned. Nothing is written when the transaction fails.
fn commit<F: Send>(
    ovs: &mut Vswitch,
    observed: &Observed,
    plan: &Plan,
    mirrors: &MirrorPlan,
    mtus: &BTreeMap<String, u32>,
    write_files: impl FnOnce() -> F + Send,
) -> anyhow::Result<(Vec<(String, String)>, F)> {
    if plan.is_empty() && mirrors.is_empty() {
        let mut lap = Instant::now();
        let files = write_files();
        timing(&mut lap, "host files");
        return Ok((Vec::new(), files));
    }
    let mut lap = Instant::now();
    let next_cfg = ovs.commit(observed, plan, mirrors, mtus)?;
    timing(&mut lap, "OVSDB transaction");
    for change in &plan.changes {
        log::info!("{}", change.describe(true));
    }
    for change in &mirrors.changes {
        log::info!("{}", change.describe(true));
    }
    let added: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Attach { .. } | Change::Move { .. }))
        .map(|c| c.port().to_string())
        .collect();
    let (waited, files) = std::thread::scope(|scope| {
        let files = scope.spawn(|| {
            let mut lap = Instant::now();
            let files = write_files();
            timing(&mut lap, "host files");
            files
        });
        let mut wait = Instant::now();
        let waited = ovs.wait_applied(next_cfg, &added);
        timing(&mut wait, "waiting for ovs-vswitchd");
        let files = files
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (waited, files)
    });
    timing(&mut lap, AFTER_COMMIT_TIMING);
    let failed = match waited {
        Ok(failed) => Ok(failed
            .into_iter()
            .map(|(port, why)| (port, format!("ovs-vswitchd reports: {why}")))
            .collect()),
        Err(e) => match e.downcast::<Unconfirmed>() {
            Ok(u) => {
                log::warn!("{u}");
                Ok(u.ports
                    .iter()
                    .map(|p| (p.clone(), "unconfirmed".to_string()))
                    .chain(
                        // An unconfirmed wait with nothing added still failed to confirm the run.
                        u.ports
                            .is_empty()
                            .then(|| ("(configuration)".to_string(), "unconfirmed".to_string())),
                    )
                    .collect())
            }
            Err(e) => Err(e),
        },
    }?;
    Ok((failed, files))
}

/// Label of the debug timing line of what follows a commit: the wait for ovs-vswitchd and, at
/// the same time, the host-file update. `scripts/bench` subtracts it from a run's wall time to
/// get the tool's own client-side time; keep the two in step.
const AFTER_COMMIT_TIMING: &str = "ovs-vswitchd wait and host files";

/// Logs, at debug level (`-v`), how long a phase took since `lap`, and restarts `lap`. The lines
/// read `timing: PHASE: 1.234 ms`.
fn timing(lap: &mut Instant, phase: &str) {
    log::debug!(
        "timing: {phase}: {:.3} ms",
        lap.elapsed().as_secs_f64() * 1000.0
    );
    *lap = Instant::now();
}

#[allow(clippy::too_many_arguments)]
fn report(
    what: &str,
    plan: &Plan,
    invalid: usize,
    failed: &[(String, String)],
    listed: Option<usize>,
    files: anyhow::Result<Written>,
    mirrors: &Outcome,
    started: Instant,
) -> Success {
    for (port, why) in failed.iter().filter(|(_, why)| why != "unconfirmed") {
        log::warn!("{port}: {why}");
    }
    let files_ok = match &files {
        Ok(_) => true,
        Err(e) => {
            log::error!("updating host files: {e:#}");
            false
        }
    };
    let [attached, updated, moved, pruned, handed_back] = plan.counts();
    let handed_back = if handed_back > 0 {
        format!("{handed_back} handed back, ")
    } else {
        String::new()
    };
    let written = files.as_ref().map(|w| {
        let names = w.names();
        if names.is_empty() {
            "no file rewritten".to_string()
        } else {
            format!("rewrote {}", names.join(" and "))
        }
    });
    let listed = listed
        .map(|n| format!("{n} guest ports in host files, "))
        .unwrap_or_default();
    // A plug that changed nothing says so at debug level only: hooks and the preload library
    // plug every NIC they see, most of which need nothing.
    let noop = what == "plug"
        && plan.is_empty()
        && invalid == 0
        && failed.is_empty()
        && mirrors.quiet()
        && files.as_ref().is_ok_and(|w| w.names().is_empty());
    log::log!(
        if noop {
            log::Level::Debug
        } else {
            log::Level::Info
        },
        "{what}: {attached} attached, {updated} updated, {moved} moved, {pruned} pruned, {handed_back}{invalid} invalid, {} failed; {}{listed}{}; {} ms",
        failed.len(),
        mirrors.segment(),
        written.unwrap_or_else(|_| "host files not updated".into()),
        started.elapsed().as_millis()
    );
    invalid == 0 && failed.is_empty() && files_ok && mirrors.ok()
}
