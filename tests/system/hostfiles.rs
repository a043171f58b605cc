//! The host files end to end: what the tool writes parses with ifupdown2's own parser and the
//! real nmstate library, stays consistent under concurrent plugs, is never written when it would
//! not change, and the upgrade from the managed block of older versions cleans
//! `/etc/network/interfaces` exactly as Proxmox's network editor leaves it.

use crate::common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Ovs, check, text};
use ovs_autoattach::decide::ports::HostPort;
use ovs_autoattach::decide::stanzas::{self, Listed};
use ovs_autoattach::decide::vlan::Vlan;

const GUESTS: [(&str, &str, &str); 4] = common::RELOAD_GUESTS;

fn port(name: &str, bridge: &str, vlan: Vlan, owned: bool) -> HostPort {
    HostPort {
        name: name.into(),
        bridge: bridge.into(),
        vlan,
        owned,
    }
}

fn ifquery_all(path: &std::path::Path) -> String {
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

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// ifupdown2's own parser reads the file, through the `source` line, in every shape the renderer
/// emits; `ifquery -a` lists none of its stanzas (none is `auto`), `ifquery NAME` each of them.
#[test]
fn ifquery_parses_every_shape_and_none_is_auto() {
    if common::without_root() {
        return;
    }
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
    let dir = tmp.path().join("interfaces.d");
    std::fs::create_dir_all(&dir).unwrap();
    let main = tmp.path().join("interfaces");
    std::fs::write(
        &main,
        format!("{}\nsource {}/*\n", common::NETWORK_HEAD, dir.display()),
    )
    .unwrap();
    for ports in shapes {
        let listed = Listed {
            ports: ports.clone(),
            neutral: vec!["tap300i0".into()],
        };
        std::fs::write(dir.join("ovs-autoattach"), stanzas::render(&listed)).unwrap();
        let all = ifquery_all(&main);
        assert!(
            !all.contains("iface tap") && !all.contains("iface veth"),
            "{all}"
        );
        let mut names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
        names.push("tap300i0");
        let parsed = check(Command::new("ifquery").arg("-i").arg(&main).args(&names));
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
        assert!(parsed.contains("iface tap300i0 inet manual"), "{parsed}");
    }
}

fn host() -> Ovs {
    Ovs::reload_host()
}

#[test]
fn written_files_parse_and_list_the_guest_ports() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    let head = ovs.network_head();
    ovs.tool_ok(&["apply"]);
    assert_eq!(
        read(&ovs.interfaces_path()),
        head,
        "Proxmox's file is never written"
    );
    let content = read(&ovs.stanzas_path());
    assert!(content.contains("\niface veth200i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10 trunks=20,30 vlan_mode=native-untagged\n    ovs_extra set Port veth200i0 external_ids:owner=ovs-autoattach\n"), "{content}");
    let parsed = check(
        Command::new("ifquery")
            .arg("-i")
            .arg(ovs.interfaces_path())
            .args(GUESTS.map(|g| g.0)),
    );
    for (p, bridge, _) in GUESTS {
        assert!(
            parsed.contains(&format!("iface {p} inet manual")) && parsed.contains(bridge),
            "{parsed}"
        );
    }
    let nm = read(&ovs.nmstate_path());
    validate_nmstate(&nm);
    for (p, _, _) in GUESTS {
        assert_eq!(
            nm.matches(&format!("- name: {p}\n")).count(),
            if p.starts_with("veth") { 2 } else { 1 },
            "{p}\n{nm}"
        );
    }
    // clear removes the ports and the nmstate file; the names of links that still exist keep a
    // neutral stanza (nothing but `iface NAME inet manual`), so that no reload downs them.
    ovs.tool_ok(&["clear"]);
    assert_eq!(read(&ovs.interfaces_path()), head);
    assert!(!ovs.nmstate_path().exists());
    let listed = stanzas::parse(&read(&ovs.stanzas_path())).unwrap();
    assert!(listed.ports.is_empty(), "{listed:?}");
    let mut neutral = listed.neutral.clone();
    neutral.sort();
    let mut want: Vec<String> = GUESTS.iter().map(|g| g.0.to_string()).collect();
    want.sort();
    assert_eq!(neutral, want);
    // Once the links are gone, so is the file.
    for (p, _, _) in GUESTS {
        ovs.del_link(p);
    }
    ovs.tool_ok(&["clear"]);
    assert!(!ovs.stanzas_path().exists());
}

#[test]
fn fifty_parallel_plugs_all_land_in_both_files() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    let names: Vec<String> = (0..50).map(|i| format!("vethP{i:02}")).collect();
    // Raw containers' NICs: each peer in the container's namespace.
    let c = ovs.container_ns();
    ovs.sh(&names
        .iter()
        .map(|n| format!("ip link add {n} type veth peer name q{n} netns {c}"))
        .collect::<Vec<_>>()
        .join("; "));
    let children: Vec<_> = names
        .iter()
        .map(|n| ovs.tool_cmd(&["plug", n]).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let content = read(&ovs.stanzas_path());
    let nm = read(&ovs.nmstate_path());
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
    stanzas::parse(&content).unwrap();
    validate_nmstate(&nm);
}

#[test]
fn unchanged_state_never_rewrites_the_files() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.tool_ok(&["apply"]);
    let stamp = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    let files = [
        ovs.stanzas_path(),
        ovs.nmstate_path(),
        ovs.interfaces_path(),
    ];
    let before: Vec<_> = files.iter().map(|f| stamp(f)).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = ovs.tool_ok(&["apply"]);
    assert!(out.contains("no file rewritten"), "{out}");
    ovs.tool_ok(&["plug", "tap100i0"]);
    let after: Vec<_> = files.iter().map(|f| stamp(f)).collect();
    assert_eq!(before, after);
}

/// A plug drops the entries of links that are gone: the source of a live migration never runs
/// `post-stop`, and its NICs simply vanish.
#[test]
fn every_run_drops_the_stanzas_of_vanished_links() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.tool_ok(&["apply"]);
    ovs.del_link("tap100i1");
    ovs.tool_ok(&["plug", "tap100i0"]);
    let listed = stanzas::parse(&read(&ovs.stanzas_path())).unwrap();
    let names: Vec<&str> = listed.names().collect();
    assert!(!names.contains(&"tap100i1"), "{names:?}");
    assert!(names.contains(&"veth200i0"), "{names:?}");
    assert!(!read(&ovs.nmstate_path()).contains("tap100i1"));
}

/// Admin stanzas of an interfaces file by name: every line from `iface NAME` to the next blank
/// line, and the `auto` line naming it.
fn admin_stanzas(content: &str, guests: &[&str]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in content.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["iface", name, ..] => {
                current = (!guests.contains(name)).then(|| name.to_string());
            }
            [] => current = None,
            _ => {}
        }
        if let Some(n) = &current {
            let e = out.entry(n.clone()).or_default();
            e.push_str(line.trim_end());
            e.push('\n');
        }
    }
    out
}

const FIXTURE_GUESTS: [&str; 4] = ["tap100i0", "tap100i1", "veth200i0", "vethA1b2C3"];

/// The host of the Proxmox fixtures: the guests their managed block lists, running, on `vmbr1`.
fn fixture_host() -> Ovs {
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    ovs.guest(
        "qemu-server",
        100,
        "net0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr1,tag=10\nnet1: virtio=BC:24:11:A3:DA:B2,bridge=vmbr1,trunks=20;30-32\n",
    );
    ovs.guest(
        "lxc",
        200,
        "net0: name=eth0,bridge=vmbr1,tag=10,trunks=20;30,type=veth\n",
    );
    ovs.tap("tap100i0");
    ovs.tap("tap100i1");
    ovs.veth("veth200i0");
    ovs.veth("vethA1b2C3");
    ovs.write_config("bridge: vmbr1\n");
    ovs
}

fn fixture(name: &str, ovs: &Ovs) -> String {
    let path = format!(
        "{}/tests/fixtures/proxmox-writer/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    read(std::path::Path::new(&path))
        .replace("source /etc/network/interfaces.d/*\n", &ovs.source_line())
}

/// Upgrade from every file exactly as Proxmox's network editor wrote it (and from the intact
/// block it started from): every marked stanza and marker goes, every admin stanza stays as it
/// was (fixture 03 puts `vlan60`, `vmbr0` and `vmbr1` between guest stanzas), ifupdown2 parses
/// the result, and the guests are listed in the tool's own file instead.
#[test]
fn upgrade_from_each_proxmox_fixture() {
    if common::without_root() {
        return;
    }
    for name in [
        "01-before.interfaces",
        "02-after-comment-edit.interfaces",
        "03-after-create-admin-stanzas-inside.interfaces",
        "04-after-create-vlan60-after-end.interfaces",
        "05-empty-block-before.interfaces",
        "05-empty-block-after.interfaces",
    ] {
        let ovs = fixture_host();
        let before = fixture(name, &ovs);
        std::fs::write(ovs.interfaces_path(), &before).unwrap();
        let out = ovs.tool_ok(&["apply"]);
        let after = read(&ovs.interfaces_path());
        for gone in [
            "ovs-autoattach",
            "tap100i",
            "veth200i0",
            "vethA1b2C3",
            "allow-ovs",
        ] {
            assert!(
                !after.contains(gone),
                "{name}: {gone} left:\n{after}\n{out}"
            );
        }
        assert_eq!(
            admin_stanzas(&after, &FIXTURE_GUESTS),
            admin_stanzas(&before, &FIXTURE_GUESTS),
            "{name}"
        );
        assert!(after.contains(&ovs.source_line()), "{name}");
        assert!(after.contains("# network interface settings; autogenerated\n"));
        let parsed = ifquery_all(&ovs.interfaces_path());
        for admin in ["vmbr0", "vmbr1", "vlan50", "eno1"] {
            assert!(
                parsed.contains(&format!("iface {admin}")),
                "{name}: {parsed}"
            );
        }
        if name.starts_with("03") || name.starts_with("04") {
            assert!(parsed.contains("iface vlan60"), "{name}");
        }
        let listed = stanzas::parse(&read(&ovs.stanzas_path())).unwrap();
        let mut names: Vec<&str> = listed.ports.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        assert_eq!(names, FIXTURE_GUESTS, "{name}");
        // Idempotent: the next run writes nothing.
        let again = ovs.tool_ok(&["apply"]);
        assert!(again.contains("no file rewritten"), "{name}: {again}");
    }
}

/// The intact block as 0.1.0 appended it goes, and the admin's bytes are exactly what they were
/// before the block was appended.
#[test]
fn upgrade_from_an_intact_block_keeps_the_admins_bytes() {
    if common::without_root() {
        return;
    }
    let ovs = fixture_host();
    let admin = fixture("05-empty-block-after.interfaces", &ovs);
    let with_block = fixture("01-before.interfaces", &ovs);
    assert!(with_block.starts_with(&admin));
    std::fs::write(ovs.interfaces_path(), &with_block).unwrap();
    let out = ovs.tool_ok(&["apply"]);
    assert!(out.contains("moving the stanzas of"), "{out}");
    assert_eq!(read(&ovs.interfaces_path()), admin);
}

/// The uplink `eno2` (an `OVSPort` stanza, a guest port's shape) that Proxmox's editor moved
/// between the guest stanzas, an admin comment inside the block and one right under `# END`
/// survive the upgrade byte for byte: in an intact block (whose unmarked guest stanzas go too),
/// and as the editor leaves the file (no `# BEGIN`, `# END` under the last guest stanza, only
/// marked stanzas go). ifupdown2 parses the result, uplink included.
#[test]
fn upgrade_keeps_an_uplink_and_admin_comments_inside_and_after_the_block() {
    if common::without_root() {
        return;
    }
    const UPLINK: &str =
        "auto eno2\niface eno2 inet manual\n\tovs_type OVSPort\n\tovs_bridge vmbr1\n";
    const INSIDE: &str = "# eno2: vmbr1's uplink, port 7 of the core switch\n";
    const AFTER: &str = "# VLANs 10-40 belong to the guests; ask before adding one\n";
    let intact = format!(
        "# BEGIN ovs-autoattach\n# Managed by ovs-autoattach: guest ports on Open vSwitch. Do not edit; changes are overwritten.\n\
         auto tap100i0\nallow-ovs tap100i0\niface tap100i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10\n    ovs_extra set Port tap100i0 external_ids:owner=ovs-autoattach\n\n\
         {INSIDE}{UPLINK}\n\
         auto tap100i1\nallow-ovs tap100i1\niface tap100i1 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options trunks=20,30,31,32\n\n\
         auto veth200i0\nallow-ovs veth200i0\niface veth200i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10 trunks=20,30 vlan_mode=native-untagged\n\n\
         auto vethA1b2C3\nallow-ovs vethA1b2C3\niface vethA1b2C3 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n\
         # END ovs-autoattach\n{AFTER}"
    );
    let marked = |n: &str, options: &str| {
        format!(
            "auto {n}\niface {n} inet manual\n\tovs_bridge vmbr1\n{options}\tovs_type OVSPort\n\tovs_extra set Port {n} external_ids:owner=ovs-autoattach\n"
        )
    };
    let after_gui_save = format!(
        "{}\n{}{INSIDE}\n{UPLINK}\n{}\n{}# END ovs-autoattach\n{AFTER}",
        marked("tap100i0", "\tovs_options tag=10\n"),
        marked("tap100i1", "\tovs_options trunks=20,30,31,32\n"),
        marked(
            "veth200i0",
            "\tovs_options tag=10 trunks=20,30 vlan_mode=native-untagged\n"
        ),
        marked("vethA1b2C3", ""),
    );
    for (shape, block, admin) in [
        ("intact", intact, format!("{INSIDE}{UPLINK}\n{AFTER}")),
        (
            "after a GUI save",
            after_gui_save,
            format!("{INSIDE}\n{UPLINK}\n{AFTER}"),
        ),
    ] {
        let ovs = fixture_host();
        // The admin's file without eno2, which is now inside the block.
        let head =
            fixture("05-empty-block-after.interfaces", &ovs).replace(&format!("{UPLINK}\n"), "");
        assert!(!head.contains("auto eno2"));
        std::fs::write(ovs.interfaces_path(), format!("{head}\n{block}")).unwrap();
        let out = ovs.tool_ok(&["apply"]);
        assert!(out.contains("moving the stanzas of"), "{shape}: {out}");
        assert!(
            !out.contains("eno2"),
            "{shape}: eno2 is not reported: {out}"
        );
        assert_eq!(
            read(&ovs.interfaces_path()),
            format!("{head}\n{admin}"),
            "{shape}"
        );
        let parsed = ifquery_all(&ovs.interfaces_path());
        assert!(
            parsed.contains(
                "auto eno2\niface eno2 inet manual\n\tovs-type OVSPort\n\tovs-bridge vmbr1\n"
            ),
            "{shape}: {parsed}"
        );
        for gone in FIXTURE_GUESTS {
            assert!(!parsed.contains(gone), "{shape}: {gone}: {parsed}");
        }
        let listed = stanzas::parse(&read(&ovs.stanzas_path())).unwrap();
        let mut names: Vec<&str> = listed.ports.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        assert_eq!(names, FIXTURE_GUESTS, "{shape}");
        let again = ovs.tool_ok(&["apply"]);
        assert!(again.contains("no file rewritten"), "{shape}: {again}");
    }
}

/// A pending GUI change (`interfaces.new`) is cleaned the same way, so "Apply Configuration"
/// (the rename of `.new` over `interfaces`, then `ifreload -a`) brings no old stanza back and
/// loses no guest port: the tool's file is Proxmox's editor's blind spot.
#[test]
fn a_pending_gui_change_is_cleaned_too_and_apply_loses_nothing() {
    if common::without_root() {
        return;
    }
    let ovs = fixture_host();
    std::fs::write(ovs.interfaces_path(), fixture("01-before.interfaces", &ovs)).unwrap();
    let pending = ovs.dir.join("etc/interfaces.new");
    std::fs::write(&pending, fixture("02-after-comment-edit.interfaces", &ovs)).unwrap();
    ovs.tool_ok(&["apply"]);
    let cleaned = read(&pending);
    assert!(
        !cleaned.contains("ovs-autoattach") && !cleaned.contains("tap100i0"),
        "{cleaned}"
    );
    assert!(
        cleaned.contains("#Management (uplink eno1)"),
        "the pending edit is kept"
    );
    let listed_before = read(&ovs.stanzas_path());
    // "Apply Configuration".
    std::fs::rename(&pending, ovs.interfaces_path()).unwrap();
    ovs.tool_ok(&["apply"]);
    assert_eq!(read(&ovs.stanzas_path()), listed_before);
    for g in FIXTURE_GUESTS {
        assert_eq!(ovs.bridge_of(g).as_deref(), Some("vmbr1"), "{g}");
    }
}

/// Without a `source` line the old stanzas stay (removing them would make ifupdown2 forget
/// interfaces it may down), and every run says which line to add.
#[test]
fn without_the_source_line_nothing_moves_and_the_warning_names_the_line() {
    if common::without_root() {
        return;
    }
    let ovs = fixture_host();
    let before = fixture("01-before.interfaces", &ovs).replace(&ovs.source_line(), "");
    std::fs::write(ovs.interfaces_path(), &before).unwrap();
    let out = ovs.tool_ok(&["apply"]);
    assert_eq!(read(&ovs.interfaces_path()), before);
    assert_eq!(out.matches("add the line `source ").count(), 1, "{out}");
    assert!(
        out.contains(&format!("{}/etc/interfaces.d/*`", ovs.dir.display())),
        "{out}"
    );
}

#[test]
fn legacy_runbook_block_is_migrated_out() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.veth("vethOld");
    let head = ovs.network_head();
    let legacy = "# BEGIN nmstate-monitor\n# Managed by nmstate-monitor, do not edit manually.\nauto vethOld\nallow-ovs vethOld\niface vethOld inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n# END nmstate-monitor\n";
    std::fs::write(ovs.interfaces_path(), format!("{head}\n{legacy}")).unwrap();
    ovs.tool_ok(&["apply"]);
    assert_eq!(read(&ovs.interfaces_path()), head);
    assert!(
        read(&ovs.stanzas_path()).contains("iface vethOld inet manual\n    ovs_type OVSPort\n")
    );
}

/// A damaged file of the tool's own is reported with its line and written anew.
#[test]
fn a_damaged_stanzas_file_is_rewritten() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    std::fs::write(
        ovs.stanzas_path(),
        "iface tap1 inet manual\n    pre-up touch /tmp/x\n",
    )
    .unwrap();
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains(&format!("{}:2:", ovs.stanzas_path().display())),
        "{out}"
    );
    stanzas::parse(&read(&ovs.stanzas_path())).unwrap();
    let _ = text(&[]);
}

/// nmstate's `nmstate.service` applies every `.yml`/`.yaml` in /etc/nmstate at boot, and our
/// file would detach the bridges' uplinks: while the service is enabled the file is not written,
/// and removed if it was there.
#[test]
fn the_nmstate_file_is_withheld_while_nmstate_service_is_enabled() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    std::fs::create_dir_all("/etc/nmstate").unwrap();
    let file =
        std::path::PathBuf::from(format!("/etc/nmstate/oaa-test-{}.yaml", std::process::id()));
    ovs.write_config(&format!("nmstate_file: {}\n", file.display()));
    let systemd = ovs.dir.join("systemd");
    std::fs::create_dir_all(systemd.join("multi-user.target.wants")).unwrap();
    let run = |args: &[&str]| {
        let out = common::run(
            ovs.tool_cmd(args)
                .env("OVS_AUTOATTACH_SYSTEMD_DIR", &systemd),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    run(&["apply"]);
    assert!(file.exists(), "written while the service is not enabled");
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/nmstate.service",
        systemd.join("multi-user.target.wants/nmstate.service"),
    )
    .unwrap();
    let out = run(&["apply"]);
    let exists = file.exists();
    let _ = std::fs::remove_file(&file);
    assert!(!exists, "removed while the service is enabled");
    assert!(out.contains("nmstate.service is enabled"), "{out}");
    assert!(
        read(&ovs.stanzas_path()).contains("iface tap100i0"),
        "the other file is unaffected"
    );
}

/// The old stanzas leave the interfaces file only once the tool's file lists them: when the
/// tool's file cannot be written, the interfaces file is left as it is.
#[test]
fn the_interfaces_file_is_not_cleaned_when_the_tools_file_cannot_be_written() {
    if common::without_root() {
        return;
    }
    let ovs = fixture_host();
    let blocked = ovs.dir.join("etc/blocked");
    std::fs::write(&blocked, "a file where a directory should be").unwrap();
    ovs.write_config(&format!(
        "bridge: vmbr1\nstanzas_file: {}/ovs-autoattach\n",
        blocked.display()
    ));
    let before = fixture("01-before.interfaces", &ovs).replace(
        &ovs.source_line(),
        &format!("source {}/*\n", blocked.display()),
    );
    std::fs::write(ovs.interfaces_path(), &before).unwrap();
    let out = ovs.tool_code(&["apply"], 1);
    assert_eq!(read(&ovs.interfaces_path()), before, "{out}");
    for g in FIXTURE_GUESTS {
        assert_eq!(
            ovs.bridge_of(g).as_deref(),
            Some("vmbr1"),
            "OVS is repaired regardless"
        );
    }
}
