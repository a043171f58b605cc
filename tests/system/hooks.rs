//! The callers that keep the invariant on a Proxmox host, run for real: the guest hookscript
//! against a real OVS with fake guests, the ifupdown2 hook inside Debian's real ifupdown2
//! (`ifreload -a`, `ifdown`/`ifup` of a bridge, which runs `del-br`), and install-hookscript
//! with stubbed `qm`, `pct` and `ovs-vsctl`.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BIN, Ovs, text};

fn all(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn write_exe(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the hookscript the way Proxmox does (`SCRIPT <vmid> <phase>`), inside the test namespace,
/// with the test binary and configuration.
fn hook(ovs: &Ovs, vmid: &str, phase: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = common::run(
        Command::new("ip")
            .args(["netns", "exec", &ovs.ns, "env"])
            .arg(format!("OVS_AUTOATTACH_BIN={BIN}"))
            .arg(format!(
                "OVS_AUTOATTACH_CONFIG={}",
                ovs.config_path().display()
            ))
            .arg(common::hookscript())
            .args([vmid, phase]),
    );
    (out, started.elapsed())
}

fn hook_ok(ovs: &Ovs, vmid: &str, phase: &str) -> String {
    let (out, _) = hook(ovs, vmid, phase);
    assert_eq!(
        out.status.code(),
        Some(0),
        "hookscript {vmid} {phase}:\n{}",
        all(&out)
    );
    all(&out)
}

#[test]
fn hookscript_plugs_on_post_start_and_prunes_on_post_stop() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    std::fs::write(ovs.interfaces_path(), "auto lo\niface lo inet loopback\n").unwrap();
    ovs.guest(
        "qemu-server",
        100,
        "name: web\nnet0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr1,tag=10\nnet1: virtio=BC:24:11:A3:DA:B2,bridge=ovsbr0,tag=5,trunks=20;30\n",
    );
    ovs.guest(
        "lxc",
        200,
        "net0: name=eth0,bridge=vmbr1,hwaddr=12:34:56:78:90:12,ip=dhcp,trunks=40;41,type=veth\n",
    );
    ovs.guest("qemu-server", 1000, "net0: virtio,bridge=vmbr1,tag=99\n");
    ovs.tap("tap100i0");
    ovs.tap("tap100i1");
    ovs.veth("veth200i0");
    // Another guest whose name starts like VM 100's NICs: not VM 100's business.
    ovs.tap("tap1000i0");

    // pre-start and pre-stop do nothing.
    hook_ok(&ovs, "100", "pre-start");
    assert_eq!(ovs.bridge_of("tap100i0"), None);

    let out = hook_ok(&ovs, "100", "post-start");
    println!("post-start 100:\n{out}");
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("vmbr1"));
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
    assert_eq!(ovs.bridge_of("tap100i1").as_deref(), Some("ovsbr0"));
    assert_eq!(ovs.vlan("tap100i1"), "5 [20, 30] native-untagged");
    assert_eq!(ovs.owner("tap100i0").as_deref(), Some("ovs-autoattach"));
    assert_eq!(ovs.bridge_of("tap1000i0"), None, "VM 1000 is not VM 100");
    assert_eq!(ovs.bridge_of("veth200i0"), None, "CT 200 not started yet");

    hook_ok(&ovs, "200", "post-start");
    assert_eq!(ovs.bridge_of("veth200i0").as_deref(), Some("vmbr1"));
    assert_eq!(ovs.vlan("veth200i0"), "[] [40, 41] []");

    let block = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    for p in ["tap100i0", "tap100i1", "veth200i0"] {
        assert!(block.contains(&format!("iface {p} inet manual")), "{block}");
    }

    // VM 100 stops: its taps vanish, their rows stay behind in OVS until post-stop.
    hook_ok(&ovs, "100", "pre-stop");
    ovs.del_link("tap100i0");
    ovs.del_link("tap100i1");
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("vmbr1"));
    let out = hook_ok(&ovs, "100", "post-stop");
    println!("post-stop 100:\n{out}");
    assert_eq!(ovs.bridge_of("tap100i0"), None);
    assert_eq!(ovs.bridge_of("tap100i1"), None);
    assert_eq!(
        ovs.bridge_of("veth200i0").as_deref(),
        Some("vmbr1"),
        "CT 200 keeps running"
    );
    let block = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    assert!(!block.contains("tap100i"), "{block}");
    assert!(block.contains("iface veth200i0 inet manual"), "{block}");
}

#[test]
fn hookscript_never_fails_a_guest() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest("qemu-server", 100, "net0: virtio,bridge=ovsbr0\n");
    ovs.tap("tap100i0");

    // Bad arguments are logged, never an error.
    for (vmid, phase) in [
        ("abc", "post-start"),
        ("100; reboot", "post-start"),
        ("0100", "post-start"),
        ("", ""),
        ("100", "migrate"),
    ] {
        let out = hook_ok(&ovs, vmid, phase);
        assert!(out.contains("ovs-autoattach-hookscript:"), "{out}");
    }
    assert_eq!(ovs.bridge_of("tap100i0"), None);

    // A broken guest configuration: the tool exits 1, the hook still 0.
    ovs.guest("qemu-server", 100, "net0: virtio,bridge=ovsbr0,tag=5000\n");
    let out = hook_ok(&ovs, "100", "post-start");
    assert!(out.contains("exited 1"), "{out}");

    // The tool missing (package removed, snippet left behind): 0.
    let out = common::run(
        Command::new("ip")
            .args(["netns", "exec", &ovs.ns, "env"])
            .arg("OVS_AUTOATTACH_BIN=/nonexistent/ovs-autoattach")
            .arg(common::hookscript())
            .args(["100", "post-start"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(all(&out).contains("missing"), "{}", all(&out));

    // OVSDB down: pre-start returns at once, post-start reports and still returns 0.
    ovs.stop("ovsdb");
    let (out, took) = hook(&ovs, "100", "pre-start");
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(
        took < Duration::from_millis(500),
        "pre-start took {took:?} with ovsdb down"
    );
    let (out, took) = hook(&ovs, "100", "post-start");
    println!("post-start with ovsdb down ({took:?}):\n{}", all(&out));
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(all(&out).contains("exited 1"), "{}", all(&out));
    assert!(took < Duration::from_secs(15), "{took:?}");
    let (out, _) = hook(&ovs, "100", "post-stop");
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
}

/// On the target node of a migration, `post-start` runs while the guest's configuration is still
/// filed under the source node: the NICs Proxmox plugged must stay as they are, never be taken
/// for unconfigured NICs (default bridge, untagged).
#[test]
fn hookscript_leaves_an_incoming_migration_alone() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.add_bridge("vmbr1");
    std::fs::create_dir_all(ovs.dir.join("pve/nodes/source/qemu-server")).unwrap();
    std::fs::write(
        ovs.dir.join("pve/nodes/source/qemu-server/300.conf"),
        "net0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr1,tag=10\n",
    )
    .unwrap();
    ovs.tap("tap300i0");
    // Proxmox's tap_plug on the target.
    ovs.vsctl(&["add-port", "vmbr1", "tap300i0", "tag=10"]);

    // The tool reads the source node's configuration: the port is right as it is.
    let out = hook_ok(&ovs, "300", "post-start");
    assert!(out.contains("0 attached, 0 updated, 0 moved"), "{out}");
    assert_eq!(ovs.bridge_of("tap300i0").as_deref(), Some("vmbr1"));
    assert_eq!(ovs.vlan("tap300i0"), "10 [] []");

    // Migration done: the configuration is this node's now, and the port is adopted as it is.
    ovs.guest(
        "qemu-server",
        300,
        "net0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr1,tag=10\n",
    );
    hook_ok(&ovs, "300", "post-start");
    assert_eq!(ovs.bridge_of("tap300i0").as_deref(), Some("vmbr1"));
    assert_eq!(ovs.vlan("tap300i0"), "10 [] []");
    assert_eq!(ovs.owner("tap300i0"), None, "adopted, never marked");
}

// --- the ifupdown2 hook ---

const GUESTS: [(&str, &str, &str); 4] = common::RELOAD_GUESTS;

fn host() -> Ovs {
    Ovs::reload_host()
}

fn assert_guests_in_place(ovs: &Ovs, after: &str) {
    for (p, bridge, vlan) in GUESTS {
        assert_eq!(
            ovs.bridge_of(p).as_deref(),
            Some(bridge),
            "{p} after {after}"
        );
        assert_eq!(ovs.vlan(p), vlan, "{p} after {after}");
        assert_eq!(
            ovs.owner(p).as_deref(),
            Some("ovs-autoattach"),
            "{p} after {after}"
        );
    }
}

/// A wrapper around the test binary that records each call (`IFACE args`) and runs the tool.
fn recording_bin(ovs: &Ovs) -> (PathBuf, PathBuf) {
    let log = ovs.dir.join("calls.log");
    let wrapper = ovs.dir.join("ovs-autoattach-recorder");
    write_exe(
        &wrapper,
        &format!(
            "#!/bin/sh\necho \"${{IFACE:-?}} $*\" >> {}\nexec {BIN} \"$@\"\n",
            log.display()
        ),
    );
    (wrapper, log)
}

fn calls(log: &Path) -> Vec<String> {
    let calls: Vec<String> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    let _ = std::fs::remove_file(log);
    calls
}

fn ifupdown_ok(ovs: &Ovs, hooks: &[(&str, &str)], script: &str) -> String {
    let started = Instant::now();
    let out = ovs.ifupdown(hooks, script);
    let all = all(&out);
    assert!(out.status.success(), "{script}:\n{all}");
    println!("{script}: {:?}\n{all}", started.elapsed());
    all
}

/// On upstream ifupdown2 (no condone regex) nothing protects the guest ports: `ifreload -a`
/// drops them, and the hook must put them back, with tags, trunks and mark, before ifreload
/// returns. The tool's stanzas are not `auto`, so only the OVS bridges trigger a run.
#[test]
fn if_up_hook_restores_guest_ports_after_ifreload() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.write_config("interfaces_file: null\n");
    ovs.tool_ok(&["apply"]);
    assert_guests_in_place(&ovs, "apply");

    // Control: without the hook the reload really drops every guest port.
    ifupdown_ok(&ovs, &[], "ifreload -a");
    for (p, _, _) in GUESTS {
        assert_eq!(
            ovs.bridge_of(p),
            None,
            "ifreload -a without the hook keeps {p}"
        );
    }

    ovs.tool_ok(&["apply"]);
    let (bin, log) = recording_bin(&ovs);
    let hook = common::if_up_hook();
    ifupdown_ok(
        &ovs,
        &[("ovs-autoattach", &hook)],
        &format!("export OVS_AUTOATTACH_BIN={}; ifreload -a", bin.display()),
    );
    assert_guests_in_place(&ovs, "ifreload -a with the hook");
    assert_eq!(ovs.bridge_of("eno1").as_deref(), Some("ovsbr0"));
    assert_eq!(ovs.bridge_of("eno2").as_deref(), Some("vmbr1"));
    let mut seen = calls(&log);
    seen.sort();
    assert_eq!(
        seen,
        ["ovsbr0 apply", "vmbr1 apply"],
        "lo, eno1 and eno2 are not OVS bridges and run nothing"
    );
}

/// `ifdown ovsbr0` runs `del-br`, taking every port with it; `ifup ovsbr0` re-creates the bridge
/// with its uplink only. The hook puts the guest ports back.
#[test]
fn if_up_hook_restores_guest_ports_after_ifdown_ifup_of_a_bridge() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.write_config("interfaces_file: null\n");
    ovs.tool_ok(&["apply"]);
    let hook = common::if_up_hook();
    let (bin, log) = recording_bin(&ovs);
    let out = ifupdown_ok(
        &ovs,
        &[("ovs-autoattach", &hook)],
        &format!(
            "export OVS_AUTOATTACH_BIN={bin}; ifdown ovsbr0; ovs-vsctl br-exists ovsbr0 && exit 9; ifup ovsbr0",
            bin = bin.display()
        ),
    );
    assert_guests_in_place(&ovs, &format!("ifdown ovsbr0; ifup ovsbr0\n{out}"));
    // (The uplink eno1 is ifupdown2's business: `ifup ovsbr0` alone does not bring its OVSPort
    // stanza up again; `ifup -a` or `ifreload -a` would.)
    assert_eq!(
        ovs.vsctl(&["get", "Bridge", "ovsbr0", "datapath_type"]),
        "netdev"
    );
    assert_eq!(calls(&log), ["ovsbr0 apply"]);
}

/// ifupdown2 runs every file of `if-up.d`, whatever its name (it does not filter names as
/// run-parts does), so a copy dpkg leaves beside a changed conffile would run the tool a second
/// time on every reload. Only the file named exactly `ovs-autoattach` acts.
#[test]
fn if_up_hook_copies_under_other_names_do_nothing() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.write_config("interfaces_file: null\n");
    ovs.tool_ok(&["apply"]);
    let hook = common::if_up_hook();
    let (bin, log) = recording_bin(&ovs);
    let reload = format!("export OVS_AUTOATTACH_BIN={}; ifreload -a", bin.display());
    let copies = [
        ("ovs-autoattach.dpkg-old", hook.as_str()),
        ("ovs-autoattach.dpkg-dist", hook.as_str()),
        ("ovs-autoattach.dpkg-new", hook.as_str()),
        ("ovs-autoattach~", hook.as_str()),
    ];
    // The copies alone: ifupdown2 runs them (upstream ifupdown2 drops the guest ports, and
    // nothing puts them back), and they call nothing.
    ifupdown_ok(&ovs, &copies, &reload);
    assert_eq!(calls(&log), Vec::<String>::new(), "a copy ran the tool");
    for (p, _, _) in GUESTS {
        assert_eq!(
            ovs.bridge_of(p),
            None,
            "{p}: only the real hook restores it"
        );
    }
    // With the real hook beside them: one `apply` per bridge, not one per copy.
    let mut hooks = copies.to_vec();
    hooks.push(("ovs-autoattach", hook.as_str()));
    ifupdown_ok(&ovs, &hooks, &reload);
    let mut seen = calls(&log);
    seen.sort();
    assert_eq!(seen, ["ovsbr0 apply", "vmbr1 apply"]);
    assert_guests_in_place(&ovs, "ifreload -a with the hook and its copies");
}

/// The hook itself, run the way ifupdown2 runs it, for each kind of interface and failure: it
/// always exits 0, and runs the tool only for OVS bridges and guest NICs.
#[test]
fn if_up_hook_ignores_other_interfaces_and_never_fails() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    let log = ovs.dir.join("stub.log");
    let stub = ovs.dir.join("stub-ok");
    write_exe(
        &stub,
        &format!("#!/bin/sh\necho \"$IFACE $*\" >> {}\n", log.display()),
    );
    let failing = ovs.dir.join("stub-fail");
    write_exe(
        &failing,
        &format!(
            "#!/bin/sh\necho \"$IFACE $*\" >> {}\necho 'ovs-autoattach: error: boom' >&2\nexit 1\n",
            log.display()
        ),
    );
    let hook = common::if_up_hook();
    let run_hook = |bin: &Path, iface: &str, mode: &str| -> String {
        let out = ovs.ifupdown(
            &[("ovs-autoattach", &hook)],
            &format!(
                "env IFACE={iface} MODE={mode} PHASE=post-up OVS_AUTOATTACH_BIN={} /etc/network/if-up.d/ovs-autoattach",
                bin.display()
            ),
        );
        assert_eq!(out.status.code(), Some(0), "{iface}: {}", all(&out));
        all(&out)
    };

    for iface in ["lo", "eno1", "eno2", "nosuchdev", "--all"] {
        run_hook(&stub, iface, "start");
    }
    assert_eq!(
        calls(&log),
        Vec::<String>::new(),
        "non-OVS interfaces run nothing"
    );

    run_hook(&stub, "ovsbr0", "start");
    run_hook(&stub, "vmbr1", "start");
    run_hook(&stub, "tap100i0", "start");
    run_hook(&stub, "veth200i0", "start");
    run_hook(&stub, "ovsbr0", "stop");
    assert_eq!(
        calls(&log),
        [
            "ovsbr0 apply",
            "vmbr1 apply",
            "tap100i0 plug tap100i0",
            "veth200i0 plug veth200i0"
        ]
    );

    // The tool fails: logged, exit 0.
    let out = run_hook(&failing, "ovsbr0", "start");
    assert!(out.contains("boom") && out.contains("exited 1"), "{out}");
    assert_eq!(calls(&log), ["ovsbr0 apply"]);
    // The tool is gone (removed, not purged: this conffile stays): exit 0, silently.
    run_hook(Path::new("/nonexistent/ovs-autoattach"), "ovsbr0", "start");

    // OVSDB down: br-exists fails fast, exit 0, nothing run.
    ovs.stop("vswitchd");
    ovs.stop("ovsdb");
    let started = Instant::now();
    let out = run_hook(&stub, "ovsbr0", "start");
    assert!(out.contains("br-exists failed"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(calls(&log), Vec::<String>::new());
}

// --- install-hookscript ---

fn install_hookscript(dir: &Path, args: &[&str]) -> Output {
    common::run(
        Command::new(common::repo("hooks/install-hookscript"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    dir.join("bin").display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .arg("--pve-dir")
            .arg(dir.join("pve"))
            .arg("--snippets-dir")
            .arg(dir.join("snippets"))
            .args(args),
    )
}

/// install-hookscript on a fake node: `qm`, `pct` and `ovs-vsctl` are stubs on PATH that record
/// their arguments; ovsbr0 and vmbr1 are OVS bridges, vmbr0 a Linux bridge.
#[test]
fn install_hookscript_attaches_to_guests_on_ovs_bridges() {
    if common::without_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for d in ["bin", "pve/qemu-server", "pve/lxc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let log = dir.join("calls.log");
    for tool in ["qm", "pct"] {
        write_exe(
            &dir.join("bin").join(tool),
            &format!("#!/bin/sh\necho \"{tool} $*\" >> {}\n", log.display()),
        );
    }
    write_exe(
        &dir.join("bin/ovs-vsctl"),
        "#!/bin/sh\nfor a; do last=$a; done\ncase \"$last\" in ovsbr0|vmbr1) exit 0;; *) exit 2;; esac\n",
    );
    let guests = [
        (
            "qemu-server/100.conf",
            "name: a\nnet0: virtio=BC:24:11:A3:DA:B1,bridge=ovsbr0,tag=10\n",
        ),
        (
            "qemu-server/101.conf",
            "name: linux-bridge-only\nnet0: virtio=BC:24:11:A3:DA:B2,bridge=vmbr0\n",
        ),
        (
            "qemu-server/102.conf",
            "hookscript: local:snippets/backup-hook.pl\nnet0: virtio,bridge=vmbr0\nnet1: virtio,bridge=ovsbr0\n",
        ),
        (
            "qemu-server/103.conf",
            "hookscript: local:snippets/ovs-autoattach-hookscript\nnet0: virtio,bridge=ovsbr0\n",
        ),
        (
            "qemu-server/104.conf",
            "net0: virtio,bridge=vmbr0\n[PENDING]\nnet0: virtio,bridge=ovsbr0\n",
        ),
        ("qemu-server/105.conf", "name: no-nics\n"),
        (
            "lxc/200.conf",
            "hostname: ct\nnet0: name=eth0,bridge=vmbr1,hwaddr=12:34:56:78:90:12,ip=dhcp,type=veth\n",
        ),
    ];
    for (path, text) in guests {
        std::fs::write(dir.join("pve").join(path), text).unwrap();
    }

    let out = install_hookscript(dir, &["--dry-run"]);
    let printed = all(&out);
    println!("--dry-run:\n{printed}");
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(
        !log.exists(),
        "--dry-run ran {:?}",
        std::fs::read_to_string(&log)
    );
    assert!(!dir.join("snippets/ovs-autoattach-hookscript").exists());
    assert!(
        printed.contains(
            "would run: qm set 100 --hookscript local:snippets/ovs-autoattach-hookscript"
        ),
        "{printed}"
    );

    let out = install_hookscript(dir, &[]);
    let printed = all(&out);
    println!("install:\n{printed}");
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "qm set 100 --hookscript local:snippets/ovs-autoattach-hookscript\npct set 200 --hookscript local:snippets/ovs-autoattach-hookscript\n"
    );
    let snippet = dir.join("snippets/ovs-autoattach-hookscript");
    assert_eq!(
        std::fs::read(&snippet).unwrap(),
        std::fs::read(common::hookscript()).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&snippet).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // The guest with its own hookscript is left alone, with the line to chain ours.
    assert!(
        printed.contains("qm 102: has its own hookscript local:snippets/backup-hook.pl"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("{} \"$1\" \"$2\"", snippet.display())),
        "{printed}"
    );
    assert!(printed.contains("qm 103: already uses"), "{printed}");
    assert!(
        printed.contains("qm 101: no NIC on an OVS bridge"),
        "{printed}"
    );
    assert!(
        printed.contains("qm 104: no NIC on an OVS bridge"),
        "{printed}"
    );

    // Only the guests named.
    std::fs::remove_file(&log).unwrap();
    let out = install_hookscript(dir, &["200"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "pct set 200 --hookscript local:snippets/ovs-autoattach-hookscript\n"
    );
    let out = install_hookscript(dir, &["999"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let out = install_hookscript(dir, &["abc"]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));

    // --remove detaches ours only.
    std::fs::remove_file(&log).unwrap();
    let out = install_hookscript(dir, &["--remove"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "qm set 103 --delete hookscript\n"
    );
    assert!(
        snippet.exists(),
        "the snippet stays for guests migrating in"
    );

    // A failing qm is reported in the exit status.
    write_exe(
        &dir.join("bin/qm"),
        "#!/bin/sh\necho 'storage does not support snippets' >&2\nexit 255\n",
    );
    let out = install_hookscript(dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("failed: qm set 100"), "{}", all(&out));
}

/// The snippet an admin changed is never overwritten: install-hookscript refuses (exit 1,
/// nothing changed, with the diff command and `--force`), `--force` keeps the admin's copy as
/// `.bak`. A copy it installed itself (its sha256 recorded beside it) is updated silently.
#[test]
fn install_hookscript_never_overwrites_a_changed_snippet() {
    if common::without_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for d in ["bin", "pve/qemu-server", "pve/lxc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let snippet = dir.join("snippets/ovs-autoattach-hookscript");
    let record = dir.join("snippets/.ovs-autoattach-hookscript.sha256");
    let backup = dir.join("snippets/ovs-autoattach-hookscript.bak");
    let shipped = std::fs::read(common::hookscript()).unwrap();
    let sha = |data: &[u8]| -> String {
        let f = dir.join("sha.in");
        std::fs::write(&f, data).unwrap();
        common::check(Command::new("sha256sum").arg(&f))[..64].to_string()
    };

    // First install: copied, and recorded.
    let out = install_hookscript(dir, &["--snippet-only"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(all(&out).contains("copied"), "{}", all(&out));
    assert_eq!(std::fs::read(&snippet).unwrap(), shipped);
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().trim(),
        sha(&shipped)
    );
    let out = install_hookscript(dir, &["--snippet-only"]);
    assert!(all(&out).contains("is up to date"), "{}", all(&out));

    // A copy it installed, of another version: updated, no backup.
    let older = b"#!/bin/sh\n# an older version of ours\nexit 0\n";
    std::fs::write(&snippet, older).unwrap();
    std::fs::write(&record, format!("{}\n", sha(older))).unwrap();
    let out = install_hookscript(dir, &["--snippet-only"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert_eq!(std::fs::read(&snippet).unwrap(), shipped);
    assert!(!backup.exists());

    // The admin changes it: refused, in a dry run too, and nothing changes.
    let mut changed = shipped.clone();
    changed.extend_from_slice(b"logger 'local addition'\n");
    std::fs::write(&snippet, &changed).unwrap();
    for args in [&["--snippet-only"][..], &["--dry-run"], &[]] {
        let out = install_hookscript(dir, args);
        let printed = all(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {printed}");
        assert!(
            printed.contains("changed locally?")
                && printed.contains("diff -u")
                && printed.contains("--force"),
            "{printed}"
        );
        assert_eq!(std::fs::read(&snippet).unwrap(), changed, "{args:?}");
        assert!(!backup.exists(), "{args:?}");
    }
    // --force replaces it and keeps the admin's copy.
    let out = install_hookscript(dir, &["--snippet-only", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(all(&out).contains(".bak"), "{}", all(&out));
    assert_eq!(std::fs::read(&snippet).unwrap(), shipped);
    assert_eq!(std::fs::read(&backup).unwrap(), changed);
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().trim(),
        sha(&shipped)
    );

    // A copy that differs and was never recorded (another tool put it there): refused too.
    std::fs::remove_file(&record).unwrap();
    std::fs::write(&snippet, b"#!/bin/sh\nexit 0\n").unwrap();
    let out = install_hookscript(dir, &["--snippet-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
}
