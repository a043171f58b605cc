//! The run directory's record of the runs since boot (`run_dir` is on a tmpfs, `/run`, so it
//! starts empty at every boot), for `status`'s monitoring formats:
//!
//! - `last-apply`: when the last successful `apply` ended and how long it took, one line written
//!   atomically by `apply` under its exclusive lock ([`crate::decide::status::LastApply`]);
//! - `failures`: one byte appended (`O_APPEND`, so concurrent runs never lose one) per run of
//!   `apply`, `plug` or `clear` that failed; its length is the count. It stops growing at
//!   [`MAX_FAILURES`], where the counter saturates.
//!
//! Neither ever fails a run: a stamp or counter that cannot be written is logged at debug level.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::files::{self, Links};
use super::lock;
use crate::decide::status::{LastApply, RunStats};

pub const LAST_APPLY: &str = "last-apply";
pub const FAILURES: &str = "failures";

/// Where the failure counter stops: a host failing every second for eleven days.
pub const MAX_FAILURES: u64 = 1 << 20;

/// Largest `last-apply` stamp read.
const MAX_STAMP: u64 = 256;

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Records a successful `apply` that took `took`, ending now.
pub fn record_apply(run_dir: &Path, took: Duration) {
    let stamp = LastApply {
        at: now(),
        took: took.as_secs_f64(),
    };
    let path = run_dir.join(LAST_APPLY);
    if let Err(e) = files::write_if_changed(&path, &stamp.render(), Links::Refuse) {
        log::debug!("recording the apply in {}: {e:#}", path.display());
    }
}

/// Counts one failed run.
pub fn record_failure(run_dir: &Path) {
    let path = run_dir.join(FAILURES);
    let result = lock::ensure_dir(run_dir).and_then(|()| -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        if file.metadata()?.len() < MAX_FAILURES {
            file.write_all(b"x")?;
        }
        Ok(())
    });
    if let Err(e) = result {
        log::debug!("counting the failed run in {}: {e:#}", path.display());
    }
}

/// The runs since boot as the run directory records them; `took` is this run's own time so far.
pub(crate) fn read(run_dir: &Path, took: Duration) -> RunStats {
    let last_apply = files::read_optional(&run_dir.join(LAST_APPLY), MAX_STAMP, Links::Refuse)
        .ok()
        .flatten()
        .and_then(|text| LastApply::parse(&text));
    let failures = std::fs::symlink_metadata(run_dir.join(FAILURES))
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len().min(MAX_FAILURES));
    RunStats {
        last_apply,
        failures,
        now: now(),
        took: took.as_secs_f64(),
    }
}
