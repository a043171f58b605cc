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
/// the cgroup `lxc.payload.<name>`. The process and the cgroups it was put in go on drop.
struct Payload {
    child: Child,
    /// Every cgroup made for it, innermost first.
    cgroups: Vec<PathBuf>,
}

impl Payload {
    fn start(ns: &str, name: &str) -> Payload {
        Payload::in_cgroup(ns, &format!("lxc.payload.{name}"))
    }

    /// The process in the cgroup `rel` (a path below the cgroup2 root).
    fn in_cgroup(ns: &str, rel: &str) -> Payload {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut payload = Payload {
            child,
            cgroups: vec![],
        };
        payload.move_to(rel);
        // `ip netns exec` enters the namespace, then execs `sleep` in the same process.
        let comm = format!("/proc/{}/comm", payload.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            assert!(Instant::now() < deadline, "the payload process never ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        payload
    }

    /// Moves the process to the cgroup `rel`, made if need be.
    fn move_to(&mut self, rel: &str) {
        let root = cgroup2_root();
        let cgroup = root.join(rel);
        let mut made = vec![];
        let mut p = cgroup.clone();
        while p != root && !p.exists() {
            made.push(p.clone());
            p = p.parent().unwrap().to_path_buf();
        }
        fs::create_dir_all(&cgroup).unwrap();
        made.extend(std::mem::take(&mut self.cgroups));
        made.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        self.cgroups = made;
        fs::write(cgroup.join("cgroup.procs"), self.child.id().to_string()).unwrap();
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A cgroup can be removed once the kernel has taken the dead process out of it.
        for cgroup in &self.cgroups {
            for _ in 0..100 {
                if fs::remove_dir(cgroup).is_ok() || !cgroup.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
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
/// `apply` puts its veth there. Its configuration is found under the lxcpath its monitor
/// names (`lxc-start -P`), not the configured `lxc_path`.
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
    // The container runs under `-P <dir>`, not under the configured lxc_path: its root-run
    // monitor names its lxcpath.
    let elsewhere = ovs.dir.join("lxc-elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    ovs.write_config(&format!("lxc_path: {}\n", elsewhere.display()));
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

/// Where a NIC is: `<bridge> <tag trunks vlan_mode> owner=<owner>`.
fn placed(ovs: &Ovs, nic: &str) -> String {
    format!(
        "{} {} owner={}",
        ovs.bridge_of(nic).unwrap_or_default(),
        ovs.vlan(nic),
        ovs.owner(nic).unwrap_or_default()
    )
}

/// The reason `status --json` gives for a NIC.
fn reason(ovs: &Ovs, name: &str) -> String {
    let out = ovs.tool(&["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    nic(&doc, name).to_string()
}

/// A container's root owns the cgroups below its own and may name one after another container
/// (`lxc.payload.<ct>/lxc.payload.<db>`): the outermost payload cgroup names the container.
/// A payload cgroup named `.` (which would make `<lxc_path>/./config` its configuration) names
/// none.
#[test]
fn a_payload_cgroup_below_a_containers_own_does_not_name_it() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    ovs.add_bridge("vmbr2");
    let lxc_path = ovs.dir.join("lxc");
    let id = std::process::id();
    let (ct, db) = (format!("oaa{id}ct"), format!("oaa{id}db"));
    lxc_config(&lxc_path, &ct, "lxc.net.0.type = veth\n");
    // What `lxc.payload..` would read as its configuration.
    fs::write(
        lxc_path.join("config"),
        "lxc.net.0.type = veth\nlxc.net.0.link = vmbr2\nlxc.net.0.veth.vlan.id = 66\n",
    )
    .unwrap();
    let ns = raw_nic(&ovs, "vethSpf01");
    let _nested = Payload::in_cgroup(&ns, &format!("lxc.payload.{ct}/lxc.payload.{db}"));
    let dots = raw_nic(&ovs, "vethDot01");
    let _dots = Payload::in_cgroup(&dots, "lxc.payload..");
    ovs.write_config(&format!(
        "lxc_path: {}\nraw:\n  - {{container: {ct}, bridge: vmbr1, tag: 10}}\n  - {{container: {db}, bridge: vmbr2, tag: 20}}\nraw_default: {{bridge: ovsbr0, tag: 999}}\n",
        lxc_path.display()
    ));
    ovs.tool_ok(&["apply"]);
    assert_eq!(
        placed(&ovs, "vethSpf01"),
        "vmbr1 10 [] [] owner=ovs-autoattach"
    );
    assert!(reason(&ovs, "vethSpf01").contains("\"rule 1\""));
    // Not `<lxc_path>/config`'s vmbr2 tag 66: the lookup is incomplete, and a NIC on no port
    // goes by the rules.
    assert_eq!(
        placed(&ovs, "vethDot01"),
        "ovsbr0 999 [] [] owner=ovs-autoattach"
    );
}

/// A look that does not complete (here: the container's processes end up in a payload cgroup
/// named the way LXC names nothing; in the field a scan that does not answer in time or a
/// namespace id that cannot be asked for) leaves a placed NIC where it is instead of moving it
/// to the fallback.
#[test]
fn an_incomplete_container_lookup_moves_no_placed_nic() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    let lxc_path = ovs.dir.join("lxc");
    let ct = format!("oaa{}own", std::process::id());
    lxc_config(
        &lxc_path,
        &ct,
        "lxc.net.0.type = veth\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 30\n",
    );
    let ns = raw_nic(&ovs, "vethMiss01");
    let mut p = Payload::start(&ns, &ct);
    ovs.write_config(&format!("lxc_path: {}\n", lxc_path.display()));
    ovs.tool_ok(&["apply"]);
    assert_eq!(
        placed(&ovs, "vethMiss01"),
        "vmbr1 30 [] access owner=ovs-autoattach"
    );
    p.move_to("lxc.payload..");
    ovs.tool_ok(&["apply"]);
    assert_eq!(
        placed(&ovs, "vethMiss01"),
        "vmbr1 30 [] access owner=ovs-autoattach"
    );
    assert!(
        reason(&ovs, "vethMiss01").contains("its LXC container is not known right now"),
        "{}",
        reason(&ovs, "vethMiss01")
    );
}

/// A veth added to a running container by other means (`lxc-device add` of one end of an
/// admin's pair): which entry made which NIC cannot be told any more, and the container's NIC
/// stays where it is.
#[test]
fn an_extra_veth_in_a_container_moves_no_placed_nic() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    let lxc_path = ovs.dir.join("lxc");
    let ct = format!("oaa{}two", std::process::id());
    lxc_config(
        &lxc_path,
        &ct,
        "lxc.net.0.type = veth\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 30\n",
    );
    let ns = raw_nic(&ovs, "vethTwo01");
    let _p = Payload::start(&ns, &ct);
    ovs.write_config(&format!("lxc_path: {}\n", lxc_path.display()));
    ovs.tool_ok(&["apply"]);
    assert_eq!(
        placed(&ovs, "vethTwo01"),
        "vmbr1 30 [] access owner=ovs-autoattach"
    );
    ovs.sh(&format!(
        "ip link add vethAdm01 type veth peer name vethAdm02; ip link set vethAdm02 netns {ns}; ip link set vethAdm01 up"
    ));
    ovs.tool_ok(&["apply"]);
    assert_eq!(
        placed(&ovs, "vethTwo01"),
        "vmbr1 30 [] access owner=ovs-autoattach"
    );
    assert!(reason(&ovs, "vethTwo01").contains("cannot be told"));
}

/// A container configuration that is a FIFO (or anything whose read blocks) does not hold
/// `apply`: only a regular file is read, on a thread the run waits for a bounded time.
#[test]
fn a_fifo_as_a_containers_configuration_does_not_hold_apply() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    let lxc_path = ovs.dir.join("lxc");
    let ct = format!("oaa{}fifo", std::process::id());
    fs::create_dir_all(lxc_path.join(&ct)).unwrap();
    common::check(Command::new("mkfifo").arg(lxc_path.join(&ct).join("config")));
    let ns = raw_nic(&ovs, "vethFifo01");
    let _p = Payload::start(&ns, &ct);
    ovs.write_config(&format!("lxc_path: {}\n", lxc_path.display()));
    let mut child = ovs
        .tool_cmd(&["apply"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(finished, "apply still runs after {:?}", t.elapsed());
    assert!(reason(&ovs, "vethFifo01").contains("is not a regular file"));
}

/// A real LXC container that plugs its veth into OVS itself (`link = vmbr1`, `vlan.id = 30`),
/// started with the preload library as `docs/preload.md` says: LXC's `ovs-vsctl add-port`
/// (without `--may-exist`) must never find the port made by the tool first. Every start
/// succeeds, and the port is LXC's.
#[test]
fn a_real_lxc_container_plugging_itself_starts_with_the_preload_library() {
    if common::without_root() {
        return;
    }
    if Command::new("lxc-start").arg("--version").output().is_err() {
        panic!("lxc-start is missing: run scripts/deps (it installs lxc and busybox-static)");
    }
    let library = common::preload_library().to_string();
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    let dir = tempfile::Builder::new()
        .prefix("oaa-lxcplug-")
        .tempdir()
        .unwrap();
    let name = format!("oaa{}pl", std::process::id());
    let conf = dir.path().join("ct.conf");
    fs::write(
        &conf,
        "lxc.net.0.type = veth\nlxc.net.0.flags = up\nlxc.net.0.name = eth0\nlxc.net.0.link = vmbr1\nlxc.net.0.veth.vlan.id = 30\nlxc.apparmor.profile = unconfined\n",
    )
    .unwrap();
    common::check(
        Command::new("lxc-create")
            .arg("-P")
            .arg(dir.path())
            .args(["-n", &name, "-t", "busybox", "-f"])
            .arg(&conf),
    );
    let lxc = |tool: &str, args: &[&str], env: &[(&str, String)]| {
        common::run(
            Command::new("ip")
                .args(["netns", "exec", &ovs.ns, "env"])
                .args(env.iter().map(|(k, v)| format!("{k}={v}")))
                .arg(tool)
                .arg("-P")
                .arg(dir.path())
                .args(["-n", &name])
                .args(args),
        )
    };
    struct Destroy<'a>(&'a dyn Fn());
    impl Drop for Destroy<'_> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let destroy = || {
        let _ = lxc("lxc-stop", &["-k"], &[]);
        let _ = lxc("lxc-destroy", &["-f"], &[]);
    };
    let _destroy = Destroy(&destroy);
    ovs.write_config(&format!("lxc_path: {}\n", dir.path().display()));
    let env = vec![
        ("LD_PRELOAD", library),
        ("OVS_AUTOATTACH_BIN", common::BIN.to_string()),
        (
            "OVS_AUTOATTACH_CONFIG",
            ovs.config_path().display().to_string(),
        ),
        ("OVS_RUNDIR", ovs.dir.display().to_string()),
    ];
    let log = dir.path().join("lxc.log");
    let veth = || {
        ovs.sh("ip -o link show type veth")
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or_default().to_string())
            .next()
    };
    for i in 0..8 {
        let out = lxc(
            "lxc-start",
            &["-d", "-l", "INFO", "-o", &log.display().to_string()],
            &env,
        );
        let started = out.status.success()
            && lxc("lxc-wait", &["-s", "RUNNING", "-t", "10"], &[])
                .status
                .success();
        let errors: Vec<String> = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .map(String::from)
            .collect();
        assert!(
            started && errors.is_empty(),
            "start {i}: {}\n{}",
            common::text(&out.stderr),
            errors.join("\n")
        );
        let nic = veth().expect("the container's host veth");
        assert_eq!(placed(&ovs, &nic), "vmbr1 30 [] access owner=", "start {i}");
        // apply leaves LXC's port as LXC made it.
        ovs.tool_ok(&["apply"]);
        assert_eq!(placed(&ovs, &nic), "vmbr1 30 [] access owner=", "start {i}");
        let _ = lxc("lxc-stop", &["-k"], &[]);
        let _ = lxc("lxc-wait", &["-s", "STOPPED", "-t", "10"], &[]);
        for p in ovs.ports("vmbr1") {
            ovs.vsctl(&["--if-exists", "del-port", &p]);
        }
    }
}
