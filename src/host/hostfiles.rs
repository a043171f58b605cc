//! Keeps the host files in step with the guest ports on OVS: the tool's ifupdown2 file
//! (`stanzas_file`) and the nmstate file, and cleans the host's interfaces file of the managed
//! block older versions wrote there. Written only after OVS committed the state they describe,
//! and only when their bytes change.
//!
//! This module locks, reads and writes; every decision is made in [`crate::decide::hostfiles`]
//! from the contents read here. [`update`] takes the files lock, reads the files, has the core
//! plan what they are to hold, and writes them in the order the core admits. [`plan`] stops
//! before the writes, so that `status` can compare exactly what `apply` would write with the
//! bytes on disk.
//!
//! The files lock makes `plug`'s read-modify-write of the tool's file (it knows only its own
//! port) atomic against concurrent plugs.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::decide::config::Config;
use crate::decide::desired::Record;
use crate::decide::hostfiles::{self as decide, Contents, NMSTATE_SERVICE, Progress, Settings};
use crate::decide::hostfiles::{Action, FilesPlan, NoteKind, PlannedFile, Role, Update, Written};
use crate::host::{files, lock};

/// Largest host file this tool reads or edits; a larger one is refused untouched.
pub const MAX_BYTES: u64 = 1024 * 1024;

impl PlannedFile {
    /// Whether the file already is what [`Action`] makes it, so that the update would not touch
    /// it. Reads only.
    pub fn in_sync(&self) -> anyhow::Result<bool> {
        match &self.action {
            Action::Write(content) => files::holds(&self.path, content, links(self.role)),
            Action::Remove => files::exists(&self.path, links(self.role)).map(|exists| !exists),
            Action::Keep => Ok(true),
        }
    }
}

/// Brings the files in step. `exists` says whether a link exists on the host now.
pub fn update(
    config: &Config,
    update: Update<'_>,
    exists: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Written> {
    let _files = lock::files(&config.run_dir)?;
    let plan = plan(config, &update, exists);
    for file in &plan.files {
        for note in &file.notes {
            match note.kind {
                NoteKind::Info => log::info!("{}", file.describe(note)),
                NoteKind::Warning | NoteKind::Refused => log::warn!("{}", file.describe(note)),
            }
        }
    }
    write(plan)
}

/// What [`update`] would do to each file, without writing anything: the files are read, the
/// new contents rendered. The caller holds the files lock (see [`lock::files`]) for a
/// consistent view. `status` compares the result with the files on disk.
pub fn plan(config: &Config, update: &Update<'_>, exists: &dyn Fn(&str) -> bool) -> FilesPlan {
    let is_candidate = |name: &str| config.is_candidate(name);
    let settings = settings(config, &is_candidate);
    let contents = read(&settings);
    decide::plan(&settings, contents, update, exists)
}

/// Where the tool last put each guest port, as its own file lists it (or, with that disabled,
/// the nmstate file): see [`decide::record`].
pub fn record(config: &Config) -> Record {
    let is_candidate = |name: &str| config.is_candidate(name);
    let settings = settings(config, &is_candidate);
    decide::record(&settings, read_listing(&settings))
}

fn settings<'a>(config: &'a Config, is_candidate: &'a dyn Fn(&str) -> bool) -> Settings<'a> {
    Settings {
        stanzas_file: config.stanzas_file.as_deref(),
        nmstate_file: config.nmstate_file.as_deref(),
        interfaces_file: config.interfaces_file.as_deref(),
        bridge: &config.bridge,
        is_candidate,
    }
}

/// Reads every file an update plans from: the listing, the interfaces file and its pending
/// `.new`, and whether nmstate's service is enabled. A file that is not configured reads as
/// missing.
fn read(settings: &Settings<'_>) -> Contents {
    Contents {
        listing: read_listing(settings),
        interfaces: read_file(settings.interfaces_file, Role::Interfaces),
        pending: read_file(settings.pending_file().as_deref(), Role::PendingInterfaces),
        nmstate_service_enabled: settings.nmstate_file.is_some() && nmstate_service_enabled(),
    }
}

fn read_listing(settings: &Settings<'_>) -> decide::Read {
    settings
        .listing()
        .map_or(Ok(None), |(role, path)| read_file(Some(path), role))
}

fn read_file(path: Option<&Path>, role: Role) -> decide::Read {
    match path {
        Some(path) => {
            files::read_optional(path, MAX_BYTES, links(role)).map_err(|e| format!("{e:#}"))
        }
        None => Ok(None),
    }
}

/// How [`files`] treats a symbolic link at the file's path ([`Role::follows_links`]).
fn links(role: Role) -> files::Links {
    if role.follows_links() {
        files::Links::Follow
    } else {
        files::Links::Refuse
    }
}

/// Carries out a plan in its order. Every file [`Progress`] admits is attempted; the errors are
/// reported together.
fn write(plan: FilesPlan) -> anyhow::Result<Written> {
    let mut errors: Vec<anyhow::Error> = plan
        .files
        .iter()
        .filter_map(|f| f.error.as_ref().map(|e| anyhow!("{e}")))
        .collect();
    let mut progress = Progress::default();
    for file in &plan.files {
        if !progress.admits(file) {
            continue;
        }
        let result = match &file.action {
            Action::Write(content) => {
                files::write_if_changed(&file.path, content, links(file.role))
            }
            Action::Remove => files::remove(&file.path, links(file.role)),
            Action::Keep => continue,
        };
        match result {
            Ok(changed) => progress.done(file.role, changed),
            Err(e) => {
                progress.failed(file.role);
                errors.push(e);
            }
        }
        clean_temps(&file.path);
    }
    match errors.into_iter().reduce(|a, b| anyhow!("{a:#}; {b:#}")) {
        None => Ok(progress.written),
        Some(e) => Err(e),
    }
}

/// Whether systemd would start nmstate's `nmstate.service`: an enablement link of it in some
/// directory under `/etc/systemd/system` (overridable with `OVS_AUTOATTACH_SYSTEMD_DIR`, for
/// tests) that [`decide::enables`]. The boot unit runs `Before=nmstate.service`, so the file is
/// gone before that service looks.
fn nmstate_service_enabled() -> bool {
    let root = std::env::var_os("OVS_AUTOATTACH_SYSTEMD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/systemd/system"));
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return false;
    };
    dirs.flatten().any(|d| {
        decide::enables(&d.file_name().to_string_lossy())
            && d.path().join(NMSTATE_SERVICE).symlink_metadata().is_ok()
    })
}

fn clean_temps(path: &Path) {
    if let Some(dir) = path.parent() {
        files::clean_stale_temps(dir);
    }
}
