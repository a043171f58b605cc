//! The cluster view: each node's summary of its report, kept by the node in the cluster file
//! system (`/etc/pve/nodes/<node>/ovs-autoattach.json`), and `status --cluster`, which reads
//! every node's summary into one table or JSON document.
//!
//! A summary is written when it says something new (any field but `written_at` changed), or
//! when the one on disk is older than [`REFRESH_SECS`], so that pmxcfs (which replicates every
//! write to every node) sees at most one write an hour from a quiet node. A summary older than
//! [`STALE_SECS`] is stale: that node has not run `apply` or `status` for a day (or cannot
//! write: no quorum), and `status --cluster` flags it and exits 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{Report, RunStats};
use crate::decide::mirrors::RuleState;

/// The version of the summary document.
const VERSION: u32 = 1;

/// A summary unchanged but older than this is written again.
pub(crate) const REFRESH_SECS: u64 = 3600;

/// A summary older than this is stale.
pub(crate) const STALE_SECS: u64 = 24 * 3600;

/// One node's summary, as written to its file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub(crate) version: u32,
    pub(crate) node: String,
    pub(crate) healthy: bool,
    pub(crate) needs_apply: bool,
    pub(crate) needs_admin: bool,
    /// Guest NICs by state, as `status --json`'s `counts`.
    pub(crate) counts: BTreeMap<String, usize>,
    /// Host files by state.
    pub(crate) file_counts: BTreeMap<String, usize>,
    /// Mirror rules by state.
    pub(crate) mirror_counts: BTreeMap<String, usize>,
    /// When the last successful `apply` since boot ended (Unix seconds).
    pub(crate) last_apply: Option<u64>,
    /// Failed runs since boot.
    pub(crate) failed_runs: u64,
    /// When this summary was written (Unix seconds).
    pub(crate) written_at: u64,
}

impl Report {
    /// This report as node `node`'s summary, written now.
    pub(crate) fn node_summary(&self, node: &str, stats: &RunStats) -> Summary {
        let states = |pairs: Vec<(usize, &'static str)>| {
            pairs
                .into_iter()
                .map(|(n, s)| (s.to_string(), n))
                .collect::<BTreeMap<_, _>>()
        };
        let mirrors = [
            RuleState::Active,
            RuleState::Pending,
            RuleState::Waiting,
            RuleState::Invalid,
        ]
        .map(|s| {
            (
                self.mirrors.iter().filter(|m| m.state == s).count(),
                s.as_str(),
            )
        });
        Summary {
            version: VERSION,
            node: node.to_string(),
            healthy: self.healthy(),
            needs_apply: self.needs_apply(),
            needs_admin: self.needs_admin(),
            counts: states(
                self.counts()
                    .listed()
                    .map(|(n, s)| (n, s.as_str()))
                    .to_vec(),
            ),
            file_counts: states(
                self.file_counts()
                    .listed()
                    .map(|(n, s)| (n, s.as_str()))
                    .to_vec(),
            ),
            mirror_counts: states(mirrors.to_vec()),
            last_apply: stats.last_apply.map(|a| a.at),
            failed_runs: stats.failures,
            written_at: stats.now,
        }
    }
}

impl Summary {
    /// The file's content: pretty JSON with a final newline.
    pub(crate) fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub(crate) fn parse(text: &str) -> Result<Summary, String> {
        let summary: Summary = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if summary.version != VERSION {
            return Err(format!(
                "summary version {} is not {VERSION}",
                summary.version
            ));
        }
        Ok(summary)
    }

    /// Whether this summary must replace `old` (the file's content, if it has any).
    pub(crate) fn replaces(&self, old: Option<&str>) -> bool {
        let Some(old) = old.and_then(|t| Summary::parse(t).ok()) else {
            return true;
        };
        let same = Summary {
            written_at: self.written_at,
            ..old.clone()
        } == *self;
        !same || self.written_at.saturating_sub(old.written_at) >= REFRESH_SECS
    }
}

/// A node directory of the cluster file system, as `status --cluster` found it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Entry {
    /// No summary: the tool does not run there (or never has).
    Missing,
    /// A summary that could not be read or parsed, with the reason.
    Unreadable(String),
    Found(Summary),
}

/// A node's verdict in the cluster view.
fn verdict(entry: &Entry, now: u64) -> &'static str {
    match entry {
        Entry::Missing => "no summary",
        Entry::Unreadable(_) => "unreadable",
        Entry::Found(s) if now.saturating_sub(s.written_at) > STALE_SECS => "stale",
        Entry::Found(s) if s.needs_admin => "needs admin",
        Entry::Found(s) if s.needs_apply => "needs apply",
        Entry::Found(_) => "ok",
    }
}

/// Whether the cluster is healthy: every summary found is fresh and healthy, and none is
/// unreadable. A node without a summary does not count (the tool need not run on every node).
pub(crate) fn healthy(nodes: &[(String, Entry)], now: u64) -> bool {
    nodes
        .iter()
        .all(|(_, e)| matches!(verdict(e, now), "ok" | "no summary"))
}

/// `12s`, `5m`, `3h`, `2d`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The cluster table: one line per node directory, sorted by node, and a summary line.
pub(crate) fn table(nodes: &[(String, Entry)], now: u64) -> String {
    let rows: Vec<[std::borrow::Cow<'_, str>; 6]> = nodes
        .iter()
        .map(|(node, entry)| {
            let (nics, files, last, written) = match entry {
                Entry::Found(s) => (
                    nonzero(&s.counts),
                    nonzero(&s.file_counts),
                    s.last_apply.map_or("-".into(), |t| {
                        format!("{} ago", age(now.saturating_sub(t)))
                    }),
                    format!("{} ago", age(now.saturating_sub(s.written_at))),
                ),
                Entry::Unreadable(why) => ("-".into(), "-".into(), "-".into(), why.clone()),
                Entry::Missing => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            [
                node.as_str().into(),
                verdict(entry, now).into(),
                nics.into(),
                files.into(),
                last.into(),
                written.into(),
            ]
        })
        .collect();
    let mut out = String::new();
    super::text::table(
        &mut out,
        [
            "NODE",
            "STATE",
            "NICS",
            "HOST FILES",
            "LAST APPLY",
            "SUMMARY WRITTEN",
        ],
        &rows,
    );
    let count = |v: &str| nodes.iter().filter(|(_, e)| verdict(e, now) == v).count();
    let _ = writeln!(
        out,
        "\ncluster: {} nodes, {} ok, {} need apply, {} need an admin, {} stale (no summary for {}h), {} unreadable, {} without a summary",
        nodes.len(),
        count("ok"),
        count("needs apply"),
        count("needs admin"),
        count("stale"),
        STALE_SECS / 3600,
        count("unreadable"),
        count("no summary"),
    );
    out
}

/// The cluster as one JSON document.
pub(crate) fn to_json(nodes: &[(String, Entry)], now: u64) -> String {
    let doc = serde_json::json!({
        "version": VERSION,
        "now": now,
        "stale_after_secs": STALE_SECS,
        "healthy": healthy(nodes, now),
        "nodes": nodes.iter().map(|(node, entry)| serde_json::json!({
            "node": node,
            "state": verdict(entry, now),
            "summary": match entry { Entry::Found(s) => serde_json::to_value(s).ok(), _ => None },
            "error": match entry { Entry::Unreadable(why) => Some(why), _ => None },
        })).collect::<Vec<_>>(),
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// `3 ok, 1 drift`: the states with a count, or `none`.
fn nonzero(counts: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Whether `/proc/self/mountinfo` text shows pmxcfs mounted at `dir`.
pub(crate) fn is_pmxcfs_mount(mountinfo: &str, dir: &str) -> bool {
    mountinfo.lines().any(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            return false;
        };
        let fstype = fields.get(dash + 1).copied().unwrap_or_default();
        fields.get(4) == Some(&dir)
            && (fstype == "fuse" || fstype.starts_with("fuse."))
            && fields.get(dash + 2) == Some(&"/dev/fuse")
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::sample;
    use super::*;

    fn stats(now: u64) -> RunStats {
        RunStats {
            now,
            ..RunStats::default()
        }
    }

    #[test]
    fn summary_round_trip_and_when_it_is_written() {
        let s = sample().node_summary("pve1", &stats(10_000));
        assert_eq!(s.counts["missing"], 1);
        assert_eq!(s.file_counts["out-of-sync"], 1);
        assert_eq!(s.mirror_counts["waiting"], 1);
        assert!(!s.healthy && s.needs_apply && s.needs_admin);
        let text = s.render();
        assert_eq!(Summary::parse(&text), Ok(s.clone()));
        assert!(s.replaces(None));
        assert!(s.replaces(Some("{ damaged")));
        // The same a minute later: not written; an hour later: written.
        let later = sample().node_summary("pve1", &stats(10_060));
        assert!(!later.replaces(Some(&text)));
        let much_later = sample().node_summary("pve1", &stats(10_000 + REFRESH_SECS));
        assert!(much_later.replaces(Some(&text)));
        // Something changed: written at once.
        let healed = Report::default().node_summary("pve1", &stats(10_060));
        assert!(healed.replaces(Some(&text)));
    }

    #[test]
    fn cluster_table_flags_stale_and_unhealthy_nodes() {
        let now = 100_000;
        let ok = Report::default().node_summary("pve1", &stats(now - 30));
        let old = Report::default().node_summary("pve2", &stats(now - STALE_SECS - 1));
        let bad = sample().node_summary("pve3", &stats(now - 10));
        let nodes = vec![
            ("pve1".to_string(), Entry::Found(ok.clone())),
            ("pve2".to_string(), Entry::Found(old)),
            ("pve3".to_string(), Entry::Found(bad)),
            ("pve4".to_string(), Entry::Missing),
        ];
        let text = table(&nodes, now);
        println!("{text}");
        let line = |n: &str| text.lines().find(|l| l.starts_with(n)).unwrap().to_string();
        assert!(line("pve1").contains(" ok "), "{text}");
        assert!(line("pve2").contains(" stale "), "{text}");
        assert!(line("pve3").contains(" needs admin "), "{text}");
        assert!(
            line("pve3").contains("1 drift, 1 invalid, 1 missing, 2 ok"),
            "{text}"
        );
        assert!(line("pve4").contains(" no summary "), "{text}");
        assert!(text.contains("cluster: 4 nodes, 1 ok, 0 need apply, 1 need an admin, 1 stale"));
        assert!(!healthy(&nodes, now));
        assert!(healthy(&nodes[..1], now));
        assert!(healthy(&[nodes[0].clone(), nodes[3].clone()], now));
        let doc: serde_json::Value = serde_json::from_str(&to_json(&nodes, now)).unwrap();
        assert_eq!(doc["healthy"], false);
        assert_eq!(doc["nodes"][1]["state"], "stale");
        assert_eq!(doc["nodes"][0]["summary"]["node"], "pve1");
        assert!(doc["nodes"][3]["summary"].is_null());
    }

    #[test]
    fn pmxcfs_in_mountinfo() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
            45 25 0:40 / /var/lib/lxcfs rw,nosuid,nodev - fuse.lxcfs lxcfs rw,user_id=0\n\
            48 25 0:42 / /etc/pve rw,nosuid,nodev,relatime shared:27 - fuse /dev/fuse rw,user_id=0,group_id=0,default_permissions,allow_other\n";
        assert!(is_pmxcfs_mount(info, "/etc/pve"));
        assert!(!is_pmxcfs_mount(info, "/etc"));
        assert!(
            !is_pmxcfs_mount(info, "/var/lib/lxcfs"),
            "FUSE, but not /dev/fuse"
        );
        assert!(is_pmxcfs_mount(
            &info.replace(" - fuse /dev/fuse", " - fuse.pve /dev/fuse"),
            "/etc/pve"
        ));
        assert!(!is_pmxcfs_mount(
            "48 25 0:42 / /etc/pve rw - ext4 /dev/sda1 rw\n",
            "/etc/pve"
        ));
    }
}
