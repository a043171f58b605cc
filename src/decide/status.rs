//! `status`: where every guest NIC is, where it belongs, and whether `apply` has anything to do.
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
//! A planned change that belongs to no NIC and is no stale prune (none today; a later feature
//! might plan changes on ports of its own) is listed under `other`. Hence the invariant that the
//! exit code rests on: **a non-empty plan never makes a healthy report** (tested below).
//!
//! The host files come in as [`FileCheck`]s (what `apply` would write, compared with the disk by
//! the adapter); mirror rules as [`Mirror`]s, which the mirrors feature fills (until then there
//! are none, and the JSON's `mirrors` array is empty). The JSON schema is docs/status.md.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::Config;
use crate::decide::desired::{Chosen, Decision, Desired, HostLink};
use crate::decide::guest::{Kind, NicId};
use crate::decide::observed::{Observed, PortState};
use crate::decide::plan::{Change, Plan};
use crate::decide::vlan::Vlan;
use crate::decide::{firewall, glob, ifname};

/// The version of the JSON document; raised only when a field changes meaning or goes away.
pub const JSON_VERSION: u32 = 1;

/// The state of a guest NIC (or of a stale port, [`State::Stale`]). The strings are the
/// interface: scripts match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
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
    pub const ALL: [State; 7] = [
        State::Ok,
        State::Missing,
        State::Drift,
        State::KeptOff,
        State::Ignored,
        State::Invalid,
        State::Stale,
    ];

    pub fn as_str(self) -> &'static str {
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
    pub fn needs_apply(self) -> bool {
        matches!(self, State::Missing | State::Drift | State::Stale)
    }
}

/// Where a NIC belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub bridge: String,
    pub vlan: Vlan,
}

/// What OVS holds for a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actual {
    /// `None` for a row no bridge holds (OVSDB collects it at the next commit).
    pub bridge: Option<String>,
    pub vlan: Vlan,
    /// Carries the ownership mark.
    pub owned: bool,
}

impl Actual {
    fn of(state: &PortState) -> Actual {
        Actual {
            bridge: state.bridge.clone(),
            vlan: state.vlan.clone(),
            owned: state.owned,
        }
    }
}

/// One guest NIC: a link named with a configured prefix (OVS internal ports aside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    /// The guest and `net<n>` its name says; `None` for a raw NIC.
    pub guest: Option<NicId>,
    /// `attach`, `detach`, `ignore` or `invalid`: the decision `apply` makes.
    pub decision: &'static str,
    /// Set when the decision is to attach.
    pub desired: Option<Place>,
    /// `None` when OVS has no port of that name.
    pub actual: Option<Actual>,
    pub state: State,
    /// Why, for every state but `ok`.
    pub reason: Option<String>,
    /// A QEMU NIC's `[PENDING]` network value, beside the current one the other columns show
    /// (or which they show, when the pending value is the one in place).
    pub pending: Option<PendingNote>,
}

/// A pending network value, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingNote {
    pub value: String,
    /// `current` or `pending`: the value the decision follows.
    pub following: &'static str,
}

/// A port `apply` prunes because its link is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    pub name: String,
    pub guest: Option<NicId>,
    pub actual: Actual,
    /// The prune, as `apply --dry-run` prints it.
    pub reason: String,
}

/// What `apply` would do to a host file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAction {
    Write,
    Remove,
    Keep,
}

/// A host file as the adapter checked it: what `apply` would do, and whether the disk already
/// matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCheck {
    /// `stanzas`, `interfaces`, `interfaces.new` or `nmstate`.
    pub role: String,
    pub path: String,
    pub action: FileAction,
    /// Whether the disk already is what `action` makes it; the error if it could not be read.
    pub in_sync: Result<bool, String>,
    /// Why `apply` cannot bring the file in step by itself (it warns about each on every run).
    pub refused: Vec<String>,
    /// What else `apply` says about the file (a damaged file written anew, stanzas moved).
    pub notes: Vec<String>,
    /// The file could not be read, so `apply` leaves it and fails.
    pub error: Option<String>,
    /// The `source` line the interfaces file lacks.
    pub source_line: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileState {
    InSync,
    OutOfSync,
    Refused,
}

impl FileState {
    pub const ALL: [FileState; 3] = [FileState::InSync, FileState::OutOfSync, FileState::Refused];

    pub fn as_str(self) -> &'static str {
        match self {
            FileState::InSync => "in-sync",
            FileState::OutOfSync => "out-of-sync",
            FileState::Refused => "refused",
        }
    }
}

/// A host file's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub role: String,
    pub path: String,
    pub state: FileState,
    pub reason: Option<String>,
    pub source_line: Option<String>,
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
                    let what = match check.action {
                        FileAction::Remove => "apply removes it",
                        FileAction::Write | FileAction::Keep => "apply rewrites it",
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

/// The state of a mirror rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorState {
    /// The mirror exists in OVS as the rule says.
    Active,
    /// Not in OVS because something it names is not there yet (a stopped guest's NIC); the
    /// reason says what. Not a failure.
    Waiting,
    /// Both ports are there but the mirror is missing or differs: `apply` creates or corrects
    /// it (exit 1, as for a drifting NIC).
    Pending,
    /// The rule cannot be carried out; the reason says why.
    Invalid,
}

impl MirrorState {
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorState::Active => "active",
            MirrorState::Waiting => "waiting",
            MirrorState::Pending => "pending",
            MirrorState::Invalid => "invalid",
        }
    }
}

/// A mirror rule of `mirrors_file`, as [`Report::with_mirrors`] adds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// The rule's name (or the rule as written).
    pub rule: String,
    pub state: MirrorState,
    pub reason: Option<String>,
}

/// The (vmid, NIC index) of a `fwbr<vmid>i<n>` name.
fn fwbr_owner(name: &str) -> Option<(u32, u8)> {
    let nic = NicId::parse(&format!("tap{}", name.strip_prefix("fwbr")?))?;
    Some((nic.guest.vmid, nic.index))
}

/// Everything `status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub nics: Vec<Nic>,
    pub stale: Vec<Stale>,
    pub files: Vec<File>,
    pub mirrors: Vec<Mirror>,
    /// Planned changes that belong to no NIC and are no stale prune, as `apply --dry-run`
    /// prints them.
    pub other: Vec<String>,
}

impl Report {
    /// Reads `desired` and `plan` (built by `apply`'s own functions from `links`, `observed` and
    /// the live link names `live`) into a report; the host files come with [`Report::with_files`].
    pub fn build<'a>(
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
            let (vmid, index) = firewall::fwln_owner(port)?;
            [format!("tap{vmid}i{index}"), format!("veth{vmid}i{index}")]
                .into_iter()
                .find_map(|n| {
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
            match (observed.ports.get(port), change) {
                _ if nic_of(port).is_some() => changes
                    .entry(nic_of(port).unwrap_or(port))
                    .or_default()
                    .push(change),
                (Some(state), Change::Prune { .. }) if !live.contains(port) => stale.push(Stale {
                    name: port.to_string(),
                    guest: NicId::parse(port),
                    actual: Actual::of(state),
                    reason: change.describe(false),
                }),
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
                    decision: decision_name(decision),
                    desired: match decision {
                        Decision::Attach(t) => Some(Place {
                            bridge: t.bridge.clone(),
                            vlan: t.vlan.clone(),
                        }),
                        _ => None,
                    },
                    actual: port.map(Actual::of),
                    state,
                    reason,
                    pending: desired.pending.get(name).map(|p| PendingNote {
                        value: p.value.clone(),
                        following: match p.chosen {
                            Chosen::Current => "current",
                            Chosen::Pending => "pending",
                        },
                    }),
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
    pub fn with_files(mut self, files: Vec<FileCheck>) -> Report {
        self.files = files.into_iter().map(File::of).collect();
        self
    }

    /// The mirror rules' states, and the mirror changes `apply` would make that belong to no
    /// rule (mirrors of ours whose rule is gone), which count as planned changes.
    pub fn with_mirrors(mut self, mirrors: Vec<Mirror>, unclaimed: Vec<String>) -> Report {
        self.mirrors = mirrors;
        self.other.extend(unclaimed);
        self
    }

    /// Kernel-link changes `apply` would make for a NIC (a fwln out of its fwbr, IPv6 still
    /// on, an LXC `link_down=1` NIC up): that NIC drifts. `ops` are (link, what) pairs, the link
    /// being the NIC itself, its fwbr or its fwln.
    pub fn with_link_work(mut self, ops: &[(String, String)]) -> Report {
        for (link, what) in ops {
            let nic = NicId::parse(link).map(|_| link.clone()).or_else(|| {
                let (vmid, index) = firewall::fwln_owner(link).or_else(|| fwbr_owner(link))?;
                [format!("tap{vmid}i{index}"), format!("veth{vmid}i{index}")]
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

    /// How many NICs are in each state, stale ports included, every state listed.
    pub fn counts(&self) -> BTreeMap<State, usize> {
        let mut counts: BTreeMap<State, usize> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for nic in &self.nics {
            *counts.entry(nic.state).or_default() += 1;
        }
        *counts.entry(State::Stale).or_default() += self.stale.len();
        counts
    }

    pub fn file_counts(&self) -> BTreeMap<FileState, usize> {
        let mut counts: BTreeMap<FileState, usize> =
            FileState::ALL.iter().map(|s| (*s, 0)).collect();
        for file in &self.files {
            *counts.entry(file.state).or_default() += 1;
        }
        counts
    }

    /// Whether `apply` has something to do: a NIC missing or drifting, a stale port, a file out
    /// of sync, any other planned change.
    pub fn needs_apply(&self) -> bool {
        self.nics.iter().any(|n| n.state.needs_apply())
            || !self.stale.is_empty()
            || self.files.iter().any(|f| f.state == FileState::OutOfSync)
            || self.mirrors.iter().any(|m| m.state == MirrorState::Pending)
            || !self.other.is_empty()
    }

    /// Whether something needs an admin, as `apply` cannot fix it: an invalid configuration, a
    /// refused file, an invalid mirror rule.
    pub fn needs_admin(&self) -> bool {
        self.nics.iter().any(|n| n.state == State::Invalid)
            || self.files.iter().any(|f| f.state == FileState::Refused)
            || self.mirrors.iter().any(|m| m.state == MirrorState::Invalid)
    }

    /// Exit code 0: nothing needs `apply` and nothing is invalid or refused.
    pub fn healthy(&self) -> bool {
        !self.needs_apply() && !self.needs_admin()
    }

    /// The JSON document (schema version [`JSON_VERSION`], documented in docs/status.md),
    /// pretty-printed, with a final newline. Serialized straight from borrowed views of the
    /// report: at thousands of NICs a `serde_json::Value` tree would cost tens of milliseconds.
    pub fn to_json(&self) -> String {
        let counts = self.counts();
        let files = self.file_counts();
        let doc = Doc {
            version: JSON_VERSION,
            healthy: self.healthy(),
            needs_apply: self.needs_apply(),
            needs_admin: self.needs_admin(),
            counts: Counts {
                ok: counts[&State::Ok],
                missing: counts[&State::Missing],
                drift: counts[&State::Drift],
                kept_off: counts[&State::KeptOff],
                ignored: counts[&State::Ignored],
                invalid: counts[&State::Invalid],
                stale: counts[&State::Stale],
            },
            file_counts: FileCounts {
                in_sync: files[&FileState::InSync],
                out_of_sync: files[&FileState::OutOfSync],
                refused: files[&FileState::Refused],
            },
            nics: self
                .nics
                .iter()
                .map(|n| NicView {
                    name: &n.name,
                    guest: n.guest.map(GuestView::of),
                    decision: n.decision,
                    desired: n.desired.as_ref().map(|p| PlaceView {
                        bridge: &p.bridge,
                        vlan: VlanView::of(&p.vlan),
                    }),
                    actual: n.actual.as_ref().map(ActualView::of),
                    state: n.state.as_str(),
                    reason: n.reason.as_deref(),
                    pending: n.pending.as_ref().map(|p| PendingView {
                        value: &p.value,
                        following: p.following,
                    }),
                })
                .collect(),
            stale: self
                .stale
                .iter()
                .map(|s| StaleView {
                    name: &s.name,
                    guest: s.guest.map(GuestView::of),
                    actual: ActualView::of(&s.actual),
                    state: State::Stale.as_str(),
                    reason: &s.reason,
                })
                .collect(),
            files: self
                .files
                .iter()
                .map(|f| FileView {
                    role: &f.role,
                    path: &f.path,
                    state: f.state.as_str(),
                    reason: f.reason.as_deref(),
                    source_line: f.source_line.as_deref(),
                })
                .collect(),
            mirrors: self
                .mirrors
                .iter()
                .map(|m| MirrorView {
                    rule: &m.rule,
                    state: m.state.as_str(),
                    reason: m.reason.as_deref(),
                })
                .collect(),
            other: &self.other,
        };
        // Serializing plain structs of strings, numbers and options cannot fail.
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The human output: an aligned table of the NICs and stale ports sorted by guest, the host
    /// files (and mirror rules, if any), then one summary line.
    pub fn to_text(&self) -> String {
        let mut out = self.nic_table();
        self.push_rest(&mut out);
        out
    }

    /// The first part of [`Report::to_text`], the NIC table: it does not depend on the host
    /// files, so `status` renders it while they are being checked.
    pub fn nic_table(&self) -> String {
        let mut rows: Vec<(Order<'_>, [Cow<'_, str>; 8])> = Vec::new();
        for n in &self.nics {
            rows.push((
                order(&n.name, n.guest),
                [
                    shown(&n.name),
                    guest_text(n.guest),
                    n.state.as_str().into(),
                    n.decision.into(),
                    {
                        let desired = match (&n.desired, n.decision) {
                            (Some(p), _) => place_text(&p.bridge, &p.vlan),
                            (None, "detach") => "off OVS".into(),
                            (None, _) => "-".into(),
                        };
                        match &n.pending {
                            Some(p) if p.following == "current" => {
                                format!("{desired} (pending: {})", p.value).into()
                            }
                            Some(_) => format!("{desired} (the pending value)").into(),
                            None => desired,
                        }
                    },
                    actual_text(n.actual.as_ref()),
                    owned_text(n.actual.as_ref()),
                    n.reason.as_deref().unwrap_or_default().into(),
                ],
            ));
        }
        for s in &self.stale {
            rows.push((
                order(&s.name, s.guest),
                [
                    shown(&s.name),
                    guest_text(s.guest),
                    State::Stale.as_str().into(),
                    "-".into(),
                    "-".into(),
                    actual_text(Some(&s.actual)),
                    owned_text(Some(&s.actual)),
                    s.reason.as_str().into(),
                ],
            ));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        table(
            &mut out,
            [
                "NIC", "GUEST", "STATE", "DECISION", "DESIRED", "ACTUAL", "OWNED", "REASON",
            ],
            &rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        );
        out
    }

    /// The rest of [`Report::to_text`] after [`Report::nic_table`]: host files, mirror rules,
    /// the summary line.
    pub fn push_rest(&self, out: &mut String) {
        if !self.files.is_empty() {
            let rows: Vec<[Cow<'_, str>; 4]> = self
                .files
                .iter()
                .map(|f| {
                    [
                        f.path.as_str().into(),
                        f.role.as_str().into(),
                        f.state.as_str().into(),
                        f.reason.as_deref().unwrap_or_default().into(),
                    ]
                })
                .collect();
            out.push('\n');
            table(out, ["FILE", "ROLE", "STATE", "REASON"], &rows);
        }
        if !self.mirrors.is_empty() {
            let rows: Vec<[Cow<'_, str>; 3]> = self
                .mirrors
                .iter()
                .map(|m| {
                    [
                        m.rule.as_str().into(),
                        m.state.as_str().into(),
                        m.reason.as_deref().unwrap_or_default().into(),
                    ]
                })
                .collect();
            out.push('\n');
            table(out, ["MIRROR", "STATE", "REASON"], &rows);
        }
        for change in &self.other {
            let _ = writeln!(out, "\nalso planned: {change}");
        }
        out.push('\n');
        out.push_str(&self.summary());
        out.push('\n');
    }

    /// `status: 3 ok, 1 missing, ...; host files: 2 in-sync, ...; <verdict>`.
    pub fn summary(&self) -> String {
        let list = |items: Vec<(String, &str)>| {
            items
                .iter()
                .map(|(n, s)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut line = format!(
            "status: {}; host files: {}",
            list(
                self.counts()
                    .into_iter()
                    .map(|(s, n)| (n.to_string(), s.as_str()))
                    .collect()
            ),
            list(
                self.file_counts()
                    .into_iter()
                    .map(|(s, n)| (n.to_string(), s.as_str()))
                    .collect()
            ),
        );
        if !self.mirrors.is_empty() {
            let count = |s: MirrorState| self.mirrors.iter().filter(|m| m.state == s).count();
            let _ = write!(
                line,
                "; mirrors: {} active, {} pending, {} waiting, {} invalid",
                count(MirrorState::Active),
                count(MirrorState::Pending),
                count(MirrorState::Waiting),
                count(MirrorState::Invalid)
            );
        }
        if !self.other.is_empty() {
            let _ = write!(line, "; {} other planned changes", self.other.len());
        }
        line.push_str(match (self.needs_apply(), self.needs_admin()) {
            (false, false) => "; nothing to do",
            (true, false) => "; run apply",
            (false, true) => "; needs an admin (see the reasons)",
            (true, true) => "; run apply, and the rest needs an admin (see the reasons)",
        });
        line
    }
}

// The JSON document's shape (docs/status.md), field order as printed.

#[derive(Serialize)]
struct Doc<'a> {
    version: u32,
    healthy: bool,
    needs_apply: bool,
    needs_admin: bool,
    counts: Counts,
    file_counts: FileCounts,
    nics: Vec<NicView<'a>>,
    stale: Vec<StaleView<'a>>,
    files: Vec<FileView<'a>>,
    mirrors: Vec<MirrorView<'a>>,
    other: &'a [String],
}

#[derive(Serialize)]
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

#[derive(Serialize)]
struct FileCounts {
    #[serde(rename = "in-sync")]
    in_sync: usize,
    #[serde(rename = "out-of-sync")]
    out_of_sync: usize,
    refused: usize,
}

#[derive(Serialize)]
struct NicView<'a> {
    name: &'a str,
    guest: Option<GuestView>,
    decision: &'a str,
    desired: Option<PlaceView<'a>>,
    actual: Option<ActualView<'a>>,
    state: &'static str,
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<PendingView<'a>>,
}

#[derive(Serialize)]
struct PendingView<'a> {
    value: &'a str,
    following: &'static str,
}

#[derive(Serialize)]
struct StaleView<'a> {
    name: &'a str,
    guest: Option<GuestView>,
    actual: ActualView<'a>,
    state: &'static str,
    reason: &'a str,
}

#[derive(Serialize)]
struct GuestView {
    vmid: u32,
    kind: &'static str,
    net: String,
}

impl GuestView {
    fn of(nic: NicId) -> GuestView {
        GuestView {
            vmid: nic.guest.vmid,
            kind: kind_name(nic.guest.kind),
            net: nic.key(),
        }
    }
}

#[derive(Serialize)]
struct PlaceView<'a> {
    bridge: &'a str,
    vlan: VlanView<'a>,
}

#[derive(Serialize)]
struct ActualView<'a> {
    bridge: Option<&'a str>,
    vlan: VlanView<'a>,
    owned: bool,
}

impl ActualView<'_> {
    fn of(a: &Actual) -> ActualView<'_> {
        ActualView {
            bridge: a.bridge.as_deref(),
            vlan: VlanView::of(&a.vlan),
            owned: a.owned,
        }
    }
}

#[derive(Serialize)]
struct VlanView<'a> {
    tag: Option<u16>,
    trunks: &'a [u16],
    vlan_mode: Option<&'static str>,
}

impl VlanView<'_> {
    fn of(v: &Vlan) -> VlanView<'_> {
        VlanView {
            tag: v.tag,
            trunks: &v.trunks,
            vlan_mode: v.mode.map(|m| m.as_str()),
        }
    }
}

#[derive(Serialize)]
struct FileView<'a> {
    role: &'a str,
    path: &'a str,
    state: &'static str,
    reason: Option<&'a str>,
    source_line: Option<&'a str>,
}

#[derive(Serialize)]
struct MirrorView<'a> {
    rule: &'a str,
    state: &'static str,
    reason: Option<&'a str>,
}

/// The state of a decided NIC, and why. The plan's changes for it come first: they are what
/// `apply` would do, whatever the decision's kind.
fn classify(
    decision: &Decision,
    port: Option<&PortState>,
    changes: &[&Change],
) -> (State, Option<String>) {
    if let Decision::Invalid(why) = decision {
        return (State::Invalid, Some(why.clone()));
    }
    if let Some(first) = changes.first() {
        let state = match first {
            Change::Attach { .. } => State::Missing,
            _ => State::Drift,
        };
        let what: Vec<String> = changes.iter().map(|c| c.describe(false)).collect();
        return (state, Some(what.join("; ")));
    }
    match decision {
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
        Decision::Ignore(why) | Decision::Invalid(why) => (State::Ignored, Some(why.clone())),
    }
}

fn decision_name(decision: &Decision) -> &'static str {
    match decision {
        Decision::Attach(_) => "attach",
        Decision::Detach(_) => "detach",
        Decision::Ignore(_) => "ignore",
        Decision::Invalid(_) => "invalid",
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
                decision: "ignore",
                desired: None,
                actual: observed.ports.get(&l.name).map(Actual::of),
                state: State::Ignored,
                reason: Some(reason),
                pending: None,
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

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Qemu => "qemu",
        Kind::Lxc => "lxc",
    }
}

/// A name as the table shows it: escaped, since a link named like a guest NIC may hold any
/// byte the kernel accepts.
fn shown(name: &str) -> Cow<'_, str> {
    if name.bytes().all(|b| b.is_ascii_graphic()) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.escape_debug().to_string())
    }
}

fn guest_text(guest: Option<NicId>) -> Cow<'static, str> {
    match guest {
        Some(n) => format!("{} {} {}", kind_name(n.guest.kind), n.guest.vmid, n.key()).into(),
        None => "-".into(),
    }
}

fn place_text(bridge: &str, vlan: &Vlan) -> Cow<'static, str> {
    format!("{bridge} {vlan}").into()
}

fn actual_text(actual: Option<&Actual>) -> Cow<'static, str> {
    match actual {
        Some(Actual {
            bridge: Some(b),
            vlan,
            ..
        }) => place_text(b, vlan),
        Some(Actual { bridge: None, .. }) => "(row on no bridge)".into(),
        None => "-".into(),
    }
}

fn owned_text(actual: Option<&Actual>) -> Cow<'static, str> {
    match actual {
        Some(a) if a.owned => "yes".into(),
        Some(_) => "no".into(),
        None => "-".into(),
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded, no line ends in a
/// space. Written straight into `out`: at thousands of rows this is most of the report's cost.
fn table<const N: usize>(out: &mut String, head: [&str; N], rows: &[[Cow<'_, str>; N]]) {
    let width = |cell: &str| cell.chars().count();
    let mut widths = head.map(width);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut line = |cells: [&str; N]| {
        let start = out.len();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < N {
                let pad = widths[i] + 2 - width(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    line(head);
    for row in rows {
        line(std::array::from_fn(|i| row[i].as_ref()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::desired::{self, GuestFile, Guests, Master};
    use crate::decide::guest::{GuestConfig, GuestId};
    use crate::decide::plan::{self, Scope};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn link(name: &str, master: Master) -> HostLink {
        HostLink {
            name: name.into(),
            kind: Some(
                if name.starts_with("veth") {
                    "veth"
                } else {
                    "tun"
                }
                .into(),
            ),
            master,
            peer_elsewhere: name.starts_with("veth") && NicId::parse(name).is_none(),
            addressed: false,
        }
    }

    fn port(bridge: Option<&str>, vlan: Vlan, owned: bool) -> PortState {
        PortState {
            uuid: format!("u-{bridge:?}"),
            bridge: bridge.map(String::from),
            vlan,
            owned,
        }
    }

    /// A host as `apply` sees it, with the guests' configuration text.
    struct Host {
        config: Config,
        links: Vec<HostLink>,
        guests: Vec<(Kind, u32, &'static str)>,
        ports: Vec<(&'static str, PortState)>,
    }

    impl Host {
        fn new() -> Host {
            Host {
                config: Config {
                    exclude: vec!["tap9*".into()],
                    ..Config::default()
                },
                links: Vec::new(),
                guests: Vec::new(),
                ports: Vec::new(),
            }
        }

        /// `desired::build` and `plan::build` exactly as `apply` calls them, then the report.
        fn report(&self) -> (Report, Plan) {
            let observed = Observed {
                bridges: [("ovsbr0", "b0"), ("vmbr1", "b1")]
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .into(),
                ports: self
                    .ports
                    .iter()
                    .map(|(n, s)| (n.to_string(), s.clone()))
                    .collect(),
                ..Observed::default()
            };
            let guests = Guests {
                proxmox: true,
                files: self
                    .guests
                    .iter()
                    .map(|(kind, vmid, text)| {
                        (
                            GuestId {
                                kind: *kind,
                                vmid: *vmid,
                            },
                            GuestFile::Parsed(GuestConfig::parse(*kind, text)),
                        )
                    })
                    .collect(),
            };
            let seen = desired::Seen {
                observed: &observed,
                record: &desired::Record::new(),
                busy: &BTreeSet::new(),
            };
            let desired = desired::build(&self.config, &self.links, &guests, seen);
            let live: BTreeSet<String> = self.links.iter().map(|l| l.name.clone()).collect();
            let plan = plan::build(
                &self.config,
                &desired,
                &observed,
                Scope::Full { live: &live },
            );
            let report =
                Report::build(&self.config, &self.links, &desired, &observed, &plan, &live);
            (report, plan)
        }
    }

    fn nic<'a>(r: &'a Report, name: &str) -> &'a Nic {
        r.nics
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("{name} not in {r:#?}"))
    }

    const TAG10: &str = "net0: virtio,bridge=vmbr1,tag=10\n";

    #[test]
    fn each_state_from_apply_s_own_decisions() {
        let mut h = Host::new();
        let tag10 = Vlan::proxmox(Some(10), vec![]);
        h.guests = vec![
            (Kind::Qemu, 100, TAG10),
            (Kind::Qemu, 101, TAG10),
            (Kind::Qemu, 102, TAG10),
            (Kind::Lxc, 200, "net0: name=eth0,bridge=vmbr1,link_down=1\n"),
            (Kind::Lxc, 201, "net0: name=eth0,bridge=vmbr1,link_down=1\n"),
            (Kind::Lxc, 202, "net0: name=eth0,bridge=vmbr0\n"),
            (Kind::Qemu, 300, "net0: virtio,bridge=vmbr1,tag=4095\n"),
        ];
        h.links = [
            "tap100i0",
            "tap101i0",
            "tap102i0",
            "veth200i0",
            "veth201i0",
            "veth202i0",
            "tap300i0",
            "tap400i0",
            "tap900i0",
            "vethRaw",
        ]
        .map(|n| link(n, Master::None))
        .into();
        h.links
            .push(link("tap500i0", Master::Other("vmbr0".into())));
        h.ports = vec![
            ("tap100i0", port(Some("vmbr1"), tag10.clone(), true)),
            ("tap102i0", port(Some("vmbr1"), Vlan::default(), false)),
            ("veth200i0", port(Some("vmbr1"), Vlan::default(), true)),
            ("veth201i0", port(Some("vmbr1"), Vlan::default(), false)),
            ("vethRaw", port(Some("ovsbr0"), Vlan::default(), true)),
            ("tap600i0", port(Some("ovsbr0"), Vlan::default(), false)),
            ("vethGone", port(Some("ovsbr0"), Vlan::default(), true)),
            ("vethForeign", port(Some("ovsbr0"), Vlan::default(), false)),
        ];
        let (r, plan) = h.report();
        let want = [
            ("tap100i0", State::Ok),
            ("tap101i0", State::Missing),
            ("tap102i0", State::Drift),
            ("veth200i0", State::Drift),
            ("veth201i0", State::Ignored),
            ("veth202i0", State::KeptOff),
            ("tap300i0", State::Invalid),
            ("tap400i0", State::Ignored),
            ("tap500i0", State::Ignored),
            ("tap900i0", State::Ignored),
            ("vethRaw", State::Ok),
        ];
        for (name, state) in want {
            assert_eq!(nic(&r, name).state, state, "{name}: {:?}", nic(&r, name));
        }
        assert_eq!(r.nics.len(), want.len());
        assert_eq!(
            nic(&r, "tap101i0").reason.as_deref(),
            Some("attach tap101i0 to vmbr1 tag=10")
        );
        assert_eq!(
            nic(&r, "tap102i0").reason.as_deref(),
            Some("update tap102i0 on vmbr1: untagged -> tag=10")
        );
        assert!(
            nic(&r, "veth200i0")
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("prune veth200i0 from vmbr1 (net0 has link_down=1)"))
        );
        assert!(
            nic(&r, "veth201i0")
                .reason
                .as_deref()
                .unwrap()
                .contains("no ownership mark")
        );
        assert!(
            nic(&r, "tap300i0")
                .reason
                .as_deref()
                .unwrap()
                .contains("4095")
        );
        assert_eq!(
            nic(&r, "tap900i0").reason.as_deref(),
            Some("matches the exclude pattern tap9*")
        );
        assert_eq!(
            nic(&r, "tap500i0").reason.as_deref(),
            Some("enslaved to vmbr0")
        );
        // Stale: exactly the prunes of gone links, owned or Proxmox-named; a foreign port stays.
        let stale: Vec<&str> = r.stale.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(stale, ["tap600i0", "vethGone"]);
        assert!(!r.stale[0].actual.owned);
        assert!(r.other.is_empty());
        // Every change of the plan is accounted for.
        let accounted = r.nics.iter().filter(|n| n.state.needs_apply()).count() + r.stale.len();
        assert_eq!(accounted, plan.changes.len());
        assert!(r.needs_apply() && r.needs_admin() && !r.healthy());
    }

    #[test]
    fn a_converged_host_is_healthy() {
        let mut h = Host::new();
        h.guests = vec![(Kind::Qemu, 100, TAG10)];
        h.links = vec![link("tap100i0", Master::None)];
        h.ports = vec![(
            "tap100i0",
            port(Some("vmbr1"), Vlan::proxmox(Some(10), vec![]), false),
        )];
        let (r, plan) = h.report();
        assert!(plan.is_empty());
        assert!(r.healthy(), "{r:#?}");
        assert_eq!(
            r.summary(),
            "status: 1 ok, 0 missing, 0 drift, 0 kept-off, 0 ignored, 0 invalid, 0 stale; host files: 0 in-sync, 0 out-of-sync, 0 refused; nothing to do"
        );
    }

    fn check(action: FileAction, in_sync: Result<bool, String>) -> FileCheck {
        FileCheck {
            role: "stanzas".into(),
            path: "/etc/network/interfaces.d/ovs-autoattach".into(),
            action,
            in_sync,
            refused: Vec::new(),
            notes: Vec::new(),
            error: None,
            source_line: None,
        }
    }

    #[test]
    fn file_states() {
        let f = File::of(check(FileAction::Write, Ok(true)));
        assert_eq!((f.state, f.reason), (FileState::InSync, None));
        let mut c = check(FileAction::Write, Ok(false));
        c.notes = vec!["moving the stanzas of tap100i0 to /x".into()];
        let f = File::of(c);
        assert_eq!(f.state, FileState::OutOfSync);
        assert_eq!(
            f.reason.as_deref(),
            Some("moving the stanzas of tap100i0 to /x; apply rewrites it")
        );
        let f = File::of(check(FileAction::Remove, Ok(false)));
        assert_eq!(f.reason.as_deref(), Some("apply removes it"));
        let mut c = check(FileAction::Keep, Ok(true));
        c.refused = vec!["ifupdown2 does not read /x".into()];
        c.source_line = Some("source /etc/network/interfaces.d/*".into());
        let f = File::of(c);
        assert_eq!(f.state, FileState::Refused);
        assert_eq!(
            f.source_line.as_deref(),
            Some("source /etc/network/interfaces.d/*")
        );
        let mut c = check(FileAction::Keep, Ok(true));
        c.error = Some("/x is not valid UTF-8".into());
        assert_eq!(File::of(c).state, FileState::Refused);
        assert_eq!(
            File::of(check(FileAction::Write, Err("denied".into()))).state,
            FileState::Refused
        );
        // Files alone decide the verdict too.
        let r = Report {
            files: vec![File::of(check(FileAction::Write, Ok(false)))],
            ..Report::default()
        };
        assert!(r.needs_apply() && !r.healthy());
    }

    #[test]
    fn json_document() {
        let mut h = Host::new();
        h.guests = vec![(
            Kind::Lxc,
            200,
            "net0: name=eth0,bridge=vmbr1,tag=10,trunks=20;30\n",
        )];
        h.links = vec![
            link("veth200i0", Master::None),
            link("vethRaw", Master::None),
        ];
        h.ports = vec![("vethRaw", port(Some("ovsbr0"), Vlan::default(), true))];
        let (r, _) = h.report();
        let text = r.to_json();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["healthy"], false);
        let nics = doc["nics"].as_array().unwrap();
        assert_eq!(nics.len(), 2);
        let v = &nics[0];
        assert_eq!(v["name"], "veth200i0");
        assert_eq!(v["state"], "missing");
        assert_eq!(v["decision"], "attach");
        assert_eq!(
            v["guest"],
            json!({"vmid": 200, "kind": "lxc", "net": "net0"})
        );
        assert_eq!(
            v["desired"],
            json!({"bridge": "vmbr1", "vlan": {"tag": 10, "trunks": [20, 30], "vlan_mode": "native-untagged"}})
        );
        assert_eq!(v["actual"], Value::Null);
        let raw = &nics[1];
        assert_eq!(raw["guest"], Value::Null);
        assert_eq!(raw["state"], "ok");
        assert_eq!(raw["reason"], Value::Null);
        assert_eq!(raw["actual"]["owned"], true);
        assert_eq!(raw["actual"]["vlan"]["trunks"], json!([]));
        for key in ["stale", "files", "mirrors", "other"] {
            assert_eq!(doc[key], json!([]), "{key}");
        }
        assert_eq!(doc["counts"]["missing"], 1);
        assert_eq!(doc["counts"]["kept-off"], 0);
    }

    #[test]
    fn text_table_sorted_by_guest_and_aligned() {
        let mut h = Host::new();
        h.guests = vec![
            (
                Kind::Qemu,
                100,
                "net0: virtio,bridge=vmbr1\nnet1: virtio,bridge=vmbr1,tag=5\n",
            ),
            (Kind::Lxc, 100, "net0: name=eth0,bridge=vmbr1\n"),
            (Kind::Qemu, 20000, TAG10),
        ];
        h.links = ["vethAAA", "tap20000i0", "tap100i1", "veth100i0", "tap100i0"]
            .map(|n| link(n, Master::None))
            .into();
        h.ports = vec![("tap555i0", port(Some("ovsbr0"), Vlan::default(), false))];
        let (r, _) = h.report();
        let text = r.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NIC "), "{text}");
        let names: Vec<&str> = lines[1..7]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "tap100i0",
                "tap100i1",
                "veth100i0",
                "tap555i0",
                "tap20000i0",
                "vethAAA"
            ],
            "{text}"
        );
        // Every row's STATE column starts where the header's does.
        let col = lines[0].find("STATE").unwrap();
        for l in &lines[1..7] {
            assert!(
                l[col..].starts_with("missing") || l[col..].starts_with("stale"),
                "{l}"
            );
        }
        assert!(
            lines[4].contains("stale") && lines[4].contains("prune tap555i0"),
            "{text}"
        );
        assert!(lines[1].contains("qemu 100 net0") && lines[3].contains("lxc 100 net0"));
        assert_eq!(
            *lines.last().unwrap(),
            "status: 0 ok, 5 missing, 0 drift, 0 kept-off, 0 ignored, 0 invalid, 1 stale; host files: 0 in-sync, 0 out-of-sync, 0 refused; run apply"
        );
    }

    #[test]
    fn odd_names_are_escaped_in_the_table() {
        let mut h = Host::new();
        h.links = vec![link("tap$(id)\u{1b}", Master::None)];
        let (r, _) = h.report();
        assert_eq!(r.nics[0].state, State::Ignored);
        assert!(r.to_text().contains("tap$(id)\\u{1b}"), "{}", r.to_text());
    }

    proptest! {
        /// Whatever OVS holds, the report is healthy exactly when the plan is empty (no
        /// invalid NIC here, no files): `status` and `apply` never disagree.
        #[test]
        fn healthy_exactly_when_the_plan_is_empty(
            held in proptest::collection::vec(
                (0usize..6, proptest::option::of(0usize..3), 0u16..3, any::<bool>()),
                0..6,
            ),
            gone in proptest::collection::vec(any::<bool>(), 6),
        ) {
            let names = ["tap100i0", "tap101i0", "veth200i0", "vethRaw", "tap300i0", "vethX"];
            let mut h = Host::new();
            h.guests = vec![
                (Kind::Qemu, 100, TAG10),
                (Kind::Qemu, 101, "net0: virtio,bridge=vmbr0\n"),
                (Kind::Lxc, 200, "net0: name=eth0,bridge=vmbr1,link_down=1\n"),
            ];
            h.links = names
                .iter()
                .zip(&gone)
                .filter(|(_, g)| !**g)
                .map(|(n, _)| link(n, Master::None))
                .collect();
            let bridges = ["ovsbr0", "vmbr1", "vmbr9"];
            h.ports = held
                .iter()
                .map(|(n, b, tag, owned)| {
                    let vlan = Vlan::proxmox((*tag > 0).then_some(*tag * 5), vec![]);
                    (names[*n], port(b.map(|b| bridges[b]), vlan, *owned))
                })
                .collect();
            let (r, plan) = h.report();
            prop_assert_eq!(r.healthy(), plan.is_empty(), "{:#?}\n{:#?}", r, plan);
            prop_assert!(r.other.is_empty());
        }
    }
}
