//! Raw containers placed where their owner says: a raw container's NIC goes where its LXC
//! container's own configuration (`<lxc_path>/<name>/config`) puts it, else where a `raw` rule
//! of the tool's configuration does, else to `raw_default`; `status` names the source of each.
//!
//! A container is stood in for by a network namespace holding the NIC's peer and a process in
//! that namespace running in a cgroup v2 directory `lxc.payload.<name>`, as LXC runs a
//! container's processes. One test starts a real LXC container (Debian's `lxc`, a busybox
//! container) and checks that `apply` puts its veth where its configuration says.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Ovs;
use serde_json::Value;

/// The cgroup v2 hierarchy (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host).
fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
        .expect("no cgroup2 hierarchy mounted")
}

/// A stand-in for a running LXC container's init: a process in network namespace `ns` and in
/// the cgroup `lxc.payload.<name>`. The process and the cgroup go on drop.
struct Payload {
    child: Child,
    cgroup: PathBuf,
}

impl Payload {
    fn start(ns: &str, name: &str) -> Payload {
        let cgroup = cgroup2_root().join(format!("lxc.payload.{name}"));
        fs::create_dir_all(&cgroup).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let payload = Payload { child, cgroup };
        fs::write(
            payload.cgroup.join("cgroup.procs"),
            payload.child.id().to_string(),
        )
        .unwrap();
        // `ip netns exec` enters the namespace, then execs `sleep` in the same process.
        let comm = format!("/proc/{}/comm", payload.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            assert!(Instant::now() < deadline, "the payload process never ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        payload
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The cgroup can be removed once the kernel has taken the dead process out of it.
        for _ in 0..100 {
            if fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A raw container NIC `name` whose peer is in a new container namespace; returns that
/// namespace.
fn raw_nic(ovs: &Ovs, name: &str) -> String {
    let c = ovs.container_ns();
    ovs.sh(&format!(
        "ip link add {name} type veth peer name eth0 netns {c}; ip link set {name} up"
    ));
    c
}

/// An LXC configuration `<lxc_path>/<name>/config`.
fn lxc_config(lxc_path: &Path, name: &str, text: &str) {
    fs::create_dir_all(lxc_path.join(name)).unwrap();
    fs::write(lxc_path.join(name).join("config"), text).unwrap();
}

fn nic<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["nics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the report: {doc}"))
}

#[test]
fn raw_containers_go_where_their_config_a_rule_or_raw_default_says() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    ovs.add_bridge("vmbr2");
    let lxc_path = ovs.dir.join("lxc");
    let id = std::process::id();
    let (own, ruled) = (format!("oaa{id}own"), format!("oaa{id}web-1"));

    // Its own configuration: vmbr1, access VLAN 30.
    let ns = raw_nic(&ovs, "vethOwn01");
    let _own = Payload::start(&ns, &own);
    lxc_config(
        &lxc_path,
        &own,
        "lxc.uts.name = own\nlxc.net.0.type = veth\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 30\nlxc.net.0.name = eth0\n",
    );
    // A configuration that names no bridge, in a cgroup LXC renamed (`-1`): the rule for the
    // container.
    let ns = raw_nic(&ovs, "vethWeb01");
    let _ruled = Payload::start(&ns, &ruled);
    lxc_config(&lxc_path, &format!("oaa{id}web"), "lxc.net.0.type = veth\n");
    // No container found: a rule by name, else raw_default.
    raw_nic(&ovs, "vethdb01");
    raw_nic(&ovs, "vethNone01");
    ovs.write_config(&format!(
        "lxc_path: {}\nraw:\n  - {{container: oaa{id}web, bridge: vmbr2, tag: 40}}\n  - {{nic: 'vethdb*', bridge: vmbr2, trunks: [30, 20]}}\nraw_default: {{bridge: ovsbr0, tag: 999}}\n",
        lxc_path.display()
    ));

    ovs.tool_ok(&["apply"]);
    let placed = |nic: &str| {
        (
            ovs.bridge_of(nic).unwrap_or_default(),
            ovs.vlan(nic),
            ovs.owner(nic).unwrap_or_default(),
        )
    };
    let own_place = ("vmbr1".to_string(), "30 [] access".to_string());
    assert_eq!(
        placed("vethOwn01"),
        (own_place.0, own_place.1, "ovs-autoattach".into())
    );
    assert_eq!(placed("vethWeb01").0, "vmbr2");
    assert_eq!(placed("vethWeb01").1, "40 [] []");
    assert_eq!(placed("vethdb01").0, "vmbr2");
    assert_eq!(placed("vethdb01").1, "[] [20, 30] []");
    assert_eq!(placed("vethNone01").0, "ovsbr0");
    assert_eq!(placed("vethNone01").1, "999 [] []");

    let out = ovs.tool(&["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, source) in [
        ("vethOwn01", format!("lxc config {own}")),
        ("vethWeb01", "rule 1".to_string()),
        ("vethdb01", "rule 2".to_string()),
        ("vethNone01", "raw_default".to_string()),
    ] {
        let n = nic(&doc, name);
        assert_eq!(n["source"], source.as_str(), "{n}");
        assert_eq!(n["state"], "ok", "{n}");
    }
    let table = common::text(&ovs.tool(&["status"]).stdout);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}:\n{table}"))
            .to_string()
    };
    assert!(
        row("vethOwn01").contains(&format!("lxc config {own}")),
        "{table}"
    );
    assert!(row("vethNone01").contains("raw_default"), "{table}");

    // The container's configuration changes (a new VLAN): the next apply follows it.
    lxc_config(
        &lxc_path,
        &own,
        "lxc.net.0.type = veth\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 31\nlxc.net.0.veth.vlan.tagged.id = 50\n",
    );
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.vlan("vethOwn01"), "31 [50] native-untagged");
    // A value LXC refuses: invalid, reported with the file and line, the port left as it is.
    lxc_config(
        &lxc_path,
        &own,
        "lxc.net.0.type = veth\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 5000\n",
    );
    let said = ovs.tool_code(&["apply"], 1);
    assert!(
        said.contains(&format!("{own}/config line 3: lxc.net.0.veth.vlan.id")),
        "{said}"
    );
    assert_eq!(ovs.vlan("vethOwn01"), "31 [50] native-untagged");
}

/// Without `raw_default`, a raw NIC nobody places goes to the default bridge untagged, as
/// before; `status` says so.
#[test]
fn without_raw_default_the_default_bridge_untagged() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    raw_nic(&ovs, "vethPlain01");
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.bridge_of("vethPlain01").as_deref(), Some("ovsbr0"));
    assert_eq!(ovs.vlan("vethPlain01"), "[] [] []");
    let out = ovs.tool(&["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nic(&doc, "vethPlain01")["source"], "default bridge");
}

/// A real LXC container (no `lxc.net.0.link`, so LXC plugs nothing): once its configuration
/// names an OVS bridge and a VLAN, as if LXC had plugged it and the port had been lost since,
/// `apply` puts its veth there.
#[test]
fn a_real_lxc_containers_veth_lands_where_its_config_says() {
    if common::without_root() {
        return;
    }
    if Command::new("lxc-start").arg("--version").output().is_err() {
        panic!("lxc-start is missing: run scripts/deps (it installs lxc and busybox-static)");
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    let dir = tempfile::Builder::new()
        .prefix("oaa-lxc-")
        .tempdir()
        .unwrap();
    let name = format!("oaa{}ct", std::process::id());
    let conf = dir.path().join("ct.conf");
    fs::write(
        &conf,
        "lxc.net.0.type = veth\nlxc.net.0.flags = up\nlxc.net.0.name = eth0\nlxc.apparmor.profile = unconfined\n",
    )
    .unwrap();
    let lxc = |tool: &str, args: &[&str]| {
        common::run(
            Command::new("ip")
                .args(["netns", "exec", &ovs.ns, tool, "-P"])
                .arg(dir.path())
                .args(["-n", &name])
                .args(args),
        )
    };
    common::check(
        Command::new("lxc-create")
            .arg("-P")
            .arg(dir.path())
            .args(["-n", &name, "-t", "busybox", "-f"])
            .arg(&conf),
    );
    struct Stop<'a>(&'a dyn Fn());
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let stop = || {
        let _ = lxc("lxc-stop", &["-k"]);
        let _ = lxc("lxc-destroy", &["-f"]);
    };
    let _stop = Stop(&stop);
    let started = lxc("lxc-start", &["-d"]);
    assert!(
        started.status.success(),
        "lxc-start: {}",
        common::text(&started.stderr)
    );
    let config = dir.path().join(&name).join("config");
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("lxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 30\n");
    fs::write(&config, text).unwrap();
    ovs.write_config(&format!("lxc_path: {}\n", dir.path().display()));
    let veth = ovs
        .sh("ip -o link show type veth")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .next()
        .expect("the container's host veth");
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.bridge_of(&veth).as_deref(), Some("vmbr1"));
    assert_eq!(ovs.vlan(&veth), "30 [] access");
    let out = ovs.tool(&["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nic(&doc, &veth)["source"], format!("lxc config {name}"));
}
