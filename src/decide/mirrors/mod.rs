//! Traffic mirrors: the rules of proxmox-ovs-mirror's `mirrors.conf` ([`rules`]), kept as OVS
//! `Mirror` rows on every `apply` and, for the NICs a rule names, on every `plug`.
//!
//! Pure, in three steps:
//! 1. [`Specs::resolve`] turns each rule into the mirror it asks for: its name, its bridge, the
//!    OVS ports it mirrors (or the whole bridge), the VLANs it selects, and the port it sends the
//!    copies out of or the VLAN it sends them into (guest NICs resolved with the
//!    guest configurations: `tap`, `veth` for a container, `fwln` behind Proxmox's firewall).
//! 2. [`build`] compares those with the mirrors OVS holds, as they will be once the port plan of
//!    the same run is committed ([`ports_after`]): a port the run attaches is referenced by the
//!    row the same transaction inserts, so a port and its mirror appear together.
//! 3. The plan's [`RuleStatus`]es say, per rule, whether it is active, waiting (and for what)
//!    or invalid; `status` reads them with the plan's changes ([`crate::decide::status`]), which
//!    makes an active rule whose mirror the run would still change pending.
//!
//! Invariants, enforced here and nowhere else:
//! - A rule's mirror exists exactly while its output port (none for an output VLAN) and at
//!   least one of its sources (any port for `*`) are on its bridge; otherwise a mirror of ours is
//!   removed and the rule is "waiting" (not an error). A rule of several sources some of which
//!   are missing mirrors the others and is waiting for the rest.
//! - Only mirrors carrying the mark (`external_ids:owner=ovs-autoattach`) are ever rewritten or
//!   removed. The one exception is adoption: an unmarked mirror (no `owner` at all) with exactly
//!   a rule's name, on the rule's bridge, is marked and corrected. That is how the seed tool's
//!   mirrors are taken over. A mirror marked by another owner is never touched.
//! - Mirrors of ours that no rule asks for any more are removed by a full pass only, and only
//!   when every line of the rules file was understood: a typo must not remove a mirror.
//! - The tool clears a link's promiscuous flag only if it set it itself, which a mirror of ours
//!   records in `external_ids:`[`PROMISC_KEY`], and only once no mirror of ours records it any
//!   more.

pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::decide::desired::GuestFile;
use crate::decide::guest::{GuestId, Kind};
use crate::decide::ifname;
use crate::decide::nic::Slot;
use crate::decide::observed::{Observed, ObservedMirror, Uuid};
use crate::decide::plan::{self, Change, Plan, PortAfter, PortRef};

pub use rules::{Dest, Rule, Rules, Select, Source, Sources};

/// `Mirror.external_ids` key saying that the tool set the source link promiscuous for this
/// mirror; the value is the link's name.
pub const PROMISC_KEY: &str = "ovs-autoattach-promisc";

/// The guest configurations [`Specs::resolve`] consults: both kinds for every guest a rule
/// names (a VMID is a container exactly when `lxc/<vmid>.conf` exists).
pub fn guests_to_read(rules: &Rules) -> BTreeSet<GuestId> {
    let mut vmids = BTreeSet::new();
    for rule in &rules.rules {
        vmids.extend(rule.dest.nic().map(|nic| nic.vmid));
        for source in rule.sources.list() {
            if let Source::Guest(nic) = source {
                vmids.insert(nic.vmid);
            }
        }
    }
    vmids
        .into_iter()
        .flat_map(|vmid| [Kind::Qemu, Kind::Lxc].map(|kind| GuestId { kind, vmid }))
        .collect()
}

/// A guest NIC on the host: its host interface, and the OVS port that carries its traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicPorts {
    /// `tap<vmid>i<n>`, or `veth<vmid>i<n>` when the guest is a container.
    pub host: String,
    /// The host interface itself, or with `firewall=1` Proxmox's OVS internal port
    /// `fwln<vmid>o<n>`: the tap then sits in the Linux bridge `fwbr<vmid>i<n>`, and the fwln
    /// port is where the guest's traffic enters and leaves OVS.
    pub port: String,
}

/// Resolves a guest NIC with the guest configurations (see [`guests_to_read`]). A guest with no
/// configuration is taken for a VM without firewall, as the seed tool does.
pub fn nic_ports(nic: Slot, guests: &BTreeMap<GuestId, GuestFile>) -> NicPorts {
    let file = |kind| {
        guests.get(&GuestId {
            kind,
            vmid: nic.vmid,
        })
    };
    let (kind, conf) = match file(Kind::Lxc) {
        Some(f) if *f != GuestFile::Missing => (Kind::Lxc, f),
        _ => (Kind::Qemu, file(Kind::Qemu).unwrap_or(&GuestFile::Missing)),
    };
    let firewall = match conf {
        GuestFile::Parsed(c) => matches!(c.nets.get(&nic.index), Some(Ok(spec)) if spec.firewall),
        _ => false,
    };
    let host = nic.host(kind);
    let port = if firewall { nic.fwln() } else { host.clone() };
    NicPorts { host, port }
}

/// Where a mirror's copies go, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Out of this OVS port.
    Port(String),
    /// Into this VLAN (`output_vlan`, RSPAN).
    Vlan(u16),
}

impl Output {
    /// The OVS port, when the copies go out of one.
    pub fn port(&self) -> Option<&str> {
        match self {
            Output::Port(p) => Some(p),
            Output::Vlan(_) => None,
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Port(p) => f.write_str(p),
            Output::Vlan(v) => write!(f, "vlan {v}"),
        }
    }
}

/// The mirror one rule asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub line: usize,
    /// `mirror_<bridge>_<sources>_to_<dest>`, the seed tool's name, where `<sources>` is the
    /// source field as written with each `vm<VMID>:<N>` replaced by the guest NIC's host
    /// interface (`tap200i0`, `veth200i0` for a container): for a VM that is exactly the seed's
    /// name, so its mirrors are adopted. `<dest>` is `vm<vmid>i<n>`, or `vlan<N>`.
    pub name: String,
    pub bridge: String,
    /// `*`: every port of the bridge; `sources` is then empty.
    pub all: bool,
    /// The OVS ports whose traffic is mirrored, in the order written.
    pub sources: Vec<String>,
    /// Only the traffic of these VLANs; empty: all.
    pub vlans: BTreeSet<u16>,
    pub output: Output,
    pub select: Select,
    /// The sources whose link should be promiscuous.
    pub promisc: BTreeSet<String>,
    /// Interface names whose `plug` reconciles this rule: every port and the guests' host
    /// interfaces.
    pub involves: BTreeSet<String>,
}

/// Every rule resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Specs {
    pub specs: Vec<Spec>,
    /// Refused lines and rules that cannot be resolved: (line, why).
    pub invalid: Vec<(usize, String)>,
}

impl Specs {
    pub fn resolve(rules: &Rules, guests: &BTreeMap<GuestId, GuestFile>) -> Specs {
        let mut out = Specs {
            invalid: rules
                .errors
                .iter()
                .map(|e| (e.line, e.message.clone()))
                .collect(),
            ..Specs::default()
        };
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for rule in &rules.rules {
            match resolve_one(rule, guests) {
                Ok(spec) => match names.get(&spec.name) {
                    Some(first) => out.invalid.push((
                        rule.line,
                        format!("line {first} already asks for mirror {}", spec.name),
                    )),
                    None => {
                        names.insert(spec.name.clone(), rule.line);
                        out.specs.push(spec);
                    }
                },
                Err(e) => out.invalid.push((rule.line, e)),
            }
        }
        out.invalid.sort();
        out
    }

    /// Whether every line was understood (then a rule-less mirror of ours really has no rule).
    pub fn complete(&self) -> bool {
        self.invalid.is_empty()
    }

    /// The rules a `plug` of `iface` reconciles.
    pub fn involving<'a>(&'a self, iface: &'a str) -> impl Iterator<Item = &'a Spec> + 'a {
        self.specs
            .iter()
            .filter(move |s| s.involves.contains(iface))
    }

    /// The OVS ports the rules that involve `iface` need to see.
    pub fn ports_involving(&self, iface: &str) -> BTreeSet<String> {
        self.involving(iface)
            .flat_map(|s| {
                s.sources
                    .iter()
                    .cloned()
                    .chain(s.output.port().map(String::from))
            })
            .collect()
    }

    /// The links whose promiscuous flag [`build`] needs: every source of a `promisc=yes` rule,
    /// and every link a mirror of ours records.
    pub fn promisc_links(&self, observed: &Observed) -> BTreeSet<String> {
        self.specs
            .iter()
            .flat_map(|s| s.promisc.iter().cloned())
            .chain(recorded(observed).into_iter().map(String::from))
            .collect()
    }
}

fn resolve_one(rule: &Rule, guests: &BTreeMap<GuestId, GuestFile>) -> Result<Spec, String> {
    let mut involves = BTreeSet::new();
    let (output, dest_label) = match rule.dest {
        Dest::Nic(slot) => {
            let dest = nic_ports(slot, guests);
            involves.insert(dest.host);
            involves.insert(dest.port.clone());
            (Output::Port(dest.port), slot.label())
        }
        Dest::Vlan(v) => (Output::Vlan(v), rule.dest.label()),
    };
    let mut labels = Vec::new();
    let mut sources = Vec::new();
    let mut promisc = BTreeSet::new();
    for source in rule.sources.list() {
        let (label, port) = match source {
            Source::Port(name) => (name.clone(), name.clone()),
            Source::Guest(nic) => {
                let p = nic_ports(*nic, guests);
                (p.host, p.port)
            }
        };
        for name in [&label, &port] {
            ifname::validate(name).map_err(|e| format!("no such interface can exist: {e}"))?;
        }
        if Some(port.as_str()) == output.port() {
            return Err(format!("the source is the destination itself ({port})"));
        }
        if sources.contains(&port) {
            return Err(format!("{port} is named twice among the sources"));
        }
        if rule.promisc(source) {
            promisc.insert(port.clone());
        }
        involves.insert(label.clone());
        involves.insert(port.clone());
        labels.push(label);
        sources.push(port);
    }
    if let Some(port) = output.port() {
        ifname::validate(port).map_err(|e| format!("no such interface can exist: {e}"))?;
    }
    let label = match rule.sources {
        Sources::All => "*".to_string(),
        Sources::List(_) => labels.join(","),
    };
    Ok(Spec {
        line: rule.line,
        name: format!("mirror_{}_{label}_to_{dest_label}", rule.bridge),
        bridge: rule.bridge.clone(),
        all: rule.sources == Sources::All,
        sources,
        vlans: rule.vlans.clone(),
        output,
        select: rule.select,
        promisc,
        involves,
    })
}

/// The links the mirrors of ours record as set promiscuous by the tool.
fn recorded(observed: &Observed) -> BTreeSet<&str> {
    observed
        .mirrors
        .iter()
        .filter(|m| m.owned())
        .flat_map(|m| links(m.promisc.as_deref()))
        .collect()
}

/// The links of a promiscuous record: one name, or several separated by commas (a mirror of
/// several sources). No interface name holds a comma.
pub fn links(record: Option<&str>) -> impl Iterator<Item = &str> {
    record
        .unwrap_or_default()
        .split(',')
        .filter(|l| !l.is_empty())
}

/// The record of `links`, `None` when there is none.
pub fn record(links: &BTreeSet<String>) -> Option<String> {
    (!links.is_empty()).then(|| links.iter().cloned().collect::<Vec<_>>().join(","))
}

/// Where a mirror as the tool writes it sends its copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Port(String, PortRef),
    Vlan(u16),
}

/// A mirror as the tool writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub name: String,
    pub bridge: String,
    /// `select_all`.
    pub all: bool,
    /// The source ports (those on the bridge), with their rows.
    pub sources: Vec<(String, PortRef)>,
    pub select: Select,
    /// `select_vlan`.
    pub vlans: BTreeSet<u16>,
    pub out: Out,
    /// The links this mirror records as set promiscuous by the tool ([`PROMISC_KEY`]).
    pub promisc: BTreeSet<String>,
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources = if self.all {
            "*".to_string()
        } else {
            let names: Vec<&str> = self.sources.iter().map(|(n, _)| n.as_str()).collect();
            names.join(",")
        };
        let vlans = if self.vlans.is_empty() {
            String::new()
        } else {
            format!(", vlans={}", vlan_list(&self.vlans))
        };
        let output = match &self.out {
            Out::Port(name, _) => name.clone(),
            Out::Vlan(v) => format!("vlan {v}"),
        };
        write!(
            f,
            "{} on {}: {sources} (select={}{vlans}) -> {output}",
            self.name,
            self.bridge,
            self.select.as_str(),
        )
    }
}

/// VLANs as a rule writes them: `10,20-30`.
pub fn vlan_list(vlans: &BTreeSet<u16>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(u16, u16)> = None;
    let mut flush = |run: (u16, u16)| {
        parts.push(match run {
            (a, b) if a == b => a.to_string(),
            (a, b) => format!("{a}-{b}"),
        })
    };
    for &v in vlans {
        run = match run {
            Some((a, b)) if b + 1 == v => Some((a, v)),
            Some(r) => {
                flush(r);
                Some((v, v))
            }
            None => Some((v, v)),
        };
    }
    if let Some(r) = run {
        flush(r);
    }
    parts.join(",")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorChange {
    /// Insert the mirror, marked, and add it to its bridge.
    Create(Want),
    /// Rewrite the columns a rule decides (and the mark) of an existing mirror; `adopt` when it
    /// was not marked yet. `differs` names the columns that were wrong.
    Update {
        uuid: Uuid,
        want: Want,
        adopt: bool,
        differs: Vec<&'static str>,
    },
    /// Take the mirror off its bridge (OVSDB then deletes the row).
    Remove {
        uuid: Uuid,
        name: String,
        bridge: String,
        reason: String,
    },
}

impl MirrorChange {
    /// One line, in the present tense for plans and the past tense for what was done.
    pub fn describe(&self, done: bool) -> String {
        let verb = |present: &'static str, past: &'static str| if done { past } else { present };
        match self {
            MirrorChange::Create(want) => format!("{} mirror {want}", verb("create", "created")),
            MirrorChange::Update {
                want,
                adopt,
                differs,
                ..
            } => {
                let fixed = if differs.is_empty() {
                    String::new()
                } else {
                    format!("corrected: {}", differs.join(", "))
                };
                if *adopt {
                    let sep = if fixed.is_empty() { "" } else { "; " };
                    format!(
                        "{} mirror {want} (marked as ours{sep}{fixed})",
                        verb("adopt", "adopted")
                    )
                } else {
                    format!("{} mirror {want} ({fixed})", verb("update", "updated"))
                }
            }
            // The name is OVS's, not a rule's (a rule-less mirror of ours): shown escaped.
            MirrorChange::Remove {
                name,
                bridge,
                reason,
                ..
            } => format!(
                "{} mirror {} from {bridge} ({reason})",
                verb("remove", "removed"),
                name.escape_debug()
            ),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            MirrorChange::Create(w) | MirrorChange::Update { want: w, .. } => &w.name,
            MirrorChange::Remove { name, .. } => name,
        }
    }
}

impl fmt::Display for MirrorChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(false))
    }
}

/// Where a rule stands: the one rule-state of the tool, which the mirror plan and the `status`
/// report share. The strings are the interface (`status --json`): scripts match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleState {
    /// Both ports are on the bridge and the mirror is (once the plan is committed) as the rule
    /// says.
    Active,
    /// Both ports are on the bridge but the mirror is missing or wrong: the next `apply` (or
    /// `plug` of one of its NICs) creates or corrects it. Only the `status` report says this
    /// (see [`crate::decide::status`]): a plan is what the run leaves behind, where it is active.
    Pending,
    /// A port (or the bridge) is missing. Not an error.
    Waiting,
    /// The line is refused, or names something that cannot exist.
    Invalid,
}

impl RuleState {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleState::Active => "active",
            RuleState::Pending => "pending",
            RuleState::Waiting => "waiting",
            RuleState::Invalid => "invalid",
        }
    }
}

/// One rule's state, by line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleStatus {
    pub line: usize,
    /// The mirror's name, when the line could be read.
    pub mirror: Option<String>,
    /// The rule's bridge and the port the copies go out of, when the line could be resolved.
    pub bridge: Option<String>,
    pub output: Option<String>,
    pub state: RuleState,
    /// What a waiting rule waits for (`tap400i0 on vmbr1`), why an invalid one is refused, what
    /// a pending one needs; `None` for an active rule.
    pub detail: Option<String>,
}

/// Which rules a plan reconciles.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// `apply`: every rule, and mirrors of ours that no rule asks for are removed.
    Full,
    /// `plug IFACE`: the rules that involve `IFACE` only; nothing else is touched.
    Involving(&'a str),
}

/// The mirror changes of one run, and the promiscuous flags to set and clear once they are
/// committed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorPlan {
    pub changes: Vec<MirrorChange>,
    pub promisc_on: BTreeSet<String>,
    pub promisc_off: BTreeSet<String>,
    /// The state of every rule in scope once the plan is committed, by line.
    pub rules: Vec<RuleStatus>,
}

impl MirrorPlan {
    /// Whether the plan changes nothing in OVSDB.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether, once the plan is committed together with the port plan `ports`, ovs-vswitchd
    /// must be told to drop its cached datapath flows so that copies stop at once: a mirror
    /// removed, or one whose selection or output is rewritten (narrowed or sent elsewhere).
    /// ovs-vswitchd does not revalidate its cached flows when a mirror is deleted, so those keep
    /// copying to the former output while traffic flows. A mirror created, or one only marked,
    /// stops nothing; and a transaction that adds, moves or deletes a port makes ovs-vswitchd
    /// revalidate every flow by itself (a port's construction and destruction), so the purge,
    /// which costs every flow of the host a new upcall, is left out then (a guest stop that takes
    /// its mirror with it).
    pub fn stops_copies(&self, ports: &Plan) -> bool {
        let revalidated = ports.changes.iter().any(|c| {
            matches!(
                c,
                Change::Attach { .. } | Change::Move { .. } | Change::Prune { .. }
            )
        });
        !revalidated
            && self.changes.iter().any(|c| match c {
                MirrorChange::Remove { .. } => true,
                MirrorChange::Update { differs, .. } => differs.iter().any(|d| *d != PROMISC_KEY),
                MirrorChange::Create(_) => false,
            })
    }

    /// How many mirror changes of each kind.
    pub fn counts(&self) -> ChangeCounts {
        let mut c = ChangeCounts::default();
        for change in &self.changes {
            *match change {
                MirrorChange::Create(_) => &mut c.created,
                MirrorChange::Update { .. } => &mut c.updated,
                MirrorChange::Remove { .. } => &mut c.removed,
            } += 1;
        }
        c
    }

    /// How many rules in each state (an active rule still to be corrected counts as active).
    pub fn rule_counts(&self) -> RuleCounts {
        let mut c = RuleCounts::default();
        for r in &self.rules {
            *match r.state {
                RuleState::Active | RuleState::Pending => &mut c.active,
                RuleState::Waiting => &mut c.waiting,
                RuleState::Invalid => &mut c.invalid,
            } += 1;
        }
        c
    }
}

/// A mirror plan's changes, counted by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    pub created: usize,
    pub updated: usize,
    pub removed: usize,
}

/// A mirror plan's rules, counted by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounts {
    pub active: usize,
    pub waiting: usize,
    pub invalid: usize,
}

/// The mirror changes that make OVS match `specs`, once the port plan `ports` of the same run is
/// committed. `promisc` holds the current promiscuous flag of the links asked for
/// ([`Specs::promisc_links`]); a link missing from it does not exist (or is not a Linux link),
/// and its flag is left alone.
pub fn build(
    specs: &Specs,
    observed: &Observed,
    ports: &Plan,
    promisc: &BTreeMap<String, bool>,
    scope: Scope<'_>,
) -> MirrorPlan {
    let after = plan::after(observed, ports);
    let recorded = recorded(observed);
    let mut out = MirrorPlan::default();
    if let Scope::Full = scope {
        out.rules
            .extend(specs.invalid.iter().map(|(line, why)| RuleStatus {
                line: *line,
                mirror: None,
                bridge: None,
                output: None,
                state: RuleState::Invalid,
                detail: Some(why.clone()),
            }));
    }
    // Mirrors of ours this plan has decided about, and the (bridge, name) of every rule in scope.
    let mut handled: BTreeSet<&str> = BTreeSet::new();
    let mut claimed: BTreeSet<(&str, &str)> = BTreeSet::new();
    // Links the mirrors written or kept by this plan record.
    let mut records: BTreeSet<String> = BTreeSet::new();
    let in_scope = |s: &Spec| match scope {
        Scope::Full => true,
        Scope::Involving(iface) => s.involves.contains(iface),
    };
    for spec in specs.specs.iter().filter(|s| in_scope(s)) {
        claimed.insert((&spec.bridge, &spec.name));
        let same = |m: &&ObservedMirror| {
            m.bridge.as_deref() == Some(spec.bridge.as_str()) && m.name == spec.name
        };
        let ours: Vec<&ObservedMirror> = observed
            .mirrors
            .iter()
            .filter(same)
            .filter(|m| m.owned())
            .collect();
        handled.extend(ours.iter().map(|m| m.uuid.as_str()));
        let (state, detail) = match endpoints(spec, &after, observed) {
            Err(waiting) => {
                out.changes
                    .extend(ours.iter().map(|m| MirrorChange::Remove {
                        uuid: m.uuid.clone(),
                        name: m.name.clone(),
                        bridge: spec.bridge.clone(),
                        reason: format!("waiting for {waiting}"),
                    }));
                (RuleState::Waiting, Some(waiting))
            }
            Ok(ends) => {
                let mut record = BTreeSet::new();
                for (source, _) in &ends.sources {
                    if !spec.promisc.contains(source) {
                        continue;
                    }
                    let off = promisc.get(source) == Some(&false);
                    if off {
                        out.promisc_on.insert(source.clone());
                    }
                    if off || recorded.contains(source.as_str()) {
                        record.insert(source.clone());
                    }
                }
                let want = Want {
                    name: spec.name.clone(),
                    bridge: spec.bridge.clone(),
                    all: spec.all,
                    sources: ends.sources,
                    select: spec.select,
                    vlans: spec.vlans.clone(),
                    out: ends.out,
                    promisc: record,
                };
                records.extend(want.promisc.iter().cloned());
                out.changes.extend(keep(&ours, observed, &same, want));
                match ends.missing {
                    None => (RuleState::Active, None),
                    Some(missing) => (RuleState::Waiting, Some(missing)),
                }
            }
        };
        out.rules.push(RuleStatus {
            line: spec.line,
            mirror: Some(spec.name.clone()),
            bridge: Some(spec.bridge.clone()),
            output: spec.output.port().map(String::from),
            state,
            detail,
        });
    }
    if matches!(scope, Scope::Full) && specs.complete() {
        for m in observed.mirrors.iter().filter(|m| m.owned()) {
            let Some(bridge) = &m.bridge else { continue };
            if !claimed.contains(&(bridge.as_str(), m.name.as_str())) {
                handled.insert(&m.uuid);
                out.changes.push(MirrorChange::Remove {
                    uuid: m.uuid.clone(),
                    name: m.name.clone(),
                    bridge: bridge.clone(),
                    reason: "no rule asks for it".into(),
                });
            }
        }
    }
    // Mirrors of ours this plan leaves alone keep their records.
    records.extend(
        observed
            .mirrors
            .iter()
            .filter(|m| m.owned() && m.bridge.is_some() && !handled.contains(m.uuid.as_str()))
            .flat_map(|m| links(m.promisc.as_deref()).map(String::from)),
    );
    out.promisc_off = recorded
        .into_iter()
        .filter(|link| !records.contains(*link) && promisc.get(*link) == Some(&true))
        .map(String::from)
        .collect();
    out.rules.sort_by_key(|r| r.line);
    out
}

/// The changes that make the mirrors of ours with a rule's name (`ours`), or an unmarked
/// namesake (adopted), what `want` says; or the mirror created.
fn keep(
    ours: &[&ObservedMirror],
    observed: &Observed,
    same: &dyn Fn(&&ObservedMirror) -> bool,
    want: Want,
) -> Vec<MirrorChange> {
    let mut changes = Vec::new();
    if let Some((first, extra)) = ours.split_first() {
        let bridge = want.bridge.clone();
        let differs = differs(first, &want);
        if !differs.is_empty() {
            changes.push(MirrorChange::Update {
                uuid: first.uuid.clone(),
                want,
                adopt: false,
                differs,
            });
        }
        changes.extend(extra.iter().map(|m| MirrorChange::Remove {
            uuid: m.uuid.clone(),
            name: m.name.clone(),
            bridge: bridge.clone(),
            reason: "a second mirror of ours with this name".into(),
        }));
    } else if let Some(m) = observed
        .mirrors
        .iter()
        .filter(same)
        .find(|m| m.owner.is_none())
    {
        changes.push(MirrorChange::Update {
            uuid: m.uuid.clone(),
            differs: differs(m, &want),
            want,
            adopt: true,
        });
    } else {
        changes.push(MirrorChange::Create(want));
    }
    changes
}

/// A rule's ports once the port plan is committed.
struct Ends {
    /// The sources on the bridge, with their rows.
    sources: Vec<(String, PortRef)>,
    out: Out,
    /// The sources not on the bridge, when some are (the mirror copies the others meanwhile).
    missing: Option<String>,
}

/// The ports of a spec once the port plan is committed, or what it waits for: the bridge, the
/// output port, or every source. A rule of several sources some of which are missing keeps
/// mirroring those on the bridge, and says which it waits for.
fn endpoints(
    spec: &Spec,
    after: &BTreeMap<String, PortAfter>,
    observed: &Observed,
) -> Result<Ends, String> {
    if !observed.bridges.contains_key(&spec.bridge) {
        return Err(format!("bridge {} (it does not exist)", spec.bridge));
    }
    let at = |name: &str| match after.get(name) {
        Some(p) if p.bridge == spec.bridge => Ok(p.row.clone()),
        Some(p) => Err(format!("{name} (now on {})", p.bridge)),
        None => Err(name.to_string()),
    };
    let out = match &spec.output {
        Output::Vlan(v) => Ok(Out::Vlan(*v)),
        Output::Port(name) => at(name).map(|row| Out::Port(name.clone(), row)),
    };
    let mut sources = Vec::new();
    let mut missing = Vec::new();
    for name in &spec.sources {
        match at(name) {
            Ok(row) => sources.push((name.clone(), row)),
            Err(why) => missing.push(why),
        }
    }
    let on = |what: Vec<String>| format!("{} on {}", what.join(" and "), spec.bridge);
    match out {
        Err(why) => {
            missing.push(why);
            Err(on(missing))
        }
        Ok(_) if sources.is_empty() && !spec.all => Err(on(missing)),
        Ok(out) => Ok(Ends {
            missing: (!missing.is_empty()).then(|| {
                let copying: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
                format!("{} (copying {} meanwhile)", on(missing), copying.join(", "))
            }),
            sources,
            out,
        }),
    }
}

/// The columns of `m` that differ from `want` (the mark aside).
fn differs(m: &ObservedMirror, want: &Want) -> Vec<&'static str> {
    let set_is = |set: &BTreeSet<Uuid>, wanted: bool| match wanted && !want.all {
        true => {
            set.len() == want.sources.len()
                && want
                    .sources
                    .iter()
                    .all(|(_, r)| set.iter().any(|u| r.is(u)))
        }
        false => set.is_empty(),
    };
    let vlans: BTreeSet<i64> = want.vlans.iter().map(|&v| i64::from(v)).collect();
    let (port, vlan) = match &want.out {
        Out::Port(_, r) => (Some(r), None),
        Out::Vlan(v) => (None, Some(i64::from(*v))),
    };
    let mut d = Vec::new();
    if m.select_all != want.all {
        d.push("select_all");
    }
    if !set_is(&m.select_src, want.select.src()) {
        d.push("select_src_port");
    }
    if !set_is(&m.select_dst, want.select.dst()) {
        d.push("select_dst_port");
    }
    if m.select_vlan != vlans {
        d.push("select_vlan");
    }
    let out_ok = match (&m.output, port) {
        (None, None) => true,
        (Some(u), Some(r)) => r.is(u),
        _ => false,
    };
    if !out_ok {
        d.push("output_port");
    }
    if m.output_vlan != vlan {
        d.push("output_vlan");
    }
    if m.filter.is_some() {
        d.push("filter");
    }
    let recorded: BTreeSet<String> = links(m.promisc.as_deref()).map(String::from).collect();
    if m.owned() && recorded != want.promisc {
        d.push(PROMISC_KEY);
    }
    d
}

/// The mirror plan of `clear` (and `clear --keep-ports`, package removal): every mirror of ours
/// goes, and with it every promiscuous flag they record (`promisc` as for [`build`]).
pub fn clear(observed: &Observed, promisc: &BTreeMap<String, bool>) -> MirrorPlan {
    let ours: Vec<&ObservedMirror> = observed
        .mirrors
        .iter()
        .filter(|m| m.owned() && m.bridge.is_some())
        .collect();
    MirrorPlan {
        changes: ours
            .iter()
            .map(|m| MirrorChange::Remove {
                uuid: m.uuid.clone(),
                name: m.name.clone(),
                bridge: m.bridge.clone().unwrap_or_default(),
                reason: "clear".into(),
            })
            .collect(),
        promisc_off: recorded(observed)
            .into_iter()
            .filter(|l| promisc.get(*l) == Some(&true))
            .map(String::from)
            .collect(),
        ..MirrorPlan::default()
    }
}

#[cfg(test)]
mod tests;
