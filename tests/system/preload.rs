//! The LD_PRELOAD library (`preload/`) in real processes: `ip` against a real Open vSwitch, and
//! a small C program (`preload/testdata/probe.c`) that calls the interposed functions in known
//! ways, with a stub in place of the tool to count and inspect what gets started. The real tool
//! logs to a test socket standing in for `/dev/log` ([`common::Syslog`]).
//!
//! The library must be built first: `cargo build --release -p ovs-autoattach-preload`
//! (`OVS_AUTOATTACH_TEST_LIBRARY` points the tests at another build).

use crate::common;

use std::fs::{self, File};
use std::io::{Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Ovs;

const PROBE_C: &str = include_str!("../../preload/testdata/probe.c");

/// The probe, compiled once per test run into cargo's scratch directory for tests (built under
/// a private name, then renamed into place, so that concurrent runs never see half a binary).
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let pid = std::process::id();
        let src = dir.join(format!("preload-probe.{pid}.c"));
        let tmp = dir.join(format!("preload-probe.{pid}"));
        let bin = dir.join("preload-probe");
        fs::write(&src, PROBE_C).unwrap();
        common::check(
            Command::new("cc")
                .args(["-O2", "-Wall", "-o"])
                .arg(&tmp)
                .arg(&src)
                .arg("-lpthread"),
        );
        fs::remove_file(&src).unwrap();
        fs::rename(&tmp, &bin).unwrap();
        bin
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private network namespace for tests that need links but no OVS.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = Netns(format!("oap{}x{n}", std::process::id()));
        common::check(Command::new("ip").args(["netns", "add", &ns.0]));
        ns.sh("ip link set lo up");
        ns
    }

    fn sh(&self, script: &str) -> String {
        common::check(Command::new("ip").args(["netns", "exec", &self.0, "bash", "-ec", script]))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// `ip netns exec NS env LD_PRELOAD=<library> OVS_AUTOATTACH_BIN=<bin> <vars> <argv>`.
fn preloaded(ns: &str, bin: &Path, vars: &[(&str, &str)], argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "env"])
        .arg(format!("LD_PRELOAD={}", common::preload_library()))
        .arg(format!("OVS_AUTOATTACH_BIN={}", bin.display()))
        .args(vars.iter().map(|(k, v)| format!("{k}={v}")))
        .args(argv);
    c
}

/// `ip netns exec NS <argv>`, without the library.
fn plain(ns: &str, argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(argv);
    c
}

struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with stdout and stderr going to files, not pipes: a detached child inherits
/// them, and waiting for the end of a pipe would wait for the child too.
fn run(cmd: &mut Command) -> Ran {
    run_then(cmd, || {})
}

/// [`run`], reading the files only once `settled` has returned (it is called after `cmd`
/// exited): a tool that inherited them could write to them until it is done.
fn run_then(cmd: &mut Command, settled: impl FnOnce()) -> Ran {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    settled();
    let read = |mut f: File| {
        let mut s = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut s).unwrap();
        s
    };
    Ran {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

fn run_ok(cmd: &mut Command) -> Ran {
    let r = run(cmd);
    assert!(
        r.status.success(),
        "{cmd:?}: {}\n{}{}",
        r.status,
        r.stdout,
        r.stderr
    );
    r
}

/// The library's debug lines that report a started tool.
fn started(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("ovs-autoattach-preload[") && l.contains("): started "))
        .collect()
}

/// Splits a syslog datagram `<PRI>ovs-autoattach[PID]: message` into PRI and message.
fn syslog_line(line: &str) -> (u8, &str) {
    let parse = || {
        let (pri, rest) = line.strip_prefix('<')?.split_once('>')?;
        let (pid, message) = rest.strip_prefix("ovs-autoattach[")?.split_once("]: ")?;
        pid.parse::<u32>().ok()?;
        Some((pri.parse().ok()?, message))
    };
    parse().unwrap_or_else(|| panic!("not a syslog line of the tool: {line:?}"))
}

/// A stub tool that appends its arguments to `<dir>/calls`.
fn counting_stub(dir: &Path) -> PathBuf {
    stub(
        dir,
        &format!("echo \"$*\" >> {}\n", dir.join("calls").display()),
    )
}

fn stub(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("stub");
    fs::write(&path, format!("#!/bin/bash\n{body}")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn calls(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The number after `key` in the probe's `key value key value ...` output.
fn value(out: &str, key: &str) -> f64 {
    let mut words = out.split_whitespace();
    words
        .position(|w| w == key)
        .and_then(|_| words.next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {out:?}"))
}

/// Waits until `port` is on `bridge`; asserts it happens within a second.
fn assert_attached_within_a_second(ovs: &Ovs, port: &str, ran: &Ran, syslog: &common::Syslog) {
    let since = Instant::now();
    let attached = common::wait_until(Duration::from_secs(1), || {
        ovs.bridge_of(port).as_deref() == Some("ovsbr0")
    });
    let elapsed = since.elapsed();
    assert!(
        attached,
        "{port} not on ovsbr0 a second after the command returned; its stderr:\n{}\nthe tool's log:\n{}",
        ran.stderr,
        syslog.lines().join("\n")
    );
    eprintln!(
        "{port} on ovsbr0 {} ms after the command returned",
        elapsed.as_millis()
    );
}

#[test]
fn ip_link_set_up_attaches_the_veth() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest(
        "lxc",
        123,
        "net0: name=eth0,bridge=ovsbr0,hwaddr=BC:24:11:00:01:23,type=veth\n",
    );
    ovs.sh("ip link add veth123i0 type veth peer name p123i0");
    let config = ovs.config_path().display().to_string();
    let syslog = common::Syslog::bind();
    let ran = run_ok(&mut preloaded(
        &ovs.ns,
        Path::new(common::BIN),
        &[
            ("OVS_AUTOATTACH_CONFIG", &config),
            ("OVS_AUTOATTACH_LOG", "debug"),
            syslog.var(),
        ],
        &["ip", "link", "set", "veth123i0", "up"],
    ));
    assert_attached_within_a_second(&ovs, "veth123i0", &ran, &syslog);
    assert_eq!(started(&ran.stderr).len(), 1, "{}", ran.stderr);
    let started_line = format!(
        "veth123i0 (rtnetlink): started {} --log syslog plug veth123i0, pid ",
        common::BIN
    );
    assert!(ran.stderr.contains(&started_line), "{}", ran.stderr);
    // OVS_AUTOATTACH_LOG=debug reached the tool too: its debug lines are in syslog.
    let lines = syslog.wait_for("plug: 1 attached", Duration::from_secs(5));
    assert!(
        lines.iter().any(|l| l.starts_with("<31>ovs-autoattach[")),
        "{lines:#?}"
    );
}

#[test]
fn ip_tuntap_add_attaches_the_tap() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest(
        "qemu-server",
        124,
        "net0: virtio=BC:24:11:00:01:24,bridge=ovsbr0\n",
    );
    let config = ovs.config_path().display().to_string();
    let syslog = common::Syslog::bind();
    let ran = run_ok(&mut preloaded(
        &ovs.ns,
        Path::new(common::BIN),
        &[
            ("OVS_AUTOATTACH_CONFIG", &config),
            ("OVS_AUTOATTACH_LOG", "debug"),
            syslog.var(),
        ],
        &["ip", "tuntap", "add", "tap124i0", "mode", "tap"],
    ));
    assert_attached_within_a_second(&ovs, "tap124i0", &ran, &syslog);
    assert!(
        ran.stderr.contains("tap124i0 (ioctl TUNSETIFF): started"),
        "{}",
        ran.stderr
    );
    // The tap outlived `ip` (persistent), and the tool holds no descriptor of it.
    ovs.sh("ip link show tap124i0 >/dev/null");
}

#[test]
fn the_callers_output_is_its_own_and_the_tools_lines_go_to_syslog() {
    if common::without_root() {
        return;
    }
    let probe = probe().to_str().unwrap();
    let ovs = Ovs::start();
    ovs.guest(
        "lxc",
        127,
        "net0: name=eth0,bridge=ovsbr0,hwaddr=BC:24:11:00:01:27,type=veth\n",
    );
    ovs.sh("ip link add veth127i0 type veth peer name p127i0");
    let config = ovs.config_path().display().to_string();
    let syslog = common::Syslog::bind();
    let argv = [probe, "lookup", "veth127i0"];

    let without = run_ok(&mut plain(&ovs.ns, &argv));
    // The real tool, at the default log level. Its output files are read once it is done: its
    // summary is its last line.
    let mut lines = Vec::new();
    let with = run_then(
        &mut preloaded(
            &ovs.ns,
            Path::new(common::BIN),
            &[("OVS_AUTOATTACH_CONFIG", &config), syslog.var()],
            &argv,
        ),
        || {
            lines = syslog.wait_for("plug: ", Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(200));
        },
    );
    assert!(with.status.success(), "{}{}", with.stdout, with.stderr);
    let log = lines.join("\n");
    assert_eq!(
        ovs.bridge_of("veth127i0").as_deref(),
        Some("ovsbr0"),
        "the tool did not attach; its log:\n{log}"
    );
    assert_eq!(
        (with.stdout.as_str(), with.stderr.as_str()),
        (without.stdout.as_str(), without.stderr.as_str()),
        "stdout and stderr with the library (left) and without"
    );
    // The probe's own output, so that a probe printing nothing cannot pass.
    assert_eq!(
        without.stdout,
        "looking up veth127i0\nif_nametoindex(veth127i0) found yes\n"
    );
    assert_eq!(
        without.stderr,
        "probe: before the lookup\nprobe: after the lookup\n"
    );

    // Every line of the tool reached syslog, as daemon.info (facility 3, severity 6): what it
    // did (attached, the veth, created down, set up, then IPv6 off, as Proxmox's plug of a
    // container NIC), then its summary.
    let messages: Vec<(u8, &str)> = lines.iter().map(|l| syslog_line(l)).collect();
    assert_eq!(messages.len(), 4, "{log}");
    assert_eq!(
        messages[0],
        (30, "attached veth127i0 to ovsbr0 untagged"),
        "{log}"
    );
    assert_eq!(messages[1], (30, "set veth127i0 up, mtu 1500"), "{log}");
    assert_eq!(messages[2], (30, "disable IPv6 on veth127i0"), "{log}");
    assert_eq!(messages[3].0, 30, "{log}");
    assert!(
        messages[3].1.starts_with("plug: 1 attached, 0 updated"),
        "{log}"
    );
}

#[test]
fn a_hundred_thousand_lookups_start_the_tool_once_and_other_names_never() {
    if common::without_root() {
        return;
    }
    let probe = probe().to_str().unwrap();
    let ns = Netns::new();
    ns.sh("ip link add veth125i0 type veth peer name p125");
    let dir = tempfile::tempdir().unwrap();
    let stub = counting_stub(dir.path());
    let debug = [("OVS_AUTOATTACH_LOG", "debug")];

    // The hooked loop also times libc's own if_nametoindex, interleaved, for the overhead.
    let hooked = run_ok(&mut preloaded(
        &ns.0,
        &stub,
        &debug,
        &[probe, "loop", "veth125i0", "100000", "compare"],
    ));
    assert_eq!(started(&hooked.stderr).len(), 1, "{}", hooked.stderr);
    assert!(common::wait_until(Duration::from_secs(5), || !calls(
        dir.path()
    )
    .is_empty()));

    let other = run_ok(&mut preloaded(
        &ns.0,
        &stub,
        &debug,
        &[probe, "loop", "lo", "100000"],
    ));
    assert_eq!(other.stderr, "", "lo is not a guest NIC name");
    let unhooked = run_ok(&mut plain(&ns.0, &[probe, "loop", "veth125i0", "100000"]));

    // Anything started late would have shown up by now.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(calls(dir.path()), ["--log syslog plug veth125i0"]);

    let (h, d) = (
        value(&hooked.stdout, "ns_per_call"),
        value(&hooked.stdout, "direct_ns_per_call"),
    );
    eprintln!(
        "if_nametoindex x 100000: hooked {h:.1} ns/call, libc's own in the same process {d:.1} \
         ns/call: overhead {:+.1} ns/call; separate runs: unhooked {:.1}, non-matching name \
         hooked {:.1} ns/call",
        h - d,
        value(&unhooked.stdout, "ns_per_call"),
        value(&other.stdout, "ns_per_call"),
    );

    // Every ioctl of a preloaded process passes through the hook: its cost on its own.
    let io = run_ok(&mut preloaded(
        &ns.0,
        &stub,
        &[],
        &[probe, "ioctl-loop", "500000"],
    ));
    let (h, d) = (
        value(&io.stdout, "ns_per_call"),
        value(&io.stdout, "direct_ns_per_call"),
    );
    eprintln!(
        "ioctl(FIONREAD) pass-through x 500000: hooked {h:.1} ns/call, libc's own {d:.1} ns/call: \
         overhead {:+.1} ns/call",
        h - d
    );
}

#[test]
fn threads_racing_on_one_name_start_the_tool_once() {
    if common::without_root() {
        return;
    }
    let probe = probe().to_str().unwrap();
    let ns = Netns::new();
    ns.sh("ip link add veth126i0 type veth peer name p126");
    let dir = tempfile::tempdir().unwrap();
    let stub = counting_stub(dir.path());
    let ran = run_ok(&mut preloaded(
        &ns.0,
        &stub,
        &[("OVS_AUTOATTACH_LOG", "debug")],
        &[probe, "threads", "veth126i0", "8", "2000"],
    ));
    assert_eq!(started(&ran.stderr).len(), 1, "{}", ran.stderr);
    assert!(common::wait_until(Duration::from_secs(5), || !calls(
        dir.path()
    )
    .is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(calls(dir.path()), ["--log syslog plug veth126i0"]);
}

#[test]
fn return_values_and_errno_are_those_of_the_real_functions() {
    if common::without_root() {
        return;
    }
    let probe = probe().to_str().unwrap();
    let ns = Netns::new();
    ns.sh("for i in 0 1 2; do ip link add veth130i$i type veth peer name p130i$i; done");
    let dir = tempfile::tempdir().unwrap();
    let stub = counting_stub(dir.path());

    let unhooked = run_ok(&mut plain(&ns.0, &[probe, "errno", "veth130"]));
    let hooked = run_ok(&mut preloaded(
        &ns.0,
        &stub,
        &[("OVS_AUTOATTACH_LOG", "debug")],
        &[probe, "errno", "veth130"],
    ));
    assert_eq!(
        hooked.stdout, unhooked.stdout,
        "with the library (left) and without"
    );
    // The comparison covered calls that started the tool, one per interposed path.
    let mut expected = [
        "veth130i0 (if_nametoindex)",
        "veth130i1 (if_indextoname)",
        "tap132i0 (ioctl TUNSETIFF)",
        "veth130i2 (rtnetlink)",
    ];
    let lines = started(&hooked.stderr);
    assert_eq!(lines.len(), expected.len(), "{}", hooked.stderr);
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.contains(want), "{line} should be about {want}");
    }
    assert!(common::wait_until(Duration::from_secs(5), || calls(
        dir.path()
    )
    .len()
        == 4));
    let mut got = calls(dir.path());
    got.sort();
    expected = [
        "--log syslog plug tap132i0",
        "--log syslog plug veth130i0",
        "--log syslog plug veth130i1",
        "--log syslog plug veth130i2",
    ];
    assert_eq!(got, expected);
    // Spot checks of the shared output, so that a probe printing nothing cannot pass.
    assert!(
        unhooked
            .stdout
            .contains("if_nametoindex(missing veth999i9)        ret=0 errno=19")
    );
    assert!(
        unhooked
            .stdout
            .contains("if_indextoname(bad index)                ret=NULL errno=6")
    );
    assert!(
        unhooked
            .stdout
            .contains("ioctl(/dev/null, TUNSETIFF)              ret=-1 errno=25")
    );
    assert!(
        unhooked
            .stdout
            .contains("ioctl(tun, TUNSETIFF, tap132i0)          ret=0 errno=4242")
    );
    assert!(
        unhooked
            .stdout
            .contains("sendto(rtnetlink, NEWLINK matching)      ret=32 errno=4242")
    );
}

/// Kills the stub left sleeping by the descriptor test, also when the test fails.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn fd_numbers(listing: &str) -> Vec<(u32, String)> {
    listing
        .lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_string()))
        })
        .collect()
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat text.
fn stat_field(stat: &str, n: usize) -> i32 {
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm
        .split_whitespace()
        .nth(n - 3)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_tool_inherits_no_descriptors_and_the_caller_keeps_no_zombie() {
    if common::without_root() {
        return;
    }
    let probe = probe().to_str().unwrap();
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // Records what it inherited, then stays around (as a slow tool would).
    let stub = stub(
        dir.path(),
        &format!(
            "ls -l /proc/$$/fd > {d}/fds\n\
             cat /proc/$$/stat > {d}/stat\n\
             echo \"args=$* LD_PRELOAD=${{LD_PRELOAD-unset}} CONFIG=${{OVS_AUTOATTACH_CONFIG-unset}}\" > {d}/env\n\
             echo $$ > {d}/pid\n\
             touch {d}/done\n\
             exec sleep 5\n"
        ),
    );
    let done = dir.path().join("done");
    let ran = run(&mut preloaded(
        &ns.0,
        &stub,
        &[("OVS_AUTOATTACH_CONFIG", "/nonexistent/config.yaml")],
        &[probe, "tapfd", "tap133i0", done.to_str().unwrap()],
    ));
    let stub_pid: Option<i32> = fs::read_to_string(dir.path().join("pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let _kill = KillOnDrop(stub_pid);
    assert!(ran.status.success(), "{}{}", ran.stdout, ran.stderr);
    let out = &ran.stdout;

    // The caller: the ioctl succeeded and returned at once although the tool runs for 5 s,
    // and neither right after the call nor later is there a child of the caller (the
    // intermediate process was reaped, the tool was never its child).
    let first = out.lines().next().unwrap_or_default();
    let fields: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(&fields[..3], ["ioctl", "ret", "0"], "{out}");
    let ms: f64 = fields[6].parse().unwrap();
    assert!(ms < 1000.0, "the caller waited {ms} ms: {out}");
    assert!(
        out.contains("done yes"),
        "the stub never ran: {out}{}",
        ran.stderr
    );
    assert_eq!(
        out.lines().filter(|l| *l == "children []").count(),
        2,
        "the caller has children: {out}"
    );
    let caller_sid: i32 = fields[10].parse().unwrap();

    // The tool's descriptors when it started: 0, 1, 2 on /dev/null (the caller's are files),
    // and the script bash reads itself from.
    let fds = fd_numbers(&fs::read_to_string(dir.path().join("fds")).unwrap());
    let standard: Vec<(u32, &str)> = fds
        .iter()
        .filter(|(fd, _)| *fd <= 2)
        .map(|(fd, target)| (*fd, target.as_str()))
        .collect();
    assert_eq!(
        standard,
        [(0, "/dev/null"), (1, "/dev/null"), (2, "/dev/null")],
        "{fds:?}"
    );
    for (fd, target) in &fds {
        assert!(
            *fd <= 2 || Path::new(target) == stub,
            "fd {fd} -> {target} leaked into the tool: {fds:?}"
        );
        assert!(!target.contains("tun"), "{fds:?}");
    }
    // And after its exec of sleep: exactly 0, 1, 2.
    let pid = stub_pid.expect("the stub wrote its pid");
    assert!(common::wait_until(Duration::from_secs(2), || {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    }));
    let mut now: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    now.sort();
    assert_eq!(now, [0, 1, 2]);
    for fd in now {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }

    // Signals reset (the caller ignored SIGINT and blocked SIGUSR1; read from the exec'd sleep,
    // since bash itself blocks and ignores some while it runs), a session of its own, the
    // environment passed on without LD_PRELOAD.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let signals: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("SigBlk:") || l.starts_with("SigIgn:"))
        .collect();
    assert_eq!(
        signals,
        ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]
    );
    let stat = fs::read_to_string(dir.path().join("stat")).unwrap();
    assert_ne!(
        stat_field(&stat, 6),
        caller_sid,
        "same session as the caller"
    );
    let env = fs::read_to_string(dir.path().join("env")).unwrap();
    assert_eq!(
        env.trim(),
        "args=--log syslog plug tap133i0 LD_PRELOAD=unset CONFIG=/nonexistent/config.yaml"
    );
}

/// The library's debug lines that report a refusal to start anything.
fn refused<'a>(stderr: &'a str, reason: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("ovs-autoattach-preload[") && l.contains(reason))
        .collect()
}

const ELSEWHERE: &str = "not started: this thread is not in the network and mount namespaces";

/// The probe's `ns MODE N`: a guest NIC looked up at home (`veth<N>i0`), a veth pair and a tap
/// created and looked up in every interposed way after the move elsewhere (`veth<N>i1`,
/// `tap<N>i1`), one more looked up back at home (`veth<N>i2`). Only the two at home start the
/// tool.
fn assert_inert_elsewhere(mode: &str, n: u32) {
    let probe = probe().to_str().unwrap();
    let ns = Netns::new();
    let other = Netns::new();
    ns.sh(&format!(
        "ip link add veth{n}i0 type veth peer name p{n}i0; ip link add veth{n}i2 type veth peer name p{n}i2"
    ));
    let dir = tempfile::tempdir().unwrap();
    let stub = counting_stub(dir.path());
    let netns = format!("/run/netns/{}", other.0);
    let n = n.to_string();
    let ran = run_ok(&mut preloaded(
        &ns.0,
        &stub,
        &[("OVS_AUTOATTACH_LOG", "debug")],
        &[probe, "ns", mode, &n, &netns],
    ));
    let where_ = if mode == "child" { "child" } else { mode };
    assert_eq!(
        ran.stdout,
        format!(
            "home: if_nametoindex(veth{n}i0) found\n\
             {where_}: created and looked up veth{n}i1 and tap{n}i1\n\
             back home: if_nametoindex(veth{n}i2) found\n"
        ),
        "{}",
        ran.stderr
    );
    let lines = started(&ran.stderr);
    assert_eq!(lines.len(), 2, "{}", ran.stderr);
    assert!(lines[0].contains(&format!("veth{n}i0 (if_nametoindex)")));
    assert!(lines[1].contains(&format!("veth{n}i2 (if_nametoindex)")));
    // Said once, for the first name elsewhere (the veth, from its creation request).
    let elsewhere = refused(&ran.stderr, ELSEWHERE);
    assert_eq!(elsewhere.len(), 1, "{}", ran.stderr);
    assert!(
        elsewhere[0].contains(&format!("veth{n}i1 (rtnetlink)")),
        "{}",
        ran.stderr
    );
    assert!(common::wait_until(Duration::from_secs(5), || calls(
        dir.path()
    )
    .len()
        == 2));
    // Anything started late would have shown up by now.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        calls(dir.path()),
        [
            format!("--log syslog plug veth{n}i0"),
            format!("--log syslog plug veth{n}i2")
        ]
    );
}

#[test]
fn inert_after_unshare_of_the_network_namespace() {
    if common::without_root() {
        return;
    }
    assert_inert_elsewhere("unshare-net", 150);
}

#[test]
fn inert_after_setns_into_another_network_namespace() {
    if common::without_root() {
        return;
    }
    assert_inert_elsewhere("setns", 151);
}

#[test]
fn inert_after_unshare_of_the_mount_namespace() {
    if common::without_root() {
        return;
    }
    assert_inert_elsewhere("unshare-mnt", 152);
}

/// What LXC's setup child does: a child of the preloaded process, in new network and mount
/// namespaces, creates and looks up guest NIC names.
#[test]
fn inert_in_a_child_with_new_network_and_mount_namespaces() {
    if common::without_root() {
        return;
    }
    assert_inert_elsewhere("child", 153);
}

/// A caller that is a child subreaper (`PR_SET_CHILD_SUBREAPER`, as service managers and
/// container runtimes are) would adopt the tool once the intermediate process exits: the library
/// starts nothing from it. The same calls without the flag start the tool twice, and the caller
/// gets no child and no `SIGCHLD` either.
#[test]
fn a_child_subreaper_gets_no_child_and_no_sigchld() {
    if common::without_root() {
        return;
    }
    let probe = probe().to_str().unwrap();
    let ns = Netns::new();
    for (set, n) in [("1", 160), ("0", 161)] {
        ns.sh(&format!("ip link add veth{n}i0 type veth peer name p{n}i0"));
        let dir = tempfile::tempdir().unwrap();
        // A tool that is still running while the caller polls for children.
        let stub = stub(
            dir.path(),
            &format!(
                "echo \"$*\" >> {}\nsleep 0.5\n",
                dir.path().join("calls").display()
            ),
        );
        let ran = run_ok(&mut preloaded(
            &ns.0,
            &stub,
            &[("OVS_AUTOATTACH_LOG", "debug")],
            &[probe, "subreaper", &n.to_string(), set, "1500"],
        ));
        // During the 1.5 s after the calls: no SIGCHLD, waitpid(-1, WNOHANG) always ECHILD,
        // waitid(P_ALL, __WALL) never a child, the children list always empty.
        assert_eq!(
            ran.stdout,
            format!(
                "subreaper {set} sigchld 0 waitpid_children 0 waitpid_errors 0 wall_children 0 \
                 listed 0\n"
            ),
            "{}",
            ran.stderr
        );
        let expected: Vec<String> = if set == "1" {
            let lines = refused(
                &ran.stderr,
                "not started: this process is a child subreaper",
            );
            assert_eq!(lines.len(), 1, "{}", ran.stderr);
            assert!(started(&ran.stderr).is_empty(), "{}", ran.stderr);
            vec![]
        } else {
            assert_eq!(started(&ran.stderr).len(), 2, "{}", ran.stderr);
            vec![
                format!("--log syslog plug veth{n}i0"),
                format!("--log syslog plug tap{n}i0"),
            ]
        };
        common::wait_until(Duration::from_secs(5), || {
            calls(dir.path()).len() == expected.len()
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(calls(dir.path()), expected, "subreaper {set}");
    }
}

/// LXC's hooks inherit the launcher's `LD_PRELOAD`, some of them in the container's setup
/// process: in any process with `LXC_HOOK_TYPE` set the library starts nothing; the same lookups
/// without it start the tool.
#[test]
fn inert_in_an_lxc_hook() {
    if common::without_root() {
        return;
    }
    let probe = probe().to_str().unwrap();
    let ns = Netns::new();
    ns.sh("ip link add veth170i0 type veth peer name p170i0");
    let dir = tempfile::tempdir().unwrap();
    let stub = counting_stub(dir.path());
    run_ok(&mut preloaded(
        &ns.0,
        &stub,
        &[("LXC_HOOK_TYPE", "mount")],
        &[probe, "loop", "veth170i0", "10"],
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert!(calls(dir.path()).is_empty(), "{:?}", calls(dir.path()));
    run_ok(&mut preloaded(
        &ns.0,
        &stub,
        &[],
        &[probe, "loop", "veth170i0", "10"],
    ));
    assert!(common::wait_until(Duration::from_secs(5), || !calls(
        dir.path()
    )
    .is_empty()));
    assert_eq!(calls(dir.path()), ["--log syslog plug veth170i0"]);
}
