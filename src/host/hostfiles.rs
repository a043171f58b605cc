//! Keeps the two host files in step with the guest ports on OVS: the nmstate file and the managed
//! block of the interfaces file. Written only after OVS committed the state they describe, and
//! only when their bytes change.
//!
//! `apply` renders both from the full state. `plug` knows only its own port, so it reads the
//! ports the files already record, replaces or adds its one entry and renders again; the files
//! lock makes that read-modify-write atomic against concurrent plugs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow};

use crate::config::Config;
use crate::decide::plan::PortAfter;
use crate::decide::vlan::Vlan;
use crate::decide::{interfaces, nmstate};
use crate::host::{files, lock};

/// Largest interfaces file this tool edits; a larger one is refused untouched.
pub const MAX_INTERFACES_BYTES: u64 = 1024 * 1024;

/// A guest port as both files describe it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub name: String,
    pub bridge: String,
    pub vlan: Vlan,
    /// Carries the ownership mark (restored by the interfaces stanza).
    pub owned: bool,
}

/// What a file update did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub nmstate: bool,
    pub interfaces: bool,
}

/// The host-file entries for the ports OVS holds once a plan is committed: the ports whose name
/// is a guest NIC present on the host.
pub fn entries(
    ports: &BTreeMap<String, PortAfter>,
    is_guest_nic: impl Fn(&str) -> bool,
) -> Vec<HostPort> {
    ports
        .iter()
        .filter(|(name, _)| is_guest_nic(name))
        .map(|(name, p)| HostPort {
            name: name.clone(),
            bridge: p.bridge.clone(),
            vlan: p.vlan.clone(),
            owned: p.owned,
        })
        .collect()
}

/// Renders both files from `ports`.
pub fn sync(config: &Config, ports: &[HostPort]) -> anyhow::Result<Written> {
    let _files = lock::files(&config.run_dir)?;
    write_all(config, ports)
}

/// Adds or replaces `port` in what the files already record.
pub fn upsert(config: &Config, port: HostPort) -> anyhow::Result<Written> {
    let _files = lock::files(&config.run_dir)?;
    let mut ports = recorded(config)?;
    ports.retain(|p| p.name != port.name);
    ports.push(port);
    write_all(config, &ports)
}

/// Removes the managed block and the nmstate file.
pub fn clear(config: &Config) -> anyhow::Result<Written> {
    let _files = lock::files(&config.run_dir)?;
    let mut written = Written::default();
    if let Some(path) = &config.interfaces_file {
        if let Some(content) = read_interfaces(path)? {
            let new = interfaces::splice(&content, None).map_err(|e| marker_error(path, e))?;
            written.interfaces = files::write_if_changed(path, &new)?;
        }
    }
    if let Some(path) = &config.nmstate_file {
        written.nmstate = files::remove(path)?;
    }
    Ok(written)
}

/// The ports the files record now: the interfaces block when it is enabled (it carries the
/// ownership mark too), the nmstate file otherwise.
fn recorded(config: &Config) -> anyhow::Result<Vec<HostPort>> {
    if let Some(path) = &config.interfaces_file {
        return match read_interfaces(path)? {
            Some(content) => interfaces::parse_block(&content).map_err(|e| marker_error(path, e)),
            None => Ok(Vec::new()),
        };
    }
    if let Some(path) = &config.nmstate_file {
        if let Some(text) = files::read_optional(path, MAX_INTERFACES_BYTES)? {
            return nmstate::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()));
        }
    }
    Ok(Vec::new())
}

/// Writes both files. Each file succeeds or fails on its own, so a damaged interfaces file does
/// not keep the nmstate file stale; any failure is returned after both were tried.
fn write_all(config: &Config, ports: &[HostPort]) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let mut errors = Vec::new();
    if let Some(path) = &config.nmstate_file {
        match files::write_if_changed(path, &nmstate::render(ports, &config.bridge)) {
            Ok(w) => written.nmstate = w,
            Err(e) => errors.push(e),
        }
        if let Some(dir) = path.parent() {
            files::clean_stale_temps(dir);
        }
    }
    if let Some(path) = &config.interfaces_file {
        let result = read_interfaces(path).and_then(|content| {
            let content = content.unwrap_or_default();
            let new = interfaces::splice(&content, Some(&interfaces::render_block(ports)))
                .map_err(|e| marker_error(path, e))?;
            files::write_if_changed(path, &new)
        });
        match result {
            Ok(w) => written.interfaces = w,
            Err(e) => errors.push(e),
        }
        if let Some(dir) = path.parent() {
            files::clean_stale_temps(dir);
        }
    }
    match errors.into_iter().reduce(|a, b| anyhow!("{a:#}; {b:#}")) {
        None => Ok(written),
        Some(e) => Err(e),
    }
}

fn read_interfaces(path: &Path) -> anyhow::Result<Option<String>> {
    files::read_optional(path, MAX_INTERFACES_BYTES)
        .with_context(|| format!("{} was left unchanged", path.display()))
}

fn marker_error(path: &Path, e: interfaces::SpliceError) -> anyhow::Error {
    anyhow!(
        "{}:{}: {}; fix the file by hand, it was left unchanged",
        path.display(),
        e.line,
        e.msg
    )
}
