//! Atomic, change-only writes of host files.
//!
//! A file is replaced only when its bytes differ, through a temporary file in the same directory
//! that is written, fsynced, given the old file's mode and owner, renamed over the original, and
//! followed by an fsync of the directory. A reader (ifupdown2, nmstate) therefore sees the old or
//! the new file, never a mix, even if the run is killed.
//!
//! Symbolic links at a file's path are handled by [`Links`]: the host's interfaces file is
//! Proxmox's, and a symlinked one is written through to its target so that the link itself stays
//! ([`Links::Follow`]). The files the tool owns whole (its stanzas file, the nmstate file) are
//! never written or removed through a link ([`Links::Refuse`]): a link there is refused and left
//! as it is. The temporary file is created with `O_EXCL` under a random name, and `rename(2)`
//! replaces the directory entry itself, so neither step follows a link planted meanwhile.
//! Missing directories are created 0755.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Prefix of our temporary files; [`clean_stale_temps`] removes leftovers of killed runs.
const TEMP_PREFIX: &str = ".ovs-autoattach.";

/// What a symbolic link at a file's path means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// The file is written (or removed) through the link, which stays: a file the tool only
    /// edits, such as the host's interfaces file.
    Follow,
    /// A file the tool owns whole: a link at its path is refused, never followed. Reading treats
    /// it as missing; writing, removing and comparing fail with the reason.
    Refuse,
}

/// Reads a file that may not exist yet, refusing anything larger than `max` bytes or anything
/// that is not a regular file (a FIFO or a device would block or never end). With
/// [`Links::Refuse`], a symbolic link at `path` reads as missing.
pub fn read_optional(path: &Path, max: u64, links: Links) -> anyhow::Result<Option<String>> {
    let Some(bytes) = read_bytes(path, max, links)? else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{} is not valid UTF-8", path.display()))
}

fn read_bytes(path: &Path, max: u64, links: Links) -> anyhow::Result<Option<Vec<u8>>> {
    let reading = || format!("reading {}", path.display());
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
    let mut flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if links == Links::Refuse && e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(reading),
    };
    let meta = file.metadata().with_context(reading)?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.len() > max {
        bail!(
            "{} is {} bytes, more than the {max} this tool will edit",
            path.display(),
            meta.len()
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(reading)?;
    if bytes.len() as u64 > max {
        bail!(
            "{} grew to more than the {max} bytes this tool will edit",
            path.display()
        );
    }
    Ok(Some(bytes))
}

/// Writes `content` to `path` unless it already holds exactly that. Returns whether it wrote.
pub fn write_if_changed(path: &Path, content: &str, links: Links) -> anyhow::Result<bool> {
    let target = target(path, links, "write")?;
    if holds_at(&target, content)? {
        return Ok(false);
    }
    // The host files' writes run under the files lock, so stale temporary files of killed runs
    // can go; [`write`] runs without it (`status --output`, the run records) and cleans nothing,
    // since another writer's live temporary file would go too.
    if let Some(dir) = target.parent() {
        clean_stale_temps(dir);
    }
    write_atomic(&target, content.as_bytes(), links)?;
    Ok(true)
}

/// Writes `content` to `path` atomically even when it already holds it: for a file whose mtime
/// tells its age to its reader (node_exporter's textfiles).
pub fn write(path: &Path, content: &str, links: Links) -> anyhow::Result<()> {
    let target = target(path, links, "write")?;
    write_atomic(&target, content.as_bytes(), links)
}

/// Whether `path` holds exactly `content`, the comparison [`write_if_changed`] makes; a missing
/// file holds nothing. Fails where [`write_if_changed`] would refuse. Reads only.
pub fn holds(path: &Path, content: &str, links: Links) -> anyhow::Result<bool> {
    holds_at(&target(path, links, "write")?, content)
}

fn holds_at(target: &Path, content: &str) -> anyhow::Result<bool> {
    let reading = || format!("reading {}", target.display());
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(target)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(reading),
    };
    let meta = file.metadata().with_context(reading)?;
    if !meta.is_file() {
        bail!("{} is not a regular file", target.display());
    }
    if meta.len() != content.len() as u64 {
        return Ok(false);
    }
    let mut old = Vec::with_capacity(content.len());
    file.take(content.len() as u64 + 1)
        .read_to_end(&mut old)
        .with_context(reading)?;
    Ok(old == content.as_bytes())
}

/// Whether `path` exists: what [`remove`] would remove (through a followed link, its target).
/// Fails where [`remove`] would refuse.
pub fn exists(path: &Path, links: Links) -> anyhow::Result<bool> {
    let target = target(path, links, "remove")?;
    match fs::symlink_metadata(&target) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", target.display())),
    }
}

/// Deletes `path` (through a followed link, the target) if it exists. Returns whether it did.
pub fn remove(path: &Path, links: Links) -> anyhow::Result<bool> {
    let target = target(path, links, "remove")?;
    match fs::remove_file(&target) {
        Ok(()) => {
            sync_dir(&target)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", target.display())),
    }
}

/// The file a write or removal (`verb`) of `path` acts on: through a symbolic link its target
/// with [`Links::Follow`]; the path itself otherwise, refused when it is a link or not a regular
/// file.
fn target(path: &Path, links: Links, verb: &str) -> anyhow::Result<PathBuf> {
    match (fs::symlink_metadata(path), links) {
        (Ok(m), Links::Follow) if m.file_type().is_symlink() => resolve(path),
        (Ok(m), Links::Refuse) if m.file_type().is_symlink() => bail!(
            "refusing to {verb} {}: it is a symbolic link; the tool owns this file whole and never writes through a link",
            path.display()
        ),
        (Ok(m), Links::Refuse) if !m.is_file() => bail!(
            "refusing to {verb} {}: it is not a regular file; the tool owns this file whole",
            path.display()
        ),
        _ => Ok(path.to_path_buf()),
    }
}

/// Follows the symlink at `path` to the file it names.
fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    let link = fs::read_link(path).with_context(|| format!("reading link {}", path.display()))?;
    let target = if link.is_absolute() {
        link
    } else {
        path.parent().unwrap_or(Path::new("/")).join(link)
    };
    // A chain of links: resolve once more through the OS.
    Ok(fs::canonicalize(&target).unwrap_or(target))
}

/// Creates `dir` and its missing parents, 0755 (the run's umask is 022: that is their mode).
pub fn create_dirs(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_atomic(path: &Path, content: &[u8], links: Links) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_dirs(dir)?;
    // The mode and owner of the file being replaced, never of what a link names.
    let (mode, owner) = match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        _ => (0o644, None),
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
    // A link planted at the path since the check is replaced by the rename, not followed.
    if links == Links::Refuse {
        target(path, links, "write")?;
    }
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
        if name.starts_with(TEMP_PREFIX)
            && name.ends_with(".tmp")
            && let Ok(m) = entry.metadata()
            && m.is_file()
        {
            log::debug!("removing stale temporary file {}", entry.path().display());
            let _ = fs::remove_file(entry.path());
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
        assert!(write_if_changed(&p, "a\n", Links::Refuse).unwrap());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!write_if_changed(&p, "a\n", Links::Refuse).unwrap());
        assert!(write_if_changed(&p, "b\n", Links::Refuse).unwrap());
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
        assert!(write_if_changed(&link, "new", Links::Follow).unwrap());
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
        write_if_changed(&tmp.path().join("f"), "x", Links::Refuse).unwrap();
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
        assert_eq!(read_optional(&p, 10, Links::Follow).unwrap(), None);
        fs::write(&p, "0123456789ab").unwrap();
        assert!(read_optional(&p, 10, Links::Follow).is_err());
        fs::write(&p, b"\xff\xfe").unwrap();
        assert!(read_optional(&p, 10, Links::Follow).is_err());
    }

    #[test]
    fn remove_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        fs::write(&p, "x").unwrap();
        assert!(remove(&p, Links::Refuse).unwrap());
        assert!(!remove(&p, Links::Refuse).unwrap());
    }

    #[test]
    fn a_link_at_an_owned_path_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::write(&real, "precious").unwrap();
        let link = tmp.path().join("owned");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = write_if_changed(&link, "new", Links::Refuse).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            format!(
                "refusing to write {}: it is a symbolic link; the tool owns this file whole and never writes through a link",
                link.display()
            )
        );
        assert!(holds(&link, "precious", Links::Refuse).is_err());
        assert!(exists(&link, Links::Refuse).is_err());
        assert!(remove(&link, Links::Refuse).is_err());
        assert_eq!(read_optional(&link, 100, Links::Refuse).unwrap(), None);
        assert_eq!(fs::read_link(&link).unwrap(), real);
        assert_eq!(fs::read_to_string(&real).unwrap(), "precious");
        // A dangling link too: nothing is created at its target.
        let gone = tmp.path().join("gone");
        let dangling = tmp.path().join("dangling");
        std::os::unix::fs::symlink(&gone, &dangling).unwrap();
        assert!(write_if_changed(&dangling, "x", Links::Refuse).is_err());
        assert!(!gone.exists());
        // Through the link for a file the tool only edits.
        assert!(write_if_changed(&link, "edited", Links::Follow).unwrap());
        assert_eq!(fs::read_to_string(&real).unwrap(), "edited");
    }

    #[test]
    fn non_regular_files_are_refused_not_waited_on() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for links in [Links::Follow, Links::Refuse] {
            let e = read_optional(&fifo, 100, links).unwrap_err();
            assert!(format!("{e:#}").contains("not a regular file"), "{e:#}");
        }
        assert!(write_if_changed(&fifo, "x", Links::Refuse).is_err());
        assert!(holds(&fifo, "x", Links::Follow).is_err());
    }

    #[test]
    fn missing_directories_are_created_0755() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a/b/file");
        assert!(write_if_changed(&p, "x", Links::Refuse).unwrap());
        for dir in ["a", "a/b"] {
            let m = fs::metadata(tmp.path().join(dir)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o755, "{dir}");
        }
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}
