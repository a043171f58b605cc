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
//! [`config`] (the tool's own configuration) and [`cli`] (the command line) serve all three.

pub mod cli;
pub mod commands;
pub mod config;
pub mod decide;
pub mod host;

use cli::{Command, StatusFormat};
use config::{Config, UsageError};

/// Runs a parsed command line. `Ok(false)` is a runtime failure already logged, or what
/// `status` and `validate` found, already reported (exit 1); an error carrying [`UsageError`]
/// means nothing was touched (exit 2).
pub fn run(cli: &cli::Cli) -> anyhow::Result<bool> {
    // `validate` loads the configuration itself: a bad one is a finding it reports at its line.
    if let Command::Validate = cli.command {
        return commands::validate(cli.config.as_deref());
    }
    let config = Config::load(cli.config.as_deref())
        .map_err(|e| commands::status_config_failed(&cli.command, e))?;
    let result = match &cli.command {
        Command::Apply { dry_run } => commands::apply(&config, *dry_run),
        Command::Plug { iface, lock_held } => decide::ifname::validate_os(iface)
            .map_err(|e| UsageError(format!("plug: {e}")).into())
            .and_then(|iface| commands::plug(&config, iface, *lock_held)),
        Command::Clear { keep_ports } => commands::clear(&config, *keep_ports),
        Command::Status {
            json,
            format,
            output,
            cluster,
        } => commands::status(
            &config,
            &commands::StatusRequest {
                format: if *json { StatusFormat::Json } else { *format },
                output: output.clone(),
                cluster: *cluster,
            },
        ),
        Command::Validate => commands::validate(cli.config.as_deref()),
    };
    // The runs that change the host count their failures, for monitoring (`status`).
    let changes = matches!(
        cli.command,
        Command::Apply { dry_run: false } | Command::Plug { .. } | Command::Clear { .. }
    );
    if changes && !matches!(result, Ok(true)) {
        host::runstate::record_failure(&config.run_dir);
    }
    // This node's summary for `status --cluster`, once apply has released its lock.
    if matches!(cli.command, Command::Apply { dry_run: false }) {
        commands::refresh_cluster_summary(&config);
    }
    result
}

/// A command that printed its whole result and ends with this exit status (a monitoring
/// plugin's 2 or 3); `main` logs nothing more.
#[derive(Debug)]
pub struct Finished(pub u8);

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Finished {}
