use super::*;
use crate::decide::guest::GuestConfig;
use crate::decide::observed::{OWNER_VALUE, PortState};
use crate::decide::plan::{Change, PortRef};
use crate::decide::vlan::Vlan;

fn rules(text: &str) -> Rules {
    Rules::parse(text.as_bytes())
}

fn guests(list: &[(Kind, u32, &str)]) -> BTreeMap<GuestId, GuestFile> {
    list.iter()
        .map(|(kind, vmid, text)| {
            (
                GuestId {
                    kind: *kind,
                    vmid: *vmid,
                },
                GuestFile::Parsed(GuestConfig::parse(*kind, text)),
            )
        })
        .collect()
}

/// OVS with bridges `vmbr1` and `vmbr2`, and these ports (name, bridge); port uuids are `P-name`.
fn observed(ports: &[(&str, &str)], mirrors: Vec<ObservedMirror>) -> Observed {
    Observed {
        bridges: [
            ("vmbr1".to_string(), "B1".to_string()),
            ("vmbr2".into(), "B2".into()),
        ]
        .into(),
        ports: ports
            .iter()
            .map(|(name, bridge)| {
                (
                    name.to_string(),
                    PortState {
                        uuid: format!("P-{name}"),
                        bridge: Some(bridge.to_string()),
                        vlan: Vlan::default(),
                        owned: false,
                    },
                )
            })
            .collect(),
        mirrors,
        mirror_filter: false,
    }
}

/// A mirror exactly as the tool writes it for `source` -> `output`, select both.
fn ours(name: &str, bridge: &str, source: &str, output: &str) -> ObservedMirror {
    ObservedMirror {
        uuid: format!("M-{name}"),
        name: name.into(),
        bridge: Some(bridge.into()),
        select_src: [format!("P-{source}")].into(),
        select_dst: [format!("P-{source}")].into(),
        output: Some(format!("P-{output}")),
        owner: Some(OWNER_VALUE.into()),
        ..ObservedMirror::default()
    }
}

fn plan_full(specs: &Specs, o: &Observed) -> MirrorPlan {
    build(specs, o, &Plan::default(), &BTreeMap::new(), Scope::Full)
}

fn lines(plan: &MirrorPlan) -> Vec<String> {
    plan.changes.iter().map(|c| c.describe(true)).collect()
}

const NAME: &str = "mirror_vmbr1_eno1_to_vm100i1";

#[test]
fn names_are_the_seed_tools() {
    let r = rules(rules::tests::SEED_EXAMPLE);
    let specs = Specs::resolve(&r, &BTreeMap::new());
    let names: Vec<&str> = specs.specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mirror_ovs_zone1_eno12419_to_vm100i1",
            "mirror_ovs_zone1_eno12419_to_vm101i1",
            "mirror_ovs_zone2_eno12429_to_vm100i2",
            "mirror_ovs_zone2_eno12429_to_vm101i2",
            "mirror_ovs_zone1_tap200i0_to_vm100i3",
            "mirror_ovs_zone1_eno12419_to_vm102i1",
        ]
    );
    assert_eq!(specs.specs[4].sources, ["tap200i0"]);
    assert_eq!(specs.specs[4].output, Output::Port("tap100i3".into()));
}

#[test]
fn guest_nics_resolve_to_tap_veth_or_fwln() {
    let g = guests(&[
        (Kind::Lxc, 200, "net0: name=eth0,bridge=vmbr1\n"),
        (Kind::Qemu, 300, "net1: virtio,bridge=vmbr1,firewall=1\n"),
        (Kind::Lxc, 400, "net0: name=eth0,bridge=vmbr1,firewall=1\n"),
    ]);
    let r = rules("vmbr1 vm200:0 300 1\nvmbr1 vm400:0 500 0\n");
    let specs = Specs::resolve(&r, &g);
    assert_eq!(specs.invalid, vec![]);
    let s = &specs.specs[0];
    assert_eq!(s.name, "mirror_vmbr1_veth200i0_to_vm300i1");
    assert_eq!(
        (s.sources[0].as_str(), s.output.port()),
        ("veth200i0", Some("fwln300o1"))
    );
    assert_eq!(
        s.involves,
        ["fwln300o1", "tap300i1", "veth200i0"]
            .map(String::from)
            .into()
    );
    assert!(
        s.promisc.is_empty(),
        "a guest source is not made promiscuous by default"
    );
    let s = &specs.specs[1];
    assert_eq!(s.name, "mirror_vmbr1_veth400i0_to_vm500i0");
    assert_eq!(
        (s.sources[0].as_str(), s.output.port()),
        ("fwln400o0", Some("tap500i0"))
    );
    // Which guest configurations that takes.
    assert_eq!(guests_to_read(&r).len(), 8);
}

#[test]
fn resolution_refuses_impossible_names_and_clashes() {
    // A container with a 9-digit VMID and NIC 10 would need a 16-byte veth name; tap200i0 written as a port
    // and vm200:0 are the same mirror.
    let g = guests(&[(Kind::Lxc, 123456789, "net0: name=eth0,bridge=vmbr1\n")]);
    let r = rules(
        "vmbr1 eno1 123456789 10\nvmbr1 tap200i0 100 1\nvmbr1 vm200:0 100 1\nvmbr1 eno1 100 1 bad\n",
    );
    let specs = Specs::resolve(&r, &g);
    assert_eq!(specs.specs.len(), 1);
    let lines: Vec<usize> = specs.invalid.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![1, 3, 4]);
    assert!(
        specs.invalid[1].1.contains("line 2 already asks"),
        "{:?}",
        specs.invalid
    );
    assert!(!specs.complete());
}

#[test]
fn creates_exactly_the_mirrors_whose_ports_exist() {
    let r = rules(
        "vmbr1 eno1 100 1\nvmbr1 vm200:0 300 0 select=src\nvmbr1 eno1 101 0\nvmbr9 eno1 100 2\n",
    );
    let specs = Specs::resolve(&r, &BTreeMap::new());
    let o = observed(
        &[
            ("eno1", "vmbr1"),
            ("tap100i1", "vmbr1"),
            ("tap200i0", "vmbr1"),
            ("tap300i0", "vmbr1"),
            ("tap101i0", "vmbr2"),
        ],
        vec![],
    );
    let p = plan_full(&specs, &o);
    assert_eq!(
        lines(&p),
        [
            "created mirror mirror_vmbr1_eno1_to_vm100i1 on vmbr1: eno1 (select=both) -> tap100i1",
            "created mirror mirror_vmbr1_tap200i0_to_vm300i0 on vmbr1: tap200i0 (select=src) -> tap300i0",
        ]
    );
    let states: Vec<(RuleState, Option<&str>)> = p
        .rules
        .iter()
        .map(|r| (r.state, r.detail.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            (RuleState::Active, None),
            (RuleState::Active, None),
            (RuleState::Waiting, Some("tap101i0 (now on vmbr2) on vmbr1")),
            (RuleState::Waiting, Some("bridge vmbr9 (it does not exist)")),
        ]
    );
    assert_eq!(
        p.counts(),
        ChangeCounts {
            created: 2,
            updated: 0,
            removed: 0
        }
    );
    assert_eq!(
        p.rule_counts(),
        RuleCounts {
            active: 2,
            waiting: 2,
            invalid: 0
        }
    );
    let MirrorChange::Create(w) = &p.changes[1] else {
        panic!()
    };
    assert_eq!(
        (&w.sources, &w.out, w.select),
        (
            &vec![("tap200i0".to_string(), PortRef::Row("P-tap200i0".into()))],
            &Out::Port("tap300i0".into(), PortRef::Row("P-tap300i0".into())),
            Select::Src
        )
    );
}

#[test]
fn a_correct_mirror_is_left_alone_and_a_wrong_one_corrected() {
    let specs = Specs::resolve(&rules("vmbr1 eno1 100 1\n"), &BTreeMap::new());
    let ports = [
        ("eno1", "vmbr1"),
        ("tap100i1", "vmbr1"),
        ("tap9i9", "vmbr1"),
    ];
    let right = ours(NAME, "vmbr1", "eno1", "tap100i1");
    assert!(plan_full(&specs, &observed(&ports, vec![right.clone()])).is_empty());

    // A guest restart: Proxmox deleted and re-added the tap, the weak reference is gone.
    let mut lost = right.clone();
    lost.output = None;
    let p = plan_full(&specs, &observed(&ports, vec![lost]));
    assert_eq!(
        lines(&p),
        [
            "updated mirror mirror_vmbr1_eno1_to_vm100i1 on vmbr1: eno1 (select=both) -> tap100i1 (corrected: output_port)"
        ]
    );

    let mut odd = right;
    odd.select_all = true;
    odd.select_vlan = [5].into();
    odd.output_vlan = Some(5);
    odd.select_dst = BTreeSet::new();
    odd.output = Some("P-tap9i9".into());
    let p = plan_full(&specs, &observed(&ports, vec![odd]));
    let MirrorChange::Update { differs, adopt, .. } = &p.changes[0] else {
        panic!()
    };
    assert!(!adopt);
    assert_eq!(
        differs,
        &[
            "select_all",
            "select_dst_port",
            "select_vlan",
            "output_port",
            "output_vlan"
        ]
    );
}

#[test]
fn foreign_mirrors_are_never_touched_and_unmarked_namesakes_adopted() {
    let specs = Specs::resolve(
        &rules("vmbr1 eno1 100 1\nvmbr1 eno1 101 1\n"),
        &BTreeMap::new(),
    );
    let ports = [
        ("eno1", "vmbr1"),
        ("tap100i1", "vmbr1"),
        ("tap101i1", "vmbr1"),
    ];
    let mut seed = ours(NAME, "vmbr1", "eno1", "tap100i1");
    seed.owner = None;
    let mut theirs = ours("mirror_vmbr1_eno1_to_vm101i1", "vmbr1", "eno1", "tap100i1");
    theirs.owner = Some("someone-else".into());
    let mut foreign = ours("span-for-ids", "vmbr1", "eno1", "tap101i1");
    foreign.owner = None;
    // A namesake on another bridge is not the rule's.
    let mut elsewhere = ours(NAME, "vmbr2", "eno1", "tap100i1");
    elsewhere.owner = None;
    let o = observed(&ports, vec![seed, theirs, foreign, elsewhere]);
    let p = plan_full(&specs, &o);
    assert_eq!(
        lines(&p),
        [
            "adopted mirror mirror_vmbr1_eno1_to_vm100i1 on vmbr1: eno1 (select=both) -> tap100i1 (marked as ours)",
            // Another owner's mirror of that name stays; the rule gets its own.
            "created mirror mirror_vmbr1_eno1_to_vm101i1 on vmbr1: eno1 (select=both) -> tap101i1",
        ]
    );
    // clear takes none of them.
    assert!(clear(&o, &BTreeMap::new()).is_empty());
}

#[test]
fn waiting_rules_lose_their_mirror_and_rule_less_mirrors_are_pruned() {
    let specs = Specs::resolve(&rules("vmbr1 eno1 100 1\n"), &BTreeMap::new());
    let m = ours(NAME, "vmbr1", "eno1", "tap100i1");
    let gone = ours("mirror_vmbr1_eno1_to_vm105i0", "vmbr1", "eno1", "tap105i0");
    let moved = ours(NAME, "vmbr2", "eno1", "tap100i1");
    let o = observed(&[("eno1", "vmbr1")], vec![m, gone, moved]);
    let p = plan_full(&specs, &o);
    assert_eq!(
        lines(&p),
        [
            "removed mirror mirror_vmbr1_eno1_to_vm100i1 from vmbr1 (waiting for tap100i1 on vmbr1)",
            "removed mirror mirror_vmbr1_eno1_to_vm105i0 from vmbr1 (no rule asks for it)",
            "removed mirror mirror_vmbr1_eno1_to_vm100i1 from vmbr2 (no rule asks for it)",
        ]
    );
    // A rule-less mirror's name comes from OVS: it is logged escaped.
    let odd = ours("x\n$(id)\u{1b}", "vmbr1", "eno1", "tap100i1");
    let p = plan_full(&Specs::default(), &observed(&[], vec![odd]));
    assert_eq!(
        lines(&p),
        ["removed mirror x\\n$(id)\\u{1b} from vmbr1 (no rule asks for it)"]
    );
    // With a line not understood nothing is pruned for want of a rule.
    let specs = Specs::resolve(
        &rules("vmbr1 eno1 100 1\nvmbr1 eno1 105 0 typo=1\n"),
        &BTreeMap::new(),
    );
    let p = plan_full(&specs, &o);
    assert_eq!(
        p.counts(),
        ChangeCounts {
            created: 0,
            updated: 0,
            removed: 1
        },
        "{:?}",
        lines(&p)
    );
    assert_eq!(
        p.rule_counts(),
        RuleCounts {
            active: 0,
            waiting: 1,
            invalid: 1
        }
    );
}

#[test]
fn a_port_attached_in_the_same_run_is_referenced_by_its_new_row() {
    let specs = Specs::resolve(&rules("vmbr1 vm200:0 300 0\n"), &BTreeMap::new());
    let o = observed(&[("tap200i0", "vmbr2"), ("tap300i0", "vmbr1")], vec![]);
    let ports = Plan {
        changes: vec![
            Change::Move {
                port: "tap200i0".into(),
                uuid: "P-tap200i0".into(),
                from: "vmbr2".into(),
                to: "vmbr1".into(),
                vlan: Vlan::default(),
            },
            Change::Prune {
                port: "tap300i0".into(),
                uuid: "P-tap300i0".into(),
                bridge: "vmbr1".into(),
                reason: "x".into(),
            },
        ],
    };
    let p = build(&specs, &o, &ports, &BTreeMap::new(), Scope::Full);
    assert!(p.is_empty());
    assert_eq!(p.rules[0].state, RuleState::Waiting);
    assert_eq!(p.rules[0].detail.as_deref(), Some("tap300i0 on vmbr1"));
    let ports = Plan {
        changes: vec![
            ports.changes[0].clone(),
            Change::Attach {
                port: "tap300i0".into(),
                bridge: "vmbr1".into(),
                vlan: Vlan::default(),
                internal: false,
            },
        ],
    };
    let p = build(&specs, &o, &ports, &BTreeMap::new(), Scope::Full);
    let MirrorChange::Create(w) = &p.changes[0] else {
        panic!("{p:?}")
    };
    assert_eq!(w.sources[0].1, PortRef::Row("P-tap200i0".into()));
    assert_eq!(
        w.out,
        Out::Port("tap300i0".into(), PortRef::New("tap300i0".into()))
    );
}

#[test]
fn plug_reconciles_only_the_rules_of_its_nic() {
    let specs = Specs::resolve(
        &rules("vmbr1 eno1 100 1\nvmbr1 eno1 101 1\nvmbr1 vm100:1 102 0\n"),
        &BTreeMap::new(),
    );
    let o = observed(
        &[
            ("eno1", "vmbr1"),
            ("tap100i1", "vmbr1"),
            ("tap101i1", "vmbr1"),
        ],
        vec![ours(
            "mirror_vmbr1_eno1_to_vm999i0",
            "vmbr1",
            "eno1",
            "tap100i1",
        )],
    );
    let p = build(
        &specs,
        &o,
        &Plan::default(),
        &BTreeMap::new(),
        Scope::Involving("tap100i1"),
    );
    assert_eq!(
        p.changes.iter().map(|c| c.name()).collect::<Vec<_>>(),
        ["mirror_vmbr1_eno1_to_vm100i1"],
        "the rule-less mirror and the other rules are not plug's business"
    );
    assert_eq!(p.rules.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(
        specs.ports_involving("tap100i1"),
        ["eno1", "tap100i1", "tap102i0"].map(String::from).into()
    );
    assert_eq!(specs.involving("eno1").count(), 2);
    assert_eq!(specs.involving("eno2").count(), 0);
}

#[test]
fn promisc_is_set_when_off_recorded_and_cleared_only_if_ours() {
    let specs = Specs::resolve(
        &rules("vmbr1 eno1 100 1\nvmbr1 eno1 101 1\nvmbr1 eno2 100 2 promisc=no\n"),
        &BTreeMap::new(),
    );
    let ports = [
        ("eno1", "vmbr1"),
        ("eno2", "vmbr1"),
        ("tap100i1", "vmbr1"),
        ("tap101i1", "vmbr1"),
        ("tap100i2", "vmbr1"),
    ];
    assert_eq!(
        specs.promisc_links(&observed(&ports, vec![])),
        ["eno1".to_string()].into()
    );
    let flags = |eno1: bool| BTreeMap::from([("eno1".to_string(), eno1)]);
    // Off: set it, and both mirrors of eno1 record it.
    let p = build(
        &specs,
        &observed(&ports, vec![]),
        &Plan::default(),
        &flags(false),
        Scope::Full,
    );
    assert_eq!(p.promisc_on, ["eno1".to_string()].into());
    let records: Vec<Option<&str>> = p
        .changes
        .iter()
        .map(|c| match c {
            MirrorChange::Create(w) => w.promisc.first().map(String::as_str),
            _ => panic!(),
        })
        .collect();
    assert_eq!(records, [Some("eno1"), Some("eno1"), None]);
    // Already on, set by someone else: nothing set, nothing recorded.
    let p = build(
        &specs,
        &observed(&ports, vec![]),
        &Plan::default(),
        &flags(true),
        Scope::Full,
    );
    assert!(p.promisc_on.is_empty());
    assert!(
        p.changes
            .iter()
            .all(|c| matches!(c, MirrorChange::Create(w) if w.promisc.is_empty()))
    );

    // Ours: the first mirror goes (its rule is deleted): the second still records it, so the
    // flag stays; when that one goes too, the flag is cleared.
    let recorded = |name: &str, output: &str| {
        let mut m = ours(name, "vmbr1", "eno1", output);
        m.promisc = Some("eno1".into());
        m
    };
    let both = vec![
        recorded(NAME, "tap100i1"),
        recorded("mirror_vmbr1_eno1_to_vm101i1", "tap101i1"),
    ];
    let one_rule = Specs::resolve(&rules("vmbr1 eno1 101 1\n"), &BTreeMap::new());
    let p = build(
        &one_rule,
        &observed(&ports, both.clone()),
        &Plan::default(),
        &flags(true),
        Scope::Full,
    );
    assert_eq!(
        p.counts(),
        ChangeCounts {
            created: 0,
            updated: 0,
            removed: 1
        }
    );
    assert!(p.promisc_off.is_empty());
    let none = Specs::resolve(&rules(""), &BTreeMap::new());
    let p = build(
        &none,
        &observed(&ports, both.clone()),
        &Plan::default(),
        &flags(true),
        Scope::Full,
    );
    assert_eq!(
        p.counts(),
        ChangeCounts {
            created: 0,
            updated: 0,
            removed: 2
        }
    );
    assert_eq!(p.promisc_off, ["eno1".to_string()].into());
    // A rule turned promisc=no drops the record (and the flag).
    let no = Specs::resolve(&rules("vmbr1 eno1 101 1 promisc=no\n"), &BTreeMap::new());
    let p = build(
        &no,
        &observed(&ports, both.clone()),
        &Plan::default(),
        &flags(true),
        Scope::Full,
    );
    assert_eq!(p.promisc_off, ["eno1".to_string()].into());
    assert!(
        matches!(&p.changes[0], MirrorChange::Update { differs, .. } if differs == &[PROMISC_KEY])
    );
    // plug of another NIC leaves the records of the mirrors it does not look at alone.
    let p = build(
        &none,
        &observed(&ports, both.clone()),
        &Plan::default(),
        &flags(true),
        Scope::Involving("tap100i2"),
    );
    assert!(p.is_empty() && p.promisc_off.is_empty());
    // clear clears what is recorded, and only while the flag is on.
    let c = clear(&observed(&ports, both.clone()), &flags(true));
    assert_eq!(
        (c.counts(), c.promisc_off.len()),
        (
            ChangeCounts {
                created: 0,
                updated: 0,
                removed: 2
            },
            1
        )
    );
    assert!(
        clear(&observed(&ports, both), &flags(false))
            .promisc_off
            .is_empty()
    );
}

#[test]
fn fifty_correct_rules_plan_nothing() {
    let mut text = String::new();
    let mut ports = vec![("eno1".to_string(), "vmbr1")];
    let mut mirrors = Vec::new();
    for vmid in 100..150 {
        text.push_str(&format!("vmbr1 eno1 {vmid} 0\n"));
        let tap = format!("tap{vmid}i0");
        let mut m = ours(
            &format!("mirror_vmbr1_eno1_to_vm{vmid}i0"),
            "vmbr1",
            "eno1",
            &tap,
        );
        m.promisc = Some("eno1".into());
        mirrors.push(m);
        ports.push((tap, "vmbr1"));
    }
    let ports: Vec<(&str, &str)> = ports.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let o = observed(&ports, mirrors);
    let specs = Specs::resolve(&rules(&text), &BTreeMap::new());
    let flags = BTreeMap::from([("eno1".to_string(), true)]);
    let p = build(&specs, &o, &Plan::default(), &flags, Scope::Full);
    assert!(
        p.is_empty() && p.promisc_on.is_empty() && p.promisc_off.is_empty(),
        "{p:?}"
    );
    assert_eq!(
        p.rule_counts(),
        RuleCounts {
            active: 50,
            waiting: 0,
            invalid: 0
        }
    );
}

#[test]
fn the_plan_says_each_rules_state_with_its_detail() {
    let r = rules("vmbr1 eno1 100 1\nvmbr1 eno1 101 1\nvmbr1 eno1 102 1\nvmbr1 eno1 103 1 oops\n");
    let o = observed(
        &[
            ("eno1", "vmbr1"),
            ("tap100i1", "vmbr1"),
            ("tap101i1", "vmbr1"),
        ],
        vec![ours(NAME, "vmbr1", "eno1", "tap100i1")],
    );
    let p = plan_full(&Specs::resolve(&r, &BTreeMap::new()), &o);
    let s = &p.rules;
    assert_eq!(s.len(), 4);
    // Active once the plan is committed, whether or not the plan creates the mirror: the
    // `status` report tells those apart with the plan's changes.
    assert_eq!(
        (s[0].state, s[0].detail.as_deref()),
        (RuleState::Active, None)
    );
    assert_eq!(s[0].mirror.as_deref(), Some(NAME));
    assert_eq!(
        (s[1].state, s[1].detail.as_deref()),
        (RuleState::Active, None)
    );
    assert_eq!(
        (s[2].state, s[2].detail.as_deref()),
        (RuleState::Waiting, Some("tap102i1 on vmbr1"))
    );
    assert_eq!(s[3].state, RuleState::Invalid);
    assert!(
        s[3].detail
            .as_deref()
            .is_some_and(|w| w.contains("unknown option"))
    );
    assert_eq!(s[3].mirror, None);
}

#[test]
fn only_a_removed_or_rewritten_mirror_stops_copies() {
    let r = rules("vmbr1 eno1 100 1\n");
    let specs = Specs::resolve(&r, &BTreeMap::new());
    let ports = [("eno1", "vmbr1"), ("tap100i1", "vmbr1")];
    // Created: nothing to stop.
    let p = plan_full(&specs, &observed(&ports, vec![]));
    assert!(!p.is_empty() && !p.stops_copies(&Plan::default()), "{p:?}");
    // As the rule says: nothing at all.
    let right = ours(NAME, "vmbr1", "eno1", "tap100i1");
    let p = plan_full(&specs, &observed(&ports, vec![right.clone()]));
    assert!(p.is_empty() && !p.stops_copies(&Plan::default()));
    // Adopted without a column to correct: only marked.
    let unmarked = ObservedMirror {
        owner: None,
        ..right.clone()
    };
    let p = plan_full(&specs, &observed(&ports, vec![unmarked]));
    assert!(!p.is_empty() && !p.stops_copies(&Plan::default()), "{p:?}");
    // Only the promiscuous record differs (it names a link the rule's source is not).
    let recorded = ObservedMirror {
        promisc: Some("eno9".into()),
        ..right.clone()
    };
    let p = plan_full(&specs, &observed(&ports, vec![recorded]));
    assert_eq!(lines(&p).len(), 1, "{p:?}");
    assert!(!p.stops_copies(&Plan::default()));
    // Selecting everything: narrowed to the rule's source.
    let wide = ObservedMirror {
        select_all: true,
        ..right.clone()
    };
    assert!(plan_full(&specs, &observed(&ports, vec![wide])).stops_copies(&Plan::default()));
    // Copying only what Open vSwitch 3.5's `filter` matches: a rule never asks for that.
    let filtered = ObservedMirror {
        filter: Some("icmp".into()),
        ..right.clone()
    };
    let p = plan_full(&specs, &observed(&ports, vec![filtered]));
    assert_eq!(
        lines(&p),
        [
            "updated mirror mirror_vmbr1_eno1_to_vm100i1 on vmbr1: eno1 (select=both) -> tap100i1 (corrected: filter)"
        ]
    );
    assert!(p.stops_copies(&Plan::default()));
    // Sending its copies elsewhere.
    let elsewhere = ObservedMirror {
        output: Some("P-eno1".into()),
        ..right.clone()
    };
    assert!(plan_full(&specs, &observed(&ports, vec![elsewhere])).stops_copies(&Plan::default()));
    // Removed: its rule waits, or no rule asks for it.
    let p = plan_full(&specs, &observed(&[("eno1", "vmbr1")], vec![right.clone()]));
    assert!(p.stops_copies(&Plan::default()), "{p:?}");
    let none = Specs::resolve(&rules(""), &BTreeMap::new());
    assert!(
        plan_full(&none, &observed(&ports, vec![right.clone()])).stops_copies(&Plan::default())
    );
    // `clear` removes every mirror of ours.
    let cleared = clear(&observed(&ports, vec![right]), &BTreeMap::new());
    assert!(cleared.stops_copies(&Plan::default()));
    // A port added, moved or pruned in the same transaction: ovs-vswitchd revalidates every flow
    // by itself, and the purge is left out (a guest stop taking its mirror with it).
    let prune = Plan {
        changes: vec![Change::Prune {
            port: "tap100i1".into(),
            uuid: "P-tap100i1".into(),
            bridge: "vmbr1".into(),
            reason: "its link is gone".into(),
        }],
    };
    assert!(!cleared.stops_copies(&prune));
}

/// A mirror of ours as the tool writes it for `spec`'s rule, its ports as in [`observed`].
fn written(p: &MirrorPlan) -> ObservedMirror {
    let MirrorChange::Create(w) = &p.changes[0] else {
        panic!("{p:?}")
    };
    let rows = |on: bool| -> BTreeSet<Uuid> {
        w.sources
            .iter()
            .filter(|_| on && !w.all)
            .map(|(_, r)| match r {
                PortRef::Row(u) => u.clone(),
                PortRef::New(n) => n.clone(),
            })
            .collect()
    };
    let (output, output_vlan) = match &w.out {
        Out::Port(name, _) => (Some(format!("P-{name}")), None),
        Out::Vlan(v) => (None, Some(i64::from(*v))),
    };
    ObservedMirror {
        uuid: format!("M-{}", w.name),
        name: w.name.clone(),
        bridge: Some(w.bridge.clone()),
        select_all: w.all,
        select_src: rows(w.select.src()),
        select_dst: rows(w.select.dst()),
        select_vlan: w.vlans.iter().map(|&v| i64::from(v)).collect(),
        output,
        output_vlan,
        owner: Some(OWNER_VALUE.into()),
        promisc: record(&w.promisc),
        ..ObservedMirror::default()
    }
}

/// Each new shape: the columns it is written with, nothing to do once they are, and each column
/// that drifts corrected, as stopping copies.
#[test]
fn every_shape_sets_its_columns_and_drift_on_each_is_corrected() {
    let r = rules(
        "vmbr1 * 100 1 vlans=10\n\
         vmbr1 eno1,vm200:0,eno2 100 1 select=src\n\
         vmbr1 eno1 100 1 vlans=10,20-21\n\
         vmbr1 eno1,eno2 - - output_vlan=30\n",
    );
    let specs = Specs::resolve(&r, &BTreeMap::new());
    assert_eq!(specs.invalid, vec![]);
    let names: Vec<&str> = specs.specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mirror_vmbr1_*_to_vm100i1",
            "mirror_vmbr1_eno1,tap200i0,eno2_to_vm100i1",
            "mirror_vmbr1_eno1_to_vm100i1",
            "mirror_vmbr1_eno1,eno2_to_vlan30",
        ]
    );
    let ports = [
        ("eno1", "vmbr1"),
        ("eno2", "vmbr1"),
        ("tap200i0", "vmbr1"),
        ("tap100i1", "vmbr1"),
    ];
    let on = |spec: &Spec| Specs {
        specs: vec![spec.clone()],
        invalid: vec![],
    };
    let expected = [
        "created mirror mirror_vmbr1_*_to_vm100i1 on vmbr1: * (select=both, vlans=10) -> tap100i1",
        "created mirror mirror_vmbr1_eno1,tap200i0,eno2_to_vm100i1 on vmbr1: eno1,tap200i0,eno2 (select=src) -> tap100i1",
        "created mirror mirror_vmbr1_eno1_to_vm100i1 on vmbr1: eno1 (select=both, vlans=10,20-21) -> tap100i1",
        "created mirror mirror_vmbr1_eno1,eno2_to_vlan30 on vmbr1: eno1,eno2 (select=both) -> vlan 30",
    ];
    for (spec, line) in specs.specs.iter().zip(expected) {
        let one = on(spec);
        let p = plan_full(&one, &observed(&ports, vec![]));
        assert_eq!(lines(&p), [line]);
        assert_eq!(p.rules[0].state, RuleState::Active);
        let right = written(&p);
        // As written: nothing to do.
        let p = plan_full(&one, &observed(&ports, vec![right.clone()]));
        assert!(p.is_empty(), "{}: {p:?}", spec.name);
        // Each column drifting: corrected, and the copies it made stop.
        let drifts: [(&str, ObservedMirror); 6] = [
            (
                "select_all",
                ObservedMirror {
                    select_all: !right.select_all,
                    ..right.clone()
                },
            ),
            (
                "select_src_port",
                ObservedMirror {
                    select_src: ["P-tap100i1".to_string()].into(),
                    ..right.clone()
                },
            ),
            (
                "select_vlan",
                ObservedMirror {
                    select_vlan: [10, 11].into(),
                    ..right.clone()
                },
            ),
            (
                "output_port",
                ObservedMirror {
                    output: match right.output {
                        Some(_) => None,
                        None => Some("P-tap100i1".into()),
                    },
                    ..right.clone()
                },
            ),
            (
                "output_vlan",
                ObservedMirror {
                    output_vlan: Some(31),
                    ..right.clone()
                },
            ),
            (
                "select_dst_port",
                ObservedMirror {
                    select_dst: ["P-eno9".to_string()].into(),
                    ..right.clone()
                },
            ),
        ];
        for (column, drifted) in drifts {
            let p = plan_full(&one, &observed(&ports, vec![drifted]));
            let [MirrorChange::Update { differs, .. }] = p.changes.as_slice() else {
                panic!("{column}: {p:?}")
            };
            assert!(differs.contains(&column), "{}: {differs:?}", spec.name);
            assert!(p.stops_copies(&Plan::default()), "{} {column}", spec.name);
        }
    }
}

/// Narrowing a mirror stops copies (ovs-vswitchd's cached flows are purged): fewer sources,
/// fewer VLANs, the whole bridge no more, the output moved to a VLAN.
#[test]
fn narrowing_stops_copies() {
    let ports = [("eno1", "vmbr1"), ("eno2", "vmbr1"), ("tap100i1", "vmbr1")];
    let plan_of = |from: &str, to: &str| {
        let before = Specs::resolve(&rules(from), &BTreeMap::new());
        let mut m = written(&plan_full(&before, &observed(&ports, vec![])));
        let after = Specs::resolve(&rules(to), &BTreeMap::new());
        // The same mirror name, so that the rule's edit rewrites it.
        m.name = after.specs[0].name.clone();
        plan_full(&after, &observed(&ports, vec![m]))
    };
    for (from, to) in [
        ("vmbr1 eno1,eno2 100 1\n", "vmbr1 eno1 100 1\n"),
        (
            "vmbr1 eno1 100 1 vlans=10,20\n",
            "vmbr1 eno1 100 1 vlans=10\n",
        ),
        ("vmbr1 eno1 100 1\n", "vmbr1 eno1 100 1 vlans=10\n"),
        ("vmbr1 * 100 1\n", "vmbr1 eno1 100 1\n"),
        ("vmbr1 eno1 100 1\n", "vmbr1 eno1 - - output_vlan=10\n"),
        (
            "vmbr1 eno1 - - output_vlan=10\n",
            "vmbr1 eno1 - - output_vlan=11\n",
        ),
    ] {
        let p = plan_of(from, to);
        assert!(
            matches!(p.changes.as_slice(), [MirrorChange::Update { .. }]),
            "{from} -> {to}: {p:?}"
        );
        assert!(p.stops_copies(&Plan::default()), "{from} -> {to}");
    }
}

/// A rule of several sources whose some are missing mirrors the others and waits for the rest;
/// with none of them, or without its output, it waits whole and its mirror goes.
#[test]
fn several_sources_some_missing() {
    let r = rules("vmbr1 eno1,eno2,vm200:0 100 1\nvmbr1 * 101 0\nvmbr1 * - - output_vlan=5\n");
    let specs = Specs::resolve(&r, &BTreeMap::new());
    let ports = [("eno1", "vmbr1"), ("tap100i1", "vmbr1")];
    let p = plan_full(&specs, &observed(&ports, vec![]));
    assert_eq!(
        lines(&p),
        [
            "created mirror mirror_vmbr1_eno1,eno2,tap200i0_to_vm100i1 on vmbr1: eno1 (select=both) -> tap100i1",
            "created mirror mirror_vmbr1_*_to_vlan5 on vmbr1: * (select=both) -> vlan 5",
        ]
    );
    let states: Vec<(RuleState, Option<&str>)> = p
        .rules
        .iter()
        .map(|r| (r.state, r.detail.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            (
                RuleState::Waiting,
                Some("eno2 and tap200i0 on vmbr1 (copying eno1 meanwhile)")
            ),
            (RuleState::Waiting, Some("tap101i0 on vmbr1")),
            (RuleState::Active, None),
        ]
    );
    assert_eq!(p.rules[2].output, None);
    // eno2 comes: the mirror widens to it.
    let partial = written(&p);
    let more = [("eno2", "vmbr1"), ("eno1", "vmbr1"), ("tap100i1", "vmbr1")];
    let one = Specs {
        specs: vec![specs.specs[0].clone()],
        invalid: vec![],
    };
    let p = plan_full(&one, &observed(&more, vec![partial.clone()]));
    assert_eq!(
        lines(&p),
        [
            "updated mirror mirror_vmbr1_eno1,eno2,tap200i0_to_vm100i1 on vmbr1: eno1,eno2 (select=both) -> tap100i1 (corrected: select_src_port, select_dst_port)"
        ]
    );
    // eno1 goes too: no source left, the mirror goes.
    let p = plan_full(&one, &observed(&[("tap100i1", "vmbr1")], vec![partial]));
    assert!(
        matches!(p.changes.as_slice(), [MirrorChange::Remove { .. }]),
        "{p:?}"
    );
    assert_eq!(
        p.rules[0].detail.as_deref(),
        Some("eno1 and eno2 and tap200i0 on vmbr1")
    );
}

/// The promiscuous record of a mirror of several sources names each link the tool set.
#[test]
fn several_sources_record_each_link_they_set_promiscuous() {
    let r = rules("vmbr1 eno1,eno2,vm200:0 100 1\n");
    let specs = Specs::resolve(&r, &BTreeMap::new());
    assert_eq!(
        specs.specs[0].promisc,
        ["eno1".to_string(), "eno2".into()].into()
    );
    let ports = [
        ("eno1", "vmbr1"),
        ("eno2", "vmbr1"),
        ("tap200i0", "vmbr1"),
        ("tap100i1", "vmbr1"),
    ];
    let flags: BTreeMap<String, bool> = [("eno1".to_string(), false), ("eno2".into(), true)].into();
    let p = build(
        &specs,
        &observed(&ports, vec![]),
        &Plan::default(),
        &flags,
        Scope::Full,
    );
    assert_eq!(p.promisc_on, ["eno1".to_string()].into());
    let m = ObservedMirror {
        promisc: Some("eno1,eno9".into()),
        ..written(&p)
    };
    assert_eq!(m.promisc.as_deref(), Some("eno1,eno9"));
    // The rule goes: both recorded links are cleared where they are on.
    let none = Specs::resolve(&rules(""), &BTreeMap::new());
    let on: BTreeMap<String, bool> = [("eno1".to_string(), true), ("eno9".into(), true)].into();
    let p = build(
        &none,
        &observed(&ports, vec![m]),
        &Plan::default(),
        &on,
        Scope::Full,
    );
    assert_eq!(p.promisc_off, ["eno1".to_string(), "eno9".into()].into());
}
