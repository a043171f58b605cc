//! What the kernel links need besides their OVS ports, for a NIC to end up as Proxmox's
//! `tap_plug` leaves it: the firewall bridge (`fwbr`) with the NIC and its `fwln` in it, links
//! up with the bridge's MTU, IPv6 off on everything plugged, an LXC `link_down=1` NIC down, and
//! the NIC's rate limit set again whenever the tool (re)plugged it (OVS drops a port's qdiscs
//! when it adds the port, so that is the moment the limit is lost).
//!
//! Pure: [`before_commit`] and [`after_commit`] turn the desired state, the plan and the links
//! as they are into a list of [`Op`]s, each already checked to be needed, so a run with
//! nothing to do issues no write at all. The adapters carry them out in order.

use std::collections::BTreeMap;

use crate::decide::desired::{Decision, Desired, Target};
use crate::decide::firewall::{self, FWBR_MARK};
use crate::decide::guest::{Kind, NicId};
use crate::decide::plan::{Change, Plan};

/// A link as these decisions need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub up: bool,
    pub mtu: Option<u32>,
    /// The master's name (`ovs-system` for an OVS port), if any.
    pub master: Option<String>,
    pub alias: Option<String>,
    /// Whether its root qdisc is Proxmox's rate limit (an htb with handle `1:`); `None` when
    /// not looked at (the `plug` path sets a limit whenever it plugs).
    pub rate_limited: Option<bool>,
    /// Whether IPv6 is still enabled on it (`disable_ipv6` reads 0); read for guest NICs and
    /// their firewall links only, the links Proxmox disables it on.
    pub ipv6: bool,
}

/// MTU Proxmox falls back to nowhere (it refuses a bridge without one); a bridge whose link the
/// tool cannot see gets Linux's default.
const DEFAULT_MTU: u32 = 1500;

/// An OVS bridge's MTU (Proxmox's `read_bridge_mtu`) from the MTUs read.
pub fn bridge_mtu(mtus: &BTreeMap<String, u32>, bridge: &str) -> u32 {
    mtus.get(bridge).copied().unwrap_or(DEFAULT_MTU)
}

/// One change to a kernel link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A Linux bridge, created up with `mtu` and marked with [`FWBR_MARK`].
    CreateBridge {
        name: String,
        mtu: u32,
    },
    /// Up (with the bridge's MTU) and, if given, into `master`.
    Up {
        name: String,
        mtu: u32,
        master: Option<String>,
    },
    Down {
        name: String,
    },
    /// Out of its master (a NIC whose firewall was switched off leaves its fwbr).
    Release {
        name: String,
    },
    /// Only ever a bridge carrying [`FWBR_MARK`].
    DeleteBridge {
        name: String,
    },
    DisableIpv6 {
        name: String,
    },
    /// Proxmox's `tap_rate_limit` with this many bytes per second.
    RateLimit {
        name: String,
        bytes: u64,
    },
}

impl Op {
    /// The link it changes.
    pub fn link(&self) -> &str {
        match self {
            Op::CreateBridge { name, .. }
            | Op::Up { name, .. }
            | Op::Down { name }
            | Op::Release { name }
            | Op::DeleteBridge { name }
            | Op::DisableIpv6 { name }
            | Op::RateLimit { name, .. } => name,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::CreateBridge { name, mtu } => write!(f, "create bridge {name} (mtu {mtu})"),
            Op::Up {
                name,
                mtu,
                master: Some(m),
            } => write!(f, "set {name} up, mtu {mtu}, into {m}"),
            Op::Up { name, mtu, .. } => write!(f, "set {name} up, mtu {mtu}"),
            Op::Down { name } => write!(f, "set {name} down"),
            Op::Release { name } => write!(f, "take {name} out of its bridge"),
            Op::DeleteBridge { name } => write!(f, "delete bridge {name}"),
            Op::DisableIpv6 { name } => write!(f, "disable IPv6 on {name}"),
            Op::RateLimit { name, bytes } => {
                write!(f, "rate-limit {name} to {bytes} bytes/s")
            }
        }
    }
}

/// What must happen before the OVS transaction: a NIC whose firewall was switched off leaves
/// its fwbr (OVS cannot add a device another bridge holds), and the fwbr goes if the tool made
/// it. A fwbr Proxmox made is left to Proxmox.
pub fn before_commit(desired: &Desired, links: &BTreeMap<String, LinkState>) -> Vec<Op> {
    let mut ops = Vec::new();
    for (name, decision) in &desired.nics {
        let (Decision::Attach(Target { firewall: None, .. }), Some(nic)) =
            (decision, NicId::parse(name))
        else {
            continue;
        };
        let fwbr = firewall::names(nic).fwbr;
        if links.get(name).and_then(|l| l.master.as_deref()) == Some(fwbr.as_str()) {
            ops.push(Op::Release { name: name.clone() });
            if links.get(&fwbr).and_then(|l| l.alias.as_deref()) == Some(FWBR_MARK) {
                ops.push(Op::DeleteBridge { name: fwbr });
            }
        }
    }
    ops
}

/// What must happen once ovs-vswitchd applied the transaction (so a new fwln's kernel device
/// exists), in this order: fwbrs, NICs into them, fwlns up and into them, IPv6, rate limits,
/// LXC `link_down`. `mtus` are the OVS bridges' MTUs ([`bridge_mtu`]).
pub fn after_commit(
    desired: &Desired,
    plan: &Plan,
    links: &BTreeMap<String, LinkState>,
    mtus: &BTreeMap<String, u32>,
) -> Vec<Op> {
    // The ports (re)plugged now: OVS drops a port's qdiscs when it adds the port, and
    // Proxmox's del-port + add-port of a move does the same.
    let attached: Vec<&str> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Attach { port, .. } | Change::Move { port, .. } => Some(port.as_str()),
            _ => None,
        })
        .collect();
    let mut bridges = Vec::new();
    let mut members = Vec::new();
    let mut ipv6 = Vec::new();
    let mut rates = Vec::new();
    for (name, decision) in &desired.nics {
        let Decision::Attach(target) = decision else {
            continue;
        };
        let mtu = bridge_mtu(mtus, &target.bridge);
        let mut plugged = attached.contains(&target.port(name));
        let mut disable = vec![name.clone()];
        if let Some(fw) = &target.firewall {
            let nic = links.get(name);
            // A NIC that is an OVS port of someone else's cannot go into a bridge; the plan left
            // that port alone, and so does this.
            if nic.is_some_and(|l| l.master.as_deref() == Some("ovs-system")) {
                continue;
            }
            // The bridge's MTU goes to what is (re)built now, as Proxmox's plug gives it; a
            // bridge whose MTU changed later leaves the pieces in place alone, as Proxmox does
            // until the guest's next plug.
            let fwln_new = attached.contains(&fw.fwln.as_str());
            match links.get(&fw.fwbr) {
                None => {
                    bridges.push(Op::CreateBridge {
                        name: fw.fwbr.clone(),
                        mtu,
                    });
                    disable.push(fw.fwbr.clone());
                }
                Some(b) if !b.up => bridges.push(Op::Up {
                    name: fw.fwbr.clone(),
                    mtu: b.mtu.unwrap_or(mtu),
                    master: None,
                }),
                Some(_) => {}
            }
            if nic.is_some_and(|l| l.master.as_deref() != Some(fw.fwbr.as_str())) {
                members.push(Op::Up {
                    name: name.clone(),
                    mtu,
                    master: Some(fw.fwbr.clone()),
                });
                plugged = true;
            }
            match links.get(&fw.fwln) {
                // ovs-vswitchd did not create it: the wait reported that already.
                None => {}
                Some(l)
                    if fwln_new
                        && (!l.up || l.mtu != Some(mtu) || l.master.as_ref() != Some(&fw.fwbr)) =>
                {
                    members.push(Op::Up {
                        name: fw.fwln.clone(),
                        mtu,
                        master: Some(fw.fwbr.clone()),
                    })
                }
                Some(l) if !l.up || l.master.as_ref() != Some(&fw.fwbr) => members.push(Op::Up {
                    name: fw.fwln.clone(),
                    mtu: l.mtu.unwrap_or(mtu),
                    master: Some(fw.fwbr.clone()),
                }),
                Some(_) => {}
            }
            disable.push(fw.fwln.clone());
        } else if plugged
            && NicId::parse(name).is_some_and(|n| n.guest.kind == Kind::Lxc)
            && !desired.down.contains(name)
            && links.get(name).is_some_and(|l| !l.up)
        {
            // pve-container's net_tap_plug sets a veth up once it is plugged: one that was
            // kept down for link_down=1 comes up when link_down goes back to 0.
            let l = &links[name];
            members.push(Op::Up {
                name: name.clone(),
                mtu: l.mtu.unwrap_or(mtu),
                master: None,
            });
        }
        ipv6.extend(
            disable
                .into_iter()
                // A fwbr created now has IPv6 on, as every new link does.
                .filter(|n| match links.get(n) {
                    Some(l) => l.ipv6,
                    None => bridges.iter().any(|b| b.link() == n),
                })
                .map(|name| Op::DisableIpv6 { name }),
        );
        let limit_lost = links.get(name).and_then(|l| l.rate_limited) == Some(false);
        if let (true, Some(bytes)) = (plugged || limit_lost, target.rate) {
            rates.push(Op::RateLimit {
                name: name.clone(),
                bytes,
            });
        }
    }
    let downs = desired
        .down
        .iter()
        .filter(|n| links.get(*n).is_some_and(|l| l.up))
        .map(|n| Op::Down { name: n.clone() });
    bridges
        .into_iter()
        .chain(members)
        .chain(ipv6)
        .chain(rates)
        .chain(downs)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::desired::Target;
    use crate::decide::testing::desired;
    use crate::decide::vlan::Vlan;

    fn link(up: bool, mtu: u32, master: Option<&str>) -> LinkState {
        LinkState {
            up,
            mtu: Some(mtu),
            master: master.map(String::from),
            alias: None,
            rate_limited: None,
            ipv6: false,
        }
    }

    fn ipv6_on(link: LinkState) -> LinkState {
        LinkState { ipv6: true, ..link }
    }

    /// The MTUs read: vmbr1's, or none at all for Linux's default.
    fn mtus(vmbr1: u32) -> BTreeMap<String, u32> {
        match vmbr1 {
            DEFAULT_MTU => BTreeMap::new(),
            mtu => BTreeMap::from([("vmbr1".to_string(), mtu)]),
        }
    }

    fn fw_target(nic: &str, rate: Option<u64>) -> Decision {
        Decision::Attach(Target {
            firewall: Some(firewall::names(NicId::parse(nic).unwrap())),
            rate,
            ..Target::plain("vmbr1", Vlan::proxmox(Some(10), vec![]))
        })
    }

    fn attach(port: &str) -> Change {
        Change::Attach {
            port: port.into(),
            bridge: "vmbr1".into(),
            vlan: Vlan::default(),
            internal: true,
        }
    }

    #[test]
    fn a_firewall_nic_after_a_del_br_is_rebuilt_as_proxmox_does() {
        let d = desired(&[("tap100i0", fw_target("tap100i0", Some(5 << 20)))]);
        let plan = Plan {
            changes: vec![attach("fwln100o0")],
        };
        // The fwbr still holds the tap; ovs-vswitchd just created a fresh, down fwln.
        let links = BTreeMap::from([
            ("tap100i0".to_string(), link(true, 1500, Some("fwbr100i0"))),
            ("fwbr100i0".to_string(), link(true, 1500, None)),
            (
                "fwln100o0".to_string(),
                LinkState {
                    ipv6: true,
                    ..link(false, 1500, None)
                },
            ),
        ]);
        let ops = after_commit(&d, &plan, &links, &mtus(1500));
        let lines: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            lines,
            [
                "set fwln100o0 up, mtu 1500, into fwbr100i0",
                "disable IPv6 on fwln100o0",
                "rate-limit tap100i0 to 5242880 bytes/s",
            ]
        );
        // Converged: nothing at all.
        let links = BTreeMap::from([
            ("tap100i0".to_string(), link(true, 1500, Some("fwbr100i0"))),
            ("fwbr100i0".to_string(), link(true, 1500, None)),
            ("fwln100o0".to_string(), link(true, 1500, Some("fwbr100i0"))),
        ]);
        assert!(after_commit(&d, &Plan::default(), &links, &mtus(1500)).is_empty());
    }

    /// After an OVS bridge's MTU changed, Proxmox changes nothing until the guest's next plug;
    /// neither does this: the fwbr and fwln in place keep their MTU.
    #[test]
    fn a_bridge_mtu_change_leaves_the_pieces_in_place() {
        let d = desired(&[("tap100i0", fw_target("tap100i0", None))]);
        let links = BTreeMap::from([
            ("tap100i0".to_string(), link(true, 1500, Some("fwbr100i0"))),
            ("fwbr100i0".to_string(), link(true, 1500, None)),
            ("fwln100o0".to_string(), link(true, 1500, Some("fwbr100i0"))),
        ]);
        assert!(after_commit(&d, &Plan::default(), &links, &mtus(9000)).is_empty());
        // A fwln re-created now gets the bridge's MTU, as Proxmox's plug gives it.
        let plan = Plan {
            changes: vec![attach("fwln100o0")],
        };
        let mut fresh = links.clone();
        fresh.insert("fwln100o0".into(), link(false, 1500, None));
        let ops = after_commit(&d, &plan, &fresh, &mtus(9000));
        assert_eq!(
            ops[0].to_string(),
            "set fwln100o0 up, mtu 9000, into fwbr100i0"
        );
    }

    /// A rate limit an OVS restart dropped is set again, and so is one of a moved port; a
    /// container NIC plugged while down (its link_down went back to 0) is set up.
    #[test]
    fn lost_limits_and_down_veths_are_restored() {
        let limited = |name: &'static str| {
            (
                name,
                Decision::Attach(Target {
                    rate: Some(1 << 20),
                    ..Target::plain("vmbr1", Vlan::default())
                }),
            )
        };
        let d = desired(&[
            limited("tap100i0"),
            limited("tap101i0"),
            limited("tap102i0"),
        ]);
        let state = |limited: Option<bool>| LinkState {
            rate_limited: limited,
            ..link(true, 1500, Some("ovs-system"))
        };
        let links = BTreeMap::from([
            ("tap100i0".to_string(), state(Some(false))),
            ("tap101i0".to_string(), state(Some(true))),
            ("tap102i0".to_string(), state(None)),
        ]);
        let ops = after_commit(&d, &Plan::default(), &links, &mtus(1500));
        let lines: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(lines, ["rate-limit tap100i0 to 1048576 bytes/s"]);
        let moved = Plan {
            changes: vec![Change::Move {
                port: "tap101i0".into(),
                uuid: "U".into(),
                from: "ovsbr0".into(),
                to: "vmbr1".into(),
                vlan: Vlan::default(),
            }],
        };
        let ops = after_commit(&d, &moved, &links, &mtus(1500));
        assert!(
            ops.iter()
                .any(|o| o.to_string() == "rate-limit tap101i0 to 1048576 bytes/s")
        );
        let d = desired(&[(
            "veth200i0",
            Decision::Attach(Target::plain("vmbr1", Vlan::default())),
        )]);
        let links = BTreeMap::from([("veth200i0".to_string(), link(false, 1500, None))]);
        let plan = Plan {
            changes: vec![Change::Attach {
                port: "veth200i0".into(),
                bridge: "vmbr1".into(),
                vlan: Vlan::default(),
                internal: false,
            }],
        };
        let ops = after_commit(&d, &plan, &links, &mtus(1500));
        assert_eq!(ops[0].to_string(), "set veth200i0 up, mtu 1500");
        assert!(after_commit(&d, &Plan::default(), &links, &mtus(1500)).is_empty());
    }

    #[test]
    fn a_missing_fwbr_is_created_and_the_nic_put_in_it() {
        let d = desired(&[("veth200i0", fw_target("veth200i0", None))]);
        let links = BTreeMap::from([
            ("veth200i0".to_string(), ipv6_on(link(true, 1500, None))),
            ("fwln200o0".to_string(), ipv6_on(link(true, 9000, None))),
        ]);
        let ops = after_commit(&d, &Plan::default(), &links, &mtus(9000));
        let lines: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            lines,
            [
                "create bridge fwbr200i0 (mtu 9000)",
                "set veth200i0 up, mtu 9000, into fwbr200i0",
                "set fwln200o0 up, mtu 9000, into fwbr200i0",
                "disable IPv6 on veth200i0",
                "disable IPv6 on fwbr200i0",
                "disable IPv6 on fwln200o0",
            ]
        );
    }

    #[test]
    fn firewall_off_releases_the_nic_and_deletes_only_our_fwbr() {
        let d = desired(&[
            (
                "tap100i0",
                Decision::Attach(Target::plain("vmbr1", Vlan::default())),
            ),
            (
                "tap101i0",
                Decision::Attach(Target::plain("vmbr1", Vlan::default())),
            ),
        ]);
        let mut ours = link(true, 1500, None);
        ours.alias = Some(FWBR_MARK.into());
        let links = BTreeMap::from([
            ("tap100i0".to_string(), link(true, 1500, Some("fwbr100i0"))),
            ("fwbr100i0".to_string(), ours),
            ("tap101i0".to_string(), link(true, 1500, Some("fwbr101i0"))),
            ("fwbr101i0".to_string(), link(true, 1500, None)),
        ]);
        let lines: Vec<String> = before_commit(&d, &links)
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "take tap100i0 out of its bridge",
                "delete bridge fwbr100i0",
                "take tap101i0 out of its bridge",
            ]
        );
    }

    #[test]
    fn plain_nics_get_ipv6_off_a_rate_on_replug_and_lxc_link_down_goes_down() {
        let mut d = desired(&[(
            "veth300i0",
            Decision::Attach(Target {
                rate: Some(1 << 20),
                ..Target::plain("vmbr1", Vlan::default())
            }),
        )]);
        d.down.insert("veth301i0".into());
        let links = BTreeMap::from([
            (
                "veth300i0".to_string(),
                ipv6_on(link(true, 1500, Some("ovs-system"))),
            ),
            ("veth301i0".to_string(), ipv6_on(link(true, 1500, None))),
        ]);
        let plan = Plan {
            changes: vec![Change::Attach {
                port: "veth300i0".into(),
                bridge: "vmbr1".into(),
                vlan: Vlan::default(),
                internal: false,
            }],
        };
        let lines: Vec<String> = after_commit(&d, &plan, &links, &mtus(1500))
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "disable IPv6 on veth300i0",
                "rate-limit veth300i0 to 1048576 bytes/s",
                "set veth301i0 down"
            ]
        );
        // No re-plug, IPv6 already off: nothing.
        let off = links
            .into_iter()
            .map(|(n, l)| (n, LinkState { ipv6: false, ..l }))
            .collect();
        assert!(
            after_commit(&d, &Plan::default(), &off, &mtus(1500))
                .iter()
                .all(|o| matches!(o, Op::Down { .. }))
        );
    }
}
