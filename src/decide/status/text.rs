//! `status` for people: the report as aligned tables (the NICs and stale ports sorted by guest,
//! the host files, the mirror rules), the other planned changes, and one summary line.
//!
//! The rendering comes in two parts, [`Report::nic_table`] and [`Report::push_rest`], because
//! the NIC table does not depend on the host files: `status` renders it while they are being
//! checked on another thread.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::{DecisionKind, Order, PortState, Report, State, kind_name, order};
use crate::decide::desired::Chosen;
use crate::decide::guest::NicId;
use crate::decide::mirrors::RuleState;
use crate::decide::vlan::Vlan;

impl Report {
    /// The NIC table, stale ports included, sorted by guest.
    pub(crate) fn nic_table(&self) -> String {
        let mut rows: Vec<(Order<'_>, [Cow<'_, str>; 8])> = Vec::new();
        for n in &self.nics {
            rows.push((
                order(&n.name, n.guest),
                [
                    shown(&n.name),
                    match (n.guest, &n.source) {
                        // A raw NIC's GUEST column says what placed it.
                        (None, Some(source)) => source.as_str().into(),
                        _ => guest_text(n.guest),
                    },
                    n.state.as_str().into(),
                    n.decision.as_str().into(),
                    {
                        let desired = match (&n.desired, n.decision) {
                            (Some(p), _) => place_text(&p.bridge, &p.vlan),
                            (None, DecisionKind::Detach) => "off OVS".into(),
                            (None, _) => "-".into(),
                        };
                        match &n.pending {
                            Some(p) if p.following == Chosen::Current => {
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

    /// What follows [`Report::nic_table`]: the host files, the mirror rules, the other planned
    /// changes, the summary line.
    pub(crate) fn push_rest(&self, out: &mut String) {
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
    pub(super) fn summary(&self) -> String {
        let counts = self
            .counts()
            .listed()
            .map(|(n, s)| format!("{n} {}", s.as_str()));
        let files = self
            .file_counts()
            .listed()
            .map(|(n, s)| format!("{n} {}", s.as_str()));
        let mut line = format!(
            "status: {}; host files: {}",
            counts.join(", "),
            files.join(", ")
        );
        if !self.mirrors.is_empty() {
            let count = |s: RuleState| self.mirrors.iter().filter(|m| m.state == s).count();
            let _ = write!(
                line,
                "; mirrors: {} active, {} pending, {} waiting, {} invalid",
                count(RuleState::Active),
                count(RuleState::Pending),
                count(RuleState::Waiting),
                count(RuleState::Invalid)
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

fn actual_text(actual: Option<&PortState>) -> Cow<'static, str> {
    match actual {
        Some(PortState {
            bridge: Some(b),
            vlan,
            ..
        }) => place_text(b, vlan),
        Some(PortState { bridge: None, .. }) => "(row on no bridge)".into(),
        None => "-".into(),
    }
}

fn owned_text(actual: Option<&PortState>) -> Cow<'static, str> {
    match actual {
        Some(a) if a.owned => "yes".into(),
        Some(_) => "no".into(),
        None => "-".into(),
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded, no line ends in a
/// space. Written straight into `out`: at thousands of rows this is most of the report's cost.
pub(super) fn table<const N: usize>(out: &mut String, head: [&str; N], rows: &[[Cow<'_, str>; N]]) {
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
