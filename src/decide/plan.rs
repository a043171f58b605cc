//! The plan: the changes that turn what OVS holds into the desired state.
//!
//! Pure: [`build`] compares [`Desired`] with [`Observed`] and returns a list of changes that the
//! OVSDB adapter turns into one transaction. The ownership rule is enforced here and nowhere
//! else: only ports carrying the mark are pruned, with one exception, rows named like a Proxmox
//! guest NIC whose link is gone (the stale "could not open network device" ports that a guest
//! leaves behind when its NIC vanished while off the hook's watch).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::decide::config::Config;
use crate::decide::desired::{Decision, Desired, Target};
use crate::decide::guest::NicId;
use crate::decide::nic::{self, Role};
use crate::decide::observed::{Observed, PortState, Uuid};
use crate::decide::vlan::Vlan;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Create the port (and its interface) on `bridge`, marked as ours. `internal`: an OVS
    /// internal port (a firewall NIC's fwln), whose kernel device ovs-vswitchd creates.
    Attach {
        port: String,
        bridge: String,
        vlan: Vlan,
        internal: bool,
    },
    /// Rewrite the VLAN columns of a port that is on the right bridge.
    Update {
        port: String,
        uuid: Uuid,
        bridge: String,
        from: Vlan,
        to: Vlan,
    },
    /// Take the port row off `from` and put it on `to`, with `vlan`.
    Move {
        port: String,
        uuid: Uuid,
        from: String,
        to: String,
        vlan: Vlan,
    },
    /// Remove the ownership mark and leave the port where it is: the port is handed back to
    /// whoever plugged the NIC (package removal).
    Disown {
        port: String,
        uuid: Uuid,
        bridge: String,
    },
    /// Remove the port from `bridge`.
    Prune {
        port: String,
        uuid: Uuid,
        bridge: String,
        reason: String,
    },
}

impl Change {
    pub fn port(&self) -> &str {
        match self {
            Change::Attach { port, .. }
            | Change::Update { port, .. }
            | Change::Move { port, .. }
            | Change::Disown { port, .. }
            | Change::Prune { port, .. } => port,
        }
    }
}

impl Change {
    /// One line per change, in the present tense for plans (`attach ...`) and the past tense for
    /// what was done (`attached ...`).
    pub fn describe(&self, done: bool) -> String {
        let verb = |present: &str, past: &str| {
            if done {
                past.to_string()
            } else {
                present.to_string()
            }
        };
        match self {
            Change::Attach {
                port,
                bridge,
                vlan,
                internal,
            } => {
                let kind = if *internal { " (internal port)" } else { "" };
                format!(
                    "{} {port} to {bridge} {vlan}{kind}",
                    verb("attach", "attached")
                )
            }
            Change::Update {
                port,
                bridge,
                from,
                to,
                ..
            } => {
                format!(
                    "{} {port} on {bridge}: {from} -> {to}",
                    verb("update", "updated")
                )
            }
            Change::Move {
                port,
                from,
                to,
                vlan,
                ..
            } => {
                format!(
                    "{} {port} from {from} to {to} {vlan}",
                    verb("move", "moved")
                )
            }
            Change::Disown { port, bridge, .. } => format!(
                "{} {port} on {bridge} (left in place, ownership mark removed)",
                verb("hand back", "handed back")
            ),
            Change::Prune {
                port,
                bridge,
                reason,
                ..
            } => {
                format!(
                    "{} {port} from {bridge} ({reason})",
                    verb("prune", "pruned")
                )
            }
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(false))
    }
}

/// Which ports a plan may touch.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// A full pass: every port is in view; `live` names every link on the host.
    Full { live: &'a BTreeSet<String> },
    /// The additive `plug` path: only attach, update or move the NICs decided; never prune.
    Additive,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// How many changes of each kind.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for change in &self.changes {
            *match change {
                Change::Attach { .. } => &mut c.attached,
                Change::Update { .. } => &mut c.updated,
                Change::Move { .. } => &mut c.moved,
                Change::Prune { .. } => &mut c.pruned,
                Change::Disown { .. } => &mut c.handed_back,
            } += 1;
        }
        c
    }
}

/// The changes of a plan, counted by kind: what a run's summary line reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub attached: usize,
    pub updated: usize,
    pub moved: usize,
    pub pruned: usize,
    pub handed_back: usize,
}

pub fn build(config: &Config, desired: &Desired, observed: &Observed, scope: Scope<'_>) -> Plan {
    let full = matches!(scope, Scope::Full { .. });
    let mut changes = Vec::new();
    for (name, decision) in &desired.nics {
        match decision {
            Decision::Attach(target) => {
                let port = target.port(name);
                match observed.ports.get(port) {
                    None => changes.push(Change::Attach {
                        port: port.to_string(),
                        bridge: target.bridge.clone(),
                        vlan: target.vlan.clone(),
                        internal: target.firewall.is_some(),
                    }),
                    Some(state) => changes.extend(correct(port, target, state)),
                }
                // A firewall NIC is never an OVS port itself (Proxmox's tap_plug del-ports it);
                // a port of ours left from before firewall=1 goes.
                if let (Some(_), Some(state)) = (&target.firewall, observed.ports.get(name))
                    && state.owned
                    && full
                {
                    changes.push(prune(name, state, "firewall=1: plugged through its fwbr"));
                }
            }
            Decision::Detach(reason) => match observed.ports.get(name) {
                Some(state) if state.owned && full => changes.push(prune(name, state, reason)),
                _ => {}
            },
            Decision::Ignore(_) | Decision::Invalid(_) => {}
        }
    }
    if let Scope::Full { live } = scope {
        for (name, state) in &observed.ports {
            if desired.nics.contains_key(name) || config.is_excluded(name) {
                continue;
            }
            if let Some(reason) = unwanted_fwln(name, desired, live) {
                if state.owned {
                    changes.push(prune(name, state, reason));
                }
                continue;
            }
            if live.contains(name) {
                continue;
            }
            let stale_guest_row = config.is_candidate(name) && NicId::parse(name).is_some();
            if state.owned || stale_guest_row {
                changes.push(prune(name, state, "its link is gone"));
            }
        }
    }
    Plan { changes }
}

/// Why a `fwln<vmid>o<n>` port is no longer wanted, if it is one and is not: its NIC is decided
/// and wants no firewall port (firewall switched off, NIC moved off OVS), or its NIC is gone.
/// `None` for any other name, and for a fwln whose NIC is left alone or invalid (not decided
/// means not touched).
fn unwanted_fwln(name: &str, desired: &Desired, live: &BTreeSet<String>) -> Option<&'static str> {
    let nics = nic::parse_as(name, Role::Fwln)?.hosts();
    let mut decided = false;
    for nic in &nics {
        match desired.nics.get(nic) {
            Some(Decision::Attach(t)) if t.port(nic) == name => return None,
            Some(Decision::Attach(_) | Decision::Detach(_)) => decided = true,
            Some(Decision::Ignore(_) | Decision::Invalid(_)) => return None,
            None => {}
        }
    }
    if decided {
        Some("its NIC no longer has firewall=1 on this bridge")
    } else if nics.iter().any(|n| live.contains(n)) {
        None
    } else {
        Some("its NIC is gone")
    }
}

fn correct(name: &str, target: &Target, state: &PortState) -> Option<Change> {
    match &state.bridge {
        Some(bridge) if target.accepts(bridge, &state.vlan) => None,
        Some(bridge) if *bridge == target.bridge => Some(Change::Update {
            port: name.into(),
            uuid: state.uuid.clone(),
            bridge: bridge.clone(),
            from: state.vlan.clone(),
            to: target.vlan.clone(),
        }),
        Some(bridge) => Some(Change::Move {
            port: name.into(),
            uuid: state.uuid.clone(),
            from: bridge.clone(),
            to: target.bridge.clone(),
            vlan: target.vlan.clone(),
        }),
        // A row no bridge holds is garbage OVSDB is about to collect; a fresh port replaces it.
        None => Some(Change::Attach {
            port: name.into(),
            bridge: target.bridge.clone(),
            vlan: target.vlan.clone(),
            internal: target.firewall.is_some(),
        }),
    }
}

fn prune(name: &str, state: &PortState, reason: &str) -> Change {
    Change::Prune {
        port: name.into(),
        uuid: state.uuid.clone(),
        bridge: state.bridge.clone().unwrap_or_else(|| "no bridge".into()),
        reason: reason.into(),
    }
}

/// The plan of `clear`: every port carrying the mark, and nothing else.
pub fn clear(observed: &Observed) -> Plan {
    let changes = observed
        .ports
        .iter()
        .filter(|(_, s)| s.owned)
        .map(|(name, s)| prune(name, s, "clear"))
        .collect();
    Plan { changes }
}

/// The plan of `clear --keep-ports` (package removal): every marked port whose link exists is
/// handed back (mark removed, port left where it is, so no running guest loses its network);
/// marked rows whose link is gone are pruned as `clear` would.
pub fn release(observed: &Observed, live: &BTreeSet<String>) -> Plan {
    let changes = observed
        .ports
        .iter()
        .filter(|(_, s)| s.owned)
        .map(|(name, s)| match (&s.bridge, live.contains(name)) {
            (Some(bridge), true) => Change::Disown {
                port: name.clone(),
                uuid: s.uuid.clone(),
                bridge: bridge.clone(),
            },
            _ => prune(name, s, "its link is gone"),
        })
        .collect();
    Plan { changes }
}

/// A port as the transaction will leave it: an existing row, or the row the same transaction
/// inserts for a port the run attaches (by port name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortRef {
    Row(Uuid),
    New(String),
}

impl PortRef {
    pub fn is(&self, uuid: &str) -> bool {
        matches!(self, PortRef::Row(u) if u == uuid)
    }
}

/// A port as it is once a plan is committed: where the host files list it, and the row a
/// mirror of the same transaction refers to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortAfter {
    pub bridge: String,
    pub vlan: Vlan,
    pub owned: bool,
    pub row: PortRef,
}

/// The ports that `observed` holds once `plan` is committed, by name: the one "state after the
/// plan" the host files and the mirror plan both read.
pub fn after(observed: &Observed, plan: &Plan) -> BTreeMap<String, PortAfter> {
    let mut ports: BTreeMap<String, PortAfter> = observed
        .ports
        .iter()
        .filter_map(|(name, s)| {
            let bridge = s.bridge.clone()?;
            Some((
                name.clone(),
                PortAfter {
                    bridge,
                    vlan: s.vlan.clone(),
                    owned: s.owned,
                    row: PortRef::Row(s.uuid.clone()),
                },
            ))
        })
        .collect();
    for change in &plan.changes {
        match change {
            Change::Attach {
                port, bridge, vlan, ..
            } => {
                ports.insert(
                    port.clone(),
                    PortAfter {
                        bridge: bridge.clone(),
                        vlan: vlan.clone(),
                        owned: true,
                        row: PortRef::New(port.clone()),
                    },
                );
            }
            Change::Update { port, to, .. } => {
                if let Some(p) = ports.get_mut(port) {
                    p.vlan = to.clone();
                }
            }
            Change::Move { port, to, vlan, .. } => {
                if let Some(p) = ports.get_mut(port) {
                    p.bridge = to.clone();
                    p.vlan = vlan.clone();
                }
            }
            Change::Disown { port, .. } => {
                if let Some(p) = ports.get_mut(port) {
                    p.owned = false;
                }
            }
            Change::Prune { port, .. } => {
                ports.remove(port);
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::desired::Target;
    use crate::decide::testing::desired;

    fn state(bridge: &str, vlan: Vlan, owned: bool) -> PortState {
        PortState {
            uuid: format!("u-{bridge}"),
            bridge: Some(bridge.into()),
            vlan,
            owned,
        }
    }

    fn attach(bridge: &str, vlan: Vlan) -> Decision {
        Decision::Attach(Target::plain(bridge, vlan))
    }

    fn observed(ports: &[(&str, PortState)]) -> Observed {
        Observed {
            bridges: [
                ("ovsbr0".to_string(), "b0".to_string()),
                ("vmbr1".into(), "b1".into()),
            ]
            .into(),
            ports: ports
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
            ..Observed::default()
        }
    }

    fn live(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn attaches_missing_and_leaves_correct_ports() {
        let tag10 = Vlan::proxmox(Some(10), vec![]);
        let d = desired(&[
            ("tap100i0", attach("vmbr1", tag10.clone())),
            ("tap101i0", attach("vmbr1", tag10.clone())),
        ]);
        let o = observed(&[("tap101i0", state("vmbr1", tag10.clone(), false))]);
        let l = live(&["tap100i0", "tap101i0"]);
        let p = build(&Config::default(), &d, &o, Scope::Full { live: &l });
        assert_eq!(
            p.changes,
            vec![Change::Attach {
                port: "tap100i0".into(),
                bridge: "vmbr1".into(),
                vlan: tag10,
                internal: false,
            }]
        );
        assert_eq!(p.changes[0].to_string(), "attach tap100i0 to vmbr1 tag=10");
    }

    #[test]
    fn corrects_vlan_and_moves_foreign_ports_too() {
        let tag10 = Vlan::proxmox(Some(10), vec![]);
        let d = desired(&[
            ("tap100i0", attach("vmbr1", tag10.clone())),
            ("tap101i0", attach("vmbr1", tag10.clone())),
        ]);
        let o = observed(&[
            ("tap100i0", state("vmbr1", Vlan::default(), false)),
            ("tap101i0", state("ovsbr0", Vlan::default(), false)),
        ]);
        let p = build(&Config::default(), &d, &o, Scope::Additive);
        assert_eq!(
            p.counts(),
            Counts {
                updated: 1,
                moved: 1,
                ..Counts::default()
            }
        );
        assert_eq!(
            p.changes[0].to_string(),
            "update tap100i0 on vmbr1: untagged -> tag=10"
        );
        assert_eq!(
            p.changes[1].to_string(),
            "move tap101i0 from ovsbr0 to vmbr1 tag=10"
        );
    }

    #[test]
    fn prunes_only_owned_or_stale_guest_rows() {
        let d = desired(&[]);
        let o = observed(&[
            ("veth200i0", state("ovsbr0", Vlan::default(), true)), // owned, link gone
            ("vethAbC", state("ovsbr0", Vlan::default(), true)),   // owned raw, link gone
            ("tap300i0", state("ovsbr0", Vlan::default(), false)), // stale Proxmox row
            ("vethForeign", state("ovsbr0", Vlan::default(), false)), // foreign, not Proxmox-named
            ("eno1", state("ovsbr0", Vlan::default(), false)),     // uplink
            ("tap400i0", state("ovsbr0", Vlan::default(), true)),  // owned but link alive
        ]);
        let l = live(&["eno1", "tap400i0"]);
        let p = build(&Config::default(), &d, &o, Scope::Full { live: &l });
        let pruned: Vec<&str> = p.changes.iter().map(Change::port).collect();
        assert_eq!(pruned, vec!["tap300i0", "veth200i0", "vethAbC"]);
    }

    #[test]
    fn excluded_ports_are_never_pruned() {
        let cfg = Config {
            exclude: vec!["veth2*".into()],
            ..Config::default()
        };
        let o = observed(&[("veth200i0", state("ovsbr0", Vlan::default(), true))]);
        let p = build(&cfg, &desired(&[]), &o, Scope::Full { live: &live(&[]) });
        assert!(p.is_empty());
    }

    #[test]
    fn detach_removes_owned_only_and_only_in_full_scope() {
        let d = desired(&[
            ("veth200i0", Decision::Detach("link_down=1".into())),
            ("veth201i0", Decision::Detach("link_down=1".into())),
            ("veth202i0", Decision::Invalid("bad".into())),
            ("veth203i0", Decision::Ignore("fw".into())),
        ]);
        let o = observed(&[
            ("veth200i0", state("ovsbr0", Vlan::default(), true)),
            ("veth201i0", state("ovsbr0", Vlan::default(), false)),
            ("veth202i0", state("ovsbr0", Vlan::default(), true)),
            ("veth203i0", state("ovsbr0", Vlan::default(), true)),
        ]);
        let l = live(&["veth200i0", "veth201i0", "veth202i0", "veth203i0"]);
        let p = build(&Config::default(), &d, &o, Scope::Full { live: &l });
        assert_eq!(p.changes.len(), 1);
        assert_eq!(
            p.changes[0].to_string(),
            "prune veth200i0 from ovsbr0 (link_down=1)"
        );
        assert!(build(&Config::default(), &d, &o, Scope::Additive).is_empty());
    }

    #[test]
    fn clear_takes_owned_ports_only() {
        let o = observed(&[
            ("tap1", state("ovsbr0", Vlan::default(), true)),
            ("tap2", state("ovsbr0", Vlan::default(), false)),
        ]);
        let p = clear(&o);
        assert_eq!(
            p.changes.iter().map(Change::port).collect::<Vec<_>>(),
            vec!["tap1"]
        );
        assert_eq!(
            p.changes[0].describe(true),
            "pruned tap1 from ovsbr0 (clear)"
        );
    }

    fn fw(nic: &str, vlan: Vlan) -> Decision {
        Decision::Attach(Target {
            firewall: Some(crate::decide::firewall::names(NicId::parse(nic).unwrap())),
            ..Target::plain("vmbr1", vlan)
        })
    }

    #[test]
    fn a_firewall_nic_is_carried_by_its_fwln_and_only_our_fwlns_go() {
        let tag10 = Vlan::proxmox(Some(10), vec![]);
        let d = desired(&[
            ("tap100i0", fw("tap100i0", tag10.clone())),
            ("tap101i0", attach("vmbr1", Vlan::default())),
            ("tap102i0", Decision::Ignore("unreadable".into())),
        ]);
        let o = observed(&[
            // Plain port of ours from before firewall=1.
            ("tap100i0", state("vmbr1", tag10.clone(), true)),
            // tap101i0's firewall was switched off: its fwln (ours) goes, Proxmox's stays.
            ("fwln101o0", state("vmbr1", Vlan::default(), true)),
            ("tap101i0", state("vmbr1", Vlan::default(), false)),
            ("fwln102o0", state("vmbr1", Vlan::default(), true)),
            // A gone guest's fwln, ours.
            ("fwln103o0", state("vmbr1", Vlan::default(), true)),
        ]);
        let l = live(&[
            "tap100i0",
            "tap101i0",
            "tap102i0",
            "fwln101o0",
            "fwln102o0",
            "fwln103o0",
        ]);
        let p = build(&Config::default(), &d, &o, Scope::Full { live: &l });
        let lines: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            [
                "attach fwln100o0 to vmbr1 tag=10 (internal port)",
                "prune tap100i0 from vmbr1 (firewall=1: plugged through its fwbr)",
                "prune fwln101o0 from vmbr1 (its NIC no longer has firewall=1 on this bridge)",
                "prune fwln103o0 from vmbr1 (its NIC is gone)",
            ]
        );
        // plug: the fwln only.
        let p = build(&Config::default(), &d, &o, Scope::Additive);
        assert_eq!(
            p.counts(),
            Counts {
                attached: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn release_hands_back_live_ports_and_prunes_gone_ones() {
        let o = observed(&[
            ("tap1i0", state("ovsbr0", Vlan::default(), true)),
            ("tap2i0", state("ovsbr0", Vlan::default(), true)),
            ("tap3i0", state("ovsbr0", Vlan::default(), false)),
        ]);
        let p = release(&o, &live(&["tap1i0", "tap3i0"]));
        let lines: Vec<String> = p.changes.iter().map(|c| c.describe(true)).collect();
        assert_eq!(
            lines,
            [
                "handed back tap1i0 on ovsbr0 (left in place, ownership mark removed)",
                "pruned tap2i0 from ovsbr0 (its link is gone)"
            ]
        );
        assert_eq!(
            p.counts(),
            Counts {
                pruned: 1,
                handed_back: 1,
                ..Counts::default()
            }
        );
        assert!(!after(&o, &p)["tap1i0"].owned);
    }

    #[test]
    fn after_applies_the_plan() {
        let tag5 = Vlan::proxmox(Some(5), vec![]);
        let o = observed(&[
            ("tap1", state("ovsbr0", Vlan::default(), false)),
            ("tap2", state("ovsbr0", Vlan::default(), true)),
            ("tap3", state("ovsbr0", Vlan::default(), false)),
        ]);
        let plan = Plan {
            changes: vec![
                Change::Update {
                    port: "tap1".into(),
                    uuid: "u".into(),
                    bridge: "ovsbr0".into(),
                    from: Vlan::default(),
                    to: tag5.clone(),
                },
                Change::Prune {
                    port: "tap2".into(),
                    uuid: "u".into(),
                    bridge: "ovsbr0".into(),
                    reason: "x".into(),
                },
                Change::Move {
                    port: "tap3".into(),
                    uuid: "u".into(),
                    from: "ovsbr0".into(),
                    to: "vmbr1".into(),
                    vlan: tag5.clone(),
                },
                Change::Attach {
                    port: "tap4".into(),
                    bridge: "vmbr1".into(),
                    vlan: Vlan::default(),
                    internal: false,
                },
            ],
        };
        let a = after(&o, &plan);
        assert_eq!(a.keys().collect::<Vec<_>>(), vec!["tap1", "tap3", "tap4"]);
        assert_eq!(a["tap1"].vlan, tag5);
        assert_eq!(
            (a["tap3"].bridge.as_str(), a["tap3"].owned),
            ("vmbr1", false)
        );
        assert!(a["tap4"].owned);
    }
}
