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
//!   the list so far), as LXC's `clr_config_*` do. A `lxc.net.N.type` line starts entry N
//!   afresh (`lxc_clear_netdev`).
//! - A `veth.*` key of an entry that is not (yet) `type = veth` is an error LXC stops at, as is
//!   a `veth.mode` other than `bridge` or `router`.
//! - `veth.vlan.id` is `none` or an unsigned number (C's `strtoul` base 0: `0x1e` and `036`
//!   are hexadecimal and octal) up to 4094; `veth.vlan.tagged.id` one such number a line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// `lxc.net.N.veth.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VethMode {
    #[default]
    Bridge,
    /// `router`: LXC routes for the container through the host end.
    Router,
    /// An empty value: LXC is left with no mode (`clr_config_net_veth_mode`), and attaches the
    /// host end to no bridge either.
    Cleared,
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
    /// `lxc.net.N.veth.mode`: LXC attaches the host end to `link` in mode `bridge` (the
    /// default) only (`netdev_configure_server_veth`).
    pub mode: VethMode,
    pub vlan_id: Option<VlanId>,
    /// The line of the `veth.vlan.id` in force, for messages.
    pub vlan_id_line: usize,
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
            if sub == "veth.vlan.id" {
                net.vlan_id_line = i + 1;
            }
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

impl LxcConfig {
    /// Whether a veth entry whose host end LXC names itself (no `veth.pair`) places its NIC
    /// (a `link`, or router mode): when [`LxcConfig::entry_for`] cannot choose, the choice
    /// would matter.
    pub fn places_unnamed(&self) -> bool {
        self.nets.values().any(|n| {
            n.kind.as_deref() == Some("veth")
                && n.pair.is_none()
                && (n.link.is_some() || n.mode != VethMode::Bridge)
        })
    }
}

impl Net {
    fn set(&mut self, sub: &str, value: &str) -> Result<(), String> {
        let text = (!value.is_empty()).then(|| value.to_string());
        if sub.starts_with("veth.") && self.kind.as_deref() != Some("veth") {
            return Err("a veth key before lxc.net.N.type = veth (LXC refuses it)".into());
        }
        match sub {
            // `set_config_net_type` clears the whole entry first (`lxc_clear_netdev`); a value
            // LXC refused before still stops the container.
            "type" => {
                let error = self.error.take();
                *self = Net {
                    kind: text,
                    error,
                    ..Net::default()
                };
            }
            "link" => self.link = text,
            "veth.pair" => self.pair = text,
            "veth.mode" => {
                self.mode = match value {
                    "" => VethMode::Cleared,
                    "bridge" => VethMode::Bridge,
                    "router" => VethMode::Router,
                    v => return Err(format!("{v:?} is no veth mode (bridge or router)")),
                }
            }
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
            // LXC sets `tag=0 vlan_mode=access` for `vlan.id = 0`, as for any other ID.
            Some(VlanId::Id(id)) => Some(id),
            Some(VlanId::None) if trunks.is_empty() => {
                return Err(format!(
                    "line {}: veth.vlan.id none without veth.vlan.tagged.id: LXC refuses that on an Open vSwitch bridge",
                    self.vlan_id_line
                ));
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

/// A container name as LXC makes one: not empty, not `.` or `..`, at most 255 bytes (a
/// directory name under the lxcpath), no `/`, no whitespace or control character (the monitor's
/// title `[lxc monitor] <lxcpath> <name>` is split at its last blank).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
}

/// What a cgroup path says of the LXC container a process runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The path's outermost component `lxc.payload.<name>` (LXC's payload cgroup): `dir` is the
    /// path up to and including it (whose owner the adapters check), `names` the container
    /// names it may stand for. LXC names the cgroup `lxc.payload.<name>`, and
    /// `lxc.payload.<name>-<k>` when that one is taken (`CGROUP_CREATE_RETRY`); a name may end
    /// in `-<digits>` itself, so both are candidates, the whole name first.
    Named { dir: String, names: Vec<String> },
    /// A payload component whose name LXC would not create ([`valid_name`]).
    Refused(String),
}

/// The payload cgroup of one line of `/proc/<pid>/cgroup` (`0::/lxc.payload.ct1/...`), `None`
/// when it names none. The outermost one counts: a container's root owns the cgroups below its
/// own, and may name one `lxc.payload.<another container>` (a container nested in another is
/// found by its own monitor, see [`monitor`]).
pub fn payload(line: &str) -> Option<Payload> {
    let path = line.splitn(3, ':').nth(2)?;
    let mut dir = String::new();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        dir.push('/');
        dir.push_str(component);
        let Some(name) = component.strip_prefix("lxc.payload.") else {
            continue;
        };
        if !valid_name(name) {
            return Some(Payload::Refused(name.escape_debug().to_string()));
        }
        let mut names = vec![name.to_string()];
        if let Some((base, k)) = name.rsplit_once('-')
            && valid_name(base)
            && !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_digit())
        {
            names.push(base.to_string());
        }
        return Some(Payload::Named { dir, names });
    }
    None
}

/// The container an LXC monitor process watches, from its command line: `lxc-start` names its
/// monitor `[lxc monitor] <lxcpath> <name>` (`lxc_setproctitle` in `lxccontainer.c`), and the
/// monitor is the parent of the container's init. The lxcpath (absolute; it may hold blanks)
/// and the name, when both are ones LXC makes.
pub fn monitor(cmdline: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(cmdline).ok()?;
    let rest = text.trim_end_matches('\0').strip_prefix("[lxc monitor] ")?;
    let (path, name) = rest.rsplit_once(' ')?;
    (path.starts_with('/') && !path.contains('\0') && valid_name(name))
        .then(|| (path.to_string(), name.to_string()))
}

/// A container as a monitor or a payload cgroup names it: its lxcpath and the names it may have.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ident {
    pub lxc_path: PathBuf,
    pub names: Vec<String>,
}

/// What the processes of one network namespace say of their container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    Trusted(Ident),
    /// Named the way LXC names nothing: the look is incomplete.
    Refused(String),
    /// Named by something the tool does not trust: no container.
    Untrusted(String),
}

impl Claim {
    /// Lower is better: a trusted claim over a refused one over an untrusted one.
    pub fn rank(&self) -> u8 {
        match self {
            Claim::Trusted(_) => 0,
            Claim::Refused(_) => 1,
            Claim::Untrusted(_) => 2,
        }
    }
}

/// What an LXC monitor (process `pid`, watching container `name` of `lxc_path`) claims for its
/// children: only a monitor run by root (`by_root`) in the host's PID and network namespaces
/// (`on_host`) is trusted; another user's could name any container.
pub fn monitor_claim(pid: u32, lxc_path: &str, name: &str, by_root: bool, on_host: bool) -> Claim {
    if !by_root {
        Claim::Untrusted(format!("LXC monitor {pid} of {name} is not run by root"))
    } else if !on_host {
        Claim::Untrusted(format!(
            "LXC monitor {pid} of {name} runs in another namespace than the host's"
        ))
    } else {
        Claim::Trusted(Ident {
            lxc_path: PathBuf::from(lxc_path),
            names: vec![name.to_string()],
        })
    }
}

/// What a process in payload cgroup `payload` claims: trusted when root owns that cgroup's
/// directory (`owner`), or, where the hierarchy cannot be looked at (`None`), when it is at its
/// top (only the host's root makes cgroups there; a delegated subtree lies deeper). Its
/// container lives under `lxc_path`.
pub fn payload_claim(payload: Payload, owner: Option<u32>, lxc_path: &Path) -> Claim {
    match payload {
        Payload::Refused(name) => Claim::Refused(format!(
            "a process runs in an LXC payload cgroup named {name:?}, a name LXC does not make"
        )),
        Payload::Named { dir, names } => {
            let top = dir.matches('/').count() == 1;
            match owner {
                Some(0) => Claim::Trusted(Ident {
                    lxc_path: lxc_path.to_path_buf(),
                    names,
                }),
                None if top => Claim::Trusted(Ident {
                    lxc_path: lxc_path.to_path_buf(),
                    names,
                }),
                _ => Claim::Untrusted(format!(
                    "the payload cgroup {dir} is not root's, or cannot be looked at"
                )),
            }
        }
    }
}

/// The claims of the processes seen so far, by PID, each with whether a monitor made it.
pub type Claims = BTreeMap<u32, (Claim, bool)>;

/// Records `claim` for process `pid`: a process's better claim stays, and a monitor's on a tie,
/// so that a monitor the tool does not trust takes nothing from a payload cgroup root owns.
pub fn record(claims: &mut Claims, pid: u32, claim: Claim, from_monitor: bool) {
    match claims.get(&pid) {
        Some((have, _)) if have.rank() < claim.rank() => {}
        Some((have, true)) if have.rank() == claim.rank() => {}
        _ => {
            claims.insert(pid, (claim, from_monitor));
        }
    }
}

/// One network namespace's claiming processes: one of them, what they claim, and whether all
/// of them are still `lxc-start` (the container is being set up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub pid: u32,
    pub claim: Claim,
    pub starting: bool,
}

/// A claiming process as the adapters saw it: its claim, whether a monitor made it, its network
/// namespace and whether it is still `lxc-start`.
pub struct Seen {
    pub pid: u32,
    pub claim: Claim,
    pub from_monitor: bool,
    pub netns: String,
    pub setting_up: bool,
}

/// The processes grouped by network namespace: each group keeps its best claim (a monitor's on
/// a tie), and is starting while every process of it is still `lxc-start`.
pub fn groups(seen: Vec<Seen>) -> Vec<Group> {
    let mut by_netns: BTreeMap<String, (Group, bool)> = BTreeMap::new();
    for s in seen {
        let better = |have: &(Group, bool)| {
            (s.claim.rank(), !s.from_monitor) < (have.0.claim.rank(), !have.1)
        };
        match by_netns.get_mut(&s.netns) {
            Some(have) => {
                have.0.starting &= s.setting_up;
                if better(have) {
                    let starting = have.0.starting;
                    *have = (
                        Group {
                            pid: s.pid,
                            claim: s.claim,
                            starting,
                        },
                        s.from_monitor,
                    );
                }
            }
            None => {
                let group = Group {
                    pid: s.pid,
                    claim: s.claim,
                    starting: s.setting_up,
                };
                by_netns.insert(s.netns, (group, s.from_monitor));
            }
        }
    }
    by_netns.into_values().map(|(g, _)| g).collect()
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
            "lxc.net.0.type = veth\nlxc.net.0.veth.vlan.id = 5\nlxc.net.0.veth.vlan.tagged.id = 7\nlxc.net.0.veth.vlan.tagged.id = 6\n",
        );
        assert_eq!(
            native.ovs_vlan(),
            Ok(vlan(Some(5), &[6, 7], Some(VlanMode::NativeUntagged)))
        );
        let none_trunk = net(
            "lxc.net.0.type = veth\nlxc.net.0.veth.vlan.id = none\nlxc.net.0.veth.vlan.tagged.id = 7\n",
        );
        assert_eq!(
            none_trunk.ovs_vlan(),
            Ok(vlan(None, &[7], Some(VlanMode::Trunk)))
        );
        assert!(
            net("lxc.net.0.type = veth\nlxc.net.0.veth.vlan.id = none\n")
                .ovs_vlan()
                .is_err()
        );
        let reset = net(
            "lxc.net.0.type = veth\nlxc.net.0.veth.vlan.tagged.id = 7\nlxc.net.0.veth.vlan.tagged.id =\n",
        );
        // LXC sets tag 0 as any other: an access port of VLAN 0.
        assert_eq!(
            net("lxc.net.0.type = veth\nlxc.net.0.veth.vlan.id = 0\n").ovs_vlan(),
            Ok(vlan(Some(0), &[], Some(VlanMode::Access)))
        );
        // A type line starts the entry afresh.
        let retyped = net(
            "lxc.net.0.type = veth\nlxc.net.0.link = br9\nlxc.net.0.veth.vlan.tagged.id = 7\nlxc.net.0.veth.mode = router\nlxc.net.0.type = veth\n",
        );
        assert_eq!(
            (retyped.link, retyped.tagged.len(), retyped.mode),
            (None, 0, VethMode::Bridge)
        );
        let router = net("lxc.net.0.type = veth\nlxc.net.0.veth.mode = router\n");
        assert_eq!(router.mode, VethMode::Router);
        let cleared = net("lxc.net.0.type = veth\nlxc.net.0.veth.mode =\n");
        assert_eq!(cleared.mode, VethMode::Cleared);
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
                "lxc.net.0.type = veth\nlxc.net.0.veth.vlan.tagged.id = ten\n",
                "line 2: lxc.net.0.veth.vlan.tagged.id: \"ten\" is not a VLAN ID",
            ),
            (
                "lxc.net.0.type = veth\nlxc.net.0.veth.vlan.id = 09\n",
                "\"09\" is not a VLAN ID",
            ),
            (
                "lxc.net.0.type = veth\nlxc.net.0.veth.vlan.id = -1\n",
                "is not a VLAN ID",
            ),
            (
                "lxc.net.0.type = veth\n\nlxc.net.0.veth.vlan.id = none\n",
                "line 3: veth.vlan.id none without veth.vlan.tagged.id",
            ),
            (
                "lxc.net.0.veth.vlan.id = 30\nlxc.net.0.type = veth\n",
                "line 1: lxc.net.0.veth.vlan.id: a veth key before lxc.net.N.type = veth",
            ),
            (
                "lxc.net.0.type = veth\nlxc.net.0.veth.mode = l2\nlxc.net.0.type = veth\n",
                "line 2: lxc.net.0.veth.mode: \"l2\" is no veth mode",
            ),
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
        let m = |t: &[u8]| monitor(t);
        let pair = |p: &str, n: &str| Some((p.to_string(), n.to_string()));
        assert_eq!(
            m(b"[lxc monitor] /var/lib/lxc ct1\0"),
            pair("/var/lib/lxc", "ct1")
        );
        assert_eq!(
            m(b"[lxc monitor] /srv/my lxc web-1"),
            pair("/srv/my lxc", "web-1")
        );
        assert_eq!(m(b"lxc-start\0-n\0ct1\0"), None);
        assert_eq!(m(b"[lxc monitor] /var/lib/lxc"), None);
        assert_eq!(m(b"[lxc monitor] x \0"), None);
        assert_eq!(m(b"[lxc monitor] relative ct1"), None);
        assert_eq!(m(b"[lxc monitor] /var/lib/lxc .."), None);
        assert_eq!(m(b"[lxc monitor] /var/lib/lxc ."), None);
    }

    #[test]
    fn payload_cgroups_name_their_container() {
        let named = |dir: &str, names: &[&str]| {
            Some(Payload::Named {
                dir: dir.into(),
                names: names.iter().map(|n| n.to_string()).collect(),
            })
        };
        assert_eq!(
            payload("0::/lxc.payload.ct1"),
            named("/lxc.payload.ct1", &["ct1"])
        );
        assert_eq!(
            payload("0::/lxc.payload.web-2/init.scope"),
            named("/lxc.payload.web-2", &["web-2", "web"])
        );
        // The outermost payload cgroup counts: the ones below it are the container's own.
        assert_eq!(
            payload("0::/lxc.payload.ct1/lxc.payload.db"),
            named("/lxc.payload.ct1", &["ct1"])
        );
        assert_eq!(
            payload("0::/user.slice/lxc.payload.u1/x"),
            named("/user.slice/lxc.payload.u1", &["u1"])
        );
        for bad in [
            "0::/lxc.payload..",
            "0::/lxc.payload...",
            "0::/lxc.payload.",
            "0::/lxc.payload.a b",
        ] {
            assert!(matches!(payload(bad), Some(Payload::Refused(_))), "{bad}");
        }
        assert_eq!(payload("0::/lxc.monitor.ct1"), None);
        assert_eq!(payload("0::/system.slice/x.service"), None);
    }

    #[test]
    fn names_are_lxcs() {
        for ok in ["ct1", "web-2", "a.b", "x_y"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "a\0b",
            "a\nb",
            &"x".repeat(256),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    fn ident(name: &str) -> Ident {
        Ident {
            lxc_path: PathBuf::from("/var/lib/lxc"),
            names: vec![name.to_string()],
        }
    }

    #[test]
    fn only_roots_monitors_and_cgroups_are_trusted() {
        assert_eq!(
            monitor_claim(7, "/var/lib/lxc", "ct", true, true),
            Claim::Trusted(ident("ct"))
        );
        assert_eq!(
            monitor_claim(7, "/var/lib/lxc", "ct", false, true).rank(),
            2
        );
        assert_eq!(
            monitor_claim(7, "/var/lib/lxc", "ct", true, false).rank(),
            2
        );
        let lxc = Path::new("/var/lib/lxc");
        let named = |dir: &str| Payload::Named {
            dir: dir.into(),
            names: vec!["ct".into()],
        };
        assert_eq!(
            payload_claim(named("/lxc.payload.ct"), Some(0), lxc),
            Claim::Trusted(ident("ct"))
        );
        // Not root's, or deeper than the top where the owner cannot be seen: a delegated tree.
        assert_eq!(
            payload_claim(named("/lxc.payload.ct"), Some(1000), lxc).rank(),
            2
        );
        assert_eq!(
            payload_claim(named("/user.slice/lxc.payload.ct"), None, lxc).rank(),
            2
        );
        assert_eq!(payload_claim(named("/lxc.payload.ct"), None, lxc).rank(), 0);
        assert_eq!(
            payload_claim(Payload::Refused("..".into()), Some(0), lxc).rank(),
            1
        );
    }

    #[test]
    fn the_better_claim_wins_a_monitors_on_a_tie() {
        let mut claims = Claims::new();
        let untrusted = Claim::Untrusted("not root".into());
        record(&mut claims, 10, untrusted.clone(), true);
        record(&mut claims, 10, Claim::Trusted(ident("a")), false);
        assert_eq!(claims[&10], (Claim::Trusted(ident("a")), false));
        // A worse claim never replaces a better one; a monitor's stays on a tie.
        record(&mut claims, 10, untrusted, true);
        record(&mut claims, 10, Claim::Trusted(ident("b")), true);
        record(&mut claims, 10, Claim::Trusted(ident("c")), false);
        assert_eq!(claims[&10], (Claim::Trusted(ident("b")), true));
    }

    #[test]
    fn processes_group_by_namespace_and_start_while_all_set_up() {
        let seen = |pid, netns: &str, claim: Claim, from_monitor, setting_up| Seen {
            pid,
            claim,
            from_monitor,
            netns: netns.into(),
            setting_up,
        };
        let groups = groups(vec![
            seen(1, "net:[1]", Claim::Untrusted("x".into()), false, true),
            seen(2, "net:[1]", Claim::Trusted(ident("a")), true, false),
            seen(3, "net:[2]", Claim::Trusted(ident("b")), false, true),
            seen(4, "net:[2]", Claim::Trusted(ident("b2")), true, true),
        ]);
        assert_eq!(
            groups,
            [
                Group {
                    pid: 2,
                    claim: Claim::Trusted(ident("a")),
                    starting: false
                },
                Group {
                    pid: 4,
                    claim: Claim::Trusted(ident("b2")),
                    starting: true
                },
            ]
        );
    }
}
