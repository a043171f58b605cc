//! The command line. Kept apart from `main` so that the man page generator sees the same
//! definition.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Keeps Proxmox VE guest NICs on their Open vSwitch bridges with their VLAN settings
///
/// Every guest NIC (QEMU tap<vmid>i<n>, LXC veth<vmid>i<n>, raw LXC veth*) is put on the OVS
/// bridge its guest configuration names, with its tag and trunks, and listed in
/// /etc/network/interfaces.d/ovs-autoattach and /etc/nmstate/nmstate-dynamic.yaml. Hooks call it
/// (a guest hookscript, an ifupdown2 hook after every reload, a boot unit); it keeps no state of
/// its own.
#[derive(Debug, Parser)]
#[command(name = "ovs-autoattach", version)]
pub struct Cli {
    /// Configuration file [default: /etc/ovs-autoattach/config.yaml]
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        env = "OVS_AUTOATTACH_CONFIG"
    )]
    pub config: Option<PathBuf>,
    /// Log every decision (debug level)
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Log warnings and errors only
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Where log lines go
    #[arg(
        long,
        value_name = "TARGET",
        value_enum,
        global = true,
        default_value_t = LogTarget::Stderr,
        env = "OVS_AUTOATTACH_LOG_TARGET"
    )]
    pub log: LogTarget,
    #[command(subcommand)]
    pub command: Command,
}

/// The destination of the log lines (`--log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// Plain lines on standard error: ovs-autoattach: [level: ]message
    Stderr,
    /// The system log through /dev/log, facility daemon; nothing at all if it cannot be reached
    Syslog,
}

/// What `status` prints (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// The NIC, host file and mirror tables and a summary line
    Text,
    /// One JSON document
    Json,
    /// Prometheus metrics in the text exposition format
    Prometheus,
    /// One line as a Nagios/Icinga plugin prints it, with the plugin exit codes
    Nagios,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Full pass: rescan links, reconcile every guest NIC, prune stale ports of ours
    Apply {
        /// Print the planned changes, one per line, and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Fast additive path for one interface (called by hooks)
    Plug {
        /// The host interface, e.g. tap100i0 or veth200i1
        #[arg(value_name = "IFACE", value_parser = clap::builder::OsStringValueParser::new())]
        iface: OsString,
        /// The caller holds the guest's Proxmox configuration lock itself (the guest
        /// hookscript does, in post-start): act even though the lock is held
        #[arg(long)]
        lock_held: bool,
    },
    /// Remove every port this tool created and the host files it writes
    Clear {
        /// Leave the ports of running guests where they are and only remove the ownership mark
        /// (package removal: no running guest loses its network)
        #[arg(long)]
        keep_ports: bool,
    },
    /// Show every guest NIC's state, stale ports and host files; change nothing
    Status {
        /// Print one JSON document instead of the table (schema: status.md in
        /// /usr/share/doc/ovs-autoattach); the same as --format json
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// What to print: the tables, the JSON document, Prometheus metrics (node_exporter's
        /// textfile format) or one monitoring-plugin line (Nagios, Icinga; exit 0 OK, 1 WARNING,
        /// 2 CRITICAL, 3 UNKNOWN). See monitoring.md in /usr/share/doc/ovs-autoattach
        #[arg(long, value_name = "FORMAT", value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
        /// Write the output to FILE atomically (a temporary file in the same directory, renamed
        /// over FILE) instead of standard output, e.g. for node_exporter's textfile directory
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Every node's summary from the cluster file system
        /// (/etc/pve/nodes/*/ovs-autoattach.json) instead of this host's report, as text or json;
        /// exit 1 if a node needs apply or an admin, or its summary is stale (older than 24 h)
        #[arg(long)]
        cluster: bool,
    },
    /// Check the configuration and every guest configuration; needs no OVS and no root
    Validate,
    /// Internal: writes this node's cluster summary, read from standard input, to PATH if it replaces
    /// what is there. `apply` and `status` run it as a child process they do not wait for
    /// beyond a bound, so that a hung cluster file system holds up only this process.
    #[command(hide = true)]
    PublishSummary { path: std::path::PathBuf },
}
