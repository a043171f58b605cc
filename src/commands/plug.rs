//! `plug IFACE`: the fast additive path for one interface, as hooks and the preload library
//! call it. A narrow OVS read (the NIC and the fwln that would carry it), one link lookup, at
//! most one guest configuration, and one transaction; never removes another port. The host
//! files get its one entry (and lose the entries whose link is gone). Read top to bottom:
//! observe, decide, act, report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::act::{self, Decision as Change};
use super::mirrors::{Mirrors, Outcome};
use super::pass;
use super::summary::Summary;
use super::{Success, retrying, timing};
use crate::decide::config::Config;
use crate::decide::desired::{self, Decision, Desired, Guests, HostLink, Record, Seen};
use crate::decide::firewall;
use crate::decide::guest::{GuestId, NicId};
use crate::decide::hostfiles::{Update, Written};
use crate::decide::linkplan::{self, LinkState};
use crate::decide::mirrors::{MirrorPlan, Scope as MirrorScope};
use crate::decide::observed::Observed;
use crate::decide::plan::{self, Plan, Scope};
use crate::decide::ports::HostPort;
use crate::host::hostfiles;
use crate::host::links::{self, Link, Rtnl};
use crate::host::lock::{self, Mode};
use crate::host::vswitch::Vswitch;
use crate::host::{lxc, namespace, pve};

/// `plug IFACE`. `lock_held`: the caller holds the guest's Proxmox configuration lock itself
/// (the guest hookscript, in `post-start`), so the lock says nothing about Proxmox plugging the
/// NIC right now.
pub fn plug(config: &Config, iface: &str, lock_held: bool) -> anyhow::Result<Success> {
    let started = Instant::now();
    namespace::check_host()?;
    // Before anything is written, even for a link that is no guest NIC: a run inside a
    // container's setup must not touch files or locks that only look like the host's.
    let mut ovs = Vswitch::connect(config)?;
    let mut rtnl = Rtnl::open()?;
    pass::check_switch(&mut ovs, &mut rtnl)?;
    let rules = Mirrors::read(config, Some(iface));
    rules.log_refused(log::Level::Debug);
    // A port that a mirror rule names (a SPAN port coming up) is plugged for its mirrors only.
    if !config.is_candidate(iface) && !rules.involves(iface) {
        let why = format!(
            "{iface} is not a guest NIC (see prefixes, include and exclude in the configuration); left alone"
        );
        return plug_nothing(config, iface, started, &why);
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
    let mut run = Run {
        config,
        iface,
        rules: &rules,
        lock_held,
        ovs: &mut ovs,
        rtnl: &mut rtnl,
        started,
    };
    retrying(|| run.attempt())
}

/// One `plug`: what every attempt needs.
struct Run<'a> {
    config: &'a Config,
    iface: &'a str,
    rules: &'a Mirrors,
    lock_held: bool,
    ovs: &'a mut Vswitch,
    rtnl: &'a mut Rtnl,
    started: Instant,
}

/// What an attempt observed: OVS first, then the link and its guest (see [`pass::observe`]).
struct Seen1 {
    observed: Observed,
    links: [HostLink; 1],
    guests: Guests,
    /// The guest configurations' stamps when they were read.
    stamps: pve::Stamps,
    record: Record,
    /// The NIC and its fwbr and fwln, as the kernel-side decisions see them.
    neighbours: BTreeMap<String, LinkState>,
}

/// What an attempt decided.
struct Decided1 {
    desired: Desired,
    plan: Plan,
    mirrors: MirrorPlan,
    release: Vec<linkplan::Op>,
}

impl Run<'_> {
    fn attempt(&mut self) -> anyhow::Result<Success> {
        let mut lap = Instant::now();
        // Observe.
        let Some(seen) = self.observe()? else {
            log::warn!("{} does not exist (any more); nothing to plug", self.iface);
            return plug_nothing(
                self.config,
                self.iface,
                self.started,
                "plug: nothing attached",
            );
        };
        timing(&mut lap, "OVSDB read, link and guest configuration");
        // Decide, then leave the NIC to Proxmox if Proxmox is plugging it now.
        let decided = self.decide(&seen)?;
        let invalid = pass::log_decisions(&decided.desired);
        let mtus = pass::bridge_mtus(
            self.rtnl,
            decided.desired.nics.get(self.iface),
            &decided.plan,
        )?;
        timing(&mut lap, "decision");
        // Act.
        let change = Change {
            desired: &decided.desired,
            plan: &decided.plan,
            mirrors: &decided.mirrors,
            release: &decided.release,
            observed: &seen.observed,
            mtus: &mtus,
        };
        let mirrored = self.rules.involves(self.iface);
        let (config, iface, rules) = (self.config, self.iface, self.rules);
        let acted = act::act(
            self.ovs,
            self.rtnl,
            change,
            || write_files(config, iface, &seen.observed, &decided),
            |mirrors| match mirrored {
                true => rules.finish(mirrors, log::Level::Debug),
                false => Outcome::default(),
            },
            |rtnl, changed| match changed {
                false => Ok(seen.neighbours.clone()),
                true => pass::plug_links(config, rtnl, iface),
            },
        )?;
        // Report.
        Ok(Summary {
            command: "plug",
            plan: &decided.plan,
            invalid,
            failed: &acted.failed,
            listed: None,
            files: acted.files,
            mirrors: &acted.mirrored,
            started: self.started,
        }
        .report())
    }

    /// OVS (the NIC, the fwln that would carry it, and the ports its mirror rules name), then
    /// the link, its guest's configuration and the tool's record. `None` when the link is gone.
    fn observe(&mut self) -> anyhow::Result<Option<Seen1>> {
        let iface = self.iface;
        let mut names = self.rules.ports_for(iface);
        names.insert(iface.to_string());
        if let Some(nic) = NicId::parse(iface) {
            names.insert(firewall::names(nic).fwln);
        }
        let observed = if self.rules.involves(iface) {
            self.ovs.observe_ports(&names)?
        } else {
            self.ovs.observe_named(&names)?
        };
        let Some(link) = self.rtnl.by_name(iface)? else {
            return Ok(None);
        };
        let master = match link.master {
            Some(index) => self.rtnl.by_index(index)?,
            None => None,
        };
        let addressed = link.peer_elsewhere && self.rtnl.addressed()?.contains(&link.index);
        let links = [pass::host_link(&link, master.as_ref(), addressed)];
        let (mut guests, stamps) =
            pass::read_guests(self.config, &desired::guests_to_read(self.config, &links));
        // A raw container's NIC: its container's other host ends count too (one dump).
        let raw: BTreeSet<&str> = desired::raw_nics(self.config, &links).collect();
        if !raw.is_empty() {
            let all = self.rtnl.dump()?;
            guests.containers = lxc::containers(self.config, self.rtnl, &all, &raw);
        }
        Ok(Some(Seen1 {
            observed,
            links,
            guests,
            stamps,
            record: hostfiles::record(self.config),
            neighbours: pass::plug_links(self.config, self.rtnl, iface)?,
        }))
    }

    /// The decision, made again without the guest if Proxmox is working on it: probed right
    /// before acting (see [`pass::decide_leaving_busy`]).
    fn decide(&self, seen: &Seen1) -> anyhow::Result<Decided1> {
        let decide = |busy: &BTreeSet<GuestId>| {
            let view = Seen {
                observed: &seen.observed,
                record: &seen.record,
                busy,
                plug: true,
            };
            let desired = desired::build(self.config, &seen.links, &seen.guests, view);
            let plan = plan::build(self.config, &desired, &seen.observed, Scope::Additive);
            let release = linkplan::before_commit(&desired, &seen.neighbours);
            (desired, plan, release)
        };
        let (mut desired, mut plan, mut release) = decide(&BTreeSet::new());
        let lock_dir = (!self.lock_held).then_some(self.config.pve_lock_dir.as_path());
        let touched = pass::touched_guests(&plan, &release);
        let mut busy = pve::busy(lock_dir, &touched);
        busy.extend(seen.stamps.changed(&self.config.pve_config_dir, &touched));
        if !busy.is_empty() {
            (desired, plan, release) = decide(&busy);
        }
        let mirrors = if self.rules.involves(self.iface) {
            self.rules
                .plan(&seen.observed, &plan, MirrorScope::Involving(self.iface))?
        } else {
            MirrorPlan::default()
        };
        Ok(Decided1 {
            desired,
            plan,
            mirrors,
            release,
        })
    }
}

/// The host-file update of one plug: its port's entry as the plan leaves it (a firewall NIC's
/// is its fwln's). A NIC left alone keeps its entry: the record still says where its port was.
fn write_files(
    config: &Config,
    iface: &str,
    observed: &Observed,
    decided: &Decided1,
) -> anyhow::Result<Written> {
    let decision = decided.desired.nics.get(iface);
    let port = match decision {
        Some(Decision::Attach(t)) => t.port(iface).to_string(),
        Some(Decision::Ignore(_)) => return Ok(Written::default()),
        _ => iface.to_string(),
    };
    let host_port = match plan::after(observed, &decided.plan).remove(&port) {
        Some(p) if matches!(decision, Some(Decision::Attach(_))) => Some(HostPort {
            name: port.clone(),
            bridge: p.bridge,
            vlan: p.vlan,
            owned: p.owned,
        }),
        _ => None,
    };
    let update = Update::One {
        name: &port,
        port: host_port,
    };
    let exists = |name: &str| name == port || links::exists(name);
    hostfiles::update(config, update, &exists)
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
    Ok(Summary {
        command: "plug",
        plan: &Plan::default(),
        invalid: 0,
        failed: &[],
        listed: None,
        files,
        mirrors: &Outcome::default(),
        started,
    }
    .report())
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
