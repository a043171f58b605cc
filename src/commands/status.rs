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
use std::time::Instant;

use anyhow::Context;

use super::mirrors::Mirrors;
use super::pass::{Decided, Host, decide_leaving_busy, listed_ports, observe};
use super::{Success, timing};
use crate::decide::config::Config;
use crate::decide::hostfiles::{Action, NoteKind, PlannedFile, Update};
use crate::decide::linkplan;
use crate::decide::observed::Observed;
use crate::decide::status::{FileCheck, Report};
use crate::host::hostfiles;
use crate::host::links::Rtnl;
use crate::host::lock::{self, Mode};
use crate::host::namespace;
use crate::host::vswitch::Vswitch;

/// `status [--json]`: the report on standard output; `Ok(false)` (exit 1) when something needs
/// `apply` or an admin.
pub fn status(config: &Config, json: bool) -> anyhow::Result<Success> {
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
    // Report.
    let (report, table) = build(config, json, &host, &observed, &decided)?;
    timing(&mut lap, "host files and report");
    let out = match table {
        Some(mut text) => {
            report.push_rest(&mut text);
            text
        }
        None => report.to_json(),
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("writing the report to standard output")?;
    timing(&mut lap, "report");
    Ok(report.healthy())
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
        .map(|op| (op.link().to_string(), op.to_string()))
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
