//! Finding the LXC container a raw NIC belongs to, and reading its configuration (its rules are
//! [`crate::decide::lxc`]).
//!
//! A raw container's NIC is a veth whose peer lives in another network namespace; the kernel
//! reports that namespace as an id of this namespace's (`IFLA_LINK_NETNSID`). A container's
//! processes are found in one pass over `/proc`, two ways:
//!
//! - LXC 4 and later run them in a cgroup named `lxc.payload.<name>`: each process's `cgroup`
//!   file (kernel-made, a few bytes, read without touching the process's memory) says so;
//! - where LXC could create no cgroup, its monitor process (`comm` `lxc-start`, command line
//!   `[lxc monitor] <lxcpath> <name>`, only then read) is the parent of the container's init
//!   (`/proc/<pid>/task/<pid>/children`).
//!
//! One process is kept per network namespace (`/proc/<pid>/ns/net`), and the kernel is asked
//! which id this namespace gives that one (`RTM_GETNSID` with `NETNSA_PID`; a query assigns no
//! id). A NIC whose peer's id is that id belongs to that container. The pass runs only when the host has raw NICs, on a thread of
//! its own that the run waits for at most [`SCAN_WAIT`], as `host::pve`'s does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::Path;

use crate::decide::config::Config;
use crate::decide::desired::Container;
use crate::decide::lxc::{self, LxcConfig};
use crate::host::links::{Link, Rtnl};

/// How long a run waits for its pass over `/proc`.
const SCAN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Largest container configuration read.
const MAX_BYTES: u64 = 1024 * 1024;

/// The containers of the raw NICs `raw` among the links `all` (this namespace's dump), by NIC.
/// A NIC whose container is not found has no entry.
pub fn containers(
    config: &Config,
    rtnl: &mut Rtnl,
    all: &[Link],
    raw: &BTreeSet<&str>,
) -> BTreeMap<String, Container> {
    let wanted: BTreeSet<i32> = all
        .iter()
        .filter(|l| raw.contains(l.name.as_str()))
        .filter_map(|l| l.netnsid)
        .collect();
    if wanted.is_empty() {
        return BTreeMap::new();
    }
    let mut owners: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (pid, names) in payload_processes() {
        match rtnl.nsid_of_pid(pid) {
            Ok(Some(id)) if wanted.contains(&id) => {
                owners.entry(id).or_insert(names);
            }
            Ok(_) => {}
            Err(e) => log::debug!("the network namespace of process {pid}: {e:#}"),
        }
    }
    all.iter()
        .filter(|l| raw.contains(l.name.as_str()))
        .filter_map(|l| {
            let id = l.netnsid?;
            let names = owners.get(&id)?;
            let siblings = siblings(all, id);
            Some((l.name.clone(), container(&config.lxc_path, names, siblings)))
        })
        .collect()
}

/// The host's veths whose peer is in the namespace of id `netnsid`, in ifindex order: the
/// order LXC creates a container's pairs in.
fn siblings(all: &[Link], netnsid: i32) -> Vec<String> {
    let mut veths: Vec<&Link> = all
        .iter()
        .filter(|l| l.netnsid == Some(netnsid) && l.kind.as_deref() == Some("veth"))
        .collect();
    veths.sort_by_key(|l| l.index);
    veths.into_iter().map(|l| l.name.clone()).collect()
}

/// The container among the candidate `names` of one payload cgroup: the first that has a
/// configuration under `lxc_path`, else the first.
fn container(lxc_path: &Path, names: &[String], siblings: Vec<String>) -> Container {
    let path_of = |name: &str| lxc_path.join(name).join("config");
    let name = names
        .iter()
        .find(|n| path_of(n).is_file())
        .or(names.first())
        .cloned()
        .unwrap_or_default();
    let path = path_of(&name);
    Container {
        config: read(&path),
        path: path.display().to_string(),
        name,
        siblings,
    }
}

/// A container configuration: `Ok(None)` when there is none.
fn read(path: &Path) -> Result<Option<LxcConfig>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    if meta.len() > MAX_BYTES {
        return Err(format!(
            "{}: {} bytes is larger than any container configuration",
            path.display(),
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(Some(LxcConfig::parse(&String::from_utf8_lossy(&bytes))))
}

/// One process of each network namespace whose processes run in an LXC payload cgroup, with
/// the container names that cgroup may stand for ([`lxc::payload_names`]). Bounded in time: a
/// pass that does not finish within [`SCAN_WAIT`] finds nothing.
fn payload_processes() -> Vec<(u32, Vec<String>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let scan = std::thread::Builder::new()
        .name("lxc-scan".into())
        .spawn(move || {
            let _ = tx.send(scan_proc());
        });
    if scan.is_err() {
        return Vec::new();
    }
    rx.recv_timeout(SCAN_WAIT).unwrap_or_else(|_| {
        log::warn!(
            "reading /proc for LXC containers took more than {} ms; raw NICs are placed without their containers' configurations",
            SCAN_WAIT.as_millis()
        );
        Vec::new()
    })
}

fn scan_proc() -> Vec<(u32, Vec<String>)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut by_netns: BTreeMap<std::ffi::OsString, (u32, Vec<String>)> = BTreeMap::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((pid, names)) = payload(pid, &entry.path()).or_else(|| monitored(pid)) else {
            continue;
        };
        if let Ok(netns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            by_netns
                .entry(netns.into_os_string())
                .or_insert((pid, names));
        }
    }
    by_netns.into_values().collect()
}

/// Process `pid` (at `dir`), if it runs in an LXC payload cgroup, with the names that cgroup
/// may stand for.
fn payload(pid: u32, dir: &Path) -> Option<(u32, Vec<String>)> {
    let cgroup = std::fs::read(dir.join("cgroup")).ok()?;
    let names = String::from_utf8_lossy(&cgroup)
        .lines()
        .find_map(lxc::payload_names)?;
    Some((pid, names))
}

/// If `pid` is an LXC monitor: the container's init (its first child) and the container's name.
fn monitored(pid: u32) -> Option<(u32, Vec<String>)> {
    let comm = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim_ascii_end() != b"lxc-start" {
        return None;
    }
    let name = lxc::monitor_name(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)?;
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let init = children.split_whitespace().next()?.parse().ok()?;
    Some((init, vec![name]))
}
