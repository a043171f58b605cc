//! The desired state: for every guest NIC on the host, where it belongs.
//!
//! [`build`] is a pure function of the host's links, the guest configurations, the tool's
//! configuration and the OVS bridges that exist. It is the single place where the rules of
//! "which bridge, which VLAN" live; `apply` and `plug` both go through it.

use std::collections::{BTreeMap, BTreeSet};

use crate::decide::config::{Config, RawPlace};
use crate::decide::firewall;
use crate::decide::guest::{GuestConfig, GuestId, Kind, NetSpec, NicId};
use crate::decide::ifname;
use crate::decide::lxc::{LxcConfig, VethMode};
use crate::decide::observed::{Observed, Uuid};
use crate::decide::vlan::Vlan;

/// A host link as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLink {
    pub name: String,
    /// The link's own kind (`veth`, `tun`, `openvswitch`, ...), if the kernel reports one.
    pub kind: Option<String>,
    pub master: Master,
    /// A veth whose other end lives in another network namespace (the kernel reports the peer's
    /// namespace, `IFLA_LINK_NETNSID`): a container's NIC. Both ends on the host means an
    /// admin's pair, or LXC's hotplug peer before it moves.
    pub peer_elsewhere: bool,
    /// The link has an address of its own (IPv4, or IPv6 wider than link-local): a veth that
    /// routes for its container rather than a port for a switch.
    pub addressed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Master {
    None,
    /// Enslaved to the kernel OVS datapath (`ovs-system`): already an OVS port.
    Ovs,
    /// Enslaved to something else (a Linux bridge such as `fwbr100i0`, a bond); holds its name.
    Other(String),
}

/// A guest configuration file as read from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestFile {
    Missing,
    Parsed(GuestConfig),
    Unreadable(String),
}

/// Where a NIC belongs, in the shape Proxmox's `tap_plug` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub bridge: String,
    pub vlan: Vlan,
    /// `firewall=1`: the NIC sits in a Linux bridge and this OVS internal port carries the VLAN.
    pub firewall: Option<firewall::Names>,
    /// `rate=` in bytes per second, set on the NIC (not the fwln) whenever the tool plugs it.
    pub rate: Option<u64>,
}

impl Target {
    /// A plain target: that bridge and VLAN, nothing else.
    pub fn plain(bridge: impl Into<String>, vlan: Vlan) -> Target {
        Target {
            bridge: bridge.into(),
            vlan,
            firewall: None,
            rate: None,
        }
    }

    /// The OVS port that carries the NIC: the fwln of a firewall NIC, the NIC itself otherwise.
    pub fn port<'a>(&'a self, nic: &'a str) -> &'a str {
        self.firewall.as_ref().map_or(nic, |f| f.fwln.as_str())
    }

    /// Whether a port on `bridge` with `vlan` is where this target puts it.
    pub fn accepts(&self, bridge: &str, vlan: &Vlan) -> bool {
        bridge == self.bridge && *vlan == self.vlan
    }
}

/// What to do with one guest NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// On this bridge with these VLAN settings.
    Attach(Target),
    /// Must not be on OVS (LXC `link_down=1`, a non-OVS bridge in its configuration): a port of
    /// ours is removed, anyone else's is left alone.
    Detach(String),
    /// Not this tool's business (firewall bridge, enslaved elsewhere): never touched.
    Ignore(String),
    /// Its configuration is broken: not touched, reported, and the run fails.
    Invalid(String),
}

/// Decisions for every candidate NIC, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub nics: BTreeMap<String, Decision>,
    /// LXC NICs with `link_down=1`: pve-container's `net_tap_plug` sets them down (and plugs
    /// them nowhere), whatever their bridge.
    pub down: BTreeSet<String>,
    /// QEMU NICs with a `[PENDING]` network value: what that value says (for `status`), and
    /// which of the two values the decision chose ([`Chosen`]).
    pub pending: BTreeMap<String, Pending>,
    /// What placed each NIC that no Proxmox configuration describes (a raw container's, an
    /// `include` match): for `status`.
    pub sources: BTreeMap<String, Source>,
}

/// What placed a NIC that no Proxmox configuration describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Its LXC container's own configuration (`lxc.net.N.link`), by the container's name.
    Lxc(String),
    /// The `raw` rule of this number, counted from 1.
    Rule(usize),
    /// `raw_default`.
    RawDefault,
    /// `bridge`, untagged: nothing else said anything.
    DefaultBridge,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Lxc(name) => write!(f, "lxc config {name}"),
            Source::Rule(n) => write!(f, "rule {n}"),
            Source::RawDefault => f.write_str("raw_default"),
            Source::DefaultBridge => f.write_str("default bridge"),
        }
    }
}

/// What the adapters found of the LXC container a raw NIC belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Container),
    /// A complete look found no LXC container the tool trusts in the network namespace of the
    /// NIC's peer.
    NoContainer,
    /// The look did not complete (the reason): the NIC may well be a container's.
    Unknown(String),
}

/// The LXC container a raw NIC belongs to, as the adapters found it: the container whose LXC
/// monitor (`[lxc monitor] <lxcpath> <name>`, run by root) is the parent of a process in the
/// network namespace of the NIC's peer, or whose processes run there in LXC's payload cgroup
/// `lxc.payload.<name>` (root's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    /// `<lxcpath>/<name>/config`, as messages name it.
    pub path: String,
    /// LXC is still setting the container up: no process in its network namespace has left
    /// `lxc-start` (its init has not exec'd yet), so LXC may be about to plug its NICs.
    pub starting: bool,
    /// Its configuration; `Ok(None)` when there is no such file, `Err` when it cannot be read.
    pub config: Result<Option<LxcConfig>, String>,
    /// The container's host ends (the host's veths whose peer is in its network namespace,
    /// this NIC among them), in ifindex order.
    pub siblings: Vec<String>,
}

/// A NIC's pending value, as `status` shows it beside the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The pending value's own decision, described (`vmbr1 tag=20`, `vmbr9 is not an OVS
    /// bridge`).
    pub value: String,
    pub chosen: Chosen,
}

/// Which value of a NIC with a pending change the decision follows, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    /// The current value: OVS holds it, the tool's record says it was last there, or neither
    /// value is in place (a pending value never acts on a NIC on its own).
    Current,
    /// The pending value: OVS holds it now (Proxmox hotplugged it or resumed from a state
    /// file), or the tool's record says the NIC was last there.
    Pending,
}

/// Where the tool last put each guest port, as its own stanzas file lists it: the memory that
/// lets a port lost to a reload come back where it was when a pending value makes the
/// configuration ambiguous.
pub type Record = BTreeMap<String, (String, Vlan)>;

/// What the decision sees of Open vSwitch and of the tool's own record.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    /// The OVS bridges and the ports read (all of them, or those the `plug` path read).
    pub observed: &'a Observed,
    pub record: &'a Record,
    /// Guests whose Proxmox configuration lock another process holds right now: Proxmox is
    /// starting them, hotplugging a NIC or cleaning up, and its own `tap_plug` (`del-port`, then
    /// `add-port` without `--may-exist`) fails if a port appears between its two steps. Their
    /// NICs are left to Proxmox; the post-start hookscript or the next run checks them.
    pub busy: &'a BTreeSet<GuestId>,
    /// The decisions are `plug`'s, for a NIC just made: a NIC its container manager plugs
    /// itself is left to it.
    pub plug: bool,
}

/// The links [`build`] decides: named like a guest NIC (a configured prefix or an `include`
/// match, a valid interface name, no `exclude` match) and not an OVS internal port (which the
/// kernel datapath creates as `openvswitch` links). Whether each really is a guest NIC is
/// [`nature`]'s question: a name prefix also matches a VPN's `tap0` or an SDN VNet bridge.
pub fn candidates<'a>(
    config: &'a Config,
    links: &'a [HostLink],
) -> impl Iterator<Item = &'a HostLink> {
    links
        .iter()
        .filter(|l| l.kind.as_deref() != Some("openvswitch") && config.is_candidate(&l.name))
}

/// What a candidate link is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nature {
    /// A Proxmox guest NIC: `tap<vmid>i<n>` of kind `tun` or `veth<vmid>i<n>` of kind `veth`,
    /// decided by its guest's configuration.
    Proxmox(NicId),
    /// A container NIC outside Proxmox: a veth whose peer lives in another network namespace,
    /// or a link the configuration's `include` opts in. Decided by the default bridge.
    Raw,
    /// Anything else with a guest-like name; the reason says what it is. Never attached,
    /// moved, changed or counted as a failure.
    Other(String),
}

/// Tells a guest NIC from the other links a name prefix matches: a VPN's `tap0`, an admin's
/// veth pair, an SDN VNet (a Linux bridge named after the VNet, `tapnet1` is a valid one),
/// LXC's hotplug peer `veth<vmid>i<n>p` before it moves into the container.
pub fn nature(config: &Config, link: &HostLink) -> Nature {
    let kind = link.kind.as_deref();
    if let Some(nic) = NicId::parse(&link.name) {
        let expected = match nic.guest.kind {
            Kind::Qemu => "tun",
            Kind::Lxc => "veth",
        };
        if kind == Some(expected) {
            return Nature::Proxmox(nic);
        }
    }
    if config.is_included(&link.name)
        || (kind == Some("veth") && link.peer_elsewhere && !link.addressed)
    {
        return Nature::Raw;
    }
    Nature::Other(match (kind, NicId::parse(&link.name)) {
        (Some(k), Some(nic)) => format!(
            "named like a {} NIC, but a {k} link",
            match nic.guest.kind {
                Kind::Qemu => "QEMU",
                Kind::Lxc => "container",
            }
        ),
        (Some("veth"), None) if link.peer_elsewhere => {
            "a veth with an address of its own (it routes for its container), not a switch port"
                .into()
        }
        (Some("veth"), None) => {
            "a veth with both ends on the host (an admin's pair, or a container NIC not yet moved), not a container NIC".into()
        }
        (Some("tun"), None) => "a tap without a Proxmox name (tap<vmid>i<n>), such as a VPN's".into(),
        (Some("bridge"), None) => "a Linux bridge (an SDN VNet, for instance)".into(),
        (Some(k), None) => format!("a {k} link, not a guest NIC"),
        (None, _) => "a link of no reported kind, not a guest NIC".into(),
    })
}

/// The candidates that are guest NICs ([`nature`] is not [`Nature::Other`]): the names the host
/// files may list.
pub fn guest_nics<'a>(
    config: &'a Config,
    links: &'a [HostLink],
) -> impl Iterator<Item = &'a HostLink> {
    candidates(config, links).filter(|l| !matches!(nature(config, l), Nature::Other(_)))
}

/// Links named like guest NICs (a configured prefix) whose names are not valid interface names:
/// never candidates, reported once per run so that an admin sees them.
pub fn refused_names<'a>(config: &Config, links: &'a [HostLink]) -> Vec<&'a str> {
    links
        .iter()
        .filter(|l| config.has_prefix(&l.name) && ifname::validate(&l.name).is_err())
        .map(|l| l.name.as_str())
        .collect()
}

/// The guest configuration files that [`build`] will consult for these links.
pub fn guests_to_read(config: &Config, links: &[HostLink]) -> BTreeSet<GuestId> {
    candidates(config, links)
        .filter_map(|l| {
            let Nature::Proxmox(nic) = nature(config, l) else {
                return None;
            };
            match &l.master {
                Master::None | Master::Ovs => Some(nic.guest),
                Master::Other(m) if firewall::is_fwbr_of(m, nic) => Some(nic.guest),
                Master::Other(_) => None,
            }
        })
        .collect()
}

/// The guest configurations [`build`] consults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guests {
    /// Whether the host has a Proxmox configuration directory at all.
    pub proxmox: bool,
    /// One entry for each of [`guests_to_read`].
    pub files: BTreeMap<GuestId, GuestFile>,
    /// The LXC containers of the raw NICs ([`raw_nics`]), by NIC; a NIC without an entry has
    /// none ([`Lookup::NoContainer`]).
    pub containers: BTreeMap<String, Lookup>,
}

/// The raw container NICs whose container the adapters look for: veths whose peer is in
/// another network namespace, on no master or on OVS (a NIC in someone else's bridge is left
/// alone anyway). Empty on a host with Proxmox guests only, so that nothing is scanned there.
pub fn raw_nics<'a>(config: &'a Config, links: &'a [HostLink]) -> impl Iterator<Item = &'a str> {
    candidates(config, links)
        .filter(|l| {
            l.peer_elsewhere
                && matches!(l.master, Master::None | Master::Ovs)
                && nature(config, l) == Nature::Raw
        })
        .map(|l| l.name.as_str())
}

/// Decides every candidate link from the guest configurations and what OVS holds (`seen`).
pub fn build(config: &Config, links: &[HostLink], guests: &Guests, seen: Seen<'_>) -> Desired {
    let mut desired = Desired::default();
    for link in candidates(config, links) {
        let nature = nature(config, link);
        if let Nature::Proxmox(nic) = nature
            && nic.guest.kind == Kind::Lxc
            && !seen.busy.contains(&nic.guest)
            && matches!(guests.files.get(&nic.guest), Some(GuestFile::Parsed(conf))
                if matches!(conf.nets.get(&nic.index), Some(Ok(spec)) if spec.link_down))
        {
            desired.down.insert(link.name.clone());
        }
        let decision = decide(
            config,
            link,
            nature,
            guests,
            seen,
            &mut desired.pending,
            &mut desired.sources,
        );
        desired.nics.insert(link.name.clone(), decision);
    }
    desired
}

fn decide(
    config: &Config,
    link: &HostLink,
    nature: Nature,
    guests: &Guests,
    seen: Seen<'_>,
    pending: &mut BTreeMap<String, Pending>,
    sources: &mut BTreeMap<String, Source>,
) -> Decision {
    let nic = match nature {
        Nature::Other(why) => return Decision::Ignore(why),
        Nature::Proxmox(nic) if seen.busy.contains(&nic.guest) => {
            return Decision::Ignore(format!(
                "Proxmox is working on guest {} (its configuration lock is held): left to Proxmox until the lock is released",
                nic.guest.vmid
            ));
        }
        Nature::Proxmox(nic) => Some(nic),
        // A container manager that plugs its own NICs (LXC with `lxc.net.N.link` on an OVS
        // bridge, ovs-cni) put this port there with the VLAN it wants: correcting it to the
        // default bridge would undo that, so only a port of the tool's own is kept in step.
        Nature::Raw
            if link.master == Master::Ovs
                && !seen.observed.ports.get(&link.name).is_some_and(|p| p.owned) =>
        {
            return Decision::Ignore(
                "a container NIC on an OVS port someone else made (its container manager plugs it itself)".into(),
            );
        }
        Nature::Raw => None,
    };
    // A NIC in its own fwbr is decided from its configuration: it may be a firewall NIC to
    // repair, or one whose firewall was switched off. Any other master is someone else's.
    match (&link.master, nic) {
        (Master::Other(master), Some(nic)) if firewall::is_fwbr_of(master, nic) => {}
        (Master::Other(master), _) => return Decision::Ignore(format!("enslaved to {master}")),
        _ => {}
    }
    let file = nic.and_then(|n| guests.files.get(&n.guest));
    match (nic, file) {
        (Some(nic), Some(GuestFile::Parsed(conf))) => {
            from_guest(&link.name, nic, conf, seen, pending)
        }
        (Some(nic), Some(GuestFile::Unreadable(e))) => {
            Decision::Invalid(format!("guest {} configuration: {e}", nic.guest.vmid))
        }
        // A Proxmox NIC whose guest has no configuration anywhere on a Proxmox node: the guest
        // is being destroyed, or the cluster filesystem is not mounted. Guessing "default
        // bridge, untagged" could drop a tagged guest into the wrong network, so it is left as
        // it is.
        (Some(nic), _) if guests.proxmox => Decision::Ignore(format!(
            "no configuration for guest {} in the Proxmox configuration directory",
            nic.guest.vmid
        )),
        // No Proxmox configuration: a raw container's NIC, an `include` match, or a
        // Proxmox-named NIC on a host without Proxmox.
        _ => {
            let (decision, source) = raw(config, link, guests, seen);
            if let Some(source) = source {
                sources.insert(link.name.clone(), source);
            }
            decision
        }
    }
}

/// Where a NIC goes that no Proxmox configuration describes, and what said so. In this order:
///
/// 1. its LXC container's own configuration, when the `lxc.net.N` entry that made the NIC names
///    a bridge (`link`) or routes (`veth.mode router`, left alone): on an OVS bridge, the port
///    LXC itself makes there (see [`crate::decide::lxc`]), which `plug` and a container that
///    is starting leave to LXC; on any other bridge, kept off OVS;
/// 2. the first `raw` rule that matches the container's name or the NIC's;
/// 3. `raw_default`;
/// 4. `bridge`, untagged.
///
/// A NIC already on a port stays as it is when its container is not known for sure (the look
/// did not complete, or which entry made the NIC cannot be told and one could place it):
/// a miss must not move a placed NIC to the fallback, which may carry every VLAN.
fn raw(
    config: &Config,
    link: &HostLink,
    guests: &Guests,
    seen: Seen<'_>,
) -> (Decision, Option<Source>) {
    let name = link.name.as_str();
    let on_port = link.master == Master::Ovs || seen.observed.ports.contains_key(name);
    let bridges = &seen.observed.bridges;
    let container = match guests.containers.get(name) {
        Some(Lookup::Unknown(why)) if on_port => {
            return (
                Decision::Ignore(format!(
                    "its LXC container is not known right now ({why}): left on its port"
                )),
                None,
            );
        }
        Some(Lookup::Found(c)) => {
            if let Some(decision) = from_container(c, name, on_port, seen.plug, bridges) {
                return (decision, Some(Source::Lxc(c.name.clone())));
            }
            Some(c)
        }
        _ => None,
    };
    let owner = container.map(|c| c.name.as_str());
    let (place, source) = match config.raw.iter().position(|r| r.matches(name, owner)) {
        Some(i) => (config.raw[i].place(), Source::Rule(i + 1)),
        None => match &config.raw_default {
            Some(place) => (place.clone(), Source::RawDefault),
            None => {
                let decision = if bridges.contains_key(&config.bridge) {
                    Decision::Attach(Target::plain(config.bridge.clone(), Vlan::default()))
                } else {
                    Decision::Invalid(format!(
                        "the default bridge {} does not exist in Open vSwitch",
                        config.bridge
                    ))
                };
                return (decision, Some(Source::DefaultBridge));
            }
        },
    };
    (configured(&place, &source, bridges), Some(source))
}

/// What container `c`'s configuration says of its host end `name`; `None` when it says nothing
/// (no configuration, or the entry names no bridge) and the rules decide.
fn from_container(
    c: &Container,
    name: &str,
    on_port: bool,
    plug: bool,
    bridges: &BTreeMap<String, Uuid>,
) -> Option<Decision> {
    let conf = match &c.config {
        Err(e) => return Some(Decision::Invalid(format!("LXC container {}: {e}", c.name))),
        Ok(conf) => conf.as_ref()?,
    };
    let Some((n, net)) = conf.entry_for(name, &c.siblings) else {
        return (on_port && conf.places_unnamed()).then(|| {
            Decision::Ignore(format!(
                "{}: which lxc.net entry made this NIC cannot be told (a veth added by other means?): left on its port",
                c.path
            ))
        });
    };
    let mode = match net.mode {
        VethMode::Bridge => None,
        VethMode::Router => Some("router"),
        VethMode::Cleared => Some("empty"),
    };
    if let Some(mode) = mode {
        return Some(Decision::Ignore(format!(
            "{} lxc.net.{n}.veth.mode is {mode}: LXC attaches it to no bridge",
            c.path
        )));
    }
    let link = net.link.as_ref()?;
    Some(match net.ovs_vlan() {
        Err(e) => Decision::Invalid(format!("{} {e}", c.path)),
        Ok(_) if !bridges.contains_key(link) => Decision::Detach(format!(
            "{} lxc.net.{n}.link {link} is not an OVS bridge",
            c.path
        )),
        // LXC adds the port itself (`ovs-vsctl add-port` without `--may-exist`, which fails
        // when the port is there first): a NIC just made, or one of a container LXC is still
        // setting up, is LXC's to plug. Later, only a NIC on no port (an ifreload dropped it)
        // is put back, as LXC would have.
        Ok(_) if plug || (c.starting && !on_port) => Decision::Ignore(format!(
            "LXC plugs it itself ({} lxc.net.{n}.link {link}{})",
            c.path,
            if plug {
                ""
            } else {
                "; the container is starting"
            }
        )),
        Ok(vlan) => Decision::Attach(Target::plain(link.clone(), vlan)),
    })
}

/// A place from the tool's configuration (checked when it was loaded).
fn configured(place: &RawPlace, source: &Source, bridges: &BTreeMap<String, Uuid>) -> Decision {
    match place.vlan() {
        Err(e) => Decision::Invalid(format!("{source}: {e}")),
        Ok(_) if !bridges.contains_key(&place.bridge) => Decision::Invalid(format!(
            "{source}: the bridge {} does not exist in Open vSwitch",
            place.bridge
        )),
        Ok(vlan) => Decision::Attach(Target::plain(place.bridge.clone(), vlan)),
    }
}

/// A QEMU NIC's decision, with its pending value in view. The configuration alone cannot say
/// which value a running NIC carries: `vm_start` applies pending values before a start (except
/// on a resume from a state file), `vmconfig_update_net` changes bridge, tag, trunks and
/// firewall live, and `pve-bridge` plugs the pending value during the hotplug of that very
/// change. So a pending value on a running VM is usually one Proxmox could not hotplug, and the
/// VM keeps running on the current value. The rule:
/// - whichever value OVS holds now is left alone;
/// - otherwise (a port lost to a reload), the value the tool's own record says the port last
///   had, if it is one of the two;
/// - otherwise the current value. A pending value never detaches, moves or re-shapes a NIC by
///   itself.
///
/// pve-container's `lxcnetaddbr` and `update_net` use the current value only, and so does this
/// for containers.
fn from_guest(
    name: &str,
    nic: NicId,
    conf: &GuestConfig,
    seen: Seen<'_>,
    pending: &mut BTreeMap<String, Pending>,
) -> Decision {
    let key = nic.key();
    let bridges = &seen.observed.bridges;
    let spec = match conf.nets.get(&nic.index) {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => return Decision::Invalid(format!("{key}: {e}")),
        // `qm set --netN` on a running VM: pve-bridge plugs the new NIC with its pending value
        // before Proxmox commits it. Kept where OVS holds it, otherwise left to Proxmox.
        None => {
            return match conf.pending.get(&nic.index) {
                Some(Ok(next)) if nic.guest.kind == Kind::Qemu => {
                    match from_spec(nic, next, bridges) {
                        Ok(Decision::Attach(t)) if holds(seen.observed, name, &t) => {
                            Decision::Attach(t)
                        }
                        _ => Decision::Ignore(format!(
                            "{key} exists only as a pending value (a hotplug under way): left to Proxmox"
                        )),
                    }
                }
                _ => Decision::Invalid(format!("{key} is missing from the guest configuration")),
            };
        }
    };
    let current = match from_spec(nic, spec, bridges) {
        Ok(d) | Err(d) => d,
    };
    // A broken pending value is Proxmox's to report; the current one stands.
    let Some(Ok(next)) = conf
        .pending
        .get(&nic.index)
        .filter(|_| nic.guest.kind == Kind::Qemu)
    else {
        return current;
    };
    let next = match from_spec(nic, next, bridges) {
        Ok(d) | Err(d) => d,
    };
    if next == current {
        return current;
    }
    let held = |d: &Decision| match d {
        Decision::Attach(t) => holds(seen.observed, name, t),
        // A NIC off OVS is what a lost port looks like too: that is no sign of a pending
        // detach, and a NIC Proxmox put into a Linux bridge is decided before (its master).
        Decision::Detach(_) | Decision::Ignore(_) | Decision::Invalid(_) => false,
    };
    let recorded = |d: &Decision| match d {
        Decision::Attach(t) => seen
            .record
            .get(t.port(name))
            .is_some_and(|(b, v)| t.accepts(b, v)),
        _ => false,
    };
    let chosen = if held(&current) {
        Chosen::Current
    } else if held(&next) {
        Chosen::Pending
    } else if recorded(&current) {
        Chosen::Current
    } else if recorded(&next) {
        Chosen::Pending
    } else {
        Chosen::Current
    };
    pending.insert(
        name.to_string(),
        Pending {
            value: describe(&next),
            chosen,
        },
    );
    match chosen {
        Chosen::Current => current,
        Chosen::Pending => next,
    }
}

/// Whether OVS holds NIC `name` where `target` puts it: its port (the NIC's own, or its fwln) on
/// that bridge with that VLAN.
fn holds(observed: &Observed, name: &str, target: &Target) -> bool {
    observed.ports.get(target.port(name)).is_some_and(|p| {
        p.bridge
            .as_deref()
            .is_some_and(|b| target.accepts(b, &p.vlan))
    })
}

/// A decision in a few words, for `status`.
fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Attach(t) => {
            let fw = if t.firewall.is_some() {
                " firewall=1"
            } else {
                ""
            };
            format!("{} {}{fw}", t.bridge, t.vlan)
        }
        Decision::Detach(why) | Decision::Ignore(why) | Decision::Invalid(why) => why.clone(),
    }
}

/// The decision for one `net<n>` value; `Err` carries a decision that is final whatever else
/// the configuration says.
fn from_spec(
    nic: NicId,
    spec: &NetSpec,
    bridges: &BTreeMap<String, Uuid>,
) -> Result<Decision, Decision> {
    let key = nic.key();
    let Some(bridge) = &spec.bridge else {
        return Ok(Decision::Detach(format!("{key} names no bridge")));
    };
    if !bridges.contains_key(bridge) {
        return Ok(Decision::Detach(format!(
            "{key} bridge {bridge} is not an OVS bridge"
        )));
    }
    // Proxmox keeps an LXC NIC with link_down=1 off its bridge on purpose (and sets it down);
    // QEMU's link_down is a QMP link state and the tap stays attached.
    if spec.link_down && nic.guest.kind == Kind::Lxc {
        return Ok(Decision::Detach(format!("{key} has link_down=1")));
    }
    let firewall = if spec.firewall {
        let names = firewall::names(nic);
        if let Err(e) = ifname::validate(&names.fwln) {
            // Proxmox's own check_iface_name refuses it too: such a NIC cannot be plugged.
            return Err(Decision::Invalid(format!("{key} has firewall=1, but {e}")));
        }
        Some(names)
    } else {
        None
    };
    Ok(Decision::Attach(Target {
        bridge: bridge.clone(),
        vlan: Vlan::proxmox(spec.tag, spec.trunks.clone()),
        firewall,
        rate: spec.rate,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::guest::GuestConfig;
    use crate::decide::observed::PortState;
    use crate::decide::testing::link;

    fn bridges(names: &[&str]) -> Observed {
        Observed {
            bridges: names
                .iter()
                .map(|b| (b.to_string(), format!("uuid-{b}")))
                .collect(),
            ..Observed::default()
        }
    }

    /// [`build`] with no record and no busy guest.
    fn build_at(
        config: &Config,
        links: &[HostLink],
        guests: &Guests,
        observed: &Observed,
    ) -> Desired {
        let seen = Seen {
            observed,
            record: &Record::new(),
            busy: &BTreeSet::new(),
            plug: false,
        };
        build(config, links, guests, seen)
    }

    fn guest(kind: Kind, vmid: u32, text: &str) -> (GuestId, GuestFile) {
        (
            GuestId { kind, vmid },
            GuestFile::Parsed(GuestConfig::parse(kind, text)),
        )
    }

    fn decide_one(links: &[HostLink], guests: &[(GuestId, GuestFile)], br: &[&str]) -> Desired {
        let guests = Guests {
            proxmox: true,
            files: guests.iter().cloned().collect(),
            containers: BTreeMap::new(),
        };
        build_at(&Config::default(), links, &guests, &bridges(br))
    }

    fn attach(bridge: &str, vlan: Vlan) -> Decision {
        Decision::Attach(Target::plain(bridge, vlan))
    }

    #[test]
    fn raw_and_unconfigured_nics_go_to_the_default_bridge() {
        let links = [link("vethA1b2C3"), link("tap100i0")];
        let missing = (
            GuestId {
                kind: Kind::Qemu,
                vmid: 100,
            },
            GuestFile::Missing,
        );
        let d = decide_one(&links, std::slice::from_ref(&missing), &["ovsbr0"]);
        assert_eq!(d.nics["vethA1b2C3"], attach("ovsbr0", Vlan::default()));
        // On a Proxmox node a Proxmox NIC without configuration is left alone...
        assert!(matches!(d.nics["tap100i0"], Decision::Ignore(_)));
        // ...while a host without Proxmox treats it like any other NIC.
        let guests = Guests {
            proxmox: false,
            files: [missing].into(),
            containers: BTreeMap::new(),
        };
        let d = build_at(&Config::default(), &links, &guests, &bridges(&["ovsbr0"]));
        assert_eq!(d.nics["tap100i0"], attach("ovsbr0", Vlan::default()));
    }

    #[test]
    fn missing_default_bridge_is_invalid() {
        let d = decide_one(&[link("vethA1b2C3")], &[], &["vmbr1"]);
        assert!(matches!(d.nics["vethA1b2C3"], Decision::Invalid(_)));
    }

    #[test]
    fn hostile_names_are_refused_not_decided() {
        let links = [
            link("tap$(id>pw)"),
            link("tap a"),
            link("veth;x"),
            link("tap100i0"),
            link("eno;1"),
        ];
        let d = build_at(
            &Config::default(),
            &links,
            &Guests::default(),
            &bridges(&["ovsbr0"]),
        );
        assert_eq!(d.nics.keys().collect::<Vec<_>>(), vec!["tap100i0"]);
        assert_eq!(
            refused_names(&Config::default(), &links),
            vec!["tap$(id>pw)", "tap a", "veth;x"]
        );
    }

    #[test]
    fn non_candidates_are_not_decided() {
        let cfg = Config {
            exclude: vec!["tap9*".into()],
            ..Config::default()
        };
        let links = [
            link("eno1"),
            link("tap900i0"),
            HostLink {
                name: "vethovs".into(),
                kind: Some("openvswitch".into()),
                master: Master::None,
                peer_elsewhere: false,
                addressed: false,
            },
        ];
        let d = build_at(&cfg, &links, &Guests::default(), &bridges(&["ovsbr0"]));
        assert!(d.nics.is_empty(), "{d:?}");
    }

    #[test]
    fn guest_configuration_decides() {
        let g = guest(
            Kind::Qemu,
            100,
            "net0: virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr1,tag=10,trunks=20;30\nnet1: virtio,bridge=vmbr1,trunks=5\n",
        );
        let d = decide_one(
            &[link("tap100i0"), link("tap100i1")],
            &[g],
            &["ovsbr0", "vmbr1"],
        );
        assert_eq!(
            d.nics["tap100i0"],
            attach("vmbr1", Vlan::proxmox(Some(10), vec![20, 30]))
        );
        assert_eq!(
            d.nics["tap100i1"],
            attach("vmbr1", Vlan::proxmox(None, vec![5]))
        );
    }

    /// Trunk IDs 0 and 4095 reach the port as Proxmox's own `tap_plug` would set them.
    #[test]
    fn trunk_edges_are_attached() {
        let g = guest(
            Kind::Qemu,
            102,
            "net0: virtio,bridge=vmbr1,tag=10,trunks=0;4095\nnet1: virtio,bridge=vmbr1,tag=10,trunks=0\n",
        );
        let d = decide_one(&[link("tap102i0"), link("tap102i1")], &[g], &["vmbr1"]);
        assert_eq!(
            d.nics["tap102i0"],
            attach("vmbr1", Vlan::proxmox(Some(10), vec![0, 4095]))
        );
        assert_eq!(
            d.nics["tap102i1"],
            attach("vmbr1", Vlan::proxmox(Some(10), vec![]))
        );
    }

    #[test]
    fn linux_bridge_or_no_bridge_detaches() {
        let g = guest(Kind::Qemu, 101, "net0: virtio,bridge=vmbr0\nnet1: virtio\n");
        let d = decide_one(&[link("tap101i0"), link("tap101i1")], &[g], &["ovsbr0"]);
        assert!(matches!(d.nics["tap101i0"], Decision::Detach(_)));
        assert!(matches!(d.nics["tap101i1"], Decision::Detach(_)));
    }

    #[test]
    fn link_down_detaches_lxc_only() {
        let l = guest(
            Kind::Lxc,
            200,
            "net0: name=eth0,bridge=ovsbr0,link_down=1\n",
        );
        let q = guest(Kind::Qemu, 200, "net0: virtio,bridge=ovsbr0,link_down=1\n");
        let d = decide_one(&[link("veth200i0"), link("tap200i0")], &[l, q], &["ovsbr0"]);
        assert!(matches!(d.nics["veth200i0"], Decision::Detach(_)));
        assert_eq!(d.nics["tap200i0"], attach("ovsbr0", Vlan::default()));
    }

    #[test]
    fn firewall_nics_get_the_fwbr_shape_and_foreign_masters_are_ignored() {
        let g = guest(
            Kind::Qemu,
            300,
            "net0: virtio,bridge=ovsbr0,firewall=1,tag=10,rate=5\nnet1: virtio,bridge=ovsbr0\nnet2: virtio,bridge=ovsbr0,firewall=1\n",
        );
        let in_own_fwbr = HostLink {
            name: "tap300i2".into(),
            kind: Some("tun".into()),
            master: Master::Other("fwbr300i2".into()),
            peer_elsewhere: false,
            addressed: false,
        };
        let in_other_bridge = HostLink {
            name: "tap300i1".into(),
            kind: Some("tun".into()),
            master: Master::Other("fwbr300i0".into()),
            peer_elsewhere: false,
            addressed: false,
        };
        let on_ovs = HostLink {
            name: "tap301i0".into(),
            kind: Some("tun".into()),
            master: Master::Ovs,
            peer_elsewhere: false,
            addressed: false,
        };
        let g301 = guest(Kind::Qemu, 301, "net0: virtio,bridge=ovsbr0\n");
        let d = decide_one(
            &[link("tap300i0"), in_other_bridge, in_own_fwbr, on_ovs],
            &[g, g301],
            &["ovsbr0"],
        );
        let Decision::Attach(t) = &d.nics["tap300i0"] else {
            panic!("{:?}", d.nics["tap300i0"]);
        };
        assert_eq!(t.port("tap300i0"), "fwln300o0");
        assert_eq!(t.firewall.as_ref().unwrap().fwbr, "fwbr300i0");
        assert_eq!(t.vlan, Vlan::proxmox(Some(10), vec![]));
        assert_eq!(t.rate, Some(5 * 1_048_576));
        assert!(
            matches!(&d.nics["tap300i2"], Decision::Attach(t) if t.port("tap300i2") == "fwln300o2")
        );
        assert!(
            matches!(d.nics["tap300i1"], Decision::Ignore(_)),
            "someone else's bridge"
        );
        assert_eq!(d.nics["tap301i0"], attach("ovsbr0", Vlan::default()));
    }

    /// qemu-server `src/usr/pve-bridge`: `$netconf = $conf->{pending}->{$netid} if
    /// !$migratedfrom && defined($conf->{pending}->{$netid})`, but `vm_start_nolock` applies
    /// pending values before a start and `vmconfig_update_net` changes the network live: a NIC
    /// may run on either value. pve-container's `lxcnetaddbr` reads `$conf->{"net$2"}` only.
    #[test]
    fn a_pending_value_never_acts_on_its_own() {
        let text =
            "net0: virtio,bridge=vmbr1,tag=10\n[PENDING]\nnet0: virtio,bridge=vmbr1,tag=20\n";
        let q = guest(Kind::Qemu, 100, text);
        let l = guest(Kind::Lxc, 100, &text.replace("virtio", "name=eth0"));
        let tag = |t| Vlan::proxmox(Some(t), vec![]);
        let port = |t| PortState {
            uuid: "U".into(),
            bridge: Some("vmbr1".into()),
            vlan: tag(t),
            owned: true,
        };
        let decide = |port: Option<PortState>, record: Option<u16>| {
            let mut o = bridges(&["vmbr1"]);
            o.ports.extend(port.map(|p| ("tap100i0".to_string(), p)));
            let record: Record = record
                .map(|t| ("tap100i0".to_string(), ("vmbr1".to_string(), tag(t))))
                .into_iter()
                .collect();
            let guests = Guests {
                proxmox: true,
                files: [q.clone(), l.clone()].into(),
                containers: BTreeMap::new(),
            };
            let seen = Seen {
                observed: &o,
                record: &record,
                busy: &BTreeSet::new(),
                plug: false,
            };
            build(
                &Config::default(),
                &[link("tap100i0"), link("veth100i0")],
                &guests,
                seen,
            )
        };
        let vlan_of = |d: &Desired| match &d.nics["tap100i0"] {
            Decision::Attach(t) => t.vlan.clone(),
            other => panic!("{other:?}"),
        };
        // Where OVS holds either value, that value stands.
        assert_eq!(vlan_of(&decide(Some(port(10)), None)), tag(10));
        assert_eq!(vlan_of(&decide(Some(port(20)), Some(10))), tag(20));
        // A lost port comes back where the record says it was, if that is one of the two.
        assert_eq!(vlan_of(&decide(None, Some(20))), tag(20));
        assert_eq!(vlan_of(&decide(None, Some(10))), tag(10));
        // Otherwise the current value: never the pending one by itself.
        assert_eq!(vlan_of(&decide(None, None)), tag(10));
        assert_eq!(vlan_of(&decide(None, Some(30))), tag(10));
        assert_eq!(vlan_of(&decide(Some(port(30)), None)), tag(10));
        let d = decide(None, None);
        assert_eq!(
            d.pending["tap100i0"],
            Pending {
                value: "vmbr1 tag=20".into(),
                chosen: Chosen::Current
            }
        );
        assert_eq!(
            d.nics["veth100i0"],
            attach("vmbr1", tag(10)),
            "LXC ignores pending values"
        );
        assert!(!d.pending.contains_key("veth100i0"));
    }

    /// A pending Linux bridge, or a pending firewall shape, never takes a running NIC off the
    /// place its current value gives it.
    #[test]
    fn pending_bridges_and_firewall_shapes() {
        let decide = |text: &str, ports: &[(&str, u16)]| {
            let mut o = bridges(&["vmbr1"]);
            for (name, t) in ports {
                o.ports.insert(
                    name.to_string(),
                    PortState {
                        uuid: format!("U{name}"),
                        bridge: Some("vmbr1".into()),
                        vlan: Vlan::proxmox(Some(*t), vec![]),
                        owned: true,
                    },
                );
            }
            let guests = Guests {
                proxmox: true,
                files: [guest(Kind::Qemu, 100, text)].into(),
                containers: BTreeMap::new(),
            };
            let seen = Seen {
                observed: &o,
                record: &Record::new(),
                busy: &BTreeSet::new(),
                plug: false,
            };
            build(&Config::default(), &[link("tap100i0")], &guests, seen)
        };
        let to_linux =
            "net0: virtio,bridge=vmbr1,tag=10\n[PENDING]\nnet0: virtio,bridge=vmbr9,tag=10\n";
        for ports in [&[("tap100i0", 10)][..], &[]] {
            let d = decide(to_linux, ports);
            assert_eq!(
                d.nics["tap100i0"],
                attach("vmbr1", Vlan::proxmox(Some(10), vec![]))
            );
            assert!(d.pending["tap100i0"].value.contains("vmbr9"));
        }
        let fw_on = "net0: virtio,bridge=vmbr1,tag=10\n[PENDING]\nnet0: virtio,bridge=vmbr1,tag=10,firewall=1\n";
        let d = decide(fw_on, &[("tap100i0", 10)]);
        assert!(matches!(&d.nics["tap100i0"], Decision::Attach(t) if t.firewall.is_none()));
        let d = decide(fw_on, &[("fwln100o0", 10)]);
        assert!(
            matches!(&d.nics["tap100i0"], Decision::Attach(t) if t.firewall.is_some()),
            "the pending shape is in place: left as it is"
        );
        let fw_off = "net0: virtio,bridge=vmbr1,tag=10,firewall=1\n[PENDING]\nnet0: virtio,bridge=vmbr1,tag=10\n";
        let d = decide(fw_off, &[("fwln100o0", 10)]);
        assert!(matches!(&d.nics["tap100i0"], Decision::Attach(t) if t.firewall.is_some()));
        let d = decide(fw_off, &[]);
        assert!(
            matches!(&d.nics["tap100i0"], Decision::Attach(t) if t.firewall.is_some()),
            "a lost fwln comes back as the current value says"
        );
    }

    /// A raw container NIC on an OVS port someone else made (its container manager plugs it
    /// with the VLAN it wants) is left alone; one on a port of the tool's is kept in step.
    #[test]
    fn raw_nics_on_foreign_ports_are_left_alone() {
        let on_ovs = |name: &str| HostLink {
            master: Master::Ovs,
            ..link(name)
        };
        let mut o = bridges(&["ovsbr0", "ovsbr1"]);
        for (name, owned) in [("vethAb12Cd", false), ("vethEf34Gh", true)] {
            o.ports.insert(
                name.into(),
                PortState {
                    uuid: format!("U{name}"),
                    bridge: Some("ovsbr1".into()),
                    vlan: Vlan::proxmox(Some(10), vec![]),
                    owned,
                },
            );
        }
        let d = build_at(
            &Config::default(),
            &[
                on_ovs("vethAb12Cd"),
                on_ovs("vethEf34Gh"),
                link("vethIj56Kl"),
            ],
            &Guests::default(),
            &o,
        );
        assert!(matches!(d.nics["vethAb12Cd"], Decision::Ignore(_)));
        assert_eq!(d.nics["vethEf34Gh"], attach("ovsbr0", Vlan::default()));
        assert_eq!(d.nics["vethIj56Kl"], attach("ovsbr0", Vlan::default()));
    }

    /// `qm set --net1` on a running VM: pve-bridge plugs the new NIC with the pending value
    /// before `net1` is current. Kept where OVS holds it, otherwise left to Proxmox; never
    /// invalid.
    #[test]
    fn a_nic_that_exists_only_as_pending_is_left_to_proxmox() {
        let g = guest(
            Kind::Qemu,
            100,
            "net0: virtio,bridge=vmbr1\n[PENDING]\nnet1: virtio,bridge=vmbr1,tag=20\n",
        );
        let d = decide_one(&[link("tap100i1")], std::slice::from_ref(&g), &["vmbr1"]);
        assert!(matches!(&d.nics["tap100i1"], Decision::Ignore(why) if why.contains("pending")));
        let mut o = bridges(&["vmbr1"]);
        o.ports.insert(
            "tap100i1".into(),
            PortState {
                uuid: "U".into(),
                bridge: Some("vmbr1".into()),
                vlan: Vlan::proxmox(Some(20), vec![]),
                owned: false,
            },
        );
        let guests = Guests {
            proxmox: true,
            files: [g].into(),
            containers: BTreeMap::new(),
        };
        let d = build_at(&Config::default(), &[link("tap100i1")], &guests, &o);
        assert_eq!(
            d.nics["tap100i1"],
            attach("vmbr1", Vlan::proxmox(Some(20), vec![]))
        );
    }

    /// Links a name prefix matches that are not guest NICs are decided as ignored, with what
    /// they are; a busy guest's NICs are left to Proxmox.
    #[test]
    fn only_guest_nics_are_decided() {
        let l = |name: &str, kind: &str, peer_elsewhere: bool| HostLink {
            name: name.into(),
            kind: Some(kind.into()),
            master: Master::None,
            peer_elsewhere,
            addressed: false,
        };
        let links = [
            l("tap0", "tun", false),
            l("vethhost", "veth", false),
            l("tapnet1", "bridge", false),
            l("veth100i1p", "veth", false),
            l("veth100i0", "tun", false),
            l("vethA1b2C3", "veth", true),
            HostLink {
                addressed: true,
                ..l("vethrt0", "veth", true)
            },
            l("tap101i0", "tun", false),
            l("veth102i0", "veth", false),
        ];
        let guests = Guests {
            proxmox: true,
            files: [
                guest(Kind::Qemu, 101, "net0: virtio,bridge=ovsbr0\n"),
                guest(Kind::Lxc, 102, "net0: name=eth0,bridge=ovsbr0\n"),
            ]
            .into(),
            containers: BTreeMap::new(),
        };
        // The default bridge is missing: an ignored link must not fail the run for that.
        let o = bridges(&["vmbr1"]);
        let d = build_at(&Config::default(), &links, &guests, &o);
        for name in [
            "tap0",
            "vethhost",
            "tapnet1",
            "veth100i1p",
            "veth100i0",
            "vethrt0",
        ] {
            assert!(
                matches!(d.nics[name], Decision::Ignore(_)),
                "{name}: {:?}",
                d.nics[name]
            );
        }
        assert!(
            matches!(d.nics["vethA1b2C3"], Decision::Invalid(_)),
            "a raw NIC needs the default bridge"
        );
        let defaults = Config::default();
        let names: Vec<&str> = guest_nics(&defaults, &links)
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["vethA1b2C3", "tap101i0", "veth102i0"]);
        let cfg = Config {
            include: vec!["tap0".into()],
            ..Config::default()
        };
        assert_eq!(nature(&cfg, &links[0]), Nature::Raw, "opted in");
        let o = bridges(&["ovsbr0"]);
        let busy = [GuestId {
            kind: Kind::Qemu,
            vmid: 101,
        }]
        .into();
        let seen = Seen {
            observed: &o,
            record: &Record::new(),
            busy: &busy,
            plug: false,
        };
        let d = build(&Config::default(), &links, &guests, seen);
        assert!(
            matches!(&d.nics["tap101i0"], Decision::Ignore(why) if why.contains("Proxmox is working"))
        );
        assert_eq!(d.nics["veth102i0"], attach("ovsbr0", Vlan::default()));
    }

    #[test]
    fn broken_configurations_are_invalid() {
        let g = guest(Kind::Lxc, 400, "net1: name=eth1,bridge=ovsbr0,tag=4095\n");
        let u = (
            GuestId {
                kind: Kind::Qemu,
                vmid: 401,
            },
            GuestFile::Unreadable("too large".into()),
        );
        let d = decide_one(
            &[link("veth400i0"), link("veth400i1"), link("tap401i0")],
            &[g, u],
            &["ovsbr0"],
        );
        for n in ["veth400i0", "veth400i1", "tap401i0"] {
            assert!(
                matches!(d.nics[n], Decision::Invalid(_)),
                "{n}: {:?}",
                d.nics[n]
            );
        }
    }

    #[test]
    fn guests_to_read_skips_enslaved_and_raw() {
        // A NIC in its own fwbr is read (it may need repairing); in any other bridge, not.
        let links = [
            link("tap100i0"),
            link("tap100i1"),
            link("veth200i0"),
            link("vethXYZ"),
            HostLink {
                name: "tap300i0".into(),
                kind: None,
                master: Master::Other("vmbr9".into()),
                peer_elsewhere: false,
                addressed: false,
            },
            HostLink {
                name: "tap100i2".into(),
                kind: None,
                master: Master::Other("fwbr100i2".into()),
                peer_elsewhere: false,
                addressed: false,
            },
        ];
        let ids: Vec<_> = guests_to_read(&Config::default(), &links)
            .into_iter()
            .collect();
        assert_eq!(
            ids,
            vec![
                GuestId {
                    kind: Kind::Qemu,
                    vmid: 100
                },
                GuestId {
                    kind: Kind::Lxc,
                    vmid: 200
                }
            ]
        );
    }

    /// A raw container's NIC: its LXC configuration first (as LXC plugs it on OVS), then the
    /// first matching `raw` rule, then `raw_default`, then the default bridge untagged; the
    /// source of each is kept for `status`.
    #[test]
    fn raw_nics_are_placed_by_their_container_then_the_rules() {
        use crate::decide::config::{RawPlace, RawRule};
        use crate::decide::vlan::VlanMode;
        let ct = |name: &str, text: Option<&str>, siblings: &[&str]| {
            Lookup::Found(Container {
                name: name.into(),
                path: format!("/var/lib/lxc/{name}/config"),
                starting: false,
                config: Ok(text.map(LxcConfig::parse)),
                siblings: siblings.iter().map(|s| s.to_string()).collect(),
            })
        };
        let rule = |container: Option<&str>, nic: Option<&str>, bridge: &str, tag: u16| RawRule {
            container: container.map(Into::into),
            nic: nic.map(Into::into),
            bridge: bridge.into(),
            tag: Some(tag),
            trunks: vec![],
            vlan_mode: None,
        };
        let config = Config {
            raw: vec![
                rule(Some("web"), None, "vmbr2", 40),
                rule(None, Some("vethdb*"), "vmbr2", 50),
            ],
            raw_default: Some(RawPlace {
                bridge: "ovsbr0".into(),
                tag: Some(999),
                trunks: vec![],
                vlan_mode: None,
            }),
            ..Config::default()
        };
        let containers = [
            (
                "vethA",
                ct("ct1", Some("lxc.net.0.type = veth\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 30\n"), &["vethA"]),
            ),
            // The configuration names no bridge: the rule for the container decides.
            ("vethB", ct("web", Some("lxc.net.0.type = veth\n"), &["vethB"])),
            ("vethC", ct("lin", Some("lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\n"), &["vethC"])),
            ("vethD", ct("bad", Some("lxc.net.0.type = veth\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 5000\n"), &["vethD"])),
            (
                "vethE",
                ct("two", Some("lxc.net.0.type = veth\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.tagged.id = 7\nlxc.net.1.type = veth\nlxc.net.1.veth.pair = vethF\n"), &["vethE", "vethF"]),
            ),
            ("vethF", ct("two", None, &["vethE", "vethF"])),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
        let guests = Guests {
            containers,
            ..Guests::default()
        };
        let names = [
            "vethA", "vethB", "vethC", "vethD", "vethE", "vethF", "vethdb1", "vethZ",
        ];
        let links: Vec<HostLink> = names.iter().map(|n| link(n)).collect();
        let o = bridges(&["ovsbr0", "vmbr1", "vmbr2"]);
        let d = build_at(&config, &links, &guests, &o);
        let mode = |tag, trunks: &[u16], mode| Vlan {
            tag,
            trunks: trunks.to_vec(),
            mode,
        };
        assert_eq!(
            d.nics["vethA"],
            attach("vmbr1", mode(Some(30), &[], Some(VlanMode::Access)))
        );
        assert_eq!(d.sources["vethA"], Source::Lxc("ct1".into()));
        assert_eq!(
            d.nics["vethB"],
            attach("vmbr2", Vlan::proxmox(Some(40), vec![]))
        );
        assert_eq!(d.sources["vethB"].to_string(), "rule 1");
        assert!(
            matches!(&d.nics["vethC"], Decision::Detach(why) if why.contains("lxc.net.0.link lxcbr0 is not an OVS bridge")),
            "{:?}",
            d.nics["vethC"]
        );
        assert!(
            matches!(&d.nics["vethD"], Decision::Invalid(why) if why.contains("/var/lib/lxc/bad/config line 3: lxc.net.0.veth.vlan.id: VLAN ID 5000")),
            "{:?}",
            d.nics["vethD"]
        );
        assert_eq!(
            d.nics["vethE"],
            attach("vmbr1", mode(None, &[7], Some(VlanMode::Trunk)))
        );
        // A container without a configuration file says nothing: raw_default.
        assert_eq!(
            d.nics["vethF"],
            attach("ovsbr0", Vlan::proxmox(Some(999), vec![]))
        );
        assert_eq!(d.sources["vethF"].to_string(), "raw_default");
        assert_eq!(
            d.nics["vethdb1"],
            attach("vmbr2", Vlan::proxmox(Some(50), vec![]))
        );
        assert_eq!(d.sources["vethdb1"], Source::Rule(2));
        assert_eq!(d.sources["vethZ"].to_string(), "raw_default");
        // Without raw_default, the default bridge untagged, as before.
        let plain = build_at(&Config::default(), &links, &Guests::default(), &o);
        assert_eq!(plain.nics["vethZ"], attach("ovsbr0", Vlan::default()));
        assert_eq!(plain.sources["vethZ"], Source::DefaultBridge);
        // A rule's bridge that OVS lacks: invalid, naming the rule.
        let o = bridges(&["ovsbr0", "vmbr1"]);
        let d = build_at(&config, &links, &guests, &o);
        assert!(
            matches!(&d.nics["vethdb1"], Decision::Invalid(why) if why == "rule 2: the bridge vmbr2 does not exist in Open vSwitch"),
            "{:?}",
            d.nics["vethdb1"]
        );
        // Proxmox NICs have no source.
        let d = decide_one(
            &[link("tap100i0")],
            &[guest(Kind::Qemu, 100, "net0: virtio,bridge=ovsbr0\n")],
            &["ovsbr0"],
        );
        assert!(d.sources.is_empty());
    }

    /// A container's NIC that LXC plugs itself (`link` an OVS bridge) is LXC's while LXC may be
    /// plugging it: `plug` never attaches it, nor `apply` while the container is starting; a
    /// NIC on no port later is put back. A look that did not complete, an entry that cannot be
    /// told and one whose veth routes leave a NIC on its port as it is.
    #[test]
    fn raw_nics_lxc_plugs_or_cannot_be_told_are_left_where_they_are() {
        let ct = |text: &str, starting: bool, siblings: &[&str]| {
            Lookup::Found(Container {
                name: "ct1".into(),
                path: "/var/lib/lxc/ct1/config".into(),
                starting,
                config: Ok(Some(LxcConfig::parse(text))),
                siblings: siblings.iter().map(|s| s.to_string()).collect(),
            })
        };
        let plugs = "lxc.net.0.type = veth\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 30\n";
        let mut o = bridges(&["ovsbr0", "vmbr1"]);
        o.ports.insert(
            "vethOn".into(),
            PortState {
                uuid: "U".into(),
                bridge: Some("vmbr1".into()),
                vlan: Vlan::proxmox(Some(30), vec![]),
                owned: true,
            },
        );
        let on_port = HostLink {
            master: Master::Ovs,
            ..link("vethOn")
        };
        let decide = |lookup: Lookup, on: bool, plug: bool| {
            let nic = if on { on_port.clone() } else { link("vethOff") };
            let guests = Guests {
                containers: [(nic.name.clone(), lookup)].into(),
                ..Guests::default()
            };
            let seen = Seen {
                observed: &o,
                record: &Record::new(),
                busy: &BTreeSet::new(),
                plug,
            };
            build(
                &Config::default(),
                std::slice::from_ref(&nic),
                &guests,
                seen,
            )
            .nics[&nic.name]
                .clone()
        };
        let ignored = |d: Decision, says: &str| {
            assert!(
                matches!(&d, Decision::Ignore(why) if why.contains(says)),
                "{d:?}"
            );
        };
        let access30 = Vlan {
            tag: Some(30),
            trunks: vec![],
            mode: Some(crate::decide::vlan::VlanMode::Access),
        };
        // LXC plugs it: plug leaves it, on a port or not.
        ignored(
            decide(ct(plugs, false, &["vethOff"]), false, true),
            "LXC plugs it itself",
        );
        ignored(
            decide(ct(plugs, false, &["vethOn"]), true, true),
            "LXC plugs it itself",
        );
        // apply: not while the container is starting; afterwards, put back or kept in step.
        ignored(
            decide(ct(plugs, true, &["vethOff"]), false, false),
            "the container is starting",
        );
        assert_eq!(
            decide(ct(plugs, false, &["vethOff"]), false, false),
            attach("vmbr1", access30.clone())
        );
        assert_eq!(
            decide(ct(plugs, true, &["vethOn"]), true, false),
            attach("vmbr1", access30)
        );
        // Router mode: never a bridge port, whatever link says.
        let router =
            "lxc.net.0.type = veth\nlxc.net.0.veth.mode = router\nlxc.net.0.link = vmbr1\n";
        ignored(
            decide(ct(router, false, &["vethOff"]), false, false),
            "veth.mode is router: LXC attaches it to no bridge",
        );
        // A look that did not complete: on a port, left; on none, the rules (default bridge).
        let unknown = || Lookup::Unknown("the scan took too long".into());
        ignored(
            decide(unknown(), true, false),
            "not known right now (the scan took too long)",
        );
        assert_eq!(
            decide(unknown(), false, false),
            attach("ovsbr0", Vlan::default())
        );
        // A completed look without a container: the rules.
        assert_eq!(
            decide(Lookup::NoContainer, true, false),
            attach("ovsbr0", Vlan::default())
        );
        // One veth more than the configuration accounts for: which entry is whose cannot be
        // told; a NIC on a port stays, a new one goes by the rules.
        let two = ["vethOn", "vethOff"];
        ignored(
            decide(ct(plugs, false, &two), true, false),
            "cannot be told",
        );
        assert_eq!(
            decide(ct(plugs, false, &two), false, false),
            attach("ovsbr0", Vlan::default())
        );
        // ... unless no entry LXC names the host end of places it: nothing to tell apart.
        let unplaced = "lxc.net.0.type = veth\n";
        assert_eq!(
            decide(ct(unplaced, false, &two), true, false),
            attach("ovsbr0", Vlan::default())
        );
    }
}
