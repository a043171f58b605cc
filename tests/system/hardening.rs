//! Hardening: concurrent callers, killed runs, OVS outages, locks and hostile input, each against
//! a real Open vSwitch, with foreign state checked untouched throughout.

use crate::common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Ovs, check, text};
use ovs_autoattach::host::lock::PLUG_WAIT;

/// A small deterministic generator: reproducible "random" moments without a dependency.
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

const HEAD: &str = "# admin part\nauto lo\niface lo inet loopback\n";
const TAIL: &str = "\n# admin tail, after the block\n";

/// Foreign state that nothing may modify: an internal uplink with a tag, a patch-like port whose
/// name looks like a guest's but is not Proxmox's pattern, and their interface rows.
fn add_foreign(ovs: &Ovs) {
    ovs.vsctl(&[
        "add-port",
        "ovsbr0",
        "uplink0",
        "tag=7",
        "--",
        "set",
        "Interface",
        "uplink0",
        "type=internal",
        "--",
        "set",
        "Port",
        "uplink0",
        "external_ids:owner=admin",
    ]);
    ovs.vsctl(&[
        "--no-wait",
        "add-port",
        "ovsbr0",
        "vethForeign",
        "--",
        "set",
        "Port",
        "vethForeign",
        "trunks=5,6",
    ]);
}

fn foreign_snapshot(ovs: &Ovs) -> String {
    let cols = "--columns=name,tag,trunks,vlan_mode,external_ids,other_config,interfaces";
    ["uplink0", "vethForeign"]
        .iter()
        .map(|p| {
            ovs.vsctl(&[cols, "list", "Port", p])
                + &ovs.vsctl(&[
                    "--columns=name,type,external_ids,options,mtu_request",
                    "list",
                    "Interface",
                    p,
                ])
        })
        .collect()
}

/// The interfaces file of these tests: an empty managed block of 0.1.0 between the admin's
/// lines, and the `source` line of the tool's file.
fn seed_interfaces(ovs: &Ovs) {
    std::fs::write(
        ovs.interfaces_path(),
        format!(
            "{HEAD}\n# BEGIN ovs-autoattach\n# END ovs-autoattach\n{TAIL}{}",
            ovs.source_line()
        ),
    )
    .unwrap();
}

/// What [`seed_interfaces`] becomes once cleaned: the admin's lines only.
fn seeded_admin_part(ovs: &Ovs) -> String {
    format!("{HEAD}{TAIL}{}", ovs.source_line())
}

fn ifquery_ok(path: &std::path::Path) {
    check(Command::new("ifquery").arg("-a").arg("-i").arg(path));
}

fn stanzas_ok(ovs: &Ovs) {
    let text = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    ovs_autoattach::decide::stanzas::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
}

fn nmstate_ok(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let state =
        nmstate::NetworkState::new_from_yaml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    state.gen_conf().unwrap();
}

/// Names listed in the tool's file, sorted.
fn block_ports(ovs: &Ovs) -> Vec<String> {
    let content = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    let mut v: Vec<String> = content
        .lines()
        .filter_map(|l| {
            l.strip_prefix("iface ")?
                .strip_suffix(" inet manual")
                .map(String::from)
        })
        .filter(|n| n != "lo")
        .collect();
    v.sort();
    v
}

fn links_with_prefix(ovs: &Ovs, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = ovs
        .sh("ls /sys/class/net")
        .split_whitespace()
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// 200 plugs of 200 different NICs in parallel with 5 applies and NICs created and deleted
/// meanwhile; one more apply then leaves OVS and both files exactly at the desired state, and
/// foreign state untouched.
#[test]
fn storm_of_plugs_applies_and_churn_converges() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    add_foreign(&ovs);
    seed_interfaces(&ovs);
    let foreign = foreign_snapshot(&ovs);
    // Guests: LXC 1000..1199, one NIC each, tags 10/20 alternating.
    for i in 0..200u32 {
        ovs.guest(
            "lxc",
            1000 + i,
            &format!("net0: name=eth0,bridge=ovsbr0,tag={}\n", 10 + 10 * (i % 2)),
        );
    }
    let script: String = (0..200)
        .map(|i| format!("ip link add veth{}i0 type veth peer name s{i}\n", 1000 + i))
        .collect();
    ovs.sh(&script);

    let mut children = Vec::new();
    for i in 0..200u32 {
        children.push(
            ovs.tool_cmd(&["-q", "plug", &format!("veth{}i0", 1000 + i)])
                .spawn()
                .unwrap(),
        );
        if i % 40 == 20 {
            children.push(ovs.tool_cmd(&["-q", "apply"]).spawn().unwrap());
        }
    }
    // Churn while they run: 20 NICs deleted, 10 new ones created.
    let del: String = (0..20)
        .map(|i| format!("ip link del veth{}i0\n", 1000 + i * 10))
        .collect();
    let add: String = (0..10)
        .map(|i| format!("ip link add veth{}i0 type veth peer name n{i}\n", 1300 + i))
        .collect();
    for i in 0..10u32 {
        ovs.guest("lxc", 1300 + i, "net0: name=eth0,bridge=ovsbr0,tag=30\n");
    }
    ovs.sh(&format!("{del}{add}"));
    for mut c in children {
        let status = c.wait().unwrap();
        // A plug may fail for a NIC deleted under it; it must never be a usage error or a crash.
        assert!(matches!(status.code(), Some(0) | Some(1)), "{status:?}");
    }

    ovs.tool_ok(&["apply"]);
    let mut expected = links_with_prefix(&ovs, "veth");
    expected.retain(|n| n != "vethForeign");
    assert_eq!(expected.len(), 190);
    let mut on_ovs = ovs.ports("ovsbr0");
    on_ovs.retain(|p| p.starts_with("veth1"));
    on_ovs.sort();
    assert_eq!(
        on_ovs, expected,
        "each existing NIC exactly once, no stale port"
    );
    for n in &expected {
        let vmid: u32 = n[4..8].parse().unwrap();
        let tag = if vmid >= 1300 {
            30
        } else {
            10 + 10 * ((vmid - 1000) % 2)
        };
        assert_eq!(
            ovs.vsctl(&["get", "Port", n, "tag"]),
            tag.to_string(),
            "{n}"
        );
    }
    assert_eq!(block_ports(&ovs), expected);
    ifquery_ok(&ovs.interfaces_path());
    stanzas_ok(&ovs);
    nmstate_ok(&ovs.nmstate_path());
    assert_eq!(foreign_snapshot(&ovs), foreign, "foreign ports untouched");
    let content = std::fs::read_to_string(ovs.interfaces_path()).unwrap();
    assert_eq!(
        content,
        seeded_admin_part(&ovs),
        "the admin's bytes untouched"
    );
}

/// `apply` killed with SIGKILL at 50 moments spread over its run (the OVSDB transaction, the wait,
/// the file writes): the files are always the old or the new version and parse, the next apply
/// converges, and no temporary file is left behind.
#[test]
fn killed_applies_never_corrupt_and_always_converge() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    add_foreign(&ovs);
    seed_interfaces(&ovs);
    let foreign = foreign_snapshot(&ovs);
    let n = 120u32;
    ovs.sh(&(0..n)
        .map(|i| format!("ip link add veth{}i0 type veth peer name k{i}\n", 2000 + i))
        .collect::<String>());
    let set_tags = |round: u32| {
        for i in 0..n {
            ovs.guest(
                "lxc",
                2000 + i,
                &format!(
                    "net0: name=eth0,bridge=ovsbr0,tag={}\n",
                    100 + round % 7 + i % 3
                ),
            );
        }
    };
    set_tags(0);
    ovs.tool_ok(&["apply"]);
    // How long one apply with every port changing takes, to spread the kills over it.
    set_tags(1);
    let t = Instant::now();
    ovs.tool_ok(&["apply"]);
    let span = t.elapsed().as_micros().max(2000) as u64;

    let mut rng = Lcg(0x5eed);
    let dir = ovs.stanzas_path().parent().unwrap().to_path_buf();
    for round in 2..52u32 {
        let old_i = std::fs::read(ovs.stanzas_path()).unwrap();
        let old_n = std::fs::read(ovs.nmstate_path()).unwrap();
        set_tags(round);
        let mut child = ovs.tool_cmd(&["-q", "apply"]).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span * 12 / 10)));
        let _ = child.kill();
        let _ = child.wait();
        let mid_i = std::fs::read(ovs.stanzas_path()).unwrap();
        let mid_n = std::fs::read(ovs.nmstate_path()).unwrap();
        ifquery_ok(&ovs.interfaces_path());
        stanzas_ok(&ovs);
        nmstate_ok(&ovs.nmstate_path());
        ovs.tool_ok(&["-q", "apply"]);
        let new_i = std::fs::read(ovs.stanzas_path()).unwrap();
        let new_n = std::fs::read(ovs.nmstate_path()).unwrap();
        assert!(
            mid_i == old_i || mid_i == new_i,
            "round {round}: the stanzas file is neither old nor new"
        );
        assert!(
            mid_n == old_n || mid_n == new_n,
            "round {round}: nmstate is neither old nor new"
        );
        let tag = ovs.vsctl(&["get", "Port", "veth2005i0", "tag"]);
        assert_eq!(
            tag,
            (100 + round % 7 + 5 % 3).to_string(),
            "round {round}: converged"
        );
        let temps: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(
            temps.is_empty(),
            "round {round}: leftover temporary files {temps:?}"
        );
    }
    assert_eq!(foreign_snapshot(&ovs), foreign);
    assert_eq!(
        std::fs::read_to_string(ovs.interfaces_path()).unwrap(),
        seeded_admin_part(&ovs)
    );
}

/// A stale temporary file of a killed writer is removed by the next run even when it has
/// nothing to change.
#[test]
fn stale_temporary_files_are_cleaned() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.veth("vethT1");
    ovs.tool_ok(&["apply"]);
    let stale = ovs
        .stanzas_path()
        .parent()
        .unwrap()
        .join(".ovs-autoattach.dead01.tmp");
    std::fs::write(&stale, "half a file").unwrap();
    ovs.tool_ok(&["apply"]);
    assert!(!stale.exists());
}

#[test]
fn ovsdb_down_or_wedged_fails_fast_and_writes_nothing() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.veth("vethW1");
    ovs.write_config("timeout_secs: 2\n");
    // Stopped: refused at once.
    ovs.stop("ovsdb");
    for args in [&["apply"][..], &["plug", "vethW1"][..]] {
        let t = Instant::now();
        let out = ovs.tool_code(args, 1);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{args:?} took {:?}",
            t.elapsed()
        );
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("is openvswitch-switch running?"), "{out}");
    }
    assert!(!ovs.stanzas_path().exists() && !ovs.nmstate_path().exists());
}

#[test]
fn wedged_ovsdb_is_bounded_by_the_timeout() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.veth("vethW2");
    ovs.write_config("timeout_secs: 2\n");
    let pid: i32 = std::fs::read_to_string(ovs.dir.join("ovsdb.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let t = Instant::now();
    let out = ovs.tool(&["apply"]);
    let took = t.elapsed();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    assert!(
        all.contains("did not answer") && all.contains("within 2 s"),
        "{all}"
    );
    assert!(
        !ovs.stanzas_path().exists(),
        "no file from an uncommitted state"
    );
    ovs.tool_ok(&["apply"]);
}

#[test]
fn second_apply_waits_for_the_lock_and_stale_lock_files_do_not_block() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.veth("vethL1");
    let run = ovs.dir.join("fresh/run");
    ovs.write_config(&format!("run_dir: {}\n", run.display()));
    // A missing run directory is created private.
    ovs.tool_ok(&["apply"]);
    assert_eq!(
        std::fs::metadata(&run).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // A lock file left by a killed process (the kernel released its flock) does not block.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(run.join("lock"))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = ovs.tool_cmd(&["apply"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "apply must wait while another run holds the lock"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let status = waiting.wait().unwrap();
    assert!(
        status.success(),
        "the waiting apply succeeds once the lock is free"
    );
    ovs.tool_ok(&["apply"]);
}

#[test]
fn planted_symlinks_are_not_followed() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.veth("vethS1");
    let run = ovs.dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let victim = ovs.dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, run.join("lock")).unwrap();
    let out = ovs.tool_code(&["apply"], 1);
    assert!(out.contains("lock"), "{out}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(
        ovs.bridge_of("vethS1"),
        None,
        "nothing done without the lock"
    );
    // A planted symlink named like a temporary file is neither followed nor removed.
    std::fs::remove_file(run.join("lock")).unwrap();
    let trap = ovs
        .stanzas_path()
        .parent()
        .unwrap()
        .join(".ovs-autoattach.trap.tmp");
    std::fs::create_dir_all(trap.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &trap).unwrap();
    ovs.tool_ok(&["apply"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

/// Hostile guest configurations: each NIC is refused with a clear message naming the problem,
/// nothing is attached for it, and the other NICs proceed.
#[test]
fn hostile_guest_configurations_are_refused() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    let cases: [(u32, Vec<u8>, &str); 8] = [
        (
            600,
            b"net0: virtio,bridge=ovsbr0,tag=0\n".to_vec(),
            "tag: VLAN ID 0 is outside 1-4094",
        ),
        (
            601,
            b"net0: virtio,bridge=ovsbr0,tag=4095\n".to_vec(),
            "VLAN ID 4095 is outside",
        ),
        (
            602,
            b"net0: virtio,bridge=ovsbr0,tag=70000\n".to_vec(),
            "VLAN ID 70000 is outside",
        ),
        (
            603,
            b"net0: virtio,bridge=ovsbr0,trunks=40-30\n".to_vec(),
            "trunk range \"40-30\" is reversed",
        ),
        (
            604,
            // A duplicated net0: the last line wins, and this one cannot be plugged.
            b"net0: virtio,bridge=ovsbr0\nnet0: virtio,bridge=ovsbr0,trunks=5000\n".to_vec(),
            "trunk VLAN ID 5000 is outside 0-4095",
        ),
        (
            605,
            b"net0: virtio,bridge=ovsbr0,tag=5,tag=6\n".to_vec(),
            "key \"tag\" appears more than once",
        ),
        (
            606,
            [
                b"net0: virtio,bridge=ovsbr0,tag=5,x=".to_vec(),
                vec![b'a'; 10 * 1024 * 1024],
                b"\n".to_vec(),
            ]
            .concat(),
            "larger than any guest configuration",
        ),
        (
            607,
            [
                b"\x00\xff\xfe garbage \x01\n".to_vec(),
                b"net0: \xff\xfe,bridge=ovsbr0\n".to_vec(),
            ]
            .concat(),
            "net0: item",
        ),
    ];
    for (vmid, content, _) in &cases {
        std::fs::write(
            ovs.dir.join(format!("pve/qemu-server/{vmid}.conf")),
            content,
        )
        .unwrap();
        ovs.tap(&format!("tap{vmid}i0"));
    }
    // Garbage lines that are not net<n> are ignored, as Proxmox itself does.
    ovs.guest(
        "qemu-server",
        608,
        "\u{1}\u{2}junk line\nthis is not a key\nnet0: virtio,bridge=ovsbr0,tag=8\n",
    );
    ovs.tap("tap608i0");
    let out = ovs.tool_code(&["apply"], 1);
    for (vmid, _, msg) in &cases {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("tap{vmid}i0: not attached")))
            .unwrap_or_else(|| panic!("{vmid}: {out}"));
        assert!(line.contains(msg), "{vmid}: {line}");
        assert_eq!(ovs.bridge_of(&format!("tap{vmid}i0")), None);
    }
    assert_eq!(ovs.vsctl(&["get", "Port", "tap608i0", "tag"]), "8");
}

/// Hostile tool configurations and interfaces files: refused with a clear message, nothing
/// changed.
#[test]
fn hostile_files_are_refused_untouched() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.veth("vethH1");
    let good = std::fs::read_to_string(ovs.config_path()).unwrap();
    for (extra, msg) in [
        ("colour: blue\n", "unknown field `colour`"),
        ("timeout_secs: soon\n", "timeout_secs"),
        ("bridge: \"br;rm -rf\"\n", "bridge:"),
        ("prefixes: tap\n", "prefixes"),
    ] {
        std::fs::write(ovs.config_path(), format!("{good}{extra}")).unwrap();
        let out = ovs.tool_code(&["apply"], 2);
        assert!(
            out.contains("config.yaml") && out.contains(msg),
            "{extra}: {out}"
        );
        assert_eq!(ovs.bridge_of("vethH1"), None);
    }
    std::fs::write(ovs.config_path(), &good).unwrap();

    let big = format!("{HEAD}{}", "# padding\n".repeat(500_000));
    std::fs::write(ovs.interfaces_path(), &big).unwrap();
    let out = ovs.tool_code(&["apply"], 1);
    assert!(
        out.contains("more than the") && out.contains("unchanged"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(ovs.interfaces_path()).unwrap(), big);
    // CRLF endings and a missing final newline are the admin's choice and are kept.
    for content in [
        format!("auto lo\r\niface lo inet loopback\r\n{}", ovs.source_line()),
        format!("{}auto lo\niface lo inet loopback", ovs.source_line()),
    ] {
        std::fs::write(ovs.interfaces_path(), &content).unwrap();
        ovs.tool_ok(&["apply"]);
        assert_eq!(
            std::fs::read_to_string(ovs.interfaces_path()).unwrap(),
            content
        );
    }
}

/// A unix socket that listens but never accepts, its backlog full: a wedged ovsdb-server as a
/// client sees it. A blocking `connect(2)` to it waits until someone accepts, that is forever.
struct Stuck {
    path: PathBuf,
    _listener: UnixListener,
    _queued: Vec<OwnedFd>,
}

impl Stuck {
    fn new(path: &Path) -> Stuck {
        let listener = UnixListener::bind(path).unwrap();
        // SAFETY: listen(2) on our own socket; listening again only lowers the backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        // SAFETY: sockaddr_un is plain old data.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *d = *s as libc::c_char;
        }
        let mut queued = Vec::new();
        loop {
            assert!(queued.len() < 16, "the backlog never filled");
            // SAFETY: socket(2); the descriptor is owned right away.
            let fd = unsafe {
                libc::socket(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            };
            assert!(fd >= 0);
            // SAFETY: a fresh descriptor.
            let sock = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a valid, NUL-terminated sockaddr_un.
            let r = unsafe {
                libc::connect(
                    sock.as_raw_fd(),
                    (&raw const addr).cast::<libc::sockaddr>(),
                    std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                )
            };
            if r != 0 {
                // Full: a blocking connect would wait here.
                assert_eq!(
                    std::io::Error::last_os_error().raw_os_error(),
                    Some(libc::EAGAIN)
                );
                break;
            }
            queued.push(sock);
        }
        Stuck {
            path: path.to_path_buf(),
            _listener: listener,
            _queued: queued,
        }
    }
}

/// A QEMU guest NIC that Proxmox describes, so that every command reaches OVSDB for it.
fn proxmox_nic(ovs: &Ovs) {
    ovs.guest(
        "qemu-server",
        100,
        "net0: virtio=BC:24:11:00:00:01,bridge=ovsbr0,tag=10\n",
    );
    ovs.tap("tap100i0");
}

/// Against an OVSDB socket that listens but never accepts, `status`, `apply` and `plug` give up
/// after `timeout_secs` and say what they waited for; nothing is written.
#[test]
fn a_socket_that_never_accepts_bounds_status_apply_and_plug() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    proxmox_nic(&ovs);
    let stuck = Stuck::new(&ovs.dir.join("stuck.sock"));
    ovs.write_config(&format!(
        "ovsdb: unix:{}\ntimeout_secs: 1\n",
        stuck.path.display()
    ));
    let expected = format!(
        "timed out after 1 s connecting to OVSDB at unix:{} (is ovsdb-server running and answering?)",
        stuck.path.display()
    );
    for args in [&["status"][..], &["apply"], &["plug", "tap100i0"]] {
        let t = Instant::now();
        let out = ovs.tool(args);
        let took = t.elapsed();
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{args:?} took {took:?}"
        );
        assert!(all.contains(&expected), "{args:?}: {all}");
    }
    assert!(!ovs.stanzas_path().exists() && !ovs.nmstate_path().exists());
    assert_eq!(ovs.bridge_of("tap100i0"), None);
}

/// An `apply` that holds the main lock while it hangs on a wedged OVSDB (one that answers the
/// switch check and nothing after it, with a long `timeout_secs`) does not hold up a `plug` (a guest start) for
/// longer than `plug`'s bound: the `plug` gives up, exits 1 and names the lock.
#[test]
fn a_plug_behind_a_stuck_apply_gives_up_within_its_bound() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    proxmox_nic(&ovs);
    // The server runs in the switch's namespace, as ovsdb-server does. It answers a client's
    // first request (the switch check every run makes before it takes the lock: the bridge
    // names, among them ovsbr0, a link here) and nothing after it: a server that wedges
    // mid-run.
    let sock = ovs.dir.join("silent.sock");
    let server = r#"
import json, socket, sys, threading
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
held = []
def serve(c):
    buf = b""
    while True:
        data = c.recv(65536)
        if not data:
            return
        buf += data
        try:
            req = json.loads(buf)
        except ValueError:
            continue
        reply = {"id": req["id"], "result": [{"rows": [{"name": "ovsbr0"}]}], "error": None}
        c.sendall(json.dumps(reply).encode())
        held.append(c)
        return
while True:
    c = s.accept()[0]
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
    // Killed however the test ends, and holding none of the test's output open: a server left
    // behind would keep the test runner's pipe open for ever.
    let _silent = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &ovs.ns, "python3", "-c", server])
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "the silent server never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ovs.write_config(&format!(
        "ovsdb: unix:{}\ntimeout_secs: 30\n",
        sock.display()
    ));
    let lock = ovs.dir.join("run/lock");
    let mut apply = ovs.tool_cmd(&["apply"]).spawn().unwrap();
    // Until the apply holds the lock exclusively: a shared `flock -n` fails.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("flock")
        .args(["-n", "-s"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "apply never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let out = ovs.tool(&["plug", "tap100i0"]);
    let took = t.elapsed();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let still_waiting = apply.try_wait().unwrap().is_none();
    let _ = apply.kill();
    let _ = apply.wait();
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        took >= PLUG_WAIT && took < PLUG_WAIT + Duration::from_secs(2),
        "plug took {took:?}"
    );
    assert!(
        all.contains(&format!(
            "another ovs-autoattach run held {} for more than {} s; gave up",
            lock.display(),
            PLUG_WAIT.as_secs()
        )),
        "{all}"
    );
    assert!(still_waiting, "the apply was still hanging on OVSDB");
    assert_eq!(ovs.bridge_of("tap100i0"), None);
}

/// A child process killed and reaped when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every path under `dir`, `dir` included, without following links.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if std::fs::symlink_metadata(dir).unwrap().is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}

/// Run under umask 000 with every configured path in directories that do not exist yet: nothing
/// the tool creates is group- or world-writable.
#[test]
fn under_umask_000_nothing_created_is_group_or_world_writable() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    proxmox_nic(&ovs);
    let fresh = ovs.dir.join("fresh");
    let stanzas = fresh.join("network/interfaces.d/ovs-autoattach");
    let nmstate = fresh.join("nmstate/dynamic/nmstate-dynamic.yaml");
    let run = fresh.join("run/ovs-autoattach");
    std::fs::write(
        ovs.interfaces_path(),
        format!("source {}/*\n", stanzas.parent().unwrap().display()),
    )
    .unwrap();
    ovs.write_config(&format!(
        "stanzas_file: {}\nnmstate_file: {}\nrun_dir: {}\n",
        stanzas.display(),
        nmstate.display(),
        run.display()
    ));
    // The shell's own directory shows that the umask is in force.
    let control = ovs.dir.join("control");
    let out = common::run(
        Command::new("sh")
            .arg("-c")
            .arg("umask 000; mkdir \"$0\"; exec \"$@\"")
            .arg(&control)
            .arg("ip")
            .args(["netns", "exec", &ovs.ns, BIN, "--config"])
            .arg(ovs.config_path())
            .arg("apply"),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert_eq!(
        std::fs::metadata(&control).unwrap().permissions().mode() & 0o777,
        0o777,
        "the test runs the tool under umask 000"
    );
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("ovsbr0"));
    for made in [
        &stanzas,
        &nmstate,
        &run.join("lock"),
        &run.join("files.lock"),
    ] {
        assert!(made.exists(), "{} was not created", made.display());
    }
    let paths = walk(&fresh);
    assert!(paths.len() >= 10, "{paths:?}");
    for p in paths {
        let mode = std::fs::symlink_metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "{} is {:o}", p.display(), mode & 0o7777);
    }
}

/// A symbolic link planted at the path of a file the tool owns whole (its stanzas file, the
/// nmstate file) is refused with the reason, and the link and its target are left as they are;
/// everything else is still done. The host's interfaces file is Proxmox's: a symlinked one is
/// still written through.
#[test]
fn a_symlink_at_an_owned_files_path_is_refused_and_left_untouched() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    proxmox_nic(&ovs);
    // The interfaces file as a link to the real file, with an empty 0.1.0 block to clean.
    let real_interfaces = ovs.dir.join("etc/interfaces.real");
    seed_interfaces(&ovs);
    std::fs::rename(ovs.interfaces_path(), &real_interfaces).unwrap();
    std::os::unix::fs::symlink(&real_interfaces, ovs.interfaces_path()).unwrap();
    let victim = ovs.dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let absent = ovs.dir.join("absent");
    std::os::unix::fs::symlink(&victim, ovs.stanzas_path()).unwrap();
    std::os::unix::fs::symlink(&absent, ovs.nmstate_path()).unwrap();
    let refusal = |path: &Path, verb: &str| {
        format!(
            "refusing to {verb} {}: it is a symbolic link; the tool owns this file whole and never writes through a link",
            path.display()
        )
    };
    let untouched = || {
        assert_eq!(std::fs::read_link(ovs.stanzas_path()).unwrap(), victim);
        assert_eq!(std::fs::read_link(ovs.nmstate_path()).unwrap(), absent);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(!absent.exists(), "nothing created through a dangling link");
    };

    let out = ovs.tool_code(&["apply"], 1);
    for path in [ovs.stanzas_path(), ovs.nmstate_path()] {
        assert!(out.contains(&refusal(&path, "write")), "{out}");
    }
    untouched();
    assert_eq!(
        ovs.bridge_of("tap100i0").as_deref(),
        Some("ovsbr0"),
        "OVS is repaired regardless"
    );
    // The interfaces file is not cleaned while the tool's file is not written.
    assert!(
        std::fs::symlink_metadata(ovs.interfaces_path())
            .unwrap()
            .is_symlink()
    );

    let out = ovs.tool_code(&["plug", "tap100i0"], 1);
    assert!(
        out.contains(&refusal(&ovs.stanzas_path(), "write")),
        "{out}"
    );
    untouched();
    let out = ovs.tool_code(&["status"], 1);
    assert!(
        out.contains(&ovs.stanzas_path().display().to_string()),
        "{out}"
    );
    untouched();
    let out = ovs.tool_code(&["clear"], 1);
    assert!(
        out.contains(&refusal(&ovs.stanzas_path(), "remove")),
        "{out}"
    );
    untouched();

    // Only the nmstate link left: the tool's file is written, and the interfaces file is
    // cleaned through its link.
    std::fs::remove_file(ovs.stanzas_path()).unwrap();
    let out = ovs.tool_code(&["apply"], 1);
    assert!(
        out.contains(&refusal(&ovs.nmstate_path(), "write")),
        "{out}"
    );
    assert!(
        !out.contains(&refusal(&ovs.stanzas_path(), "write")),
        "{out}"
    );
    assert!(block_ports(&ovs).contains(&"tap100i0".to_string()));
    assert!(
        std::fs::symlink_metadata(ovs.interfaces_path())
            .unwrap()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(&real_interfaces).unwrap(),
        seeded_admin_part(&ovs)
    );
    assert_eq!(std::fs::read_link(ovs.nmstate_path()).unwrap(), absent);
    assert!(!absent.exists());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}
