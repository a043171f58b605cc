//! Serialization between concurrent runs, with `flock(2)` through std's `File::lock`.
//!
//! The main lock (`run_dir/lock`) is held exclusively by `apply` and `clear` and shared by `plug`,
//! so concurrent plugs do not queue behind each other but never interleave with a full pass. Host
//! file updates take a second, short exclusive lock (`run_dir/files.lock`), because several plugs
//! may update the files at once. Lock files are never renamed over or deleted, and the kernel
//! drops a lock when its holder dies, so a killed run never leaves a stale lock behind.
//!
//! Every wait for a lock is bounded: a run that holds a lock while it hangs (on a wedged
//! ovsdb-server, say) must not hold up every run behind it, nor the guest starts and ifupdown2
//! reloads that wait for those. A run that gives up exits 1 and says which lock it waited for.
//! The bounds:
//! - [`PLUG_WAIT`] for `plug`'s main lock, short because a guest start (the hookscript's
//!   `post-start`) and an `ifreload` (the if-up.d hook) wait for the `plug`;
//! - [`wait`] (twice `timeout_secs`) for the main lock of `apply`, `clear` and `status`;
//! - [`FILES_WAIT`] for the host-files lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::decide::config::Config;

/// How long `plug` waits for the main lock. It only waits for `apply` and `clear` (plugs share
/// it), and a healthy `apply` holds it for 0.5 s on a host with 1000 guest NICs and 1.8 s with
/// 2000, all of them changing (docs/benchmarks.md); 5 s leaves room for a loaded host and still
/// lets a guest start go on soon when the holder hangs. A `plug` that gives up changes nothing:
/// Proxmox has plugged its own NIC already, and the holder or the next run does the rest.
pub const PLUG_WAIT: Duration = Duration::from_secs(5);

/// How long a run waits for the host-files lock. Its holders read, render and write at most three
/// small files (milliseconds each); 10 s covers a queue of a few hundred concurrent plugs (a bulk
/// start) on a slow disk.
pub const FILES_WAIT: Duration = Duration::from_secs(10);

/// How many `timeout_secs` `apply`, `clear` and `status` wait for the main lock: a holder that
/// is itself waiting on OVSDB gives up after about one `timeout_secs` per wait, so twice that
/// covers a healthy holder on a slow OVSDB, and a holder that takes longer is stuck where the
/// waiting run would be stuck too.
pub const WAIT_TIMEOUTS: u32 = 2;

/// The main-lock bound of `apply`, `clear` and `status`: [`WAIT_TIMEOUTS`] times
/// `timeout_secs`.
pub fn wait(config: &Config) -> Duration {
    config.timeout() * WAIT_TIMEOUTS
}

pub enum Mode {
    Shared,
    Exclusive,
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the main lock in `mode`, waiting at most `wait` for holders of a conflicting mode.
pub fn main(run_dir: &Path, mode: Mode, wait: Duration) -> anyhow::Result<Lock> {
    acquire(run_dir, "lock", mode, wait)
}

/// Takes the host-files lock, waiting at most [`FILES_WAIT`].
pub fn files(run_dir: &Path) -> anyhow::Result<Lock> {
    acquire(run_dir, "files.lock", Mode::Exclusive, FILES_WAIT)
}

fn acquire(run_dir: &Path, name: &str, mode: Mode, wait: Duration) -> anyhow::Result<Lock> {
    ensure_dir(run_dir)?;
    let path = run_dir.join(name);
    // O_NOFOLLOW: a symlink planted at the lock path is refused, never followed.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    let try_lock = || match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    };
    let deadline = Instant::now() + wait;
    // Polled rather than waited for in flock(2), which has no timeout: from 1 ms up to 25 ms
    // between attempts, a few hundred cheap calls at most.
    let mut pause = Duration::from_millis(1);
    let mut logged = false;
    loop {
        match try_lock() {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "another ovs-autoattach run held {} for more than {}; gave up (the next run or the hook will do this)",
                path.display(),
                seconds(wait)
            );
        }
        if !logged {
            log::debug!(
                "waiting up to {} for {} (another ovs-autoattach run holds it)",
                seconds(wait),
                path.display()
            );
            logged = true;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// `5 s`, `1.5 s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Creates the run directory 0700 if it is missing (its missing parents 0755), and refuses one
/// that is not a real directory.
pub(crate) fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("{} exists but is not a directory", dir.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let creating = || format!("creating {}", dir.display());
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .with_context(creating)?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => Ok(()),
                // Another run created it meanwhile.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => ensure_dir(dir),
                Err(e) => Err(e).with_context(creating),
            }
        }
        Err(e) => Err(e).with_context(|| format!("inspecting {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_dir_and_shares() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        let a = main(&run, Mode::Shared, Duration::ZERO).unwrap();
        let b = main(&run, Mode::Shared, Duration::ZERO).unwrap();
        assert_eq!(
            std::fs::metadata(&run).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let probe = File::open(run.join("lock")).unwrap();
        assert!(
            probe.try_lock().is_err(),
            "exclusive must wait for shared holders"
        );
        drop((a, b));
        assert!(probe.try_lock().is_ok());
    }

    #[test]
    fn the_wait_is_bounded_and_names_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let holder = main(tmp.path(), Mode::Exclusive, Duration::ZERO).unwrap();
        let t = Instant::now();
        let e = main(tmp.path(), Mode::Shared, Duration::from_millis(300)).unwrap_err();
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&format!("held {}", tmp.path().join("lock").display()))
                && msg.contains("more than 0.3 s; gave up"),
            "{msg}"
        );
        // Released in time: taken.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(holder);
        });
        assert!(main(tmp.path(), Mode::Exclusive, Duration::from_secs(5)).is_ok());
        release.join().unwrap();
        let files_holder = files(tmp.path()).unwrap();
        assert!(
            main(tmp.path(), Mode::Exclusive, Duration::ZERO).is_ok(),
            "the two locks are independent"
        );
        drop(files_holder);
    }

    #[test]
    fn missing_parents_are_created_0755() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("a/b/run");
        let _lock = main(&run, Mode::Shared, Duration::ZERO).unwrap();
        for (dir, mode) in [("a", 0o755), ("a/b", 0o755), ("a/b/run", 0o700)] {
            let m = std::fs::metadata(tmp.path().join(dir)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, mode, "{dir}");
        }
    }

    #[test]
    fn symlinked_lock_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("lock")).unwrap();
        assert!(main(tmp.path(), Mode::Exclusive, Duration::ZERO).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn run_dir_must_be_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("file");
        std::fs::write(&f, "").unwrap();
        assert!(main(&f, Mode::Shared, Duration::ZERO).is_err());
    }
}
