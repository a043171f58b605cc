//! A real LXC container with the preload library: Debian's `lxc` and a busybox container with a
//! raw veth (no `lxc.net.0.link`), started ten times by `lxc-start` inside a sandbox Open vSwitch
//! namespace with `LD_PRELOAD` set, as `docs/preload.md` tells admins to run it.
//!
//! LXC creates the host end of the veth pair with the container's end directly in the
//! container's network namespace, then its setup child (still with the library loaded) looks the
//! container's end up, renames it to `eth0`, runs `pivot_root` and execs init. Each start must
//! attach the host end, and only it: no port named after the container's end, no file of the
//! tool's written into the container's root file system, no warning in the tool's log.
//!
//! Needs `lxc` and `busybox-static` (installed by `scripts/deps`) and the release build of the
//! library: `cargo build --release -p ovs-autoattach-preload` (`OVS_AUTOATTACH_TEST_LIBRARY`
//! points the test at another build).

use crate::common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::Duration;

use common::Ovs;

const STARTS: usize = 10;

/// The syslog severity (0 emergency … 7 debug) of a datagram `<PRI>ovs-autoattach[PID]: …`.
fn severity(line: &str) -> u8 {
    line.strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .filter(|(_, rest)| rest.starts_with("ovs-autoattach["))
        .and_then(|(pri, _)| pri.parse::<u8>().ok())
        .map(|pri| pri & 7)
        .unwrap_or_else(|| panic!("not a syslog line of the tool: {line:?}"))
}

/// A busybox container `ct` in a private LXC path, with a raw veth. Stopped and destroyed on
/// drop, also when the test fails; the directory goes with it.
struct Container {
    /// The network namespace `lxc-start` runs in: LXC's command socket is an abstract unix
    /// socket, so `lxc-stop` must run there too.
    ns: String,
    dir: tempfile::TempDir,
}

impl Container {
    fn create(ns: &str) -> Container {
        let dir = tempfile::Builder::new()
            .prefix("oaa-lxc-")
            .tempdir()
            .unwrap();
        let conf = dir.path().join("ct.conf");
        fs::write(
            &conf,
            "lxc.net.0.type = veth\nlxc.net.0.flags = up\nlxc.net.0.name = eth0\n\
             lxc.apparmor.profile = unconfined\n",
        )
        .unwrap();
        let ct = Container {
            ns: ns.to_string(),
            dir,
        };
        common::check(
            Command::new("lxc-create")
                .arg("-P")
                .arg(ct.dir.path())
                .args(["-n", "ct", "-t", "busybox", "-f"])
                .arg(&conf),
        );
        ct
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("ct/rootfs")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("lxc.log")).unwrap_or_default()
    }

    /// `lxc-start -d` in the namespace, with `env` added to its environment; returns once LXC
    /// reports the container running.
    fn start(&self, env: &[(&str, &str)]) {
        let out = File::create(self.dir.path().join("start.out")).unwrap();
        let status = Command::new("ip")
            .args(["netns", "exec", &self.ns, "env"])
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg("lxc-start")
            .arg("-P")
            .arg(self.dir.path())
            .args(["-n", "ct", "-d", "-l", "INFO", "-o"])
            .arg(self.dir.path().join("lxc.log"))
            // Files, not pipes: LXC's monitor process lives on.
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .status()
            .unwrap();
        let mut said = String::new();
        File::open(self.dir.path().join("start.out"))
            .unwrap()
            .read_to_string(&mut said)
            .unwrap();
        assert!(
            status.success(),
            "lxc-start: {status}\n{said}\nLXC's log:\n{}",
            self.log()
        );
    }

    fn lxc(&self, tool: &str, args: &[&str]) -> std::process::Output {
        common::run(
            Command::new("ip")
                .args(["netns", "exec", &self.ns, tool, "-P"])
                .arg(self.dir.path())
                .args(["-n", "ct"])
                .args(args),
        )
    }

    fn stop(&self) {
        let out = self.lxc("lxc-stop", &["-k"]);
        assert!(
            out.status.success(),
            "lxc-stop: {}{}",
            common::text(&out.stdout),
            common::text(&out.stderr)
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.lxc("lxc-stop", &["-k"]);
        let _ = self.lxc("lxc-destroy", &["-f"]);
    }
}

/// The veth links in the namespace (the host ends of containers' pairs).
fn veths(ovs: &Ovs) -> Vec<String> {
    ovs.sh("ip -o link show type veth")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect()
}

/// Every file (not directory) under `dir`, recursively; none if it does not exist.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_real_lxc_container_gets_its_host_veth_attached_ten_times_and_nothing_else() {
    if common::without_root() {
        return;
    }
    if Command::new("lxc-start").arg("--version").output().is_err() {
        panic!("lxc-start is missing: run scripts/deps (it installs lxc and busybox-static)");
    }
    let ovs = Ovs::start();
    let ct = Container::create(&ovs.ns);
    let syslog = common::Syslog::bind();

    // The tool's files and lock directory also exist under the container's root file system:
    // a tool that ran after LXC's pivot_root would write there.
    let mirror = ct.rootfs().join(ovs.dir.strip_prefix("/").unwrap());
    for sub in ["etc/interfaces.d", "run", "pve/lxc", "pve/qemu-server"] {
        fs::create_dir_all(mirror.join(sub)).unwrap();
    }

    let config = ovs.config_path().display().to_string();
    let library = common::preload_library();
    let env = [
        ("LD_PRELOAD", library),
        ("OVS_AUTOATTACH_BIN", common::BIN),
        ("OVS_AUTOATTACH_CONFIG", &config),
        syslog.var(),
    ];
    let monitor = ovs.monitor_ports();
    let mut host_veths = Vec::new();
    for start in 1..=STARTS {
        assert_eq!(veths(&ovs), Vec::<String>::new(), "start {start}");
        ct.start(&env);
        let now = veths(&ovs);
        assert_eq!(now.len(), 1, "start {start}: veths {now:?}");
        let veth = now[0].clone();
        let attached = common::wait_until(Duration::from_secs(5), || {
            ovs.bridge_of(&veth).as_deref() == Some("ovsbr0")
        });
        assert!(
            attached,
            "start {start}: {veth} not on ovsbr0 5 s after lxc-start returned; the tool's log:\n{}\nLXC's log:\n{}",
            syslog.lines().join("\n"),
            ct.log()
        );
        // One plug per start, and a plug started in the container's setup child would be done
        // well within the extra half second.
        let summaries = || {
            syslog
                .lines()
                .iter()
                .filter(|l| l.contains("]: plug: "))
                .count()
        };
        assert!(
            common::wait_until(Duration::from_secs(5), || summaries() >= start),
            "start {start}: {:#?}",
            syslog.lines()
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(summaries(), start, "start {start}: {:#?}", syslog.lines());
        assert_eq!(
            ovs.ports("ovsbr0"),
            std::slice::from_ref(&veth),
            "start {start}"
        );
        let written = files_under(&mirror);
        assert!(
            written.is_empty(),
            "start {start}: written into the container's root file system: {written:?}"
        );
        assert!(
            ovs.stanzas_path().is_file(),
            "start {start}: no stanzas file on the host"
        );

        ct.stop();
        assert!(
            common::wait_until(Duration::from_secs(10), || veths(&ovs).is_empty()),
            "start {start}: the veth outlived the container: {:?}",
            veths(&ovs)
        );
        // The port of a link that is gone, as `apply` would prune it: the next start begins
        // with an empty bridge.
        ovs.vsctl(&["--if-exists", "del-port", &veth]);
        host_veths.push(veth);
    }

    // Through all starts, OVS never held a port other than the bridge's own and the host ends.
    let rows = monitor.rows();
    let seen: BTreeSet<&str> = rows.iter().map(|(_, name, _)| name.as_str()).collect();
    let mut allowed: BTreeSet<&str> = host_veths.iter().map(String::as_str).collect();
    allowed.insert("ovsbr0");
    assert!(
        seen.is_subset(&allowed),
        "ports in the monitor beyond the host veths {host_veths:?}: {rows:#?}"
    );
    for veth in &host_veths {
        assert!(
            rows.iter().any(|(a, n, _)| a == "insert" && n == veth),
            "{veth} never inserted: {rows:#?}"
        );
    }

    // Every line of the tool at notice level or below: no warning, no error.
    let lines = syslog.lines();
    for line in &lines {
        assert!(severity(line) > 4, "a warning or worse: {line}\n{lines:#?}");
    }
    let attached: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("]: attached "))
        .collect();
    assert_eq!(attached.len(), STARTS, "{lines:#?}");
    for (line, veth) in attached.iter().zip(&host_veths) {
        assert!(
            line.contains(&format!("]: attached {veth} to ovsbr0 untagged")),
            "{line}"
        );
    }
    let written = files_under(&ct.rootfs())
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.contains("ovs-autoattach") || name.contains("nmstate")
        })
        .collect::<Vec<_>>();
    assert!(written.is_empty(), "{written:?}");
}
