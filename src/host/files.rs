//! Atomic, change-only writes of host files.
//!
//! A file is replaced only when its bytes differ, through a temporary file in the same directory
//! that is written, fsynced, given the old file's mode and owner, renamed over the original, and
//! followed by an fsync of the directory. A reader (ifupdown2, nmstate) therefore sees the old or
//! the new file, never a mix, even if the run is killed. A symlinked path is written through to
//! its target so that the link itself stays.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Prefix of our temporary files; [`clean_stale_temps`] removes leftovers of killed runs.
const TEMP_PREFIX: &str = ".ovs-autoattach.";

/// Reads a file that may not exist yet, refusing anything larger than `max` bytes.
pub fn read_optional(path: &Path, max: u64) -> anyhow::Result<Option<String>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if meta.len() > max {
        bail!(
            "{} is {} bytes, more than the {max} this tool will edit",
            path.display(),
            meta.len()
        );
    }
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{} is not valid UTF-8", path.display()))
}

/// Writes `content` to `path` unless it already holds exactly that. Returns whether it wrote.
pub fn write_if_changed(path: &Path, content: &str) -> anyhow::Result<bool> {
    let target = resolve(path)?;
    if holds_at(&target, content)? {
        return Ok(false);
    }
    write_atomic(&target, content.as_bytes())?;
    Ok(true)
}

/// Whether `path` (through a symlink, its target) holds exactly `content`, the comparison
/// [`write_if_changed`] makes; a missing file holds nothing. Reads only.
pub fn holds(path: &Path, content: &str) -> anyhow::Result<bool> {
    holds_at(&resolve(path)?, content)
}

fn holds_at(target: &Path, content: &str) -> anyhow::Result<bool> {
    match fs::read(target) {
        Ok(old) => Ok(old == content.as_bytes()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {}", target.display())),
    }
}

/// Whether `path` (through a symlink, its target) exists: what [`remove`] would remove.
pub fn exists(path: &Path) -> anyhow::Result<bool> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", path.display())),
    }
}

/// Deletes `path` (through a symlink, the target) if it exists. Returns whether it did.
pub fn remove(path: &Path) -> anyhow::Result<bool> {
    let target = resolve(path)?;
    match fs::remove_file(&target) {
        Ok(()) => {
            sync_dir(&target)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", target.display())),
    }
}

/// Follows a symlink at `path` to the file it names; the path itself otherwise.
fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let link =
                fs::read_link(path).with_context(|| format!("reading link {}", path.display()))?;
            let target = if link.is_absolute() {
                link
            } else {
                path.parent().unwrap_or(Path::new("/")).join(link)
            };
            // A chain of links: resolve once more through the OS.
            fs::canonicalize(&target).or(Ok(target))
        }
        _ => Ok(path.to_path_buf()),
    }
}

fn write_atomic(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clean_stale_temps(dir);
    let (mode, owner) = match fs::metadata(path) {
        Ok(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        Err(_) => (0o644, None),
    };
    // tempfile creates with O_EXCL and a random name: a planted symlink is never followed.
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let what = || format!("writing {}", path.display());
    tmp.write_all(content).with_context(what)?;
    let file = tmp.as_file();
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(what)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(file, Some(uid), Some(gid)).with_context(what)?;
    }
    file.sync_all().with_context(what)?;
    tmp.persist(path).map_err(|e| e.error).with_context(what)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Removes temporary files that killed runs left in `dir`. Callers hold the files lock, so no
/// live writer owns one of them.
pub fn clean_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp") {
            if let Ok(m) = entry.metadata() {
                if m.is_file() {
                    log::debug!("removing stale temporary file {}", entry.path().display());
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_on_change_and_keeps_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("interfaces");
        assert!(write_if_changed(&p, "a\n").unwrap());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!write_if_changed(&p, "a\n").unwrap());
        assert!(write_if_changed(&p, "b\n").unwrap());
        assert_eq!(fs::read_to_string(&p).unwrap(), "b\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn symlink_is_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::write(&real, "old").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink("real", &link).unwrap();
        assert!(write_if_changed(&link, "new").unwrap());
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn stale_temps_are_cleaned_on_write() {
        let tmp = tempfile::tempdir().unwrap();
        let stale = tmp.path().join(".ovs-autoattach.abc123.tmp");
        fs::write(&stale, "junk").unwrap();
        write_if_changed(&tmp.path().join("f"), "x").unwrap();
        assert!(!stale.exists());
        let left: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn read_optional_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        assert_eq!(read_optional(&p, 10).unwrap(), None);
        fs::write(&p, "0123456789ab").unwrap();
        assert!(read_optional(&p, 10).is_err());
        fs::write(&p, b"\xff\xfe").unwrap();
        assert!(read_optional(&p, 10).is_err());
    }

    #[test]
    fn remove_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        fs::write(&p, "x").unwrap();
        assert!(remove(&p).unwrap());
        assert!(!remove(&p).unwrap());
    }
}
