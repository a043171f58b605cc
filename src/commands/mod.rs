//! The commands, one module each, every one read top to bottom: observe, decide, act, report.
//!
//! - [`apply`]: the full pass over every guest NIC, the mirrors and both host files;
//! - [`plug`]: the fast additive path for one interface, for hooks and the preload library;
//! - [`clear`]: the tool's ports and files go (package removal);
//! - [`status`]: `apply`'s own observation and decision, reported; it changes nothing on the
//!   host (only this node's summary for the cluster view, [`cluster`]);
//! - [`validate`]: the configurations parsed and reported, without OVS or root.
//!
//! What they share lives where its name says: [`pass`] observes and decides (the switch check,
//! the host snapshot, the decision with busy guests left to Proxmox), [`act`] carries out a
//! decided change (the one sequence `apply` and `plug` both use), [`summary`] reports it, and
//! [`mirrors`] keeps the traffic mirrors of the rules file alongside.

mod act;
mod apply;
mod clear;
mod cluster;
mod mirrors;
mod pass;
mod plug;
mod status;
mod summary;
mod validate;

pub use apply::apply;
pub use clear::clear;
pub use cluster::{publish_summary, refresh as refresh_cluster_summary};
pub use plug::plug;
pub use status::{Request as StatusRequest, config_failed as status_config_failed, status};
pub use validate::validate;

use std::time::Instant;

use crate::host::ovsdb::TxnError;

/// Whether a command reached the desired state. `false` maps to exit code 1.
pub type Success = bool;

/// How often a transaction refused because OVS changed under us is retried from a fresh read.
const ATTEMPTS: usize = 3;

/// Runs `attempt` again, from a fresh read, when OVSDB refused its transaction because OVS
/// changed under it (a [`TxnError`]: a guard failed, nothing was committed); at most
/// [`ATTEMPTS`] times.
fn retrying<T>(mut attempt: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut tries = 1;
    loop {
        match attempt() {
            Err(e) if e.is::<TxnError>() && tries < ATTEMPTS => {
                log::debug!("{e:#}; reading OVS again (attempt {tries})");
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Logs, at debug level (`-v`), how long a phase took since `lap`, and restarts `lap`. The lines
/// read `timing: PHASE: 1.234 ms`.
fn timing(lap: &mut Instant, phase: &str) {
    log::debug!(
        "timing: {phase}: {:.3} ms",
        lap.elapsed().as_secs_f64() * 1000.0
    );
    *lap = Instant::now();
}
