//! A real host's life beside the tool: pending configuration changes on running VMs, links that
//! are named like guest NICs but are not, and a raw container's veth whose peer moves late. Real
//! Open vSwitch, real ifupdown2 for the reloads, `ovsdb-client monitor` as the oracle.

use crate::common;

use common::{Ovs, text};

/// `ifreload -a` with the tool's if-up.d hook installed, on the [`Ovs::reload_host`] bridges.
fn reload_with_hook(ovs: &Ovs) -> String {
    let hook = common::if_up_hook();
    let out = ovs.ifupdown(
        &[("ovs-autoattach", &hook)],
        &format!("export OVS_AUTOATTACH_BIN={}; ifreload -a", common::BIN),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "ifreload -a:\n{all}");
    all
}

/// For each kind of change Proxmox may leave in `[PENDING]` on a running VM (a Linux bridge, a
/// tag, firewall off, firewall on), `apply`, an `ifreload -a` with the hook (which takes the
/// guest ports off the upstream bridge and puts them back) and an `ifdown`/`ifup` of the bridge
/// leave the NIC exactly where the current value puts it; the monitor never shows the pending
/// VLAN.
#[test]
fn a_pending_value_never_moves_a_running_nic() {
    if common::without_root() {
        return;
    }
    let mac = "virtio=BC:24:11:A3:DA:B1";
    let cases = [
        ("linux bridge", "bridge=vmbr1,tag=10", "bridge=vmbr9,tag=10"),
        ("tag", "bridge=vmbr1,tag=10", "bridge=vmbr1,tag=99"),
        (
            "firewall off",
            "bridge=vmbr1,tag=10,firewall=1",
            "bridge=vmbr1,tag=10",
        ),
        (
            "firewall on",
            "bridge=vmbr1,tag=10",
            "bridge=vmbr1,tag=10,firewall=1",
        ),
    ];
    for (what, current, pending) in cases {
        let ovs = Ovs::reload_host();
        std::fs::write(ovs.interfaces_path(), ovs.network_head()).unwrap();
        ovs.sh("ip link add vmbr9 type bridge; ip link set vmbr9 up");
        let net1 = "net1: virtio=BC:24:11:A3:DA:B2,bridge=ovsbr0,trunks=20;30\n";
        ovs.guest(
            "qemu-server",
            100,
            &format!("net0: {mac},{current}\n{net1}"),
        );
        ovs.tool_ok(&["apply"]);
        let port = if current.contains("firewall=1") {
            "fwln100o0"
        } else {
            "tap100i0"
        };
        let placed = || {
            (
                ovs.bridge_of(port),
                ovs.vlan(port),
                ovs.bridge_of("tap100i0"),
            )
        };
        let before = placed();
        assert_eq!(before.0.as_deref(), Some("vmbr1"), "{what}");
        assert_eq!(before.1, "10 [] []", "{what}");
        // A change Proxmox could not hotplug: it stays pending, the VM runs on the current value.
        ovs.guest(
            "qemu-server",
            100,
            &format!("net0: {mac},{current}\n{net1}\n[PENDING]\nnet0: e1000=BC:24:11:A3:DA:B1,{pending}\n"),
        );
        let monitor = ovs.monitor_ports();
        ovs.tool_ok(&["apply"]);
        assert_eq!(placed(), before, "{what}: apply");
        let status = ovs.tool_ok(&["status"]);
        assert!(
            status.contains("(pending: "),
            "{what}: status shows the pending value:\n{status}"
        );
        reload_with_hook(&ovs);
        assert_eq!(placed(), before, "{what}: ifreload -a and the hook");
        // An admin's `ifdown vmbr1; ifup vmbr1` deletes the bridge and every port on it: the
        // port comes back where the current value (and the tool's record) puts it.
        ovs.vsctl(&["del-br", "vmbr1"]);
        ovs.add_bridge("vmbr1");
        ovs.vsctl(&["add-port", "vmbr1", "eno2"]);
        ovs.tool_ok(&["apply"]);
        assert_eq!(placed(), before, "{what}: after del-br");
        if port == "fwln100o0" {
            assert_eq!(
                ovs.sh("cat /sys/class/net/tap100i0/master/uevent | grep INTERFACE")
                    .trim(),
                "INTERFACE=fwbr100i0",
                "{what}"
            );
        }
        let rows = monitor.rows();
        let wrong: Vec<_> = rows
            .iter()
            .filter(|(action, _, vlan)| {
                action != "delete" && action != "old" && vlan.starts_with("99 ")
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{what}: a row with the pending VLAN: {wrong:?}"
        );
        assert!(
            ovs.bridge_of(if port == "tap100i0" {
                "fwln100o0"
            } else {
                "tap100i0"
            })
            .is_none(),
            "{what}: the pending firewall shape was not built"
        );
    }
}

/// A port the tool lost while the pending value was the one in place (Proxmox hotplugged it)
/// comes back with that value: the stanzas file recorded where it was.
#[test]
fn a_lost_port_comes_back_where_the_record_says() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    ovs.tap("tap100i0");
    ovs.guest(
        "qemu-server",
        100,
        "net0: virtio,bridge=vmbr1,tag=10\n[PENDING]\nnet0: virtio,bridge=vmbr1,tag=20\n",
    );
    // pve-bridge plugged the pending value (a resume from a state file).
    ovs.vsctl(&["add-port", "vmbr1", "tap100i0", "tag=20"]);
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.vlan("tap100i0"), "20 [] []");
    let stanzas = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    assert!(stanzas.contains("tag=20"), "{stanzas}");
    ovs.vsctl(&["del-br", "vmbr1"]);
    ovs.add_bridge("vmbr1");
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.vlan("tap100i0"), "20 [] []");
    // With no record, a lost port takes the current value.
    std::fs::remove_file(ovs.stanzas_path()).unwrap();
    ovs.vsctl(&["del-br", "vmbr1"]);
    ovs.add_bridge("vmbr1");
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
}

/// An addressed `tap0`, a host-only veth pair, a Linux bridge named `tapnet1` (an SDN VNet) and
/// LXC's hotplug peer `veth<vmid>i<n>p` are never attached, by `apply`, `plug` or the if-up.d
/// hook, even with no default bridge; `apply` and `status` exit 0 and list them as ignored with
/// the reason. A raw veth whose peer is in another namespace is still attached.
#[test]
fn links_that_are_not_guest_nics_are_never_attached() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::reload_host();
    std::fs::write(ovs.interfaces_path(), ovs.network_head()).unwrap();
    ovs.sh(
        "ip tuntap add tap0 mode tap; ip addr add 10.99.0.1/24 dev tap0; ip link set tap0 up
         ip link add vethhost type veth peer name vethhostb; ip link set vethhost up
         ip link add tapnet1 type bridge; ip link set tapnet1 up
         ip link add veth200i1 type veth peer name veth200i1p",
    );
    // A veth that routes for its container (LXC's veth.mode = router): an address of its own.
    let c = ovs.container_ns();
    ovs.sh(&format!(
        "ip link add vethrt0 type veth peer name rt0p netns {c}; ip addr add 10.9.9.1/24 dev vethrt0; ip link set vethrt0 up"
    ));
    ovs.guest(
        "lxc",
        200,
        "net0: name=eth0,bridge=vmbr1,tag=10,trunks=20;30,type=veth\nnet1: name=eth1,bridge=vmbr1,tag=40,type=veth\n",
    );
    let others = [
        "tap0",
        "vethhost",
        "vethhostb",
        "tapnet1",
        "veth200i1p",
        "vethrt0",
    ];
    let monitor = ovs.monitor_ports();
    ovs.tool_ok(&["apply"]);
    for name in others {
        ovs.tool_ok(&["plug", name]);
    }
    reload_with_hook(&ovs);
    let status = ovs.tool_ok(&["status"]);
    for name in others {
        assert_eq!(ovs.bridge_of(name), None, "{name}");
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in status:\n{status}"));
        assert!(line.contains("ignored"), "{line}");
    }
    assert!(status.contains("a tap without a Proxmox name"), "{status}");
    assert!(status.contains("a Linux bridge"), "{status}");
    assert!(status.contains("both ends on the host"), "{status}");
    assert!(status.contains("routes for its container"), "{status}");
    // The host end of the hotplug pair is Proxmox's NIC, and the raw container's is attached.
    assert_eq!(ovs.bridge_of("veth200i1").as_deref(), Some("vmbr1"));
    assert_eq!(ovs.bridge_of("vethRaw01").as_deref(), Some("ovsbr0"));
    let rows = monitor.rows();
    assert!(
        !rows
            .iter()
            .any(|(_, name, _)| others.contains(&name.as_str())),
        "{rows:?}"
    );
    // With no default bridge, the ignored links still fail nothing.
    ovs.vsctl(&["del-port", "vethRaw01"]);
    ovs.del_link("vethRaw01");
    ovs.write_config("bridge: nosuchbr\n");
    ovs.tool_ok(&["apply"]);
    ovs.tool_ok(&["status"]);
    // An explicit opt-in attaches one of them.
    ovs.write_config("include: [tap0]\n");
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.bridge_of("tap0").as_deref(), Some("ovsbr0"));
}

/// A container manager that creates the pair on the host and moves the peer afterwards: a `plug`
/// started before the move attaches the veth once the peer has left; one whose peer never leaves
/// is left alone within the bound.
#[test]
fn a_plug_before_the_peer_moves_waits_for_it() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    let c = ovs.container_ns();
    ovs.sh("ip link add vethLate1 type veth peer name late1p; ip link set vethLate1 up");
    let plug = ovs.tool_cmd(&["plug", "vethLate1"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    ovs.sh(&format!("ip link set late1p netns {c}"));
    let out = plug.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(ovs.bridge_of("vethLate1").as_deref(), Some("ovsbr0"));
    ovs.sh("ip link add vethStay1 type veth peer name stay1p; ip link set vethStay1 up");
    let started = std::time::Instant::now();
    ovs.tool_ok(&["plug", "vethStay1"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(ovs.bridge_of("vethStay1"), None);
}

/// ovs-vswitchd restarted on the same database replaces every port's qdiscs: `status` shows the
/// lost rate limit as drift, and `apply` sets it again with Proxmox's commands.
#[test]
fn a_rate_limit_lost_to_an_ovs_restart_is_drift_and_comes_back() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.tap("tap160i0");
    ovs.guest(
        "qemu-server",
        160,
        "net0: virtio,bridge=ovsbr0,tag=10,rate=5\n",
    );
    // This kernel may lack the police filter Proxmox's last step needs: exit 1 then.
    ovs.tool(&["apply"]);
    let htb = || ovs.sh("tc qdisc show dev tap160i0").contains("htb 1:");
    assert!(htb());
    assert!(ovs.tool_ok(&["status"]).contains("nothing to do"));
    ovs.stop("vswitchd");
    ovs.start_vswitchd();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while htb() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!htb(), "ovs-vswitchd kept the qdisc");
    let status = ovs.tool_code(&["status"], 1);
    let line = status.lines().find(|l| l.starts_with("tap160i0 ")).unwrap();
    assert!(
        line.contains("drift") && line.contains("rate-limit"),
        "{status}"
    );
    ovs.tool(&["apply"]);
    assert!(htb(), "apply set the limit again");
    assert!(
        ovs.sh("tc class show dev tap160i0")
            .contains("rate 41943Kbit")
    );
}

/// A run inside a container's namespaces (a container's setup child, with its own `/proc`)
/// that still reaches the host's OVSDB socket refuses before it writes a file or takes a lock,
/// for a guest-looking name and any other alike; so does one in a network namespace the switch
/// does not serve.
#[test]
fn a_run_inside_a_container_touches_nothing() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.veth("vethAb12Cd");
    let lock = ovs.dir.join("run/lock");
    assert!(!lock.exists());
    for unshare in [
        &["-p", "-f", "-m", "--mount-proc"][..],
        &["-p", "-f", "-m", "--mount-proc", "-n"],
        &["-n"],
    ] {
        for args in [
            &["plug", "eth0"][..],
            &["plug", "vethAb12Cd"],
            &["apply"],
            &["status"],
            &["clear"],
        ] {
            let out = common::run(
                std::process::Command::new("ip")
                    .args(["netns", "exec", &ovs.ns, "unshare"])
                    .args(unshare)
                    .arg(common::BIN)
                    .arg("--config")
                    .arg(ovs.config_path())
                    .args(args),
            );
            let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert_eq!(out.status.code(), Some(1), "{unshare:?} {args:?}: {all}");
            assert!(all.contains("nothing done"), "{unshare:?} {args:?}: {all}");
            assert!(!lock.exists(), "{unshare:?} {args:?} took the lock");
            assert!(
                !ovs.stanzas_path().exists(),
                "{unshare:?} {args:?} wrote the stanzas file"
            );
            assert!(
                !ovs.nmstate_path().exists(),
                "{unshare:?} {args:?} wrote the nmstate file"
            );
        }
    }
    assert_eq!(ovs.ports("ovsbr0"), Vec::<String>::new());
    // The same runs on the host do their work.
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.bridge_of("vethAb12Cd").as_deref(), Some("ovsbr0"));
}

/// Proxmox drops IPv6 on every NIC it plugs; a raw container NIC attached by the tool gets the
/// same, through `apply` and through `plug`, and `status` names it while it is still on.
#[test]
fn a_raw_container_nic_loses_ipv6_like_a_proxmox_nic() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    let c = ovs.container_ns();
    ovs.sh(&format!(
        "ip link add vethA1b2C3 type veth peer name eth0 netns {c}; ip link set vethA1b2C3 up"
    ));
    let ipv6_off = |ovs: &Ovs| {
        let value = ovs.sh("cat /proc/sys/net/ipv6/conf/vethA1b2C3/disable_ipv6");
        value.trim().to_string()
    };
    assert_eq!(ipv6_off(&ovs), "0");
    let out = ovs.tool_ok(&["apply"]);
    assert!(out.contains("disable IPv6 on vethA1b2C3"), "{out}");
    assert_eq!(ipv6_off(&ovs), "1");
    ovs.sh("echo 0 > /proc/sys/net/ipv6/conf/vethA1b2C3/disable_ipv6");
    let status = ovs.tool(&["status"]);
    let shown = text(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{shown}");
    assert!(shown.contains("disable IPv6 on vethA1b2C3"), "{shown}");
    ovs.tool_ok(&["plug", "vethA1b2C3"]);
    assert_eq!(ipv6_off(&ovs), "1");
}
