//! `status`: where every guest NIC is, where it belongs, and whether `apply` has anything to do.
//! This module holds the report's model, the classification of every NIC and the health rule;
//! [`json`] renders the report as the JSON document and [`text`] as the human tables.
//!
//! Pure, and a reading of `apply`'s own results rather than a second copy of its rules:
//! [`Report::build`] takes the [`Desired`] state from [`crate::decide::desired::build`] and the
//! [`Plan`] from [`crate::decide::plan::build`], computed exactly as `apply` computes them, and
//! sorts what they say into [`State`]s:
//!
//! - a NIC is `missing` or `drift` exactly when the plan has a change for it (`missing` when the
//!   change creates its port), and the reason is that change as `apply --dry-run` prints it;
//! - `stale` rows are exactly the plan's prunes of ports whose link is gone;
//! - otherwise the decision says it: `ok` (attach), `kept-off` (detach, and not on OVS),
//!   `ignored` (ignore; or detach of a port that is not the tool's, which `apply` leaves alone),
//!   `invalid` (the configuration's message).
//!
//! A planned change that belongs to no NIC and is no stale prune (a mirror of ours whose rule is
//! gone, a kernel-link change of no NIC's) is listed under `other`. Hence the invariant that the
//! exit code rests on: **a non-empty plan never makes a healthy report** (a property test in
//! `tests` checks it against random hosts).
//!
//! The host files come in as [`FileCheck`]s (what `apply` would write, compared with the disk by
//! the adapter), the traffic mirror rules as the mirror plan (its rule states and changes, [`Report::with_mirrors`]), the
//! kernel-link work as (link, change) pairs. The JSON schema is docs/status.md.
//!
//! The same report renders four ways: [`text`] (the tables), [`json`] (the document),
//! [`prometheus`] (metrics for node_exporter's textfile collector) and [`nagios`] (a monitoring
//! plugin's line and exit code); the last two add the runs since boot ([`RunStats`]).

pub(crate) mod cluster;
mod json;
pub(crate) mod nagios;
pub(crate) mod prometheus;
mod runs;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_support;
mod text;

pub(crate) use runs::{LastApply, RunStats};

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::decide::config::Config;
use crate::decide::desired::{Chosen, Decision, Desired, HostLink};
use crate::decide::guest::{Kind, NicId};
use crate::decide::linkplan::LinkState;
use crate::decide::mirrors::{MirrorChange, MirrorPlan, RuleState, RuleStatus};
use crate::decide::nic::{self, Role};
use crate::decide::observed::{MirrorStats, Observed, PortState};
use crate::decide::plan::{Change, Plan};
use crate::decide::vlan::Vlan;
use crate::decide::{glob, ifname};

/// The state of a guest NIC (or of a stale port, [`State::Stale`]). The strings are the
/// interface: scripts match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Where it belongs.
    Ok,
    /// Should be on OVS and is not: `apply` creates its port.
    Missing,
    /// On OVS, but not as it should be (bridge, VLAN, or a port of ours that must go).
    Drift,
    /// Correctly not on OVS (LXC `link_down=1`, a bridge that is not an OVS bridge).
    KeptOff,
    /// Not this tool's business, with the reason.
    Ignored,
    /// Its configuration is broken, with the message; `apply` cannot fix it.
    Invalid,
    /// A port whose link is gone, which `apply` prunes.
    Stale,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Missing => "missing",
            State::Drift => "drift",
            State::KeptOff => "kept-off",
            State::Ignored => "ignored",
            State::Invalid => "invalid",
            State::Stale => "stale",
        }
    }

    /// Whether `apply` would change something for it.
    fn needs_apply(self) -> bool {
        matches!(self, State::Missing | State::Drift | State::Stale)
    }
}

/// The kind of decision `apply` makes for a NIC: [`Decision`] without its payload, which the
/// report carries as the state and reason instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecisionKind {
    Attach,
    Detach,
    Ignore,
    Invalid,
}

impl DecisionKind {
    fn of(decision: &Decision) -> DecisionKind {
        match decision {
            Decision::Attach(_) => DecisionKind::Attach,
            Decision::Detach(_) => DecisionKind::Detach,
            Decision::Ignore(_) => DecisionKind::Ignore,
            Decision::Invalid(_) => DecisionKind::Invalid,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Attach => "attach",
            DecisionKind::Detach => "detach",
            DecisionKind::Ignore => "ignore",
            DecisionKind::Invalid => "invalid",
        }
    }
}

/// Where a NIC belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Place {
    bridge: String,
    vlan: Vlan,
}

/// One guest NIC: a link named with a configured prefix (OVS internal ports aside).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Nic {
    name: String,
    /// The guest and `net<n>` its name says; `None` for a raw NIC.
    guest: Option<NicId>,
    /// The decision `apply` makes.
    decision: DecisionKind,
    /// Set when the decision is to attach.
    desired: Option<Place>,
    /// What OVS holds for the port that carries the NIC; `None` when there is no such port.
    actual: Option<PortState>,
    state: State,
    /// Why, for every state but `ok`.
    reason: Option<String>,
    /// A QEMU NIC's `[PENDING]` network value, beside the current one the other columns show
    /// (or which they show, when the pending value is the one in place).
    pending: Option<PendingNote>,
    /// What placed a NIC no Proxmox configuration describes (`lxc config ct1`, `rule 2`,
    /// `raw_default`, `default bridge`).
    source: Option<String>,
}

/// A pending network value, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingNote {
    value: String,
    /// The value the decision follows.
    following: Chosen,
}

/// A port `apply` prunes because its link is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stale {
    name: String,
    guest: Option<NicId>,
    actual: PortState,
    /// The prune, as `apply --dry-run` prints it.
    reason: String,
}

/// A host file as the adapter checked it: what `apply` would do, and whether the disk already
/// matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileCheck {
    /// `stanzas`, `interfaces`, `interfaces.new` or `nmstate`.
    pub(crate) role: String,
    pub(crate) path: String,
    /// Whether `apply` would remove the file (else it writes or keeps it).
    pub(crate) removes: bool,
    /// Whether the disk already is what `action` makes it; the error if it could not be read.
    pub(crate) in_sync: Result<bool, String>,
    /// Why `apply` cannot bring the file in step by itself (it warns about each on every run).
    pub(crate) refused: Vec<String>,
    /// What else `apply` says about the file (a damaged file written anew, stanzas moved).
    pub(crate) notes: Vec<String>,
    /// The file could not be read, so `apply` leaves it and fails.
    pub(crate) error: Option<String>,
    /// The `source` line the interfaces file lacks.
    pub(crate) source_line: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileState {
    InSync,
    OutOfSync,
    Refused,
}

impl FileState {
    fn as_str(self) -> &'static str {
        match self {
            FileState::InSync => "in-sync",
            FileState::OutOfSync => "out-of-sync",
            FileState::Refused => "refused",
        }
    }
}

/// A host file's state.
#[derive(Clone, Debug, PartialEq, Eq)]
struct File {
    role: String,
    path: String,
    state: FileState,
    reason: Option<String>,
    source_line: Option<String>,
}

impl File {
    /// Refused beats out-of-sync: an admin has to act whether or not `apply` also writes.
    fn of(check: FileCheck) -> File {
        let (state, reason) = if let Some(e) = check.error {
            (FileState::Refused, Some(e))
        } else if !check.refused.is_empty() {
            (FileState::Refused, Some(check.refused.join("; ")))
        } else {
            match check.in_sync {
                Err(e) => (FileState::Refused, Some(e)),
                Ok(true) => (FileState::InSync, None),
                Ok(false) => {
                    let what = if check.removes {
                        "apply removes it"
                    } else {
                        "apply rewrites it"
                    };
                    let reason = check
                        .notes
                        .iter()
                        .map(String::as_str)
                        .chain([what])
                        .collect::<Vec<_>>()
                        .join("; ");
                    (FileState::OutOfSync, Some(reason))
                }
            }
        };
        File {
            role: check.role,
            path: check.path,
            state,
            reason,
            source_line: check.source_line,
        }
    }
}

/// A traffic mirror rule of `mirrors_file`, as [`Report::with_mirrors`] adds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mirror {
    /// The rule's name (or the rule as written).
    pub(crate) rule: String,
    pub(crate) state: RuleState,
    pub(crate) reason: Option<String>,
    /// What the mirror of ours has sent, as ovs-vswitchd last wrote it into `statistics`.
    pub(crate) stats: Option<MirrorStats>,
}

impl Mirror {
    /// A rule as the report shows it: the plan's state, except that an active rule whose mirror
    /// `apply` would still create or correct is pending, with that change as the reason, and
    /// one whose output link is gone or down is waiting for it (the mirror is as the rule says,
    /// but its copies go nowhere); the reason worded for people (`waiting for ...`,
    /// `line N: ...`). `links` are the host's links by name; the mirror's statistics are those
    /// of the mirror of ours in `observed`.
    fn of(
        rule: &RuleStatus,
        plan: &MirrorPlan,
        observed: &Observed,
        links: &BTreeMap<String, LinkState>,
    ) -> Mirror {
        let planned = |name: &str| {
            plan.changes
                .iter()
                .find(|c| !matches!(c, MirrorChange::Remove { .. }) && c.name() == name)
                .map(|c| c.describe(false))
        };
        let output_unusable = || {
            let output = rule.output.as_deref()?;
            match links.get(output) {
                None => Some(format!("{output} (its link is gone)")),
                Some(l) if !l.up => Some(format!("{output} to come up (its link is down)")),
                Some(_) => None,
            }
        };
        let detail = rule.detail.clone().unwrap_or_default();
        let (state, reason) = match rule.state {
            RuleState::Active => {
                match (rule.mirror.as_deref().and_then(planned), output_unusable()) {
                    (Some(what), _) => (RuleState::Pending, Some(what)),
                    (None, Some(what)) => (RuleState::Waiting, Some(format!("waiting for {what}"))),
                    (None, None) => (RuleState::Active, None),
                }
            }
            RuleState::Pending => (RuleState::Pending, Some(detail)),
            // A rule of several sources waiting for some of them: its mirror of the others may
            // still be missing or wrong.
            RuleState::Waiting => match rule.mirror.as_deref().and_then(planned) {
                Some(what) => (RuleState::Pending, Some(what)),
                None => (RuleState::Waiting, Some(format!("waiting for {detail}"))),
            },
            RuleState::Invalid => (
                RuleState::Invalid,
                Some(format!("line {}: {detail}", rule.line)),
            ),
        };
        let stats = observed
            .mirrors
            .iter()
            .find(|m| {
                m.owned()
                    && Some(m.name.as_str()) == rule.mirror.as_deref()
                    && m.bridge.is_some()
                    && m.bridge == rule.bridge
            })
            .and_then(|m| m.stats);
        Mirror {
            rule: rule
                .mirror
                .clone()
                .unwrap_or_else(|| format!("line {}", rule.line)),
            state,
            reason,
            stats,
        }
    }
}

/// How many NICs are in each state, stale ports included, every state listed. Serialized as it
/// is into the JSON document's `counts`, whose keys are the states' names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
struct Counts {
    ok: usize,
    missing: usize,
    drift: usize,
    #[serde(rename = "kept-off")]
    kept_off: usize,
    ignored: usize,
    invalid: usize,
    stale: usize,
}

impl Counts {
    fn of(&mut self, state: State) -> &mut usize {
        match state {
            State::Ok => &mut self.ok,
            State::Missing => &mut self.missing,
            State::Drift => &mut self.drift,
            State::KeptOff => &mut self.kept_off,
            State::Ignored => &mut self.ignored,
            State::Invalid => &mut self.invalid,
            State::Stale => &mut self.stale,
        }
    }

    /// Every state with its count, in the order the summary line and the JSON list them.
    fn listed(self) -> [(usize, State); 7] {
        [
            (self.ok, State::Ok),
            (self.missing, State::Missing),
            (self.drift, State::Drift),
            (self.kept_off, State::KeptOff),
            (self.ignored, State::Ignored),
            (self.invalid, State::Invalid),
            (self.stale, State::Stale),
        ]
    }
}

/// How many host files are in each state; the JSON document's `file_counts`, as [`Counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
struct FileCounts {
    #[serde(rename = "in-sync")]
    in_sync: usize,
    #[serde(rename = "out-of-sync")]
    out_of_sync: usize,
    refused: usize,
}

impl FileCounts {
    fn of(&mut self, state: FileState) -> &mut usize {
        match state {
            FileState::InSync => &mut self.in_sync,
            FileState::OutOfSync => &mut self.out_of_sync,
            FileState::Refused => &mut self.refused,
        }
    }

    /// Every state with its count, in the order the summary line and the JSON list them.
    fn listed(self) -> [(usize, FileState); 3] {
        [
            (self.in_sync, FileState::InSync),
            (self.out_of_sync, FileState::OutOfSync),
            (self.refused, FileState::Refused),
        ]
    }
}

/// Everything `status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    nics: Vec<Nic>,
    stale: Vec<Stale>,
    files: Vec<File>,
    mirrors: Vec<Mirror>,
    /// Planned changes that belong to no NIC and are no stale prune, as `apply --dry-run`
    /// prints them.
    other: Vec<String>,
}

impl Report {
    /// Reads `desired` and `plan` (built by `apply`'s own functions from `links`, `observed` and
    /// the live link names `live`) into a report; the host files come with [`Report::with_files`].
    pub(crate) fn build<'a>(
        config: &Config,
        links: &[HostLink],
        desired: &'a Desired,
        observed: &Observed,
        plan: &'a Plan,
        live: &BTreeSet<String>,
    ) -> Report {
        // The port that carries each NIC: the NIC itself, or the fwln of a firewall NIC.
        let carrier = |name: &'a str, d: &'a Decision| -> &'a str {
            match d {
                Decision::Attach(t) => t.port(name),
                _ => name,
            }
        };
        let nic_of_port: BTreeMap<&str, &str> = desired
            .nics
            .iter()
            .map(|(n, d)| (carrier(n, d), n.as_str()))
            .collect();
        // A change belongs to a NIC if it is on the NIC's own port, on the port carrying it, or
        // on a fwln of that NIC (one it no longer wants).
        let nic_of = |port: &str| -> Option<&'a str> {
            if let Some((n, _)) = desired.nics.get_key_value(port) {
                return Some(n.as_str());
            }
            if let Some(n) = nic_of_port.get(port) {
                return Some(n);
            }
            let slot = nic::parse_as(port, Role::Fwln)?;
            slot.hosts().into_iter().find_map(|n| {
                desired
                    .nics
                    .get_key_value(n.as_str())
                    .map(|(k, _)| k.as_str())
            })
        };
        let mut changes: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
        let mut stale = Vec::new();
        let mut other = Vec::new();
        for change in &plan.changes {
            let port = change.port();
            match (nic_of(port), observed.ports.get(port), change) {
                (Some(nic), _, _) => changes.entry(nic).or_default().push(change),
                (None, Some(state), Change::Prune { .. }) if !live.contains(port) => {
                    stale.push(Stale {
                        name: port.to_string(),
                        guest: NicId::parse(port),
                        actual: state.clone(),
                        reason: change.describe(false),
                    })
                }
                _ => other.push(change.describe(false)),
            }
        }
        let mut nics: Vec<Nic> = desired
            .nics
            .iter()
            .map(|(name, decision)| {
                let port = observed.ports.get(carrier(name, decision));
                let planned = changes.get(name.as_str()).map_or(&[][..], Vec::as_slice);
                let (state, reason) = classify(decision, port, planned);
                Nic {
                    name: name.clone(),
                    guest: NicId::parse(name),
                    decision: DecisionKind::of(decision),
                    desired: match decision {
                        Decision::Attach(t) => Some(Place {
                            bridge: t.bridge.clone(),
                            vlan: t.vlan.clone(),
                        }),
                        _ => None,
                    },
                    actual: port.cloned(),
                    state,
                    reason,
                    pending: desired.pending.get(name).map(|p| PendingNote {
                        value: p.value.clone(),
                        following: p.chosen,
                    }),
                    source: desired.sources.get(name).map(ToString::to_string),
                }
            })
            .collect();
        nics.extend(unconsidered(config, links, desired, observed));
        nics.sort_by(|a, b| order(&a.name, a.guest).cmp(&order(&b.name, b.guest)));
        stale.sort_by(|a, b| order(&a.name, a.guest).cmp(&order(&b.name, b.guest)));
        Report {
            nics,
            stale,
            files: Vec::new(),
            // The mirror rules' states come with `with_mirrors`.
            mirrors: Vec::new(),
            other,
        }
    }

    /// The report with the checked host files (kept apart from [`Report::build`] so that the
    /// caller can check the files while the NICs are built and rendered).
    pub(crate) fn with_files(mut self, files: Vec<FileCheck>) -> Report {
        self.files = files.into_iter().map(File::of).collect();
        self
    }

    /// The mirror rules' states read off `apply`'s mirror plan and the links ([`Mirror::of`]),
    /// with each mirror's statistics, and the mirror
    /// changes it would make that belong to no rule (mirrors of ours whose rule is gone), which
    /// count as planned changes.
    pub(crate) fn with_mirrors(
        mut self,
        plan: &MirrorPlan,
        observed: &Observed,
        links: &BTreeMap<String, LinkState>,
    ) -> Report {
        self.mirrors = plan
            .rules
            .iter()
            .map(|r| Mirror::of(r, plan, observed, links))
            .collect();
        self.other.extend(
            plan.changes
                .iter()
                .filter(|c| matches!(c, MirrorChange::Remove { .. }))
                .map(|c| c.describe(false)),
        );
        self
    }

    /// Kernel-link changes `apply` would make for a NIC (a fwln out of its fwbr, IPv6 still
    /// on, an LXC `link_down=1` NIC up): that NIC drifts. `ops` are (link, what) pairs, the link
    /// being the NIC itself, its fwbr or its fwln.
    pub(crate) fn with_link_work(mut self, ops: &[(String, String)]) -> Report {
        for (link, what) in ops {
            let nic = NicId::parse(link).map(|_| link.clone()).or_else(|| {
                let slot = match nic::parse(link)? {
                    (slot, Role::Fwln | Role::Fwbr) => slot,
                    _ => return None,
                };
                slot.hosts()
                    .into_iter()
                    .find(|n| self.nics.iter().any(|x| x.name == *n))
            });
            match nic.and_then(|n| self.nics.iter_mut().find(|x| x.name == n)) {
                Some(n) if matches!(n.state, State::Ok | State::KeptOff) => {
                    n.state = State::Drift;
                    n.reason = Some(what.clone());
                }
                Some(_) => {}
                None => self.other.push(what.clone()),
            }
        }
        self
    }

    fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for nic in &self.nics {
            *counts.of(nic.state) += 1;
        }
        counts.stale += self.stale.len();
        counts
    }

    fn file_counts(&self) -> FileCounts {
        let mut counts = FileCounts::default();
        for file in &self.files {
            *counts.of(file.state) += 1;
        }
        counts
    }

    /// Whether `apply` has something to do: a NIC missing or drifting, a stale port, a file out
    /// of sync, a mirror to create or correct, any other planned change.
    fn needs_apply(&self) -> bool {
        self.nics.iter().any(|n| n.state.needs_apply())
            || !self.stale.is_empty()
            || self.files.iter().any(|f| f.state == FileState::OutOfSync)
            || self.mirrors.iter().any(|m| m.state == RuleState::Pending)
            || !self.other.is_empty()
    }

    /// Whether something needs an admin, as `apply` cannot fix it: an invalid configuration, a
    /// refused file, an invalid mirror rule.
    fn needs_admin(&self) -> bool {
        self.nics.iter().any(|n| n.state == State::Invalid)
            || self.files.iter().any(|f| f.state == FileState::Refused)
            || self.mirrors.iter().any(|m| m.state == RuleState::Invalid)
    }

    /// Exit code 0: nothing needs `apply` and nothing is invalid or refused.
    pub(crate) fn healthy(&self) -> bool {
        !self.needs_apply() && !self.needs_admin()
    }
}

/// The state of a decided NIC, and why.
fn classify(
    decision: &Decision,
    port: Option<&PortState>,
    changes: &[&Change],
) -> (State, Option<String>) {
    match decision {
        Decision::Invalid(why) => (State::Invalid, Some(why.clone())),
        // The plan's changes come before the decision's kind: they are what `apply` would do.
        _ if !changes.is_empty() => {
            let state = match changes[0] {
                Change::Attach { .. } => State::Missing,
                _ => State::Drift,
            };
            let what: Vec<String> = changes.iter().map(|c| c.describe(false)).collect();
            (state, Some(what.join("; ")))
        }
        Decision::Attach(_) => (State::Ok, None),
        Decision::Detach(why) => match port.and_then(|p| p.bridge.as_ref()) {
            // On OVS, but not by this tool's hand: `apply` removes only its own ports.
            Some(bridge) => (
                State::Ignored,
                Some(format!(
                    "{why}, but its port on {bridge} carries no ownership mark of this tool: left alone"
                )),
            ),
            None => (State::KeptOff, Some(why.clone())),
        },
        Decision::Ignore(why) => (State::Ignored, Some(why.clone())),
    }
}

/// The links named like guest NICs that no decision covers (an invalid name, an `exclude`
/// match): never touched, and shown as ignored with the reason.
fn unconsidered(
    config: &Config,
    links: &[HostLink],
    desired: &Desired,
    observed: &Observed,
) -> Vec<Nic> {
    // `desired` holds a decision for every candidate (see `desired::candidates`).
    links
        .iter()
        .filter(|l| l.kind.as_deref() != Some("openvswitch") && config.has_prefix(&l.name))
        .filter(|l| !desired.nics.contains_key(&l.name))
        .map(|l| {
            let reason = if ifname::validate(&l.name).is_err() {
                "not a valid interface name (at most 15 bytes of letters, digits, '-', '_', '.'): never attached or written to any file".to_string()
            } else {
                let pattern = config
                    .exclude
                    .iter()
                    .find(|g| glob::matches(g, &l.name));
                match pattern {
                    Some(g) => format!("matches the exclude pattern {g}"),
                    None => "not a guest NIC".to_string(),
                }
            };
            Nic {
                name: l.name.clone(),
                guest: NicId::parse(&l.name),
                decision: DecisionKind::Ignore,
                desired: None,
                actual: observed.ports.get(&l.name).cloned(),
                state: State::Ignored,
                reason: Some(reason),
                pending: None,
                source: None,
            }
        })
        .collect()
}

/// Sort key, "by guest": a guest's NICs together, by VMID, QEMU before LXC, by `net<n>`; raw
/// NICs after all guests, by name.
type Order<'a> = (bool, u32, Option<Kind>, u8, &'a str);

fn order(name: &str, guest: Option<NicId>) -> Order<'_> {
    match guest {
        Some(g) => (false, g.guest.vmid, Some(g.guest.kind), g.index, name),
        None => (true, 0, None, 0, name),
    }
}

/// A guest kind as both renderings name it.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Qemu => "qemu",
        Kind::Lxc => "lxc",
    }
}
