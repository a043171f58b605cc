//! The tool and a real ifupdown2 on the same host, with ifupdown2's state carried over from one
//! reload to the next as on a real host: an upgrade from the managed block, live tag changes,
//! NICs leaving OVS, `clear`, and hostile link names. An `ovsdb-client monitor` watches every
//! row state the Port table goes through, so a wrong VLAN shows even if it lasts one update.

use crate::common;

use std::path::{Path, PathBuf};

use common::{Ovs, text};

const GUESTS: [(&str, &str, &str); 4] = common::RELOAD_GUESTS;

/// Runs `script` under ifupdown2 with the tool's if-up.d hook installed.
fn with_hook(ovs: &Ovs, script: &str) -> String {
    let hook = common::if_up_hook();
    let out = ovs.ifupdown(
        &[("ovs-autoattach", &hook)],
        &format!("export OVS_AUTOATTACH_BIN={}; {script}", common::BIN),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{script}:\n{all}");
    all
}

/// The managed block exactly as ovs-autoattach 0.1.0 rendered it for [`GUESTS`].
fn old_block() -> String {
    let mut out = "# BEGIN ovs-autoattach\n# Managed by ovs-autoattach: guest ports on Open vSwitch. Do not edit; changes are overwritten.\n".to_string();
    let options = [
        "    ovs_options tag=10\n",
        "    ovs_options trunks=20,30\n",
        "    ovs_options tag=10 trunks=20,30 vlan_mode=native-untagged\n",
        "",
    ];
    for (i, ((p, bridge, _), opts)) in GUESTS.iter().zip(options).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "auto {p}\nallow-ovs {p}\niface {p} inet manual\n    ovs_type OVSPort\n    ovs_bridge {bridge}\n{opts}    ovs_extra set Port {p} external_ids:owner=ovs-autoattach\n"
        ));
    }
    out.push_str("# END ovs-autoattach\n");
    out
}

/// A Proxmox-like host (the condone regex on every bridge) that ran 0.1.0: its guests on OVS,
/// the old block in the interfaces file, and ifupdown2 remembering the block's `auto` stanzas
/// from a reload.
fn upgraded_host() -> (Ovs, String) {
    let ovs = Ovs::reload_host();
    let head = common::condone(&ovs.network_head());
    std::fs::write(ovs.interfaces_path(), format!("{head}\n{}", old_block())).unwrap();
    ovs.write_config("stanzas_file: null\ninterfaces_file: null\n");
    ovs.tool_ok(&["apply"]);
    let out = ovs.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let state = std::fs::read(ovs.dir.join("net/tmp/ifstatenew")).unwrap();
    for (p, _, _) in GUESTS {
        assert!(
            state.windows(p.len()).any(|w| w == p.as_bytes()),
            "ifupdown2 remembers {p}"
        );
    }
    ovs.write_config("");
    (ovs, head)
}

/// Rows of the monitor that are not the initial dump and concern `ports`.
fn changes(rows: &[(String, String, String)], ports: &[&str]) -> Vec<String> {
    rows.iter()
        .filter(|(action, name, _)| action != "initial" && ports.contains(&name.as_str()))
        .map(|(a, n, v)| format!("{a} {n} {v}"))
        .collect()
}

/// The first `ifreload -a` after the upgrade deletes, downs and re-tags nothing, although
/// ifupdown2 remembers every old guest stanza as `auto`.
#[test]
fn the_first_reload_after_the_upgrade_changes_no_guest_port() {
    if common::without_root() {
        return;
    }
    let (ovs, head) = upgraded_host();
    ovs.tool_ok(&["apply"]);
    assert_eq!(
        std::fs::read_to_string(ovs.interfaces_path()).unwrap(),
        head
    );
    let monitor = ovs.monitor_ports();
    with_hook(&ovs, "ifreload -a");
    let rows = monitor.rows();
    let names = GUESTS.map(|g| g.0);
    assert_eq!(changes(&rows, &names), Vec::<String>::new());
    for (p, bridge, vlan) in GUESTS {
        assert!(ovs.is_up(p), "{p} is up");
        assert_eq!(ovs.bridge_of(p).as_deref(), Some(bridge), "{p}");
        assert_eq!(ovs.vlan(p), vlan, "{p}");
    }
}

/// Proxmox changes a running guest's tag live (config and port, no hook). A reload, with the hook
/// installed, never shows the guest's port in another VLAN than its configuration's: on a
/// Proxmox-like bridge the port is not touched at all; on upstream ifupdown2 (no condone regex)
/// it may be absent for a moment, but never present with a wrong VLAN.
#[test]
fn a_reload_after_a_live_tag_change_never_shows_a_wrong_vlan() {
    if common::without_root() {
        return;
    }
    for proxmox_like in [true, false] {
        let ovs = Ovs::reload_host();
        let head = ovs.network_head();
        let head = if proxmox_like {
            common::condone(&head)
        } else {
            head
        };
        std::fs::write(ovs.interfaces_path(), &head).unwrap();
        ovs.tool_ok(&["apply"]);
        with_hook(&ovs, "ifreload -a");
        // `qm set 100 --net0 ...,tag=30` on the running VM.
        ovs.guest(
            "qemu-server",
            100,
            "net0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr1,tag=30\nnet1: virtio=BC:24:11:A3:DA:B2,bridge=ovsbr0,trunks=20;30\n",
        );
        ovs.vsctl(&["set", "Port", "tap100i0", "tag=30"]);
        let monitor = ovs.monitor_ports();
        with_hook(&ovs, "ifreload -a");
        let rows = monitor.rows();
        let want = |name: &str| match name {
            "tap100i0" => "30 [] []",
            other => GUESTS.iter().find(|g| g.0 == other).map_or("", |g| g.2),
        };
        let wrong: Vec<_> = rows
            .iter()
            .filter(|(action, name, vlan)| {
                GUESTS.iter().any(|g| g.0 == name)
                    && action != "delete"
                    && action != "old"
                    && vlan != want(name)
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "proxmox_like={proxmox_like}: {wrong:?}\n{rows:?}"
        );
        if proxmox_like {
            assert_eq!(changes(&rows, &GUESTS.map(|g| g.0)), Vec::<String>::new());
        }
        assert_eq!(ovs.vlan("tap100i0"), "30 [] []");
        for (p, bridge, _) in GUESTS {
            assert_eq!(ovs.bridge_of(p).as_deref(), Some(bridge), "{p}");
        }
    }
}

/// On a host whose ifupdown2 remembers every guest stanza (the upgraded host), a NIC that moves
/// to a Linux bridge, a NIC that becomes excluded, and finally `clear`, each followed by a
/// reload: every running guest link stays up, and every port the tool does not own stays on its
/// bridge.
#[test]
fn no_reload_downs_a_running_guest() {
    if common::without_root() {
        return;
    }
    let (ovs, _) = upgraded_host();
    ovs.tool_ok(&["apply"]);
    with_hook(&ovs, "ifreload -a");
    // Proxmox's own port for a NIC of guest 100, not the tool's.
    ovs.vsctl(&["set", "Port", "tap100i0", "external_ids={}"]);
    let check = |after: &str, on_ovs: &[&str]| {
        for (p, _, _) in GUESTS {
            assert!(ovs.is_up(p), "{p} is up after {after}");
        }
        for p in on_ovs {
            assert!(
                ovs.bridge_of(p).is_some(),
                "{p} is on its bridge after {after}"
            );
        }
    };

    // Hotplug of net1 to a Linux bridge.
    ovs.sh("ip link add br9 type bridge; ip link set br9 up");
    ovs.guest(
        "qemu-server",
        100,
        "net0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr1,tag=10\nnet1: virtio=BC:24:11:A3:DA:B2,bridge=br9\n",
    );
    ovs.vsctl(&["del-port", "tap100i1"]);
    ovs.sh("ip link set tap100i1 master br9");
    ovs.tool_ok(&["apply"]);
    with_hook(&ovs, "ifreload -a");
    check("a NIC moved to a Linux bridge", &["tap100i0", "veth200i0"]);

    ovs.write_config("exclude: ['veth200*']\n");
    ovs.tool_ok(&["apply"]);
    with_hook(&ovs, "ifreload -a");
    check("an exclude", &["tap100i0", "veth200i0"]);

    // clear deletes the ports it owns (that is what it is for); Proxmox's stays.
    ovs.tool_ok(&["clear"]);
    let out = ovs.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "{}", text(&out.stderr));
    check("clear", &["tap100i0"]);
}

/// `ip tuntap add 'tap$(id>pw)'`: the kernel takes the name, ifupdown2 would run it through a
/// shell. The tool never writes it anywhere, warns once per run, and the reload creates no file.
#[test]
fn a_hostile_link_name_never_reaches_a_file_or_a_shell() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::reload_host();
    let evil = ["tap$(id>pw)", "tap;id>pw2", "tap`id>pw3`"];
    // (The kernel refuses whitespace and '/' in names, so a name with a space cannot exist.)
    for name in evil {
        ovs.sh(&format!("ip tuntap add '{name}' mode tap"));
    }
    let out = ovs.tool_ok(&["apply"]);
    for name in evil {
        let escaped = name.escape_debug().to_string();
        assert_eq!(
            out.matches(&format!("link {escaped} is named like a guest NIC"))
                .count(),
            1,
            "{name}: {out}"
        );
    }
    let run_dir: PathBuf = ovs.dir.join("cwd");
    std::fs::create_dir_all(&run_dir).unwrap();
    with_hook(&ovs, &format!("cd {}; ifreload -a", run_dir.display()));
    for dir in [run_dir.as_path(), ovs.dir.as_path(), Path::new("/")] {
        for f in ["pw", "pw2", "pw3"] {
            assert!(!dir.join(f).exists(), "{}/{f} was created", dir.display());
        }
    }
    for file in [
        ovs.stanzas_path(),
        ovs.nmstate_path(),
        ovs.interfaces_path(),
    ] {
        let content = std::fs::read_to_string(&file).unwrap();
        for name in evil {
            assert!(!content.contains(name), "{}: {content}", file.display());
        }
        assert!(!content.contains("$("), "{}", file.display());
    }
    for name in evil {
        assert_eq!(ovs.bridge_of(name), None);
    }
}
