//! Finding the LXC container a raw NIC belongs to, and reading its configuration (its rules are
//! [`crate::decide::lxc`]).
//!
//! A raw container's NIC is a veth whose peer lives in another network namespace; the kernel
//! reports that namespace as an id of this namespace's (`IFLA_LINK_NETNSID`). A container's
//! processes are found in one pass over `/proc`, two ways, the first preferred:
//!
//! - its LXC monitor (`comm` `lxc-start`, command line `[lxc monitor] <lxcpath> <name>`) is
//!   the parent of the container's init (`/proc/<pid>/task/<pid>/children`). Only a monitor
//!   run by root (real and effective user 0) in this host's PID and network namespaces counts;
//!   the container's lxcpath is the one it names. A monitor of another user is not trusted:
//!   its NIC is placed as one of no container's;
//! - LXC 4 and later run a container's processes in a cgroup v2 directory `lxc.payload.<name>`
//!   (each process's `cgroup` file, kernel-made, a few bytes, read without touching the
//!   process's memory). The outermost such component counts, and only when root owns its
//!   directory (a delegated subtree is its user's), or, where the hierarchy is not mounted in
//!   this mount namespace, when it is at the hierarchy's top; its container lives under
//!   `lxc_path`.
//!
//! One process is kept per network namespace (`/proc/<pid>/ns/net`), and the kernel is asked
//! which id this namespace gives that one (`RTM_GETNSID` with `NETNSA_PID`; a query assigns no
//! id). A NIC whose peer's id is that id belongs to that container. The pass runs only when the
//! host has raw NICs, on a thread of its own that the run waits for at most [`WAIT`], as
//! `host::pve`'s does; the configurations are read on another such thread, as regular files
//! only (a FIFO or a hung network filesystem must not hold the run). A look that does not
//! complete (a thread that does not answer in time, a query that fails, a name LXC would not
//! make) makes the NICs it may concern [`Lookup::Unknown`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::decide::config::Config;
use crate::decide::desired::{Container, Lookup};
use crate::decide::lxc::{self, Claim, Group, Ident, LxcConfig, Payload};
use crate::host::links::{Link, Rtnl};

/// How long a run waits for its pass over `/proc`, and then for the configurations.
const WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Largest container configuration read.
const MAX_BYTES: u64 = 1024 * 1024;

/// The containers of the raw NICs `raw` among the links `all` (this namespace's dump), by NIC:
/// one entry for each.
pub fn containers(
    config: &Config,
    rtnl: &mut Rtnl,
    all: &[Link],
    raw: &BTreeSet<&str>,
) -> BTreeMap<String, Lookup> {
    let nics: Vec<&Link> = all
        .iter()
        .filter(|l| raw.contains(l.name.as_str()))
        .collect();
    let wanted: BTreeSet<i32> = nics.iter().filter_map(|l| l.netnsid).collect();
    if wanted.is_empty() {
        return BTreeMap::new();
    }
    let lxc_path = config.lxc_path.clone();
    let Some(groups) = bounded("lxc-scan", move || scan_proc(&lxc_path)) else {
        let why = format!(
            "reading /proc for LXC containers took more than {} ms",
            WAIT.as_millis()
        );
        log::warn!("{why}");
        return unknown(&nics, &why);
    };
    let (owners, failed) = owners(rtnl, groups, &wanted);
    let idents: Vec<Ident> = owners
        .values()
        .filter_map(|g| match &g.claim {
            Claim::Trusted(ident) => Some(ident.clone()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let read = bounded("lxc-config", move || {
        idents
            .into_iter()
            .map(|ident| {
                let found = chosen(&ident);
                (ident, found)
            })
            .collect::<BTreeMap<_, _>>()
    });
    nics.iter()
        .map(|l| {
            let lookup = match l.netnsid.and_then(|id| owners.get(&id)) {
                None => failed.clone().map_or(Lookup::NoContainer, Lookup::Unknown),
                Some(g) => lookup(all, l, g, read.as_ref()),
            };
            (l.name.clone(), lookup)
        })
        .collect()
}

/// Every NIC of `nics` unknown, for `why`.
fn unknown(nics: &[&Link], why: &str) -> BTreeMap<String, Lookup> {
    nics.iter()
        .map(|l| (l.name.clone(), Lookup::Unknown(why.to_string())))
        .collect()
}

/// The group of processes whose namespace has each wanted id, and why the look is incomplete
/// when a namespace's id could not be asked for.
fn owners(
    rtnl: &mut Rtnl,
    groups: Vec<Group>,
    wanted: &BTreeSet<i32>,
) -> (BTreeMap<i32, Group>, Option<String>) {
    let mut owners: BTreeMap<i32, Group> = BTreeMap::new();
    let mut failed = None;
    for group in groups {
        match rtnl.nsid_of_pid(group.pid) {
            Ok(Some(id)) if wanted.contains(&id) => match owners.get(&id) {
                Some(have) if have.claim.rank() <= group.claim.rank() => {}
                _ => {
                    owners.insert(id, group);
                }
            },
            Ok(_) => {}
            Err(e) => {
                log::debug!("the network namespace of process {}: {e:#}", group.pid);
                failed = Some(format!(
                    "the network namespace of process {} could not be asked for: {e:#}",
                    group.pid
                ));
            }
        }
    }
    (owners, failed)
}

/// NIC `nic`'s container, from the processes of its peer's namespace.
fn lookup(
    all: &[Link],
    nic: &Link,
    group: &Group,
    read: Option<&BTreeMap<Ident, Chosen>>,
) -> Lookup {
    let ident = match &group.claim {
        Claim::Trusted(ident) => ident,
        Claim::Refused(why) => return Lookup::Unknown(why.clone()),
        Claim::Untrusted(why) => {
            log::debug!("{}: {why}; placed as no container's NIC", nic.name);
            return Lookup::NoContainer;
        }
    };
    let Some((name, path, config)) = read.and_then(|r| r.get(ident)).cloned() else {
        return Lookup::Unknown(format!(
            "reading the configuration of LXC container {} took more than {} ms",
            ident.names.first().map_or("", String::as_str),
            WAIT.as_millis()
        ));
    };
    Lookup::Found(Container {
        name,
        path: path.display().to_string(),
        starting: group.starting,
        config,
        siblings: nic.netnsid.map_or_else(Vec::new, |id| siblings(all, id)),
    })
}

/// Runs `work` on a thread of its own and waits for it at most [`WAIT`]: `None` when it does
/// not answer in time (the thread is left to finish or hang on its own).
fn bounded<T: Send + 'static>(name: &str, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .ok()?;
    rx.recv_timeout(WAIT).ok()
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

/// A container's name, configuration path and configuration.
type Chosen = (String, PathBuf, Result<Option<LxcConfig>, String>);

/// The container among `ident`'s candidate names: the first that has a configuration, else the
/// first.
fn chosen(ident: &Ident) -> Chosen {
    let path_of = |name: &str| ident.lxc_path.join(name).join("config");
    let name = ident
        .names
        .iter()
        .find(|n| path_of(n).exists())
        .or(ident.names.first())
        .cloned()
        .unwrap_or_default();
    let path = path_of(&name);
    let config = read(&path);
    (name, path, config)
}

/// A container configuration: `Ok(None)` when there is none. Only a regular file is read (a
/// FIFO would block; the open does not), and at most [`MAX_BYTES`] of it.
fn read(path: &Path) -> Result<Option<LxcConfig>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{} is larger than any container configuration ({MAX_BYTES} bytes)",
            path.display()
        ));
    }
    Ok(Some(LxcConfig::parse(&String::from_utf8_lossy(&bytes))))
}

/// The processes that claim a container, grouped by network namespace.
fn scan_proc(lxc_path: &Path) -> Vec<Group> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = Own::read();
    let cgroup_root = cgroup2_root();
    let mut claims = lxc::Claims::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((children, claim)) = monitored(pid, &own) {
            for child in children {
                lxc::record(&mut claims, child, claim.clone(), true);
            }
        } else if let Some(claim) = payload(&entry.path(), cgroup_root.as_deref(), lxc_path) {
            lxc::record(&mut claims, pid, claim, false);
        }
    }
    let seen = claims
        .into_iter()
        .filter_map(|(pid, (claim, from_monitor))| {
            let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
            let setting_up = std::fs::read(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_ascii_end() == b"lxc-start");
            Some(lxc::Seen {
                pid,
                claim,
                from_monitor,
                netns: netns.to_string_lossy().into_owned(),
                setting_up,
            })
        })
        .collect();
    lxc::groups(seen)
}

/// This process's PID and network namespaces, which a trusted monitor shares.
struct Own {
    pid_ns: Option<PathBuf>,
    net_ns: Option<PathBuf>,
}

impl Own {
    fn read() -> Own {
        Own {
            pid_ns: std::fs::read_link("/proc/self/ns/pid").ok(),
            net_ns: std::fs::read_link("/proc/self/ns/net").ok(),
        }
    }
}

/// If `pid` is an LXC monitor: its children (the container's init among them) and what it
/// claims.
fn monitored(pid: u32, own: &Own) -> Option<(Vec<u32>, Claim)> {
    let comm = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim_ascii_end() != b"lxc-start" {
        return None;
    }
    let (lxc_path, name) = lxc::monitor(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)?;
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let children: Vec<u32> = children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    let ns = |kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
    let on_host = own.pid_ns.is_some() && ns("pid") == own.pid_ns && ns("net") == own.net_ns;
    let claim = lxc::monitor_claim(pid, &lxc_path, &name, run_by_root(pid), on_host);
    Some((children, claim))
}

/// Whether process `pid`'s real and effective user are root (`/proc/<pid>/status`).
fn run_by_root(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() >= 2 && ids[0] == "0" && ids[1] == "0"
        })
}

/// What the cgroup v2 line of process `dir`'s `cgroup` file claims, if it runs in an LXC
/// payload cgroup: trusted when root owns that cgroup's directory under `cgroup_root`, or,
/// where the hierarchy cannot be looked at, when it is at its top (only the host's root makes
/// cgroups there; a delegated subtree lies deeper).
fn payload(dir: &Path, cgroup_root: Option<&Path>, lxc_path: &Path) -> Option<Claim> {
    use std::os::unix::fs::MetadataExt;
    let cgroup = std::fs::read(dir.join("cgroup")).ok()?;
    let text = String::from_utf8_lossy(&cgroup);
    let line = text.lines().find(|l| l.starts_with("0::"))?;
    let payload = lxc::payload(line)?;
    let owner = match &payload {
        Payload::Named { dir, .. } => cgroup_root
            .and_then(|root| std::fs::metadata(root.join(dir.trim_start_matches('/'))).ok())
            .map(|m| m.uid()),
        Payload::Refused(_) => None,
    };
    Some(lxc::payload_claim(payload, owner, lxc_path))
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid host); through init's root (`/proc/1/root/...`) when this process's mount namespace
/// has none (`ip netns exec` mounts a sysfs of its own over `/sys`).
fn cgroup2_root() -> Option<PathBuf> {
    let mounted = |mounts: &str| {
        let text = std::fs::read_to_string(mounts).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
    };
    mounted("/proc/self/mounts").or_else(|| {
        let at = mounted("/proc/1/mounts")?;
        Some(Path::new("/proc/1/root").join(at.strip_prefix("/").ok()?))
    })
}
