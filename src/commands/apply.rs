//! `apply`: the full pass. Every guest NIC is reconciled, stale ports of ours are pruned, the
//! mirrors and both host files follow. Read top to bottom: observe, decide, act, report.

use std::time::Instant;

use super::act::{self, Decision};
use super::mirrors::Mirrors;
use super::pass::{self, Decided, Host};
use super::summary::Summary;
use super::{Success, retrying, timing};
use crate::decide::config::Config;
use crate::decide::hostfiles::Update;
use crate::decide::linkplan;
use crate::decide::mirrors::MirrorPlan;
use crate::decide::observed::Observed;
use crate::decide::plan::Plan;
use crate::host::hostfiles;
use crate::host::links::Rtnl;
use crate::host::lock::{self, Mode};
use crate::host::namespace;
use crate::host::runstate;
use crate::host::vswitch::Vswitch;

/// `apply [--dry-run]`: full rescan and reconcile of every guest NIC, then both host files.
pub fn apply(config: &Config, dry_run: bool) -> anyhow::Result<Success> {
    let started = Instant::now();
    namespace::check_host()?;
    let mut ovs = Vswitch::connect(config)?;
    pass::check_switch(&mut ovs, &mut Rtnl::open()?)?;
    let mode = if dry_run {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let _lock = lock::main(&config.run_dir, mode, lock::wait(config))?;
    let rules = Mirrors::read(config, None);
    rules.log_refused(log::Level::Warn);
    let done = retrying(|| {
        let mut lap = Instant::now();
        // Observe.
        let (host, observed) = pass::observe(config, &mut ovs)?;
        timing(&mut lap, "observing");
        // Decide.
        let mut decided = pass::decide_leaving_busy(config, &host, &observed, &rules)?;
        // A port that is not ours is pruned only when its link is gone: ask again, since a
        // guest may have been started since the links were read.
        pass::confirm_prunes(&mut decided.plan, &observed);
        let invalid = pass::log_decisions(&decided.desired);
        timing(&mut lap, "decision");
        if dry_run {
            print_plan(&host, &decided);
            return Ok(invalid == 0 && rules.ok(&decided.mirrors));
        }
        // Act, and report.
        let attempt = Attempt {
            host,
            observed,
            decided,
            invalid,
        };
        carry_out(config, &mut ovs, &rules, &attempt, started)
    })?;
    // For monitoring: when the host was last brought fully in line, still under the lock.
    if done && !dry_run {
        runstate::record_apply(&config.run_dir, started.elapsed());
    }
    Ok(done)
}

/// One attempt's observation and decision.
struct Attempt {
    host: Host,
    observed: Observed,
    decided: Decided,
    /// NICs whose configuration is broken.
    invalid: usize,
}

/// The act and report steps of one attempt.
fn carry_out(
    config: &Config,
    ovs: &mut Vswitch,
    rules: &Mirrors,
    attempt: &Attempt,
    started: Instant,
) -> anyhow::Result<Success> {
    let Attempt {
        host,
        observed,
        decided,
        invalid,
    } = attempt;
    let write_files = || {
        let (ports, exists) = pass::listed_ports(host, &decided.desired, observed, &decided.plan);
        (
            hostfiles::update(config, Update::All(&ports), &exists),
            ports.len(),
        )
    };
    let change = Decision {
        desired: &decided.desired,
        plan: &decided.plan,
        mirrors: &decided.mirrors,
        release: &decided.release,
        observed,
        mtus: &host.mtus,
    };
    let acted = act::act(
        ovs,
        &mut Rtnl::open()?,
        change,
        write_files,
        |mirrors| rules.finish(mirrors, log::Level::Info),
        // The links as the transaction left them (a new fwln's device exists now).
        |rtnl, changed| match changed {
            false => Ok(host.states.clone()),
            true => Ok(pass::link_states(
                config,
                &rtnl.dump()?,
                Some(&rtnl.rate_limited()?),
            )),
        },
    )?;
    let (files, listed) = acted.files;
    Ok(Summary {
        command: "apply",
        plan: &decided.plan,
        invalid: *invalid,
        failed: &acted.failed,
        listed: Some(listed),
        files,
        mirrors: &acted.mirrored,
        started,
    }
    .report())
}

/// `--dry-run`: every change, one per line, as `apply` would make it; nothing is done.
fn print_plan(host: &Host, decided: &Decided) {
    let Decided {
        desired,
        plan,
        mirrors,
        release,
    } = decided;
    print_changes(plan, mirrors);
    for op in release {
        println!("{op}");
    }
    let after = linkplan::after_commit(desired, plan, &host.states, &host.mtus);
    for op in &after {
        println!("{op} (once the ports are in place)");
    }
}

fn print_changes(plan: &Plan, mirror_plan: &MirrorPlan) {
    let flags = mirror_plan.promisc_on.len() + mirror_plan.promisc_off.len();
    if plan.is_empty() && mirror_plan.is_empty() && flags == 0 {
        println!("nothing to do");
    }
    for change in &plan.changes {
        println!("{change}");
    }
    super::mirrors::print(mirror_plan);
}
