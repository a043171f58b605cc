//! Test harness: a real Open vSwitch (Debian's ovsdb-server and ovs-vswitchd, userspace
//! datapath) in a fresh network namespace with a private run directory, fake Proxmox guests
//! (veth pairs and taps named like Proxmox's, configuration files in a private pve directory),
//! and the tool run inside the namespace. `ovs-vsctl` is the independent oracle.
//!
//! Everything is torn down on drop (daemons by pid file, the namespaces, the directory), also
//! when a test panics.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub const BIN: &str = env!("CARGO_BIN_EXE_ovs-autoattach");

pub struct Ovs {
    pub ns: String,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    extra_ns: std::cell::RefCell<Vec<String>>,
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

pub fn check(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Whether this test must return at once because it does not run as root: every system test
/// makes network namespaces and starts Open vSwitch. The first one to find out says so, once, in
/// one line; `scripts/test` runs them all as root.
pub fn without_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    static SAID: std::sync::Once = std::sync::Once::new();
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        SAID.call_once(|| {
            // Straight to the stream: the test harness captures `eprintln!` of passing tests.
            use std::io::Write as _;
            let _ = std::io::stderr().write_all(
                b"system tests skipped: they need root (network namespaces, Open vSwitch); run scripts/test as root\n",
            );
        });
    }
    !root
}

/// A file of this checkout.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The guest hookscript as shipped.
pub fn hookscript() -> PathBuf {
    repo("hooks/ovs-autoattach-hookscript")
}

/// The if-up.d hook as shipped.
pub fn if_up_hook() -> String {
    std::fs::read_to_string(repo("hooks/if-up.d/ovs-autoattach")).unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Ovs {
    /// Starts ovsdb-server and ovs-vswitchd in a new namespace, with bridge `ovsbr0`.
    pub fn start() -> Ovs {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = format!("oaa{}x{n}", std::process::id());
        let tmp = tempfile::Builder::new()
            .prefix("oaa-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let ovs = Ovs {
            ns,
            dir,
            _tmp: tmp,
            extra_ns: Default::default(),
        };
        check(Command::new("ip").args(["netns", "add", &ovs.ns]));
        check(Command::new("ip").args(["netns", "exec", &ovs.ns, "ip", "link", "set", "lo", "up"]));
        let d = ovs.dir.display().to_string();
        check(Command::new("ovsdb-tool").args([
            "create",
            &format!("{d}/conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ]));
        ovs.daemon(&[
            "ovsdb-server",
            &format!("{d}/conf.db"),
            &format!("--remote=punix:{d}/db.sock"),
            &format!("--pidfile={d}/ovsdb.pid"),
            "--detach",
            &format!("--log-file={d}/ovsdb.log"),
        ]);
        ovs.vsctl(&["--no-wait", "init"]);
        ovs.start_vswitchd();
        for dir in ["pve/qemu-server", "pve/lxc", "etc/interfaces.d", "run"] {
            std::fs::create_dir_all(ovs.dir.join(dir)).unwrap();
        }
        ovs.write_config("");
        ovs.add_bridge("ovsbr0");
        ovs
    }

    fn daemon(&self, argv: &[&str]) {
        let d = self.dir.display().to_string();
        check(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.ns,
                    "env",
                    &format!("OVS_RUNDIR={d}"),
                    &format!("OVS_LOGDIR={d}"),
                ])
                .args(argv),
        );
    }

    /// Starts ovsdb-server again on the same database (after [`Ovs::stop`]).
    pub fn restart_ovsdb(&self) {
        let d = self.dir.display().to_string();
        self.daemon(&[
            "ovsdb-server",
            &format!("{d}/conf.db"),
            &format!("--remote=punix:{d}/db.sock"),
            &format!("--pidfile={d}/ovsdb.pid"),
            "--detach",
            &format!("--log-file={d}/ovsdb.log"),
        ]);
    }

    pub fn start_vswitchd(&self) {
        let d = self.dir.display().to_string();
        self.daemon(&[
            "ovs-vswitchd",
            &format!("unix:{d}/db.sock"),
            // Debian's name: the tool finds ovs-vswitchd's control socket through it.
            &format!("--pidfile={d}/ovs-vswitchd.pid"),
            "--detach",
            &format!("--log-file={d}/vswitchd.log"),
        ]);
    }

    pub fn db(&self) -> String {
        format!("unix:{}/db.sock", self.dir.display())
    }

    /// Stops a daemon by its pid file ("ovsdb" or "vswitchd").
    pub fn stop(&self, which: &str) {
        let pidfile = match which {
            "vswitchd" => self.dir.join("ovs-vswitchd.pid"),
            _ => self.dir.join(format!("{which}.pid")),
        };
        let Ok(pid) = std::fs::read_to_string(&pidfile) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(pidfile);
    }

    /// `ovs-vsctl` against this OVS; panics on failure.
    pub fn vsctl(&self, args: &[&str]) -> String {
        check(&mut self.vsctl_cmd(args)).trim().to_string()
    }

    pub fn try_vsctl(&self, args: &[&str]) -> Output {
        run(&mut self.vsctl_cmd(args))
    }

    fn vsctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns,
            "ovs-vsctl",
            &format!("--db={}", self.db()),
            "--timeout=20",
        ])
        .args(args);
        c
    }

    pub fn add_bridge(&self, name: &str) {
        self.vsctl(&[
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            "datapath_type=netdev",
        ]);
    }

    /// A shell command inside the namespace; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        check(Command::new("ip").args(["netns", "exec", &self.ns, "bash", "-ec", script]))
    }

    pub fn try_sh(&self, script: &str) -> Output {
        run(Command::new("ip").args(["netns", "exec", &self.ns, "bash", "-ec", script]))
    }

    /// A veth pair. A Proxmox name (`veth<vmid>i<n>`), or a name that is no guest's (an
    /// uplink stand-in), keeps its peer `p<n>` in the namespace too (so traffic tests can move
    /// it); any other `veth` name is a raw container's NIC, whose peer is created in a container
    /// namespace of its own, as LXC does.
    pub fn veth(&self, name: &str) -> String {
        let peer = format!("p{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        if is_proxmox_veth(name) || !name.starts_with("veth") {
            self.sh(&format!("ip link add {name} type veth peer name {peer}; ip link set {name} up; ip link set {peer} up"));
        } else {
            let c = self.container_ns();
            self.sh(&format!(
                "ip link add {name} type veth peer name {peer} netns {c}; ip link set {name} up"
            ));
        }
        peer
    }

    /// An empty network namespace standing in for a container, torn down with this one.
    pub fn container_ns(&self) -> String {
        let c = format!("{}c{}", self.ns, COUNTER.fetch_add(1, Ordering::SeqCst));
        check(Command::new("ip").args(["netns", "add", &c]));
        self.extra_ns.borrow_mut().push(c.clone());
        c
    }

    pub fn tap(&self, name: &str) {
        self.sh(&format!(
            "ip tuntap add {name} mode tap; ip link set {name} up"
        ));
    }

    pub fn del_link(&self, name: &str) {
        self.sh(&format!("ip link del {name}"));
    }

    pub fn guest(&self, kind: &str, vmid: u32, text: &str) {
        std::fs::write(self.dir.join(format!("pve/{kind}/{vmid}.conf")), text).unwrap();
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// The host's interfaces file (Proxmox's), which the tool only cleans of old stanzas.
    pub fn interfaces_path(&self) -> PathBuf {
        self.dir.join("etc/interfaces")
    }

    /// The tool's own ifupdown2 file.
    pub fn stanzas_path(&self) -> PathBuf {
        self.dir.join("etc/interfaces.d/ovs-autoattach")
    }

    /// The line of the interfaces file that makes ifupdown2 read [`Ovs::stanzas_path`].
    pub fn source_line(&self) -> String {
        format!("source {}/etc/interfaces.d/*\n", self.dir.display())
    }

    /// [`NETWORK_HEAD`] with the `source` line Proxmox's default file ends with, for this test's
    /// directory.
    pub fn network_head(&self) -> String {
        format!("{NETWORK_HEAD}\n{}", self.source_line())
    }

    /// The mirror rules file (proxmox-ovs-mirror's `mirrors.conf` format); none by default.
    pub fn mirrors_path(&self) -> PathBuf {
        self.dir.join("etc/mirrors.conf")
    }

    pub fn nmstate_path(&self) -> PathBuf {
        self.dir.join("etc/nmstate-dynamic.yaml")
    }

    /// Writes the tool's configuration for this OVS; `extra` lines are appended.
    pub fn write_config(&self, extra: &str) {
        let d = self.dir.display();
        let mut cfg = format!(
            "ovsdb: {}\npve_config_dir: {d}/pve\nrun_dir: {d}/run\nnmstate_file: {d}/etc/nmstate-dynamic.yaml\nstanzas_file: {d}/etc/interfaces.d/ovs-autoattach\ninterfaces_file: {d}/etc/interfaces\nmirrors_file: {d}/etc/mirrors.conf\ntimeout_secs: 10\n",
            self.db()
        );
        for line in extra.lines() {
            let key = line.split(':').next().unwrap_or_default();
            cfg = cfg
                .lines()
                .filter(|l| !l.starts_with(&format!("{key}:")))
                .map(|l| format!("{l}\n"))
                .collect();
        }
        cfg.push_str(extra);
        std::fs::write(self.config_path(), cfg).unwrap();
    }

    /// Runs the tool inside the namespace with this OVS's configuration.
    pub fn tool(&self, args: &[&str]) -> Output {
        run(&mut self.tool_cmd(args))
    }

    pub fn tool_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, BIN, "--config"])
            .arg(self.config_path())
            .args(args);
        c
    }

    /// Runs the tool and asserts its exit code; returns stdout + stderr.
    pub fn tool_ok(&self, args: &[&str]) -> String {
        self.tool_code(args, 0)
    }

    pub fn tool_code(&self, args: &[&str], code: i32) -> String {
        let out = self.tool(args);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(code),
            "ovs-autoattach {args:?}:\n{all}"
        );
        all
    }

    // --- the oracle ---

    /// Whether `link` is administratively up (`UP` in its flags).
    pub fn is_up(&self, link: &str) -> bool {
        let out = self.sh(&format!("ip -o link show {link}"));
        out.split('<')
            .nth(1)
            .and_then(|f| f.split('>').next())
            .is_some_and(|flags| flags.split(',').any(|f| f == "UP"))
    }

    /// `Open_vSwitch.next_cfg`: it grows with every transaction that changes the configuration.
    pub fn next_cfg(&self) -> i64 {
        self.vsctl(&["get", "Open_vSwitch", ".", "next_cfg"])
            .parse()
            .unwrap()
    }

    pub fn bridge_of(&self, port: &str) -> Option<String> {
        let out = self.try_vsctl(&["port-to-br", port]);
        out.status
            .success()
            .then(|| text(&out.stdout).trim().to_string())
    }

    pub fn ports(&self, bridge: &str) -> Vec<String> {
        self.vsctl(&["list-ports", bridge])
            .lines()
            .map(String::from)
            .collect()
    }

    /// `tag`, `trunks`, `vlan_mode` as ovs-vsctl prints them, e.g. `10 [] []`.
    pub fn vlan(&self, port: &str) -> String {
        let col = |c: &str| self.vsctl(&["get", "Port", port, c]);
        format!("{} {} {}", col("tag"), col("trunks"), col("vlan_mode"))
    }

    pub fn owner(&self, port: &str) -> Option<String> {
        let out = self.try_vsctl(&["get", "Port", port, "external_ids:owner"]);
        out.status
            .success()
            .then(|| text(&out.stdout).trim().trim_matches('"').to_string())
    }

    /// A second namespace for traffic tests, torn down with this one.
    pub fn guest_ns(&self, peer: &str, addr: &str) -> String {
        let g = format!("{}g{}", self.ns, COUNTER.fetch_add(1, Ordering::SeqCst));
        check(Command::new("ip").args(["netns", "add", &g]));
        self.extra_ns.borrow_mut().push(g.clone());
        self.sh(&format!("ip link set {peer} netns {g}"));
        check(Command::new("ip").args([
            "netns",
            "exec",
            &g,
            "bash",
            "-ec",
            &format!("ip link set lo up; ip link set {peer} up; ip addr add {addr} dev {peer}"),
        ]));
        g
    }
}

impl Ovs {
    /// Runs `script` (e.g. `ifreload -a`) with Debian's ifupdown2 inside this namespace and a
    /// private mount namespace: `/etc/network` is a test copy whose `interfaces` is this OVS's
    /// interfaces file and whose `if-up.d` holds only `hooks` (name, content); ifupdown2's state
    /// and lock directories are private to the test and carried over from one call to the next,
    /// as on a host (ifupdown2 remembers what it brought up, and downs what vanished from its
    /// configuration); `/run/openvswitch` is this OVS's run directory, so ifupdown2's own
    /// `ovs-vsctl` calls reach it. The tool's configuration is passed through
    /// `OVS_AUTOATTACH_CONFIG`.
    pub fn ifupdown(&self, hooks: &[(&str, &str)], script: &str) -> Output {
        let d = self.dir.display().to_string();
        let net = self.dir.join("net");
        let _ = std::fs::remove_dir_all(net.join("etc"));
        for sub in [
            "etc",
            "etc/if-up.d",
            "etc/if-down.d",
            "etc/if-pre-up.d",
            "etc/if-post-down.d",
            "etc/interfaces.d",
            "run",
            "tmp",
            "lib",
        ] {
            std::fs::create_dir_all(net.join(sub)).unwrap();
        }
        check(
            Command::new("cp")
                .args(["-a", "/etc/network/ifupdown2"])
                .arg(net.join("etc")),
        );
        std::fs::write(net.join("etc/interfaces"), "").unwrap();
        if !self.interfaces_path().exists() {
            std::fs::write(self.interfaces_path(), "").unwrap();
        }
        for (name, content) in hooks {
            let p = net.join("etc/if-up.d").join(name);
            std::fs::write(&p, content).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mounts = format!(
            "mkdir -p /run/openvswitch /run/network /var/tmp/network /var/lib/ifupdown2
             mount --make-rprivate /
             mount --bind {d}/net/etc /etc/network
             mount --bind {iface} /etc/network/interfaces
             mount --bind {d}/net/run /run/network
             mount --bind {d}/net/tmp /var/tmp/network
             mount --bind {d}/net/lib /var/lib/ifupdown2
             mount --bind {d} /run/openvswitch
             export OVS_AUTOATTACH_CONFIG={cfg} PATH=/usr/sbin:/usr/bin:/sbin:/bin
             {script}",
            iface = self.interfaces_path().display(),
            cfg = self.config_path().display(),
        );
        run(Command::new("ip").args([
            "netns", "exec", &self.ns, "unshare", "-m", "bash", "-ec", &mounts,
        ]))
    }
}

/// The admin's part of `/etc/network/interfaces` for [`Ovs::reload_host`]: loopback and two OVS
/// bridges on the userspace datapath, each with a veth uplink that ifupdown2 plugs, and no guest
/// port in any `ovs_ports`.
pub const NETWORK_HEAD: &str = "# The admin's network configuration.\nauto lo\niface lo inet loopback\n\nauto eno1\niface eno1 inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n\nauto ovsbr0\niface ovsbr0 inet manual\n    ovs_type OVSBridge\n    ovs_ports eno1\n    ovs_options datapath_type=netdev\n\nauto eno2\niface eno2 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n\nauto vmbr1\niface vmbr1 inet manual\n    ovs_type OVSBridge\n    ovs_ports eno2\n    ovs_options datapath_type=netdev\n";

/// The guest ports of [`Ovs::reload_host`] once attached: name, bridge, `tag trunks vlan_mode`.
pub const RELOAD_GUESTS: [(&str, &str, &str); 4] = [
    ("tap100i0", "vmbr1", "10 [] []"),
    ("tap100i1", "ovsbr0", "[] [20, 30] []"),
    ("veth200i0", "vmbr1", "10 [20, 30] native-untagged"),
    ("vethRaw01", "ovsbr0", "[] [] []"),
];

/// The standard guest host, built the same way by every test that needs one: OVS with
/// `ovsbr0` and `vmbr1`, QEMU guest 100 with a tagged NIC on vmbr1 (`net0`, tag 10) and a trunk
/// NIC (`net1`), LXC guest 200 with tag 10 and trunks 20;30 on vmbr1, a raw container veth
/// `vethRaw01`, and [`NETWORK_HEAD`] in the interfaces file. The variations are the builder's
/// methods.
pub struct GuestHost {
    qemu_head: &'static str,
    net1: &'static str,
    qemu_tail: &'static str,
    lxc: &'static str,
    uplinks: bool,
    interfaces: bool,
}

impl GuestHost {
    pub fn new() -> GuestHost {
        GuestHost {
            qemu_head: "",
            net1: "virtio=BC:24:11:A3:DA:B2,bridge=vmbr1,trunks=20;30-32",
            qemu_tail: "",
            lxc: "net0: name=eth0,bridge=vmbr1,tag=10,trunks=20;30,type=veth\n",
            uplinks: false,
            interfaces: true,
        }
    }

    /// Lines of the QEMU guest's configuration before its `net0` and after its `net1`.
    pub fn qemu_around(self, head: &'static str, tail: &'static str) -> GuestHost {
        GuestHost {
            qemu_head: head,
            qemu_tail: tail,
            ..self
        }
    }

    /// The QEMU guest's `net1` value.
    pub fn net1(self, value: &'static str) -> GuestHost {
        GuestHost {
            net1: value,
            ..self
        }
    }

    /// The LXC guest's whole configuration.
    pub fn lxc_config(self, text: &'static str) -> GuestHost {
        GuestHost { lxc: text, ..self }
    }

    /// Uplinks `eno1` on ovsbr0 and `eno2` on vmbr1 (veth pairs), as [`NETWORK_HEAD`] lists them.
    pub fn uplinks(self) -> GuestHost {
        GuestHost {
            uplinks: true,
            ..self
        }
    }

    /// No interfaces file.
    pub fn without_interfaces(self) -> GuestHost {
        GuestHost {
            interfaces: false,
            ..self
        }
    }

    pub fn start(self) -> Ovs {
        let ovs = Ovs::start();
        ovs.add_bridge("vmbr1");
        if self.uplinks {
            ovs.sh("ip link add eno1 type veth peer name eno1p; ip link add eno2 type veth peer name eno2p; ip link set eno1 up; ip link set eno2 up");
            ovs.vsctl(&[
                "add-port", "ovsbr0", "eno1", "--", "add-port", "vmbr1", "eno2",
            ]);
        }
        ovs.guest(
            "qemu-server",
            100,
            &format!(
                "{}net0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr1,tag=10\nnet1: {}\n{}",
                self.qemu_head, self.net1, self.qemu_tail
            ),
        );
        ovs.guest("lxc", 200, self.lxc);
        ovs.tap("tap100i0");
        ovs.tap("tap100i1");
        ovs.veth("veth200i0");
        ovs.veth("vethRaw01");
        if self.interfaces {
            std::fs::write(ovs.interfaces_path(), ovs.network_head()).unwrap();
        }
        ovs
    }
}

impl Ovs {
    /// The host the ifupdown2 tests reload: the [`GuestHost`] with uplinks, its trunk NIC on
    /// ovsbr0 ([`RELOAD_GUESTS`]).
    pub fn reload_host() -> Ovs {
        GuestHost::new()
            .net1("virtio=BC:24:11:A3:DA:B2,bridge=ovsbr0,trunks=20;30")
            .uplinks()
            .start()
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        self.stop("vswitchd");
        self.stop("ovsdb");
        for g in self.extra_ns.borrow().iter() {
            let _ = Command::new("ip").args(["netns", "del", g]).output();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// `veth<vmid>i<n>`, as Proxmox names a container's host end.
pub fn is_proxmox_veth(name: &str) -> bool {
    name.strip_prefix("veth")
        .and_then(|rest| rest.split_once('i'))
        .is_some_and(|(vmid, n)| {
            !vmid.is_empty()
                && !n.is_empty()
                && vmid.bytes().chain(n.bytes()).all(|b| b.is_ascii_digit())
        })
}

/// [`NETWORK_HEAD`] as Proxmox's ifupdown2 treats it: Proxmox's build gives every OVS bridge
/// `ovs-ports-condone-regex ^(tap|veth|fwln)` by default; Debian's needs it spelled out.
pub fn condone(head: &str) -> String {
    head.replace(
        "    ovs_type OVSBridge\n",
        "    ovs_type OVSBridge\n    ovs_ports_condone_regex ^(tap|veth|fwln)\n",
    )
}

/// An `ovsdb-client monitor` of the Port table's name and VLAN columns, running until
/// [`Monitor::rows`] stops it: every row state OVS held meanwhile, not just the last.
pub struct Monitor {
    child: std::process::Child,
    out: PathBuf,
}

impl Ovs {
    pub fn monitor_ports(&self) -> Monitor {
        let out = self.dir.join(format!(
            "monitor{}.json",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "ovsdb-client",
                "monitor",
                "--format=json",
            ])
            .arg(self.db())
            .args(["Open_vSwitch", "Port", "name,tag,trunks,vlan_mode"])
            .stdout(file)
            // An OVS restart ends the monitor with a complaint; the step's checks go on.
            .stderr(std::process::Stdio::null())
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
        Monitor { child, out }
    }
}

impl Monitor {
    /// Stops the monitor; returns every (action, port, `tag trunks vlan_mode`) it saw, the VLAN
    /// columns written as [`Ovs::vlan`] writes them.
    pub fn rows(mut self) -> Vec<(String, String, String)> {
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).unwrap();
        let mut rows = Vec::new();
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let doc: serde_json::Value = serde_json::from_str(line).unwrap();
            let headings: Vec<&str> = doc["headings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap())
                .collect();
            let col = |row: &serde_json::Value, name: &str| {
                let i = headings.iter().position(|h| *h == name).unwrap();
                row[i].clone()
            };
            for row in doc["data"].as_array().unwrap() {
                let action = col(row, "action").as_str().unwrap_or_default().to_string();
                let name = col(row, "name").as_str().unwrap_or_default().to_string();
                let vlan = format!(
                    "{} {} {}",
                    ovs_value(&col(row, "tag"), false),
                    ovs_value(&col(row, "trunks"), true),
                    ovs_value(&col(row, "vlan_mode"), false)
                );
                rows.push((action, name, vlan));
            }
        }
        rows
    }
}

/// An OVSDB JSON datum as `ovs-vsctl get` prints it: `[]` for an empty set, `10`, `[20, 30]`.
pub fn ovs_value(v: &serde_json::Value, always_set: bool) -> String {
    let items: Vec<String> = match v.as_array() {
        Some(a) if a.len() == 2 && a[0] == "set" => a[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.to_string().trim_matches('"').to_string())
            .collect(),
        _ => vec![v.to_string().trim_matches('"').to_string()],
    };
    match (items.len(), always_set) {
        (0, _) => "[]".into(),
        (1, false) => items[0].clone(),
        _ => format!("[{}]", items.join(", ")),
    }
}

/// The preload library under test: the release build, or the file `OVS_AUTOATTACH_TEST_LIBRARY`
/// names (another build, e.g. an older one, to see which tests it fails).
pub fn preload_library() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let path = PATH.get_or_init(|| {
        std::env::var("OVS_AUTOATTACH_TEST_LIBRARY").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/release/libovs_autoattach_preload.so"
            )
            .to_string()
        })
    });
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: build it first with `cargo build --release -p ovs-autoattach-preload`"
    );
    path
}

/// Polls `f` every 10 ms until it holds or `limit` has passed.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A stand-in for the syslog daemon: a datagram socket the tool is pointed at with
/// `OVS_AUTOATTACH_SYSLOG_SOCKET` (the library passes the tool's variables on), read on a
/// thread of its own so that the tool never waits for a full queue.
pub struct Syslog {
    _dir: tempfile::TempDir,
    path: String,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Syslog {
    pub fn bind() -> Syslog {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                    l.lock().unwrap().push(line);
                }
            }
        });
        Syslog {
            path: path.to_str().unwrap().to_string(),
            _dir: dir,
            lines,
            stop,
        }
    }

    /// The variable that points the tool here.
    pub fn var(&self) -> (&'static str, &str) {
        ("OVS_AUTOATTACH_SYSLOG_SOCKET", &self.path)
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every datagram so far, once one contains `needle` or `limit` has passed.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> Vec<String> {
        wait_until(limit, || self.lines().iter().any(|l| l.contains(needle)));
        self.lines()
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
