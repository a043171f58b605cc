//! The desired state: for every guest NIC on the host, where it belongs.
//!
//! [`build`] is a pure function of the host's links, the guest configurations, the tool's
//! configuration and the OVS bridges that exist. It is the single place where the rules of
//! "which bridge, which VLAN" live; `apply` and `plug` both go through it.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::decide::firewall;
use crate::decide::guest::{GuestConfig, GuestId, Kind, NetSpec, NicId};
use crate::decide::ifname;
use crate::decide::vlan::Vlan;

/// A host link as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLink {
    pub name: String,
    /// The link's own kind (`veth`, `tun`, `openvswitch`, ...), if the kernel reports one.
    pub kind: Option<String>,
    pub master: Master,
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
    /// A QEMU NIC with a pending value targets it (what `pve-bridge` plugs); a port already
    /// where the current value puts it is left alone too: Proxmox may have plugged either.
    pub also: Option<(String, Vlan)>,
}

impl Target {
    /// A plain target: that bridge and VLAN, nothing else.
    pub fn plain(bridge: impl Into<String>, vlan: Vlan) -> Target {
        Target {
            bridge: bridge.into(),
            vlan,
            firewall: None,
            rate: None,
            also: None,
        }
    }

    /// The OVS port that carries the NIC: the fwln of a firewall NIC, the NIC itself otherwise.
    pub fn port<'a>(&'a self, nic: &'a str) -> &'a str {
        self.firewall.as_ref().map_or(nic, |f| f.fwln.as_str())
    }

    /// Whether a port on `bridge` with `vlan` is where this target (or its accepted
    /// alternative) puts it.
    pub fn accepts(&self, bridge: &str, vlan: &Vlan) -> bool {
        (bridge == self.bridge && *vlan == self.vlan)
            || self
                .also
                .as_ref()
                .is_some_and(|(b, v)| b == bridge && v == vlan)
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
}

/// The links that are guest NICs: a configured prefix, no exclude match, and not an OVS internal
/// port (which the kernel datapath creates as `openvswitch` links).
pub fn candidates<'a>(
    config: &'a Config,
    links: &'a [HostLink],
) -> impl Iterator<Item = &'a HostLink> {
    links
        .iter()
        .filter(|l| l.kind.as_deref() != Some("openvswitch") && config.is_candidate(&l.name))
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
            let nic = NicId::parse(&l.name)?;
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
}

/// Decides every candidate link; `bridges` are the names of the existing OVS bridges.
pub fn build(
    config: &Config,
    links: &[HostLink],
    guests: &Guests,
    bridges: &BTreeSet<String>,
) -> Desired {
    let nics = candidates(config, links)
        .map(|l| (l.name.clone(), decide(config, l, guests, bridges)))
        .collect();
    let down = candidates(config, links)
        .filter_map(|l| NicId::parse(&l.name))
        .filter(|nic| nic.guest.kind == Kind::Lxc)
        .filter(|nic| {
            matches!(guests.files.get(&nic.guest), Some(GuestFile::Parsed(conf))
                if matches!(conf.nets.get(&nic.index), Some(Ok(spec)) if spec.link_down))
        })
        .map(|nic| format!("veth{}i{}", nic.guest.vmid, nic.index))
        .collect();
    Desired { nics, down }
}

fn decide(
    config: &Config,
    link: &HostLink,
    guests: &Guests,
    bridges: &BTreeSet<String>,
) -> Decision {
    let nic = NicId::parse(&link.name);
    // A NIC in its own fwbr is decided from its configuration: it may be a firewall NIC to
    // repair, or one whose firewall was switched off. Any other master is someone else's.
    match (&link.master, nic) {
        (Master::Other(master), Some(nic)) if firewall::is_fwbr_of(master, nic) => {}
        (Master::Other(master), _) => return Decision::Ignore(format!("enslaved to {master}")),
        _ => {}
    }
    let file = nic.and_then(|n| guests.files.get(&n.guest));
    match (nic, file) {
        (Some(nic), Some(GuestFile::Parsed(conf))) => from_guest(nic, conf, bridges),
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
        // No configuration: a raw LXC container, a non-Proxmox host, or a name outside the
        // Proxmox pattern. It goes to the default bridge, untagged.
        _ if bridges.contains(&config.bridge) => {
            Decision::Attach(Target::plain(config.bridge.clone(), Vlan::default()))
        }
        _ => Decision::Invalid(format!(
            "the default bridge {} does not exist in Open vSwitch",
            config.bridge
        )),
    }
}

fn from_guest(nic: NicId, conf: &GuestConfig, bridges: &BTreeSet<String>) -> Decision {
    let key = nic.key();
    let spec = match conf.nets.get(&nic.index) {
        None => return Decision::Invalid(format!("{key} is missing from the guest configuration")),
        Some(Err(e)) => return Decision::Invalid(format!("{key}: {e}")),
        Some(Ok(spec)) => spec,
    };
    // pve-bridge plugs a pending value when there is one; a broken pending value is Proxmox's
    // to report, and the current one stands.
    let pending = match conf.pending.get(&nic.index) {
        Some(Ok(p)) if nic.guest.kind == Kind::Qemu => Some(p),
        _ => None,
    };
    let primary = match from_spec(nic, pending.unwrap_or(spec), bridges) {
        Ok(target) => target,
        Err(decision) => return decision,
    };
    match (primary, pending) {
        (Decision::Attach(mut target), Some(_)) => {
            if let Ok(Decision::Attach(current)) = from_spec(nic, spec, bridges) {
                if current.firewall == target.firewall {
                    target.also = Some((current.bridge, current.vlan));
                }
            }
            Decision::Attach(target)
        }
        (decision, _) => decision,
    }
}

/// The decision for one `net<n>` value; `Err` carries a decision that is final whatever else
/// the configuration says.
fn from_spec(nic: NicId, spec: &NetSpec, bridges: &BTreeSet<String>) -> Result<Decision, Decision> {
    let key = nic.key();
    let Some(bridge) = &spec.bridge else {
        return Ok(Decision::Detach(format!("{key} names no bridge")));
    };
    if !bridges.contains(bridge) {
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
        also: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::guest::GuestConfig;

    fn link(name: &str) -> HostLink {
        HostLink {
            name: name.into(),
            kind: Some("veth".into()),
            master: Master::None,
        }
    }

    fn bridges(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
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
        };
        build(&Config::default(), links, &guests, &bridges(br))
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
        let d = decide_one(&links, &[missing.clone()], &["ovsbr0"]);
        assert_eq!(d.nics["vethA1b2C3"], attach("ovsbr0", Vlan::default()));
        // On a Proxmox node a Proxmox NIC without configuration is left alone...
        assert!(matches!(d.nics["tap100i0"], Decision::Ignore(_)));
        // ...while a host without Proxmox treats it like any other NIC.
        let guests = Guests {
            proxmox: false,
            files: [missing].into(),
        };
        let d = build(&Config::default(), &links, &guests, &bridges(&["ovsbr0"]));
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
        let d = build(
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
        let mut cfg = Config::default();
        cfg.exclude = vec!["tap9*".into()];
        let links = [
            link("eno1"),
            link("tap900i0"),
            HostLink {
                name: "vethovs".into(),
                kind: Some("openvswitch".into()),
                master: Master::None,
            },
        ];
        let d = build(&cfg, &links, &Guests::default(), &bridges(&["ovsbr0"]));
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
        };
        let in_other_bridge = HostLink {
            name: "tap300i1".into(),
            kind: Some("tun".into()),
            master: Master::Other("fwbr300i0".into()),
        };
        let on_ovs = HostLink {
            name: "tap301i0".into(),
            kind: Some("tun".into()),
            master: Master::Ovs,
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
    /// !$migratedfrom && defined($conf->{pending}->{$netid})`. pve-container's `lxcnetaddbr`
    /// reads `$conf->{"net$2"}` only.
    #[test]
    fn a_pending_value_is_the_target_and_the_current_one_is_accepted() {
        let text =
            "net0: virtio,bridge=vmbr1,tag=10\n[PENDING]\nnet0: virtio,bridge=vmbr1,tag=20\n";
        let q = guest(Kind::Qemu, 100, text);
        let l = guest(Kind::Lxc, 100, &text.replace("virtio", "name=eth0"));
        let d = decide_one(&[link("tap100i0"), link("veth100i0")], &[q, l], &["vmbr1"]);
        let Decision::Attach(t) = &d.nics["tap100i0"] else {
            panic!()
        };
        assert_eq!(t.vlan, Vlan::proxmox(Some(20), vec![]));
        assert!(t.accepts("vmbr1", &Vlan::proxmox(Some(10), vec![])));
        assert!(t.accepts("vmbr1", &Vlan::proxmox(Some(20), vec![])));
        assert!(!t.accepts("vmbr1", &Vlan::default()));
        assert_eq!(
            d.nics["veth100i0"],
            attach("vmbr1", Vlan::proxmox(Some(10), vec![])),
            "LXC ignores pending values"
        );
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
            },
            HostLink {
                name: "tap100i2".into(),
                kind: None,
                master: Master::Other("fwbr100i2".into()),
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
}
