//! ovs-autoattach: keeps Proxmox VE guest NICs on their Open vSwitch bridges.
//!
//! Three layers, each in its own directory:
//! - [`decide`]: the pure core. Guest configurations, the desired state, the plan, the host-file
//!   renderers. Plain data in, plain data out; unit-tested without root.
//! - [`host`]: the adapters. rtnetlink, OVSDB, guest configuration files, atomic file writes,
//!   locks. They observe and act, and decide nothing.
//! - [`commands`]: one module per command, each reading top to bottom: observe, decide, act,
//!   report.
//!
//! [`cli`] (the command line) and [`error`] (the exit-2 error) serve all three.

pub mod cli;
pub(crate) mod commands;
pub mod decide;
pub mod error;
pub mod host;

use cli::{Command, StatusFormat};
use error::UsageError;

/// Runs a parsed command line. `Ok(false)` is a runtime failure already logged, or what
/// `status` and `validate` found, already reported (exit 1); an error carrying [`UsageError`]
/// means nothing was touched (exit 2).
pub fn run(cli: &cli::Cli) -> anyhow::Result<bool> {
    let path = cli.config.as_deref();
    let load =
        || host::config::load(path).map_err(|e| commands::status_config_failed(&cli.command, e));
    match &cli.command {
        // `validate` loads the configuration itself: a bad one is a finding it reports at its
        // line.
        Command::Validate => commands::validate(path),
        Command::PublishSummary { path } => commands::publish_summary(path),
        Command::Status {
            json,
            format,
            output,
            cluster,
        } => commands::status(
            &load()?,
            &commands::StatusRequest {
                format: if *json { StatusFormat::Json } else { *format },
                output: output.clone(),
                cluster: *cluster,
            },
        ),
        Command::Apply { dry_run: true } => commands::apply(&load()?, true),
        Command::Apply { dry_run: false } => {
            let config = load()?;
            let result = counted(&config, commands::apply(&config, false));
            // This node's summary for `status --cluster`, once apply has released its lock.
            commands::refresh_cluster_summary(&config);
            result
        }
        Command::Plug { iface, lock_held } => {
            let iface =
                decide::ifname::validate_os(iface).map_err(|e| UsageError(format!("plug: {e}")))?;
            let config = load()?;
            counted(&config, commands::plug(&config, iface, *lock_held))
        }
        Command::Clear { keep_ports } => {
            let config = load()?;
            counted(&config, commands::clear(&config, *keep_ports))
        }
    }
}

/// The result of a run that changes the host; a failed one is counted in the run directory,
/// for monitoring (`status`).
fn counted(config: &decide::config::Config, result: anyhow::Result<bool>) -> anyhow::Result<bool> {
    if !matches!(result, Ok(true)) {
        host::runstate::record_failure(&config.run_dir);
    }
    result
}
