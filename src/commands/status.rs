//! `status`: what `apply` would do, shown and not done.
//!
//! Read-only: no OVSDB write and no file write. It holds the main lock shared, as
//! `apply --dry-run` does, so that no `apply` or `clear` changes the host while it looks, and the
//! files lock while it reads the host files, so that a concurrent `plug` never shows it half an
//! update. It observes with `apply`'s own code ([`super::observe`]), decides with `apply`'s own
//! function ([`super::decide_leaving_busy`]: desired state, plan, mirrors, kernel links), and renders the
//! host files as `apply` would write them for that plan ([`hostfiles::plan`]), to compare them
//! with the disk. The report
//! itself is pure ([`crate::decide::status`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use super::mirrors::Mirrors;
use super::pass::{Decided, Host, decide_leaving_busy, listed_ports, observe};
use super::{Success, timing};
use crate::cli::{Command, StatusFormat};
use crate::decide::config::Config;
use crate::decide::hostfiles::{Action, NoteKind, PlannedFile, Update};
use crate::decide::linkplan;
use crate::decide::observed::Observed;
use crate::decide::status::{FileCheck, Report, nagios, prometheus};
use crate::error::Finished;
use crate::host::files::{self, Links};
use crate::host::hostfiles;
use crate::host::links::Rtnl;
use crate::host::lock::{self, Mode};
use crate::host::namespace;
use crate::host::runstate;
use crate::host::vswitch::Vswitch;

/// What `status` was asked for.
pub struct Request {
    pub format: StatusFormat,
    /// Written atomically instead of standard output.
    pub output: Option<PathBuf>,
    /// Every node's summary instead of this host's report.
    pub cluster: bool,
}

/// `status`: the report on standard output (or `--output`). Text and JSON: `Ok(false)` (exit 1)
/// when something needs `apply` or an admin. Prometheus: exit 0 whenever the host was observed
/// (the health is in the metrics), 1 with `ovs_autoattach_up 0` when not. Nagios: the plugin's
/// exit code, 2 and 3 as [`Finished`].
pub fn status(config: &Config, request: &Request) -> anyhow::Result<Success> {
    if request.cluster {
        return super::cluster::show(config, request.format, request.output.as_deref());
    }
    let started = Instant::now();
    let observed = observe_and_build(config, request.format == StatusFormat::Text);
    let stats = || runstate::read(&config.run_dir, started.elapsed());
    // This node's summary for the cluster view, from the same report.
    if let Ok((report, _)) = &observed {
        super::cluster::publish(config, report, &stats());
    }
    let emit = |text: &str| emit(text, request.output.as_deref());
    match request.format {
        StatusFormat::Text | StatusFormat::Json => {
            let (report, table) = observed?;
            let out = match table {
                Some(mut text) => {
                    report.push_rest(&mut text);
                    text
                }
                None => report.to_json(),
            };
            emit(&out)?;
            Ok(report.healthy())
        }
        StatusFormat::Prometheus => {
            let report = observed.map_err(|e| log::error!("{e:#}")).ok();
            emit(&prometheus::render(report.as_ref().map(|r| &r.0), &stats()))?;
            Ok(report.is_some())
        }
        StatusFormat::Nagios => {
            let (line, verdict) = match observed {
                Ok((report, _)) => nagios::render(&report, &stats()),
                Err(e) => nagios::failed(&format!("{e:#}"), false),
            };
            emit(&line)?;
            match verdict.code() {
                0 => Ok(true),
                1 => Ok(false),
                code => Err(Finished(code).into()),
            }
        }
    }
}

/// A configuration that did not load, for `status --format nagios`: the plugin's CRITICAL line
/// on standard output and exit 2. Any other command gets the error back as it is.
pub fn config_failed(command: &Command, error: anyhow::Error) -> anyhow::Error {
    match command {
        Command::Status {
            format: StatusFormat::Nagios,
            cluster: false,
            output,
            ..
        } => {
            let (line, verdict) = nagios::failed(&format!("{error:#}"), true);
            match emit(&line, output.as_deref()) {
                Ok(()) => Finished(verdict.code()).into(),
                Err(e) => e,
            }
        }
        _ => error,
    }
}

/// Standard output, or `output` written atomically.
pub(super) fn emit(text: &str, output: Option<&Path>) -> anyhow::Result<()> {
    match output {
        Some(path) => files::write(path, text, Links::Refuse),
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing the report to standard output"),
    }
}

/// Observes and decides exactly as `apply` does, and builds the report (with the NIC table
/// rendered when `table`).
pub(super) fn observe_and_build(
    config: &Config,
    table: bool,
) -> anyhow::Result<(Report, Option<String>)> {
    namespace::check_host()?;
    let mut ovs = Vswitch::connect(config)?;
    super::pass::check_switch(&mut ovs, &mut Rtnl::open()?)?;
    let _lock = lock::main(&config.run_dir, Mode::Shared, lock::wait(config))?;
    // Observe, exactly as `apply` does.
    let (host, observed) = observe(config, &mut ovs)?;
    let mut lap = Instant::now();
    // Decide, with `apply`'s own function.
    let rules = Mirrors::read(config, None);
    let decided = decide_leaving_busy(config, &host, &observed, &rules)?;
    timing(&mut lap, "decision");
    let built = build(config, !table, &host, &observed, &decided)?;
    timing(&mut lap, "host files and report");
    Ok(built)
}

/// The report, with the host files `apply` would write once its plan is committed checked
/// against the disk on a second thread while the report is built and its NIC table rendered:
/// the two are independent, and this way the report costs no time of its own over a no-op
/// `apply`. The table is rendered unless `json`.
fn build(
    config: &Config,
    json: bool,
    host: &Host,
    observed: &Observed,
    decided: &Decided,
) -> anyhow::Result<(Report, Option<String>)> {
    let Decided {
        desired,
        plan,
        mirrors: mirror_plan,
        release,
    } = decided;
    // The kernel side, as `apply` would carry it out once the ports are in place.
    let link_work: Vec<(String, String)> = release
        .iter()
        .cloned()
        .chain(linkplan::after_commit(
            desired,
            plan,
            &host.states,
            &host.mtus,
        ))
        .map(|op| (op.link().to_string(), link_reason(&op)))
        .collect();
    let (files, report, table) = std::thread::scope(|scope| {
        let files = scope.spawn(|| -> anyhow::Result<Vec<FileCheck>> {
            let mut lap = Instant::now();
            let (ports, exists) = listed_ports(host, desired, observed, plan);
            let _files = lock::files(&config.run_dir)?;
            let checks = hostfiles::plan(config, &Update::All(&ports), &exists)
                .files
                .iter()
                .map(check)
                .collect();
            timing(&mut lap, "host files");
            Ok(checks)
        });
        let report = Report::build(config, &host.links, desired, observed, plan, &host.names)
            .with_mirrors(mirror_plan, observed, &host.states)
            .with_link_work(&link_work);
        let table = (!json).then(|| report.nic_table());
        let files = files
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (files, report, table)
    });
    Ok((report.with_files(files?), table))
}

/// A kernel-link change as the report gives it for a NIC. A rate limit to set on a NIC whose
/// port stays where it is was lost: ovs-vswitchd replaces a port's qdiscs when it restarts.
fn link_reason(op: &linkplan::Op) -> String {
    match op {
        linkplan::Op::RateLimit { .. } => {
            format!("rate limit missing (its qdiscs are not Proxmox's): {op}")
        }
        _ => op.to_string(),
    }
}

/// A planned host file as the report takes it: the comparison with the disk done here, at the
/// boundary. The path is a column of its own, so the notes carry only their line.
fn check(file: &PlannedFile) -> FileCheck {
    let notes = |refused: bool| -> Vec<String> {
        file.notes
            .iter()
            .filter(|n| (n.kind == NoteKind::Refused) == refused)
            .map(|n| match n.line {
                Some(line) => format!("line {line}: {}", n.text),
                None => n.text.clone(),
            })
            .collect()
    };
    FileCheck {
        role: file.role.as_str().into(),
        path: file.path.display().to_string(),
        removes: file.action == Action::Remove,
        in_sync: file.in_sync().map_err(|e| format!("{e:#}")),
        refused: notes(true),
        notes: notes(false),
        error: file.error.clone(),
        source_line: file.source_line.clone(),
    }
}
