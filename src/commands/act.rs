//! The one sequence that carries out a decided change, for `apply` and `plug` alike:
//! 1. the kernel-link changes needed before the transaction (a NIC out of its fwbr);
//! 2. one OVSDB transaction with the ports and mirrors, then, while ovs-vswitchd applies it,
//!    the host files on a second thread (they describe the committed state); once it has, a
//!    purge of its cached flows when a mirror was removed or narrowed;
//! 3. the mirror bookkeeping (promiscuous flags, the outcome);
//! 4. the kernel-link changes that need the ports in place (fwbr, fwln, IPv6, rate limits).
//!
//! `clear` uses the commit alone ([`commit`]): it has no links to change.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use super::mirrors::Outcome;
use super::timing;
use crate::decide::desired::Desired;
use crate::decide::linkplan::{self, LinkState, Op};
use crate::decide::mirrors::MirrorPlan;
use crate::decide::observed::Observed;
use crate::decide::plan::{Change, Plan};
use crate::host::linkops;
use crate::host::links::Rtnl;
use crate::host::vswitch::{Unconfirmed, Vswitch};

/// What failed in a run: the port or link, and why.
#[derive(Debug)]
pub(super) struct Failure {
    pub what: String,
    pub why: Why,
}

#[derive(Debug)]
pub(super) enum Why {
    /// What the kernel, tc or ovs-vswitchd said.
    Said(String),
    /// ovs-vswitchd did not confirm the change in time; the run warned about it once, for all
    /// the ports it names.
    Unconfirmed,
}

impl Failure {
    fn said(what: impl Into<String>, why: impl Into<String>) -> Failure {
        Failure {
            what: what.into(),
            why: Why::Said(why.into()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.why {
            Why::Said(why) => write!(f, "{}: {why}", self.what),
            Why::Unconfirmed => write!(f, "{}: not confirmed by ovs-vswitchd", self.what),
        }
    }
}

/// A decided change, as [`act`] carries it out.
pub(super) struct Decision<'a> {
    pub desired: &'a Desired,
    pub plan: &'a Plan,
    pub mirrors: &'a MirrorPlan,
    /// The kernel-link changes needed before the transaction.
    pub release: &'a [Op],
    /// What OVS held when the plan was made: the transaction's guards.
    pub observed: &'a Observed,
    /// The MTU of every bridge the plan puts a port on (`mtu_request`, as Proxmox sets it).
    pub mtus: &'a BTreeMap<String, u32>,
}

impl Decision<'_> {
    /// Whether the run changes OVS or a link before the link check: if not, the links are
    /// still as they were read.
    fn changes_links(&self) -> bool {
        !(self.plan.is_empty() && self.release.is_empty())
    }
}

/// What [`act`] did.
pub(super) struct Acted<F> {
    pub failed: Vec<Failure>,
    pub files: F,
    pub mirrored: Outcome,
}

/// Carries out `change` (see the module documentation). `write_files` updates the host files;
/// `finish_mirrors` settles the mirrors; `links_after` reads the links the kernel-side decisions
/// need, given whether anything changed since they were read.
pub(super) fn act<F: Send>(
    ovs: &mut Vswitch,
    rtnl: &mut Rtnl,
    change: Decision<'_>,
    write_files: impl FnOnce() -> F + Send,
    finish_mirrors: impl FnOnce(&MirrorPlan) -> Outcome,
    links_after: impl FnOnce(&mut Rtnl, bool) -> anyhow::Result<BTreeMap<String, LinkState>>,
) -> anyhow::Result<Acted<F>> {
    let mut failed = link_failures(linkops::carry_out(rtnl, change.release));
    let (committed, files) = commit(
        ovs,
        change.observed,
        change.plan,
        change.mirrors,
        change.mtus,
        write_files,
    )?;
    failed.extend(committed);
    let mirrored = finish_mirrors(change.mirrors);
    let states = links_after(rtnl, change.changes_links())?;
    let ops = linkplan::after_commit(change.desired, change.plan, &states, change.mtus);
    failed.extend(link_failures(linkops::carry_out(rtnl, &ops)));
    Ok(Acted {
        failed,
        files,
        mirrored,
    })
}

fn link_failures(failed: Vec<linkops::Failure>) -> Vec<Failure> {
    failed
        .into_iter()
        .map(|(link, why)| Failure::said(link, why))
        .collect()
}

/// Commits `plan` and `mirrors` (in the same transaction), then runs `write_files` (the host-file
/// update, which describes the committed state) on a second thread while waiting for
/// ovs-vswitchd to apply the change: the wait is idle time, and on a host with thousands of ports
/// it is the longest part of a run. With nothing to commit, `write_files` just runs. Returns the
/// ports whose interface failed and what `write_files` returned. Nothing is written when the
/// transaction fails.
pub(super) fn commit<F: Send>(
    ovs: &mut Vswitch,
    observed: &Observed,
    plan: &Plan,
    mirrors: &MirrorPlan,
    mtus: &BTreeMap<String, u32>,
    write_files: impl FnOnce() -> F + Send,
) -> anyhow::Result<(Vec<Failure>, F)> {
    let mut lap = Instant::now();
    if plan.is_empty() && mirrors.is_empty() {
        let files = write_files();
        timing(&mut lap, "host files");
        return Ok((Vec::new(), files));
    }
    let next_cfg = ovs.commit(observed, plan, mirrors, mtus)?;
    timing(&mut lap, "OVSDB transaction");
    for change in &plan.changes {
        log::info!("{}", change.describe(true));
    }
    for change in &mirrors.changes {
        log::info!("{}", change.describe(true));
    }
    let added: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Attach { .. } | Change::Move { .. }))
        .map(|c| c.port().to_string())
        .collect();
    let (waited, files) = std::thread::scope(|scope| {
        let files = scope.spawn(|| {
            let mut lap = Instant::now();
            let files = write_files();
            timing(&mut lap, "host files");
            files
        });
        let mut wait = Instant::now();
        let waited = ovs.wait_applied(next_cfg, &added);
        timing(&mut wait, "waiting for ovs-vswitchd");
        // Once ovs-vswitchd holds the new mirrors, not before: flows translated meanwhile
        // would still copy.
        if waited.is_ok() && mirrors.stops_copies(plan) {
            purge_flows(ovs);
            timing(&mut wait, "purging datapath flows");
        }
        let files = files
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (waited, files)
    });
    timing(&mut lap, AFTER_COMMIT_TIMING);
    Ok((wait_failures(waited)?, files))
}

/// Has ovs-vswitchd drop its cached datapath flows, so that a removed or narrowed mirror stops
/// copying at once rather than when those flows expire (which steady traffic postpones
/// indefinitely). A failure is a warning, not a failed run: OVSDB holds the mirrors as the rules
/// say and ovs-vswitchd has applied them; only flows cached before keep copying for a while.
fn purge_flows(ovs: &Vswitch) {
    if let Err(e) = ovs.purge_flows() {
        log::warn!(
            "{e:#}; the mirrors are as the rules say, but ovs-vswitchd may keep sending copies of a removed or narrowed mirror until its cached flows expire (`ovs-appctl revalidator/purge` stops them)"
        );
    }
}

/// The failures of ovs-vswitchd's answer: the ports it refused, or, when it did not confirm in
/// time, every port the change added (warned about once here).
fn wait_failures(waited: anyhow::Result<Vec<(String, String)>>) -> anyhow::Result<Vec<Failure>> {
    match waited {
        Ok(failed) => Ok(failed
            .into_iter()
            .map(|(port, why)| Failure::said(port, format!("ovs-vswitchd reports: {why}")))
            .collect()),
        Err(e) => {
            let u = e.downcast::<Unconfirmed>()?;
            log::warn!("{u}");
            // An unconfirmed wait with nothing added still failed to confirm the run.
            let what = if u.ports.is_empty() {
                vec!["(configuration)".to_string()]
            } else {
                u.ports
            };
            Ok(what
                .into_iter()
                .map(|what| Failure {
                    what,
                    why: Why::Unconfirmed,
                })
                .collect())
        }
    }
}

/// Label of the debug timing line of what follows a commit: the wait for ovs-vswitchd and, at
/// the same time, the host-file update. `scripts/bench` subtracts it from a run's wall time to
/// get the tool's own client-side time; keep the two in step.
const AFTER_COMMIT_TIMING: &str = "ovs-vswitchd wait and host files";
