//! Keeps the host files in step with the guest ports on OVS: the tool's ifupdown2 file
//! (`stanzas_file`) and the nmstate file, and cleans the host's interfaces file of the managed
//! block older versions wrote there. Written only after OVS committed the state they describe,
//! and only when their bytes change. The decisions are the pure core's ([`stanzas`],
//! [`migrate`], [`sources`], [`nmstate`]); this module reads, calls them and writes.
//!
//! `apply` renders from the full state. `plug` knows only its own port, so it reads what the
//! tool's file already lists, replaces its one entry and renders again; the files lock makes that
//! read-modify-write atomic against concurrent plugs. Every update drops the entries whose link
//! is gone (the source host of a live migration never runs `post-stop`).
//!
//! Order matters on a host upgraded from the managed block: ifupdown2 downs an interface that
//! vanishes from its configuration while it remembers it, so a name leaves the interfaces file
//! only once the tool's file (which the interfaces file `source`s) lists it, and it is written
//! first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::config::Config;
use crate::decide::ports::HostPort;
use crate::decide::sources::{self, Sourced};
use crate::decide::stanzas::{self, Listed};
use crate::decide::{migrate, nmstate};
use crate::host::{files, lock};

/// Largest host file this tool reads or edits; a larger one is refused untouched.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// What a file update did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub nmstate: bool,
    pub stanzas: bool,
    /// The interfaces file (or its pending `.new`) was cleaned of old stanzas.
    pub interfaces: bool,
}

impl Written {
    /// The names of the files written, for the summary line.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.stanzas, "stanzas"),
            (self.nmstate, "nmstate"),
            (self.interfaces, "interfaces"),
        ]
        .into_iter()
        .filter_map(|(w, n)| w.then_some(n))
        .collect()
    }
}

/// What the update is.
pub enum Update<'a> {
    /// `apply`: these are all the guest ports on OVS.
    All(&'a [HostPort]),
    /// `plug`: this one NIC is now `port` (or no guest port on OVS: `None`); the rest as listed.
    One {
        name: &'a str,
        port: Option<HostPort>,
    },
    /// `clear`: no guest port is listed any more.
    Clear,
}

/// Brings the files in step. `exists` says whether a link exists on the host now.
pub fn update(
    config: &Config,
    update: Update<'_>,
    exists: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Written> {
    let _files = lock::files(&config.run_dir)?;
    let mut written = Written::default();
    let mut errors = Vec::new();

    let previous = read_listed(config);
    let migrated = match migrate_interfaces(config) {
        Ok(m) => m,
        Err(e) => {
            errors.push(e);
            Pending::default()
        }
    };

    // What the tool's file lists from now on.
    let mut ports: Vec<HostPort> = match &update {
        Update::All(ports) => ports.to_vec(),
        Update::One { name, port } => previous
            .ports
            .iter()
            .filter(|p| p.name != *name)
            .cloned()
            .chain(port.clone())
            .collect(),
        Update::Clear => Vec::new(),
    };
    ports.retain(|p| exists(&p.name));
    let on_ovs: BTreeSet<&str> = ports.iter().map(|p| p.name.as_str()).collect();
    let neutral: Vec<String> = previous
        .names()
        .chain(migrated.removed.iter().map(String::as_str))
        .filter(|n| !on_ovs.contains(n) && exists(n))
        .map(String::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let listed = Listed { ports, neutral };

    if let Some(path) = &config.stanzas_file {
        let result = if matches!(update, Update::Clear) && listed.is_empty() {
            files::remove(path)
        } else {
            files::write_if_changed(path, &stanzas::render(&listed))
        };
        match result {
            Ok(w) => written.stanzas = w,
            Err(e) => errors.push(e),
        }
        clean_temps(path);
    }
    // Only now that the tool's file lists them may the names leave the interfaces file.
    match migrated.write() {
        Ok(w) => written.interfaces = w,
        Err(e) => errors.push(e),
    }
    if let Some(path) = &config.nmstate_file {
        let refused = nmstate::applied_at_boot(path) && nmstate_service_enabled();
        if refused {
            log::warn!(
                "{}: not written, and removed if it was there: nmstate.service is enabled and would apply it at boot, detaching every other port of the guests' bridges; set nmstate_file to a path outside {}",
                path.display(),
                nmstate::SERVICE_DIR
            );
        }
        let result = match update {
            Update::Clear => files::remove(path),
            _ if refused => files::remove(path),
            _ => files::write_if_changed(path, &nmstate::render(&listed.ports, &config.bridge)),
        };
        match result {
            Ok(w) => written.nmstate = w,
            Err(e) => errors.push(e),
        }
        clean_temps(path);
    }
    match errors.into_iter().reduce(|a, b| anyhow!("{a:#}; {b:#}")) {
        None => Ok(written),
        Some(e) => Err(e),
    }
}

/// What the tool's file (or, with that disabled, the nmstate file) lists now. A damaged file is
/// reported and rendered anew from what the run knows.
fn read_listed(config: &Config) -> Listed {
    let read = |path: &Path| files::read_optional(path, MAX_BYTES);
    if let Some(path) = &config.stanzas_file {
        return match read(path) {
            Ok(Some(text)) => stanzas::parse(&text).unwrap_or_else(|e| {
                log::warn!(
                    "{}:{}: {}; the file is written anew",
                    path.display(),
                    e.line,
                    e.msg
                );
                Listed::default()
            }),
            Ok(None) => Listed::default(),
            Err(e) => {
                log::warn!("{e:#}; the file is written anew");
                Listed::default()
            }
        };
    }
    if let Some(path) = &config.nmstate_file {
        if let Ok(Some(text)) = read(path) {
            match nmstate::parse(&text) {
                Ok(ports) => {
                    return Listed {
                        ports,
                        neutral: Vec::new(),
                    };
                }
                Err(e) => log::warn!("{}: {e}; the file is written anew", path.display()),
            }
        }
    }
    Listed::default()
}

/// The cleaned interfaces file and pending `.new`, to be written once the tool's file is.
#[derive(Default)]
struct Pending {
    writes: Vec<(PathBuf, String)>,
    /// Names whose stanzas leave the interfaces file (or `.new`).
    removed: Vec<String>,
}

impl Pending {
    fn write(self) -> anyhow::Result<bool> {
        let mut written = false;
        for (path, content) in self.writes {
            written |= files::write_if_changed(&path, &content)?;
            clean_temps(&path);
        }
        Ok(written)
    }
}

/// Decides the cleaning of the interfaces file and of a pending `interfaces.new` (Proxmox's GUI
/// writes changes there; "Apply Configuration" renames it over the interfaces file, so a stanza
/// left in it would come back). Each is cleaned only when it `source`s the tool's file, so that
/// no name ever vanishes from ifupdown2's configuration; otherwise the old stanzas stay and a
/// warning says which line to add.
fn migrate_interfaces(config: &Config) -> anyhow::Result<Pending> {
    let mut pending = Pending::default();
    let Some(main) = &config.interfaces_file else {
        return Ok(pending);
    };
    let new = PathBuf::from(format!("{}.new", main.display()));
    for path in [main, &new] {
        let Some(content) = files::read_optional(path, MAX_BYTES)
            .with_context(|| format!("{} was left unchanged", path.display()))?
        else {
            continue;
        };
        let cleaned = migrate::clean(&content, |name| config.is_candidate(name));
        for (line, name) in &cleaned.unmarked {
            log::warn!(
                "{}:{line}: the stanza of {name} looks like a guest port but carries no mark of this tool; left in place (remove it in the Proxmox GUI or by hand if a guest owns {name}: ifreload -a replays its VLAN)",
                path.display()
            );
        }
        let Some(ours) = &config.stanzas_file else {
            if !cleaned.removed.is_empty() {
                log::warn!(
                    "{}: holds stanzas an older ovs-autoattach wrote; left in place because stanzas_file is disabled",
                    path.display()
                );
            }
            continue;
        };
        match sources::sourced(&content, ours) {
            Sourced::Yes(_) => {}
            other => {
                let why = match other {
                    Sourced::DirectoryOnly(line) => {
                        format!("line {line} has source-directory, which ifupdown2 does not read")
                    }
                    _ => "no source line reads it".to_string(),
                };
                // The pending file says nothing about today's configuration: only the live one
                // earns the warning.
                if path == main {
                    log::warn!(
                        "{}: ifupdown2 does not read {} ({why}); add the line `{}` to {}{}",
                        main.display(),
                        ours.display(),
                        sources::line_to_add(ours),
                        main.display(),
                        if cleaned.removed.is_empty() {
                            String::new()
                        } else {
                            "; until then the stanzas an older version wrote there are left in place".into()
                        }
                    );
                }
                continue;
            }
        }
        if cleaned.changed(&content) {
            if !cleaned.removed.is_empty() {
                log::info!(
                    "{}: moving the stanzas of {} to {}",
                    path.display(),
                    cleaned.removed.join(", "),
                    ours.display()
                );
            }
            pending.removed.extend(cleaned.removed);
            pending.writes.push((path.clone(), cleaned.content));
        }
    }
    Ok(pending)
}

/// Whether systemd would start nmstate's `nmstate.service`: an enablement link of it in some
/// `*.wants` or `*.requires` directory under `/etc/systemd/system` (overridable with
/// `OVS_AUTOATTACH_SYSTEMD_DIR`, for tests). The boot unit runs `Before=nmstate.service`, so the
/// file is gone before that service looks.
fn nmstate_service_enabled() -> bool {
    let root = std::env::var_os("OVS_AUTOATTACH_SYSTEMD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/systemd/system"));
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return false;
    };
    dirs.flatten().any(|d| {
        let name = d.file_name();
        let name = name.to_string_lossy();
        (name.ends_with(".wants") || name.ends_with(".requires"))
            && d.path().join("nmstate.service").symlink_metadata().is_ok()
    })
}

fn clean_temps(path: &Path) {
    if let Some(dir) = path.parent() {
        files::clean_stale_temps(dir);
    }
}
