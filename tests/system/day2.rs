//! Day-2 operations, end to end against a real Open vSwitch: the unit that runs `apply` after
//! every Open vSwitch restart (its own command line, parsed from the shipped unit), `status`
//! reporting what a restart broke, the monitoring formats (Prometheus, Nagios), and the cluster
//! view through a directory standing in for pmxcfs.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BIN, Ovs, repo, text};
use serde_json::Value;

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

/// The unit's ExecStart, split into words, with the shipped binary replaced by the test build
/// (and systemd's `-` prefix, which only says that a failure leaves the unit active, dropped).
fn exec_start(unit: &str) -> Vec<String> {
    let starts = unit_values(unit, "ExecStart");
    assert_eq!(starts.len(), 1, "{starts:?}");
    let command = starts[0].strip_prefix('-').unwrap_or(&starts[0]);
    let words: Vec<String> = command.split_whitespace().map(String::from).collect();
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
    if common::without_root() {
        return;
    }
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
    if common::without_root() {
        return;
    }
    let unit = std::fs::read_to_string(repo(RESTART_UNIT)).unwrap();
    for (key, value) in [
        ("Type", "oneshot"),
        ("RemainAfterExit", "yes"),
        ("ExecStart", "-/usr/sbin/ovs-autoattach apply"),
        ("ExecReload", "-/usr/sbin/ovs-autoattach apply"),
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

// --- monitoring formats ---

/// Every sample of a Prometheus exposition, read strictly: each family's `# HELP` then
/// `# TYPE`, then its samples only; valid names, quoted label values, numeric values.
fn metrics(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut family = String::new();
    let mut typed = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            family = rest.split(' ').next().unwrap().to_string();
            assert!(family.starts_with("ovs_autoattach_"), "{line}");
            typed = false;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(name, family, "{line}");
            assert!(kind == "gauge" || (kind == "counter" && name.ends_with("_total")));
            typed = true;
        } else {
            assert!(typed && line.starts_with(&family), "{line}\n{text}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            out.push((series.to_string(), value));
        }
    }
    out
}

fn metric(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|s| s.1)
}

/// `promtool check metrics` (Debian's prometheus package) on an exposition.
fn promtool(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus; scripts/deps installs it)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && all(&out).trim().is_empty(),
        "promtool check metrics:\n{}\n{text}",
        all(&out)
    );
}

/// The nagios line: exit code, and the line itself (exactly one).
fn nagios(ovs: &Ovs) -> (i32, String) {
    let out = ovs.tool(&["status", "--format", "nagios"]);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{}", all(&out));
    (
        out.status.code().unwrap_or(-1),
        stdout.trim_end().to_string(),
    )
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A converged host: nagios OK (exit 0), the metrics say healthy with every NIC ok and the time
/// of the apply, promtool accepts them, and the textfile unit's own command line writes them
/// atomically into its file.
#[test]
fn monitoring_formats_on_a_converged_host() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    ovs.guest("qemu-server", 100, "net0: virtio,bridge=vmbr1,tag=10\n");
    ovs.guest("lxc", 200, "net0: name=eth0,bridge=ovsbr0,type=veth\n");
    ovs.tap("tap100i0");
    ovs.veth("veth200i0");
    let before = now();
    ovs.tool_ok(&["apply"]);

    let (code, line) = nagios(&ovs);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("OVS-AUTOATTACH OK - 2 guest NICs ok, ")
            && line.contains(" | ok=2;;;0 missing=0;;;0 drift=0;;;0 ")
            && line.contains(" failed_runs=0c;;;0 last_apply_age="),
        "{line}"
    );

    let out = ovs.tool(&["status", "--format", "prometheus"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let exposition = text(&out.stdout);
    println!("{exposition}");
    let m = metrics(&exposition);
    for (series, value) in [
        ("ovs_autoattach_up", 1.0),
        ("ovs_autoattach_healthy", 1.0),
        ("ovs_autoattach_nics{state=\"ok\"}", 2.0),
        ("ovs_autoattach_nics{state=\"missing\"}", 0.0),
        ("ovs_autoattach_nics{state=\"stale\"}", 0.0),
        ("ovs_autoattach_host_files{state=\"out-of-sync\"}", 0.0),
        ("ovs_autoattach_mirror_rules{state=\"invalid\"}", 0.0),
        ("ovs_autoattach_failed_runs_total", 0.0),
    ] {
        assert_eq!(metric(&m, series), Some(value), "{series}\n{exposition}");
    }
    let at = metric(&m, "ovs_autoattach_last_apply_timestamp_seconds").unwrap();
    assert!(at >= before.floor() && at <= now(), "{at} {before}");
    assert!(metric(&m, "ovs_autoattach_last_apply_duration_seconds").unwrap() < 30.0);
    assert!(metric(&m, "ovs_autoattach_status_duration_seconds").is_some());
    promtool(&exposition);
    // The JSON and --json agree.
    let a: Value = serde_json::from_slice(&ovs.tool(&["status", "--json"]).stdout).unwrap();
    let b: Value =
        serde_json::from_slice(&ovs.tool(&["status", "--format", "json"]).stdout).unwrap();
    assert_eq!(a, b);

    // The textfile unit's command line, into a stand-in for node_exporter's directory.
    let unit = std::fs::read_to_string(repo("debian/ovs-autoattach-prometheus.service")).unwrap();
    let argv = exec_start(&unit);
    let shipped = "/var/lib/prometheus/node-exporter/ovs-autoattach.prom";
    assert_eq!(argv.last().map(String::as_str), Some(shipped), "{argv:?}");
    let prom = ovs.dir.join("textfile/ovs-autoattach.prom");
    let argv: Vec<String> = argv
        .into_iter()
        .map(|a| {
            if a == shipped {
                prom.display().to_string()
            } else {
                a
            }
        })
        .collect();
    for round in 0..2 {
        let out = common::run(
            Command::new("ip")
                .args(["netns", "exec", &ovs.ns, "env"])
                .arg(format!(
                    "OVS_AUTOATTACH_CONFIG={}",
                    ovs.config_path().display()
                ))
                .args(&argv),
        );
        assert_eq!(out.status.code(), Some(0), "{}", all(&out));
        assert!(out.stdout.is_empty(), "{}", all(&out));
        let written = std::fs::read_to_string(&prom).unwrap();
        assert_eq!(
            metric(&metrics(&written), "ovs_autoattach_up"),
            Some(1.0),
            "{round}"
        );
        let names: Vec<_> = std::fs::read_dir(prom.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["ovs-autoattach.prom"], "no temporary file left");
    }
}

/// A broken host: drift alone is WARNING (exit 1); an invalid guest configuration is CRITICAL
/// (exit 2), and the apply that failed on it counts in `ovs_autoattach_failed_runs_total`; an
/// unreachable OVSDB is UNKNOWN (exit 3) with `ovs_autoattach_up 0`; a configuration that does
/// not load is CRITICAL.
#[test]
fn monitoring_formats_on_a_broken_host() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest("qemu-server", 100, "net0: virtio,bridge=ovsbr0,tag=10\n");
    ovs.tap("tap100i0");
    ovs.tool_ok(&["apply"]);
    ovs.vsctl(&["set", "Port", "tap100i0", "tag=20"]);
    let (code, line) = nagios(&ovs);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("OVS-AUTOATTACH WARNING - 1 drift: run apply (tap100i0 drift) | "),
        "{line}"
    );
    let out = ovs.tool(&["status", "--format", "prometheus"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let m = metrics(&text(&out.stdout));
    assert_eq!(metric(&m, "ovs_autoattach_healthy"), Some(0.0));
    assert_eq!(metric(&m, "ovs_autoattach_needs_apply"), Some(1.0));
    assert_eq!(
        metric(&m, "ovs_autoattach_nics{state=\"drift\"}"),
        Some(1.0)
    );

    // An invalid guest configuration: apply fails (counted), nagios is CRITICAL.
    ovs.guest("qemu-server", 101, "net0: virtio,bridge=ovsbr0,tag=5000\n");
    ovs.tap("tap101i0");
    ovs.tool_code(&["apply"], 1);
    ovs.tool_code(&["apply"], 1);
    let (code, line) = nagios(&ovs);
    assert_eq!(code, 2, "{line}");
    assert!(
        line.starts_with(
            "OVS-AUTOATTACH CRITICAL - 1 invalid: needs an admin (tap101i0 invalid) | "
        ) && line.contains(" invalid=1;;;0 ")
            && line.contains(" failed_runs=2c;;;0"),
        "{line}"
    );
    let out = ovs.tool(&["status", "--format", "prometheus"]);
    let exposition = text(&out.stdout);
    let m = metrics(&exposition);
    assert_eq!(metric(&m, "ovs_autoattach_failed_runs_total"), Some(2.0));
    assert_eq!(metric(&m, "ovs_autoattach_needs_admin"), Some(1.0));
    assert_eq!(
        metric(&m, "ovs_autoattach_nics{state=\"invalid\"}"),
        Some(1.0)
    );
    promtool(&exposition);
    // A dry run is no failed run; status is none either.
    ovs.tool_code(&["apply", "--dry-run"], 1);
    ovs.tool_code(&["status"], 1);
    let (_, line) = nagios(&ovs);
    assert!(line.contains(" failed_runs=2c;;;0"), "{line}");

    // OVSDB unreachable: UNKNOWN, and the metrics say up 0 (exit 1).
    ovs.stop("vswitchd");
    ovs.stop("ovsdb");
    let (code, line) = nagios(&ovs);
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("OVS-AUTOATTACH UNKNOWN - "), "{line}");
    assert!(!line.contains('|'), "{line}");
    let out = ovs.tool(&["status", "--format", "prometheus"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let exposition = text(&out.stdout);
    let m = metrics(&exposition);
    assert_eq!(metric(&m, "ovs_autoattach_up"), Some(0.0), "{exposition}");
    assert_eq!(metric(&m, "ovs_autoattach_failed_runs_total"), Some(2.0));
    assert!(metric(&m, "ovs_autoattach_healthy").is_none());
    promtool(&exposition);

    // A configuration that does not load: CRITICAL, exit 2, still one line.
    std::fs::write(ovs.config_path(), "timeout_secs: 0\n").unwrap();
    let (code, line) = nagios(&ovs);
    assert_eq!(code, 2, "{line}");
    assert!(
        line.starts_with("OVS-AUTOATTACH CRITICAL - ") && line.contains("timeout_secs"),
        "{line}"
    );
}

/// The textfile service and its timer pass `systemd-analyze verify`; the timer is meant to be
/// enabled by the admin (installed, not enabled: its [Install] says timers.target).
#[test]
fn prometheus_textfile_units_verify() {
    if common::without_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let service =
        std::fs::read_to_string(repo("debian/ovs-autoattach-prometheus.service")).unwrap();
    let timer = std::fs::read_to_string(repo("debian/ovs-autoattach-prometheus.timer")).unwrap();
    assert_eq!(unit_values(&service, "Type"), ["oneshot"]);
    assert!(unit_values(&service, "WantedBy").is_empty());
    assert_eq!(unit_values(&timer, "WantedBy"), ["timers.target"]);
    let copy = service.replace("=/usr/sbin/ovs-autoattach ", &format!("={BIN} "));
    std::fs::write(tmp.path().join("ovs-autoattach-prometheus.service"), copy).unwrap();
    std::fs::write(tmp.path().join("ovs-autoattach-prometheus.timer"), timer).unwrap();
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
            .current_dir(tmp.path())
            .arg("verify")
            .arg(tmp.path().join("ovs-autoattach-prometheus.timer"))
            .arg(tmp.path().join("ovs-autoattach-prometheus.service")),
    );
    assert!(
        out.status.success() && all(&out).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        all(&out)
    );
}

// --- the cluster view ---

/// This node's name as the tool writes it: the short host name.
fn node() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    name.trim().split('.').next().unwrap().to_string()
}

fn summary_path(ovs: &Ovs, node: &str) -> PathBuf {
    ovs.dir
        .join(format!("pve/nodes/{node}/ovs-autoattach.json"))
}

fn read_summary(ovs: &Ovs) -> Value {
    let path = summary_path(ovs, &node());
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A directory standing in for /etc/pve (`cluster_summary: always`): `apply` writes this node's
/// summary, `status` rewrites it only when it changed; `status --cluster` lists every node, and
/// a node whose summary is older than a day makes it exit 1. With the default (`auto`), a
/// directory that is not pmxcfs gets nothing.
#[test]
fn cluster_view_through_a_stand_in_for_pmxcfs() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest("qemu-server", 100, "net0: virtio,bridge=ovsbr0,tag=10\n");
    ovs.tap("tap100i0");
    ovs.tool_ok(&["apply"]);
    assert!(
        !ovs.dir.join("pve/nodes").exists(),
        "auto: not pmxcfs, no summary"
    );

    ovs.write_config("cluster_summary: always\n");
    // A host whose name has no node directory writes nothing: pmxcfs makes them, not the tool.
    ovs.tool_ok(&["apply"]);
    assert!(!summary_path(&ovs, &node()).exists());
    std::fs::create_dir_all(summary_path(&ovs, &node()).parent().unwrap()).unwrap();
    let before = now();
    ovs.tool_ok(&["apply"]);
    let s = read_summary(&ovs);
    println!("{s:#}");
    assert_eq!(s["node"], node().as_str());
    assert_eq!(s["healthy"], true);
    assert_eq!(s["counts"]["ok"], 1);
    assert_eq!(s["counts"]["drift"], 0);
    assert!(s["file_counts"]["in-sync"].as_u64().unwrap() > 0);
    assert!(s["last_apply"].as_f64().unwrap() >= before.floor());
    assert!(s["written_at"].as_f64().unwrap() >= before.floor());

    // Unchanged: not written again (pmxcfs replicates every write).
    let path = summary_path(&ovs, &node());
    let first = std::fs::read_to_string(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ovs.tool_ok(&["status"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    // Changed: written by status too.
    ovs.vsctl(&["set", "Port", "tap100i0", "tag=20"]);
    ovs.tool_code(&["status"], 1);
    let s = read_summary(&ovs);
    assert_eq!(
        (s["healthy"].clone(), s["counts"]["drift"].clone()),
        (Value::from(false), Value::from(1))
    );
    ovs.tool_ok(&["apply"]);
    assert_eq!(read_summary(&ovs)["healthy"], true);

    // Another node, healthy but silent for more than a day; and a node without the tool.
    let mut other = read_summary(&ovs);
    other["node"] = "pve-old".into();
    other["written_at"] = Value::from(now() as u64 - 25 * 3600);
    let old_dir = ovs.dir.join("pve/nodes/pve-old");
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::write(old_dir.join("ovs-autoattach.json"), other.to_string()).unwrap();
    std::fs::create_dir_all(ovs.dir.join("pve/nodes/pve-none")).unwrap();

    let out = ovs.tool(&["status", "--cluster"]);
    let table = text(&out.stdout);
    println!("{table}");
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let row = |n: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("{n}:\n{table}"))
            .to_string()
    };
    assert!(
        row(&node()).contains(" ok ") && row(&node()).contains("1 ok"),
        "{table}"
    );
    assert!(row("pve-old").contains(" stale "), "{table}");
    assert!(row("pve-none").contains(" no summary "), "{table}");
    let out = ovs.tool(&["status", "--cluster", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["healthy"], false);
    let states: Vec<(String, String)> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().into(),
                n["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        states.contains(&("pve-old".into(), "stale".into())),
        "{states:?}"
    );
    assert!(states.contains(&(node(), "ok".into())), "{states:?}");

    // The stale node gone: the cluster is healthy.
    std::fs::remove_dir_all(&old_dir).unwrap();
    let out = ovs.tool(&["status", "--cluster"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let out = ovs.tool(&["status", "--cluster", "--format", "nagios"]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
}

/// pmxcfs without quorum refuses writes; a read-only bind mount of the stand-in does the same
/// (EROFS). `apply` still does its work, exits 0 and warns about nothing, and the summary stays
/// as it was.
#[test]
fn a_read_only_cluster_file_system_never_fails_a_run() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.write_config("cluster_summary: always\n");
    ovs.guest("qemu-server", 100, "net0: virtio,bridge=ovsbr0,tag=10\n");
    ovs.tap("tap100i0");
    std::fs::create_dir_all(summary_path(&ovs, &node()).parent().unwrap()).unwrap();
    ovs.tool_ok(&["apply"]);
    let path = summary_path(&ovs, &node());
    let before = std::fs::read_to_string(&path).unwrap();
    let listing = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let files_before = listing(path.parent().unwrap());

    // A new guest NIC: the summary would change.
    ovs.guest("qemu-server", 101, "net0: virtio,bridge=ovsbr0,tag=11\n");
    ovs.tap("tap101i0");
    let pve = ovs.dir.join("pve").display().to_string();
    let out = common::run(Command::new("unshare").args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-ec",
        &format!(
            "mount --bind {pve} {pve}; mount -o remount,ro,bind {pve}; touch {pve}/probe 2>/dev/null && exit 9; ip netns exec {ns} {BIN} --config {cfg} apply",
            ns = ovs.ns,
            cfg = ovs.config_path().display()
        ),
    ]));
    let printed = all(&out);
    println!("{printed}");
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(
        !printed.contains("warning") && !printed.contains("error"),
        "{printed}"
    );
    assert_eq!(ovs.bridge_of("tap101i0").as_deref(), Some("ovsbr0"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    assert_eq!(listing(path.parent().unwrap()), files_before);
    // Writable again: the next run catches up.
    ovs.tool_ok(&["apply"]);
    assert_eq!(read_summary(&ovs)["counts"]["ok"], 2);
}

/// A cluster file system that stops answering (pmxcfs stuck in a synchronous cluster message):
/// the summary's writer sleeps in the kernel, uninterruptibly, until the file system goes. The
/// run that started it still ends within its bound, with its work done: the writer is a process
/// of its own, and a process whose own thread slept there could not even be killed.
#[test]
fn a_hung_cluster_file_system_never_holds_up_a_run() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    let hangfs = ovs.dir.join("hangfs");
    common::check(Command::new("sh").args([
        "-ec",
        &format!(
            "cc -O1 -o {} {} $(pkg-config --cflags --libs fuse3)",
            hangfs.display(),
            repo("tests/fixtures/hangfs.c").display()
        ),
    ]));
    let mount = ovs.dir.join("pvefs");
    std::fs::create_dir_all(&mount).unwrap();
    let server = Command::new(&hangfs)
        .arg("-f")
        .arg(&mount)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Stopping the server (and the mount) on every way out lets the hung writer finish.
    struct Unmount(std::process::Child, std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = Command::new("umount").arg("-l").arg(&self.1).status();
        }
    }
    let _server = Unmount(server, mount.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !mount.join("nodes").is_dir() {
        assert!(std::time::Instant::now() < deadline, "hangfs did not mount");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ovs.write_config(&format!(
        "cluster_summary: always\npve_config_dir: {}\n",
        mount.display()
    ));
    ovs.tap("tap100i0");
    for args in [&["apply"][..], &["status", "--format", "nagios"][..]] {
        // Waited for with a bound of the test's own: a run that hangs fails here, and the
        // server's end (below) lets it go.
        let mut run = ovs
            .tool_cmd(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let code = loop {
            if let Some(status) = run.try_wait().unwrap() {
                break status.code();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(8),
                "{args:?} still running after 8 s: held up by the hung cluster file system"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(code.is_some(), "{args:?} ended by a signal");
    }
    // apply did its work: the raw tap is no guest of Proxmox's here (no configuration), and the
    // run went on past the hung write.
    assert!(ovs.tool(&["status"]).status.code().is_some());
}
