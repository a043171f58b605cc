//! Day-2 operations, end to end against a real Open vSwitch: the unit that runs `apply` after
//! every Open vSwitch restart (its own command line, parsed from the shipped unit), `status`
//! reporting what a restart broke, the monitoring formats (Prometheus, Nagios), and the cluster
//! view through a directory standing in for pmxcfs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BIN, Ovs, text};
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn all(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// Exit code 1 when this kernel cannot run Proxmox's police filter (no `cls_basic` or
/// `act_police`): the rate limit's last step fails, for Proxmox too, and `apply` reports it.
fn rate_code(ovs: &Ovs) -> i32 {
    ovs.sh("ip link add oaaprobe0 type veth peer name oaaprobe1");
    let ok = ovs
        .try_sh("tc qdisc add dev oaaprobe0 handle ffff: ingress && tc filter add dev oaaprobe0 parent ffff: prio 50 basic police rate 1000bps burst 1048576b mtu 64kb drop")
        .status
        .success();
    ovs.sh("ip link del oaaprobe0");
    if ok { 0 } else { 1 }
}

/// Whether the link carries Proxmox's rate limit: the htb root with handle 1: and the ingress
/// qdisc.
fn rate_limited(ovs: &Ovs, link: &str) -> bool {
    let qdiscs = ovs.sh(&format!("tc qdisc show dev {link}"));
    qdiscs.contains("qdisc htb 1: root") && qdiscs.contains("qdisc ingress ffff:")
}

/// A restart of ovs-vswitchd on the same database, as `systemctl restart openvswitch-switch`
/// (or systemd after a crash) does it.
fn restart_vswitchd(ovs: &Ovs) {
    ovs.stop("vswitchd");
    ovs.start_vswitchd();
}

/// `status --json`: exit code and the parsed document.
fn status_json(ovs: &Ovs) -> (i32, Value) {
    let out = ovs.tool(&["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", all(&out)));
    (out.status.code().unwrap_or(-1), doc)
}

fn nic<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["nics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {doc:#}"))
}

/// The values of `key=` lines in a unit's file.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(String::from)
        .collect()
}

/// The unit's ExecStart, split into words, with the shipped binary replaced by the test build.
fn exec_start(unit: &str) -> Vec<String> {
    let starts = unit_values(unit, "ExecStart");
    assert_eq!(starts.len(), 1, "{starts:?}");
    let words: Vec<String> = starts[0].split_whitespace().map(String::from).collect();
    assert_eq!(words[0], "/usr/sbin/ovs-autoattach", "{words:?}");
    std::iter::once(BIN.to_string())
        .chain(words[1..].iter().cloned())
        .collect()
}

const RESTART_UNIT: &str = "debian/ovs-autoattach-ovs-restart.service";

/// A guest with `rate=10`: `apply` sets Proxmox's rate limit; an ovs-vswitchd restart replaces
/// the port's qdiscs, which `status` reports as drift of that NIC (exit 1, in the table and in
/// the JSON), and the restart unit's own command line puts the limit back.
#[test]
fn an_ovs_restart_loses_the_rate_limit_status_says_so_and_the_restart_unit_repairs_it() {
    let ovs = Ovs::start();
    ovs.guest(
        "qemu-server",
        100,
        "net0: virtio=BC:24:11:00:01:00,bridge=ovsbr0,tag=10,rate=10\n",
    );
    ovs.tap("tap100i0");
    let code = rate_code(&ovs);
    ovs.tool_code(&["apply"], code);
    assert!(rate_limited(&ovs, "tap100i0"), "after apply");
    let (rc, doc) = status_json(&ovs);
    assert_eq!(
        (rc, &nic(&doc, "tap100i0")["state"]),
        (0, &Value::from("ok"))
    );

    restart_vswitchd(&ovs);
    assert!(
        !rate_limited(&ovs, "tap100i0"),
        "the restart left the qdiscs: {}",
        ovs.sh("tc qdisc show dev tap100i0")
    );
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("ovsbr0"));

    // status names the lost limit before anything repairs it.
    let out = ovs.tool(&["status"]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let row = table
        .lines()
        .find(|l| l.starts_with("tap100i0 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains(" drift ") && row.contains("rate limit"),
        "{table}"
    );
    assert!(table.contains("run apply"), "{table}");
    let (rc, doc) = status_json(&ovs);
    assert_eq!(rc, 1);
    let n = nic(&doc, "tap100i0");
    assert_eq!(n["state"], "drift", "{doc:#}");
    assert!(
        n["reason"].as_str().unwrap().contains("rate limit"),
        "{doc:#}"
    );
    assert_eq!(doc["counts"]["drift"], 1, "{doc:#}");

    // The unit's own command line, as systemd would run it after the restart.
    let unit = std::fs::read_to_string(repo(RESTART_UNIT)).unwrap();
    let argv = exec_start(&unit);
    let out = common::run(
        Command::new("ip")
            .args(["netns", "exec", &ovs.ns, "env"])
            .arg(format!(
                "OVS_AUTOATTACH_CONFIG={}",
                ovs.config_path().display()
            ))
            .args(&argv),
    );
    println!("{argv:?}:\n{}", all(&out));
    assert_eq!(out.status.code(), Some(code), "{}", all(&out));
    assert!(rate_limited(&ovs, "tap100i0"), "after the unit's apply");
    let classes = ovs.sh("tc class show dev tap100i0");
    // 10 MB/s = 10485760 bytes/s = 83886080 bit/s, which tc prints as 83886Kbit.
    assert!(classes.contains("rate 83886Kbit"), "{classes}");
    let (rc, doc) = status_json(&ovs);
    assert_eq!(
        (rc, &nic(&doc, "tap100i0")["state"]),
        (0, &Value::from("ok")),
        "{doc:#}"
    );
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
}

/// The restart unit passes `systemd-analyze verify`, with its binary pointed at the test build
/// and the man page from the source tree; it is tied to both Open vSwitch units without being
/// able to hold them back or fail them.
#[test]
fn restart_unit_verifies_and_is_tied_to_open_vswitch() {
    let unit = std::fs::read_to_string(repo(RESTART_UNIT)).unwrap();
    for (key, value) in [
        ("Type", "oneshot"),
        ("RemainAfterExit", "yes"),
        ("ExecStart", "/usr/sbin/ovs-autoattach apply"),
        ("ExecReload", "/usr/sbin/ovs-autoattach apply"),
        ("PartOf", "ovs-vswitchd.service openvswitch-switch.service"),
        (
            "ReloadPropagatedFrom",
            "ovs-vswitchd.service openvswitch-switch.service",
        ),
        (
            "WantedBy",
            "ovs-vswitchd.service openvswitch-switch.service",
        ),
    ] {
        assert_eq!(unit_values(&unit, key), [value], "{key}");
    }
    let after = unit_values(&unit, "After").join(" ");
    for dep in ["ovs-vswitchd.service", "openvswitch-switch.service"] {
        assert!(after.contains(dep), "{after}");
    }
    for never in ["Requires", "Requisite", "BindsTo", "Before"] {
        assert!(unit_values(&unit, never).is_empty(), "{never}= in the unit");
    }
    // apply writes /proc/sys (IPv6 off on guest NICs).
    assert!(unit_values(&unit, "ProtectKernelTunables").is_empty());

    let tmp = tempfile::tempdir().unwrap();
    let copy = unit.replace("=/usr/sbin/ovs-autoattach ", &format!("={BIN} "));
    let path = tmp.path().join("ovs-autoattach-ovs-restart.service");
    std::fs::write(&path, copy).unwrap();
    let man = tmp.path().join("man/man8");
    std::fs::create_dir_all(&man).unwrap();
    std::fs::copy(
        repo("debian/ovs-autoattach.8"),
        man.join("ovs-autoattach.8"),
    )
    .unwrap();
    let out = common::run(
        Command::new("systemd-analyze")
            .env("MANPATH", tmp.path().join("man"))
            .arg("verify")
            .arg(&path),
    );
    assert!(
        out.status.success() && all(&out).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        all(&out)
    );
}
