//! Proxmox guest configurations: which NIC a host interface is, and what its `net<n>` line says.
//!
//! Proxmox names a guest NIC's host end `tap<vmid>i<n>` (QEMU) or `veth<vmid>i<n>` (LXC) and keeps
//! the guest's configuration in `qemu-server/<vmid>.conf` or `lxc/<vmid>.conf`. Only the lines
//! before the first `[section]` describe the running configuration: `[PENDING]`,
//! `[pve:pending]`, snapshots and `[special:cloudinit]` follow it and must not leak in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::decide::{ifname, vlan};

/// Largest configuration file read. pmxcfs itself refuses files above 1 MiB, so anything bigger
/// is not a real guest configuration.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Proxmox's VMID range and NIC count.
const VMID_MIN: u32 = 100;
const VMID_MAX: u32 = 999_999_999;
const MAX_NICS: u8 = 32;

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
}

/// A host interface that Proxmox named after a guest NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicId {
    pub guest: GuestId,
    pub index: u8,
}

impl NicId {
    /// Recognises `tap<vmid>i<n>` and `veth<vmid>i<n>` exactly as Proxmox generates them
    /// (no leading zeros, VMID 100–999999999, n 0–31). Anything else is not a Proxmox NIC.
    pub fn parse(name: &str) -> Option<NicId> {
        let (kind, rest) = if let Some(rest) = name.strip_prefix("tap") {
            (Kind::Qemu, rest)
        } else if let Some(rest) = name.strip_prefix("veth") {
            (Kind::Lxc, rest)
        } else {
            return None;
        };
        let (vmid, index) = rest.split_once('i')?;
        let vmid: u32 = canonical_number(vmid)?.try_into().ok()?;
        let index: u8 = canonical_number(index)?.try_into().ok()?;
        ((VMID_MIN..=VMID_MAX).contains(&vmid) && index < MAX_NICS).then_some(NicId {
            guest: GuestId { kind, vmid },
            index,
        })
    }

    /// The configuration key of this NIC: `net<n>`.
    pub fn key(&self) -> String {
        format!("net{}", self.index)
    }
}

/// A decimal number without sign or leading zeros, as Proxmox prints them.
fn canonical_number(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
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
}

/// The `net<n>` lines of a guest's current configuration, each parsed on its own so that one
/// malformed NIC does not take the guest's other NICs down with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestConfig {
    pub nets: BTreeMap<u8, Result<NetSpec, String>>,
}

impl GuestConfig {
    /// Parses the top section of a configuration file. Lines that are not `net<n>` are ignored,
    /// garbage included: they are not this tool's business and Proxmox reports them itself.
    pub fn parse(kind: Kind, text: &str) -> GuestConfig {
        let mut nets: BTreeMap<u8, Result<NetSpec, String>> = BTreeMap::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('[') {
                break;
            }
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
            let parsed = parse_net(kind, value.trim());
            if nets.contains_key(&index) {
                nets.insert(index, Err(format!("net{index} is defined more than once")));
            } else {
                nets.insert(index, parsed);
            }
        }
        GuestConfig { nets }
    }
}

/// Parses the value of a `net<n>` line: comma-separated `key=value` items. QEMU's first item is
/// the model, optionally with the MAC (`virtio=BC:24:11:A3:DA:B1`, or a bare `virtio`).
fn parse_net(kind: Kind, value: &str) -> Result<NetSpec, String> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, item) in value.split(',').enumerate() {
        let (k, v) = match item.split_once('=') {
            Some(kv) => kv,
            None if i == 0 && kind == Kind::Qemu && is_word(item) => (item, ""),
            None => return Err(format!("item {item:?} is not key=value")),
        };
        if !is_word(k) {
            return Err(format!("item {item:?} has an invalid key"));
        }
        if seen.insert(k, v).is_some() {
            return Err(format!("key {k:?} appears more than once"));
        }
    }
    let bridge = match seen.get("bridge") {
        Some(b) => {
            ifname::validate(b).map_err(|e| format!("bridge: {e}"))?;
            Some((*b).to_string())
        }
        None => None,
    };
    let tag = seen
        .get("tag")
        .map(|t| vlan::parse_tag(t).map_err(|e| format!("tag: {e}")))
        .transpose()?;
    let trunks = match seen.get("trunks") {
        // pve-common `PVE/Network.pm` `$ovs_bridge_add_port` adds `trunks=` (and
        // `vlan_mode=native-untagged`) only `if $trunks`, and the string "0" is false in Perl:
        // Proxmox plugs such a NIC without trunks.
        Some(&"0") => Vec::new(),
        Some(t) => vlan::parse_trunks(t).map_err(|e| format!("trunks: {e}"))?,
        None => Vec::new(),
    };
    let firewall = flag(&seen, "firewall")?;
    let link_down = flag(&seen, "link_down")?;
    if let Some(mtu) = seen.get("mtu") {
        mtu.parse::<u16>()
            .ok()
            .filter(|m| *m >= 1)
            .ok_or_else(|| format!("mtu {mtu:?} is not a number from 1 to 65535"))?;
    }
    if let Some(rate) = seen.get("rate") {
        rate.parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| format!("rate {rate:?} is not a non-negative number"))?;
    }
    Ok(NetSpec {
        bridge,
        tag,
        trunks,
        firewall,
        link_down,
    })
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
        // A bare first item is only QEMU's model; LXC has none.
        let l = GuestConfig::parse(Kind::Lxc, "net0: eth0,bridge=vmbr0\n");
        assert!(l.nets[&0].is_err());
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
            "net9: virtio,bridge=vmbr0,,tag=1\n",
        ));
        for i in 0..=6 {
            assert!(c.nets[&i].is_err(), "net{i}");
        }
        assert_eq!(c.nets[&7].as_ref().unwrap().tag, Some(7));
        assert!(c.nets[&8].is_err());
        assert!(c.nets[&9].is_err());
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

    #[test]
    fn duplicated_net_key_is_an_error() {
        let c = qemu("net0: virtio,bridge=vmbr0\nnet0: virtio,bridge=vmbr1\n");
        assert!(c.nets[&0].as_ref().unwrap_err().contains("more than once"));
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
}
