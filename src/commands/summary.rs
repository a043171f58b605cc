//! The end of every run that changes something: one warning per failure, and one summary line
//! with the counts, the host files and the elapsed time. Its result is the run's success.

use std::time::Instant;

use super::Success;
use super::act::{Failure, Why};
use super::mirrors::Outcome;
use crate::decide::hostfiles::Written;
use crate::decide::plan::Plan;

/// What a run did, for its summary line.
pub(super) struct Summary<'a> {
    /// `apply`, `plug` or `clear`.
    pub command: &'static str,
    pub plan: &'a Plan,
    /// NICs whose configuration is broken.
    pub invalid: usize,
    pub failed: &'a [Failure],
    /// How many guest ports the host files list, when the run rewrote the whole list.
    pub listed: Option<usize>,
    pub files: anyhow::Result<Written>,
    pub mirrors: &'a Outcome,
    pub started: Instant,
}

impl Summary<'_> {
    /// Logs the failures and the summary line; whether the run reached the desired state.
    pub fn report(self) -> Success {
        for failure in self.failed {
            // An unconfirmed change was warned about once, for all its ports.
            if !matches!(failure.why, Why::Unconfirmed) {
                log::warn!("{failure}");
            }
        }
        let files_ok = match &self.files {
            Ok(_) => true,
            Err(e) => {
                log::error!("updating host files: {e:#}");
                false
            }
        };
        // A plug that changed nothing says so at debug level only: hooks and the preload
        // library plug every NIC they see, most of which need nothing.
        let level = if self.is_quiet_plug() {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        log::log!(level, "{}", self.line());
        self.invalid == 0 && self.failed.is_empty() && files_ok && self.mirrors.ok()
    }

    fn is_quiet_plug(&self) -> bool {
        self.command == "plug"
            && self.plan.is_empty()
            && self.invalid == 0
            && self.failed.is_empty()
            && self.mirrors.quiet()
            && self.files.as_ref().is_ok_and(|w| w.names().is_empty())
    }

    fn line(&self) -> String {
        let c = self.plan.counts();
        let handed_back = if c.handed_back > 0 {
            format!("{} handed back, ", c.handed_back)
        } else {
            String::new()
        };
        let written = match &self.files {
            Ok(w) if w.names().is_empty() => "no file rewritten".to_string(),
            Ok(w) => format!("rewrote {}", w.names().join(" and ")),
            Err(_) => "host files not updated".to_string(),
        };
        let listed = self
            .listed
            .map(|n| format!("{n} guest ports in host files, "))
            .unwrap_or_default();
        format!(
            "{}: {} attached, {} updated, {} moved, {} pruned, {handed_back}{} invalid, {} failed; {}{listed}{written}; {} ms",
            self.command,
            c.attached,
            c.updated,
            c.moved,
            c.pruned,
            self.invalid,
            self.failed.len(),
            self.mirrors.segment(),
            self.started.elapsed().as_millis()
        )
    }
}
