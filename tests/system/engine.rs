//! The engine against a real Open vSwitch: `apply`, `plug` and `clear` end to end, verified with
//! `ovs-vsctl`.

use crate::common;

use std::time::{Duration, Instant};

use common::{GuestHost, Ovs};

const UNTAGGED: &str = "[] [] []";

/// Two OVS bridges, a QEMU guest with a tagged and a trunk NIC, an LXC guest with tag+trunks, and
/// a raw container veth.
fn host() -> Ovs {
    GuestHost::new()
        .qemu_around(
            "boot: order=scsi0\n",
            "\n[yesterday]\nnet0: virtio=BC:24:11:A3:DA:B1,bridge=ovsbr0,tag=99\n",
        )
        .lxc_config("arch: amd64\nnet0: name=eth0,bridge=vmbr1,hwaddr=12:34:56:78:90:12,ip=dhcp,tag=10,trunks=20;30,type=veth\n")
        .without_interfaces()
        .start()
}

#[test]
fn apply_from_empty_attaches_every_nic_with_its_vlan() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    let out = ovs.tool_ok(&["apply"]);
    assert!(out.contains("attached tap100i0 to vmbr1 tag=10"), "{out}");
    assert!(out.contains("4 attached"), "{out}");

    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("vmbr1"));
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
    assert_eq!(ovs.vlan("tap100i1"), "[] [20, 30, 31, 32] []");
    assert_eq!(ovs.bridge_of("veth200i0").as_deref(), Some("vmbr1"));
    assert_eq!(ovs.vlan("veth200i0"), "10 [20, 30] native-untagged");
    assert_eq!(ovs.bridge_of("vethRaw01").as_deref(), Some("ovsbr0"));
    assert_eq!(ovs.vlan("vethRaw01"), UNTAGGED);
    for p in ["tap100i0", "tap100i1", "veth200i0", "vethRaw01"] {
        assert_eq!(ovs.owner(p).as_deref(), Some("ovs-autoattach"), "{p}");
        // ovs-vswitchd really opened the device.
        let ofport: i64 = ovs
            .vsctl(&["get", "Interface", p, "ofport"])
            .parse()
            .unwrap();
        assert!(ofport > 0, "{p} ofport {ofport}");
    }
    assert_eq!(
        ovs.vsctl(&["get", "Interface", "tap100i0", "mtu_request"]),
        "1500"
    );
}

#[test]
fn second_apply_changes_nothing() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.tool_ok(&["apply"]);
    let before = ovs.vsctl(&["--format=json", "list", "Port"]);
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains("0 attached, 0 updated, 0 moved, 0 pruned"),
        "{out}"
    );
    assert_eq!(before, ovs.vsctl(&["--format=json", "list", "Port"]));
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.vsctl(&["add-port", "ovsbr0", "tap100i1", "tag=5"]);
    let out = ovs.tool(&["apply", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    let plan = common::text(&out.stdout);
    assert!(plan.contains("attach tap100i0 to vmbr1 tag=10\n"), "{plan}");
    assert!(
        plan.contains("move tap100i1 from ovsbr0 to vmbr1 trunks=20,30-32\n"),
        "{plan}"
    );
    assert_eq!(
        plan.lines()
            .filter(|l| !l.ends_with("(once the ports are in place)"))
            .count(),
        4,
        "{plan}"
    );
    assert!(
        plan.contains("disable IPv6 on tap100i0 (once the ports are in place)\n"),
        "{plan}"
    );
    assert_eq!(ovs.bridge_of("tap100i0"), None);
    assert_eq!(ovs.bridge_of("tap100i1").as_deref(), Some("ovsbr0"));
}

#[test]
fn wrong_vlan_is_corrected_and_foreign_port_stays_unmarked() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.vsctl(&["add-port", "vmbr1", "tap100i0", "tag=99", "vlan_mode=trunk"]);
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains("updated tap100i0 on vmbr1: tag=99 vlan_mode=trunk -> tag=10"),
        "{out}"
    );
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
    assert_eq!(
        ovs.owner("tap100i0"),
        None,
        "an adopted port is never marked"
    );
}

#[test]
fn nic_on_the_wrong_bridge_is_moved() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.vsctl(&["add-port", "ovsbr0", "tap100i0"]);
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains("moved tap100i0 from ovsbr0 to vmbr1 tag=10"),
        "{out}"
    );
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("vmbr1"));
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
    assert!(!ovs.ports("ovsbr0").contains(&"tap100i0".to_string()));
}

#[test]
fn stale_ports_are_pruned_and_foreign_ports_survive_apply_and_clear() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    // Foreign: an uplink-like internal port with a tag, a guest-like name without a link that is
    // not Proxmox's pattern, and a foreign Proxmox-named row whose link is gone.
    ovs.vsctl(&[
        "add-port",
        "ovsbr0",
        "uplink0",
        "tag=7",
        "--",
        "set",
        "Interface",
        "uplink0",
        "type=internal",
    ]);
    ovs.vsctl(&["--no-wait", "add-port", "ovsbr0", "vethForeign"]);
    ovs.vsctl(&["--no-wait", "add-port", "ovsbr0", "tap555i0"]);
    ovs.tool_ok(&["apply"]);
    assert_eq!(
        ovs.bridge_of("tap555i0"),
        None,
        "stale Proxmox-named row is pruned"
    );

    ovs.del_link("vethRaw01");
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains("pruned vethRaw01 from ovsbr0 (its link is gone)"),
        "{out}"
    );
    assert_eq!(ovs.bridge_of("vethRaw01"), None);

    assert_eq!(ovs.vlan("uplink0"), "7 [] []");
    assert_eq!(ovs.bridge_of("vethForeign").as_deref(), Some("ovsbr0"));

    let out = ovs.tool_ok(&["clear"]);
    assert!(out.contains("3 pruned"), "{out}");
    let mut left = ovs.ports("ovsbr0");
    left.extend(ovs.ports("vmbr1"));
    left.sort();
    assert_eq!(left, vec!["uplink0", "vethForeign"]);
    assert_eq!(ovs.vlan("uplink0"), "7 [] []");
}

#[test]
fn lxc_link_down_and_linux_bridge_nics_are_not_attached() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest("lxc", 300, "net0: name=eth0,bridge=ovsbr0,link_down=1\n");
    ovs.guest(
        "qemu-server",
        301,
        "net0: virtio,bridge=vmbr0\nnet1: virtio,bridge=ovsbr0,firewall=1\n",
    );
    ovs.veth("veth300i0");
    ovs.tap("tap301i0");
    ovs.tap("tap301i1");
    // Proxmox's firewall path: the tap is in a Linux bridge fwbr<vmid>i<n>.
    ovs.sh("ip link add vmbr0 type bridge; ip link add fwbr301i1 type bridge; ip link set tap301i1 master fwbr301i1");
    ovs.sh("ip link set tap301i0 master vmbr0");
    ovs.veth("vethDocker1");
    ovs.sh("ip link set vethDocker1 master vmbr0");
    let out = ovs.tool_ok(&["apply"]);
    // The firewall NIC is carried by its fwln (see tests/system/replug.rs); nothing else is attached.
    assert!(out.contains("1 attached"), "{out}");
    assert!(
        out.contains("attached fwln301o1 to ovsbr0 untagged (internal port)"),
        "{out}"
    );
    for p in ["veth300i0", "tap301i0", "tap301i1", "vethDocker1"] {
        assert_eq!(ovs.bridge_of(p), None, "{p}");
    }
    assert!(
        out.contains("set veth300i0 down"),
        "link_down=1 is set down: {out}"
    );
    // A port of ours for a NIC that turned link_down is removed again.
    ovs.guest("lxc", 300, "net0: name=eth0,bridge=ovsbr0\n");
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.bridge_of("veth300i0").as_deref(), Some("ovsbr0"));
    ovs.guest("lxc", 300, "net0: name=eth0,bridge=ovsbr0,link_down=1\n");
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains("pruned veth300i0 from ovsbr0 (net0 has link_down=1)"),
        "{out}"
    );
}

#[test]
fn malformed_guest_config_fails_the_run_but_not_the_others() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.guest("qemu-server", 400, "net0: virtio,bridge=vmbr1,tag=4095\n");
    ovs.tap("tap400i0");
    ovs.tap("tap400i1");
    let out = ovs.tool_code(&["apply"], 1);
    assert!(
        out.contains("tap400i0: not attached: net0: tag: VLAN ID 4095 is outside 1-4094"),
        "{out}"
    );
    assert!(
        out.contains("tap400i1: not attached: net1 is missing"),
        "{out}"
    );
    assert_eq!(ovs.bridge_of("tap400i0"), None);
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("vmbr1"));
}

#[test]
fn plug_attaches_one_nic_only() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    let out = ovs.tool_ok(&["plug", "veth200i0"]);
    assert!(
        out.contains("attached veth200i0 to vmbr1 tag=10 trunks=20,30 vlan_mode=native-untagged"),
        "{out}"
    );
    assert_eq!(ovs.vlan("veth200i0"), "10 [20, 30] native-untagged");
    assert_eq!(ovs.bridge_of("tap100i0"), None);
    assert_eq!(ovs.bridge_of("vethRaw01"), None);
    // Again: nothing to do, and nothing to say at the default level; the summary is a debug line.
    let out = ovs.tool_ok(&["plug", "veth200i0"]);
    assert_eq!(out, "", "a plug that changed nothing printed");
    let out = ovs.tool_ok(&["-v", "plug", "veth200i0"]);
    assert!(
        out.contains("ovs-autoattach: debug: plug: 0 attached, 0 updated, 0 moved"),
        "{out}"
    );
}

#[test]
fn plug_of_a_vanished_nic_warns_and_succeeds() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    let out = ovs.tool_ok(&["plug", "tap999i0"]);
    assert!(out.contains("tap999i0 does not exist"), "{out}");
}

#[test]
fn plug_refuses_invalid_names_with_exit_2() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    for bad in [
        "a/b",
        "tap 1",
        "tap1234567890abc",
        ".",
        "..",
        "tap$(id)",
        "",
    ] {
        let out = ovs.tool_code(&["plug", bad], 2);
        assert!(
            out.contains("plug:") || out.contains("error"),
            "{bad:?}: {out}"
        );
    }
    use std::os::unix::ffi::OsStrExt;
    let out = common::run(
        ovs.tool_cmd(&["plug"])
            .arg(std::ffi::OsStr::from_bytes(b"tap\xff")),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(ovs.ports("ovsbr0").is_empty());
}

#[test]
fn bad_configuration_is_exit_2_naming_the_line() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.write_config("bridge: ovsbr0\nbirdge: x\n");
    let out = ovs.tool_code(&["apply"], 2);
    assert!(
        out.contains("config.yaml") && out.contains("birdge") && out.contains("line"),
        "{out}"
    );
    assert!(ovs.ports("vmbr1").is_empty());
}

#[test]
fn ovsdb_down_is_a_quick_clear_failure() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.stop("ovsdb");
    let started = Instant::now();
    let out = ovs.tool_code(&["apply"], 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        out.contains("connecting to OVSDB") && out.contains("is openvswitch-switch running?"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    ovs.tool_code(&["plug", "tap100i0"], 1);
}

#[test]
fn vswitchd_down_commits_but_reports_unconfirmed_ports() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.write_config("timeout_secs: 1\n");
    ovs.stop("vswitchd");
    let started = Instant::now();
    let out = ovs.tool_code(&["plug", "tap100i0"], 1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(
        out.contains("did not apply the change within 1 s")
            && out.contains("unconfirmed: tap100i0"),
        "{out}"
    );
    // Committed: the database has it, and ovs-vswitchd applies it once it is back.
    assert_eq!(ovs.vsctl(&["--no-wait", "port-to-br", "tap100i0"]), "vmbr1");
    ovs.start_vswitchd();
    ovs.write_config("timeout_secs: 10\n");
    ovs.tool_ok(&["apply"]);
    let ofport: i64 = ovs
        .vsctl(&["get", "Interface", "tap100i0", "ofport"])
        .parse()
        .unwrap();
    assert!(ofport > 0);
}

/// Real traffic through the userspace datapath: two guests on VLAN 10 reach each other, a guest
/// on VLAN 20 reaches neither.
#[test]
fn vlan_isolation_with_real_traffic() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest("lxc", 500, "net0: name=eth0,bridge=ovsbr0,tag=10\n");
    ovs.guest("lxc", 501, "net0: name=eth0,bridge=ovsbr0,tag=10\n");
    ovs.guest("lxc", 502, "net0: name=eth0,bridge=ovsbr0,tag=20\n");
    let a = ovs.veth("veth500i0");
    let b = ovs.veth("veth501i0");
    let c = ovs.veth("veth502i0");
    ovs.tool_ok(&["apply"]);
    let ga = ovs.guest_ns(&a, "10.77.0.1/24");
    let _gb = ovs.guest_ns(&b, "10.77.0.2/24");
    let _gc = ovs.guest_ns(&c, "10.77.0.3/24");
    let ping = |to: &str| {
        common::run(std::process::Command::new("ip").args([
            "netns", "exec", &ga, "ping", "-c", "2", "-W", "1", "-i", "0.2", to,
        ]))
        .status
        .success()
    };
    assert!(ping("10.77.0.2"), "same VLAN must pass");
    assert!(!ping("10.77.0.3"), "another VLAN must not");
}

/// On the target of a migration the guest's NICs exist while its configuration is still under
/// the source node's directory: it is read from there, and a NIC whose guest has no
/// configuration anywhere on a Proxmox node is never moved to the default bridge.
#[test]
fn migrating_and_unconfigured_proxmox_nics_keep_their_vlan() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    std::fs::create_dir_all(ovs.dir.join("pve/nodes/pve2/qemu-server")).unwrap();
    std::fs::write(
        ovs.dir.join("pve/nodes/pve2/qemu-server/700.conf"),
        "net0: virtio,bridge=vmbr1,tag=70\n",
    )
    .unwrap();
    ovs.tap("tap700i0");
    ovs.tap("tap701i0");
    // As Proxmox's tap_plug leaves them: on vmbr1, tagged, unmarked.
    ovs.vsctl(&[
        "add-port", "vmbr1", "tap700i0", "tag=70", "--", "add-port", "vmbr1", "tap701i0", "tag=71",
    ]);
    let out = ovs.tool_ok(&["apply"]);
    // Proxmox's tap_plug disables IPv6 on what it plugs; that is all the tool does here.
    for nic in ["tap700i0", "tap701i0"] {
        assert!(
            out.lines()
                .filter(|l| l.contains(nic))
                .all(|l| l.ends_with(&format!("disable IPv6 on {nic}"))),
            "{out}"
        );
    }
    assert_eq!(
        (
            ovs.bridge_of("tap700i0").as_deref(),
            ovs.vlan("tap700i0").as_str()
        ),
        (Some("vmbr1"), "70 [] []")
    );
    assert_eq!(
        (
            ovs.bridge_of("tap701i0").as_deref(),
            ovs.vlan("tap701i0").as_str()
        ),
        (Some("vmbr1"), "71 [] []")
    );
    // A NIC that is not on OVS yet is attached from the other node's configuration.
    ovs.vsctl(&["del-port", "tap700i0"]);
    let out = ovs.tool_ok(&["plug", "tap700i0"]);
    assert!(out.contains("attached tap700i0 to vmbr1 tag=70"), "{out}");
}
