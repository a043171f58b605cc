//! Re-plugging as Proxmox's `tap_plug` does, against a real Open vSwitch and real kernel links:
//! firewall bridges (fwbr + fwln), rate limits (tc), IPv6, LXC `link_down`, Proxmox's VLAN
//! ranges and pending values. The firewall shapes are built by hand exactly as pve-common's
//! `$create_firewall_bridge_ovs` builds them, and traffic between guest namespaces shows that
//! what the tool rebuilds really carries packets.

use crate::common;

use std::process::Command;

use common::{Ovs, check, text};

/// `tag trunks vlan_mode` as ovs-vsctl prints them.
const TAG10: &str = "10 [] []";

fn link_field(ovs: &Ovs, link: &str) -> serde_json::Value {
    let out = ovs.sh(&format!("ip -j -d link show {link}"));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

fn master(ovs: &Ovs, link: &str) -> Option<String> {
    link_field(ovs, link)["master"].as_str().map(String::from)
}

fn exists(ovs: &Ovs, link: &str) -> bool {
    ovs.try_sh(&format!("ip link show {link}")).status.success()
}

fn ipv6_disabled(ovs: &Ovs, link: &str) -> bool {
    ovs.sh(&format!("cat /proc/sys/net/ipv6/conf/{link}/disable_ipv6"))
        .trim()
        == "1"
}

/// An LXC guest `vmid` whose veth's peer sits in its own namespace at `addr`.
fn container(ovs: &Ovs, vmid: u32, net0: &str, addr: &str) -> String {
    ovs.guest(
        "lxc",
        vmid,
        &format!(
            "net0: name=eth0,hwaddr=BC:24:11:00:00:{:02X},{net0},type=veth\n",
            vmid % 256
        ),
    );
    let peer = ovs.veth(&format!("veth{vmid}i0"));
    ovs.guest_ns(&peer, addr)
}

/// What pve-common's `$create_firewall_bridge_ovs` does for `veth<vmid>i0` with `tag=10`.
fn proxmox_firewall_plug(ovs: &Ovs, vmid: u32) {
    let (nic, fwbr, fwln) = (
        format!("veth{vmid}i0"),
        format!("fwbr{vmid}i0"),
        format!("fwln{vmid}o0"),
    );
    ovs.sh(&format!(
        "ip link add {fwbr} type bridge; ip link set {fwbr} up mtu 1500; ip link set {nic} mtu 1500 master {fwbr}"
    ));
    ovs.vsctl(&[
        "--",
        "add-port",
        "vmbr1",
        &fwln,
        "tag=10",
        "--",
        "set",
        "Interface",
        &fwln,
        "mtu_request=1500",
        "--",
        "set",
        "Interface",
        &fwln,
        "type=internal",
    ]);
    ovs.sh(&format!(
        "for i in $(seq 100); do ip link show {fwln} >/dev/null 2>&1 && break; sleep 0.05; done; ip link set {fwln} up mtu 1500; ip link set {fwln} master {fwbr}"
    ));
}

fn pings(from: &str, to: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", from, "ping", "-c", "1", "-W", "1", to])
        .output()
        .unwrap()
        .status
        .success()
}

fn assert_fwln_as_proxmox_leaves_it(ovs: &Ovs, vmid: u32, after: &str) {
    let (fwbr, fwln) = (format!("fwbr{vmid}i0"), format!("fwln{vmid}o0"));
    assert_eq!(ovs.bridge_of(&fwln).as_deref(), Some("vmbr1"), "{after}");
    assert_eq!(ovs.vlan(&fwln), TAG10, "{after}");
    assert_eq!(ovs.vsctl(&["get", "Interface", &fwln, "type"]), "internal");
    assert!(ovs.is_up(&fwln), "{fwln} up after {after}");
    assert_eq!(
        master(ovs, &fwln).as_deref(),
        Some(fwbr.as_str()),
        "{after}"
    );
    assert_eq!(link_field(ovs, &fwln)["mtu"], 1500, "{after}");
    assert_eq!(
        master(ovs, &format!("veth{vmid}i0")).as_deref(),
        Some(fwbr.as_str()),
        "{after}"
    );
    assert!(ipv6_disabled(ovs, &fwln), "{after}");
}

fn del_br_add_br(ovs: &Ovs) {
    ovs.vsctl(&["del-br", "vmbr1"]);
    ovs.add_bridge("vmbr1");
}

/// A firewall guest and a plain guest on VLAN 10, a guest on VLAN 20, and a rate-limited VM:
/// after a del-br + add-br `apply` rebuilds the fwln as Proxmox would, and the firewall guest
/// talks to its VLAN again; `plug` does the same for one NIC. The rate limit is set again (the
/// police filter step fails on kernels without `cls_basic`/`act_police`, and that is reported).
#[test]
fn firewall_nics_and_rate_limits_survive_a_del_br() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    ovs.sh("ip link set vmbr1 up");
    let fw = container(&ovs, 300, "bridge=vmbr1,tag=10,firewall=1", "10.9.0.1/24");
    let plain = container(&ovs, 301, "bridge=vmbr1,tag=10", "10.9.0.2/24");
    let _other = container(&ovs, 302, "bridge=vmbr1,tag=20", "10.9.0.3/24");
    ovs.guest(
        "qemu-server",
        303,
        "net0: virtio=BC:24:11:00:03:03,bridge=vmbr1,rate=5\n",
    );
    ovs.tap("tap303i0");
    proxmox_firewall_plug(&ovs, 300);
    ovs.tool_code(&["apply"], rate_code(&ovs));
    assert!(
        pings(&fw, "10.9.0.2"),
        "firewall guest reaches its VLAN before"
    );
    assert!(!pings(&fw, "10.9.0.3"), "and not the other VLAN");
    assert!(ipv6_disabled(&ovs, "veth301i0"));
    let _ = plain;

    del_br_add_br(&ovs);
    assert_eq!(ovs.bridge_of("fwln300o0"), None);
    assert!(
        !exists(&ovs, "fwln300o0"),
        "the fwln's device went with the bridge"
    );
    let out = ovs.tool_code(&["apply"], rate_code(&ovs));
    println!("apply after del-br:\n{out}");
    assert_fwln_as_proxmox_leaves_it(&ovs, 300, "apply");
    assert!(
        pings(&fw, "10.9.0.2"),
        "firewall guest reaches its VLAN after"
    );
    assert!(!pings(&fw, "10.9.0.3"), "and still not the other VLAN");

    // The rate limit, as setup_tc_rate_limit leaves it: htb class at rate * 1048576 bytes/s,
    // 5242880 bytes/s = 41943040 bit/s, which tc prints as 41943Kbit (iproute2 6.1 prints no
    // JSON for classes).
    let classes = ovs.sh("tc class show dev tap303i0");
    assert!(
        classes.contains("class htb 1:1 root") && classes.contains("rate 41943Kbit"),
        "{classes}"
    );
    let qdiscs = ovs.sh("tc -j qdisc show dev tap303i0");
    assert!(qdiscs.contains("\"kind\":\"ingress\""), "{qdiscs}");
    if rate_code(&ovs) == 1 {
        assert!(
            out.contains("tap303i0: rate-limit tap303i0 to 5242880 bytes/s: `/sbin/tc filter add dev tap303i0 parent ffff: prio 50 basic police"),
            "{out}"
        );
    }
    // Nothing differs now: no tc command, no link write.
    let out = ovs.tool_ok(&["-v", "apply"]);
    assert!(!out.contains("running /sbin/tc"), "{out}");
    assert!(out.contains("0 attached, 0 updated"), "{out}");

    // plug of the firewall NIC alone.
    del_br_add_br(&ovs);
    ovs.tool_ok(&["plug", "veth300i0"]);
    assert_fwln_as_proxmox_leaves_it(&ovs, 300, "plug");
    assert_eq!(
        ovs.bridge_of("veth301i0"),
        None,
        "plug touches its own NIC only"
    );
    ovs.tool_ok(&["plug", "veth301i0"]);
    assert!(pings(&fw, "10.9.0.2"), "after plug");
}

/// Whether this kernel can run Proxmox's police filter (`cls_basic`, `act_police`): the exit
/// code a run that sets a rate limit ends with.
fn rate_code(ovs: &Ovs) -> i32 {
    ovs.sh("ip link add oaaprobe0 type veth peer name oaaprobe1");
    let ok = ovs
        .try_sh("tc qdisc add dev oaaprobe0 handle ffff: ingress && tc filter add dev oaaprobe0 parent ffff: prio 50 basic police rate 1000bps burst 1048576b mtu 64kb drop")
        .status
        .success();
    ovs.sh("ip link del oaaprobe0");
    if ok { 0 } else { 1 }
}

/// A missing fwbr is created as Proxmox creates it (and marked as the tool's); switching the
/// firewall off then puts the NIC on OVS directly, removes the tool's fwln and its fwbr, and
/// leaves Proxmox's fwbr of another guest in place.
#[test]
fn firewall_off_returns_to_the_plain_shape() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    container(&ovs, 310, "bridge=vmbr1,tag=10,firewall=1", "10.9.1.1/24");
    container(&ovs, 311, "bridge=vmbr1,tag=10,firewall=1", "10.9.1.2/24");
    proxmox_firewall_plug(&ovs, 311);
    // 310 has no fwbr at all: the tool builds one.
    ovs.tool_ok(&["apply"]);
    assert_fwln_as_proxmox_leaves_it(&ovs, 310, "apply");
    assert_eq!(link_field(&ovs, "fwbr310i0")["ifalias"], "ovs-autoattach");
    assert!(ovs.is_up("fwbr310i0"));

    for vmid in [310, 311] {
        ovs.guest(
            "lxc",
            vmid,
            &format!(
                "net0: name=eth0,hwaddr=BC:24:11:00:00:{:02X},bridge=vmbr1,tag=10,type=veth\n",
                vmid % 256
            ),
        );
    }
    let out = ovs.tool_ok(&["apply"]);
    println!("{out}");
    for vmid in [310, 311] {
        let nic = format!("veth{vmid}i0");
        assert_eq!(ovs.bridge_of(&nic).as_deref(), Some("vmbr1"), "{out}");
        assert_eq!(ovs.vlan(&nic), TAG10);
        assert_eq!(master(&ovs, &nic), None, "{nic} left its fwbr");
    }
    assert_eq!(ovs.bridge_of("fwln310o0"), None, "the tool's fwln goes");
    assert!(!exists(&ovs, "fwbr310i0"), "the tool's fwbr goes");
    assert_eq!(
        ovs.bridge_of("fwln311o0").as_deref(),
        Some("vmbr1"),
        "Proxmox's fwln stays"
    );
    assert!(exists(&ovs, "fwbr311i0"), "Proxmox's fwbr stays");
    // The host files list what is on OVS: the NICs now, never a tap behind a fwbr.
    let stanzas = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    assert!(
        stanzas.contains("iface veth310i0 inet manual\n    ovs_type OVSPort"),
        "{stanzas}"
    );
}

/// The host files list the fwln, the port that is really on OVS.
#[test]
fn host_files_list_the_fwln() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    container(&ovs, 320, "bridge=vmbr1,tag=10,firewall=1", "10.9.2.1/24");
    ovs.tool_ok(&["apply"]);
    let stanzas = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    assert!(
        stanzas.contains("iface fwln320o0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10\n"),
        "{stanzas}"
    );
    assert!(!stanzas.contains("veth320i0"), "{stanzas}");
    let nm = std::fs::read_to_string(ovs.nmstate_path()).unwrap();
    assert!(
        nm.contains("- name: fwln320o0") && !nm.contains("veth320i0"),
        "{nm}"
    );
}

/// IPv6 off on what is plugged, LXC `link_down=1` down and off OVS, and the VLAN ranges Proxmox
/// accepts (trunk IDs 0 and 4095).
#[test]
fn ipv6_link_state_and_vlan_edges_as_proxmox() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    ovs.guest(
        "lxc",
        330,
        "net0: name=eth0,bridge=vmbr1,trunks=10;4095,type=veth\nnet1: name=eth1,bridge=vmbr1,tag=10,trunks=0;20,type=veth\nnet2: name=eth2,bridge=vmbr1,tag=5,link_down=1,type=veth\n",
    );
    for n in 0..3 {
        ovs.veth(&format!("veth330i{n}"));
    }
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.vlan("veth330i0"), "[] [10, 4095] []");
    assert_eq!(ovs.vlan("veth330i1"), "10 [0, 20] native-untagged");
    for n in 0..2 {
        assert!(ipv6_disabled(&ovs, &format!("veth330i{n}")), "veth330i{n}");
    }
    assert_eq!(ovs.bridge_of("veth330i2"), None);
    assert!(!ovs.is_up("veth330i2"), "link_down=1 is set down");
}

/// A VM running with a pending value (hotplugged, or resumed from a state file) was plugged
/// with it by pve-bridge: the tool leaves that port alone, and one with the current value too;
/// a lost port comes back where the tool's record last saw it.
#[test]
fn a_port_plugged_with_the_pending_value_is_left_alone() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    ovs.guest(
        "qemu-server",
        340,
        "net0: virtio=BC:24:11:00:03:40,bridge=vmbr1,tag=10\n\n[PENDING]\nnet0: virtio=BC:24:11:00:03:40,bridge=vmbr1,tag=20\n",
    );
    ovs.tap("tap340i0");
    ovs.vsctl(&["add-port", "vmbr1", "tap340i0", "tag=20"]);
    let out = ovs.tool_ok(&["apply"]);
    assert!(out.contains("0 attached, 0 updated, 0 moved"), "{out}");
    assert_eq!(ovs.vlan("tap340i0"), "20 [] []");
    // Plugged with the current value: left alone as well.
    ovs.vsctl(&["set", "Port", "tap340i0", "tag=10"]);
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.vlan("tap340i0"), TAG10);
    // Lost: re-plugged where it last was (tag 10, the stanzas file says), never moved to the
    // pending value by the tool alone.
    ovs.vsctl(&["del-port", "tap340i0"]);
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.vlan("tap340i0"), TAG10);
    let _ = (check, text);
}
