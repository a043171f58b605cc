//! Traffic mirrors from proxmox-ovs-mirror's rules file, against a real Open vSwitch and a real
//! ifupdown2: which mirrors `apply` creates, real mirrored frames seen with tcpdump, what
//! survives `ifreload -a`, `ifdown`/`ifup` of a bridge and a guest restart, ownership, the
//! promiscuous flag, and that a run with nothing to do commits nothing.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Ovs, text};
use serde_json::Value;

/// The rules file of these tests, in the seed tool's format: a physical SPAN port (a veth
/// standing in for `eno12419`) mirrored to a container and, one direction only, to a VM; a
/// guest's NIC mirrored to another guest; a rule whose destination guest is not running; and a
/// bad line.
const RULES: &str = "\
# BRIDGE  SOURCE_PORT  DEST_VMID  DEST_NIC_INDEX  [OPTIONS]
vmbr1  eno12419  300  0
vmbr1  eno12419  100  1  select=src

# VM-to-VM: guest 200's net0 to guest 201's net0
vmbr1  vm200:0   201  0
vmbr1  eno12419  400  0
vmbr1  eno12419  100  2  mode=span
";

/// The mirrors [`RULES`] asks for, with the port that is their source and their output, and
/// whether the source goes into `select_dst_port` too.
const MIRRORS: [(&str, &str, &str, bool); 3] = [
    (
        "mirror_vmbr1_eno12419_to_vm300i0",
        "eno12419",
        "veth300i0",
        true,
    ),
    (
        "mirror_vmbr1_eno12419_to_vm100i1",
        "eno12419",
        "tap100i1",
        false,
    ),
    (
        "mirror_vmbr1_veth200i0_to_vm201i0",
        "veth200i0",
        "veth201i0",
        true,
    ),
];

/// The test host: bridge `vmbr1` with the SPAN port `eno12419` (its peer in a namespace that
/// stands for the switch), VM 100 (a tap), containers 200, 201 and 300 (veths whose peers are in
/// namespaces of their own), and VM 400, configured but not running.
struct Host {
    ovs: Ovs,
    /// Namespace and device of each far end: the switch, and guests 200, 201 and 300.
    span: (String, String),
    g200: (String, String),
    g201: (String, String),
    g300: (String, String),
}

fn host() -> Host {
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    ovs.guest(
        "qemu-server",
        100,
        "net0: virtio=BC:24:11:00:01:00,bridge=ovsbr0\nnet1: virtio=BC:24:11:00:01:01,bridge=vmbr1\n",
    );
    for vmid in [200, 201, 300] {
        ovs.guest(
            "lxc",
            vmid,
            "net0: name=eth0,bridge=vmbr1,hwaddr=BC:24:11:00:02:00,type=veth\n",
        );
    }
    ovs.guest("qemu-server", 400, "net0: virtio,bridge=vmbr1\n");
    ovs.tap("tap100i1");
    let peers = ["veth200i0", "veth201i0", "veth300i0"].map(|n| ovs.veth(n));
    let span = ovs.veth("eno12419");
    ovs.vsctl(&["add-port", "vmbr1", "eno12419"]);
    std::fs::write(ovs.mirrors_path(), RULES).unwrap();
    let ns = |peer: &String, addr: &str| (ovs.guest_ns(peer, addr), peer.clone());
    Host {
        g200: ns(&peers[0], "10.88.0.3/24"),
        span: ns(&span, "10.88.0.1/24"),
        g201: ns(&peers[1], "10.99.1.1/24"),
        g300: ns(&peers[2], "10.99.3.1/24"),
        ovs,
    }
}

// --- the oracle: ovs-vsctl ---

/// A mirror as `ovs-vsctl list Mirror` shows it, ports by name.
#[derive(Debug, PartialEq)]
struct Row {
    bridge: Option<String>,
    src: Vec<String>,
    dst: Vec<String>,
    out: Vec<String>,
    select_all: bool,
    external_ids: BTreeMap<String, String>,
    select_vlan: Vec<i64>,
    output_vlan: Option<i64>,
}

fn list(ovs: &Ovs, table: &str, columns: &str) -> Vec<Vec<Value>> {
    let out = ovs.vsctl(&[
        "--format=json",
        "--data=json",
        &format!("--columns={columns}"),
        "list",
        table,
    ]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect()
}

/// The elements of an OVSDB set (or bare atom).
fn items(v: &Value) -> Vec<Value> {
    match v.as_array() {
        Some(a) if a[0] == "set" => a[1].as_array().unwrap().clone(),
        _ => vec![v.clone()],
    }
}

fn uuid(v: &Value) -> String {
    v[1].as_str().unwrap().to_string()
}

/// Every mirror by name.
fn mirrors(ovs: &Ovs) -> BTreeMap<String, Row> {
    let ports: BTreeMap<String, String> = list(ovs, "Port", "_uuid,name")
        .iter()
        .map(|r| (uuid(&r[0]), r[1].as_str().unwrap().to_string()))
        .collect();
    let mut holder = BTreeMap::new();
    for b in list(ovs, "Bridge", "name,mirrors") {
        for m in items(&b[1]) {
            holder.insert(uuid(&m), b[0].as_str().unwrap().to_string());
        }
    }
    // A set's order is the server's: by name here.
    let names = |v: &Value| -> Vec<String> {
        let mut names: Vec<String> = items(v).iter().map(|u| ports[&uuid(u)].clone()).collect();
        names.sort();
        names
    };
    list(
        ovs,
        "Mirror",
        "_uuid,name,select_src_port,select_dst_port,output_port,select_all,external_ids,select_vlan,output_vlan",
    )
    .iter()
    .map(|r| {
        let external_ids = r[6][1]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| {
                (
                    kv[0].as_str().unwrap().to_string(),
                    kv[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (
            r[1].as_str().unwrap().to_string(),
            Row {
                bridge: holder.get(&uuid(&r[0])).cloned(),
                src: names(&r[2]),
                dst: names(&r[3]),
                out: names(&r[4]),
                select_all: r[5].as_bool().unwrap(),
                external_ids,
                select_vlan: items(&r[7]).iter().filter_map(Value::as_i64).collect(),
                output_vlan: items(&r[8]).first().and_then(Value::as_i64),
            },
        )
    })
    .collect()
}

fn marked() -> BTreeMap<String, String> {
    [("owner".to_string(), "ovs-autoattach".to_string())].into()
}

/// The mirror rule `(name, source, output, both)` as the tool keeps it.
fn kept(source: &str, output: &str, both: bool) -> Row {
    Row {
        bridge: Some("vmbr1".into()),
        src: vec![source.into()],
        dst: if both { vec![source.into()] } else { vec![] },
        out: vec![output.into()],
        select_all: false,
        external_ids: marked(),
        select_vlan: vec![],
        output_vlan: None,
    }
}

/// Asserts that the mirrors of [`MIRRORS`] are there, exactly as the rules say, and that no
/// other mirror of ours is.
fn assert_rule_mirrors(ovs: &Ovs, after: &str) {
    let all = mirrors(ovs);
    for (name, source, output, both) in MIRRORS {
        let row = all
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing after {after}: {all:#?}"));
        assert_eq!(row, &kept(source, output, both), "{name} after {after}");
    }
    let ours: Vec<&String> = all
        .iter()
        .filter(|(_, r)| r.external_ids.get("owner").map(String::as_str) == Some("ovs-autoattach"))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(ours.len(), MIRRORS.len(), "after {after}: {all:#?}");
}

// --- real frames ---

/// tcpdump on `dev` in namespace `ns`, until it has seen `count` frames (0: no limit) or is
/// stopped; each frame with its time stamp in seconds since the epoch (`-tt`).
struct Capture {
    child: Child,
    out: PathBuf,
}

fn capture(ovs: &Ovs, who: &(String, String), count: usize) -> Capture {
    capture_of(ovs, who, count, "icmp")
}

/// [`capture`] with a tcpdump filter of its own.
fn capture_of(ovs: &Ovs, (ns, dev): &(String, String), count: usize, filter: &str) -> Capture {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = format!(
        "{ns}-{dev}-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let out = ovs.dir.join(format!("{n}.out"));
    let err = ovs.dir.join(format!("{n}.err"));
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns", "exec", ns, "tcpdump", "-i", dev, "-nn", "-tt", "-l",
    ]);
    if count > 0 {
        cmd.args(["-c", &count.to_string()]);
    }
    let child = cmd
        .args(filter.split(' '))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("tcpdump (scripts/deps installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&err)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(
            Instant::now() < deadline,
            "tcpdump did not start on {dev} in {ns}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Capture { child, out }
}

impl Capture {
    /// Waits (at most `secs`) for tcpdump to finish, then returns the frames it printed.
    fn frames(mut self, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop()
    }

    /// Waits (at most 10 s) until a frame with `what` has been seen.
    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .contains(what)
        {
            assert!(Instant::now() < deadline, "no {what:?} seen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops tcpdump (an interrupt, so that it prints what it has captured) and returns the
    /// frames it printed.
    fn stop(mut self) -> String {
        if let Ok(None) = self.child.try_wait() {
            // `ip netns exec` execs tcpdump: the child is tcpdump itself.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::fs::read_to_string(&self.out).unwrap()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pings guest 200 from the switch's side: unicast frames that enter OVS on eno12419 and leave
/// it on veth200i0, and back.
fn ping_200(h: &Host) {
    let out = common::run(Command::new("ip").args([
        "netns",
        "exec",
        &h.span.0,
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        "10.88.0.3",
    ]));
    assert!(out.status.success(), "{}", text(&out.stdout));
}

const REQUEST: &str = "10.88.0.1 > 10.88.0.3: ICMP echo request";
const REPLY: &str = "10.88.0.3 > 10.88.0.1: ICMP echo reply";

#[test]
fn apply_creates_the_mirrors_whose_ports_exist_and_frames_really_arrive() {
    if common::without_root() {
        return;
    }
    let h = host();
    let ovs = &h.ovs;
    let before = ovs.next_cfg();
    let out = ovs.tool_code(&["apply"], 1);
    // The guests' ports and the mirrors that reference them appear in one transaction.
    assert_eq!(ovs.next_cfg(), before + 1, "{out}");
    for line in [
        "attached veth300i0 to vmbr1 untagged",
        "created mirror mirror_vmbr1_eno12419_to_vm300i0 on vmbr1: eno12419 (select=both) -> veth300i0",
        "created mirror mirror_vmbr1_eno12419_to_vm100i1 on vmbr1: eno12419 (select=src) -> tap100i1",
        "created mirror mirror_vmbr1_veth200i0_to_vm201i0 on vmbr1: veth200i0 (select=both) -> veth201i0",
        "mirror mirror_vmbr1_eno12419_to_vm400i0 (line 7) is waiting for tap400i0 on vmbr1",
        "/etc/mirrors.conf:8: unknown option \"mode=span\"",
        "3 mirrors: 3 created, 0 updated, 0 removed, 1 waiting, 1 invalid;",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert_rule_mirrors(ovs, "apply");
    assert_eq!(mirrors(ovs).len(), 3);

    // Real frames: what the switch sends to guest 200 and what comes back is seen in container
    // 300 (the SPAN port's mirror) and in container 201 (guest 200's mirror).
    let in300 = capture(ovs, &h.g300, 4);
    let in201 = capture(ovs, &h.g201, 4);
    ping_200(&h);
    for (who, frames) in [("300", in300.frames(5)), ("201", in201.frames(5))] {
        assert!(
            frames.contains(REQUEST) && frames.contains(REPLY),
            "guest {who} saw:\n{frames}"
        );
    }

    // `status --json` reports what each mirror sent, as ovs-vswitchd writes it into
    // `statistics` (every 5 s by default): a monitor alerts when a sensor's count stops growing.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = ovs.tool(&["status", "--json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let stats = doc["mirrors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["rule"] == MIRRORS[0].0)
            .map(|m| m["statistics"].clone())
            .unwrap_or_default();
        let sent = stats["tx_packets"].as_u64().unwrap_or_default();
        if sent >= 4 {
            assert!(stats["tx_bytes"].as_u64().unwrap() >= 4 * 98, "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "no statistics: {doc:#}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A second run with nothing to do commits nothing.
    let cfg = ovs.next_cfg();
    let out = ovs.tool_code(&["apply"], 1);
    assert_eq!(ovs.next_cfg(), cfg, "{out}");
    assert!(
        out.contains("3 mirrors: 0 created, 0 updated, 0 removed"),
        "{out}"
    );

    // Without the bad line the run succeeds: waiting rules are not errors. A mirror deleted by
    // hand is in the dry run's plan, and only there.
    std::fs::write(ovs.mirrors_path(), RULES.replace("mode=span", "select=dst")).unwrap();
    let name = MIRRORS[0].0;
    ovs.vsctl(&[
        "--", "--id=@m", "get", "Mirror", name, "--", "remove", "Bridge", "vmbr1", "mirrors", "@m",
    ]);
    let dry = ovs.tool(&["apply", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    assert_eq!(
        text(&dry.stdout),
        format!("create mirror {name} on vmbr1: eno12419 (select=both) -> veth300i0\n"),
    );
    assert_eq!(mirrors(ovs).len(), 2, "a dry run changes nothing");
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains("3 mirrors: 1 created, 0 updated, 0 removed, 2 waiting, 0 invalid"),
        "{out}"
    );
    assert_rule_mirrors(ovs, "apply");

    // Control: with the rules gone, their mirrors go, and from the moment the removal returns
    // no copy reaches container 300 or 201, although the switch keeps pinging guest 200: the
    // datapath's cached flows (which still carry the mirror outputs) do not outlive the mirror.
    let mut pinger = Pinger::start(&h);
    let (in300, in201) = (capture(ovs, &h.g300, 0), capture(ovs, &h.g201, 0));
    // The oracle works: copies arrive while the mirrors exist.
    for c in [&in300, &in201] {
        c.wait_for(REQUEST);
    }
    std::fs::remove_file(ovs.mirrors_path()).unwrap();
    let out = ovs.tool_ok(&["apply"]);
    let removed = now();
    // ovs-vswitchd purged its flows (a failure would be a warning).
    assert!(!out.contains("warning"), "{out}");
    assert!(
        out.contains(
            "removed mirror mirror_vmbr1_eno12419_to_vm300i0 from vmbr1 (no rule asks for it)"
        ),
        "{out}"
    );
    assert!(mirrors(ovs).is_empty());
    // Two seconds of steady traffic (forty pings) after the removal.
    std::thread::sleep(Duration::from_secs(2));
    assert!(pinger.running(), "the pings stopped");
    drop(pinger);
    std::thread::sleep(Duration::from_millis(200));
    for (who, c) in [("300", in300), ("201", in201)] {
        let frames = c.stop();
        let late: Vec<&str> = frames
            .lines()
            .filter(|l| stamp(l).is_some_and(|t| t > removed))
            .collect();
        assert!(
            late.is_empty(),
            "guest {who} still got copies after the removal returned at {removed:.6}:\n{}",
            late.join("\n")
        );
    }
}

/// Seconds since the epoch, as tcpdump's `-tt` stamps frames.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The `-tt` time stamp of a tcpdump line.
fn stamp(line: &str) -> Option<f64> {
    line.split_whitespace().next()?.parse().ok()
}

/// Steady traffic: the switch pings guest 200 twenty times a second until dropped.
struct Pinger(Child);

impl Pinger {
    fn start(h: &Host) -> Pinger {
        let child = Command::new("ip")
            .args(["netns", "exec", &h.span.0, "ping", "-i", "0.05", "-W", "1"])
            .arg("10.88.0.3")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping");
        Pinger(child)
    }

    fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A guest restart: Proxmox deletes the tap's port and adds it again (`tap_plug`), which drops
/// the new row out of the mirror's weak `output_port`; the hookscript's `plug` puts it back.
#[test]
fn a_guest_restart_gets_its_mirror_back_on_plug() {
    if common::without_root() {
        return;
    }
    let h = host();
    let ovs = &h.ovs;
    ovs.tool_code(&["apply"], 1);
    let name = "mirror_vmbr1_eno12419_to_vm100i1";
    let old = ovs.vsctl(&["get", "Port", "tap100i1", "_uuid"]);
    ovs.vsctl(&["del-port", "tap100i1"]);
    ovs.vsctl(&["add-port", "vmbr1", "tap100i1"]);
    assert_ne!(ovs.vsctl(&["get", "Port", "tap100i1", "_uuid"]), old);
    assert_eq!(
        mirrors(ovs)[name].out,
        Vec::<String>::new(),
        "the weak reference is gone"
    );

    let out = ovs.tool_ok(&["plug", "tap100i1"]);
    assert!(
        out.contains(&format!("updated mirror {name} on vmbr1: eno12419 (select=src) -> tap100i1 (corrected: output_port)")),
        "{out}"
    );
    assert_rule_mirrors(ovs, "plug");
    // Proxmox's port stays Proxmox's.
    assert_eq!(ovs.owner("tap100i1"), None);
    // Nothing left to do: a plug that changed nothing is quiet and commits nothing.
    let cfg = ovs.next_cfg();
    assert_eq!(ovs.tool_ok(&["plug", "tap100i1"]), "");
    assert_eq!(ovs.next_cfg(), cfg);
    // The plug of a NIC no rule names says nothing about mirrors.
    ovs.tap("tap100i0");
    let out = ovs.tool_ok(&["-v", "plug", "tap100i0"]);
    assert!(out.contains("attached tap100i0 to ovsbr0"), "{out}");
    assert!(!out.contains("mirrors:"), "{out}");
}

#[test]
fn foreign_mirrors_are_left_alone_namesakes_adopted_and_clear_takes_ours_only() {
    if common::without_root() {
        return;
    }
    let h = host();
    let ovs = &h.ovs;
    std::fs::write(
        ovs.mirrors_path(),
        RULES.replace("vmbr1  eno12419  100  2  mode=span\n", ""),
    )
    .unwrap();
    ovs.tool_ok(&["apply"]);
    // Someone else's mirror, and one as proxmox-ovs-mirror made it (unmarked, the rule's name)
    // but wrong: one direction only, to the wrong port.
    ovs.vsctl(&[
        "add-port",
        "vmbr1",
        "ids0",
        "--",
        "set",
        "Interface",
        "ids0",
        "type=internal",
    ]);
    let seed = "mirror_vmbr1_eno12419_to_vm300i0";
    ovs.vsctl(&[
        "--", "--id=@m", "get", "Mirror", seed, "--", "remove", "Bridge", "vmbr1", "mirrors", "@m",
    ]);
    ovs.vsctl(&[
        "--",
        "--id=@src",
        "get",
        "Port",
        "eno12419",
        "--",
        "--id=@ids",
        "get",
        "Port",
        "ids0",
        "--",
        "--id=@other",
        "get",
        "Port",
        "tap100i1",
        "--",
        "--id=@f",
        "create",
        "Mirror",
        "name=span-for-ids",
        "select-all=true",
        "output-port=@ids",
        "--",
        "--id=@s",
        "create",
        "Mirror",
        &format!("name={seed}"),
        "select-src-port=@src",
        "output-port=@other",
        "--",
        "add",
        "Bridge",
        "vmbr1",
        "mirrors",
        "@f",
        "@s",
    ]);
    let foreign = mirrors(ovs).remove("span-for-ids").unwrap();
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains(&format!("adopted mirror {seed} on vmbr1: eno12419 (select=both) -> veth300i0 (marked as ours; corrected: select_dst_port, output_port)")),
        "{out}"
    );
    assert_rule_mirrors(ovs, "adoption");
    assert_eq!(mirrors(ovs)["span-for-ids"], foreign);

    // A rule removed: its mirror goes, the others and the foreign one stay.
    let rules = std::fs::read_to_string(ovs.mirrors_path()).unwrap();
    std::fs::write(
        ovs.mirrors_path(),
        rules.replace("vmbr1  eno12419  100  1  select=src\n", ""),
    )
    .unwrap();
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains(
            "removed mirror mirror_vmbr1_eno12419_to_vm100i1 from vmbr1 (no rule asks for it)"
        ),
        "{out}"
    );
    let names: Vec<String> = mirrors(ovs).into_keys().collect();
    assert_eq!(
        names,
        [seed, "mirror_vmbr1_veth200i0_to_vm201i0", "span-for-ids"]
    );

    // Package removal (clear --keep-ports) takes our mirrors and leaves the ports.
    let out = ovs.tool_ok(&["clear", "--keep-ports"]);
    assert!(
        out.contains(&format!("removed mirror {seed} from vmbr1 (clear)")),
        "{out}"
    );
    assert_eq!(
        mirrors(ovs).into_keys().collect::<Vec<_>>(),
        ["span-for-ids"]
    );
    assert_eq!(ovs.bridge_of("veth300i0").as_deref(), Some("vmbr1"));

    // With mirrors off, apply neither creates nor removes one; clear still takes ours.
    ovs.write_config("mirrors_file: null\n");
    let out = ovs.tool_ok(&["apply"]);
    assert!(!out.contains("mirror"), "{out}");
    assert_eq!(mirrors(ovs).len(), 1);
    ovs.write_config("");
    ovs.tool_ok(&["apply"]);
    assert_eq!(mirrors(ovs).len(), 3);
    let out = ovs.tool_ok(&["clear"]);
    assert!(
        out.contains("0 mirrors: 0 created, 0 updated, 2 removed"),
        "{out}"
    );
    assert_eq!(
        mirrors(ovs).into_keys().collect::<Vec<_>>(),
        ["span-for-ids"]
    );
    assert_eq!(mirrors(ovs)["span-for-ids"], foreign);
}

fn promiscuous(ovs: &Ovs, link: &str) -> bool {
    let out = ovs.sh(&format!("ip -o link show {link}"));
    out.split('<')
        .nth(1)
        .and_then(|f| f.split('>').next())
        .is_some_and(|flags| flags.split(',').any(|f| f == "PROMISC"))
}

/// `promisc=yes` (the default for a port): the tool sets the flag when it is off and records it
/// in each mirror that needs it; it clears it once no mirror of ours needs it, and never clears
/// a flag it did not set.
#[test]
fn the_promiscuous_flag_is_set_recorded_and_cleared_only_when_ours() {
    if common::without_root() {
        return;
    }
    let h = host();
    let ovs = &h.ovs;
    let two = "vmbr1 eno12419 300 0\nvmbr1 eno12419 100 1\n";
    std::fs::write(ovs.mirrors_path(), two).unwrap();
    // The userspace datapath turns the flag on itself when it adds a port; an admin cleared it.
    ovs.sh("ip link set eno12419 promisc off");
    let out = ovs.tool_ok(&["apply"]);
    assert!(out.contains("set eno12419 promiscuous"), "{out}");
    assert!(promiscuous(ovs, "eno12419"));
    for (name, row) in mirrors(ovs) {
        assert_eq!(
            row.external_ids
                .get("ovs-autoattach-promisc")
                .map(String::as_str),
            Some("eno12419"),
            "{name}"
        );
    }
    // One of the two mirrors goes: the other still needs the flag.
    std::fs::write(ovs.mirrors_path(), "vmbr1 eno12419 300 0\n").unwrap();
    ovs.tool_ok(&["apply"]);
    assert!(promiscuous(ovs, "eno12419"));
    // The last one goes: the flag the tool set is cleared.
    std::fs::write(ovs.mirrors_path(), "").unwrap();
    let out = ovs.tool_ok(&["apply"]);
    assert!(
        out.contains("cleared the promiscuous flag of eno12419"),
        "{out}"
    );
    assert!(!promiscuous(ovs, "eno12419"));

    // A flag someone else set is neither recorded nor cleared.
    ovs.sh("ip link set eno12419 promisc on");
    std::fs::write(ovs.mirrors_path(), two).unwrap();
    let out = ovs.tool_ok(&["apply"]);
    assert!(!out.contains("promiscuous"), "{out}");
    assert!(mirrors(ovs).values().all(|r| r.external_ids == marked()));
    std::fs::write(ovs.mirrors_path(), "").unwrap();
    ovs.tool_ok(&["apply"]);
    assert!(promiscuous(ovs, "eno12419"));
}

// --- ifupdown2 ---

/// The admin's network configuration: the SPAN port and the bridge, on upstream ifupdown2 (no
/// condone regex, so a reload also drops the guest ports).
const NETWORK: &str = "auto lo\niface lo inet loopback\n\nauto eno12419\niface eno12419 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n\nauto vmbr1\niface vmbr1 inet manual\n    ovs_type OVSBridge\n    ovs_ports eno12419\n    ovs_options datapath_type=netdev\n";

/// A host whose interfaces file is [`NETWORK`], after a first `apply`, without the bad line.
fn reload_host() -> Host {
    let h = host();
    let ovs = &h.ovs;
    std::fs::write(
        ovs.interfaces_path(),
        format!("{NETWORK}\n{}", ovs.source_line()),
    )
    .unwrap();
    std::fs::write(
        ovs.mirrors_path(),
        RULES.replace("vmbr1  eno12419  100  2  mode=span\n", ""),
    )
    .unwrap();
    ovs.tool_ok(&["apply"]);
    assert_rule_mirrors(ovs, "apply");
    h
}

/// Runs `script` under ifupdown2, with the tool's if-up.d hook calling the tool through a wrapper
/// that records each call (`IFACE args`); returns the output and the calls.
fn with_hook(ovs: &Ovs, script: &str) -> (String, Vec<String>) {
    let log = ovs.dir.join("calls.log");
    let _ = std::fs::remove_file(&log);
    let wrapper = ovs.dir.join("ovs-autoattach-recorder");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"${{IFACE:-?}} $*\" >> {}\nexec {BIN} \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ovs.ifupdown(
        &[("ovs-autoattach", &common::if_up_hook())],
        &format!("export OVS_AUTOATTACH_BIN={}; {script}", wrapper.display()),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{script}:\n{all}");
    let mut calls: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    calls.sort();
    (all, calls)
}

/// An `ovsdb-client monitor` of the Mirror table: every (action, name) it saw until stopped.
fn monitor_mirrors(ovs: &Ovs) -> (Child, PathBuf) {
    let out = ovs.dir.join("mirror-monitor.json");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ovs.ns,
            "ovsdb-client",
            "monitor",
            "--format=json",
        ])
        .arg(ovs.db())
        .args(["Open_vSwitch", "Mirror", "name"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "ovsdb-client monitor printed nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, out)
}

fn monitored((mut child, out): (Child, PathBuf)) -> Vec<(String, String)> {
    std::thread::sleep(Duration::from_millis(200));
    let _ = child.kill();
    let _ = child.wait();
    let mut seen = Vec::new();
    for line in std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
    {
        let doc: Value = serde_json::from_str(line).unwrap();
        let headings: Vec<&str> = doc["headings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        let col = |name: &str| headings.iter().position(|h| *h == name).unwrap();
        for row in doc["data"].as_array().unwrap() {
            seen.push((
                row[col("action")].as_str().unwrap().to_string(),
                row[col("name")].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    seen
}

/// ifupdown2 deletes every mirror of a bridge it brings up (`clear bridge vmbr1 ... mirrors`):
/// the hook's `apply` for the bridge puts them back before `ifreload -a` returns.
#[test]
fn ifreload_deletes_the_mirrors_and_the_hook_restores_them() {
    if common::without_root() {
        return;
    }
    let h = reload_host();
    let ovs = &h.ovs;
    // Control: without the hook the reload really deletes them.
    let out = ovs.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        mirrors(ovs).len(),
        0,
        "ifreload -a without the hook kept mirrors"
    );
    ovs.tool_ok(&["apply"]);
    assert_rule_mirrors(ovs, "apply after a reload without the hook");

    let monitor = monitor_mirrors(ovs);
    let (out, calls) = with_hook(ovs, "ifreload -a");
    let seen = monitored(monitor);
    for (name, _, _, _) in MIRRORS {
        assert!(
            seen.contains(&("delete".to_string(), name.to_string())),
            "the reload did not delete {name}: {seen:?}"
        );
    }
    assert_rule_mirrors(ovs, &format!("ifreload -a with the hook\n{out}"));
    assert!(calls.contains(&"vmbr1 apply".to_string()), "{calls:?}");
    // The SPAN port coming up is a mirror source: it gets a plug of its own.
    assert!(
        calls.contains(&"eno12419 plug eno12419".to_string()),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("lo ")), "{calls:?}");
}

/// `ifdown vmbr1` runs `del-br`; `ifup vmbr1` creates it again with no port: the hook's `apply`
/// restores the guest ports and the guest-to-guest mirror at once. The SPAN port comes back only
/// with its own `ifup`, and then its mirrors do too, from the hook's `plug eno12419`.
#[test]
fn ifdown_ifup_of_the_bridge_then_of_the_span_port_restores_every_mirror() {
    if common::without_root() {
        return;
    }
    let h = reload_host();
    let ovs = &h.ovs;
    let (out, calls) = with_hook(
        ovs,
        "ifdown vmbr1; ovs-vsctl br-exists vmbr1 && exit 9; ifup vmbr1",
    );
    assert_eq!(calls, ["vmbr1 apply"], "{out}");
    assert_eq!(ovs.bridge_of("eno12419"), None, "{out}");
    let all = mirrors(ovs);
    let (name, source, output, both) = MIRRORS[2];
    assert_eq!(
        all.get(name),
        Some(&kept(source, output, both)),
        "{out}\n{all:#?}"
    );
    assert_eq!(
        all.len(),
        1,
        "the SPAN port's mirrors wait for it: {all:#?}"
    );
    let status = ovs.tool_ok(&["apply"]);
    assert!(
        status.contains(
            "mirror mirror_vmbr1_eno12419_to_vm300i0 (line 2) is waiting for eno12419 on vmbr1"
        ),
        "{status}"
    );

    let (out, calls) = with_hook(ovs, "ifup eno12419");
    assert_eq!(calls, ["eno12419 plug eno12419"], "{out}");
    assert_rule_mirrors(ovs, &format!("ifup eno12419\n{out}"));

    // Real frames again.
    let in300 = capture(ovs, &h.g300, 4);
    ping_200(&h);
    let frames = in300.frames(5);
    assert!(frames.contains(REQUEST), "guest 300 saw:\n{frames}");
}

// --- Open vSwitch 3.5's Mirror.filter ---

/// `status --json`: the exit code and the state and reason of the rule whose mirror is `name`.
fn rule_status(ovs: &Ovs, name: &str) -> (Option<i32>, String, String) {
    let out = ovs.tool(&["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    let rule = doc["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["rule"] == name)
        .unwrap_or_else(|| panic!("no rule {name}: {doc:#}"))
        .clone();
    let field = |k: &str| rule[k].as_str().unwrap_or_default().to_string();
    (out.status.code(), field("state"), field("reason"))
}

/// Open vSwitch 3.5 (schema 8.8.0) has a `Mirror.filter` column, 3.1 none; which one runs here
/// is read off the live schema, and each is checked. With the column, a filter set by hand on a
/// mirror of ours (a rule never asks for one) is drift: `status` shows the rule pending and
/// exits 1, and `apply` clears the filter. Without it, the tool corrects a mirror all the same
/// and never names the column: ovsdb-server's log of every JSON-RPC message (the tool's requests
/// and their replies) holds no "filter" at all.
#[test]
fn a_mirror_filter_is_drift_where_the_schema_has_one_and_never_named_where_not() {
    let h = host();
    let ovs = &h.ovs;
    std::fs::write(ovs.mirrors_path(), RULES.replace("mode=span", "select=dst")).unwrap();
    ovs.tool_ok(&["apply"]);
    let name = MIRRORS[0].0;
    assert_eq!(
        rule_status(ovs, name),
        (Some(0), "active".into(), "".into())
    );
    let columns = common::check(Command::new("ovsdb-client").args([
        "list-columns",
        &ovs.db(),
        "Open_vSwitch",
        "Mirror",
    ]));
    let has_filter = columns
        .lines()
        .any(|l| l.split_whitespace().next() == Some("filter"));
    let filter = || ovs.vsctl(&["get", "Mirror", name, "filter"]);
    if has_filter {
        eprintln!("Mirror.filter exists: checking that it is drift");
        ovs.vsctl(&["set", "Mirror", name, "filter=icmp"]);
        assert_eq!(filter().trim_matches('"'), "icmp");
        let (code, state, reason) = rule_status(ovs, name);
        assert_eq!((code, state.as_str()), (Some(1), "pending"), "{reason}");
        assert!(reason.ends_with("(corrected: filter)"), "{reason}");
        let out = ovs.tool_ok(&["apply"]);
        assert!(
            out.contains(&format!("updated mirror {name} on vmbr1: eno12419 (select=both) -> veth300i0 (corrected: filter)")),
            "{out}"
        );
        assert_eq!(filter(), "[]");
    } else {
        eprintln!("no Mirror.filter: checking that it is never named");
        let pid = std::fs::read_to_string(ovs.dir.join("ovsdb.pid")).unwrap();
        let ctl = ovs.dir.join(format!("ovsdb-server.{}.ctl", pid.trim()));
        common::check(
            Command::new("ovs-appctl")
                .arg("-t")
                .arg(&ctl)
                .args(["vlog/set", "jsonrpc:file:dbg"]),
        );
        ovs.vsctl(&["set", "Mirror", name, "select_all=true"]);
        let (code, state, reason) = rule_status(ovs, name);
        assert_eq!((code, state.as_str()), (Some(1), "pending"), "{reason}");
        let out = ovs.tool_ok(&["apply"]);
        assert!(out.contains("(corrected: select_all)"), "{out}");
        assert!(
            ovs.try_vsctl(&["get", "Mirror", name, "filter"])
                .status
                .code()
                != Some(0)
        );
        let log = std::fs::read_to_string(ovs.dir.join("ovsdb.log")).unwrap();
        // The log holds the tool's transaction: the oracle sees what the tool sends.
        assert!(
            log.contains(r#""op":"update","row":{"output_port""#)
                || log.contains(r#""select_all":false"#),
            "{log}"
        );
        assert!(!log.contains("filter"), "{log}");
    }
    assert_eq!(
        rule_status(ovs, name),
        (Some(0), "active".into(), "".into())
    );
    assert_rule_mirrors(ovs, "apply");

    // Mirror health: an output link that is down carries no copy, whatever OVS holds.
    ovs.sh("ip link set veth300i0 down");
    let (_, state, reason) = rule_status(ovs, name);
    assert_eq!(
        (state.as_str(), reason.as_str()),
        (
            "waiting",
            "waiting for veth300i0 to come up (its link is down)"
        )
    );
    ovs.sh("ip link set veth300i0 up");
    assert_eq!(
        rule_status(ovs, name),
        (Some(0), "active".into(), "".into())
    );
}

// --- rules beyond one port: '*', several sources, vlans=, output_vlan= ---

/// A guest of the shape tests: its VMID, the namespace and device of its far end, its address.
struct Guest {
    vmid: u32,
    at: (String, String),
    addr: &'static str,
    tag: Option<u16>,
}

/// [`host`] with the SPAN port and bridge of [`NETWORK`] in the interfaces file, these rules,
/// containers 200, 201 and 300 tagged as `tags` says, and extra containers `more` (a veth each,
/// its far end in a namespace of its own with the address given); after a first `apply`.
fn shape_host(
    rules: &str,
    tags: &[(u32, u16)],
    more: &[(u32, &'static str)],
) -> (Host, Vec<Guest>) {
    let h = host();
    let ovs = &h.ovs;
    let conf = |vmid: u32| {
        let tag = tags
            .iter()
            .find(|(v, _)| *v == vmid)
            .map(|(_, t)| format!(",tag={t}"))
            .unwrap_or_default();
        format!("net0: name=eth0,bridge=vmbr1,hwaddr=BC:24:11:00:02:00,type=veth{tag}\n")
    };
    for vmid in [200, 201, 300] {
        ovs.guest("lxc", vmid, &conf(vmid));
    }
    let mut guests = Vec::new();
    for (vmid, addr) in more {
        ovs.guest("lxc", *vmid, &conf(*vmid));
        let peer = ovs.veth(&format!("veth{vmid}i0"));
        guests.push(Guest {
            vmid: *vmid,
            at: (ovs.guest_ns(&peer, addr), peer),
            addr,
            tag: tags.iter().find(|(v, _)| v == vmid).map(|(_, t)| *t),
        });
    }
    std::fs::write(
        ovs.interfaces_path(),
        format!("{NETWORK}\n{}", ovs.source_line()),
    )
    .unwrap();
    std::fs::write(ovs.mirrors_path(), rules).unwrap();
    ovs.tool_ok(&["apply"]);
    (h, guests)
}

/// Pings `target` from namespace `ns` (3 requests), and asserts that it answers.
fn ping_from(ns: &str, target: &str) {
    let out = common::run(Command::new("ip").args([
        "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", target,
    ]));
    assert!(out.status.success(), "{target}: {}", text(&out.stdout));
}

/// A guest restart as Proxmox does it: the container's veth goes (and its far end with it), a
/// new one is made with the far end in the container again, Proxmox deletes and re-adds the
/// port (with the guest's tag), then the hookscript's `post-start` runs `plug`.
fn restart_guest(ovs: &Ovs, g: &Guest) {
    let name = format!("veth{}i0", g.vmid);
    let (ns, dev) = &g.at;
    ovs.sh(&format!(
        "ip link del {name}; ip link add {name} type veth peer name {dev} netns {ns}; ip link set {name} up"
    ));
    common::check(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "bash",
        "-ec",
        &format!("ip link set {dev} up; ip addr add {} dev {dev}", g.addr),
    ]));
    ovs.vsctl(&["--if-exists", "del-port", &name]);
    let tag = g.tag.map(|t| format!("tag={t}"));
    let mut add = vec!["add-port", "vmbr1", name.as_str()];
    add.extend(tag.as_deref());
    ovs.vsctl(&add);
    ovs.tool_ok(&["plug", &name]);
}

/// Runs `check` after the first `apply`, after `ifreload -a` with the hook, after `ifdown` and
/// `ifup` of the bridge (`del-br`; then the SPAN port's own `ifup`), and after a restart of
/// guest `restart`.
fn through_disruptions(h: &Host, restart: &Guest, check: impl Fn(&str)) {
    let ovs = &h.ovs;
    check("apply");
    let (out, _) = with_hook(ovs, "ifreload -a");
    check(&format!("ifreload -a\n{out}"));
    let (out, _) = with_hook(ovs, "ifdown vmbr1; ifup vmbr1; ifup eno12419");
    check(&format!("ifdown/ifup vmbr1\n{out}"));
    restart_guest(ovs, restart);
    check("a guest restart");
    // Everything as the rules say: a run has nothing to do.
    let cfg = ovs.next_cfg();
    ovs.tool_ok(&["apply"]);
    assert_eq!(ovs.next_cfg(), cfg);
}

/// The one mirror of ours, by name.
fn the_mirror(ovs: &Ovs, name: &str, after: &str) -> Row {
    let all = mirrors(ovs);
    assert_eq!(all.len(), 1, "after {after}: {all:#?}");
    all.into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing after {after}"))
        .1
}

fn the_guest(h: &Host, vmid: u32) -> Guest {
    let (at, addr) = match vmid {
        201 => (h.g201.clone(), "10.99.1.1/24"),
        300 => (h.g300.clone(), "10.99.3.1/24"),
        _ => panic!("no guest {vmid} here"),
    };
    Guest {
        vmid,
        at,
        addr,
        tag: None,
    }
}

/// `*`: the whole bridge, `select_all`; what the switch sends guest 200 reaches guest 300.
#[test]
fn the_whole_bridge_is_mirrored_through_reloads_and_restarts() {
    if common::without_root() {
        return;
    }
    let (h, _) = shape_host("vmbr1  *  300  0\n", &[], &[]);
    let ovs = &h.ovs;
    let name = "mirror_vmbr1_*_to_vm300i0";
    through_disruptions(&h, &the_guest(&h, 300), |after| {
        let row = the_mirror(ovs, name, after);
        assert_eq!(
            row,
            Row {
                src: vec![],
                dst: vec![],
                select_all: true,
                ..kept("x", "veth300i0", false)
            },
            "after {after}"
        );
        let in300 = capture(ovs, &h.g300, 0);
        ping_200(&h);
        in300.wait_for(REQUEST);
    });
}

/// `vlans=10`: of two selected sources, the frames in VLAN 10 are copied, those in VLAN 20 not.
#[test]
fn only_the_selected_vlans_are_mirrored_through_reloads_and_restarts() {
    if common::without_root() {
        return;
    }
    // Guests 200 and 201 talk in VLAN 10, 202 and 203 in VLAN 20; the rule selects 200 and 202.
    let (h, guests) = shape_host(
        "vmbr1  vm200:0,vm202:0  300  0  vlans=10\n",
        &[(200, 10), (201, 10), (202, 20), (203, 20)],
        &[(202, "10.77.0.2/24"), (203, "10.77.0.3/24")],
    );
    let ovs = &h.ovs;
    common::check(Command::new("ip").args([
        "netns",
        "exec",
        &h.g201.0,
        "ip",
        "addr",
        "add",
        "10.88.0.9/24",
        "dev",
        &h.g201.1,
    ]));
    let name = "mirror_vmbr1_veth200i0,veth202i0_to_vm300i0";
    let request_10 = "10.88.0.9 > 10.88.0.3: ICMP echo request";
    let request_20 = "10.77.0.2 > 10.77.0.3: ICMP echo request";
    through_disruptions(&h, &guests[0], |after| {
        let row = the_mirror(ovs, name, after);
        let both = vec!["veth200i0".to_string(), "veth202i0".into()];
        let mut got = row.src.clone();
        got.sort();
        assert_eq!(got, both, "after {after}");
        assert_eq!((row.select_vlan.clone(), row.output_vlan), (vec![10], None));
        // VLAN-tagged copies: the output port is a trunk.
        let in300 = capture_of(ovs, &h.g300, 0, "icmp or (vlan and icmp)");
        ping_from(&guests[0].at.0, "10.77.0.3");
        ping_from(&h.g201.0, "10.88.0.3");
        in300.wait_for(request_10);
        let frames = in300.stop();
        assert!(
            !frames.contains(request_20),
            "after {after}, VLAN 20 copied:\n{frames}"
        );
    });
}

/// Several sources in one mirror: the SPAN port and guest 201's NIC.
#[test]
fn several_sources_are_mirrored_through_reloads_and_restarts() {
    if common::without_root() {
        return;
    }
    let (h, _) = shape_host("vmbr1  eno12419,vm201:0  300  0  select=src\n", &[], &[]);
    let ovs = &h.ovs;
    // Guest 201 talks to guest 200 on a subnet of their own.
    let g200 = &h.g200;
    common::check(Command::new("ip").args([
        "netns",
        "exec",
        &g200.0,
        "ip",
        "addr",
        "add",
        "10.99.1.3/24",
        "dev",
        &g200.1,
    ]));
    let name = "mirror_vmbr1_eno12419,veth201i0_to_vm300i0";
    let from_201 = "10.99.1.1 > 10.99.1.3: ICMP echo request";
    through_disruptions(&h, &the_guest(&h, 201), |after| {
        let row = the_mirror(ovs, name, after);
        assert_eq!(
            row,
            Row {
                src: vec!["eno12419".into(), "veth201i0".into()],
                ..kept("x", "veth300i0", false)
            },
            "after {after}"
        );
        let in300 = capture(ovs, &h.g300, 0);
        ping_200(&h);
        ping_from(&h.g201.0, "10.99.1.3");
        in300.wait_for(REQUEST);
        in300.wait_for(from_201);
    });
}

/// RSPAN: the SPAN port's traffic into VLAN 30, received by guest 300's access port in VLAN 30.
#[test]
fn an_output_vlan_reaches_its_access_port_through_reloads_and_restarts() {
    if common::without_root() {
        return;
    }
    let (h, _) = shape_host("vmbr1  eno12419  -  -  output_vlan=30\n", &[(300, 30)], &[]);
    let ovs = &h.ovs;
    assert!(
        ovs.vlan("veth300i0").starts_with("30 "),
        "{}",
        ovs.vlan("veth300i0")
    );
    let name = "mirror_vmbr1_eno12419_to_vlan30";
    let receiver = Guest {
        tag: Some(30),
        ..the_guest(&h, 300)
    };
    through_disruptions(&h, &receiver, |after| {
        let row = the_mirror(ovs, name, after);
        assert_eq!(
            row,
            Row {
                out: vec![],
                output_vlan: Some(30),
                ..kept("eno12419", "x", true)
            },
            "after {after}"
        );
        let in300 = capture(ovs, &h.g300, 0);
        ping_200(&h);
        in300.wait_for(REQUEST);
    });
}
