//! The Debian package, for real: built with cargo-deb from the release build, its contents
//! listed, checked by lintian, installed on this machine, upgraded in place with Open vSwitch up
//! (inside a test namespace), removed with Open vSwitch down, and purged without a trace. And the
//! boot unit checked by `systemd-analyze verify`.
//!
//! Installing touches the real system, so everything is one test function that restores the
//! state on the way out, also when it fails. The maintainer scripts run the tool with
//! `OVS_AUTOATTACH_CONFIG` pointing at the test OVS's configuration (dpkg passes its environment
//! to them), so they never touch the host's /etc/network/interfaces; nothing is started, and the
//! system /run/openvswitch is never mounted over outside a private mount namespace.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Ovs, text};

const PKG: &str = "ovs-autoattach";

/// Where enabling the restart unit links it.
const RESTART_WANTS: [&str; 2] = [
    "/etc/systemd/system/ovs-vswitchd.service.wants/ovs-autoattach-ovs-restart.service",
    "/etc/systemd/system/openvswitch-switch.service.wants/ovs-autoattach-ovs-restart.service",
];

fn all(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = common::run(cmd);
    assert!(out.status.success(), "{cmd:?}:\n{}", all(&out));
    all(&out)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// dpkg's two-letter state of the package (`ii` installed, `rc` removed with conffiles), if
/// dpkg knows it at all.
fn dpkg_state() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", PKG])
        .output()
        .ok()?;
    let s = text(&out.stdout);
    (out.status.success() && s.len() >= 2).then(|| s[..2].to_string())
}

fn installed() -> bool {
    dpkg_state().is_some_and(|s| s == "ii")
}

/// Anything of the package on the system: installed, half-installed or conffiles left.
fn present() -> bool {
    dpkg_state().is_some_and(|s| !s.ends_with('n'))
}

/// Purges the package on the way out, whatever happened.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        if present() {
            // A configuration that does not exist: a prerm still to run fails with a usage
            // error and touches nothing of the host's.
            let _ = Command::new("dpkg")
                .env("OVS_AUTOATTACH_CONFIG", "/nonexistent/ovs-autoattach.yaml")
                .args(["--purge", PKG])
                .status();
        }
    }
}

/// The files (not directories) the package ships, from `dpkg-deb -c`.
fn shipped_files(deb: &Path) -> Vec<String> {
    run_ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter(|l| l.starts_with('-') || l.starts_with('l'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

fn build_deb() -> PathBuf {
    run_ok(cargo().args([
        "build",
        "--release",
        "-p",
        "ovs-autoattach",
        "-p",
        "ovs-autoattach-preload",
    ]));
    let has_cargo_deb = cargo()
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_cargo_deb,
        "cargo-deb is missing: run scripts/deps --with-cargo-deb"
    );
    let out = run_ok(cargo().args(["deb", "--no-build"]));
    let deb = out
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .unwrap_or_else(|| panic!("no .deb in cargo deb output:\n{out}"));
    PathBuf::from(deb)
}

/// Runs `script` in the test namespace and a private mount namespace in which the test OVS is
/// at the system socket path, so that the maintainer scripts' `ovs-autoattach` reaches it.
fn in_ns(ovs: &Ovs, script: &str) -> Output {
    let d = ovs.dir.display();
    common::run(Command::new("ip").args([
        "netns",
        "exec",
        &ovs.ns,
        "unshare",
        "-m",
        "bash",
        "-ec",
        &format!(
            "mount --make-rprivate /; mount --bind {d} /run/openvswitch; export OVS_AUTOATTACH_CONFIG={cfg}; {script}",
            cfg = ovs.config_path().display()
        ),
    ]))
}

/// The managed block exactly as ovs-autoattach 0.1.0 rendered it for [`common::RELOAD_GUESTS`].
fn old_block() -> String {
    let mut out = "# BEGIN ovs-autoattach\n# Managed by ovs-autoattach: guest ports on Open vSwitch. Do not edit; changes are overwritten.\n".to_string();
    let options = [
        "    ovs_options tag=10\n",
        "    ovs_options trunks=20,30\n",
        "    ovs_options tag=10 trunks=20,30 vlan_mode=native-untagged\n",
        "",
    ];
    for (i, ((p, bridge, _), opts)) in common::RELOAD_GUESTS.iter().zip(options).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "auto {p}\nallow-ovs {p}\niface {p} inet manual\n    ovs_type OVSPort\n    ovs_bridge {bridge}\n{opts}    ovs_extra set Port {p} external_ids:owner=ovs-autoattach\n"
        ));
    }
    out.push_str("# END ovs-autoattach\n");
    out
}

/// Whether ifupdown2's state (carried over between [`Ovs::ifupdown`] calls) names every one of
/// `names`.
fn remembers(ovs: &Ovs, names: &[&str]) -> bool {
    let state = std::fs::read(ovs.dir.join("net/tmp/ifstatenew")).unwrap_or_default();
    names
        .iter()
        .all(|p| state.windows(p.len()).any(|w| w == p.as_bytes()))
}

/// A Proxmox-like host that ran 0.1.0 (the condone regex on every bridge): its guests on OVS, the
/// old block in the interfaces file, and ifupdown2 remembering the block's `auto` stanzas from a
/// reload. Returns the admin's part of the interfaces file.
fn upgraded_host(ovs: &Ovs) -> String {
    let head = common::condone(&ovs.network_head());
    std::fs::write(ovs.interfaces_path(), format!("{head}\n{}", old_block())).unwrap();
    ovs.write_config("stanzas_file: null\ninterfaces_file: null\n");
    ovs.tool_ok(&["apply"]);
    let out = ovs.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "{}", all(&out));
    let names = common::RELOAD_GUESTS.map(|g| g.0);
    assert!(remembers(ovs, &names), "ifupdown2 remembers {names:?}");
    ovs.write_config("");
    head
}

#[test]
fn package_builds_installs_and_purges_cleanly() {
    if common::without_root() {
        return;
    }
    assert!(
        !present(),
        "{PKG} is installed on this machine; this test installs and purges it, so it refuses to run"
    );
    let _restore = Restore;

    // --- build and contents ---
    let deb = build_deb();
    let size = std::fs::metadata(&deb).unwrap().len();
    let files = shipped_files(&deb);
    println!(
        "{} ({size} bytes):\n  {}",
        deb.display(),
        files.join("\n  ")
    );
    for expected in [
        "/usr/sbin/ovs-autoattach",
        "/usr/lib/ovs-autoattach/libovs_autoattach_preload.so",
        "/etc/network/if-up.d/ovs-autoattach",
        "/usr/share/ovs-autoattach/ovs-autoattach-hookscript",
        "/usr/share/ovs-autoattach/install-hookscript",
        "/usr/lib/systemd/system/ovs-autoattach.service",
        "/usr/lib/systemd/system/ovs-autoattach-ovs-restart.service",
        "/usr/lib/systemd/system/ovs-autoattach-prometheus.service",
        "/usr/lib/systemd/system/ovs-autoattach-prometheus.timer",
        "/etc/ovs-autoattach/config.yaml",
        "/usr/share/man/man8/ovs-autoattach.8.gz",
        "/usr/share/bash-completion/completions/ovs-autoattach",
        "/usr/share/doc/ovs-autoattach/copyright",
        "/usr/share/doc/ovs-autoattach/changelog.Debian.gz",
        "/usr/share/doc/ovs-autoattach/design.md",
        "/usr/share/doc/ovs-autoattach/install-proxmox.md",
        "/usr/share/lintian/overrides/ovs-autoattach",
    ] {
        assert!(files.iter().any(|f| f == expected), "{expected} missing");
    }
    let control = run_ok(Command::new("dpkg-deb").args(["-f"]).arg(&deb));
    println!("{control}");
    assert!(control.contains("openvswitch-switch"), "{control}");
    let conffiles = run_ok(
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .arg("conffiles"),
    );
    assert_eq!(
        conffiles,
        "/etc/network/if-up.d/ovs-autoattach\n/etc/ovs-autoattach/config.yaml\n"
    );

    // --- lintian ---
    let out = common::run(
        Command::new("lintian")
            .args(["--display-info", "--pedantic", "--fail-on", "error,warning"])
            .arg(&deb),
    );
    let report = all(&out);
    println!("lintian:\n{report}");
    let errors: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(
        errors.is_empty() && out.status.success(),
        "lintian errors or warnings:\n{report}"
    );

    // --- install with Open vSwitch down ---
    // The test OVS exists but the system socket does not: the postinst must say so and succeed.
    let ovs = Ovs::start();
    ovs.guest("qemu-server", 100, "net0: virtio,bridge=ovsbr0,tag=10\n");
    ovs.tap("tap100i0");
    std::fs::write(ovs.interfaces_path(), "auto lo\niface lo inet loopback\n").unwrap();
    let cfg = ovs.config_path();
    assert!(
        !Path::new("/run/openvswitch/db.sock").exists(),
        "a system ovsdb-server is running; this test needs it down"
    );
    let out = run_ok(
        Command::new("dpkg")
            .env("OVS_AUTOATTACH_CONFIG", &cfg)
            .arg("-i")
            .arg(&deb),
    );
    println!("dpkg -i (OVS down):\n{out}");
    assert!(out.contains("Open vSwitch is not running"), "{out}");
    assert!(installed());
    for f in &files {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    let version = run_ok(Command::new("ovs-autoattach").arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    // The unit is enabled the Debian way, without a running systemd.
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/ovs-autoattach.service").exists()
    );
    // The restart unit is pulled in by every (re)start of Open vSwitch.
    for wants in RESTART_WANTS {
        assert!(Path::new(wants).exists(), "{wants} missing");
    }
    // The textfile timer is installed, not enabled.
    assert!(
        !Path::new("/etc/systemd/system/timers.target.wants/ovs-autoattach-prometheus.timer")
            .exists()
    );
    // The installed unit, binary and man page together pass systemd's own check.
    for unit in [
        "ovs-autoattach.service",
        "ovs-autoattach-ovs-restart.service",
    ] {
        let out = common::run(
            Command::new("systemd-analyze")
                .arg("verify")
                .arg(format!("/usr/lib/systemd/system/{unit}")),
        );
        assert!(
            out.status.success() && all(&out).trim().is_empty(),
            "systemd-analyze verify {unit}:\n{}",
            all(&out)
        );
    }

    // --- upgrade in place with Open vSwitch up ---
    // Inside the test namespace, with the test OVS at the system socket path (private mount
    // namespace): prerm upgrade leaves everything alone, postinst runs apply.
    let d = ovs.dir.display();
    let out = common::run(Command::new("ip").args([
        "netns",
        "exec",
        &ovs.ns,
        "unshare",
        "-m",
        "bash",
        "-ec",
        &format!(
            "mount --make-rprivate /; mount --bind {d} /run/openvswitch; OVS_AUTOATTACH_CONFIG={cfg} dpkg -i {deb}",
            cfg = cfg.display(),
            deb = deb.display()
        ),
    ]));
    println!("dpkg -i (upgrade, OVS up):\n{}", all(&out));
    assert!(out.status.success(), "{}", all(&out));
    assert!(all(&out).contains("attached tap100i0"), "{}", all(&out));
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("ovsbr0"));
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
    let block = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    assert!(block.contains("iface tap100i0 inet manual"), "{block}");
    assert!(ovs.nmstate_path().exists());
    assert!(
        !Path::new("/run/openvswitch/db.sock").exists(),
        "the system /run/openvswitch was touched"
    );

    // --- remove with Open vSwitch up, then a reload ---
    // prerm remove runs `clear --keep-ports`: the running guest's port stays where it is, with
    // its VLAN, and only loses the mark; the files go (but a neutral stanza for the live tap, so
    // that ifupdown2 never downs it). The next `ifreload -a` on a Proxmox-like bridge leaves the
    // guest where it is.
    let head = format!(
        "auto lo\niface lo inet loopback\n\nauto ovsbr0\niface ovsbr0 inet manual\n    ovs_type OVSBridge\n    ovs_ports_condone_regex ^(tap|veth|fwln)\n    ovs_options datapath_type=netdev\n\n{}",
        ovs.source_line()
    );
    std::fs::write(ovs.interfaces_path(), &head).unwrap();
    let out = common::run(Command::new("ip").args([
        "netns",
        "exec",
        &ovs.ns,
        "unshare",
        "-m",
        "bash",
        "-ec",
        &format!(
            "mount --make-rprivate /; mount --bind {d} /run/openvswitch; OVS_AUTOATTACH_CONFIG={cfg} dpkg --remove {PKG}",
            cfg = cfg.display(),
        ),
    ]));
    println!("dpkg --remove (OVS up):\n{}", all(&out));
    assert!(out.status.success(), "{}", all(&out));
    assert!(all(&out).contains("handed back tap100i0"), "{}", all(&out));
    assert!(!Path::new("/usr/sbin/ovs-autoattach").exists());
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("ovsbr0"));
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
    assert_eq!(ovs.owner("tap100i0"), None, "the mark is gone");
    assert!(!ovs.nmstate_path().exists());
    assert_eq!(
        std::fs::read_to_string(ovs.interfaces_path()).unwrap(),
        head
    );
    let left = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    assert!(
        !left.contains("ovs_bridge") && left.contains("iface tap100i0 inet manual\n"),
        "{left}"
    );
    let out = ovs.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "{}", all(&out));
    assert_eq!(ovs.bridge_of("tap100i0").as_deref(), Some("ovsbr0"));
    assert_eq!(ovs.vlan("tap100i0"), "10 [] []");
    assert!(
        ovs.sh("ip -o link show tap100i0").contains(",UP"),
        "tap100i0 is up"
    );

    // --- reinstall, then remove with Open vSwitch down ---
    // prerm tolerates the failure: it says so and the removal goes on.
    ovs.stop("vswitchd");
    ovs.stop("ovsdb");
    run_ok(
        Command::new("dpkg")
            .env("OVS_AUTOATTACH_CONFIG", &cfg)
            .arg("-i")
            .arg(&deb),
    );
    let out = run_ok(
        Command::new("dpkg")
            .env("OVS_AUTOATTACH_CONFIG", &cfg)
            .args(["--remove", PKG]),
    );
    println!("dpkg --remove (OVS down):\n{out}");
    assert!(
        out.contains("'ovs-autoattach clear --keep-ports' exited 1"),
        "{out}"
    );
    assert!(!ovs.nmstate_path().exists());
    assert!(!Path::new("/usr/sbin/ovs-autoattach").exists());
    // Conffiles stay until purge; the hook left behind does nothing and succeeds.
    let hook = Path::new("/etc/network/if-up.d/ovs-autoattach");
    assert!(hook.exists());
    let out = common::run(
        Command::new(hook)
            .env("IFACE", "ovsbr0")
            .env("MODE", "start")
            .env("PHASE", "post-up"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));

    // --- purge ---
    std::fs::create_dir_all("/run/ovs-autoattach").unwrap();
    std::fs::write("/run/ovs-autoattach/lock", "").unwrap();
    let out = run_ok(
        Command::new("dpkg")
            .env("OVS_AUTOATTACH_CONFIG", &cfg)
            .args(["--purge", PKG]),
    );
    println!("dpkg --purge:\n{out}");
    assert!(!present());
    let mut left: Vec<String> = files
        .iter()
        .filter(|f| Path::new(f).exists())
        .cloned()
        .collect();
    for p in [
        "/etc/ovs-autoattach",
        "/run/ovs-autoattach",
        "/usr/lib/ovs-autoattach",
        "/usr/share/ovs-autoattach",
        "/usr/share/doc/ovs-autoattach",
        "/etc/systemd/system/multi-user.target.wants/ovs-autoattach.service",
        "/etc/systemd/system/ovs-autoattach.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/ovs-autoattach.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/ovs-autoattach.service",
        "/var/lib/systemd/deb-systemd-helper-masked/ovs-autoattach.service",
        RESTART_WANTS[0],
        RESTART_WANTS[1],
        "/var/lib/systemd/deb-systemd-helper-masked/ovs-autoattach-ovs-restart.service",
    ] {
        if Path::new(p).symlink_metadata().is_ok() {
            left.push(p.to_string());
        }
    }
    assert!(left.is_empty(), "left behind after purge: {left:?}");

    // --- purge on a host upgraded from the old block, then a reload ---
    // ifupdown2 remembers the old block's `auto` stanzas. The package is installed (its postinst
    // moves the block out into the tool's file), then purged with Open vSwitch up: prerm hands
    // the ports back, and postrm leaves a file of neutral stanzas for the guest links that still
    // exist, and says why. The next `ifreload -a` downs no guest and takes none off its bridge.
    let host = Ovs::reload_host();
    let head = upgraded_host(&host);
    let out = in_ns(&host, &format!("dpkg -i {}", deb.display()));
    println!("dpkg -i (upgrade from the old block):\n{}", all(&out));
    assert!(out.status.success(), "{}", all(&out));
    assert_eq!(
        std::fs::read_to_string(host.interfaces_path()).unwrap(),
        head,
        "the old block is moved out"
    );
    let out = in_ns(&host, &format!("dpkg --purge {PKG}"));
    let said = all(&out);
    println!("dpkg --purge (upgraded host, OVS up):\n{said}");
    assert!(out.status.success(), "{said}");
    assert!(!present());
    let names = common::RELOAD_GUESTS.map(|g| g.0);
    let mut sorted = names;
    sorted.sort();
    let stanzas = host.stanzas_path();
    assert!(
        said.contains(&format!(
            "kept {} with a neutral stanza (iface NAME inet manual, no auto) for each link it listed that still exists: {}\n",
            stanzas.display(),
            sorted.join(" ")
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "delete {} after the next reboot, or once each of these guests has been stopped and an 'ifreload -a' has run while it was stopped",
            stanzas.display()
        )),
        "{said}"
    );
    let left = std::fs::read_to_string(&stanzas).unwrap();
    let lines: Vec<&str> = left
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let want: Vec<String> = sorted
        .iter()
        .map(|n| format!("iface {n} inet manual"))
        .collect();
    assert_eq!(lines, want, "only neutral stanzas:\n{left}");
    let out = host.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "{}", all(&out));
    for (p, bridge, vlan) in common::RELOAD_GUESTS {
        assert!(host.is_up(p), "{p} is up after the purge and a reload");
        assert_eq!(host.bridge_of(p).as_deref(), Some(bridge), "{p}");
        assert_eq!(host.vlan(p), vlan, "{p}");
    }
    // ifupdown2 still remembers every one of them: the file is what keeps them up.
    assert!(remembers(&host, &names), "{names:?}");
    // The script on its own, on what else the file may hold at purge: port stanzas (prerm could
    // not run the tool), names that are not links or not valid names. Only live, valid names
    // reach the file, as neutral stanzas; with no guest link left, the file goes.
    let postrm = common::repo("debian/postrm");
    std::fs::write(
        &stanzas,
        "iface tap100i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10\n    ovs_extra set Port tap100i0 external_ids:owner=ovs-autoattach\n\niface tap$(id>pw) inet manual\niface .. inet manual\niface veth1234567890123 inet manual\niface tap999i0 inet manual\n\niface veth200i0 inet manual\n",
    )
    .unwrap();
    let out = in_ns(
        &host,
        &format!("cd {}; sh {} purge", host.dir.display(), postrm.display()),
    );
    assert!(out.status.success(), "{}", all(&out));
    assert!(!host.dir.join("pw").exists());
    let left = std::fs::read_to_string(&stanzas).unwrap();
    let lines: Vec<&str> = left
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        lines,
        ["iface tap100i0 inet manual", "iface veth200i0 inet manual"],
        "{left}"
    );
    for p in names {
        host.del_link(p);
    }
    let out = in_ns(&host, &format!("sh {} purge", postrm.display()));
    assert!(out.status.success(), "{}", all(&out));
    assert!(!stanzas.exists(), "{}", all(&out));
    // As the message says: a reload while the guests are stopped makes ifupdown2 forget them, so
    // a guest started again afterwards stays up through the next reload, file or not.
    let out = host.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "{}", all(&out));
    for p in names {
        assert!(!remembers(&host, &[p]), "{p} is forgotten");
    }
    host.tap("tap100i0");
    host.vsctl(&["--if-exists", "del-port", "tap100i0"]);
    host.vsctl(&["add-port", "vmbr1", "tap100i0", "tag=10"]);
    let out = host.ifupdown(&[], "ifreload -a");
    assert!(out.status.success(), "{}", all(&out));
    assert!(host.is_up("tap100i0"));
    assert_eq!(host.bridge_of("tap100i0").as_deref(), Some("vmbr1"));
}

/// The shipped unit passes `systemd-analyze verify` (no running systemd needed), with ExecStart
/// pointed at the test build and the man page from the source tree, so that every reference in
/// the unit is checked.
#[test]
fn boot_unit_verifies() {
    if common::without_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(common::repo("debian/ovs-autoattach.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/sbin/ovs-autoattach apply\n"));
    for line in [
        "Type=oneshot",
        "DefaultDependencies=no",
        "Wants=ovsdb-server.service ovs-vswitchd.service",
        "Before=networking.service pve-guests.service nmstate.service shutdown.target",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    let after = unit.lines().find(|l| l.starts_with("After=")).unwrap();
    for dep in ["ovsdb-server.service", "ovs-vswitchd.service"] {
        assert!(after.contains(dep), "{after}");
    }
    let copy = unit.replace(
        "ExecStart=/usr/sbin/ovs-autoattach",
        &format!("ExecStart={}", common::BIN),
    );
    let path = tmp.path().join("ovs-autoattach.service");
    std::fs::write(&path, copy).unwrap();
    let man = tmp.path().join("man/man8");
    std::fs::create_dir_all(&man).unwrap();
    std::fs::copy(
        common::repo("debian/ovs-autoattach.8"),
        man.join("ovs-autoattach.8"),
    )
    .unwrap();
    let out = common::run(
        Command::new("systemd-analyze")
            .env("MANPATH", tmp.path().join("man"))
            .arg("verify")
            .arg(&path),
    );
    println!("systemd-analyze verify: {:?} {}", out.status, all(&out));
    assert!(
        out.status.success() && all(&out).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        all(&out)
    );
}
