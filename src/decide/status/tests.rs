//! The report's unit tests, on hosts built with `apply`'s own `desired::build` and
//! `plan::build`: every state, the host files' states, both renderings, and the health rule
//! against the plan.

use super::*;
use crate::decide::desired::{self, GuestFile, Guests, Master};
use crate::decide::guest::{GuestConfig, GuestId};
use crate::decide::mirrors::Out;
use crate::decide::plan::{self, Scope};
use crate::decide::testing::link_on;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn port(bridge: Option<&str>, vlan: Vlan, owned: bool) -> PortState {
    PortState {
        uuid: format!("u-{bridge:?}"),
        bridge: bridge.map(String::from),
        vlan,
        owned,
    }
}

/// A host as `apply` sees it, with the guests' configuration text.
struct Host {
    config: Config,
    links: Vec<HostLink>,
    guests: Vec<(Kind, u32, &'static str)>,
    ports: Vec<(&'static str, PortState)>,
}

impl Host {
    fn new() -> Host {
        Host {
            config: Config {
                exclude: vec!["tap9*".into()],
                ..Config::default()
            },
            links: Vec::new(),
            guests: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// `desired::build` and `plan::build` exactly as `apply` calls them, then the report.
    fn report(&self) -> (Report, Plan) {
        let observed = Observed {
            bridges: [("ovsbr0", "b0"), ("vmbr1", "b1")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .into(),
            ports: self
                .ports
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
            ..Observed::default()
        };
        let guests = Guests {
            proxmox: true,
            files: self
                .guests
                .iter()
                .map(|(kind, vmid, text)| {
                    (
                        GuestId {
                            kind: *kind,
                            vmid: *vmid,
                        },
                        GuestFile::Parsed(GuestConfig::parse(*kind, text)),
                    )
                })
                .collect(),
            containers: BTreeMap::new(),
        };
        let seen = desired::Seen {
            observed: &observed,
            record: &desired::Record::new(),
            busy: &BTreeSet::new(),
            plug: false,
        };
        let desired = desired::build(&self.config, &self.links, &guests, seen);
        let live: BTreeSet<String> = self.links.iter().map(|l| l.name.clone()).collect();
        let plan = plan::build(
            &self.config,
            &desired,
            &observed,
            Scope::Full { live: &live },
        );
        let report = Report::build(&self.config, &self.links, &desired, &observed, &plan, &live);
        (report, plan)
    }
}

/// The human output exactly as `status` puts it together.
fn human(r: &Report) -> String {
    let mut out = r.nic_table();
    r.push_rest(&mut out);
    out
}

fn nic<'a>(r: &'a Report, name: &str) -> &'a Nic {
    r.nics
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("{name} not in {r:#?}"))
}

const TAG10: &str = "net0: virtio,bridge=vmbr1,tag=10\n";

#[test]
fn each_state_from_apply_s_own_decisions() {
    let mut h = Host::new();
    let tag10 = Vlan::proxmox(Some(10), vec![]);
    h.guests = vec![
        (Kind::Qemu, 100, TAG10),
        (Kind::Qemu, 101, TAG10),
        (Kind::Qemu, 102, TAG10),
        (Kind::Lxc, 200, "net0: name=eth0,bridge=vmbr1,link_down=1\n"),
        (Kind::Lxc, 201, "net0: name=eth0,bridge=vmbr1,link_down=1\n"),
        (Kind::Lxc, 202, "net0: name=eth0,bridge=vmbr0\n"),
        (Kind::Qemu, 300, "net0: virtio,bridge=vmbr1,tag=4095\n"),
    ];
    h.links = [
        "tap100i0",
        "tap101i0",
        "tap102i0",
        "veth200i0",
        "veth201i0",
        "veth202i0",
        "tap300i0",
        "tap400i0",
        "tap900i0",
        "vethRaw",
    ]
    .map(|n| link_on(n, Master::None))
    .into();
    h.links
        .push(link_on("tap500i0", Master::Other("vmbr0".into())));
    h.ports = vec![
        ("tap100i0", port(Some("vmbr1"), tag10.clone(), true)),
        ("tap102i0", port(Some("vmbr1"), Vlan::default(), false)),
        ("veth200i0", port(Some("vmbr1"), Vlan::default(), true)),
        ("veth201i0", port(Some("vmbr1"), Vlan::default(), false)),
        ("vethRaw", port(Some("ovsbr0"), Vlan::default(), true)),
        ("tap600i0", port(Some("ovsbr0"), Vlan::default(), false)),
        ("vethGone", port(Some("ovsbr0"), Vlan::default(), true)),
        ("vethForeign", port(Some("ovsbr0"), Vlan::default(), false)),
    ];
    let (r, plan) = h.report();
    let want = [
        ("tap100i0", State::Ok),
        ("tap101i0", State::Missing),
        ("tap102i0", State::Drift),
        ("veth200i0", State::Drift),
        ("veth201i0", State::Ignored),
        ("veth202i0", State::KeptOff),
        ("tap300i0", State::Invalid),
        ("tap400i0", State::Ignored),
        ("tap500i0", State::Ignored),
        ("tap900i0", State::Ignored),
        ("vethRaw", State::Ok),
    ];
    for (name, state) in want {
        assert_eq!(nic(&r, name).state, state, "{name}: {:?}", nic(&r, name));
    }
    assert_eq!(r.nics.len(), want.len());
    assert_eq!(
        nic(&r, "tap101i0").reason.as_deref(),
        Some("attach tap101i0 to vmbr1 tag=10")
    );
    assert_eq!(
        nic(&r, "tap102i0").reason.as_deref(),
        Some("update tap102i0 on vmbr1: untagged -> tag=10")
    );
    assert!(
        nic(&r, "veth200i0")
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("prune veth200i0 from vmbr1 (net0 has link_down=1)"))
    );
    assert!(
        nic(&r, "veth201i0")
            .reason
            .as_deref()
            .unwrap()
            .contains("no ownership mark")
    );
    assert!(
        nic(&r, "tap300i0")
            .reason
            .as_deref()
            .unwrap()
            .contains("4095")
    );
    assert_eq!(
        nic(&r, "tap900i0").reason.as_deref(),
        Some("matches the exclude pattern tap9*")
    );
    assert_eq!(
        nic(&r, "tap500i0").reason.as_deref(),
        Some("enslaved to vmbr0")
    );
    // Stale: exactly the prunes of gone links, owned or Proxmox-named; a foreign port stays.
    let stale: Vec<&str> = r.stale.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stale, ["tap600i0", "vethGone"]);
    assert!(!r.stale[0].actual.owned);
    assert!(r.other.is_empty());
    // Every change of the plan is accounted for.
    let accounted = r.nics.iter().filter(|n| n.state.needs_apply()).count() + r.stale.len();
    assert_eq!(accounted, plan.changes.len());
    assert!(r.needs_apply() && r.needs_admin() && !r.healthy());
}

#[test]
fn a_converged_host_is_healthy() {
    let mut h = Host::new();
    h.guests = vec![(Kind::Qemu, 100, TAG10)];
    h.links = vec![link_on("tap100i0", Master::None)];
    h.ports = vec![(
        "tap100i0",
        port(Some("vmbr1"), Vlan::proxmox(Some(10), vec![]), false),
    )];
    let (r, plan) = h.report();
    assert!(plan.is_empty());
    assert!(r.healthy(), "{r:#?}");
    assert_eq!(
        r.summary(),
        "status: 1 ok, 0 missing, 0 drift, 0 kept-off, 0 ignored, 0 invalid, 0 stale; host files: 0 in-sync, 0 out-of-sync, 0 refused; nothing to do"
    );
}

fn check(removes: bool, in_sync: Result<bool, String>) -> FileCheck {
    FileCheck {
        role: "stanzas".into(),
        path: "/etc/network/interfaces.d/ovs-autoattach".into(),
        removes,
        in_sync,
        refused: Vec::new(),
        notes: Vec::new(),
        error: None,
        source_line: None,
    }
}

#[test]
fn file_states() {
    let f = File::of(check(false, Ok(true)));
    assert_eq!((f.state, f.reason), (FileState::InSync, None));
    let mut c = check(false, Ok(false));
    c.notes = vec!["moving the stanzas of tap100i0 to /x".into()];
    let f = File::of(c);
    assert_eq!(f.state, FileState::OutOfSync);
    assert_eq!(
        f.reason.as_deref(),
        Some("moving the stanzas of tap100i0 to /x; apply rewrites it")
    );
    let f = File::of(check(true, Ok(false)));
    assert_eq!(f.reason.as_deref(), Some("apply removes it"));
    let mut c = check(false, Ok(true));
    c.refused = vec!["ifupdown2 does not read /x".into()];
    c.source_line = Some("source /etc/network/interfaces.d/*".into());
    let f = File::of(c);
    assert_eq!(f.state, FileState::Refused);
    assert_eq!(
        f.source_line.as_deref(),
        Some("source /etc/network/interfaces.d/*")
    );
    let mut c = check(false, Ok(true));
    c.error = Some("/x is not valid UTF-8".into());
    assert_eq!(File::of(c).state, FileState::Refused);
    assert_eq!(
        File::of(check(false, Err("denied".into()))).state,
        FileState::Refused
    );
    // Files alone decide the verdict too.
    let r = Report {
        files: vec![File::of(check(false, Ok(false)))],
        ..Report::default()
    };
    assert!(r.needs_apply() && !r.healthy());
}

#[test]
fn json_document() {
    let mut h = Host::new();
    h.guests = vec![(
        Kind::Lxc,
        200,
        "net0: name=eth0,bridge=vmbr1,tag=10,trunks=20;30\n",
    )];
    h.links = vec![
        link_on("veth200i0", Master::None),
        link_on("vethRaw", Master::None),
    ];
    h.ports = vec![("vethRaw", port(Some("ovsbr0"), Vlan::default(), true))];
    let (r, _) = h.report();
    let text = r.to_json();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["healthy"], false);
    let nics = doc["nics"].as_array().unwrap();
    assert_eq!(nics.len(), 2);
    let v = &nics[0];
    assert_eq!(v["name"], "veth200i0");
    assert_eq!(v["state"], "missing");
    assert_eq!(v["decision"], "attach");
    assert_eq!(
        v["guest"],
        json!({"vmid": 200, "kind": "lxc", "net": "net0"})
    );
    assert_eq!(
        v["desired"],
        json!({"bridge": "vmbr1", "vlan": {"tag": 10, "trunks": [20, 30], "vlan_mode": "native-untagged"}})
    );
    assert_eq!(v["actual"], Value::Null);
    let raw = &nics[1];
    assert_eq!(raw["guest"], Value::Null);
    assert_eq!(raw["state"], "ok");
    assert_eq!(raw["reason"], Value::Null);
    assert_eq!(raw["actual"]["owned"], true);
    assert_eq!(raw["actual"]["vlan"]["trunks"], json!([]));
    // What placed the raw NIC; a Proxmox NIC has no such key.
    assert_eq!(raw["source"], "default bridge");
    assert!(v.get("source").is_none());
    let table = r.nic_table();
    let row = table.lines().find(|l| l.starts_with("vethRaw")).unwrap();
    assert!(row.contains("  default bridge  ok"), "{table}");
    for key in ["stale", "files", "mirrors", "other"] {
        assert_eq!(doc[key], json!([]), "{key}");
    }
    assert_eq!(doc["counts"]["missing"], 1);
    assert_eq!(doc["counts"]["kept-off"], 0);
}

#[test]
fn text_table_sorted_by_guest_and_aligned() {
    let mut h = Host::new();
    h.guests = vec![
        (
            Kind::Qemu,
            100,
            "net0: virtio,bridge=vmbr1\nnet1: virtio,bridge=vmbr1,tag=5\n",
        ),
        (Kind::Lxc, 100, "net0: name=eth0,bridge=vmbr1\n"),
        (Kind::Qemu, 20000, TAG10),
    ];
    h.links = ["vethAAA", "tap20000i0", "tap100i1", "veth100i0", "tap100i0"]
        .map(|n| link_on(n, Master::None))
        .into();
    h.ports = vec![("tap555i0", port(Some("ovsbr0"), Vlan::default(), false))];
    let (r, _) = h.report();
    let text = human(&r);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NIC "), "{text}");
    let names: Vec<&str> = lines[1..7]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "tap100i0",
            "tap100i1",
            "veth100i0",
            "tap555i0",
            "tap20000i0",
            "vethAAA"
        ],
        "{text}"
    );
    // Every row's STATE column starts where the header's does.
    let col = lines[0].find("STATE").unwrap();
    for l in &lines[1..7] {
        assert!(
            l[col..].starts_with("missing") || l[col..].starts_with("stale"),
            "{l}"
        );
    }
    assert!(
        lines[4].contains("stale") && lines[4].contains("prune tap555i0"),
        "{text}"
    );
    assert!(lines[1].contains("qemu 100 net0") && lines[3].contains("lxc 100 net0"));
    assert_eq!(
        *lines.last().unwrap(),
        "status: 0 ok, 5 missing, 0 drift, 0 kept-off, 0 ignored, 0 invalid, 1 stale; host files: 0 in-sync, 0 out-of-sync, 0 refused; run apply"
    );
}

#[test]
fn odd_names_are_escaped_in_the_table() {
    let mut h = Host::new();
    h.links = vec![link_on("tap$(id)\u{1b}", Master::None)];
    let (r, _) = h.report();
    assert_eq!(r.nics[0].state, State::Ignored);
    assert!(human(&r).contains("tap$(id)\\u{1b}"), "{}", human(&r));
}

proptest! {
    /// Whatever OVS holds, the report is healthy exactly when the plan is empty (no
    /// invalid NIC here, no files): `status` and `apply` never disagree.
    #[test]
    fn healthy_exactly_when_the_plan_is_empty(
        held in proptest::collection::vec(
            (0usize..6, proptest::option::of(0usize..3), 0u16..3, any::<bool>()),
            0..6,
        ),
        gone in proptest::collection::vec(any::<bool>(), 6),
    ) {
        let names = ["tap100i0", "tap101i0", "veth200i0", "vethRaw", "tap300i0", "vethX"];
        let mut h = Host::new();
        h.guests = vec![
            (Kind::Qemu, 100, TAG10),
            (Kind::Qemu, 101, "net0: virtio,bridge=vmbr0\n"),
            (Kind::Lxc, 200, "net0: name=eth0,bridge=vmbr1,link_down=1\n"),
        ];
        h.links = names
            .iter()
            .zip(&gone)
            .filter(|(_, g)| !**g)
            .map(|(n, _)| link_on(n, Master::None))
            .collect();
        let bridges = ["ovsbr0", "vmbr1", "vmbr9"];
        h.ports = held
            .iter()
            .map(|(n, b, tag, owned)| {
                let vlan = Vlan::proxmox((*tag > 0).then_some(*tag * 5), vec![]);
                (names[*n], port(b.map(|b| bridges[b]), vlan, *owned))
            })
            .collect();
        let (r, plan) = h.report();
        prop_assert_eq!(r.healthy(), plan.is_empty(), "{:#?}\n{:#?}", r, plan);
        prop_assert!(r.other.is_empty());
    }
}

/// The mirror rules read off the mirror plan: an active rule whose mirror the plan still
/// creates or corrects is pending (the change is the reason), the others keep the plan's state
/// with the reason worded; removals no rule claims are other planned changes.
#[test]
fn mirror_rules_are_read_off_the_mirror_plan() {
    use crate::decide::linkplan::LinkState;
    use crate::decide::mirrors::{Select, Want};
    use crate::decide::observed::{MirrorStats, ObservedMirror};
    use crate::decide::plan::PortRef;
    let rule = |line, mirror: Option<&str>, state, detail: Option<&str>| RuleStatus {
        line,
        mirror: mirror.map(String::from),
        bridge: mirror.map(|_| "vmbr1".into()),
        output: mirror.map(|m| format!("out-{m}")),
        state,
        detail: detail.map(String::from),
    };
    let want = Want {
        name: "m_pending".into(),
        bridge: "vmbr1".into(),
        all: false,
        sources: vec![("eno1".into(), PortRef::Row("E".into()))],
        out: Out::Port("tap100i1".into(), PortRef::New("tap100i1".into())),
        select: Select::Both,
        vlans: BTreeSet::new(),
        promisc: BTreeSet::new(),
    };
    let plan = MirrorPlan {
        changes: vec![
            MirrorChange::Create(want),
            MirrorChange::Remove {
                uuid: "M9".into(),
                name: "m_gone".into(),
                bridge: "vmbr1".into(),
                reason: "no rule asks for it".into(),
            },
        ],
        rules: vec![
            rule(1, Some("m_ok"), RuleState::Active, None),
            rule(2, Some("m_pending"), RuleState::Active, None),
            rule(
                3,
                Some("m_wait"),
                RuleState::Waiting,
                Some("tap102i1 on vmbr1"),
            ),
            rule(4, None, RuleState::Invalid, Some("unknown option \"x\"")),
            rule(5, Some("m_down"), RuleState::Active, None),
            rule(6, Some("m_gone"), RuleState::Active, None),
        ],
        ..MirrorPlan::default()
    };
    // Every output link is up but m_down's; m_gone's has no link at all.
    let links: BTreeMap<String, LinkState> = ["m_ok", "m_pending", "m_wait", "m_down"]
        .map(|m| {
            let state = LinkState {
                up: m != "m_down",
                mtu: None,
                master: None,
                alias: None,
                rate_limited: None,
                ipv6: false,
            };
            (format!("out-{m}"), state)
        })
        .into();
    let stats = MirrorStats {
        tx_packets: 12,
        tx_bytes: 1176,
    };
    let mirror = |name: &str, bridge: &str, owner: &str| ObservedMirror {
        name: name.into(),
        bridge: Some(bridge.into()),
        owner: Some(owner.into()),
        stats: Some(stats),
        ..ObservedMirror::default()
    };
    let observed = Observed {
        mirrors: vec![
            mirror("m_ok", "vmbr2", "ovs-autoattach"),
            mirror("m_ok", "vmbr1", "someone"),
            mirror("m_ok", "vmbr1", "ovs-autoattach"),
            mirror("m_wait", "vmbr2", "ovs-autoattach"),
        ],
        ..Observed::default()
    };
    let report = Report::default().with_mirrors(&plan, &observed, &links);
    let shown: Vec<(&str, RuleState, Option<&str>)> = report
        .mirrors
        .iter()
        .map(|m| (m.rule.as_str(), m.state, m.reason.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            ("m_ok", RuleState::Active, None),
            (
                "m_pending",
                RuleState::Pending,
                Some("create mirror m_pending on vmbr1: eno1 (select=both) -> tap100i1")
            ),
            (
                "m_wait",
                RuleState::Waiting,
                Some("waiting for tap102i1 on vmbr1")
            ),
            (
                "line 4",
                RuleState::Invalid,
                Some("line 4: unknown option \"x\"")
            ),
            (
                "m_down",
                RuleState::Waiting,
                Some("waiting for out-m_down to come up (its link is down)")
            ),
            (
                "m_gone",
                RuleState::Waiting,
                Some("waiting for out-m_gone (its link is gone)")
            ),
        ]
    );
    // Statistics: only of the mirror of ours on the rule's bridge.
    let with_stats: Vec<&str> = report
        .mirrors
        .iter()
        .filter(|m| m.stats == Some(stats))
        .map(|m| m.rule.as_str())
        .collect();
    assert_eq!(with_stats, ["m_ok"]);
    let doc: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(
        doc["mirrors"][0]["statistics"],
        json!({"tx_packets": 12, "tx_bytes": 1176})
    );
    assert_eq!(doc["mirrors"][1]["statistics"], Value::Null);
    assert_eq!(
        report.other,
        ["remove mirror m_gone from vmbr1 (no rule asks for it)"]
    );
    assert!(report.needs_apply() && report.needs_admin());
    let states: Vec<&str> = report.mirrors.iter().map(|m| m.state.as_str()).collect();
    assert_eq!(
        states,
        [
            "active", "pending", "waiting", "invalid", "waiting", "waiting"
        ]
    );
}

/// A rule of several sources waiting for some of them shows pending while its mirror of the
/// others is still to be made, and waiting (for those it lacks) once it is.
#[test]
fn a_rule_waiting_for_some_sources_is_pending_until_its_mirror_of_the_others_is_made() {
    use crate::decide::mirrors::{Select, Want};
    use crate::decide::plan::PortRef;
    let rule = RuleStatus {
        line: 1,
        mirror: Some("m_part".into()),
        bridge: Some("vmbr1".into()),
        output: Some("tap100i1".into()),
        state: RuleState::Waiting,
        detail: Some("eno2 on vmbr1 (copying eno1 meanwhile)".into()),
    };
    let want = Want {
        name: "m_part".into(),
        bridge: "vmbr1".into(),
        all: false,
        sources: vec![("eno1".into(), PortRef::Row("E".into()))],
        out: Out::Port("tap100i1".into(), PortRef::Row("T".into())),
        select: Select::Both,
        vlans: BTreeSet::new(),
        promisc: BTreeSet::new(),
    };
    let to_make = MirrorPlan {
        changes: vec![MirrorChange::Create(want)],
        rules: vec![rule.clone()],
        ..MirrorPlan::default()
    };
    let m = Mirror::of(&rule, &to_make, &Observed::default(), &BTreeMap::new());
    assert_eq!(m.state, RuleState::Pending);
    assert!(m.reason.unwrap().starts_with("create mirror m_part"));
    let made = MirrorPlan {
        rules: vec![rule.clone()],
        ..MirrorPlan::default()
    };
    let m = Mirror::of(&rule, &made, &Observed::default(), &BTreeMap::new());
    assert_eq!(
        (m.state, m.reason.as_deref()),
        (
            RuleState::Waiting,
            Some("waiting for eno2 on vmbr1 (copying eno1 meanwhile)")
        )
    );
}
