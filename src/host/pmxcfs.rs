//! The Proxmox cluster file system (pmxcfs, mounted at `/etc/pve`) as the cluster view uses it:
//! whether a directory is that mount, this node's name, and the node summaries under
//! `nodes/<node>/ovs-autoattach.json`.
//!
//! Writing a summary never fails or holds up a run: pmxcfs refuses writes without quorum
//! (`EACCES`, `EPERM`, or `EROFS` on a read-only mount), which is logged at debug level; any
//! other error is a warning; and the write runs on a thread of its own that the run waits for at
//! most [`WRITE_WAIT`]. The file is written as Proxmox writes its own (a temporary file in the
//! same directory, renamed over it), without the mode and owner changes pmxcfs refuses.

use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;

use super::files::{self, Links};
use crate::decide::status::cluster::{Entry, Summary};

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
        .is_ok_and(|info| mounted(&info, &dir.to_string_lossy()))
}

/// Whether `/proc/self/mountinfo` text shows pmxcfs mounted at `dir`.
fn mounted(mountinfo: &str, dir: &str) -> bool {
    mountinfo.lines().any(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            return false;
        };
        let fstype = fields.get(dash + 1).copied().unwrap_or_default();
        fields.get(4) == Some(&dir)
            && (fstype == "fuse" || fstype.starts_with("fuse."))
            && fields.get(dash + 2) == Some(&"/dev/fuse")
    })
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

/// Writes `summary` to its node's file if it [`Summary::replaces`] what is there; never fails.
pub(crate) fn publish(pve_dir: &Path, summary: Summary) {
    let path = summary_path(pve_dir, &summary.node);
    let (tx, rx) = mpsc::channel();
    let target = path.clone();
    let spawned = std::thread::Builder::new()
        .name("cluster-summary".into())
        .spawn(move || {
            let _ = tx.send(write(&target, &summary));
        });
    let outcome = match spawned {
        Ok(_) => rx.recv_timeout(WRITE_WAIT).unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "no answer within {} s; left to the next run",
                WRITE_WAIT.as_secs()
            ))
        }),
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok(true) => log::debug!("wrote the cluster summary {}", path.display()),
        Ok(false) => log::debug!("the cluster summary {} is current", path.display()),
        Err(e) if refused(&e) => log::debug!(
            "cluster summary {} not written (read-only, no quorum?): {e:#}",
            path.display()
        ),
        Err(e) => log::warn!("cluster summary {} not written: {e:#}", path.display()),
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
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmxcfs_in_mountinfo() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
            45 25 0:40 / /var/lib/lxcfs rw,nosuid,nodev - fuse.lxcfs lxcfs rw,user_id=0\n\
            48 25 0:42 / /etc/pve rw,nosuid,nodev,relatime shared:27 - fuse /dev/fuse rw,user_id=0,group_id=0,default_permissions,allow_other\n";
        assert!(mounted(info, "/etc/pve"));
        assert!(!mounted(info, "/etc"));
        assert!(!mounted(info, "/var/lib/lxcfs"), "FUSE, but not /dev/fuse");
        assert!(mounted(
            &info.replace(" - fuse /dev/fuse", " - fuse.pve /dev/fuse"),
            "/etc/pve"
        ));
        assert!(!mounted(
            "48 25 0:42 / /etc/pve rw - ext4 /dev/sda1 rw\n",
            "/etc/pve"
        ));
    }
}
