//! The rules file of proxmox-ovs-mirror, `/etc/ovs-mirror/mirrors.conf`, read as that tool reads
//! it, but stricter: a line it would half-accept (an unknown option it skips with a warning) is
//! refused here, with its line number, so that a typo never silently changes what is mirrored.
//!
//! One rule per line, fields separated by blanks:
//!
//! ```text
//! BRIDGE  SOURCE_PORT  DEST_VMID  DEST_NIC_INDEX  [promisc=yes|no]  [select=both|src|dst]
//! ```
//!
//! `#` starts a comment (anywhere on a line, as in the seed tool); blank lines are skipped.
//! `SOURCE_PORT` is an OVS port name (a physical SPAN port such as `eno12419`) or `vm<VMID>:<N>`,
//! that guest's NIC `net<N>`. The destination is always guest `DEST_VMID`'s NIC `net<N>`.
//!
//! Every name is checked with [`ifname::validate`] before it goes anywhere (OVSDB, a log line, a
//! mirror name); what a refused line held is only ever shown escaped (`{:?}`).

use std::collections::BTreeMap;

use crate::decide::ifname;
use crate::decide::nic::{self, MAX_NICS, Role, Slot, VMID_MAX, VMID_MIN};

/// Largest rules file read; a larger one is refused whole (no rule is used, no mirror touched).
pub const MAX_BYTES: u64 = 1024 * 1024;

/// The guest NIC slot a host interface belongs to, from its name alone: `tap<vmid>i<n>`,
/// `veth<vmid>i<n>`, or Proxmox's firewall port `fwln<vmid>o<n>` (a fwbr is no port of a
/// mirror).
pub fn nic_of(iface: &str) -> Option<Slot> {
    match nic::parse(iface)? {
        (slot, Role::Tap | Role::Veth | Role::Fwln) => Some(slot),
        (_, Role::Fwbr) => None,
    }
}

/// The traffic a rule mirrors.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// An OVS port by name, as written (a physical SPAN port, or any other port).
    Port(String),
    /// `vm<VMID>:<N>`: a guest's NIC, whatever its host interface is called.
    Guest(Slot),
}

/// Which direction of the source's traffic is mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// Frames the source port receives and sends: `select_src_port` and `select_dst_port`.
    Both,
    /// Frames entering OVS on the source port: `select_src_port` only.
    Src,
    /// Frames OVS sends out of the source port: `select_dst_port` only.
    Dst,
}

impl Select {
    pub fn as_str(&self) -> &'static str {
        match self {
            Select::Both => "both",
            Select::Src => "src",
            Select::Dst => "dst",
        }
    }

    /// Whether the source goes into `select_src_port`.
    pub fn src(&self) -> bool {
        matches!(self, Select::Both | Select::Src)
    }

    /// Whether the source goes into `select_dst_port`.
    pub fn dst(&self) -> bool {
        matches!(self, Select::Both | Select::Dst)
    }
}

/// One valid line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// 1-based line number in the file.
    pub line: usize,
    pub bridge: String,
    pub source: Source,
    pub dest: Slot,
    /// Whether the source link should be promiscuous. Defaults as in the seed tool: yes for a
    /// port, no for a guest NIC.
    pub promisc: bool,
    pub select: Select,
}

impl Rule {
    /// Whether `iface` may be one of this rule's interfaces, whatever the guest configurations
    /// say: its source port, or an interface of a guest NIC it names. Lets `plug` read only the
    /// guest configurations of the rules that may concern its NIC.
    pub fn may_involve(&self, iface: &str) -> bool {
        let nic = nic_of(iface);
        match &self.source {
            Source::Port(port) if port == iface => return true,
            Source::Guest(g) if Some(*g) == nic => return true,
            _ => {}
        }
        Some(self.dest) == nic
    }
}

/// A refused line: its number and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// A parsed rules file: the valid rules in file order, and the refused lines. A refused line
/// never stops the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub errors: Vec<LineError>,
}

impl Rules {
    /// Parses the file's bytes. Never fails as a whole: every problem is a [`LineError`].
    pub fn parse(bytes: &[u8]) -> Rules {
        let mut out = Rules::default();
        // Where each rule was first given, by what makes it the same mirror.
        let mut first: BTreeMap<(String, Source, Slot), usize> = BTreeMap::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let parsed = std::str::from_utf8(raw)
                .map_err(|_| "the line is not valid UTF-8".to_string())
                .and_then(|text| parse_line(line, text));
            match parsed {
                Ok(None) => {}
                Ok(Some(rule)) => {
                    let key = (rule.bridge.clone(), rule.source.clone(), rule.dest);
                    if let Some(earlier) = first.get(&key) {
                        out.errors.push(LineError {
                            line,
                            message: format!(
                                "duplicate rule: line {earlier} already mirrors this source to this NIC on this bridge"
                            ),
                        });
                    } else {
                        first.insert(key, line);
                        out.rules.push(rule);
                    }
                }
                Err(message) => out.errors.push(LineError { line, message }),
            }
        }
        out
    }
}

impl Rules {
    /// The rules that may involve `iface` ([`Rule::may_involve`]); the refused lines stay.
    pub fn involving(&self, iface: &str) -> Rules {
        Rules {
            rules: self
                .rules
                .iter()
                .filter(|r| r.may_involve(iface))
                .cloned()
                .collect(),
            errors: self.errors.clone(),
        }
    }
}

/// One line: `Ok(None)` for a blank or comment line.
fn parse_line(line: usize, text: &str) -> Result<Option<Rule>, String> {
    let text = text.split('#').next().unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [bridge, source, vmid, index, options @ ..] = fields.as_slice() else {
        if fields.is_empty() {
            return Ok(None);
        }
        return Err(format!(
            "{} field(s) where a rule has at least 4: BRIDGE SOURCE_PORT DEST_VMID DEST_NIC_INDEX",
            fields.len()
        ));
    };
    ifname::validate(bridge).map_err(|e| format!("BRIDGE: {e}"))?;
    let source = parse_source(source)?;
    let dest = Slot {
        vmid: parse_vmid("DEST_VMID", vmid)?,
        index: parse_index("DEST_NIC_INDEX", index)?,
    };
    let same = match &source {
        Source::Guest(nic) => *nic == dest,
        Source::Port(name) => {
            matches!(nic::parse(name), Some((slot, Role::Tap | Role::Veth)) if slot == dest)
        }
    };
    if same {
        return Err(format!(
            "the source is the destination itself ({})",
            dest.label()
        ));
    }
    let mut promisc = None;
    let mut select = None;
    for option in options {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        match key {
            "promisc" => {
                let v = match value {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(format!("promisc={value:?}: the value is yes or no")),
                };
                if promisc.replace(v).is_some() {
                    return Err("promisc is given twice".into());
                }
            }
            "select" => {
                let v = match value {
                    "both" => Select::Both,
                    "src" => Select::Src,
                    "dst" => Select::Dst,
                    _ => return Err(format!("select={value:?}: the value is both, src or dst")),
                };
                if select.replace(v).is_some() {
                    return Err("select is given twice".into());
                }
            }
            _ => {
                return Err(format!(
                    "unknown option {option:?}; the options are promisc=yes|no and select=both|src|dst"
                ));
            }
        }
    }
    let promisc = promisc.unwrap_or(matches!(source, Source::Port(_)));
    Ok(Some(Rule {
        line,
        bridge: bridge.to_string(),
        source,
        dest,
        promisc,
        select: select.unwrap_or(Select::Both),
    }))
}

fn parse_source(field: &str) -> Result<Source, String> {
    if let Some((vm, index)) = field.split_once(':') {
        let Some(vmid) = vm.strip_prefix("vm") else {
            return Err(format!(
                "SOURCE_PORT {field:?} is neither a port name nor vm<VMID>:<NIC_INDEX>"
            ));
        };
        return Ok(Source::Guest(Slot {
            vmid: parse_vmid("SOURCE_PORT's VMID", vmid)?,
            index: parse_index("SOURCE_PORT's NIC index", index)?,
        }));
    }
    ifname::validate(field).map_err(|e| format!("SOURCE_PORT: {e}"))?;
    Ok(Source::Port(field.to_string()))
}

/// A Proxmox VMID (100-999999999), written as Proxmox writes it (no sign, no leading zero).
fn parse_vmid(what: &str, s: &str) -> Result<u32, String> {
    let n = number(s).ok_or_else(|| format!("{what} {s:?} is not a number"))?;
    u32::try_from(n)
        .ok()
        .filter(|n| (VMID_MIN..=VMID_MAX).contains(n) && canonical(s))
        .ok_or_else(|| format!("{what} {s:?} is not a Proxmox VMID (100-999999999)"))
}

/// A Proxmox NIC index (0-31, `net0`-`net31`).
fn parse_index(what: &str, s: &str) -> Result<u8, String> {
    let n = number(s).ok_or_else(|| format!("{what} {s:?} is not a number"))?;
    u8::try_from(n)
        .ok()
        .filter(|n| *n < MAX_NICS && canonical(s))
        .ok_or_else(|| format!("{what} {s:?} is not a NIC index (0-31)"))
}

fn number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn canonical(s: &str) -> bool {
    s == "0" || !s.starts_with('0')
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The seed tool's own example file (proxmox-ovs-mirror's README).
    pub const SEED_EXAMPLE: &str = "\
# 實體 SPAN port 鏡像到多台 VM
ovs_zone1  eno12419  100  1
ovs_zone1  eno12419  101  1

# 另一個 Zone
ovs_zone2  eno12429  100  2
ovs_zone2  eno12429  101  2

# VM-to-VM：鏡像 VM 200 的 NIC 0 到 VM 100 的 NIC 3
ovs_zone1  vm200:0  100  3  promisc=no

# 僅鏡像單方向流量
ovs_zone1  eno12419  102  1  select=src
";

    fn nic(vmid: u32, index: u8) -> Slot {
        Slot { vmid, index }
    }

    #[test]
    fn the_seed_example_parses() {
        let r = Rules::parse(SEED_EXAMPLE.as_bytes());
        assert_eq!(r.errors, vec![]);
        assert_eq!(r.rules.len(), 6);
        assert_eq!(
            r.rules[0],
            Rule {
                line: 2,
                bridge: "ovs_zone1".into(),
                source: Source::Port("eno12419".into()),
                dest: nic(100, 1),
                promisc: true,
                select: Select::Both,
            }
        );
        assert_eq!(r.rules[4].source, Source::Guest(nic(200, 0)));
        assert_eq!((r.rules[4].line, r.rules[4].promisc), (10, false));
        assert_eq!((r.rules[5].select, r.rules[5].promisc), (Select::Src, true));
    }

    #[test]
    fn defaults_and_options() {
        let r = Rules::parse(
            b"vmbr1 vm200:0 300 0\nvmbr1 vm200:1 300 0 promisc=yes select=dst\nvmbr1 eno1 300 0 promisc=no # trailing comment\r\n",
        );
        assert_eq!(r.errors, vec![]);
        assert_eq!(
            r.rules
                .iter()
                .map(|r| (r.promisc, r.select))
                .collect::<Vec<_>>(),
            vec![
                (false, Select::Both),
                (true, Select::Dst),
                (false, Select::Both)
            ]
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_number_and_the_others_kept() {
        let text = "\
vmbr1 eno1 100 1
vmbr1 eno1 100 1 select=dst
vmbr1 eno1 100 1 mode=span
vmbr1 eno1 10x 1
vmbr1 eno1 100 x
bad;bridge eno1 100 1
vmbr1 $(reboot) 100 1
vmbr1 vm100:1 100 1
vmbr1 tap100i1 100 1
vmbr1 eno1 100
vmbr1 vmX:0 100 1
vmbr1 vm200:40 100 1
vmbr1 eno1 99 1
vmbr1 eno1 0100 1
vmbr1 eno1 100 2 promisc=maybe
vmbr1 eno1 100 2 select=all
vmbr1 eno1 100 2 promisc=no promisc=yes
vmbr1 eno1 100 2 extra
vmbr1 eno2 100 1
";
        let r = Rules::parse(text.as_bytes());
        let lines: Vec<usize> = r.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, (2..=18).collect::<Vec<_>>(), "{:#?}", r.errors);
        assert_eq!(
            r.rules.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![1, 19]
        );
        let msg = |line: usize| {
            r.errors
                .iter()
                .find(|e| e.line == line)
                .map(|e| e.message.clone())
                .unwrap()
        };
        assert!(msg(2).contains("duplicate rule: line 1"), "{}", msg(2));
        assert!(
            msg(3).contains("unknown option \"mode=span\""),
            "{}",
            msg(3)
        );
        assert!(
            msg(4).contains("DEST_VMID \"10x\" is not a number"),
            "{}",
            msg(4)
        );
        assert!(msg(6).starts_with("BRIDGE:"), "{}", msg(6));
        // A hostile name is shown escaped, never as written.
        assert!(msg(7).contains("\"$(reboot)\""), "{}", msg(7));
        assert!(
            msg(8).contains("the source is the destination"),
            "{}",
            msg(8)
        );
        assert!(
            msg(9).contains("the source is the destination"),
            "{}",
            msg(9)
        );
        assert!(msg(10).contains("3 field(s)"), "{}", msg(10));
        assert!(msg(13).contains("not a Proxmox VMID"), "{}", msg(13));
    }

    #[test]
    fn hostile_bytes_are_refused_per_line() {
        let r = Rules::parse(
            b"vmbr1 eno1 100 1\nvmbr1 en\xffo1 100 2\nvmbr1 'eno1' 100 3\nvm\x1b[2Jbr eno1 100 4\n",
        );
        assert_eq!(r.rules.len(), 1);
        assert_eq!(
            r.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert!(r.errors[0].message.contains("UTF-8"));
        assert!(!r.errors[2].message.contains('\x1b'), "{:?}", r.errors[2]);
    }

    #[test]
    fn which_rules_a_nic_may_involve() {
        let r = Rules::parse(b"vmbr1 eno1 100 1\nvmbr1 vm200:0 300 2\nvmbr1 tap200i0 301 0\n");
        let lines = |iface: &str| -> Vec<usize> {
            r.involving(iface).rules.iter().map(|r| r.line).collect()
        };
        assert_eq!(lines("eno1"), [1]);
        assert_eq!(lines("tap100i1"), [1]);
        assert_eq!(lines("veth100i1"), [1]);
        assert_eq!(lines("fwln100o1"), [1]);
        assert_eq!(lines("tap200i0"), [2, 3]);
        assert_eq!(lines("fwln300o2"), [2]);
        assert_eq!(lines("tap100i2"), Vec::<usize>::new());
        assert_eq!(lines("fwln0100o1"), Vec::<usize>::new());
        assert_eq!(nic_of("fwln100o31"), Some(nic(100, 31)));
        assert_eq!(nic_of("fwbr100i1"), None);
    }

    #[test]
    fn empty_and_comment_only_files_have_no_rules() {
        assert_eq!(Rules::parse(b""), Rules::default());
        assert_eq!(
            Rules::parse(b"# nothing\n\n   \t\n#x y z w\n"),
            Rules::default()
        );
    }
}
