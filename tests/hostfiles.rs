//! The host files end to end: what the tool writes parses with ifupdown2's own parser and the
//! real nmstate library, survives a real `ifreload -a`, stays consistent under concurrent plugs,
//! and is never written when it would not change or when the admin's markers are damaged.

mod common;

use std::process::Command;

use common::{Ovs, check, text};
use ovs_autoattach::decide::interfaces;
use ovs_autoattach::decide::vlan::Vlan;
use ovs_autoattach::host::hostfiles::HostPort;

const HEAD: &str = common::NETWORK_HEAD;
const GUESTS: [(&str, &str, &str); 4] = common::RELOAD_GUESTS;

fn port(name: &str, bridge: &str, vlan: Vlan, owned: bool) -> HostPort {
    HostPort {
        name: name.into(),
        bridge: bridge.into(),
        vlan,
        owned,
    }
}

fn ifquery(path: &std::path::Path) -> String {
    check(Command::new("ifquery").arg("-a").arg("-i").arg(path))
}

fn validate_nmstate(text: &str) {
    let state =
        nmstate::NetworkState::new_from_yaml(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for iface in state.interfaces.to_vec() {
        assert_ne!(
            iface.iface_type(),
            nmstate::InterfaceType::Unknown,
            "{}\n{text}",
            iface.name()
        );
    }
    state
        .gen_conf()
        .unwrap_or_else(|e| panic!("gen_conf: {e}\n{text}"));
}

/// ifupdown2's own parser accepts the block in every shape the renderer emits.
#[test]
fn ifquery_parses_every_shape() {
    let shapes: Vec<Vec<HostPort>> = vec![
        vec![],
        vec![port("veth100i0", "ovsbr0", Vlan::default(), true)],
        vec![port(
            "tap100i0",
            "ovsbr0",
            Vlan::proxmox(Some(10), vec![]),
            true,
        )],
        vec![port(
            "tap101i0",
            "ovsbr0",
            Vlan::proxmox(None, vec![20, 30, 31]),
            false,
        )],
        vec![port(
            "veth102i0",
            "vmbr1",
            Vlan::proxmox(Some(10), vec![20, 30]),
            true,
        )],
        vec![
            port("veth201i1", "vmbr1", Vlan::proxmox(Some(30), vec![]), true),
            port(
                "tap200i0",
                "vmbr1",
                Vlan::proxmox(Some(5), vec![1, 4094]),
                false,
            ),
            port("vethRaw1", "ovsbr0", Vlan::default(), true),
        ],
    ];
    let tmp = tempfile::tempdir().unwrap();
    for ports in shapes {
        let file = tmp.path().join("interfaces");
        let content = interfaces::splice(HEAD, Some(&interfaces::render_block(&ports))).unwrap();
        std::fs::write(&file, &content).unwrap();
        let parsed = ifquery(&file);
        for p in &ports {
            assert!(
                parsed.contains(&format!("iface {} inet manual", p.name)),
                "{parsed}"
            );
            let opts = p.vlan.ovs_options();
            if !opts.is_empty() {
                assert!(
                    parsed.contains(&format!("ovs-options {opts}"))
                        || parsed.contains(&format!("ovs_options {opts}")),
                    "{parsed}"
                );
            }
        }
    }
}

fn host() -> Ovs {
    Ovs::reload_host()
}

/// `port bridge tag trunks vlan_mode owner` for every guest port, as ovs-vsctl reports it.
fn oracle(ovs: &Ovs) -> Vec<String> {
    GUESTS
        .iter()
        .map(|(p, _, _)| {
            format!(
                "{p} {} {} owner={}",
                ovs.bridge_of(p).unwrap_or_else(|| "-".into()),
                ovs.vlan(p),
                ovs.owner(p).unwrap_or_else(|| "-".into())
            )
        })
        .collect()
}

fn assert_guests_in_place(ovs: &Ovs) {
    for (p, bridge, vlan) in GUESTS {
        assert_eq!(ovs.bridge_of(p).as_deref(), Some(bridge), "{p}");
        assert_eq!(ovs.vlan(p), vlan, "{p}");
        assert_eq!(ovs.owner(p).as_deref(), Some("ovs-autoattach"), "{p}");
    }
}

#[test]
fn written_files_parse_and_list_the_guest_ports() {
    let ovs = host();
    ovs.tool_ok(&["apply"]);
    let content = std::fs::read_to_string(ovs.interfaces_path()).unwrap();
    assert!(
        content.starts_with(HEAD),
        "the admin's part is kept byte for byte"
    );
    assert!(content.contains("iface veth200i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10 trunks=20,30 vlan_mode=native-untagged\n    ovs_extra set Port veth200i0 external_ids:owner=ovs-autoattach\n"), "{content}");
    let parsed = ifquery(&ovs.interfaces_path());
    for (p, _, _) in GUESTS {
        assert!(
            parsed.contains(&format!("iface {p} inet manual")),
            "{parsed}"
        );
    }
    let nm = std::fs::read_to_string(ovs.nmstate_path()).unwrap();
    validate_nmstate(&nm);
    for (p, _, _) in GUESTS {
        assert_eq!(
            nm.matches(&format!("- name: {p}\n")).count(),
            if p.starts_with("veth") { 2 } else { 1 },
            "{p}\n{nm}"
        );
    }
    // clear puts the admin's file back exactly and removes the nmstate file.
    ovs.tool_ok(&["clear"]);
    assert_eq!(
        std::fs::read_to_string(ovs.interfaces_path()).unwrap(),
        HEAD
    );
    assert!(!ovs.nmstate_path().exists());
}

/// The reload problem, reproduced and solved: without the managed block `ifreload -a` deletes
/// the guest ports (they are not in `ovs_ports`); with it, every guest port keeps its bridge, its
/// VLAN settings and its ownership mark.
#[test]
fn ifreload_keeps_guest_ports_with_vlan_and_mark() {
    let ovs = host();
    ovs.write_config("interfaces_file: null\n");
    ovs.tool_ok(&["apply"]);
    let out = ovs.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "ifreload: {}", text(&out.stderr));
    for (p, _, _) in GUESTS {
        assert_eq!(
            ovs.bridge_of(p),
            None,
            "without the block ifreload drops {p}"
        );
    }

    // The runbook's stanzas (no ovs_options, no ovs_extra) keep the ports but lose their VLAN
    // settings and mark: ifupdown2 clears those columns before re-adding.
    ovs.write_config(&format!(
        "interfaces_file: {}\n",
        ovs.interfaces_path().display()
    ));
    ovs.tool_ok(&["apply"]);
    let runbook: String = std::fs::read_to_string(ovs.interfaces_path())
        .unwrap()
        .lines()
        .filter(|l| !l.contains("ovs_options") && !l.contains("ovs_extra"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(ovs.interfaces_path(), runbook).unwrap();
    assert!(ovs.ifupdown(&[], "ifreload -a").status.success());
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("vmbr1"));
    assert_eq!(
        ovs.vlan("tap100i0"),
        "[] [] []",
        "the runbook's stanza loses the tag"
    );
    assert_eq!(ovs.owner("tap100i0"), None);

    // Unmarked ports count as someone else's from now on; start over with ports of ours.
    for (p, _, _) in GUESTS {
        ovs.vsctl(&["del-port", p]);
    }
    ovs.tool_ok(&["apply"]);
    let before = oracle(&ovs);
    let out = ovs.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "ifreload: {}", text(&out.stderr));
    let after = oracle(&ovs);
    println!(
        "before ifreload -a:\n  {}\nafter ifreload -a:\n  {}",
        before.join("\n  "),
        after.join("\n  ")
    );
    assert_eq!(before, after);
    assert_guests_in_place(&ovs);
    // And the uplinks ifupdown2 manages are still there.
    assert_eq!(ovs.bridge_of("eno1").as_deref(), Some("ovsbr0"));
}

#[test]
fn fifty_parallel_plugs_all_land_in_both_files() {
    let ovs = Ovs::start();
    let names: Vec<String> = (0..50).map(|i| format!("vethP{i:02}")).collect();
    ovs.sh(&names
        .iter()
        .map(|n| format!("ip link add {n} type veth peer name q{n}"))
        .collect::<Vec<_>>()
        .join("; "));
    let children: Vec<_> = names
        .iter()
        .map(|n| ovs.tool_cmd(&["plug", n]).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let content = std::fs::read_to_string(ovs.interfaces_path()).unwrap();
    let nm = std::fs::read_to_string(ovs.nmstate_path()).unwrap();
    for n in &names {
        assert_eq!(
            content.matches(&format!("iface {n} inet manual\n")).count(),
            1,
            "{n}"
        );
        assert_eq!(
            nm.matches(&format!("- name: {n}\n")).count(),
            2,
            "{n}: bridge port and veth entry"
        );
        assert_eq!(ovs.bridge_of(n).as_deref(), Some("ovsbr0"));
    }
    ifquery(&ovs.interfaces_path());
    validate_nmstate(&nm);
}

#[test]
fn damaged_markers_fail_the_run_and_leave_the_file_alone() {
    let ovs = host();
    let damaged = [
        format!("{HEAD}# BEGIN ovs-autoattach\nauto x\n"),
        format!("{HEAD}# END ovs-autoattach\n# BEGIN ovs-autoattach\n"),
        format!(
            "{HEAD}# BEGIN ovs-autoattach\n# END ovs-autoattach\n# BEGIN ovs-autoattach\n# END ovs-autoattach\n"
        ),
        format!("{HEAD}  # BEGIN ovs-autoattach\n# END ovs-autoattach\n"),
    ];
    for content in damaged {
        std::fs::write(ovs.interfaces_path(), &content).unwrap();
        let out = ovs.tool_code(&["apply"], 1);
        assert!(
            out.contains(&format!("{}:", ovs.interfaces_path().display()))
                && out.contains("left unchanged"),
            "{out}"
        );
        assert_eq!(
            std::fs::read_to_string(ovs.interfaces_path()).unwrap(),
            content
        );
    }
    // OVS is the primary state: the ports are attached regardless.
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("vmbr1"));
    assert!(ovs.nmstate_path().exists());
}

#[test]
fn unchanged_state_never_rewrites_the_files() {
    let ovs = host();
    ovs.tool_ok(&["apply"]);
    let stamp = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    let (i, n) = (stamp(&ovs.interfaces_path()), stamp(&ovs.nmstate_path()));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = ovs.tool_ok(&["apply"]);
    assert!(out.contains("no file rewritten"), "{out}");
    ovs.tool_ok(&["plug", "tap100i0"]);
    assert_eq!(stamp(&ovs.interfaces_path()), i);
    assert_eq!(stamp(&ovs.nmstate_path()), n);
}

#[test]
fn legacy_runbook_block_is_migrated_in_place() {
    let ovs = host();
    let legacy = "# BEGIN nmstate-monitor\n# Managed by nmstate-monitor, do not edit manually.\nauto vethOld\nallow-ovs vethOld\niface vethOld inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n# END nmstate-monitor\n";
    let tail = "\nsource /etc/network/interfaces.d/*\n";
    std::fs::write(ovs.interfaces_path(), format!("{HEAD}\n{legacy}{tail}")).unwrap();
    ovs.tool_ok(&["apply"]);
    let content = std::fs::read_to_string(ovs.interfaces_path()).unwrap();
    assert!(
        content.starts_with(&format!("{HEAD}\n# BEGIN ovs-autoattach\n")),
        "{content}"
    );
    assert!(
        content.ends_with(&format!("# END ovs-autoattach\n{tail}")),
        "{content}"
    );
    assert!(!content.contains("nmstate-monitor") && !content.contains("vethOld"));
}
