//! Proxmox guest configurations: which guest a host NIC belongs to ([`NicId`], named as
//! [`crate::decide::nic`] spells it), and what its `net<n>` line says.
//!
//! Proxmox names a guest NIC's host end `tap<vmid>i<n>` (QEMU) or `veth<vmid>i<n>` (LXC) and keeps
//! the guest's configuration in `qemu-server/<vmid>.conf` or `lxc/<vmid>.conf`. Only the lines
//! before the first `[section]` describe the running configuration: `[PENDING]`,
//! `[pve:pending]`, snapshots and `[special:cloudinit]` follow it and must not leak in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::decide::nic::{self, MAX_NICS, Role, Slot, VMID_MAX, VMID_MIN, canonical_number};
use crate::decide::{ifname, vlan};

/// Largest configuration file read. pmxcfs itself refuses files above 1 MiB, so anything bigger
/// is not a real guest configuration.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Qemu,
    Lxc,
}

/// A guest, as the key of its configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestId {
    pub kind: Kind,
    pub vmid: u32,
}

impl GuestId {
    /// `<pve_config_dir>/qemu-server/<vmid>.conf` or `<pve_config_dir>/lxc/<vmid>.conf`.
    pub fn config_path(&self, pve_dir: &Path) -> PathBuf {
        let sub = match self.kind {
            Kind::Qemu => "qemu-server",
            Kind::Lxc => "lxc",
        };
        pve_dir.join(sub).join(format!("{}.conf", self.vmid))
    }

    /// The file whose `flock` Proxmox holds while it works on the guest (start, NIC hotplug,
    /// cleanup): pve-guest-common `lock_config`, with qemu-server's
    /// `/var/lock/qemu-server/lock-<vmid>.conf` and pve-container's
    /// `/run/lock/lxc/pve-config-<vmid>.lock` (`/var/lock` is `/run/lock` on Debian).
    pub fn lock_path(&self, lock_dir: &Path) -> PathBuf {
        match self.kind {
            Kind::Qemu => lock_dir
                .join("qemu-server")
                .join(format!("lock-{}.conf", self.vmid)),
            Kind::Lxc => lock_dir
                .join("lxc")
                .join(format!("pve-config-{}.lock", self.vmid)),
        }
    }

    /// The guest whose configuration file is `file_name` (`<vmid>.conf`, the VMID as Proxmox
    /// writes it); `None` for any other name, such as pmxcfs's temporary files.
    pub fn from_file_name(kind: Kind, file_name: &str) -> Option<GuestId> {
        let vmid: u32 = canonical_number(file_name.strip_suffix(".conf")?)?
            .try_into()
            .ok()?;
        (VMID_MIN..=VMID_MAX)
            .contains(&vmid)
            .then_some(GuestId { kind, vmid })
    }
}

impl Slot {
    /// The host interface of the slot's NIC for a guest of `kind`.
    pub fn host(self, kind: Kind) -> String {
        match kind {
            Kind::Qemu => self.tap(),
            Kind::Lxc => self.veth(),
        }
    }

    /// Both guests the slot may belong to, QEMU's first: a fwbr or fwln name says the VMID and
    /// index, not whether the guest is a VM or a container.
    pub fn guests(self) -> [GuestId; 2] {
        [Kind::Qemu, Kind::Lxc].map(|kind| GuestId {
            kind,
            vmid: self.vmid,
        })
    }
}

/// The guest NICs a process is plugging right now, from its command line (`/proc/PID/cmdline`,
/// NUL-separated): qemu-server's `pve-bridge` and `pve-bridge-hotplug` (`pve-bridge tap100i0`,
/// run by QEMU for a netdev) and pve-container's `lxcnetaddbr` (`lxcnetaddbr 200 net up veth
/// veth200i0`, run by LXC). Both run Proxmox's `tap_plug`; LXC runs `lxcnetaddbr` even on a
/// container's reboot from inside, when no Proxmox lock is held.
pub fn plugged_by(cmdline: &[u8]) -> Vec<NicId> {
    let args: Vec<&str> = cmdline
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .collect();
    let script = |a: &&str| {
        matches!(
            a.rsplit('/').next(),
            Some("pve-bridge" | "pve-bridge-hotplug" | "lxcnetaddbr")
        )
    };
    match args.iter().position(script) {
        Some(at) => args[at + 1..]
            .iter()
            .filter_map(|a| NicId::parse(a))
            .collect(),
        None => Vec::new(),
    }
}

/// Whether a process's `comm` (its executable's name, at most 15 bytes) may be one of the plug
/// scripts [`plugged_by`] reads: the kernel names a script run through its `#!` line after the
/// script, and cuts `pve-bridge-hotplug` to `pve-bridge-hotp`.
pub fn is_plug_script_comm(comm: &[u8]) -> bool {
    matches!(comm, b"pve-bridge" | b"pve-bridge-hotp" | b"lxcnetaddbr")
}

/// A host interface that Proxmox named after a guest NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicId {
    pub guest: GuestId,
    pub index: u8,
}

impl NicId {
    /// Recognises `tap<vmid>i<n>` and `veth<vmid>i<n>` exactly as Proxmox generates them
    /// ([`nic::parse`]). Anything else is not a Proxmox NIC.
    pub fn parse(name: &str) -> Option<NicId> {
        let (slot, role) = nic::parse(name)?;
        let kind = match role {
            Role::Tap => Kind::Qemu,
            Role::Veth => Kind::Lxc,
            Role::Fwbr | Role::Fwln => return None,
        };
        Some(NicId {
            guest: GuestId {
                kind,
                vmid: slot.vmid,
            },
            index: slot.index,
        })
    }

    /// The `<vmid>`/`<n>` pair the NIC's names share.
    pub fn slot(&self) -> Slot {
        Slot {
            vmid: self.guest.vmid,
            index: self.index,
        }
    }

    /// The NIC's host interface: `tap<vmid>i<n>` or `veth<vmid>i<n>`.
    pub fn name(&self) -> String {
        self.slot().host(self.guest.kind)
    }

    /// The configuration key of this NIC: `net<n>`.
    pub fn key(&self) -> String {
        format!("net{}", self.index)
    }
}

/// The parts of a `net<n>` line that decide where the NIC belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpec {
    /// `None` when the line names no bridge (QEMU user networking, an unbridged veth).
    pub bridge: Option<String>,
    pub tag: Option<u16>,
    pub trunks: Vec<u16>,
    pub firewall: bool,
    pub link_down: bool,
    /// `rate=` in bytes per second, as Proxmox's `tap_rate_limit` computes it
    /// (`int(rate * 1024 * 1024)`); `None` for no limit (absent, or 0 after that rounding).
    pub rate: Option<u64>,
}

/// The `net<n>` lines of a guest's current configuration, each parsed on its own so that one
/// malformed NIC does not take the guest's other NICs down with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestConfig {
    pub nets: BTreeMap<u8, Result<NetSpec, String>>,
    /// QEMU only: the `net<n>` lines of the `[PENDING]` section, a change Proxmox has not
    /// applied yet. qemu-server's `pve-bridge` plugs a NIC with its pending value when there is
    /// one (a hotplugged NIC, a VM resumed from a state file), so both values can be live.
    /// pve-container's `lxcnetaddbr` reads the current value only, so for LXC this stays empty.
    pub pending: BTreeMap<u8, Result<NetSpec, String>>,
    /// The 1-based line each entry of `nets` was read from, so that `validate` can point at it.
    pub lines: BTreeMap<u8, usize>,
}

impl GuestConfig {
    /// Parses the top section of a configuration file. Lines that are not `net<n>` are ignored,
    /// garbage included: they are not this tool's business and Proxmox reports them itself.
    ///
    /// A `net<n>` key given on several lines takes the value Proxmox's own parser ends up with:
    /// qemu-server's `parse_vm_config` and pve-container's `parse_pct_config` store each line in
    /// turn (`$conf->{$key} = $value`), so the last line wins. qemu-server stores a value only
    /// when its check passes, so a QEMU line Proxmox refuses leaves the previous value in place;
    /// pve-container warns and stores it anyway. A `net<n>:` with nothing after it matches
    /// neither parser's line pattern and is skipped by both.
    pub fn parse(kind: Kind, text: &str) -> GuestConfig {
        let numbered = || text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        let current = numbered().take_while(|(_, l)| !l.starts_with('['));
        let pending = match kind {
            Kind::Qemu => Some(
                numbered()
                    .skip_while(|(_, l)| l.trim_end() != "[PENDING]")
                    .skip(1)
                    .take_while(|(_, l)| !l.starts_with('[')),
            ),
            Kind::Lxc => None,
        };
        let (nets, lines) = parse_nets(kind, current);
        GuestConfig {
            nets,
            pending: pending.map(|p| parse_nets(kind, p).0).unwrap_or_default(),
            lines,
        }
    }
}

/// The `net<n>` lines of one section, given with their 1-based line numbers; returns the values
/// and the line each was read from.
fn parse_nets<'a>(
    kind: Kind,
    numbered: impl Iterator<Item = (usize, &'a str)>,
) -> (BTreeMap<u8, Result<NetSpec, String>>, BTreeMap<u8, usize>) {
    {
        let mut nets: BTreeMap<u8, Result<NetSpec, String>> = BTreeMap::new();
        // Whether Proxmox holds the value recorded in `nets` (as opposed to having no value).
        let mut held: BTreeMap<u8, bool> = BTreeMap::new();
        let mut lines = BTreeMap::new();
        for (number, line) in numbered {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let Some(index) = key.strip_prefix("net").and_then(canonical_number) else {
                continue;
            };
            let Ok(index) = u8::try_from(index) else {
                continue;
            };
            if index >= MAX_NICS {
                continue;
            }
            let (stored, parsed) = if value.is_empty() {
                (false, Err(format!("net{index} has no value")))
            } else {
                // Both parsers match `<key>:\s*(.+?)\s*$`: the value without Perl's whitespace
                // around it (a CRLF file's `\r` included).
                let value = value.trim_matches(|c: char| c.is_ascii() && is_perl_space(c as u8));
                match parse_net(kind, value) {
                    Ok(spec) => (true, Ok(spec)),
                    Err(LineError::Unusable(e)) => (true, Err(e)),
                    Err(LineError::Refused(e)) => (kind == Kind::Lxc, Err(e)),
                }
            };
            if stored || held.get(&index) != Some(&true) {
                nets.insert(index, parsed);
                held.insert(index, stored);
                lines.insert(index, number);
            }
        }
        (nets, lines)
    }
}

/// QEMU's NIC models (qemu-server `PVE/QemuServer/Network.pm` `$nic_model_list`). The model is
/// the format's default key, and each model is also a key whose value is the MAC
/// (`virtio=BC:24:11:A3:DA:B1`).
const QEMU_MODELS: [&str; 14] = [
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
];

/// Why a `net<n>` value is not used. The difference decides whether a later line with the same
/// key replaces an earlier one (see [`GuestConfig::parse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
enum LineError {
    /// Proxmox's own parser refuses the value (`parse_property_string` and the format's checks).
    Refused(String),
    /// Proxmox accepts the value but cannot plug the NIC: OVS refuses the trunks, or no bridge
    /// can have that name.
    Unusable(String),
}

/// Parses the value of a `net<n>` line: first everything Proxmox checks ([`check_net`]), then
/// what Proxmox leaves to OVS and Linux.
fn parse_net(kind: Kind, value: &str) -> Result<NetSpec, LineError> {
    let net = check_net(kind, value).map_err(LineError::Refused)?;
    if let Some(b) = net.bridge {
        // Longer than a Linux interface name, `.` or `..`: no such bridge can exist.
        ifname::validate(b).map_err(|e| LineError::Unusable(format!("bridge: {e}")))?;
    }
    let trunks = match net.trunks {
        // pve-common `PVE/Network.pm` `$ovs_bridge_add_port` adds `trunks=` (and
        // `vlan_mode=native-untagged`) only `if $trunks`, and the string "0" is false in Perl:
        // Proxmox plugs such a NIC without trunks.
        Some("0") => Vec::new(),
        // IDs above 4095 and reversed ranges pass Proxmox's pattern; `ovs-vsctl` refuses them.
        Some(t) => {
            vlan::parse_trunks(t).map_err(|e| LineError::Unusable(format!("trunks: {e}")))?
        }
        None => Vec::new(),
    };
    Ok(NetSpec {
        bridge: net.bridge.map(str::to_string),
        tag: net.tag,
        trunks,
        firewall: net.firewall,
        link_down: net.link_down,
        rate: net.rate,
    })
}

/// A `net<n>` value that passed Proxmox's checks, with `bridge` and `trunks` still as written.
struct Checked<'a> {
    bridge: Option<&'a str>,
    tag: Option<u16>,
    trunks: Option<&'a str>,
    firewall: bool,
    link_down: bool,
    rate: Option<u64>,
}

/// Checks a `net<n>` value as Proxmox does: split into items by [`split_items`], then the checks
/// of qemu-server's `$net_fmt` or pve-container's `$netconf_desc` for the NIC's identity (QEMU
/// model and MAC, LXC name and MAC) and for the keys this tool reads. Other known keys
/// (`queues`, `ip`, `type`, ...) and unknown keys are not checked.
fn check_net(kind: Kind, value: &str) -> Result<Checked<'_>, String> {
    // qemu-server's and pve-container's `check_type` refuse a value holding a line feed or a
    // carriage return.
    if value.contains('\r') {
        return Err("the value contains a carriage return".into());
    }
    let seen = split_items(kind, value)?;
    match kind {
        Kind::Qemu => {
            // `model` has `default_key => 1` and is not optional.
            let model = seen
                .get("model")
                .ok_or("no NIC model (a bare `virtio`, `virtio=<MAC>` or `model=virtio`)")?;
            if !QEMU_MODELS.contains(model) {
                return Err(format!("model {model:?} is not a QEMU NIC model"));
            }
            check_mac(&seen, "macaddr")?;
        }
        Kind::Lxc => {
            // `name` is not optional; its pattern is `[-_.\w\d]+`.
            let name = seen
                .get("name")
                .ok_or("no name= (the interface name inside the container)")?;
            if !is_name_pattern(name) {
                return Err(format!("name {name:?} is not a valid interface name"));
            }
            check_mac(&seen, "hwaddr")?;
        }
    }
    let bridge = seen.get("bridge").copied();
    // QEMU's `pve-bridge-id` format and LXC's pattern: `[-_.\w\d]+`.
    if let Some(b) = bridge.filter(|b| !is_name_pattern(b)) {
        return Err(format!("bridge {b:?} is not a valid bridge name"));
    }
    let tag = seen
        .get("tag")
        .map(|t| vlan::parse_tag(t).map_err(|e| format!("tag: {e}")))
        .transpose()?;
    let trunks = seen.get("trunks").copied();
    if let Some(t) = trunks.filter(|t| !is_trunks_pattern(kind, t)) {
        return Err(match kind {
            Kind::Qemu => format!("trunks {t:?} is not a list like 20;30-40"),
            Kind::Lxc => format!("trunks {t:?} is not a list like 20;30 (LXC takes no ranges)"),
        });
    }
    let firewall = flag(&seen, "firewall")?;
    let link_down = flag(&seen, "link_down")?;
    if let Some(mtu) = seen.get("mtu") {
        // QEMU: 1-65520; LXC: 64-65535.
        let (min, max) = match kind {
            Kind::Qemu => (1, 65520),
            Kind::Lxc => (64, 65535),
        };
        schema_integer(mtu)
            .filter(|m| (min..=max).contains(m))
            .ok_or_else(|| format!("mtu {mtu:?} is not a number from {min} to {max}"))?;
    }
    let mut rate_bytes = None;
    if let Some(rate) = seen.get("rate") {
        // A number in both formats; only QEMU's has `minimum => 0`.
        let r = schema_number(rate).ok_or_else(|| format!("rate {rate:?} is not a number"))?;
        if kind == Kind::Qemu && r < 0.0 {
            return Err(format!("rate {rate:?} is negative"));
        }
        // pve-common `tap_rate_limit`: `int($rate * 1024 * 1024)`, and no limit when that is 0
        // (`return if !$rate`). A negative LXC rate is truncated the same way; tc refuses it,
        // so it counts as no limit here.
        let bytes = (r * 1_048_576.0).trunc();
        rate_bytes = (bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64);
    }
    Ok(Checked {
        bridge,
        tag,
        trunks,
        firewall,
        link_down,
        rate: rate_bytes,
    })
}

/// Splits a `net<n>` value into its items by key, following pve-common `PVE/JSONSchema.pm`
/// `parse_property_string`:
///
/// - items are separated by `,`; empty and blank items are skipped (`a,,b`, a trailing comma);
/// - `key=value` splits at the first `=`, and neither side may be empty;
/// - an item without `=` is the value of the format's default key: QEMU's `model`, in any
///   position; pve-container's format has no default key, so LXC refuses such an item;
/// - QEMU's `<model>=<MAC>` sets `model` and `macaddr` (`keyAlias => 'model',
///   alias => 'macaddr'`);
/// - a key given twice, directly or through the model shorthand, is refused.
///
/// The model is stored under `model` and the shorthand's MAC under `macaddr`.
fn split_items(kind: Kind, value: &str) -> Result<BTreeMap<&str, &str>, String> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for item in value.split(',') {
        if item.bytes().all(is_perl_space) {
            continue;
        }
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                if seen.contains_key(k) {
                    return Err(format!("key {k:?} appears more than once"));
                }
                if kind == Kind::Qemu && QEMU_MODELS.contains(&k) {
                    if seen.contains_key("model") {
                        return Err(format!("item {item:?} gives the NIC model a second time"));
                    }
                    if seen.contains_key("macaddr") {
                        return Err(format!("item {item:?} gives the MAC address a second time"));
                    }
                    seen.insert("model", k);
                    seen.insert("macaddr", v);
                } else if is_word(k) {
                    seen.insert(k, v);
                } else {
                    return Err(format!("item {item:?} has an invalid key"));
                }
            }
            Some(_) => return Err(format!("item {item:?} is not key=value")),
            None if kind == Kind::Lxc => {
                return Err(format!(
                    "item {item:?} is not key=value (an LXC NIC has no value without a key)"
                ));
            }
            None => {
                if seen.contains_key("model") {
                    return Err(format!(
                        "item {item:?} is not key=value, and the NIC model is already given"
                    ));
                }
                if !QEMU_MODELS.contains(&item) {
                    return Err(format!(
                        "item {item:?} is not key=value nor a QEMU NIC model"
                    ));
                }
                seen.insert("model", item);
            }
        }
    }
    Ok(seen)
}

/// Perl's `\s` on a byte string: space, `\t`, `\n`, vertical tab, form feed, `\r`.
fn is_perl_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Proxmox's pattern for bridge and interface names, `[-_.\w\d]+`.
fn is_name_pattern(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The `trunks` patterns: QEMU `\d+(?:-\d+)?(?:;\d+(?:-\d+)?)*`, LXC `\d+(?:;\d+)*`.
fn is_trunks_pattern(kind: Kind, s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    s.split(';').all(|item| match (kind, item.split_once('-')) {
        (Kind::Qemu, Some((a, b))) => digits(a) && digits(b),
        _ => digits(item),
    })
}

/// pve-common `PVE/JSONSchema.pm` `pve_verify_mac_addr`: `[a-f0-9][02468ace](?::[a-f0-9]{2}){5}`,
/// any case (a unicast address).
fn check_mac(seen: &BTreeMap<&str, &str>, key: &str) -> Result<(), String> {
    let Some(mac) = seen.get(key) else {
        return Ok(());
    };
    let b = mac.as_bytes();
    let ok = b.len() == 17
        && b.iter().enumerate().all(|(i, c)| {
            if i % 3 == 2 {
                *c == b':'
            } else {
                c.is_ascii_hexdigit()
            }
        })
        && b"02468ace".contains(&b[1].to_ascii_lowercase());
    ok.then_some(())
        .ok_or_else(|| format!("{key} {mac:?} is not a unicast MAC address"))
}

/// A JSON-schema integer (`PVE::JSONSchema::is_integer`: `^[+-]?\d+$`), saturating far outside
/// any range checked here.
fn schema_integer(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.bytes().fold(0i64, |n, b| {
        n.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
    Some(if negative { -n } else { n })
}

/// A JSON-schema number (`PVE::JSONSchema::is_number`:
/// `^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$`).
fn schema_number(s: &str) -> Option<f64> {
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let ok = digits(int)
        && digits(frac)
        && !(int.is_empty() && frac.is_empty())
        && exponent.is_none_or(|e| !e.is_empty() && digits(e));
    ok.then(|| s.parse().ok()).flatten()
}

/// A Proxmox boolean (`PVE::JSONSchema::parse_boolean`); absent means false.
fn flag(seen: &BTreeMap<&str, &str>, key: &str) -> Result<bool, String> {
    match seen.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) => match v.as_str() {
            "1" | "yes" | "on" | "true" => Ok(true),
            "0" | "no" | "off" | "false" => Ok(false),
            _ => Err(format!("{key} {v:?} is not a boolean")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxmox_plug_scripts_name_their_nics() {
        let nics = |c: &[u8]| {
            plugged_by(c)
                .into_iter()
                .map(|n| (n.guest.vmid, n.index))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            nics(b"/usr/bin/perl\0-T\0/usr/libexec/qemu-server/pve-bridge\0tap100i0\0"),
            [(100, 0)]
        );
        assert_eq!(
            nics(b"/usr/bin/perl\x00/usr/share/lxc/lxcnetaddbr\x00200\x00net\x00up\x00veth\x00veth200i1\x00"),
            [(200, 1)]
        );
        assert!(nics(b"/usr/bin/qemu-system-x86_64\x00-id\x00100\x00tap100i0\x00").is_empty());
        assert!(nics(b"bash\0-c\0pve-bridge-x tap100i0\0").is_empty());
        assert!(is_plug_script_comm(b"pve-bridge-hotp") && is_plug_script_comm(b"lxcnetaddbr"));
        assert!(!is_plug_script_comm(b"perl") && !is_plug_script_comm(b"bash"));
    }

    fn qemu(text: &str) -> GuestConfig {
        GuestConfig::parse(Kind::Qemu, text)
    }

    #[test]
    fn nic_names() {
        let n = NicId::parse("tap100i0").unwrap();
        assert_eq!((n.guest.kind, n.guest.vmid, n.index), (Kind::Qemu, 100, 0));
        let n = NicId::parse("veth999999999i31").unwrap();
        assert_eq!(
            (n.guest.kind, n.guest.vmid, n.index),
            (Kind::Lxc, 999_999_999, 31)
        );
        assert_eq!(n.key(), "net31");
        for not in [
            "tap99i0",
            "tap100i32",
            "tap0100i0",
            "tap100i00",
            "tap100",
            "tapi0",
            "veth100i",
            "vethAbCdEf",
            "fwln100i0",
            "tap100i0x",
            "tap1000000000i0",
            "veth-100i0",
        ] {
            assert_eq!(NicId::parse(not), None, "{not}");
        }
    }

    #[test]
    fn slots_belong_to_either_kind() {
        let slot = Slot {
            vmid: 100,
            index: 3,
        };
        assert_eq!(slot.host(Kind::Lxc), "veth100i3");
        assert_eq!(
            slot.guests()[1],
            GuestId {
                kind: Kind::Lxc,
                vmid: 100
            }
        );
        assert_eq!(NicId::parse("veth100i3").unwrap().name(), "veth100i3");
    }

    #[test]
    fn config_paths() {
        let q = NicId::parse("tap123i1").unwrap();
        assert_eq!(
            q.guest.config_path(Path::new("/etc/pve")),
            Path::new("/etc/pve/qemu-server/123.conf")
        );
        let l = NicId::parse("veth200i0").unwrap();
        assert_eq!(
            l.guest.config_path(Path::new("/x")),
            Path::new("/x/lxc/200.conf")
        );
    }

    #[test]
    fn qemu_line() {
        let c = qemu(
            "boot: order=scsi0\nnet0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr1,tag=10,trunks=20;30-32,firewall=1,mtu=1500,rate=10,link_down=1\n",
        );
        let n = c.nets[&0].as_ref().unwrap();
        assert_eq!(n.bridge.as_deref(), Some("vmbr1"));
        assert_eq!(n.tag, Some(10));
        assert_eq!(n.trunks, vec![20, 30, 31, 32]);
        assert!(n.firewall && n.link_down);
    }

    #[test]
    fn lxc_line() {
        let c = GuestConfig::parse(
            Kind::Lxc,
            "arch: amd64\nnet0: name=eth0,bridge=vmbr1,hwaddr=12:34:56:78:90:12,ip=dhcp,tag=10,trunks=20;30,type=veth,firewall=0\n",
        );
        let n = c.nets[&0].as_ref().unwrap();
        assert_eq!(
            (n.bridge.as_deref(), n.tag, n.firewall),
            (Some("vmbr1"), Some(10), false)
        );
        assert_eq!(n.trunks, vec![20, 30]);
    }

    #[test]
    fn bare_model_and_no_bridge() {
        let c = qemu("net0: virtio\nnet1: e1000=AA:BB:CC:DD:EE:FF\n");
        assert_eq!(c.nets[&0].as_ref().unwrap().bridge, None);
        assert_eq!(c.nets[&1].as_ref().unwrap().bridge, None);
    }

    fn lxc(text: &str) -> GuestConfig {
        GuestConfig::parse(Kind::Lxc, text)
    }

    /// The error for `net0` of a QEMU (`lxc` false) or LXC guest with this value.
    fn refused(lxc_guest: bool, value: &str) -> String {
        let text = format!("net0: {value}\n");
        let c = if lxc_guest { lxc(&text) } else { qemu(&text) };
        match &c.nets[&0] {
            Ok(spec) => panic!("{value:?} was accepted: {spec:?}"),
            Err(e) => e.clone(),
        }
    }

    /// Empty items are skipped, `a,,b` and a trailing comma included: pve-common
    /// `PVE/JSONSchema.pm` `parse_property_string` (line 1097 at 9.2.1) splits on `,` and does
    /// `next if $part =~ /^\s*$/`.
    #[test]
    fn empty_items_are_skipped() {
        let c = qemu(concat!(
            "net0: virtio,bridge=vmbr0,tag=5,\n",
            "net1: virtio,bridge=vmbr0,,tag=6\n",
            "net2: ,virtio,, ,bridge=vmbr0,\t,tag=7,,\n",
        ));
        for (i, tag) in [(0, 5), (1, 6), (2, 7)] {
            let n = c.nets[&i].as_ref().unwrap();
            assert_eq!(
                (n.bridge.as_deref(), n.tag),
                (Some("vmbr0"), Some(tag)),
                "net{i}"
            );
        }
        let l = lxc("net0: name=eth0,,bridge=vmbr0,tag=8,\n");
        assert_eq!(l.nets[&0].as_ref().unwrap().tag, Some(8));
    }

    /// The bare model is accepted in any position: `parse_property_string` (pve-common
    /// `PVE/JSONSchema.pm`, lines 1120-1135 at 9.2.1) gives an item without `=` to the format's
    /// `default_key`, wherever it stands, and qemu-server `PVE/QemuServer/Network.pm` `$net_fmt`
    /// marks `model` as that key (line 64 at 9.2.6).
    #[test]
    fn model_in_any_position() {
        let c = qemu(concat!(
            "net0: bridge=vmbr0,virtio\n",
            "net1: bridge=vmbr0,tag=5,e1000\n",
            "net2: bridge=vmbr0,model=vmxnet3,tag=6\n",
            "net3: tag=7,bridge=vmbr0,rtl8139=AA:BB:CC:DD:EE:FF\n",
        ));
        for i in 0..=3 {
            assert_eq!(
                c.nets[&i].as_ref().unwrap().bridge.as_deref(),
                Some("vmbr0"),
                "net{i}"
            );
        }
        assert_eq!(c.nets[&1].as_ref().unwrap().tag, Some(5));
        assert_eq!(c.nets[&3].as_ref().unwrap().tag, Some(7));
    }

    /// `virtio=<MAC>` is the model with the MAC as its value: qemu-server
    /// `PVE/QemuServer/Network.pm` `$net_fmt` maps every model to `{ keyAlias => 'model', alias
    /// => 'macaddr' }` (line 66 at 9.2.6), and `parse_property_string` (pve-common
    /// `PVE/JSONSchema.pm`, lines 1104-1113) then sets `model` to the key and `macaddr` to the
    /// value; `parse_net` only adds a random MAC when none is given. The MAC must be unicast
    /// (`pve_verify_mac_addr`).
    #[test]
    fn model_with_mac() {
        let c = qemu(concat!(
            "net0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr0\n",
            "net1: bridge=vmbr0,e1000-82540em=bc:24:11:a3:da:b1\n",
            "net2: model=virtio,macaddr=BC:24:11:A3:DA:B1,bridge=vmbr0\n",
        ));
        for i in 0..=2 {
            assert!(c.nets[&i].is_ok(), "net{i}: {:?}", c.nets[&i]);
        }
        assert!(refused(false, "virtio=BC:24:11:A3:DA,bridge=b").contains("MAC"));
        // The I/G bit set: a multicast address.
        assert!(refused(false, "virtio=01:24:11:A3:DA:B1,bridge=b").contains("unicast"));
        assert!(refused(false, "virtio=BC-24-11-A3-DA-B1,bridge=b").contains("MAC"));
    }

    /// pve-container's `$netconf_desc` (`PVE/LXC/Config.pm`) has no `default_key`, so an item
    /// without `=` is refused (`parse_property_string`: "value without key, but schema does not
    /// define a default key"), first or not; `name` is not optional there.
    #[test]
    fn lxc_has_no_default_key() {
        for value in [
            "eth0,bridge=vmbr0",
            "name=eth0,bridge=vmbr0,veth",
            "name=eth0,bridge=vmbr0,virtio",
        ] {
            assert!(
                refused(true, value).contains("no value without a key"),
                "{value}"
            );
        }
        assert!(refused(true, "bridge=vmbr0,hwaddr=BC:24:11:A3:DA:B1").contains("no name="));
        assert!(
            refused(true, "name=eth0,bridge=vmbr0,hwaddr=01:00:5E:00:00:01").contains("unicast")
        );
        // A model name is no special key for LXC: an unknown key, ignored.
        assert!(lxc("net0: name=eth0,bridge=vmbr0,virtio=x\n").nets[&0].is_ok());
    }

    /// What Proxmox refuses stays refused, with a message naming the problem. pve-common
    /// `PVE/JSONSchema.pm` `parse_property_string` dies on a duplicate key ("duplicate key in
    /// comma-separated list property", line 1102), on a second model ("key alias 'model' is
    /// already defined", line 1106; the default key twice, lines 1121 and 1132), on a second MAC
    /// through the shorthand (line 1112) and on an item with `=` but no key or no value
    /// ("missing key", line 1137); `check_object` then refuses a missing or unknown model
    /// (`model` is not optional and has an `enum`).
    #[test]
    fn proxmox_refusals_stay_refused() {
        for (value, msg) in [
            (
                "virtio,bridge=vmbr0,bridge=vmbr1",
                "key \"bridge\" appears more than once",
            ),
            (
                "virtio,bridge=b,tag=5,tag=5",
                "key \"tag\" appears more than once",
            ),
            (
                "virtio,bridge=b,e1000",
                "item \"e1000\" is not key=value, and the NIC model is already given",
            ),
            (
                "virtio=BC:24:11:A3:DA:B1,bridge=b,e1000",
                "the NIC model is already given",
            ),
            (
                "e1000,virtio=BC:24:11:A3:DA:B1,bridge=b",
                "gives the NIC model a second time",
            ),
            (
                "model=e1000,virtio=BC:24:11:A3:DA:B1",
                "gives the NIC model a second time",
            ),
            (
                "virtio=BC:24:11:A3:DA:B1,model=e1000",
                "key \"model\" appears more than once",
            ),
            (
                "virtio=BC:24:11:A3:DA:B1,virtio=BC:24:11:A3:DA:B2",
                "gives the NIC model a second time",
            ),
            (
                "macaddr=BC:24:11:A3:DA:B1,virtio=BC:24:11:A3:DA:B2",
                "gives the MAC address a second time",
            ),
            (
                "virtio=BC:24:11:A3:DA:B1,macaddr=BC:24:11:A3:DA:B2",
                "key \"macaddr\" appears more than once",
            ),
            ("virtio,bridge=", "item \"bridge=\" is not key=value"),
            ("virtio,=vmbr0", "item \"=vmbr0\" is not key=value"),
            (
                "virtio, bridge=vmbr0",
                "item \" bridge=vmbr0\" has an invalid key",
            ),
            ("virtio,br idge=vmbr0", "has an invalid key"),
            (
                "virtuo,bridge=vmbr0",
                "item \"virtuo\" is not key=value nor a QEMU NIC model",
            ),
            (
                "bridge=vmbr0, virtio",
                "item \" virtio\" is not key=value nor a QEMU NIC model",
            ),
            (
                "model=virtuo,bridge=vmbr0",
                "model \"virtuo\" is not a QEMU NIC model",
            ),
            ("bridge=vmbr0,tag=5", "no NIC model"),
            ("", "no NIC model"),
            (
                "virtio,bridge=vm/br",
                "bridge \"vm/br\" is not a valid bridge name",
            ),
            (
                "virtio,bridge=vmbr0,firewall=maybe",
                "firewall \"maybe\" is not a boolean",
            ),
            (
                "virtio,bridge=vmbr0,link_down=2",
                "link_down \"2\" is not a boolean",
            ),
            (
                "virtio,bridge=vmbr0,tag=0",
                "tag: VLAN ID 0 is outside 1-4094",
            ),
            (
                "virtio,bridge=vmbr0,tag=ten",
                "tag: VLAN ID \"ten\" is not a number",
            ),
            (
                "virtio,bridge=vmbr0,trunks=20;;30",
                "trunks \"20;;30\" is not a list",
            ),
            (
                "virtio,bridge=vmbr0,trunks=20,30",
                "item \"30\" is not key=value, and the NIC model is already given",
            ),
            (
                "virtio,bridge=vmbr0,mtu=0",
                "mtu \"0\" is not a number from 1 to 65520",
            ),
            (
                "virtio,bridge=vmbr0,mtu=65521",
                "mtu \"65521\" is not a number from 1 to 65520",
            ),
            ("virtio,bridge=vmbr0,mtu=big", "mtu \"big\" is not a number"),
            ("virtio,bridge=vmbr0,rate=-1", "rate \"-1\" is negative"),
            ("virtio,bridge=vmbr0,rate=1e", "rate \"1e\" is not a number"),
            (
                "virtio,bridge=vmbr0,rate=inf",
                "rate \"inf\" is not a number",
            ),
            ("virtio,bridge=vm\rbr0", "carriage return"),
        ] {
            let e = refused(false, value);
            assert!(e.contains(msg), "{value:?}: {e}");
        }
        for (value, msg) in [
            (
                "name=eth0,name=eth1,bridge=vmbr0",
                "key \"name\" appears more than once",
            ),
            (
                "name=eth0,bridge=vmbr0,trunks=20;30-40",
                "LXC takes no ranges",
            ),
            (
                "name=eth0,bridge=vmbr0,mtu=63",
                "mtu \"63\" is not a number from 64 to 65535",
            ),
            (
                "name=eth/0,bridge=vmbr0",
                "name \"eth/0\" is not a valid interface name",
            ),
        ] {
            let e = refused(true, value);
            assert!(e.contains(msg), "{value:?}: {e}");
        }
    }

    /// Values as Proxmox's schema reads them (pve-common `PVE/JSONSchema.pm` `is_integer`,
    /// `is_number`; the ranges of `$net_fmt` and `$netconf_desc`): a signed or zero-padded tag,
    /// LXC's `mtu` up to 65535 and its `rate` without a minimum.
    #[test]
    fn values_as_the_schema_reads_them() {
        let c = qemu(concat!(
            "net0: virtio,bridge=vmbr0,tag=+5,mtu=65520,rate=.5\n",
            "net1: virtio,bridge=vmbr0,tag=0010,mtu=1,rate=1E+3\n",
            "net2: virtio,bridge=vmbr0,rate=-0,queues=4,host-tunnel=1,unknown-key=x\n",
        ));
        assert_eq!(c.nets[&0].as_ref().unwrap().tag, Some(5));
        assert_eq!(c.nets[&1].as_ref().unwrap().tag, Some(10));
        assert!(c.nets[&2].is_ok(), "{:?}", c.nets[&2]);
        let l = lxc("net0: name=eth0,bridge=vmbr0,mtu=65535,rate=-3\n");
        assert!(l.nets[&0].is_ok(), "{:?}", l.nets[&0]);
        for (s, want) in [
            ("5", Some(5.0)),
            ("5.", Some(5.0)),
            (".5", Some(0.5)),
            ("+1e2", Some(100.0)),
        ] {
            assert_eq!(schema_number(s), want, "{s}");
        }
        for bad in [
            "", ".", "e5", "1e", "1.2.3", "nan", "inf", "0x1", "1_0", "+-1",
        ] {
            assert_eq!(schema_number(bad), None, "{bad}");
        }
        assert_eq!(schema_integer("-12"), Some(-12));
        assert_eq!(schema_integer("99999999999999999999999"), Some(i64::MAX));
        assert_eq!(schema_integer("1.0"), None);
    }

    #[test]
    fn only_top_section_counts() {
        let c = qemu(
            "net0: virtio=AA:AA:AA:AA:AA:AA,bridge=vmbr0,tag=5\n\n[PENDING]\nnet0: virtio=AA:AA:AA:AA:AA:AA,bridge=vmbr9,tag=6\nnet1: virtio,bridge=vmbr9\n[snap1]\nnet2: virtio,bridge=x\n",
        );
        assert_eq!(c.nets.len(), 1);
        assert_eq!(c.nets[&0].as_ref().unwrap().tag, Some(5));
        let c = qemu("[special:cloudinit]\nnet0: virtio,bridge=vmbr0\n");
        assert!(c.nets.is_empty());
    }

    #[test]
    fn malformed_values_are_per_nic() {
        let c = qemu(concat!(
            "net0: virtio,bridge=vmbr0,tag=0\n",
            "net1: virtio,bridge=vmbr0,tag=4095\n",
            "net2: virtio,bridge=vmbr0,tag=70000\n",
            "net3: virtio,bridge=vmbr0,trunks=40-30\n",
            "net4: virtio,bridge=vmbr0,bridge=vmbr1\n",
            "net5: virtio,bridge=vm/br\n",
            "net6: virtio,bridge=vmbr0,firewall=maybe\n",
            "net7: virtio,bridge=vmbr0,tag=7\n",
            "net8: virtio,bridge=vmbr0,mtu=big\n",
            "net9: virtio,bridge=averyveryverylongbridge\n",
        ));
        for i in (0..=6).chain(8..=9) {
            assert!(c.nets[&i].is_err(), "net{i}");
        }
        assert_eq!(c.nets[&7].as_ref().unwrap().tag, Some(7));
        assert!(c.nets[&3].as_ref().unwrap_err().contains("reversed"));
        assert!(c.nets[&9].as_ref().unwrap_err().contains("at most 15"));
    }

    /// Trunk IDs 0 and 4095 are accepted and passed on: qemu-server `PVE/QemuServer/Network.pm`
    /// `$net_fmt` and pve-container `PVE/LXC/Config.pm` `$netconf_desc` check `trunks` against a
    /// pattern only (`\d+(?:-\d+)?(?:;\d+(?:-\d+)?)*`, LXC `\d+(?:;\d+)*`), and pve-common
    /// `PVE/Network.pm` `$ovs_bridge_add_port` hands them to `ovs-vsctl add-port ... trunks=`,
    /// which takes 0-4095. `tag` stays 1-4094 (`minimum => 1, maximum => 4094` in both formats).
    #[test]
    fn trunks_take_zero_and_4095() {
        let c = qemu(concat!(
            "net0: virtio,bridge=vmbr0,trunks=10;4095\n",
            "net1: virtio,bridge=vmbr0,tag=10,trunks=0;20\n",
            "net2: virtio,bridge=vmbr0,trunks=0-2;4094-4095\n",
            "net3: virtio,bridge=vmbr0,trunks=4096\n",
            "net4: virtio,bridge=vmbr0,trunks=1-4096\n",
            "net5: virtio,bridge=vmbr0,tag=4095,trunks=5\n",
        ));
        assert_eq!(c.nets[&0].as_ref().unwrap().trunks, vec![10, 4095]);
        let n = c.nets[&1].as_ref().unwrap();
        assert_eq!((n.tag, n.trunks.as_slice()), (Some(10), &[0, 20][..]));
        assert_eq!(
            c.nets[&2].as_ref().unwrap().trunks,
            vec![0, 1, 2, 4094, 4095]
        );
        for i in [3, 4] {
            assert!(
                c.nets[&i]
                    .as_ref()
                    .unwrap_err()
                    .contains("is outside 0-4095"),
                "net{i}: {:?}",
                c.nets[&i]
            );
        }
        assert!(
            c.nets[&5]
                .as_ref()
                .unwrap_err()
                .contains("is outside 1-4094")
        );
        let l = GuestConfig::parse(
            Kind::Lxc,
            "net0: name=eth0,bridge=vmbr0,tag=10,trunks=0;4095\n",
        );
        let n = l.nets[&0].as_ref().unwrap();
        assert_eq!((n.tag, n.trunks.as_slice()), (Some(10), &[0, 4095][..]));
    }

    /// `trunks=0` alone is no trunk at all: pve-common `PVE/Network.pm` `$ovs_bridge_add_port`
    /// pushes `trunks=` and `vlan_mode=native-untagged` only `if $trunks`, and "0" is false in
    /// Perl ("00" is not).
    #[test]
    fn trunks_zero_alone_is_no_trunk() {
        let c = qemu(concat!(
            "net0: virtio,bridge=vmbr0,tag=10,trunks=0\n",
            "net1: virtio,bridge=vmbr0,trunks=0\n",
            "net2: virtio,bridge=vmbr0,trunks=00\n",
        ));
        let n = c.nets[&0].as_ref().unwrap();
        assert_eq!((n.tag, n.trunks.as_slice()), (Some(10), &[][..]));
        assert!(c.nets[&1].as_ref().unwrap().trunks.is_empty());
        assert_eq!(c.nets[&2].as_ref().unwrap().trunks, vec![0]);
    }

    /// A duplicated `net<n>` key: the last line wins. qemu-server `PVE/QemuServer.pm`
    /// `parse_vm_config` (line 2069 at 9.2.6) and pve-container `PVE/LXC/Config.pm`
    /// `parse_pct_config` (line 1211) both store each `key: value` line in turn with
    /// `$conf->{$key} = $value`.
    #[test]
    fn duplicated_net_key_last_line_wins() {
        let c = qemu(
            "net0: virtio,bridge=vmbr0,tag=5\nnet1: virtio,bridge=vmbr0\nnet0: virtio,bridge=vmbr1,tag=6\n",
        );
        let n = c.nets[&0].as_ref().unwrap();
        assert_eq!((n.bridge.as_deref(), n.tag), (Some("vmbr1"), Some(6)));
        assert!(c.nets[&1].is_ok());
        let l = lxc("net0: name=eth0,bridge=vmbr0,tag=5\nnet0: name=eth0,bridge=vmbr1\n");
        let n = l.nets[&0].as_ref().unwrap();
        assert_eq!((n.bridge.as_deref(), n.tag), (Some("vmbr1"), None));
        // A bad line followed by a good one: the good one.
        let c = qemu("net0: virtio,bridge=vmbr0,tag=0\nnet0: virtio,bridge=vmbr1\n");
        assert_eq!(
            c.nets[&0].as_ref().unwrap().bridge.as_deref(),
            Some("vmbr1")
        );
        let l = lxc("net0: eth0,bridge=vmbr0\nnet0: name=eth0,bridge=vmbr1\n");
        assert_eq!(
            l.nets[&0].as_ref().unwrap().bridge.as_deref(),
            Some("vmbr1")
        );
    }

    /// A later QEMU line that Proxmox refuses does not replace the earlier value: qemu-server
    /// `PVE/QemuServer.pm` `parse_vm_config` runs `check_type` in an `eval` (line 2052 at 9.2.6),
    /// only warns "unable to parse value of 'net0'" when it fails and stores the value only in the
    /// success branch (line 2069). pve-container `PVE/LXC/Config.pm` `parse_pct_config` warns
    /// and stores it anyway (lines 1209-1211), so for LXC the NIC is invalid.
    #[test]
    fn duplicated_net_key_refused_last_line() {
        let text = "net0: virtio,bridge=vmbr0,tag=5\nnet0: virtio,bridge=vmbr1,tag=0\n";
        let n = qemu(text).nets[&0].clone().unwrap();
        assert_eq!((n.bridge.as_deref(), n.tag), (Some("vmbr0"), Some(5)));
        let l = lxc("net0: name=eth0,bridge=vmbr0,tag=5\nnet0: name=eth0,bridge=vmbr1,tag=0\n");
        assert!(
            l.nets[&0]
                .as_ref()
                .unwrap_err()
                .contains("VLAN ID 0 is outside 1-4094")
        );
        // Only refused lines: the last one's error.
        let c = qemu("net0: virtio,bridge=vmbr0,tag=0\nnet0: virtio,bridge=vmbr0,tag=9999\n");
        assert!(c.nets[&0].as_ref().unwrap_err().contains("VLAN ID 9999"));
    }

    /// A later line that Proxmox accepts but cannot plug replaces the earlier value and makes the
    /// NIC invalid: Proxmox stores it (the `trunks` pattern passes) and its `tap_plug` then fails
    /// in `ovs-vsctl`. A `net0:` with nothing after it matches neither parser's line pattern
    /// (`:\s*(.+?)\s*$` needs a character) and is skipped.
    #[test]
    fn duplicated_net_key_unusable_and_empty_lines() {
        let c = qemu(concat!(
            "net0: virtio,bridge=vmbr0,tag=5\nnet0: virtio,bridge=vmbr0,trunks=5000\n",
            "net1: virtio,bridge=vmbr0,tag=5\nnet1: virtio,bridge=vmbr0,trunks=40-30\nnet1: virtio,tag=0\n",
            "net2: virtio,bridge=vmbr0,tag=5\nnet2:\n",
            "net3:\n",
        ));
        assert!(
            c.nets[&0]
                .as_ref()
                .unwrap_err()
                .contains("trunk VLAN ID 5000 is outside 0-4095")
        );
        // The refused third line leaves the unusable second one in place.
        assert!(c.nets[&1].as_ref().unwrap_err().contains("reversed"));
        assert_eq!(c.nets[&2].as_ref().unwrap().tag, Some(5));
        assert_eq!(c.nets[&3], Err("net3 has no value".into()));
        let l = lxc("net0: name=eth0,bridge=vmbr0,tag=5\nnet0:\n");
        assert_eq!(l.nets[&0].as_ref().unwrap().tag, Some(5));
    }

    #[test]
    fn garbage_is_ignored_and_crlf_tolerated() {
        let c = qemu(
            "\u{0}\u{1}junk\nthis is not a config\r\nnet0: virtio,bridge=vmbr0,tag=3\r\nnet99: virtio,bridge=x\nnetX: y\n",
        );
        assert_eq!(c.nets.len(), 1);
        assert_eq!(c.nets[&0].as_ref().unwrap().tag, Some(3));
    }

    #[test]
    fn booleans() {
        for (v, want) in [
            ("1", true),
            ("yes", true),
            ("ON", true),
            ("true", true),
            ("0", false),
            ("off", false),
        ] {
            let c = qemu(&format!("net0: virtio,bridge=b,link_down={v}\n"));
            assert_eq!(c.nets[&0].as_ref().unwrap().link_down, want, "{v}");
        }
    }

    /// `lines` points at the line whose value `nets` holds: the last one, except after a QEMU
    /// line Proxmox refuses, which leaves the earlier value (and its line) in place.
    #[test]
    fn lines_point_at_the_value_used() {
        let c = qemu(concat!(
            "name: vm\n",
            "net0: virtio,bridge=vmbr0,tag=5\n",
            "net1: virtio,bridge=vmbr0,trunks=5000\n",
            "net0: virtio,bridge=vmbr1,tag=0\n",
            "net2: virtio,bridge=vmbr0\n",
            "net2: virtio,bridge=vmbr1\n",
            "[PENDING]\n",
            "net3: virtio,bridge=vmbr0\n",
        ));
        assert_eq!(c.lines, [(0, 2), (1, 3), (2, 6)].into());
        let l = lxc("net0: name=eth0,bridge=vmbr0,tag=5\nnet0: name=eth0,bridge=vmbr1,tag=0\n");
        assert_eq!(l.lines, [(0, 2)].into());
    }

    #[test]
    fn guest_ids_from_file_names() {
        let q = |name| GuestId::from_file_name(Kind::Qemu, name).map(|g| g.vmid);
        assert_eq!(q("100.conf"), Some(100));
        assert_eq!(q("999999999.conf"), Some(999_999_999));
        for bad in [
            "99.conf",
            "0100.conf",
            "100.conf.tmp",
            "100",
            "abc.conf",
            ".conf",
            "1000000000.conf",
        ] {
            assert_eq!(q(bad), None, "{bad}");
        }
    }
}
