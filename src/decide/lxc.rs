//! A raw LXC container's own configuration (`<lxc_path>/<name>/config`), as far as it says where
//! a veth belongs: its `lxc.net.N.*` keys, read the way LXC's `confile.c` reads them, and the
//! port LXC itself would make on an Open vSwitch bridge (`network.c`,
//! `setup_veth_ovs_bridge_vlan`). Reading the file and finding the container are the
//! adapters' part (`host::lxc`).
//!
//! - A line is `key = value`; blanks around both are dropped, and one pair of matching quotes
//!   around the value. Lines starting with `#` and lines whose key does not start with `lxc.`
//!   are skipped, as LXC skips them. `lxc.include` is not followed.
//! - An empty value clears the key (`lxc.net =` clears every network, `lxc.net.N.veth.vlan.tagged.id =`
//!   the list so far), as LXC's `clr_config_*` do.
//! - `veth.vlan.id` is `none` or an unsigned number (C's `strtoul` base 0: `0x1e` and `036`
//!   are hexadecimal and octal) up to 4094; `veth.vlan.tagged.id` one such number a line.

use std::collections::BTreeMap;

use crate::decide::vlan::{Vlan, VlanMode};

/// The largest VLAN ID LXC accepts (`BRIDGE_VLAN_ID_MAX`).
const VLAN_ID_MAX: u16 = 4094;

/// `lxc.net.N.veth.vlan.id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VlanId {
    /// `none`: no untagged VLAN.
    None,
    Id(u16),
}

/// One `lxc.net.N` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Net {
    /// `lxc.net.N.type` (`veth`, `macvlan`, `empty`, ...).
    pub kind: Option<String>,
    /// `lxc.net.N.link`: the bridge LXC attaches the host end to.
    pub link: Option<String>,
    /// `lxc.net.N.veth.pair`: the host end's name, when the configuration chooses it.
    pub pair: Option<String>,
    pub vlan_id: Option<VlanId>,
    /// `lxc.net.N.veth.vlan.tagged.id`, in the order of the lines.
    pub tagged: Vec<u16>,
    /// The first value LXC would refuse, with its line: LXC does not start such a container.
    pub error: Option<String>,
}

/// The `lxc.net.N` entries of a container's configuration, by N.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LxcConfig {
    pub nets: BTreeMap<u32, Net>,
}

impl LxcConfig {
    pub fn parse(text: &str) -> LxcConfig {
        let mut config = LxcConfig::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with('#') || !line.starts_with("lxc.") {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim_end(), unquote(value.trim()));
            if key == "lxc.net" {
                if value.is_empty() {
                    config.nets.clear();
                }
                continue;
            }
            let Some(rest) = key.strip_prefix("lxc.net.") else {
                continue;
            };
            let (index, sub) = rest.split_once('.').unwrap_or((rest, ""));
            let Ok(index) = index.parse::<u32>() else {
                continue;
            };
            if sub.is_empty() {
                if value.is_empty() {
                    config.nets.remove(&index);
                }
                continue;
            }
            let net = config.nets.entry(index).or_default();
            if let Err(e) = net.set(sub, value) {
                net.error
                    .get_or_insert_with(|| format!("line {}: {key}: {e}", i + 1));
            }
        }
        config
    }

    /// The entry that made the host end `nic` of a container whose host ends are `siblings`
    /// (every veth of the host whose peer is in the container's network namespace, `nic`
    /// among them, in ifindex order):
    ///
    /// 1. the veth entry whose `veth.pair` is `nic`;
    /// 2. otherwise LXC named the host end itself (`vethXXXXXX`, random, recorded nowhere on
    ///    disk). LXC keeps its network list sorted by N and creates the pairs in that order, so
    ///    the host ends its configuration does not name, in ifindex order, are its veth
    ///    entries without `veth.pair`, in N order. That holds only when both lists are as long:
    ///    otherwise (a veth added to the container by other means) no entry is chosen.
    pub fn entry_for(&self, nic: &str, siblings: &[String]) -> Option<(u32, &Net)> {
        let veths = || {
            self.nets
                .iter()
                .filter(|(_, n)| n.kind.as_deref() == Some("veth"))
        };
        if let Some((n, net)) = veths().find(|(_, n)| n.pair.as_deref() == Some(nic)) {
            return Some((*n, net));
        }
        let named = |name: &str| veths().any(|(_, n)| n.pair.as_deref() == Some(name));
        let unnamed: Vec<(&u32, &Net)> = veths().filter(|(_, n)| n.pair.is_none()).collect();
        let hosts: Vec<&String> = siblings.iter().filter(|s| !named(s)).collect();
        let at = hosts.iter().position(|s| *s == nic)?;
        (unnamed.len() == hosts.len()).then(|| (*unnamed[at].0, unnamed[at].1))
    }
}

impl Net {
    fn set(&mut self, sub: &str, value: &str) -> Result<(), String> {
        let text = (!value.is_empty()).then(|| value.to_string());
        match sub {
            "type" => self.kind = text,
            "link" => self.link = text,
            "veth.pair" => self.pair = text,
            "veth.vlan.id" => {
                self.vlan_id = match value {
                    "" => None,
                    "none" => Some(VlanId::None),
                    v => Some(VlanId::Id(vlan_number(v)?)),
                }
            }
            "veth.vlan.tagged.id" if value.is_empty() => self.tagged.clear(),
            "veth.vlan.tagged.id" => self.tagged.push(vlan_number(value)?),
            _ => {}
        }
        Ok(())
    }

    /// The VLAN columns LXC sets on the port when it attaches the host end to an OVS bridge
    /// (`setup_veth_ovs_bridge_vlan`): nothing without VLAN keys; `vlan.id` alone an access
    /// port (`vlan_mode=access`); tagged IDs a trunk (`vlan_mode=trunk`), whose untagged VLAN
    /// is `vlan.id` when one is set (`vlan_mode=native-untagged`). `Err` when LXC refuses to
    /// plug it.
    pub fn ovs_vlan(&self) -> Result<Vlan, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut trunks = self.tagged.clone();
        trunks.sort_unstable();
        trunks.dedup();
        let tag = match self.vlan_id {
            Some(VlanId::Id(0)) => {
                return Err(
                    "veth.vlan.id 0 is no VLAN this tool sets (use 1-4094, or none)".into(),
                );
            }
            Some(VlanId::Id(id)) => Some(id),
            Some(VlanId::None) if trunks.is_empty() => {
                return Err(
                    "veth.vlan.id none without veth.vlan.tagged.id: LXC refuses that on an Open vSwitch bridge".into(),
                );
            }
            Some(VlanId::None) | None => None,
        };
        let mode = match (tag, trunks.is_empty()) {
            (None, true) => None,
            (Some(_), true) => Some(VlanMode::Access),
            (None, false) => Some(VlanMode::Trunk),
            (Some(_), false) => Some(VlanMode::NativeUntagged),
        };
        Ok(Vlan { tag, trunks, mode })
    }
}

/// A VLAN number as LXC's `get_u16(.., 0)` reads it (C's `strtoul` with base 0), at most 4094.
fn vlan_number(text: &str) -> Result<u16, String> {
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    let id = (!digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)))
        .then(|| u16::from_str_radix(digits, radix).ok())
        .flatten()
        .ok_or_else(|| format!("{text:?} is not a VLAN ID"))?;
    if id > VLAN_ID_MAX {
        return Err(format!("VLAN ID {id} is above {VLAN_ID_MAX}"));
    }
    Ok(id)
}

/// One pair of matching quotes around a value goes, as LXC's `parse_line` drops it.
fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if value.len() > 1
            && let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q))
        {
            return inner;
        }
    }
    value
}

/// The container names a payload cgroup path component `lxc.payload.<name>` may stand for. LXC
/// names a container's cgroup `lxc.payload.<name>`, and `lxc.payload.<name>-<k>` when that one
/// is taken (`CGROUP_CREATE_RETRY`); a name may end in `-<digits>` itself, so both are
/// candidates, the whole name first. `None` when no component of `path` is a payload cgroup;
/// the last one counts (a container nested in another).
pub fn payload_names(path: &str) -> Option<Vec<String>> {
    let name = path
        .split('/')
        .filter_map(|c| c.strip_prefix("lxc.payload."))
        .rfind(|n| !n.is_empty())?;
    let mut names = vec![name.to_string()];
    if let Some((base, k)) = name.rsplit_once('-')
        && !base.is_empty()
        && !k.is_empty()
        && k.bytes().all(|b| b.is_ascii_digit())
    {
        names.push(base.to_string());
    }
    Some(names)
}

/// The container an LXC monitor process watches, from its command line: `lxc-start` names its
/// monitor `[lxc monitor] <lxcpath> <name>` (`lxc_setproctitle`), and the monitor is the parent
/// of the container's init. This finds containers that run in no payload cgroup of their own
/// (LXC started where it cannot create cgroups).
pub fn monitor_name(cmdline: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(cmdline).ok()?;
    let rest = text.trim_end_matches('\0').strip_prefix("[lxc monitor] ")?;
    let (_, name) = rest.rsplit_once(' ')?;
    (!name.is_empty() && !name.contains(['/', '\0'])).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vlan(tag: Option<u16>, trunks: &[u16], mode: Option<VlanMode>) -> Vlan {
        Vlan {
            tag,
            trunks: trunks.to_vec(),
            mode,
        }
    }

    #[test]
    fn parses_the_net_keys_as_lxc_does() {
        let c = LxcConfig::parse(
            "# a comment\nlxc.uts.name = ct1\n  lxc.net.0.type = veth\nlxc.net.0.link=vmbr1\nlxc.net.0.veth.vlan.id = 30\nlxc.net.1.type = \"veth\"\nlxc.net.1.veth.pair = vethweb1\nlxc.net.1.veth.vlan.tagged.id = 20\nlxc.net.1.veth.vlan.tagged.id = 0x0a\nlxc.net.1.veth.vlan.tagged.id = 010\nlxc.net.1.veth.vlan.tagged.id = 20\nnot lxc = x\nlxc.net.2.type = veth\nlxc.net.2 =\n",
        );
        assert_eq!(c.nets.len(), 2);
        let n0 = &c.nets[&0];
        assert_eq!(n0.link.as_deref(), Some("vmbr1"));
        assert_eq!(n0.vlan_id, Some(VlanId::Id(30)));
        assert_eq!(
            n0.ovs_vlan(),
            Ok(vlan(Some(30), &[], Some(VlanMode::Access)))
        );
        let n1 = &c.nets[&1];
        assert_eq!(n1.kind.as_deref(), Some("veth"));
        assert_eq!(n1.tagged, [20, 10, 8, 20]);
        assert_eq!(
            n1.ovs_vlan(),
            Ok(vlan(None, &[8, 10, 20], Some(VlanMode::Trunk)))
        );
        let cleared = LxcConfig::parse("lxc.net.0.type = veth\nlxc.net =\n");
        assert!(cleared.nets.is_empty());
    }

    #[test]
    fn vlan_shapes_are_lxcs() {
        let net = |text: &str| LxcConfig::parse(text).nets[&0].clone();
        let untagged = net("lxc.net.0.type = veth\n");
        assert_eq!(untagged.ovs_vlan(), Ok(Vlan::default()));
        let native = net(
            "lxc.net.0.veth.vlan.id = 5\nlxc.net.0.veth.vlan.tagged.id = 7\nlxc.net.0.veth.vlan.tagged.id = 6\n",
        );
        assert_eq!(
            native.ovs_vlan(),
            Ok(vlan(Some(5), &[6, 7], Some(VlanMode::NativeUntagged)))
        );
        let none_trunk = net("lxc.net.0.veth.vlan.id = none\nlxc.net.0.veth.vlan.tagged.id = 7\n");
        assert_eq!(
            none_trunk.ovs_vlan(),
            Ok(vlan(None, &[7], Some(VlanMode::Trunk)))
        );
        assert!(net("lxc.net.0.veth.vlan.id = none\n").ovs_vlan().is_err());
        let reset = net("lxc.net.0.veth.vlan.tagged.id = 7\nlxc.net.0.veth.vlan.tagged.id =\n");
        assert_eq!(reset.ovs_vlan(), Ok(Vlan::default()));
    }

    #[test]
    fn refused_values_name_their_line() {
        for (text, says) in [
            (
                "lxc.net.0.type = veth\nlxc.net.0.veth.vlan.id = 4095\n",
                "line 2: lxc.net.0.veth.vlan.id: VLAN ID 4095 is above 4094",
            ),
            (
                "lxc.net.0.veth.vlan.tagged.id = ten\n",
                "line 1: lxc.net.0.veth.vlan.tagged.id: \"ten\" is not a VLAN ID",
            ),
            ("lxc.net.0.veth.vlan.id = 09\n", "\"09\" is not a VLAN ID"),
            ("lxc.net.0.veth.vlan.id = -1\n", "is not a VLAN ID"),
            ("lxc.net.0.veth.vlan.id = 0\n", "0 is no VLAN"),
        ] {
            let e = LxcConfig::parse(text).nets[&0].ovs_vlan().unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_host_end_finds_its_entry() {
        let c = LxcConfig::parse(
            "lxc.net.0.type = veth\nlxc.net.1.type = veth\nlxc.net.1.veth.pair = web1\nlxc.net.2.type = veth\nlxc.net.3.type = macvlan\n",
        );
        let s = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let siblings = s(&["vethAAAAAA", "web1", "vethBBBBBB"]);
        assert_eq!(c.entry_for("web1", &siblings).map(|e| e.0), Some(1));
        assert_eq!(c.entry_for("vethAAAAAA", &siblings).map(|e| e.0), Some(0));
        assert_eq!(c.entry_for("vethBBBBBB", &siblings).map(|e| e.0), Some(2));
        // One host end more than the configuration accounts for: no guess.
        let more = s(&["vethAAAAAA", "vethBBBBBB", "vethCCCCCC"]);
        assert_eq!(c.entry_for("vethAAAAAA", &more), None);
        assert_eq!(c.entry_for("vethZZZZZZ", &siblings), None);
        let one = LxcConfig::parse("lxc.net.0.type = veth\nlxc.net.0.link = br\n");
        assert_eq!(
            one.entry_for("vethX", &s(&["vethX"]))
                .and_then(|e| e.1.link.clone()),
            Some("br".into())
        );
    }

    #[test]
    fn monitors_name_their_container() {
        assert_eq!(
            monitor_name(b"[lxc monitor] /var/lib/lxc ct1\0"),
            Some("ct1".into())
        );
        assert_eq!(
            monitor_name(b"[lxc monitor] /srv/my lxc web-1"),
            Some("web-1".into())
        );
        assert_eq!(monitor_name(b"lxc-start\0-n\0ct1\0"), None);
        assert_eq!(monitor_name(b"[lxc monitor] /var/lib/lxc"), None);
        assert_eq!(monitor_name(b"[lxc monitor] x \0"), None);
    }

    #[test]
    fn payload_cgroups_name_their_container() {
        assert_eq!(
            payload_names("0::/lxc.payload.ct1"),
            Some(vec!["ct1".to_string()])
        );
        assert_eq!(
            payload_names("0::/lxc.payload.web-2/init.scope"),
            Some(vec!["web-2".to_string(), "web".to_string()])
        );
        assert_eq!(
            payload_names("0::/lxc.payload.a/lxc.payload.b"),
            Some(vec!["b".to_string()])
        );
        assert_eq!(payload_names("0::/lxc.monitor.ct1"), None);
        assert_eq!(payload_names("0::/system.slice/x.service"), None);
    }
}
