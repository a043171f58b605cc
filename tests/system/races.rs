//! Races against a real Open vSwitch: OVS changing between the tool's read and its commit (a
//! slow ovsdb-server, played by a proxy in the switch's network namespace that holds chosen
//! OVSDB messages), and Proxmox's own `tap_plug` running beside `apply` and `plug` while the
//! guest's configuration lock is held.

use crate::common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{BIN, Ovs, text};

/// How long the proxy keeps a held message at least: a loaded ovsdb-server during a bulk start.
const DELAY: Duration = Duration::from_millis(1500);

/// How long the proxy waits for the test to release a held message, at most.
const HOLD_BOUND: Duration = Duration::from_secs(15);

/// The environment variable that turns [`proxy_process`] into the proxy: its specification.
const PROXY_ENV: &str = "OVS_AUTOATTACH_RACES_PROXY";

/// Where in a request's round trip the proxy holds it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    /// Before ovsdb-server sees the request.
    Request,
    /// After ovsdb-server answered it, before the tool gets the answer.
    Reply,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Request => "request",
            Stage::Reply => "reply",
        }
    }

    fn parse(name: &str) -> Stage {
        match name {
            "request" => Stage::Request,
            _ => Stage::Reply,
        }
    }
}

/// Holds the first `left` client requests that the matcher named `matches` (see [`matcher`])
/// accepts, at `stage`.
struct Rule {
    stage: Stage,
    matches: &'static str,
    left: usize,
}

fn matcher(name: &str) -> fn(&Value) -> bool {
    match name {
        "read" => is_read,
        "full_read" => is_full_read,
        "commit" => is_commit,
        other => panic!("no matcher {other}"),
    }
}

// --- The proxy process ---
//
// The tool refuses an OVSDB server whose process (`SO_PEERCRED`) is in another network
// namespace, so the proxy is a process of its own inside the switch's namespace: this test
// binary again, running [`proxy_process`]. It talks to the test through its stdin and stdout,
// one line each (after [`MARK`]): `READY`, `REQUEST <json>` for every request the tool sends, `HELD <json>` for a
// held message, `SYNC` in answer to `sync`; `release` lets the held message go, and the end of
// stdin ends the process.

/// A rule as the proxy process applies it: stage, matcher, how many more to hold.
type Live = (Stage, fn(&Value) -> bool, usize);

/// The proxy process's side: what it holds.
#[derive(Default)]
struct State {
    rules: Vec<Live>,
    /// The requests whose reply is to be held, by id.
    replies: BTreeMap<String, Value>,
}

struct Shared {
    state: Mutex<State>,
    released: Mutex<Receiver<()>>,
}

/// What starts a protocol line; libtest may have written part of a line before it.
const MARK: &str = "@@proxy ";

/// One protocol line on stdout.
fn emit(kind: &str, value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{MARK}{kind} {value}");
    let _ = out.flush();
}

impl Shared {
    /// Decides whether `msg`, going up (tool → server) or down, is held; holds it if so.
    fn pass(&self, up: bool, msg: &Value) {
        let held = {
            let mut st = self.state.lock().unwrap();
            let State { rules, replies } = &mut *st;
            if up {
                if msg.get("method").is_some() {
                    emit("REQUEST", msg);
                }
                match rules
                    .iter_mut()
                    .find(|(_, matches, left)| *left > 0 && matches(msg))
                {
                    Some((stage, _, left)) => {
                        *left -= 1;
                        match stage {
                            Stage::Request => Some((Stage::Request, msg.clone())),
                            Stage::Reply => {
                                replies.insert(msg["id"].to_string(), msg.clone());
                                None
                            }
                        }
                    }
                    None => None,
                }
            } else if msg.get("method").is_none() {
                msg.get("id")
                    .and_then(|id| replies.remove(&id.to_string()))
                    .map(|request| (Stage::Reply, request))
            } else {
                None
            }
        };
        if let Some((stage, request)) = held {
            let started = Instant::now();
            let released = self.released.lock().unwrap();
            while released.try_recv().is_ok() {}
            emit(
                "HELD",
                &json!({"stage": stage.name(), "request": request, "message": msg}),
            );
            let _ = released.recv_timeout(HOLD_BOUND);
            std::thread::sleep(DELAY.saturating_sub(started.elapsed()));
        }
    }
}

/// Copies whole JSON messages from `from` to `to`, passing each through [`Shared::pass`].
fn pump(mut from: UnixStream, mut to: UnixStream, up: bool, shared: &Shared) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut done = 0;
        {
            let mut stream = serde_json::Deserializer::from_slice(&pending).into_iter::<Value>();
            loop {
                match stream.next() {
                    Some(Ok(msg)) => {
                        let end = stream.byte_offset();
                        shared.pass(up, &msg);
                        if to.write_all(&pending[done..end]).is_err() {
                            break 'read;
                        }
                        done = end;
                    }
                    // Half a message: wait for the rest.
                    Some(Err(e)) if e.is_eof() => break,
                    // Whitespace only, or bytes that are no JSON: forwarded as they are.
                    _ => {
                        if to.write_all(&pending[done..]).is_err() {
                            break 'read;
                        }
                        done = pending.len();
                        break;
                    }
                }
            }
        }
        pending.drain(..done);
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The proxy itself, when [`Proxy::start`] runs this binary with [`PROXY_ENV`] set; otherwise
/// nothing.
#[test]
#[ignore = "the OVSDB proxy of the race tests, which run it in the switch's network namespace"]
fn proxy_process() {
    if common::without_root() {
        return;
    }
    let Ok(spec) = std::env::var(PROXY_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let rules = spec["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                Stage::parse(r["stage"].as_str().unwrap()),
                matcher(r["matches"].as_str().unwrap()),
                r["left"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    let (release, released) = channel();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            rules,
            ..State::default()
        }),
        released: Mutex::new(released),
    });
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line.as_deref() {
                Ok("release") => {
                    let _ = release.send(());
                }
                Ok("sync") => emit("SYNC", &Value::Null),
                _ => break,
            }
        }
        // The test is done with the proxy (or gone).
        std::process::exit(0);
    });
    let upstream = PathBuf::from(spec["upstream"].as_str().unwrap());
    let listener = UnixListener::bind(spec["listen"].as_str().unwrap()).unwrap();
    emit("READY", &Value::Null);
    for client in listener.incoming() {
        let client = client.unwrap();
        let server = UnixStream::connect(&upstream).unwrap();
        for (from, to, up) in [
            (
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                true,
            ),
            (server, client, false),
        ] {
            let shared = shared.clone();
            std::thread::spawn(move || pump(from, to, up, &shared));
        }
    }
}

// --- The test's side of the proxy ---

/// A message the proxy holds until [`Held::release`] (or [`HOLD_BOUND`]), and at least
/// [`DELAY`].
struct Held {
    stage: Stage,
    /// The request held, or whose reply is held.
    request: Value,
    /// The message held: the request, or its reply.
    message: Value,
    control: Arc<Mutex<ChildStdin>>,
}

impl Held {
    fn release(self) {
        let _ = writeln!(self.control.lock().unwrap(), "release");
    }
}

/// A unix-socket proxy in front of ovsdb-server, in its network namespace, that forwards every
/// JSON-RPC message unchanged, one whole message at a time, and holds the ones its rules pick.
struct Proxy {
    path: PathBuf,
    child: Child,
    control: Arc<Mutex<ChildStdin>>,
    held: Receiver<Held>,
    synced: Receiver<()>,
    requests: Arc<Mutex<Vec<Value>>>,
    reader: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens at `path`, forwarding to the ovsdb-server of `ovs` (`ovs.db()` is `unix:PATH`).
    fn start(path: &Path, ovs: &Ovs, rules: Vec<Rule>) -> Proxy {
        let upstream = ovs
            .db()
            .strip_prefix("unix:")
            .expect("the harness's OVSDB is a unix socket")
            .to_string();
        let spec = json!({
            "listen": path,
            "upstream": upstream,
            "rules": rules.iter().map(|r| json!({"stage": r.stage.name(), "matches": r.matches, "left": r.left})).collect::<Vec<_>>(),
        });
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ovs.ns])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "races::proxy_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROXY_ENV, spec.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let control = Arc::new(Mutex::new(child.stdin.take().unwrap()));
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready) = channel();
        let (held_tx, held) = channel();
        let (sync_tx, synced) = channel();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (control, requests) = (control.clone(), requests.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // libtest's own lines carry no mark.
                    let Some(at) = line.find(MARK) else {
                        continue;
                    };
                    let line = &line[at + MARK.len()..];
                    let (kind, value) = line.split_once(' ').unwrap_or((line, "null"));
                    let Ok(value) = serde_json::from_str::<Value>(value) else {
                        continue;
                    };
                    match kind {
                        "READY" => {
                            let _ = ready_tx.send(());
                        }
                        "REQUEST" => requests.lock().unwrap().push(value),
                        "HELD" => {
                            let _ = held_tx.send(Held {
                                stage: Stage::parse(value["stage"].as_str().unwrap_or_default()),
                                request: value["request"].clone(),
                                message: value["message"].clone(),
                                control: control.clone(),
                            });
                        }
                        "SYNC" => {
                            let _ = sync_tx.send(());
                        }
                        _ => {}
                    }
                }
            })
        };
        let mut proxy = Proxy {
            path: path.to_path_buf(),
            child,
            control,
            held,
            synced,
            requests,
            reader: Some(reader),
        };
        if ready.recv_timeout(Duration::from_secs(10)).is_err() {
            let status = proxy.child.try_wait();
            panic!("the OVSDB proxy did not start ({status:?})");
        }
        proxy
    }

    /// The next held message; panics when none comes within `within`, with what `run` said
    /// and what the proxy forwarded.
    fn next_held(&self, within: Duration, run: &Running) -> Held {
        self.held.recv_timeout(within).unwrap_or_else(|e| {
            panic!(
                "the proxy held no OVSDB message within {within:?} ({e}); requests {:#?}; {} said:\n{}",
                self.requests(),
                run.what,
                std::fs::read_to_string(&run.out).unwrap_or_default()
            )
        })
    }

    /// Every request the tool sent through the proxy so far.
    fn requests(&self) -> Vec<Value> {
        let asked = writeln!(self.control.lock().unwrap(), "sync");
        assert!(
            asked.is_ok() && self.synced.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the OVSDB proxy did not answer"
        );
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The operations of a `transact` request (none for anything else).
fn ops(msg: &Value) -> &[Value] {
    match (msg["method"].as_str(), msg["params"].as_array()) {
        (Some("transact"), Some(params)) => params.get(1..).unwrap_or(&[]),
        _ => &[],
    }
}

/// A read of the bridges, then ports: `apply`'s whole snapshot and `plug`'s narrow one both start
/// with a `select` of every Bridge row with its uuid. (The switch check every run makes first
/// selects the bridge names alone, and is no read of the state.)
fn is_read(msg: &Value) -> bool {
    ops(msg).first().is_some_and(|op| {
        op["op"] == "select"
            && op["table"] == "Bridge"
            && op["where"] == json!([])
            && op["columns"]
                .as_array()
                .is_some_and(|c| c.contains(&json!("_uuid")))
    })
}

/// `apply`'s snapshot: every Bridge row with its ports.
fn is_full_read(msg: &Value) -> bool {
    is_read(msg)
        && ops(msg)[0]["columns"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("ports")))
}

/// A commit: every transaction that changes something bumps `next_cfg`.
fn is_commit(msg: &Value) -> bool {
    ops(msg)
        .iter()
        .any(|op| op["op"] == "mutate" && op["table"] == "Open_vSwitch")
}

/// Writes the tool's configuration with a private Proxmox lock directory (and `extra` lines);
/// returns the QEMU lock file of guest `vmid`.
fn configure(ovs: &Ovs, vmid: u32, extra: &str) -> PathBuf {
    let locks = ovs.dir.join("lock");
    for sub in ["qemu-server", "lxc"] {
        std::fs::create_dir_all(locks.join(sub)).unwrap();
    }
    ovs.write_config(&format!("pve_lock_dir: {}\n{extra}", locks.display()));
    locks.join(format!("qemu-server/lock-{vmid}.conf"))
}

/// A child whose stdout and stderr go to one file, read back by [`Running::finish`].
struct Running {
    child: Child,
    out: PathBuf,
    what: String,
}

fn spawn(mut cmd: Command, out: PathBuf, what: &str) -> Running {
    let file = File::create(&out).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    Running {
        child: cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}")),
        out,
        what: what.to_string(),
    }
}

/// A test that fails leaves no run behind.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    /// Waits at most `within` (then panics, and the drop kills it); returns the exit code and
    /// the output.
    fn finish(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let out = std::fs::read_to_string(&self.out).unwrap_or_default();
                return (status.code(), out);
            }
            if Instant::now() > deadline {
                let out = std::fs::read_to_string(&self.out).unwrap_or_default();
                panic!("{} still ran after {within:?}:\n{out}", self.what);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn spawn_tool(ovs: &Ovs, args: &[&str], out: PathBuf) -> Running {
    spawn(ovs.tool_cmd(args), out, &format!("ovs-autoattach {args:?}"))
}

/// What pve-common's `tap_plug` runs for a NIC with `tag` (and no trunks) on `bridge`:
/// `del-port` (errors ignored), then `add-port` without `--may-exist`. Exit code 42 means the
/// `add-port` failed.
fn tap_plug_script(ovs: &Ovs, iface: &str, bridge: &str, tag: u16) -> String {
    let vsctl = format!("ovs-vsctl --db={} --timeout=20", ovs.db());
    format!(
        "ip link set {iface} up promisc on mtu 1500\n\
         {vsctl} del-port {iface} 2>/dev/null || true\n\
         {vsctl} -- add-port {bridge} {iface} tag={tag} -- set Interface {iface} mtu_request=1500 || exit 42\n"
    )
}

/// The VLAN states (`tag trunks vlan_mode`) a monitor saw for `port`, with the action, leaving
/// out the `old` half of each modification.
fn history(rows: &[(String, String, String)], port: &str) -> Vec<(String, String)> {
    rows.iter()
        .filter(|(action, name, _)| name == port && action != "old")
        .map(|(action, _, vlan)| (action.clone(), vlan.clone()))
        .collect()
}

/// With the proxy holding apply's OVSDB read at `stage`, Proxmox starts guest 150: its tap
/// appears and `tap_plug` adds the port (not the tool's). The port must survive the run: not
/// pruned, never deleted, still on its bridge with its tag. A stale port of a stopped guest
/// (`tap152i0`, link gone) is pruned by the same run: the read was acted upon.
fn port_added_during_a_slow_read(ovs: &Ovs, stage: Stage) {
    ovs.sh("ip link del tap150i0 2>/dev/null || true");
    ovs.vsctl(&[
        "--if-exists",
        "del-port",
        "tap150i0",
        "--",
        "--if-exists",
        "del-port",
        "tap152i0",
        "--",
        "add-port",
        "ovsbr0",
        "tap152i0",
        "tag=6",
    ]);
    let proxy = Proxy::start(
        &ovs.dir.join(format!("proxy-{stage:?}.sock")),
        ovs,
        vec![Rule {
            stage,
            matches: "full_read",
            left: 1,
        }],
    );
    configure(ovs, 150, &format!("ovsdb: unix:{}\n", proxy.path.display()));
    let monitor = ovs.monitor_ports();
    let started = Instant::now();
    let apply = spawn_tool(
        ovs,
        &["-v", "apply"],
        ovs.dir.join(format!("apply-{stage:?}.out")),
    );
    let held = proxy.next_held(Duration::from_secs(10), &apply);
    assert_eq!(held.stage, stage);
    assert!(is_full_read(&held.request));
    if stage == Stage::Reply {
        // ovsdb-server answered already: its snapshot predates the port.
        assert_eq!(held.message["id"], held.request["id"]);
        assert!(!held.message["result"].to_string().contains("tap150i0"));
    }
    // Proxmox starts the guest: the tap, then its plug, straight into the real database.
    ovs.sh("ip tuntap add tap150i0 mode tap");
    let plugged = ovs.try_sh(&tap_plug_script(ovs, "tap150i0", "ovsbr0", 5));
    assert!(
        plugged.status.success(),
        "Proxmox's plug failed: {}",
        text(&plugged.stderr)
    );
    held.release();
    let (code, out) = apply.finish(Duration::from_secs(25));
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{out}");
    assert!(took >= DELAY, "the read was held ({took:?})");
    assert_eq!(
        ovs.bridge_of("tap150i0").as_deref(),
        Some("ovsbr0"),
        "{out}"
    );
    assert_eq!(ovs.vlan("tap150i0"), "5 [] []");
    assert_eq!(
        ovs.bridge_of("tap152i0"),
        None,
        "the stale port is pruned: {out}"
    );
    let rows = monitor.rows();
    assert_eq!(
        history(&rows, "tap150i0"),
        [("insert".to_string(), "5 [] []".to_string())],
        "tap150i0 was added once (by Proxmox) and never deleted or changed: {out}"
    );
    let reads = proxy.requests().iter().filter(|m| is_full_read(m)).count();
    match stage {
        // The server read after the port was added: nothing to do for it, one read.
        Stage::Request => {
            assert_eq!(reads, 1, "{out}");
            assert!(!out.contains("OVSDB refused the transaction"), "{out}");
        }
        // The snapshot predates the port, the links do not: the tool meant to attach the tap,
        // its guard on the name being free refused, and the second read saw Proxmox's port.
        Stage::Reply => {
            assert_eq!(reads, 2, "{out}");
            assert!(
                out.contains("OVSDB refused the transaction")
                    && out.contains("reading OVS again (attempt 1)"),
                "{out}"
            );
        }
    }
    eprintln!("{stage:?}: apply took {took:?}");
}

/// A port Proxmox adds while `apply`'s OVSDB read is in flight survives the run: with the read
/// held for 1.5 s after ovsdb-server answered it (the snapshot lacks the port, the link dump
/// that follows has the tap), and with the read held before ovsdb-server saw it.
#[test]
fn a_port_added_during_a_slow_read_survives() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest(
        "qemu-server",
        150,
        "net0: virtio=BC:24:11:00:01:50,bridge=ovsbr0,tag=5\n",
    );
    ovs.guest(
        "qemu-server",
        152,
        "net0: virtio=BC:24:11:00:01:52,bridge=ovsbr0,tag=6\n",
    );
    port_added_during_a_slow_read(&ovs, Stage::Reply);
    port_added_during_a_slow_read(&ovs, Stage::Request);
}

/// What Proxmox does to the port while the tool's commit is held.
#[derive(Clone, Copy, Debug)]
enum Meanwhile {
    /// Someone sets the configured tag (20) on the tool's port, in place: a fresh decision has
    /// nothing to do.
    SameTag,
    /// The configuration changes to tag 30 and the same row is set to 30 in place (ifupdown2
    /// replaying a stanza's `ovs_options`, another run): without the guard, the stale update of
    /// that row would put the guest back in VLAN 20.
    InPlace,
    /// A live `qm set --net0 ...,tag=30`: the configuration says 30, and `tap_plug` re-plugs
    /// the port in VLAN 30 (a new row, not the tool's).
    Replug,
}

/// The tool's port `tap100i0` is in VLAN 10, the configuration says 20: the tool's commit
/// (tag 10 → 20) is held for 1.5 s before ovsdb-server sees it while `meanwhile` happens. The
/// guard on the row as read aborts the commit, the retry reads again (the configuration too)
/// and finds nothing to do; the port's history (an `ovsdb-client monitor`) holds the test's own
/// changes only, never the stale plan landing.
fn tag_changed_between_read_and_commit(
    ovs: &Ovs,
    case: usize,
    args: &[&str],
    meanwhile: Meanwhile,
) {
    ovs.guest(
        "qemu-server",
        100,
        "net0: virtio=BC:24:11:00:01:00,bridge=ovsbr0,tag=20\n",
    );
    ovs.vsctl(&[
        "--if-exists",
        "del-port",
        "tap100i0",
        "--",
        "add-port",
        "ovsbr0",
        "tap100i0",
        "tag=10",
        "--",
        "set",
        "Port",
        "tap100i0",
        "external_ids:owner=ovs-autoattach",
    ]);
    let proxy = Proxy::start(
        &ovs.dir.join(format!("proxy{case}.sock")),
        ovs,
        vec![Rule {
            stage: Stage::Request,
            matches: "commit",
            left: 1,
        }],
    );
    configure(ovs, 100, &format!("ovsdb: unix:{}\n", proxy.path.display()));
    let monitor = ovs.monitor_ports();
    let mut cmd = vec!["-v"];
    cmd.extend_from_slice(args);
    let t = Instant::now();
    let tool = spawn_tool(ovs, &cmd, ovs.dir.join(format!("tool{case}.out")));
    let held = proxy.next_held(Duration::from_secs(10), &tool);
    // The held commit is the stale plan: tag 20 on the row read in VLAN 10, guarded by that row.
    assert_eq!(held.stage, Stage::Request);
    let stale = ops(&held.message).iter().any(|op| {
        op["op"] == "update" && op["table"] == "Port" && op["row"]["tag"] == json!(["set", [20]])
    });
    let guarded = ops(&held.message).iter().any(|op| {
        op["op"] == "wait"
            && op["table"] == "Port"
            && op["where"]
                .as_array()
                .is_some_and(|w| w.contains(&json!(["tag", "==", ["set", [10]]])))
    });
    assert!(stale && guarded, "{:#}", held.message);
    let expected_tag = match meanwhile {
        Meanwhile::SameTag => {
            ovs.vsctl(&["set", "Port", "tap100i0", "tag=20"]);
            "20 [] []"
        }
        Meanwhile::InPlace => {
            ovs.guest(
                "qemu-server",
                100,
                "net0: virtio=BC:24:11:00:01:00,bridge=ovsbr0,tag=30\n",
            );
            ovs.vsctl(&["set", "Port", "tap100i0", "tag=30"]);
            "30 [] []"
        }
        Meanwhile::Replug => {
            ovs.guest(
                "qemu-server",
                100,
                "net0: virtio=BC:24:11:00:01:00,bridge=ovsbr0,tag=30\n",
            );
            let plugged = ovs.try_sh(&tap_plug_script(ovs, "tap100i0", "ovsbr0", 30));
            assert!(plugged.status.success(), "{}", text(&plugged.stderr));
            "30 [] []"
        }
    };
    held.release();
    let (code, out) = tool.finish(Duration::from_secs(25));
    eprintln!("{args:?} {meanwhile:?}: took {:?}", t.elapsed());
    assert_eq!(code, Some(0), "{args:?} {meanwhile:?}: {out}");
    assert!(
        out.contains("OVSDB refused the transaction")
            && out.contains("reading OVS again (attempt 1)"),
        "{args:?} {meanwhile:?}: the guard aborted the stale commit: {out}"
    );
    assert!(!out.contains("attempt 2"), "{args:?} {meanwhile:?}: {out}");
    let requests = proxy.requests();
    let commits = requests.iter().filter(|m| is_commit(m)).count();
    let reads = requests.iter().filter(|m| is_read(m)).count();
    assert_eq!(
        (reads, commits),
        (2, 1),
        "{args:?} {meanwhile:?}: a second read, and nothing left to commit after it: {out}"
    );
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("ovsbr0"));
    assert_eq!(ovs.vlan("tap100i0"), expected_tag, "{args:?} {meanwhile:?}");
    let seen = history(&monitor.rows(), "tap100i0");
    let v = |action: &str, vlan: &str| (action.to_string(), vlan.to_string());
    let want = match meanwhile {
        Meanwhile::SameTag => vec![v("initial", "10 [] []"), v("new", "20 [] []")],
        Meanwhile::InPlace => vec![v("initial", "10 [] []"), v("new", "30 [] []")],
        Meanwhile::Replug => vec![
            v("initial", "10 [] []"),
            v("delete", "10 [] []"),
            v("insert", "30 [] []"),
        ],
    };
    assert_eq!(
        seen, want,
        "{args:?} {meanwhile:?}: only the test's own changes: {out}"
    );
}

/// A tag changed on the port between the tool's read and its commit is not overwritten, by
/// `apply` nor by `plug`: the commit's guard aborts, the retry reads the new value.
#[test]
fn a_tag_changed_between_read_and_commit_is_not_overwritten() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.tap("tap100i0");
    let mut case = 0;
    for args in [&["apply"][..], &["plug", "tap100i0"]] {
        for meanwhile in [Meanwhile::SameTag, Meanwhile::InPlace, Meanwhile::Replug] {
            tag_changed_between_read_and_commit(&ovs, case, args, meanwhile);
            case += 1;
        }
    }
}

/// Reproducible offsets: a seeded linear congruential generator (`RACES_SEED` replays a run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// How many Proxmox operations on guest 100 [`proxmox_plug_never_fails_beside_apply_and_plug`]
/// races: starts, and every fourth a live VLAN change.
const STARTS: u64 = 32;

/// Guest 100's configuration with `tag`.
fn guest_100(tag: u16) -> String {
    format!("net0: virtio=BC:24:11:00:01:00,bridge=ovsbr0,tag={tag}\n")
}

/// Proxmox works on guest 100 again and again, holding its configuration lock as `qm start` and
/// `qm set` do (`flock -x` on `lock-100.conf`):
/// - a start: a pause (volumes, the pre-start hookscript, the QEMU command line), the tap,
///   `tap_plug` (`del-port`, then `add-port` without `--may-exist`), and the post-start
///   hookscript's `plug --lock-held`. Before it the guest stopped: its tap went, and its port
///   went too, stayed behind, or stayed behind marked as the tool's;
/// - every fourth time a live `qm set --net0 ...,tag=N` instead: the running tap is re-plugged
///   in the new VLAN, then the configuration is written.
///
/// Beside each, an `apply` (another guest's hook, a reload) and a `plug` (the preload library
/// seeing the tap) run at stepped and random offsets. Proxmox's `add-port` never fails, every
/// run exits 0, and afterwards the port is on its bridge in the configured VLAN.
#[test]
fn proxmox_plug_never_fails_beside_apply_and_plug() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    let mut tag = 10;
    ovs.guest("qemu-server", 100, &guest_100(tag));
    let lock = configure(&ovs, 100, "");
    let seed = std::env::var("RACES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("RACES_SEED={seed}");
    let mut rng = Lcg(seed);
    let config = ovs.config_path().display().to_string();
    let guest_file = ovs.dir.join("pve/qemu-server/100.conf");
    let started = Instant::now();
    let (mut busy, mut tool_runs) = (0, 0);
    for i in 0..STARTS {
        let pause = rng.below(40);
        let script = if i % 4 == 3 {
            tag = if tag == 10 { 12 } else { 10 };
            format!(
                "sleep 0.{pause:03}\n{plug}printf '%s' '{conf}' > {file}.tmp\nmv {file}.tmp {file}\n",
                plug = tap_plug_script(&ovs, "tap100i0", "ovsbr0", tag),
                conf = guest_100(tag),
                file = guest_file.display(),
            )
        } else {
            // The guest stops.
            ovs.sh("ip link del tap100i0 2>/dev/null || true");
            match i % 4 {
                0 => {
                    ovs.vsctl(&["--if-exists", "del-port", "tap100i0"]);
                }
                1 => {}
                _ => {
                    ovs.vsctl(&[
                        "set",
                        "Port",
                        "tap100i0",
                        "external_ids:owner=ovs-autoattach",
                    ]);
                }
            }
            format!(
                "sleep 0.{pause:03}\nip tuntap add tap100i0 mode tap\n{plug}{BIN} --config {config} -v plug --lock-held tap100i0 || exit 43\n",
                plug = tap_plug_script(&ovs, "tap100i0", "ovsbr0", tag),
            )
        };
        let mut start = Command::new("ip");
        start
            .args(["netns", "exec", &ovs.ns, "flock", "-x"])
            .arg(&lock)
            .args(["bash", "-ec", &script]);
        // The apply sweeps the window step by step, the plug lands anywhere in it.
        let mut runs: Vec<(u64, Vec<&str>)> = vec![
            (i * 200 / STARTS, vec!["-v", "apply"]),
            (rng.below(200), vec!["-v", "plug", "tap100i0"]),
        ];
        runs.sort_by_key(|(at, _)| *at);
        let t0 = Instant::now();
        let proxmox = spawn(
            start,
            ovs.dir.join(format!("start{i}.out")),
            "Proxmox's work on guest 100",
        );
        let mut tools = Vec::new();
        for (n, (at, args)) in runs.iter().enumerate() {
            std::thread::sleep(Duration::from_millis(*at).saturating_sub(t0.elapsed()));
            tools.push((
                *at,
                spawn_tool(&ovs, args, ovs.dir.join(format!("tool{i}-{n}.out"))),
            ));
        }
        let (code, out) = proxmox.finish(Duration::from_secs(20));
        assert_eq!(
            code,
            Some(0),
            "step {i} (seed {seed}): Proxmox failed (42: its add-port, 43: the post-start plug):\n{out}"
        );
        for (at, run) in tools {
            let what = run.what.clone();
            let (code, out) = run.finish(Duration::from_secs(20));
            tool_runs += 1;
            assert_eq!(
                code,
                Some(0),
                "step {i} (seed {seed}), {what} at {at} ms:\n{out}"
            );
            if out.contains("Proxmox is working on guest 100") {
                busy += 1;
            }
        }
        assert_eq!(
            ovs.bridge_of("tap100i0").as_deref(),
            Some("ovsbr0"),
            "step {i} (seed {seed})"
        );
        assert_eq!(
            ovs.vlan("tap100i0"),
            format!("{tag} [] []"),
            "step {i} (seed {seed})"
        );
    }
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("ovsbr0"));
    assert_eq!(ovs.vlan("tap100i0"), format!("{tag} [] []"));
    eprintln!(
        "{STARTS} starts and live changes, {tool_runs} tool runs beside them, {busy} of which found the guest's lock held; {:?}",
        started.elapsed()
    );
    assert!(
        busy > 0,
        "no run ever met Proxmox at work: the race was not exercised"
    );
}

/// While Proxmox's start worker holds the guest's lock (as during the post-start hookscript),
/// a plain `plug` of a NIC whose port is missing (the preload library's) leaves it to Proxmox,
/// `apply` too; `plug --lock-held` (the hookscript's) attaches it, and so does the real
/// hookscript for the guest's other NIC.
#[test]
fn the_hookscript_plug_acts_while_its_caller_holds_the_lock() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest(
        "qemu-server",
        100,
        "net0: virtio=BC:24:11:00:01:00,bridge=ovsbr0,tag=10\nnet1: virtio=BC:24:11:00:01:01,bridge=ovsbr0,tag=11\n",
    );
    ovs.tap("tap100i0");
    ovs.tap("tap100i1");
    let lock = configure(&ovs, 100, "");
    let held = File::create(&lock).unwrap();
    held.lock().unwrap();
    for args in [&["-v", "plug", "tap100i0"][..], &["-v", "apply"]] {
        let out = ovs.tool_ok(args);
        assert!(
            out.contains("Proxmox is working on guest 100"),
            "{args:?}: {out}"
        );
        assert_eq!(ovs.bridge_of("tap100i0"), None, "{args:?}: {out}");
        assert_eq!(ovs.bridge_of("tap100i1"), None, "{args:?}: {out}");
    }
    let out = ovs.tool_ok(&["-v", "plug", "--lock-held", "tap100i0"]);
    assert_eq!(
        ovs.bridge_of("tap100i0").as_deref(),
        Some("ovsbr0"),
        "{out}"
    );
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
    assert_eq!(ovs.owner("tap100i0").as_deref(), Some("ovs-autoattach"));
    assert_eq!(ovs.bridge_of("tap100i1"), None, "plug touches its NIC only");
    // The hookscript itself, in post-start, with the lock still held.
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/ovs-autoattach-hookscript");
    let out = common::run(
        Command::new("ip")
            .args(["netns", "exec", &ovs.ns, "env"])
            .arg(format!("OVS_AUTOATTACH_BIN={BIN}"))
            .arg(format!(
                "OVS_AUTOATTACH_CONFIG={}",
                ovs.config_path().display()
            ))
            .arg(hook)
            .args(["100", "post-start"]),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert_eq!(
        ovs.bridge_of("tap100i1").as_deref(),
        Some("ovsbr0"),
        "{all}"
    );
    assert_eq!(ovs.vlan("tap100i1"), "11 [] []");
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
    held.unlock().unwrap();
}
