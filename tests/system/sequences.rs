//! Random runs of real host operations, with the invariant checked after every step.
//!
//! Each run builds one sandbox: a real Open vSwitch (userspace datapath), real ifupdown2 in a
//! private mount namespace with its state carried over, a fake `/etc/pve`, the tool's if-up.d
//! hook and guest hookscript. A seeded generator then draws steps with weights: guests started
//! (plugged the way Proxmox's `tap_plug` plugs them, firewall shape included, then `post-start`)
//! and stopped (links deleted, then `post-stop`), live VLAN changes made as Proxmox makes them
//! (config and port, no hook), `ifreload -a`, `ifdown BR; ifup BR`, an admin's edit followed by a
//! reload, Open vSwitch restarted on the same database, `apply` killed with SIGKILL, bursts of
//! concurrent `plug`s and `apply`s, raw container veths appearing and vanishing, pending
//! configuration changes Proxmox could not hotplug, links named like guest NICs that are not
//! (a VPN's tap, an admin's veth pair, an SDN VNet bridge, LXC's hotplug peer), Proxmox's own
//! plug (`del-port`, then `add-port`, under the guest's configuration lock) racing an `apply`,
//! and an OVSDB that stalls while a guest starts. Guest starts hold the guest's Proxmox
//! configuration lock through `post-start`, as Proxmox does.
//!
//! After every step (once its hooks returned and one `apply` ran), a checker compares the host
//! with the model: every running guest NIC where its configuration says, in Proxmox's shape;
//! no stale port; the host files parse and list exactly the guest ports on OVS; no temporary
//! file; the tool exited 0, or 1 for a reason the model expects. An `ovsdb-client monitor` runs
//! through every step: no row may ever show a running guest's port in a VLAN other than its
//! configuration's.
//!
//! A failure prints the seed, the step and the whole history; the same seed replays it.
//! `OVS_AUTOATTACH_SEQUENCE_SEED` and `OVS_AUTOATTACH_SEQUENCE_STEPS` run other or longer
//! sequences by hand (docs/sequences.md).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Ovs, text};
use ovs_autoattach::decide::stanzas;

/// splitmix64: small, seedable, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len() as u64) as usize])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Qemu,
    Lxc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Nic {
    bridge: &'static str,
    tag: Option<u16>,
    trunks: Vec<u16>,
    firewall: bool,
    rate: bool,
}

impl Nic {
    /// `tag trunks vlan_mode` as `ovs-vsctl get` prints them.
    fn vlan(&self) -> String {
        let tag = self.tag.map_or("[]".to_string(), |t| t.to_string());
        let trunks = if self.trunks.is_empty() {
            "[]".to_string()
        } else {
            let t: Vec<String> = self.trunks.iter().map(u16::to_string).collect();
            format!("[{}]", t.join(", "))
        };
        let mode = if self.tag.is_some() && !self.trunks.is_empty() {
            "native-untagged"
        } else {
            "[]"
        };
        format!("{tag} {trunks} {mode}")
    }

    fn ovs_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(t) = self.tag {
            a.push(format!("tag={t}"));
        }
        if !self.trunks.is_empty() {
            let t: Vec<String> = self.trunks.iter().map(u16::to_string).collect();
            a.push(format!("trunks={}", t.join(",")));
        }
        if self.tag.is_some() && !self.trunks.is_empty() {
            a.push("vlan_mode=native-untagged".into());
        }
        a
    }

    fn config(&self, kind: Kind, vmid: u32, index: usize) -> String {
        let mut items = match kind {
            Kind::Qemu => vec![format!(
                "virtio=BC:24:11:{:02X}:{:02X}:{index:02X}",
                vmid / 256 % 256,
                vmid % 256
            )],
            Kind::Lxc => vec![format!("name=eth{index}")],
        };
        items.push(format!("bridge={}", self.bridge));
        if let Some(t) = self.tag {
            items.push(format!("tag={t}"));
        }
        if !self.trunks.is_empty() {
            let t: Vec<String> = self.trunks.iter().map(u16::to_string).collect();
            items.push(format!("trunks={}", t.join(";")));
        }
        if self.firewall {
            items.push("firewall=1".into());
        }
        if self.rate {
            items.push("rate=5".into());
        }
        if kind == Kind::Lxc {
            items.push("type=veth".into());
        }
        format!("net{index}: {}\n", items.join(","))
    }
}

#[derive(Clone, Debug)]
struct Guest {
    kind: Kind,
    nics: Vec<Nic>,
}

impl Guest {
    fn nic_name(&self, vmid: u32, index: usize) -> String {
        match self.kind {
            Kind::Qemu => format!("tap{vmid}i{index}"),
            Kind::Lxc => format!("veth{vmid}i{index}"),
        }
    }
}

/// The OVS port that carries a NIC.
fn port_of(name: &str, nic: &Nic) -> String {
    if nic.firewall {
        let (vmid, index) = split_nic(name);
        format!("fwln{vmid}o{index}")
    } else {
        name.to_string()
    }
}

fn split_nic(name: &str) -> (String, String) {
    let rest = name.trim_start_matches("tap").trim_start_matches("veth");
    let (v, i) = rest.split_once('i').unwrap();
    (v.to_string(), i.to_string())
}

const WEIGHTS: [(&str, u64); 15] = [
    ("start", 20),
    ("stop", 10),
    ("live-change", 10),
    ("ifreload", 10),
    ("ifdown-ifup", 6),
    ("admin-edit", 5),
    ("ovs-restart", 4),
    ("killed-apply", 8),
    ("burst", 6),
    ("raw-appear", 6),
    ("raw-vanish", 4),
    ("pending-edit", 6),
    ("nonguest-appear", 5),
    ("proxmox-race", 6),
    ("slow-ovsdb", 4),
];

struct World {
    ovs: Ovs,
    rng: Rng,
    seed: u64,
    guests: BTreeMap<u32, Guest>,
    raw: BTreeSet<String>,
    next_vmid: u32,
    next_raw: u32,
    admin_edits: u32,
    next_nonguest: u32,
    history: Vec<String>,
    counts: BTreeMap<&'static str, u32>,
    /// The kernel runs Proxmox's police filter (`cls_basic`, `act_police`); without it every
    /// (re)plug of a rate-limited NIC ends the run with exit 1, as the model expects.
    police: bool,
}

impl World {
    fn new(seed: u64) -> World {
        let ovs = Ovs::start();
        ovs.add_bridge("vmbr1");
        ovs.sh("ip link add eno1 type veth peer name eno1p; ip link add eno2 type veth peer name eno2p; ip link set eno1 up; ip link set eno2 up");
        ovs.vsctl(&[
            "add-port", "ovsbr0", "eno1", "--", "add-port", "vmbr1", "eno2",
        ]);
        std::fs::write(ovs.interfaces_path(), common::condone(&ovs.network_head())).unwrap();
        // ifupdown2's state as on a host: one reload first.
        let out = ovs.ifupdown(&[], "ifreload -a");
        assert!(out.status.success(), "{}", text(&out.stderr));
        ovs.sh("ip link add oaaprobe0 type veth peer name oaaprobe1");
        let police = ovs
            .try_sh("tc qdisc add dev oaaprobe0 handle ffff: ingress && tc filter add dev oaaprobe0 parent ffff: prio 50 basic police rate 1000bps burst 1048576b mtu 64kb drop")
            .status
            .success();
        ovs.sh("ip link del oaaprobe0");
        // Foreign objects nothing of the tool's may change: an admin's Linux bridge with a
        // member, and an admin's mirror.
        ovs.sh("ip link add bradmin type bridge; ip link add adm0 type veth peer name adm1; ip link set adm0 master bradmin; ip link set bradmin up");
        add_admin_mirror(&ovs);
        for d in ["lock/qemu-server", "lock/lxc"] {
            std::fs::create_dir_all(ovs.dir.join(d)).unwrap();
        }
        ovs.write_config(&format!("pve_lock_dir: {}/lock\n", ovs.dir.display()));
        World {
            ovs,
            rng: Rng(seed),
            seed,
            guests: BTreeMap::new(),
            raw: BTreeSet::new(),
            next_vmid: 1000,
            next_raw: 0,
            admin_edits: 0,
            next_nonguest: 0,
            history: Vec::new(),
            counts: BTreeMap::new(),
            police,
        }
    }

    fn fail(&self, step: usize, what: &str) -> ! {
        panic!(
            "sequence seed {} failed at step {step}: {what}\nhistory:\n  {}\nreplay: OVS_AUTOATTACH_SEQUENCE_SEED={} OVS_AUTOATTACH_SEQUENCE_STEPS={} cargo test --test system sequences::replay -- --nocapture",
            self.seed,
            self.history.join("\n  "),
            self.seed,
            step + 1
        )
    }

    fn draw(&mut self) -> &'static str {
        let total: u64 = WEIGHTS.iter().map(|w| w.1).sum();
        let mut x = self.rng.below(total);
        for (op, w) in WEIGHTS {
            if x < w {
                return op;
            }
            x -= w;
        }
        unreachable!()
    }

    fn random_nic(&mut self) -> Nic {
        let bridge = if self.rng.chance(70) {
            "vmbr1"
        } else {
            "ovsbr0"
        };
        let tag = self
            .rng
            .chance(70)
            .then(|| 10 + self.rng.below(4) as u16 * 10);
        let trunks = if self.rng.chance(30) {
            let a = 100 + self.rng.below(5) as u16;
            vec![a, a + 10]
        } else {
            Vec::new()
        };
        Nic {
            bridge,
            tag,
            trunks,
            firewall: self.rng.chance(35),
            rate: self.rng.chance(15),
        }
    }

    fn write_config(&self, vmid: u32) {
        let g = &self.guests[&vmid];
        let body: String = g
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| n.config(g.kind, vmid, i))
            .collect();
        let dir = match g.kind {
            Kind::Qemu => "qemu-server",
            Kind::Lxc => "lxc",
        };
        self.ovs.guest(dir, vmid, &body);
    }

    /// What pve-common's `tap_plug` runs for one NIC (errors of the rate limit's police filter
    /// ignored: this kernel may lack it, for Proxmox too).
    fn proxmox_plug(&self, name: &str, nic: &Nic) {
        let mut script = format!("ip link set {name} up mtu 1500\n");
        if nic.firewall {
            let (vmid, index) = split_nic(name);
            let (fwbr, fwln) = (format!("fwbr{vmid}i{index}"), format!("fwln{vmid}o{index}"));
            script += &format!(
                "ip link add {fwbr} type bridge 2>/dev/null || true\nip link set {fwbr} up mtu 1500\nip link set {name} mtu 1500 master {fwbr}\novs-vsctl --db={db} --timeout=20 -- --if-exists del-port {fwln} -- add-port {br} {fwln} {args} -- set Interface {fwln} mtu_request=1500 -- set Interface {fwln} type=internal\nfor i in $(seq 200); do ip link show {fwln} >/dev/null 2>&1 && break; sleep 0.02; done\nip link set {fwln} up mtu 1500\nip link set {fwln} master {fwbr}\n",
                db = self.ovs.db(),
                br = nic.bridge,
                args = nic.ovs_args().join(" ")
            );
        } else {
            script += &format!(
                "ovs-vsctl --db={db} --timeout=20 -- --if-exists del-port {name} -- add-port {br} {name} {args} -- set Interface {name} mtu_request=1500\n",
                db = self.ovs.db(),
                br = nic.bridge,
                args = nic.ovs_args().join(" ")
            );
        }
        if nic.rate {
            script += &format!(
                "tc qdisc add dev {name} root handle 1: htb default 1 || true\ntc class add dev {name} parent 1: classid 1:1 htb rate 5242880bps burst 1048576b || true\n"
            );
        }
        self.ovs.sh(&script);
    }

    fn hookscript(&self, vmid: u32, phase: &str) -> Output {
        let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/ovs-autoattach-hookscript");
        common::run(
            Command::new("ip")
                .args(["netns", "exec", &self.ovs.ns, "env"])
                .arg(format!("OVS_AUTOATTACH_BIN={}", common::BIN))
                .arg(format!(
                    "OVS_AUTOATTACH_CONFIG={}",
                    self.ovs.config_path().display()
                ))
                .arg(hook)
                .args([vmid.to_string(), phase.to_string()]),
        )
    }

    fn ifupdown(&self, script: &str) -> Output {
        let hook = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/if-up.d/ovs-autoattach"),
        )
        .unwrap();
        self.ovs.ifupdown(
            &[("ovs-autoattach", &hook)],
            &format!("export OVS_AUTOATTACH_BIN={}; {script}", common::BIN),
        )
    }

    /// Carries out one step; returns what it was, for the history, and the NIC whose VLAN it
    /// changed live (its old VLAN may still show in the monitor until the change).
    fn step(&mut self) -> (String, Option<(String, String)>) {
        let op = self.draw();
        *self.counts.entry(op).or_default() += 1;
        let running: Vec<u32> = self.guests.keys().copied().collect();
        match op {
            "start" => {
                let vmid = self.next_vmid;
                self.next_vmid += 1;
                let kind = if self.rng.chance(50) {
                    Kind::Qemu
                } else {
                    Kind::Lxc
                };
                let n = 1 + self.rng.below(2) as usize;
                let nics = (0..n).map(|_| self.random_nic()).collect();
                let guest = Guest { kind, nics };
                self.guests.insert(vmid, guest.clone());
                self.write_config(vmid);
                self.start_guest(vmid, &guest);
                (format!("start {vmid} {kind:?} {:?}", guest.nics), None)
            }
            "stop" => {
                let Some(&vmid) = self.rng.pick(&running) else {
                    return ("stop (no guest)".into(), None);
                };
                let guest = self.guests.remove(&vmid).unwrap();
                let mut script = String::new();
                for (i, nic) in guest.nics.iter().enumerate() {
                    let name = guest.nic_name(vmid, i);
                    script += &format!("ip link del {name}\n");
                    if nic.firewall {
                        // pve-common's cleanup_firewall_bridge, from tap_unplug.
                        script += &format!(
                            "ovs-vsctl --db={} --timeout=20 --if-exists del-port fwln{vmid}o{i}\nip link del fwbr{vmid}i{i} 2>/dev/null || true\n",
                            self.ovs.db()
                        );
                    }
                }
                self.ovs.sh(&script);
                self.hookscript(vmid, "post-stop");
                (format!("stop {vmid}"), None)
            }
            "live-change" => {
                let Some(&vmid) = self.rng.pick(&running) else {
                    return ("live-change (no guest)".into(), None);
                };
                let index = self.rng.below(self.guests[&vmid].nics.len() as u64) as usize;
                let mut nic = self.random_nic();
                let old = self.guests[&vmid].nics[index].clone();
                // A live change keeps the NIC's shape (bridge and firewall need a re-plug
                // Proxmox does itself; the VLAN is what goes stale).
                nic.bridge = old.bridge;
                nic.firewall = old.firewall;
                nic.rate = old.rate;
                let name = self.guests[&vmid].nic_name(vmid, index);
                let port = port_of(&name, &old);
                self.guests.get_mut(&vmid).unwrap().nics[index] = nic.clone();
                self.write_config(vmid);
                // `qm set`/`pct set` on a running guest: tap_plug again, no hookscript.
                let mut args = vec![
                    "--".to_string(),
                    "--if-exists".into(),
                    "clear".into(),
                    "Port".into(),
                    port.clone(),
                    "tag".into(),
                    "trunks".into(),
                    "vlan_mode".into(),
                ];
                if !nic.ovs_args().is_empty() {
                    args.extend([
                        "--".into(),
                        "--if-exists".into(),
                        "set".into(),
                        "Port".into(),
                        port.clone(),
                    ]);
                    args.extend(nic.ovs_args());
                }
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                self.ovs.vsctl(&a);
                // Often the admin then applies a network change in the GUI: a reload before
                // anything told the tool.
                let reload = self.rng.chance(50);
                if reload {
                    let out = self.ifupdown("ifreload -a");
                    assert!(out.status.success(), "{}", text(&out.stderr));
                }
                (
                    format!(
                        "live-change {name} {} -> {}{}",
                        old.vlan(),
                        nic.vlan(),
                        if reload { ", then ifreload -a" } else { "" }
                    ),
                    Some((port, old.vlan())),
                )
            }
            "ifreload" => {
                let out = self.ifupdown("ifreload -a");
                assert!(out.status.success(), "{}", text(&out.stderr));
                ("ifreload -a".into(), None)
            }
            "ifdown-ifup" => {
                let br = if self.rng.chance(60) {
                    "vmbr1"
                } else {
                    "ovsbr0"
                };
                let out = self.ifupdown(&format!("ifdown {br}; ifup {br}"));
                assert!(out.status.success(), "{}", text(&out.stderr));
                (format!("ifdown {br}; ifup {br}"), None)
            }
            "admin-edit" => {
                self.admin_edits += 1;
                let k = self.admin_edits;
                let mut content = std::fs::read_to_string(self.ovs.interfaces_path()).unwrap();
                let what = if self.rng.chance(50) {
                    content.push_str(&format!("# admin note {k}\n"));
                    "a comment"
                } else {
                    content.push_str(&format!(
                        "\nauto adm{k}\niface adm{k} inet manual\n    ovs_type OVSIntPort\n    ovs_bridge vmbr1\n    ovs_options tag={}\n",
                        200 + k
                    ));
                    "an OVSIntPort stanza"
                };
                std::fs::write(self.ovs.interfaces_path(), content).unwrap();
                let out = self.ifupdown("ifreload -a");
                assert!(out.status.success(), "{}", text(&out.stderr));
                (format!("admin adds {what}, ifreload -a"), None)
            }
            "ovs-restart" => {
                self.ovs.stop("vswitchd");
                self.ovs.stop("ovsdb");
                self.ovs.restart_ovsdb();
                self.ovs.start_vswitchd();
                ("restart ovsdb-server and ovs-vswitchd".into(), None)
            }
            "killed-apply" => {
                let delay = self.rng.below(40_000);
                let mut child = self.ovs.tool_cmd(&["-q", "apply"]).spawn().unwrap();
                std::thread::sleep(Duration::from_micros(delay));
                let _ = child.kill();
                let _ = child.wait();
                (format!("apply killed after {delay} us"), None)
            }
            "burst" => {
                let mut names: Vec<String> = self
                    .guests
                    .iter()
                    .flat_map(|(vmid, g)| {
                        (0..g.nics.len())
                            .map(|i| g.nic_name(*vmid, i))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                names.extend(self.raw.iter().cloned());
                let mut children: Vec<_> = names
                    .iter()
                    .map(|n| self.ovs.tool_cmd(&["-q", "plug", n]).spawn().unwrap())
                    .collect();
                for _ in 0..2 {
                    children.push(self.ovs.tool_cmd(&["-q", "apply"]).spawn().unwrap());
                }
                for mut c in children {
                    let _ = c.wait();
                }
                (
                    format!("burst of {} plugs and 2 applies", names.len()),
                    None,
                )
            }
            "raw-appear" => {
                let name = format!("vethR{}", self.next_raw);
                self.next_raw += 1;
                let c = self.ovs.container_ns();
                self.ovs.sh(&format!(
                    "ip link add {name} type veth peer name r{name} netns {c}; ip link set {name} up"
                ));
                self.raw.insert(name.clone());
                (format!("raw veth {name} appears"), None)
            }
            "raw-vanish" => {
                let raw: Vec<String> = self.raw.iter().cloned().collect();
                let Some(name) = self.rng.pick(&raw).cloned() else {
                    return ("raw-vanish (none)".into(), None);
                };
                self.ovs.sh(&format!("ip link del {name}"));
                self.raw.remove(&name);
                (format!("raw veth {name} vanishes"), None)
            }
            "pending-edit" => {
                let qemu: Vec<u32> = running
                    .iter()
                    .copied()
                    .filter(|v| self.guests[v].kind == Kind::Qemu)
                    .collect();
                let Some(&vmid) = self.rng.pick(&qemu) else {
                    return ("pending-edit (no VM)".into(), None);
                };
                // A change Proxmox could not hotplug (a new model): it stays in [PENDING] and
                // the VM keeps running on the current value, which the model keeps.
                let mut next = self.guests[&vmid].nics[0].clone();
                let what = match self.rng.below(4) {
                    0 => {
                        next.bridge = "vmbrlx";
                        "a Linux bridge"
                    }
                    1 => {
                        next.tag = Some(99);
                        "tag 99"
                    }
                    _ => {
                        next.firewall = !next.firewall;
                        "the other firewall shape"
                    }
                };
                let pending = next
                    .config(Kind::Qemu, vmid, 0)
                    .replacen("virtio=", "e1000=", 1);
                let path = self.ovs.dir.join(format!("pve/qemu-server/{vmid}.conf"));
                let mut text = std::fs::read_to_string(&path).unwrap();
                text.push_str(&format!("\n[PENDING]\n{pending}"));
                std::fs::write(&path, text).unwrap();
                (format!("pending edit of tap{vmid}i0: {what}"), None)
            }
            "nonguest-appear" => {
                let k = self.next_nonguest;
                self.next_nonguest += 1;
                let (what, script) = match self.rng.below(4) {
                    0 => (
                        "a VPN's tap",
                        format!(
                            "ip tuntap add tapvpn{k} mode tap; ip addr add 10.200.{}.1/24 dev tapvpn{k}; ip link set tapvpn{k} up",
                            k % 250
                        ),
                    ),
                    1 => (
                        "an admin's veth pair",
                        format!(
                            "ip link add vethh{k} type veth peer name vethh{k}b; ip link set vethh{k} up; ip link set vethh{k}b up"
                        ),
                    ),
                    2 => (
                        "an SDN VNet bridge",
                        format!("ip link add tapnet{k} type bridge; ip link set tapnet{k} up"),
                    ),
                    _ => (
                        "LXC's hotplug peer",
                        format!(
                            "ip link add veth{}i9p type veth peer name hp{k}; ip link set veth{}i9p up",
                            9000 + k,
                            9000 + k
                        ),
                    ),
                };
                self.ovs.sh(&script);
                // What the if-up.d hook and a preload library would do with it.
                let out = self.ifupdown("ifreload -a");
                assert!(out.status.success(), "{}", text(&out.stderr));
                (format!("{what} appears, ifreload -a"), None)
            }
            "proxmox-race" => {
                let nics: Vec<(u32, usize)> = self
                    .guests
                    .iter()
                    .flat_map(|(v, g)| {
                        g.nics
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| !n.firewall)
                            .map(|(i, _)| (*v, i))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let Some(&(vmid, i)) = self.rng.pick(&nics) else {
                    return ("proxmox-race (no NIC)".into(), None);
                };
                let g = self.guests[&vmid].clone();
                let name = g.nic_name(vmid, i);
                let delay = self.rng.below(30_000);
                let lock = self.lock_guest(vmid, g.kind);
                let mut apply = self.ovs.tool_cmd(&["-q", "apply"]).spawn().unwrap();
                std::thread::sleep(Duration::from_micros(delay));
                // tap_plug: `del-port`, then `add-port` without --may-exist, two commands.
                let out = self.ovs.try_sh(&format!(
                    "ovs-vsctl --db={db} --timeout=20 del-port {name} || true\novs-vsctl --db={db} --timeout=20 -- add-port {br} {name} {args} -- set Interface {name} mtu_request=1500",
                    db = self.ovs.db(),
                    br = g.nics[i].bridge,
                    args = g.nics[i].ovs_args().join(" ")
                ));
                drop(lock);
                let _ = apply.wait();
                assert!(
                    out.status.success(),
                    "Proxmox's add-port of {name} failed beside an apply: {}",
                    text(&out.stderr)
                );
                (
                    format!("Proxmox re-plugs {name} while an apply runs (after {delay} us)"),
                    None,
                )
            }
            "slow-ovsdb" => {
                let vmid = self.next_vmid;
                self.next_vmid += 1;
                let nic = Nic {
                    firewall: false,
                    ..self.random_nic()
                };
                let guest = Guest {
                    kind: Kind::Qemu,
                    nics: vec![nic.clone()],
                };
                self.guests.insert(vmid, guest.clone());
                self.write_config(vmid);
                let pid = std::fs::read_to_string(self.ovs.dir.join("ovsdb.pid")).unwrap();
                let pid = pid.trim();
                let stall = 200 + self.rng.below(1300);
                self.ovs.sh(&format!("kill -STOP {pid}"));
                let mut apply = self.ovs.tool_cmd(&["-q", "apply"]).spawn().unwrap();
                std::thread::sleep(Duration::from_millis(stall / 2));
                // A guest starts while OVSDB does not answer: its link appears, its add-port
                // waits in the queue with the apply's read.
                let name = guest.nic_name(vmid, 0);
                self.ovs.sh(&format!("ip tuntap add {name} mode tap"));
                let lock = self.lock_guest(vmid, Kind::Qemu);
                let db = self.ovs.db();
                let plug = Command::new("ip")
                    .args(["netns", "exec", &self.ovs.ns, "bash", "-ec"])
                    .arg(format!(
                        "ovs-vsctl --db={db} --timeout=20 del-port {name} || true\novs-vsctl --db={db} --timeout=20 -- add-port {br} {name} {args} -- set Interface {name} mtu_request=1500",
                        br = nic.bridge,
                        args = nic.ovs_args().join(" ")
                    ))
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                std::thread::sleep(Duration::from_millis(stall / 2));
                self.ovs.sh(&format!("kill -CONT {pid}"));
                let out = plug.wait_with_output().unwrap();
                let _ = apply.wait();
                assert!(
                    out.status.success(),
                    "add-port of {name} failed: {}",
                    text(&out.stderr)
                );
                self.hookscript(vmid, "post-start");
                drop(lock);
                (
                    format!("OVSDB stalls {stall} ms while VM {vmid} starts and an apply runs"),
                    None,
                )
            }
            other => unreachable!("{other}"),
        }
    }

    /// Starts a guest as Proxmox does: under its configuration lock, each NIC created and
    /// plugged with `tap_plug`'s commands, then the `post-start` hookscript (inside the lock).
    fn start_guest(&self, vmid: u32, guest: &Guest) {
        let _lock = self.lock_guest(vmid, guest.kind);
        for (i, nic) in guest.nics.iter().enumerate() {
            let name = guest.nic_name(vmid, i);
            match guest.kind {
                Kind::Qemu => self.ovs.sh(&format!("ip tuntap add {name} mode tap")),
                Kind::Lxc => self.ovs.sh(&format!(
                    "ip link add {name} type veth peer name c{vmid}x{i}"
                )),
            };
            self.proxmox_plug(&name, nic);
        }
        self.hookscript(vmid, "post-start");
    }

    /// Takes the guest's Proxmox configuration lock, as `lock_config` does, until dropped.
    fn lock_guest(&self, vmid: u32, kind: Kind) -> std::fs::File {
        let path = match kind {
            Kind::Qemu => self
                .ovs
                .dir
                .join(format!("lock/qemu-server/lock-{vmid}.conf")),
            Kind::Lxc => self
                .ovs
                .dir
                .join(format!("lock/lxc/pve-config-{vmid}.lock")),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.lock().unwrap();
        file
    }

    /// The guest ports the model expects on OVS: port name -> (bridge, VLAN, firewall NIC).
    fn expected(&self) -> BTreeMap<String, (String, String, Option<String>)> {
        let mut want = BTreeMap::new();
        for (vmid, g) in &self.guests {
            for (i, nic) in g.nics.iter().enumerate() {
                let name = g.nic_name(*vmid, i);
                want.insert(
                    port_of(&name, nic),
                    (
                        nic.bridge.to_string(),
                        nic.vlan(),
                        nic.firewall.then_some(name),
                    ),
                );
            }
        }
        for r in &self.raw {
            want.insert(r.clone(), ("ovsbr0".into(), "[] [] []".into(), None));
        }
        want
    }

    /// Whether a run of the tool ended as the model allows: 0, or 1 only for the police filter
    /// this kernel lacks.
    fn tool_result_ok(&self, out: &Output) -> Result<(), String> {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        match out.status.code() {
            Some(0) => Ok(()),
            Some(1) if !self.police => {
                let unexpected: Vec<&str> = all
                    .lines()
                    .filter(|l| l.contains("warning:") || l.contains("error:"))
                    .filter(|l| !l.contains("basic police"))
                    .collect();
                if unexpected.is_empty() {
                    Ok(())
                } else {
                    Err(format!("apply exited 1: {unexpected:?}\n{all}"))
                }
            }
            code => Err(format!("apply exited {code:?}:\n{all}")),
        }
    }

    fn check(&self, reloaded: bool) -> Result<(), String> {
        let ovs = &self.ovs;
        let out = ovs.tool(&["apply"]);
        self.tool_result_ok(&out)?;
        // The admin's objects: ifupdown2 deletes every mirror of the bridges it reloads (that
        // is ifupdown2, not the tool), so after a reload the mirror is put back for the next
        // step; otherwise it must be exactly as the admin made it.
        let mirror = ovs.vsctl(&[
            "--columns=name,select_all,external_ids,output_port",
            "--format=csv",
            "--no-headings",
            "list",
            "Mirror",
        ]);
        let admin: Vec<&str> = mirror
            .lines()
            .filter(|l| l.starts_with("admin_span,"))
            .collect();
        if reloaded {
            if admin.is_empty() {
                add_admin_mirror(ovs);
            }
        } else if admin != ["admin_span,true,{},[]"] {
            return Err(format!("the admin's mirror changed: {mirror}"));
        }
        let want = self.expected();

        // OVS, read once: every port's bridge and VLAN columns, every interface's type.
        let ports = port_table(ovs);
        let links = links(ovs);
        if links.get("adm0").and_then(|l| l.1.as_deref()) != Some("bradmin") {
            return Err("the admin's Linux bridge bradmin lost its member".into());
        }
        for (port, (bridge, vlan, fw_nic)) in &want {
            let Some((b, v, kind)) = ports.get(port) else {
                return Err(format!("{port} is not on OVS"));
            };
            if b != bridge || v != vlan {
                return Err(format!("{port} is on {b} {v}, want {bridge} {vlan}"));
            }
            if let Some(nic) = fw_nic {
                let (vmid, index) = split_nic(nic);
                let fwbr = format!("fwbr{vmid}i{index}");
                if kind != "internal" {
                    return Err(format!("{port} is not an internal port ({kind})"));
                }
                let fwln = links.get(port).ok_or(format!("{port} has no device"))?;
                if !fwln.0 || fwln.1.as_deref() != Some(fwbr.as_str()) {
                    return Err(format!("{port} is not up in {fwbr}: {fwln:?}"));
                }
                let n = links.get(nic).ok_or(format!("{nic} vanished"))?;
                if n.1.as_deref() != Some(fwbr.as_str()) {
                    return Err(format!("{nic} is not in {fwbr}: {n:?}"));
                }
                if ports.contains_key(nic) {
                    return Err(format!("firewall NIC {nic} is an OVS port itself"));
                }
            }
        }
        // No stale guest port: every tap/veth/fwln port on OVS is expected.
        for name in ports.keys() {
            let guestish =
                name.starts_with("tap") || name.starts_with("veth") || name.starts_with("fwln");
            if guestish && !want.contains_key(name) {
                return Err(format!("stale port {name} on OVS"));
            }
        }
        // The host files parse and list exactly the guest ports on OVS.
        let listed = stanzas::parse(&std::fs::read_to_string(ovs.stanzas_path()).unwrap())
            .map_err(|e| format!("stanzas file: {e:?}"))?;
        let mut files: Vec<(String, String)> = listed
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.bridge.clone()))
            .collect();
        files.sort();
        let mut on_ovs: Vec<(String, String)> = want
            .iter()
            .map(|(p, (b, _, _))| (p.clone(), b.clone()))
            .collect();
        on_ovs.sort();
        if files != on_ovs {
            return Err(format!(
                "the stanzas file lists {files:?}, OVS holds {on_ovs:?}"
            ));
        }
        let nm = std::fs::read_to_string(ovs.nmstate_path()).unwrap();
        nmstate::NetworkState::new_from_yaml(&nm).map_err(|e| format!("nmstate file: {e}"))?;
        for (p, _) in &on_ovs {
            if !nm.contains(&format!("- name: {p}\n")) {
                return Err(format!("the nmstate file lacks {p}"));
            }
        }
        // No temporary file left behind.
        for dir in [ovs.dir.join("etc"), ovs.dir.join("etc/interfaces.d")] {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    return Err(format!("temporary file {:?} left", e.path()));
                }
            }
        }
        Ok(())
    }

    fn ifquery(&self) -> Result<(), String> {
        let out = common::run(
            Command::new("ifquery")
                .arg("-a")
                .arg("-i")
                .arg(self.ovs.interfaces_path()),
        );
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| format!("ifquery -a -i: {}", text(&out.stderr)))
    }
}

fn add_admin_mirror(ovs: &Ovs) {
    ovs.vsctl(&[
        "--",
        "--id=@m",
        "create",
        "Mirror",
        "name=admin_span",
        "select_all=true",
        "--",
        "add",
        "Bridge",
        "ovsbr0",
        "mirrors",
        "@m",
    ]);
}

/// Port name -> (bridge, `tag trunks vlan_mode`, interface type), from two ovs-vsctl calls.
fn port_table(ovs: &Ovs) -> BTreeMap<String, (String, String, String)> {
    let mut bridge_of = BTreeMap::new();
    for br in ovs.vsctl(&["list-br"]).lines() {
        for p in ovs.vsctl(&["list-ports", br]).lines() {
            bridge_of.insert(p.to_string(), br.to_string());
        }
    }
    let json = ovs.vsctl(&[
        "--format=json",
        "--columns=name,tag,trunks,vlan_mode",
        "list",
        "Port",
    ]);
    let ports: serde_json::Value = serde_json::from_str(&json).unwrap();
    let json = ovs.vsctl(&["--format=json", "--columns=name,type", "list", "Interface"]);
    let ifaces: serde_json::Value = serde_json::from_str(&json).unwrap();
    let types: BTreeMap<String, String> = ifaces["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut out = BTreeMap::new();
    for row in ports["data"].as_array().unwrap() {
        let name = row[0].as_str().unwrap().to_string();
        let Some(bridge) = bridge_of.get(&name) else {
            continue;
        };
        let vlan = format!(
            "{} {} {}",
            common::ovs_value(&row[1], false),
            common::ovs_value(&row[2], true),
            common::ovs_value(&row[3], false)
        );
        let kind = types.get(&name).cloned().unwrap_or_default();
        out.insert(name, (bridge.clone(), vlan, kind));
    }
    out
}

/// Link name -> (up, master), from one `ip -j link show`.
fn links(ovs: &Ovs) -> BTreeMap<String, (bool, Option<String>)> {
    let json = ovs.sh("ip -j link show");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let up = l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"));
            (
                l["ifname"].as_str().unwrap().to_string(),
                (up, l["master"].as_str().map(String::from)),
            )
        })
        .collect()
}

/// Runs `steps` steps from `seed`; returns the counts per operation.
fn run_sequence(seed: u64, steps: usize) -> BTreeMap<&'static str, u32> {
    let mut world = World::new(seed);
    let started = Instant::now();
    for step in 0..steps {
        let monitor = world.ovs.monitor_ports();
        let (what, live) = world.step();
        world.history.push(format!("{step}: {what}"));
        let reloaded = what.contains("ifreload") || what.contains("ifdown");
        if let Err(e) = world.check(reloaded) {
            world.fail(step, &e);
        }
        if step % 10 == 9
            && let Err(e) = world.ifquery()
        {
            world.fail(step, &e);
        }
        // Not one row, during the step or the apply after it, may show a running guest's port
        // in another VLAN than its configuration's (the port a live change re-tags shows its old
        // VLAN in the monitor's initial rows, from before the change).
        let want = world.expected();
        for (action, port, vlan) in monitor.rows() {
            if action == "delete" || action == "old" {
                continue;
            }
            let Some((_, expected, _)) = want.get(&port) else {
                continue;
            };
            let allowed_old = action == "initial"
                && live
                    .as_ref()
                    .is_some_and(|(p, old)| *p == port && *old == vlan);
            if vlan != *expected && !allowed_old {
                world.fail(step, &format!("the monitor saw {port} at {vlan} ({action}), its configuration says {expected}"));
            }
        }
    }
    println!(
        "seed {seed}: {steps} steps in {:.1} s; operations: {:?}",
        started.elapsed().as_secs_f64(),
        world.counts
    );
    world.counts
}

fn steps() -> usize {
    std::env::var("OVS_AUTOATTACH_SEQUENCE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

#[test]
fn sequence_seed_1() {
    if common::without_root() {
        return;
    }
    run_sequence(1, steps());
}

#[test]
fn sequence_seed_2() {
    if common::without_root() {
        return;
    }
    run_sequence(2, steps());
}

#[test]
fn sequence_seed_3() {
    if common::without_root() {
        return;
    }
    run_sequence(3, steps());
}

/// A seed given by hand (`OVS_AUTOATTACH_SEQUENCE_SEED`); without one, a short run of seed 4.
#[test]
fn replay() {
    if common::without_root() {
        return;
    }
    let seed = std::env::var("OVS_AUTOATTACH_SEQUENCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    match seed {
        Some(seed) => {
            run_sequence(seed, steps());
        }
        None => {
            let counts = run_sequence(4, 20);
            assert_eq!(counts.values().sum::<u32>(), 20);
        }
    }
}
