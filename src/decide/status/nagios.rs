//! `status --format nagios`: the report as one line of a monitoring plugin (Nagios, Icinga,
//! Naemon, Checkmk), `OVS-AUTOATTACH STATE - summary | perfdata`, and the plugin's exit code, as
//! the Monitoring Plugins Development Guidelines define them:
//!
//! | state | exit | when |
//! | --- | --- | --- |
//! | OK | 0 | nothing needs `apply` or an admin (`status` exits 0) |
//! | WARNING | 1 | drift `apply` fixes by itself: a NIC missing or drifting, a stale port, a host file out of sync, a mirror pending, another planned change |
//! | CRITICAL | 2 | something needs an admin: an invalid guest configuration, a refused host file, an invalid mirror rule; or the tool's own configuration does not load |
//! | UNKNOWN | 3 | the host could not be observed (OVSDB unreachable, not root, not on the host) |

use std::fmt::Write as _;

use super::{FileState, Report, RunStats, State};
use crate::decide::mirrors::RuleState;

/// A plugin state, with its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Critical => "CRITICAL",
            Verdict::Unknown => "UNKNOWN",
        }
    }

    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

/// How many names the summary lists before `+N more`.
const NAMES: usize = 5;

/// The plugin line (with its final newline) and verdict for an observed host.
pub(crate) fn render(report: &Report, stats: &RunStats) -> (String, Verdict) {
    let verdict = match (report.needs_admin(), report.needs_apply()) {
        (true, _) => Verdict::Critical,
        (false, true) => Verdict::Warning,
        (false, false) => Verdict::Ok,
    };
    let summary = if verdict == Verdict::Ok {
        let counts = report.counts();
        format!(
            "{} guest NICs ok, {} host files in sync, nothing to do",
            counts.ok,
            report.file_counts().in_sync
        )
    } else {
        problems(report)
    };
    (line(verdict, &summary, &perfdata(report, stats)), verdict)
}

/// The plugin line and verdict when `status` could not run: CRITICAL when the tool's
/// configuration does not load (`config_error`), UNKNOWN otherwise.
pub(crate) fn failed(message: &str, config_error: bool) -> (String, Verdict) {
    let verdict = if config_error {
        Verdict::Critical
    } else {
        Verdict::Unknown
    };
    (line(verdict, message, ""), verdict)
}

/// `OVS-AUTOATTACH STATE - summary[ | perfdata]`, on one line: the summary's `|` (the perfdata
/// separator) and line breaks are replaced.
fn line(verdict: Verdict, summary: &str, perfdata: &str) -> String {
    let summary: String = summary
        .chars()
        .map(|c| match c {
            '|' => '/',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    let mut out = format!("OVS-AUTOATTACH {} - {summary}", verdict.as_str());
    if !perfdata.is_empty() {
        let _ = write!(out, " | {perfdata}");
    }
    out.push('\n');
    out
}

/// What is wrong, counted, and the first names: `1 missing, 1 invalid, 1 host file out of sync:
/// run apply and see an admin (tap100i0 missing, tap101i0 invalid, ...)`.
fn problems(report: &Report) -> String {
    let mut parts = Vec::new();
    for (n, state) in report.counts().listed() {
        if n > 0 && !matches!(state, State::Ok | State::KeptOff | State::Ignored) {
            parts.push(format!("{n} {}", state.as_str()));
        }
    }
    let files = report.file_counts();
    for (n, what) in [
        (files.out_of_sync, "out of sync"),
        (files.refused, "refused"),
    ] {
        if n > 0 {
            parts.push(format!(
                "{n} host file{} {what}",
                if n == 1 { "" } else { "s" }
            ));
        }
    }
    for state in [RuleState::Pending, RuleState::Invalid] {
        let n = report.mirrors.iter().filter(|m| m.state == state).count();
        if n > 0 {
            parts.push(format!(
                "{n} mirror rule{} {}",
                if n == 1 { "" } else { "s" },
                state.as_str()
            ));
        }
    }
    if !report.other.is_empty() {
        parts.push(format!("{} other planned changes", report.other.len()));
    }
    let todo = match (report.needs_apply(), report.needs_admin()) {
        (true, true) => "run apply, and the rest needs an admin",
        (true, false) => "run apply",
        _ => "needs an admin",
    };
    let names = names(report);
    let mut out = format!("{}: {todo}", parts.join(", "));
    if !names.is_empty() {
        let more = names.len().saturating_sub(NAMES);
        let mut shown: Vec<String> = names.into_iter().take(NAMES).collect();
        if more > 0 {
            shown.push(format!("+{more} more"));
        }
        let _ = write!(out, " ({})", shown.join(", "));
    }
    out
}

/// Every NIC, stale port, host file and mirror rule that is not as it should be, with its state.
fn names(report: &Report) -> Vec<String> {
    let nics = report
        .nics
        .iter()
        .filter(|n| n.state.needs_apply() || n.state == State::Invalid)
        .map(|n| format!("{} {}", n.name.escape_debug(), n.state.as_str()));
    let stale = report
        .stale
        .iter()
        .map(|s| format!("{} {}", s.name.escape_debug(), State::Stale.as_str()));
    let files = report
        .files
        .iter()
        .filter(|f| f.state != FileState::InSync)
        .map(|f| format!("{} {}", f.path, f.state.as_str()));
    let mirrors = report
        .mirrors
        .iter()
        .filter(|m| matches!(m.state, RuleState::Pending | RuleState::Invalid))
        .map(|m| format!("mirror {} {}", m.rule, m.state.as_str()));
    nics.chain(stale).chain(files).chain(mirrors).collect()
}

/// `label=value[UOM];warn;crit;min;max` for every count, the failed runs (a counter, `c`) and the
/// age of the last successful apply (seconds, absent when none since boot).
fn perfdata(report: &Report, stats: &RunStats) -> String {
    let mut items: Vec<String> = report
        .counts()
        .listed()
        .iter()
        .map(|(n, s)| format!("{}={n};;;0", s.as_str().replace('-', "_")))
        .collect();
    let files = report.file_counts();
    items.push(format!("files_out_of_sync={};;;0", files.out_of_sync));
    items.push(format!("files_refused={};;;0", files.refused));
    for state in [RuleState::Pending, RuleState::Invalid] {
        let n = report.mirrors.iter().filter(|m| m.state == state).count();
        items.push(format!("mirrors_{}={n};;;0", state.as_str()));
    }
    items.push(format!("failed_runs={}c;;;0", stats.failures));
    if let Some(age) = stats.last_apply_age() {
        items.push(format!("last_apply_age={age}s;;;0"));
    }
    items.push(format!("duration={:.3}s;;;0", stats.took));
    items.join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::sample;
    use super::*;

    #[test]
    fn converged_host_is_ok() {
        let report = Report::default();
        let (text, verdict) = render(&report, &RunStats::default());
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(verdict.code(), 0);
        assert_eq!(
            text,
            "OVS-AUTOATTACH OK - 0 guest NICs ok, 0 host files in sync, nothing to do | ok=0;;;0 missing=0;;;0 drift=0;;;0 kept_off=0;;;0 ignored=0;;;0 invalid=0;;;0 stale=0;;;0 files_out_of_sync=0;;;0 files_refused=0;;;0 mirrors_pending=0;;;0 mirrors_invalid=0;;;0 failed_runs=0c;;;0 duration=0.000s;;;0\n"
        );
    }

    #[test]
    fn drift_is_warning_and_an_admin_matter_critical() {
        let mut report = sample();
        let (text, verdict) = render(&report, &RunStats::default());
        assert_eq!(verdict, Verdict::Critical, "{text}");
        assert!(
            text.starts_with("OVS-AUTOATTACH CRITICAL - 1 missing, 1 drift, 1 invalid, 1 host file out of sync: run apply, and the rest needs an admin (tap101i0 missing, tap102i0 drift, tap103i0 invalid, /etc/x out-of-sync) | ok=2;;;0 missing=1;;;0"),
            "{text}"
        );
        assert_eq!(text.matches('|').count(), 1, "{text}");
        assert_eq!(text.lines().count(), 1);
        report.nics.retain(|n| n.state != State::Invalid);
        let stats = RunStats {
            last_apply: Some(super::super::runs::LastApply { at: 100, took: 0.1 }),
            failures: 2,
            now: 160,
            took: 0.0,
        };
        let (text, verdict) = render(&report, &stats);
        assert_eq!(verdict, Verdict::Warning, "{text}");
        assert!(text.contains(": run apply ("), "{text}");
        assert!(
            text.contains(" failed_runs=2c;;;0 last_apply_age=60s;;;0 "),
            "{text}"
        );
    }

    #[test]
    fn failures_are_unknown_or_critical_and_one_line() {
        let (text, verdict) = failed("connecting to OVSDB | unix:/x: refused\nsecond", false);
        assert_eq!(verdict.code(), 3);
        assert_eq!(
            text,
            "OVS-AUTOATTACH UNKNOWN - connecting to OVSDB / unix:/x: refused second\n"
        );
        let (text, verdict) = failed("config.yaml: bad", true);
        assert_eq!(verdict.code(), 2);
        assert!(text.starts_with("OVS-AUTOATTACH CRITICAL - "), "{text}");
    }

    #[test]
    fn many_names_are_cut() {
        let mut report = sample();
        let extra = report.nics[2].clone();
        for i in 0..10 {
            let mut n = extra.clone();
            n.name = format!("tap2{i}0i0");
            report.nics.push(n);
        }
        let (text, _) = render(&report, &RunStats::default());
        assert!(text.contains(", +9 more)"), "{text}");
    }
}
