//! The rules file of proxmox-ovs-mirror, `/etc/ovs-mirror/mirrors.conf`, read as that tool reads
//! it, but stricter: a line it would half-accept (an unknown option it skips with a warning) is
//! refused here, with its line number, so that a typo never silently changes what is mirrored.
//!
//! One rule per line, fields separated by blanks:
//!
//! ```text
//! BRIDGE  SOURCES  DEST_VMID  DEST_NIC_INDEX  [promisc=yes|no]  [select=both|src|dst]  [vlans=LIST]
//! BRIDGE  SOURCES  -          -               output_vlan=N     [options as above]
//! ```
//!
//! `#` starts a comment (anywhere on a line, as in the seed tool); blank lines are skipped.
//! `SOURCES` is what the seed tool calls `SOURCE_PORT`: an OVS port name (a physical SPAN port
//! such as `eno12419`) or `vm<VMID>:<N>`, that guest's NIC `net<N>`; or a comma-separated list
//! of those (one mirror of them all); or `*`, every port of the bridge (`select_all`). The
//! destination is guest `DEST_VMID`'s NIC `net<N>`, or with `- -` and `output_vlan=N` the VLAN N
//! (RSPAN). `vlans=10,20-30` mirrors only the traffic of those VLANs. None of `*`, `,` or `-`
//! can be in an interface name, VMID or NIC index, so every line the seed tool's format allows
//! keeps its meaning.
//!
//! Every name is checked with [`ifname::validate`] before it goes anywhere (OVSDB, a log line, a
//! mirror name); what a refused line held is only ever shown escaped (`{:?}`).

use std::collections::{BTreeMap, BTreeSet};

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

/// One source of a rule's traffic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// An OVS port by name, as written (a physical SPAN port, or any other port).
    Port(String),
    /// `vm<VMID>:<N>`: a guest's NIC, whatever its host interface is called.
    Guest(Slot),
}

impl Source {
    /// Whether the seed tool's default makes this source promiscuous: yes for a port, no for a
    /// guest NIC.
    pub fn promisc_by_default(&self) -> bool {
        matches!(self, Source::Port(_))
    }
}

/// What a rule mirrors.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sources {
    /// `*`: every port of the bridge (`Mirror.select_all`).
    All,
    /// One source, or several (`eno1,vm200:0`), in the order written; never empty, no repeats.
    List(Vec<Source>),
}

impl Sources {
    /// The sources listed (none for `*`).
    pub fn list(&self) -> &[Source] {
        match self {
            Sources::All => &[],
            Sources::List(l) => l,
        }
    }

    /// The same sources whatever the order written: what makes two rules the same mirror.
    fn key(&self) -> Sources {
        match self {
            Sources::All => Sources::All,
            Sources::List(l) => {
                let mut l = l.clone();
                l.sort();
                Sources::List(l)
            }
        }
    }
}

/// Where a rule's copies go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dest {
    /// `DEST_VMID DEST_NIC_INDEX`: out of that guest NIC's port.
    Nic(Slot),
    /// `- - output_vlan=N`: into VLAN N on the bridge (RSPAN, `Mirror.output_vlan`), to every
    /// port that carries it.
    Vlan(u16),
}

impl Dest {
    /// How the mirror's name ends: `vm<vmid>i<n>`, or `vlan<N>`.
    pub fn label(&self) -> String {
        match self {
            Dest::Nic(slot) => slot.label(),
            Dest::Vlan(v) => format!("vlan{v}"),
        }
    }

    pub fn nic(&self) -> Option<Slot> {
        match self {
            Dest::Nic(slot) => Some(*slot),
            Dest::Vlan(_) => None,
        }
    }
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
    pub sources: Sources,
    pub dest: Dest,
    /// `promisc=`, when given: whether every source link should be promiscuous. Without it,
    /// each source as in the seed tool ([`Source::promisc_by_default`]).
    pub promisc: Option<bool>,
    pub select: Select,
    /// `vlans=`: only the traffic of these VLANs (`Mirror.select_vlan`); empty: every VLAN.
    pub vlans: BTreeSet<u16>,
}

impl Rule {
    /// Whether `source` should be promiscuous.
    pub fn promisc(&self, source: &Source) -> bool {
        self.promisc.unwrap_or_else(|| source.promisc_by_default())
    }

    /// Whether `iface` may be one of this rule's interfaces, whatever the guest configurations
    /// say: a source port, or an interface of a guest NIC it names. Lets `plug` read only the
    /// guest configurations of the rules that may concern its NIC.
    pub fn may_involve(&self, iface: &str) -> bool {
        let nic = nic_of(iface);
        let source = self.sources.list().iter().any(|s| match s {
            Source::Port(port) => port == iface,
            Source::Guest(g) => Some(*g) == nic,
        });
        source || (nic.is_some() && self.dest.nic() == nic)
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
        let mut first: BTreeMap<(String, Sources, Dest), usize> = BTreeMap::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let parsed = std::str::from_utf8(raw)
                .map_err(|_| "the line is not valid UTF-8".to_string())
                .and_then(|text| parse_line(line, text));
            match parsed {
                Ok(None) => {}
                Ok(Some(rule)) => {
                    let key = (rule.bridge.clone(), rule.sources.key(), rule.dest);
                    if let Some(earlier) = first.get(&key) {
                        out.errors.push(LineError {
                            line,
                            message: format!(
                                "duplicate rule: line {earlier} already mirrors these sources to this destination on this bridge"
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

/// What `validate` knows of this host, to check that what the rules name exists.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// The links (and so the OVS bridges and ports) that exist, of those asked for
    /// ([`Rules::link_names`]).
    pub links: BTreeSet<String>,
    /// The guest NICs with a `net<n>` line in their guest's configuration on this node.
    pub nics: BTreeSet<Slot>,
}

impl Rules {
    /// The names that must be links for the rules to work: every bridge and every source port.
    pub fn link_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for rule in &self.rules {
            names.insert(rule.bridge.clone());
            for source in rule.sources.list() {
                if let Source::Port(port) = source {
                    names.insert(port.clone());
                }
            }
        }
        names
    }

    /// What each rule names and `host` does not have, at the rule's line: its bridge, a source
    /// port (no such link), a guest NIC source or destination (no `net<n>` line in that guest's
    /// configuration).
    pub fn missing(&self, host: &Host) -> Vec<LineError> {
        let mut out = Vec::new();
        for rule in &self.rules {
            let mut gone = |message: String| {
                out.push(LineError {
                    line: rule.line,
                    message,
                })
            };
            if !host.links.contains(&rule.bridge) {
                gone(format!(
                    "rule's BRIDGE {} does not exist (no such link on this host)",
                    rule.bridge
                ));
            }
            for source in rule.sources.list() {
                match source {
                    Source::Port(port) if !host.links.contains(port) => gone(format!(
                        "rule's SOURCE {port} does not exist (no such link on this host)"
                    )),
                    Source::Guest(nic) if !host.nics.contains(nic) => gone(format!(
                        "rule's SOURCE vm{}:{} does not exist ({})",
                        nic.vmid,
                        nic.index,
                        no_nic(*nic)
                    )),
                    _ => {}
                }
            }
            if let Dest::Nic(nic) = rule.dest
                && !host.nics.contains(&nic)
            {
                gone(format!(
                    "rule's destination {} {} does not exist ({})",
                    nic.vmid,
                    nic.index,
                    no_nic(nic)
                ));
            }
        }
        out
    }
}

fn no_nic(nic: Slot) -> String {
    format!(
        "no net{1} line in qemu-server/{0}.conf or lxc/{0}.conf",
        nic.vmid, nic.index
    )
}

/// The options of one line, each at most once.
#[derive(Default)]
struct Options {
    promisc: Option<bool>,
    select: Option<Select>,
    vlans: Option<BTreeSet<u16>>,
    output_vlan: Option<u16>,
}

const OPTIONS: &str = "promisc=yes|no, select=both|src|dst, vlans=LIST and output_vlan=N";

impl Options {
    fn parse(options: &[&str]) -> Result<Options, String> {
        let mut o = Options::default();
        for option in options {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            let twice = match key {
                "promisc" => {
                    let v = match value {
                        "yes" => true,
                        "no" => false,
                        _ => return Err(format!("promisc={value:?}: the value is yes or no")),
                    };
                    o.promisc.replace(v).is_some()
                }
                "select" => {
                    let v = match value {
                        "both" => Select::Both,
                        "src" => Select::Src,
                        "dst" => Select::Dst,
                        _ => {
                            return Err(format!("select={value:?}: the value is both, src or dst"));
                        }
                    };
                    o.select.replace(v).is_some()
                }
                "vlans" => o.vlans.replace(parse_vlans(value)?).is_some(),
                "output_vlan" => {
                    let v = parse_vlan(value)
                        .ok_or_else(|| format!("output_vlan={value:?}: a VLAN is 1-4094"))?;
                    o.output_vlan.replace(v).is_some()
                }
                _ => {
                    return Err(format!(
                        "unknown option {option:?}; the options are {OPTIONS}"
                    ));
                }
            };
            if twice {
                return Err(format!("{key} is given twice"));
            }
        }
        Ok(o)
    }
}

/// One line: `Ok(None)` for a blank or comment line.
fn parse_line(line: usize, text: &str) -> Result<Option<Rule>, String> {
    let text = text.split('#').next().unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [bridge, sources, vmid, index, options @ ..] = fields.as_slice() else {
        if fields.is_empty() {
            return Ok(None);
        }
        return Err(format!(
            "{} field(s) where a rule has at least 4: BRIDGE SOURCE_PORT DEST_VMID DEST_NIC_INDEX",
            fields.len()
        ));
    };
    ifname::validate(bridge).map_err(|e| format!("BRIDGE: {e}"))?;
    let sources = parse_sources(sources)?;
    let o = Options::parse(options)?;
    let dest = match (*vmid, *index, o.output_vlan) {
        ("-", "-", Some(vlan)) => Dest::Vlan(vlan),
        ("-", "-", None) => {
            return Err(
                "\"- -\" sends the copies to no guest NIC: give output_vlan=N (the VLAN they go out into)"
                    .into(),
            );
        }
        (_, _, Some(_)) => {
            return Err(
                "output_vlan sends the copies into a VLAN, not to a guest NIC: write \"- -\" for DEST_VMID DEST_NIC_INDEX"
                    .into(),
            );
        }
        _ => Dest::Nic(Slot {
            vmid: parse_vmid("DEST_VMID", vmid)?,
            index: parse_index("DEST_NIC_INDEX", index)?,
        }),
    };
    if let Dest::Nic(dest) = dest {
        for source in sources.list() {
            let same = match source {
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
        }
    }
    if sources == Sources::All {
        if matches!(o.select, Some(Select::Src | Select::Dst)) {
            return Err("select= with \"*\": the whole bridge is mirrored both ways".into());
        }
        if o.promisc == Some(true) {
            return Err("promisc=yes with \"*\": the whole bridge names no link".into());
        }
    }
    Ok(Some(Rule {
        line,
        bridge: bridge.to_string(),
        sources,
        dest,
        promisc: o.promisc,
        select: o.select.unwrap_or(Select::Both),
        vlans: o.vlans.unwrap_or_default(),
    }))
}

/// `*`, or one source, or several separated by commas.
fn parse_sources(field: &str) -> Result<Sources, String> {
    if field == "*" {
        return Ok(Sources::All);
    }
    let mut list: Vec<Source> = Vec::new();
    for part in field.split(',') {
        if part == "*" {
            return Err(format!(
                "SOURCE_PORT {field:?}: \"*\" (the whole bridge) stands alone"
            ));
        }
        if part.is_empty() {
            return Err(format!("SOURCE_PORT {field:?} has an empty source"));
        }
        let source = parse_source(part)?;
        if list.contains(&source) {
            return Err(format!("SOURCE_PORT {field:?} names {part:?} twice"));
        }
        list.push(source);
    }
    Ok(Sources::List(list))
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

/// `vlans=`: VLANs and ranges, `10,20-30`, each VLAN 1-4094.
fn parse_vlans(value: &str) -> Result<BTreeSet<u16>, String> {
    let bad = |why: &str| format!("vlans={value:?}: {why}");
    let mut set = BTreeSet::new();
    for part in value.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (Some(lo), Some(hi)) = (parse_vlan(lo), parse_vlan(hi)) else {
            return Err(bad("a list of VLANs (1-4094) and ranges, such as 10,20-30"));
        };
        if lo > hi {
            return Err(bad(&format!("the range {part} runs backwards")));
        }
        set.extend(lo..=hi);
    }
    Ok(set)
}

/// A VLAN ID, 1-4094, written as a plain number.
fn parse_vlan(s: &str) -> Option<u16> {
    number(s)
        .filter(|_| canonical(s))
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| (1..=4094).contains(n))
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
                sources: Sources::List(vec![Source::Port("eno12419".into())]),
                dest: Dest::Nic(nic(100, 1)),
                promisc: None,
                select: Select::Both,
                vlans: BTreeSet::new(),
            }
        );
        assert_eq!(
            r.rules[4].sources,
            Sources::List(vec![Source::Guest(nic(200, 0))])
        );
        assert_eq!((r.rules[4].line, r.rules[4].promisc), (10, Some(false)));
        assert_eq!((r.rules[5].select, r.rules[5].promisc), (Select::Src, None));
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
                .map(|r| (r.promisc(&r.sources.list()[0]), r.select))
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

    /// Every rule line of the seed tool's example, as its README prints them, means what it
    /// meant: one port or guest NIC to one guest NIC, every VLAN, the seed's defaults.
    #[test]
    fn every_seed_line_keeps_its_meaning() {
        let r = Rules::parse(SEED_EXAMPLE.as_bytes());
        assert_eq!(r.errors, vec![]);
        let port = |p: &str| Sources::List(vec![Source::Port(p.into())]);
        let want = [
            (
                2,
                "ovs_zone1",
                port("eno12419"),
                nic(100, 1),
                true,
                Select::Both,
            ),
            (
                3,
                "ovs_zone1",
                port("eno12419"),
                nic(101, 1),
                true,
                Select::Both,
            ),
            (
                6,
                "ovs_zone2",
                port("eno12429"),
                nic(100, 2),
                true,
                Select::Both,
            ),
            (
                7,
                "ovs_zone2",
                port("eno12429"),
                nic(101, 2),
                true,
                Select::Both,
            ),
            (
                10,
                "ovs_zone1",
                Sources::List(vec![Source::Guest(nic(200, 0))]),
                nic(100, 3),
                false,
                Select::Both,
            ),
            (
                13,
                "ovs_zone1",
                port("eno12419"),
                nic(102, 1),
                true,
                Select::Src,
            ),
        ];
        assert_eq!(r.rules.len(), want.len());
        for (rule, (line, bridge, sources, dest, promisc, select)) in r.rules.iter().zip(want) {
            assert_eq!(
                (rule.line, rule.bridge.as_str(), &rule.sources, rule.dest),
                (line, bridge, &sources, Dest::Nic(dest))
            );
            let first = &rule.sources.list()[0];
            assert_eq!((rule.promisc(first), rule.select), (promisc, select));
            assert!(rule.vlans.is_empty(), "line {line}");
        }
    }

    #[test]
    fn the_new_shapes() {
        let r = Rules::parse(
            b"vmbr1 * 100 1\n\
              vmbr1 eno1,vm200:0,eno2 100 1 select=src\n\
              vmbr1 eno1 100 2 vlans=10,20-22,11\n\
              vmbr1 * - - output_vlan=999 vlans=10\n\
              vmbr1 eno1,vm200:0 - - output_vlan=4094 promisc=no\n\
              vmbr1 eno2,eno1,vm200:0 101 1\n",
        );
        assert_eq!(r.errors, vec![]);
        let [all, list, vlans, rspan, list_rspan, reordered] = r.rules.as_slice() else {
            panic!("{r:?}")
        };
        assert_eq!(all.sources, Sources::All);
        assert_eq!(all.dest, Dest::Nic(nic(100, 1)));
        assert_eq!(
            list.sources,
            Sources::List(vec![
                Source::Port("eno1".into()),
                Source::Guest(nic(200, 0)),
                Source::Port("eno2".into())
            ])
        );
        assert_eq!(list.select, Select::Src);
        // Without promisc=, each source as the seed tool would have it.
        assert!(list.promisc(&list.sources.list()[0]));
        assert!(!list.promisc(&list.sources.list()[1]));
        assert_eq!(vlans.vlans, [10, 11, 20, 21, 22].into());
        assert_eq!(
            (&rspan.sources, rspan.dest, &rspan.vlans),
            (&Sources::All, Dest::Vlan(999), &[10].into())
        );
        assert_eq!(list_rspan.dest, Dest::Vlan(4094));
        assert!(!list_rspan.promisc(&list_rspan.sources.list()[0]));
        assert_eq!(Dest::Vlan(999).label(), "vlan999");
        // The same sources in another order to another NIC: another rule.
        assert_eq!(reordered.line, 6);
        assert!(reordered.may_involve("eno2") && reordered.may_involve("tap200i0"));
        assert!(reordered.may_involve("tap101i1") && !reordered.may_involve("tap100i1"));
        assert!(!all.may_involve("eno1") && all.may_involve("veth100i1"));
        assert!(!rspan.may_involve("tap100i1"));
    }

    #[test]
    fn the_new_shapes_refused_at_their_line() {
        let text = "\
vmbr1 eno1,eno2 100 1
vmbr1 eno2,eno1 100 1
vmbr1 eno1,,eno2 100 1
vmbr1 eno1, 100 1
vmbr1 eno1,eno1 100 1
vmbr1 eno1,* 100 1
vmbr1 eno1,tap100i1 100 1
vmbr1 * 100 1 select=src
vmbr1 * 100 1 promisc=yes
vmbr1 eno1 100 1 vlans=
vmbr1 eno1 100 1 vlans=0
vmbr1 eno1 100 1 vlans=4095
vmbr1 eno1 100 1 vlans=30-20
vmbr1 eno1 100 1 vlans=10,x
vmbr1 eno1 100 1 vlans=10 vlans=20
vmbr1 eno1 - -
vmbr1 eno1 100 1 output_vlan=10
vmbr1 eno1 - 1 output_vlan=10
vmbr1 eno1 - - output_vlan=0
vmbr1 eno1 - - output_vlan=4095
vmbr1 eno1 - - output_vlan=010
vmbr1 eno1 - - output_vlan=10 output_vlan=10
vmbr1 eno1,vm99:0 100 1
vmbr1 e$no1,eno2 100 1
vmbr1 * - - output_vlan=10
";
        let r = Rules::parse(text.as_bytes());
        let lines: Vec<usize> = r.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, (2..=24).collect::<Vec<_>>(), "{:#?}", r.errors);
        assert_eq!(
            r.rules.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![1, 25]
        );
        let msg = |line: usize| {
            r.errors
                .iter()
                .find(|e| e.line == line)
                .map(|e| e.message.clone())
                .unwrap_or_default()
        };
        for (line, part) in [
            (2, "duplicate rule: line 1"),
            (3, "empty source"),
            (4, "empty source"),
            (5, "names \"eno1\" twice"),
            (6, "stands alone"),
            (7, "the source is the destination"),
            (8, "select= with \"*\""),
            (9, "promisc=yes with \"*\""),
            (10, "vlans=\"\""),
            (11, "1-4094"),
            (12, "1-4094"),
            (13, "runs backwards"),
            (14, "vlans=\"10,x\""),
            (15, "vlans is given twice"),
            (16, "give output_vlan=N"),
            (17, "write \"- -\""),
            (18, "write \"- -\""),
            (19, "output_vlan=\"0\""),
            (20, "output_vlan=\"4095\""),
            (21, "output_vlan=\"010\""),
            (22, "output_vlan is given twice"),
            (23, "not a Proxmox VMID"),
            (24, "\"e$no1\""),
        ] {
            assert!(msg(line).contains(part), "line {line}: {}", msg(line));
        }
    }

    #[test]
    fn what_a_rule_names_must_exist() {
        let r = Rules::parse(
            b"vmbr1 eno1 100 1\n\
              vmbr9 eno1,eno9,vm200:0,vm201:0 100 2\n\
              vmbr1 * - - output_vlan=5\n",
        );
        assert_eq!(
            r.link_names(),
            ["eno1", "eno9", "vmbr1", "vmbr9"].map(String::from).into()
        );
        let host = Host {
            links: ["eno1", "vmbr1"].map(String::from).into(),
            nics: [nic(100, 1), nic(200, 0)].into(),
        };
        let found: Vec<(usize, String)> = r
            .missing(&host)
            .into_iter()
            .map(|e| (e.line, e.message))
            .collect();
        assert_eq!(
            found,
            [
                (2, "rule's BRIDGE vmbr9 does not exist (no such link on this host)".to_string()),
                (2, "rule's SOURCE eno9 does not exist (no such link on this host)".into()),
                (
                    2,
                    "rule's SOURCE vm201:0 does not exist (no net0 line in qemu-server/201.conf or lxc/201.conf)"
                        .into()
                ),
                (
                    2,
                    "rule's destination 100 2 does not exist (no net2 line in qemu-server/100.conf or lxc/100.conf)"
                        .into()
                ),
            ]
        );
    }
}
