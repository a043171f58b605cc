//! The desired state: for every guest NIC on the host, where it belongs.
//!
//! [`build`] is a pure function of the host's links, the guest configurations, the tool's
//! configuration and the OVS bridges that exist. It is the single place where the rules of
//! "which bridge, which VLAN" live; `apply` and `plug` both go through it.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::decide::guest::{GuestConfig, GuestId, Kind, NicId};
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

/// Where a NIC belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub bridge: String,
    pub vlan: Vlan,
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
        .filter(|l| matches!(l.master, Master::None | Master::Ovs))
        .filter_map(|l| NicId::parse(&l.name).map(|n| n.guest))
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
    Desired { nics }
}

fn decide(
    config: &Config,
    link: &HostLink,
    guests: &Guests,
    bridges: &BTreeSet<String>,
) -> Decision {
    if let Master::Other(master) = &link.master {
        return Decision::Ignore(format!("enslaved to {master}"));
    }
    let nic = NicId::parse(&link.name);
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
        _ if bridges.contains(&config.bridge) => Decision::Attach(Target {
            bridge: config.bridge.clone(),
            vlan: Vlan::default(),
        }),
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
    let Some(bridge) = &spec.bridge else {
        return Decision::Detach(format!("{key} names no bridge"));
    };
    if !bridges.contains(bridge) {
        return Decision::Detach(format!("{key} bridge {bridge} is not an OVS bridge"));
    }
    // Proxmox keeps an LXC NIC with link_down=1 off its bridge on purpose; QEMU's link_down is a
    // QMP link state and the tap stays attached.
    if spec.link_down && nic.guest.kind == Kind::Lxc {
        return Decision::Detach(format!("{key} has link_down=1"));
    }
    if spec.firewall {
        return Decision::Ignore(format!(
            "{key} has firewall=1: Proxmox plugs it through fwbr{}i{}",
            nic.guest.vmid, nic.index
        ));
    }
    Decision::Attach(Target {
        bridge: bridge.clone(),
        vlan: Vlan::proxmox(spec.tag, spec.trunks.clone()),
    })
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
        Decision::Attach(Target {
            bridge: bridge.into(),
            vlan,
        })
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
    fn firewall_and_foreign_masters_are_ignored() {
        let g = guest(
            Kind::Qemu,
            300,
            "net0: virtio,bridge=ovsbr0,firewall=1\nnet1: virtio,bridge=ovsbr0\n",
        );
        let enslaved = HostLink {
            name: "tap300i1".into(),
            kind: Some("tun".into()),
            master: Master::Other("fwbr300i1".into()),
        };
        let on_ovs = HostLink {
            name: "tap301i0".into(),
            kind: Some("tun".into()),
            master: Master::Ovs,
        };
        let g301 = guest(Kind::Qemu, 301, "net0: virtio,bridge=ovsbr0\n");
        let d = decide_one(
            &[link("tap300i0"), enslaved, on_ovs],
            &[g, g301],
            &["ovsbr0"],
        );
        assert!(matches!(d.nics["tap300i0"], Decision::Ignore(_)));
        assert!(matches!(d.nics["tap300i1"], Decision::Ignore(_)));
        assert_eq!(d.nics["tap301i0"], attach("ovsbr0", Vlan::default()));
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
        let links = [
            link("tap100i0"),
            link("tap100i1"),
            link("veth200i0"),
            link("vethXYZ"),
            HostLink {
                name: "tap300i0".into(),
                kind: None,
                master: Master::Other("fwbr300i0".into()),
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
