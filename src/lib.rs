//! ovs-autoattach: keeps Proxmox VE guest NICs on their Open vSwitch bridges.
//!
//! The pure core decides: [`guest`] parses guest configurations, [`desired`] builds the desired
//! state, [`plan`] compares it with what OVS holds, [`nmstate`] and [`interfaces`] render the host
//! files. The shell acts: [`links`] (rtnetlink), [`vswitch`] over [`ovsdb`] (OVSDB), [`files`],
//! [`hostfiles`] and [`lock`]. [`engine`] strings them together per command.

pub mod cli;
pub mod config;
pub mod desired;
pub mod engine;
pub mod files;
pub mod glob;
pub mod guest;
pub mod hostfiles;
pub mod ifname;
pub mod interfaces;
pub mod links;
pub mod lock;
pub mod nmstate;
pub mod observed;
pub mod ovsdb;
pub mod plan;
pub mod pve;
pub mod vlan;
pub mod vswitch;

use cli::Command;
use config::{Config, UsageError};

/// Runs a parsed command line. `Ok(false)` is a runtime failure already logged (exit 1); an
/// error carrying [`UsageError`] means nothing was touched (exit 2).
pub fn run(cli: &cli::Cli) -> anyhow::Result<bool> {
    let config = Config::load(cli.config.as_deref())?;
    match &cli.command {
        Command::Apply { dry_run } => engine::apply(&config, *dry_run),
        Command::Plug { iface } => {
            let iface = ifname::validate_os(iface).map_err(|e| UsageError(format!("plug: {e}")))?;
            engine::plug(&config, iface)
        }
        Command::Clear => engine::clear(&config),
    }
}
