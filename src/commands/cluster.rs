//! The cluster view: this node's summary written to the cluster file system after `apply` and
//! `status`, and `status --cluster`, which reports every node's summary.

use std::path::Path;

use anyhow::Context as _;
use std::time::Instant;

use super::Success;
use crate::cli::StatusFormat;
use crate::decide::config::{ClusterSummary, Config};
use crate::decide::status::cluster;
use crate::decide::status::{Report, RunStats};
use crate::error::{Finished, UsageError};
use crate::host::{pmxcfs, runstate};

/// Whether this node keeps a summary: `cluster_summary` says so, and for `auto`
/// `pve_config_dir` is the mounted pmxcfs.
fn enabled(config: &Config) -> bool {
    match config.cluster_summary {
        ClusterSummary::Off => false,
        ClusterSummary::Always => true,
        ClusterSummary::Auto => pmxcfs::is_pmxcfs(&config.pve_config_dir),
    }
}

/// Writes this node's summary of `report`, if enabled and changed; never fails.
pub(super) fn publish(config: &Config, report: &Report, stats: &RunStats) {
    if !enabled(config) {
        return;
    }
    let Some(node) = pmxcfs::node_name() else {
        log::debug!("no usable host name; cluster summary not written");
        return;
    };
    pmxcfs::publish(&config.pve_config_dir, report.node_summary(&node, stats));
}

/// After `apply`: the host observed again as `status` sees it, and its summary written. Nothing
/// is done unless the summary is enabled; a failure is logged at debug level only.
pub fn refresh(config: &Config) {
    if !enabled(config) {
        return;
    }
    let started = Instant::now();
    match super::status::observe_and_build(config, false) {
        Ok((report, _)) => publish(
            config,
            &report,
            &runstate::read(&config.run_dir, started.elapsed()),
        ),
        Err(e) => log::debug!("cluster summary not refreshed: {e:#}"),
    }
}

/// `status --cluster`: every node's summary, as a table or JSON; exit 1 when a node is stale,
/// unhealthy or unreadable.
pub(super) fn show(
    config: &Config,
    format: StatusFormat,
    output: Option<&Path>,
) -> anyhow::Result<Success> {
    let nodes = pmxcfs::read_all(&config.pve_config_dir)?;
    let now = runstate::now();
    let text = match format {
        StatusFormat::Text => cluster::table(&nodes, now),
        StatusFormat::Json => cluster::to_json(&nodes, now),
        other => {
            return Err(UsageError(format!(
                "status --cluster: --format {} is not available; use text or json",
                format!("{other:?}").to_lowercase()
            ))
            .into());
        }
    };
    super::status::emit(&text, output)?;
    Ok(cluster::healthy(&nodes, now))
}

/// `publish-summary PATH`, the child [`pmxcfs::publish`] starts: the summary from standard
/// input written to `path` if it replaces what is there. Its exit status says what happened.
pub fn publish_summary(path: &Path) -> anyhow::Result<Success> {
    use std::io::Read as _;
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .context("reading the summary from standard input")?;
    match pmxcfs::write_summary(path, &text) {
        0 => Ok(true),
        code => Err(Finished(code as u8).into()),
    }
}
