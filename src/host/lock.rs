//! Serialization between concurrent runs, with `flock(2)` through std's `File::lock`.
//!
//! The main lock (`run_dir/lock`) is held exclusively by `apply` and `clear` and shared by `plug`,
//! so concurrent plugs do not queue behind each other but never interleave with a full pass. Host
//! file updates take a second, short exclusive lock (`run_dir/files.lock`), because several plugs
//! may update the files at once. Lock files are never renamed over or deleted, and the kernel
//! drops a lock when its holder dies, so a killed run never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, bail};

pub enum Mode {
    Shared,
    Exclusive,
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the main lock in `mode`, waiting for holders of a conflicting mode.
pub fn main(run_dir: &Path, mode: Mode) -> anyhow::Result<Lock> {
    acquire(run_dir, "lock", mode)
}

/// Takes the host-files lock.
pub fn files(run_dir: &Path) -> anyhow::Result<Lock> {
    acquire(run_dir, "files.lock", Mode::Exclusive)
}

fn acquire(run_dir: &Path, name: &str, mode: Mode) -> anyhow::Result<Lock> {
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
    let contended = match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    };
    if contended.is_err() {
        log::debug!(
            "waiting for {} (another ovs-autoattach run holds it)",
            path.display()
        );
        match mode {
            Mode::Shared => file.lock_shared(),
            Mode::Exclusive => file.lock(),
        }
        .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(Lock { _file: file })
}

/// Creates the run directory 0700 if it is missing, and refuses one that is not a real directory.
fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("{} exists but is not a directory", dir.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display())),
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
        let a = main(&run, Mode::Shared).unwrap();
        let b = main(&run, Mode::Shared).unwrap();
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
    fn symlinked_lock_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("lock")).unwrap();
        assert!(main(tmp.path(), Mode::Exclusive).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn run_dir_must_be_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("file");
        std::fs::write(&f, "").unwrap();
        assert!(main(&f, Mode::Shared).is_err());
    }
}
