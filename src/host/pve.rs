//! Reading guest configurations from the Proxmox cluster filesystem (`/etc/pve`).
//!
//! A guest's configuration is normally this node's `qemu-server/<vmid>.conf` or
//! `lxc/<vmid>.conf` (symlinks into `nodes/<this node>/`). During an incoming migration, though,
//! the guest's NICs already exist here while its configuration is still under
//! `nodes/<source node>/`: it is looked up there too, so a correctly plugged port is never taken
//! for an unconfigured one and moved to the default bridge.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;

use crate::decide::desired::GuestFile;
use crate::decide::guest::{self, GuestConfig, GuestId};

/// Whether `dir` is a Proxmox configuration directory at all. On a host without it (not a
/// Proxmox node) no NIC has a guest configuration; on a Proxmox node whose cluster filesystem is
/// not mounted the directory exists but is empty, and NICs must not be judged unconfigured.
pub fn present(dir: &Path) -> bool {
    dir.is_dir()
}

/// Reads each guest's configuration once.
pub fn read_guests(dir: &Path, ids: &BTreeSet<GuestId>) -> BTreeMap<GuestId, GuestFile> {
    ids.iter().map(|id| (*id, read_guest(dir, *id))).collect()
}

/// What the guest configuration files were when a run read them: each local file's identity,
/// size and modification time, taken before the read. Proxmox writes a configuration by
/// renaming a new file over it, so a change shows in these even when the size stays.
#[derive(Clone, Debug, Default)]
pub struct Stamps(BTreeMap<GuestId, Option<Stamp>>);

/// A file's device, inode, size and modification time (seconds, nanoseconds).
type Stamp = (u64, u64, u64, i64, i64);

impl Stamps {
    /// The stamps of the configurations of `ids` under `dir`, as they are now.
    pub fn take(dir: &Path, ids: &BTreeSet<GuestId>) -> Stamps {
        Stamps(ids.iter().map(|id| (*id, stamp(dir, *id))).collect())
    }

    /// The guests among `ids` whose configuration changed since the stamps were taken: a run
    /// that read the old configuration must not act on it. Proxmox's live change (`qm set` on
    /// a running guest) re-plugs the NIC and writes the configuration under the guest's lock; a
    /// run that read the configuration before the write and probes the lock after it finds the
    /// lock free, and would put the NIC back where the old configuration says.
    pub fn changed(&self, dir: &Path, ids: &BTreeSet<GuestId>) -> BTreeSet<GuestId> {
        ids.iter()
            .copied()
            .filter(|id| {
                let then = self.0.get(id).copied().flatten();
                let changed = self.0.contains_key(id) && stamp(dir, *id) != then;
                if changed {
                    log::debug!(
                        "the configuration of guest {} changed while this run read it; left to the next run",
                        id.vmid
                    );
                }
                changed
            })
            .collect()
    }
}

fn stamp(dir: &Path, id: GuestId) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(id.config_path(dir)).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// The guests among `ids` that Proxmox is working on now: a plug script of Proxmox's runs for
/// them ([`plugging`]), or another process holds their configuration lock (unless `lock_dir` is
/// `None`: the caller holds the lock itself).
///
/// The lock probe is a non-blocking shared `flock` on a descriptor opened read-only (never
/// created), released at once: Proxmox's `lock_file_full` takes the lock exclusively, so a
/// refused shared lock means Proxmox is working on the guest. A free lock is held for the
/// microseconds of the probe only; a Proxmox task that asks for it in that instant waits that
/// long and goes on. A missing file means nobody holds it. The probe runs right before the
/// changes it protects, and Proxmox needs far longer than that between taking the lock and its
/// `tap_plug` (the pre-start hookscript, volumes, the QEMU command line), so a start cannot slip
/// in between.
pub fn busy(lock_dir: Option<&Path>, ids: &BTreeSet<GuestId>) -> BTreeSet<GuestId> {
    if ids.is_empty() {
        return BTreeSet::new();
    }
    let plugging = plugging();
    ids.iter()
        .copied()
        .filter(|id| {
            let yes = plugging.contains(id);
            if yes {
                log::debug!("a Proxmox plug script is running for guest {}", id.vmid);
            }
            yes
        })
        .chain(lock_dir.map(|dir| locked(dir, ids)).unwrap_or_default())
        .collect()
}

/// The guests whose NICs a Proxmox plug script (`pve-bridge`, `lxcnetaddbr`) is plugging now:
/// one pass over `/proc`. This covers what the lock does not, a container rebooted from inside
/// (LXC runs `lxcnetaddbr` again with no Proxmox task around it).
///
/// Only a process whose `comm` (the kernel's copy of the script's name, read without touching
/// the process's memory) names a plug script has its command line read, and the whole pass runs
/// on a thread of its own that the run waits for at most [`SCAN_WAIT`]: reading another
/// process's command line waits for its memory map, which a process stuck in the kernel can
/// hold. A pass that does not finish in time finds nothing, and the lock probe stands alone.
fn plugging() -> BTreeSet<GuestId> {
    let (tx, rx) = std::sync::mpsc::channel();
    let scan = std::thread::Builder::new()
        .name("proc-scan".into())
        .spawn(move || {
            let _ = tx.send(scan_proc());
        });
    if scan.is_err() {
        return BTreeSet::new();
    }
    match rx.recv_timeout(SCAN_WAIT) {
        Ok(found) => found,
        Err(_) => {
            log::warn!(
                "reading /proc for Proxmox's plug scripts took more than {} ms; relying on the guests' locks alone",
                SCAN_WAIT.as_millis()
            );
            BTreeSet::new()
        }
    }
}

/// How long a run waits for its pass over `/proc` ([`plugging`]).
const SCAN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

fn scan_proc() -> BTreeSet<GuestId> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
        })
        .filter(|e| {
            std::fs::read(e.path().join("comm"))
                .is_ok_and(|comm| guest::is_plug_script_comm(comm.trim_ascii_end()))
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .flat_map(|c| guest::plugged_by(&c))
        .map(|nic| nic.guest)
        .collect()
}

/// The guests among `ids` whose configuration lock is held.
fn locked(lock_dir: &Path, ids: &BTreeSet<GuestId>) -> BTreeSet<GuestId> {
    ids.iter()
        .copied()
        .filter(|id| {
            let path = id.lock_path(lock_dir);
            let file = match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return false,
                Err(e) => {
                    log::debug!("{}: {e}; taken as not held", path.display());
                    return false;
                }
            };
            match file.try_lock_shared() {
                Ok(()) => false,
                Err(std::fs::TryLockError::WouldBlock) => {
                    log::debug!(
                        "{} is held: Proxmox is working on guest {}",
                        path.display(),
                        id.vmid
                    );
                    true
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    log::debug!("{}: {e}; taken as not held", path.display());
                    false
                }
            }
        })
        .collect()
}

fn read_guest(dir: &Path, id: GuestId) -> GuestFile {
    let local = id.config_path(dir);
    match read_file(&local, id) {
        GuestFile::Missing => other_nodes(dir, id)
            .into_iter()
            .map(|path| read_file(&path, id))
            .find(|f| *f != GuestFile::Missing)
            .unwrap_or(GuestFile::Missing),
        found => found,
    }
}

/// `nodes/*/<kind>/<vmid>.conf`: where a guest that another node owns keeps its configuration.
fn other_nodes(dir: &Path, id: GuestId) -> Vec<PathBuf> {
    let Ok(nodes) = std::fs::read_dir(dir.join("nodes")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = nodes
        .flatten()
        .map(|node| id.config_path(&node.path()))
        .collect();
    paths.sort();
    paths
}

fn read_file(path: &Path, id: GuestId) -> GuestFile {
    let read = || -> anyhow::Result<Option<Vec<u8>>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if meta.len() > guest::MAX_CONFIG_BYTES {
            anyhow::bail!(
                "{} bytes is larger than any guest configuration",
                meta.len()
            );
        }
        Ok(Some(std::fs::read(path)?))
    };
    match read().with_context(|| format!("reading {}", path.display())) {
        Ok(None) => GuestFile::Missing,
        Ok(Some(bytes)) => GuestFile::Parsed(GuestConfig::parse(
            id.kind,
            &String::from_utf8_lossy(&bytes),
        )),
        Err(e) => GuestFile::Unreadable(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::guest::Kind;

    #[test]
    fn local_first_then_other_nodes() {
        let tmp = tempfile::tempdir().unwrap();
        let pve = tmp.path();
        let q = |vmid| GuestId {
            kind: Kind::Qemu,
            vmid,
        };
        std::fs::create_dir_all(pve.join("qemu-server")).unwrap();
        std::fs::create_dir_all(pve.join("nodes/other/qemu-server")).unwrap();
        std::fs::write(
            pve.join("qemu-server/100.conf"),
            "net0: virtio,bridge=vmbr1,tag=1\n",
        )
        .unwrap();
        std::fs::write(
            pve.join("nodes/other/qemu-server/100.conf"),
            "net0: virtio,bridge=vmbr1,tag=2\n",
        )
        .unwrap();
        std::fs::write(
            pve.join("nodes/other/qemu-server/101.conf"),
            "net0: virtio,bridge=vmbr1,tag=3\n",
        )
        .unwrap();
        let got = read_guests(pve, &[q(100), q(101), q(102)].into());
        let tag = |id| match &got[&id] {
            GuestFile::Parsed(c) => c.nets[&0].as_ref().unwrap().tag,
            other => panic!("{other:?}"),
        };
        assert_eq!(tag(q(100)), Some(1), "the local configuration wins");
        assert_eq!(
            tag(q(101)),
            Some(3),
            "an incoming migration's configuration is found"
        );
        assert_eq!(got[&q(102)], GuestFile::Missing);
    }

    #[test]
    fn oversized_is_unreadable() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("lxc")).unwrap();
        std::fs::write(tmp.path().join("lxc/200.conf"), vec![b'#'; 2 * 1024 * 1024]).unwrap();
        let id = GuestId {
            kind: Kind::Lxc,
            vmid: 200,
        };
        assert!(
            matches!(&read_guests(tmp.path(), &[id].into())[&id], GuestFile::Unreadable(e) if e.contains("larger"))
        );
    }

    #[test]
    fn a_configuration_written_after_its_stamp_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("qemu-server");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("100.conf"), "net0: virtio,bridge=vmbr0,tag=10\n").unwrap();
        let ids: BTreeSet<GuestId> = [100, 101]
            .map(|vmid| GuestId {
                kind: Kind::Qemu,
                vmid,
            })
            .into();
        let stamps = Stamps::take(dir.path(), &ids);
        assert!(stamps.changed(dir.path(), &ids).is_empty());
        // Proxmox's write: a new file renamed over the old one, same size.
        std::fs::write(
            conf.join("100.conf.tmp"),
            "net0: virtio,bridge=vmbr0,tag=12\n",
        )
        .unwrap();
        std::fs::rename(conf.join("100.conf.tmp"), conf.join("100.conf")).unwrap();
        // 101 appears: changed too.
        std::fs::write(conf.join("101.conf"), "").unwrap();
        let changed: Vec<u32> = stamps
            .changed(dir.path(), &ids)
            .iter()
            .map(|g| g.vmid)
            .collect();
        assert_eq!(changed, [100, 101]);
        // A guest not stamped is not judged.
        let other = [GuestId {
            kind: Kind::Lxc,
            vmid: 200,
        }]
        .into();
        assert!(stamps.changed(dir.path(), &other).is_empty());
    }
}
