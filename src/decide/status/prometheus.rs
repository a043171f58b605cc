//! `status --format prometheus`: the report as Prometheus metrics in the text exposition format
//! (version 0.0.4), for node_exporter's textfile collector. Metric names follow node_exporter's
//! conventions: the `ovs_autoattach_` prefix, base units in the name (`_seconds`), `_total` on
//! the one counter, one `# HELP` and `# TYPE` line per family, and every state of a family
//! always listed (0 included), so that a state that appears never starts a new series late.
//! The metrics are documented in docs/monitoring.md.

use std::fmt::Write as _;

use super::{Report, RunStats};
use crate::decide::mirrors::RuleState;

/// Every mirror rule state, in the order the families list them.
const MIRROR_STATES: [RuleState; 4] = [
    RuleState::Active,
    RuleState::Pending,
    RuleState::Waiting,
    RuleState::Invalid,
];

/// One metric family under construction.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP ovs_autoattach_{name} {help}");
        let _ = writeln!(self.0, "# TYPE ovs_autoattach_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "ovs_autoattach_{name}{labels} {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, "", value);
    }
}

/// The exposition: the host's state from `report`, or `ovs_autoattach_up 0` alone when the
/// host could not be observed (`None`), followed in both cases by the runs since boot.
pub(crate) fn render(report: Option<&Report>, stats: &RunStats) -> String {
    let mut out = Exposition(String::new());
    out.gauge(
        "up",
        "Whether status could observe the host (1) or not (0: OVSDB unreachable, not root, ...).",
        u8::from(report.is_some()),
    );
    if let Some(report) = report {
        host_state(&mut out, report);
    }
    if let Some(last) = stats.last_apply {
        out.gauge(
            "last_apply_timestamp_seconds",
            "When the last successful apply since boot ended, in Unix seconds (absent: none since boot).",
            last.at,
        );
        out.gauge(
            "last_apply_duration_seconds",
            "How long the last successful apply since boot took.",
            format_args!("{:.3}", last.took),
        );
    }
    out.family(
        "failed_runs_total",
        "counter",
        "Runs of apply, plug and clear that failed since boot.",
    );
    out.sample("failed_runs_total", "", stats.failures);
    out.gauge(
        "status_duration_seconds",
        "How long this status run took to observe the host and decide.",
        format_args!("{:.3}", stats.took),
    );
    out.0
}

fn host_state(out: &mut Exposition, report: &Report) {
    out.gauge(
        "healthy",
        "1 when nothing needs apply or an admin (status exits 0), else 0.",
        u8::from(report.healthy()),
    );
    out.gauge(
        "needs_apply",
        "1 when apply has something to do (a NIC missing or drifting, a stale port, a file out of sync, a mirror pending).",
        u8::from(report.needs_apply()),
    );
    out.gauge(
        "needs_admin",
        "1 when something needs an admin (an invalid guest configuration, a refused host file, an invalid mirror rule).",
        u8::from(report.needs_admin()),
    );
    out.family(
        "nics",
        "gauge",
        "Guest NICs by state (stale: ports of ours whose link is gone).",
    );
    for (n, state) in report.counts().listed() {
        out.sample("nics", &format!("{{state=\"{}\"}}", state.as_str()), n);
    }
    out.family("host_files", "gauge", "Host files by state.");
    for (n, state) in report.file_counts().listed() {
        out.sample(
            "host_files",
            &format!("{{state=\"{}\"}}", state.as_str()),
            n,
        );
    }
    out.family(
        "mirror_rules",
        "gauge",
        "Traffic mirror rules of the rules file by state.",
    );
    for state in MIRROR_STATES {
        let n = report.mirrors.iter().filter(|m| m.state == state).count();
        out.sample(
            "mirror_rules",
            &format!("{{state=\"{}\"}}", state.as_str()),
            n,
        );
    }
    out.gauge(
        "other_changes",
        "Changes apply would make that belong to no NIC and no rule.",
        report.other.len(),
    );
}

#[cfg(test)]
mod tests {
    use super::super::runs::LastApply;
    use super::super::tests_support::sample;
    use super::*;

    /// A strict reading of the text format: every line a `# HELP`, a `# TYPE` or a sample;
    /// each family's HELP, then TYPE, then its samples, never interleaved with another family;
    /// names and label names valid, label values quoted, values numbers; no family twice.
    pub(crate) fn parse(text: &str) -> Vec<(String, String, f64)> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        assert!(text.ends_with('\n'), "{text}");
        let mut samples = Vec::new();
        let mut families: Vec<(String, String)> = Vec::new();
        let mut expect: Option<&str> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect(line);
                assert!(name_ok(name) && !help.is_empty(), "{line}");
                assert!(families.iter().all(|(f, _)| f != name), "{name} twice");
                families.push((name.to_string(), String::new()));
                expect = Some("TYPE");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert_eq!(expect, Some("TYPE"), "{line}");
                let (name, kind) = rest.split_once(' ').expect(line);
                let last = families.last_mut().expect(line);
                assert_eq!(last.0, name, "{line}");
                assert!(["gauge", "counter"].contains(&kind), "{line}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{line}");
                }
                last.1 = kind.to_string();
                expect = Some("sample");
                continue;
            }
            assert_eq!(expect, Some("sample"), "sample before its TYPE: {line}");
            assert!(!line.starts_with('#'), "{line}");
            let (series, value) = line.rsplit_once(' ').expect(line);
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').expect(line)),
                None => (series, ""),
            };
            assert_eq!(name, families.last().unwrap().0, "{line}");
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').expect(line);
                assert!(name_ok(k), "{line}");
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "{line}"
                );
                assert!(!v[1..v.len() - 1].contains(['"', '\\', '\n']), "{line}");
            }
            samples.push((name.to_string(), labels.to_string(), value));
        }
        for (name, _) in &families {
            assert!(name.starts_with("ovs_autoattach_"), "{name}");
        }
        samples
    }

    fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|s| s.2)
    }

    #[test]
    fn every_state_listed_with_its_count_and_the_runs() {
        let stats = RunStats {
            last_apply: Some(LastApply {
                at: 1_767_225_600,
                took: 0.5,
            }),
            failures: 3,
            now: 1_767_225_700,
            took: 0.0123,
        };
        let text = render(Some(&sample()), &stats);
        println!("{text}");
        let s = parse(&text);
        assert_eq!(value(&s, "ovs_autoattach_up", ""), Some(1.0));
        assert_eq!(value(&s, "ovs_autoattach_healthy", ""), Some(0.0));
        assert_eq!(value(&s, "ovs_autoattach_needs_apply", ""), Some(1.0));
        assert_eq!(value(&s, "ovs_autoattach_needs_admin", ""), Some(1.0));
        for (state, n) in [
            ("ok", 2.0),
            ("missing", 1.0),
            ("drift", 1.0),
            ("kept-off", 0.0),
            ("ignored", 0.0),
            ("invalid", 1.0),
            ("stale", 0.0),
        ] {
            let labels = format!("state=\"{state}\"");
            assert_eq!(
                value(&s, "ovs_autoattach_nics", &labels),
                Some(n),
                "{state}"
            );
        }
        assert_eq!(
            value(&s, "ovs_autoattach_host_files", "state=\"out-of-sync\""),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "ovs_autoattach_mirror_rules", "state=\"waiting\""),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "ovs_autoattach_last_apply_timestamp_seconds", ""),
            Some(1_767_225_600.0)
        );
        assert_eq!(
            value(&s, "ovs_autoattach_last_apply_duration_seconds", ""),
            Some(0.5)
        );
        assert_eq!(value(&s, "ovs_autoattach_failed_runs_total", ""), Some(3.0));
        assert_eq!(
            value(&s, "ovs_autoattach_status_duration_seconds", ""),
            Some(0.012)
        );
    }

    #[test]
    fn unobserved_host_and_no_apply_since_boot() {
        let text = render(None, &RunStats::default());
        let s = parse(&text);
        assert_eq!(value(&s, "ovs_autoattach_up", ""), Some(0.0));
        assert!(!text.contains("ovs_autoattach_nics"), "{text}");
        assert!(!text.contains("last_apply"), "{text}");
        assert_eq!(value(&s, "ovs_autoattach_failed_runs_total", ""), Some(0.0));
    }

    #[test]
    fn the_parser_is_strict() {
        for bad in [
            "ovs_autoattach_up 1\n",
            "# HELP ovs_autoattach_up x\novs_autoattach_up 1\n",
            "# HELP ovs_autoattach_up x\n# TYPE ovs_autoattach_up gauge\novs_autoattach_up one\n",
            "# HELP ovs_autoattach_x x\n# TYPE ovs_autoattach_x counter\novs_autoattach_x 1\n",
            "# HELP ovs_autoattach_x x\n# TYPE ovs_autoattach_x gauge\novs_autoattach_x{state=ok} 1\n",
            "# HELP ovs_autoattach_x x\n# TYPE ovs_autoattach_x gauge\novs_autoattach_y 1\n",
        ] {
            assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "{bad}");
        }
    }
}
