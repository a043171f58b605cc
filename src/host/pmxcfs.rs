//! The Proxmox cluster file system (pmxcfs, mounted at `/etc/pve`) as the cluster view uses it:
//! whether a directory is that mount, this node's name, and the node summaries under
//! `nodes/<node>/ovs-autoattach.json`.
//!
//! Writing a summary never fails or holds up a run: pmxcfs refuses writes without quorum
//! (`EACCES`, `EPERM`, or `EROFS` on a read-only mount), which is logged at debug level; any
//! other error is a warning; and the write is made by a child process that the run waits for at
//! most [`WRITE_WAIT`]. The file is written as Proxmox writes its own (a temporary file in the
//! same directory, renamed over it), without the mode and owner changes pmxcfs refuses.

use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::files::{self, Links};
use crate::decide::status::cluster::{self, Entry, Summary};

/// The summary's file name in a node directory.
pub const FILE: &str = "ovs-autoattach.json";

/// How long a run waits for the summary's write.
pub const WRITE_WAIT: Duration = Duration::from_secs(2);

/// Largest summary read.
const MAX_BYTES: u64 = 64 * 1024;

/// Whether `dir` is the mount point of pmxcfs: a FUSE mount of `/dev/fuse` (pmxcfs shows as
/// `/dev/fuse on /etc/pve type fuse`; a subtype, `fuse.pve`, is accepted too).
pub fn is_pmxcfs(dir: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|info| cluster::is_pmxcfs_mount(&info, &dir.to_string_lossy()))
}

/// This node's name as Proxmox names its directory: the short host name.
pub fn node_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let short = name.trim().split('.').next()?.to_string();
    let valid = !short.is_empty()
        && short.len() <= 63
        && short
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then_some(short)
}

/// Where node `node`'s summary lives under `pve_dir`.
pub fn summary_path(pve_dir: &Path, node: &str) -> PathBuf {
    pve_dir.join("nodes").join(node).join(FILE)
}

/// The child's exit status: the summary was current already.
pub const CURRENT: i32 = 10;
/// The child's exit status: pmxcfs (or a read-only mount) refused the write.
pub const REFUSED: i32 = 11;
/// The child's exit status: this node's name has no directory in the cluster file system.
pub const NO_NODE: i32 = 12;

/// Writes `summary` to its node's file if it [`Summary::replaces`] what is there; never fails
/// and never holds up the run. The write is made by a child process (`publish-summary`, this
/// same binary) that the run waits for at most [`WRITE_WAIT`]: a thread would not do, since a
/// process whose thread hangs in a request to a stuck FUSE file system cannot exit, even on
/// SIGKILL, and the run's callers (dpkg, ifupdown2, systemd) would hang with it.
pub(crate) fn publish(pve_dir: &Path, summary: Summary) {
    let path = summary_path(pve_dir, &summary.node);
    let outcome = spawn_writer(&path, &summary.render());
    match outcome {
        Ok(Some(0)) => log::debug!("wrote the cluster summary {}", path.display()),
        Ok(Some(CURRENT)) => log::debug!("the cluster summary {} is current", path.display()),
        Ok(Some(REFUSED)) => log::debug!(
            "cluster summary {} not written (read-only, no quorum?)",
            path.display()
        ),
        Ok(Some(NO_NODE)) => log::debug!(
            "cluster summary {} not written: no such node directory (pmxcfs makes them)",
            path.display()
        ),
        Ok(Some(code)) => log::warn!(
            "cluster summary {} not written (exit status {code}; `ovs-autoattach -v status` says more)",
            path.display()
        ),
        Ok(None) => log::debug!(
            "cluster summary {}: no answer within {} s; left to finish on its own",
            path.display(),
            WRITE_WAIT.as_secs()
        ),
        Err(e) => log::warn!("cluster summary {} not written: {e:#}", path.display()),
    }
}

/// Starts the writer child with `text` on its standard input and waits for it at most
/// [`WRITE_WAIT`]: its exit status, or `None` when it is still running. It is left to finish on
/// its own; init reaps it once this run has exited, and the units say `KillMode=process`, so that
/// systemd neither waits for it nor kills it when the unit stops.
fn spawn_writer(path: &Path, text: &str) -> anyhow::Result<Option<i32>> {
    use std::os::unix::process::CommandExt as _;
    // This very binary, even when a package upgrade has replaced the file meanwhile.
    let exe = Path::new("/proc/self/exe");
    let mut child = std::process::Command::new(exe)
        .arg0("ovs-autoattach")
        .arg("publish-summary")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    // A summary is far smaller than a pipe's buffer: this write never waits for the child.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .context("handing the summary to its writer")?;
    }
    let deadline = std::time::Instant::now() + WRITE_WAIT;
    loop {
        if let Some(status) = child
            .try_wait()
            .context("waiting for the summary's writer")?
        {
            return Ok(Some(status.code().unwrap_or(1)));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `publish-summary PATH`: writes the summary `text` to `path` if it replaces what is there.
/// The exit status says what happened: 0 written, [`CURRENT`], [`REFUSED`], [`NO_NODE`], 1
/// another error.
pub(crate) fn write_summary(path: &Path, text: &str) -> i32 {
    let summary = match Summary::parse(text) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("publish-summary: the summary on standard input is refused: {e}");
            return 1;
        }
    };
    if !path.parent().is_some_and(Path::is_dir) {
        return NO_NODE;
    }
    match write(path, &summary) {
        Ok(true) => 0,
        Ok(false) => CURRENT,
        Err(e) if refused(&e) => REFUSED,
        Err(e) => {
            log::warn!("cluster summary {} not written: {e:#}", path.display());
            1
        }
    }
}

/// Whether the error is pmxcfs (or a read-only mount) refusing the write.
fn refused(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            // EACCES and EPERM are PermissionDenied; tempfile keeps the kind, not the errno.
            matches!(
                io.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) || matches!(
                io.raw_os_error(),
                Some(libc::EROFS | libc::EPERM | libc::EACCES)
            )
        })
}

fn write(path: &Path, summary: &Summary) -> anyhow::Result<bool> {
    let old = files::read_optional(path, MAX_BYTES, Links::Refuse).unwrap_or(None);
    if !summary.replaces(old.as_deref()) {
        return Ok(false);
    }
    let dir = path.parent().context("a summary path has a directory")?;
    // pmxcfs makes a node's directory when the node joins; a name that has none (a host renamed
    // outside Proxmox's procedure) must not create one, replicated to every node.
    if !dir.is_dir() {
        anyhow::bail!("{} is no node directory of this cluster", dir.display());
    }
    let what = || format!("writing {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".ovs-autoattach.json.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(what)?;
    tmp.write_all(summary.render().as_bytes())
        .with_context(what)?;
    tmp.persist(path).map_err(|e| e.error).with_context(what)?;
    Ok(true)
}

/// Every node directory under `pve_dir/nodes`, sorted by name, with its summary.
pub(crate) fn read_all(pve_dir: &Path) -> anyhow::Result<Vec<(String, Entry)>> {
    let nodes = pve_dir.join("nodes");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&nodes).with_context(|| format!("reading {}", nodes.display()))? {
        let dir = dir.with_context(|| format!("reading {}", nodes.display()))?;
        if !dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let node = dir.file_name().to_string_lossy().into_owned();
        let entry = match files::read_optional(&dir.path().join(FILE), MAX_BYTES, Links::Refuse) {
            Ok(None) => Entry::Missing,
            Ok(Some(text)) => Summary::parse(&text).map_or_else(Entry::Unreadable, Entry::Found),
            Err(e) => Entry::Unreadable(format!("{e:#}")),
        };
        out.push((node, entry));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
