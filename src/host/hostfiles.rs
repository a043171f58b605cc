//! Keeps the host files in step with the guest ports on OVS: the tool's ifupdown2 file
//! (`stanzas_file`) and the nmstate file, and cleans the host's interfaces file of the managed
//! block older versions wrote there. Written only after OVS committed the state they describe,
//! and only when their bytes change. The decisions are the pure core's ([`stanzas`],
//! [`migrate`], [`sources`], [`nmstate`]); this module reads, calls them and writes.
//!
//! [`update`] is [`plan`] then the writes: [`plan`] reads the files and renders what they are to
//! hold, and writes nothing, so that `status` can compare exactly what `apply` would write with
//! the bytes on disk.
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
use crate::decide::desired::Record;
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

/// Which host file a [`PlannedFile`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The tool's own ifupdown2 file (`stanzas_file`).
    Stanzas,
    /// The host's interfaces file (`interfaces_file`): checked for the `source` line, cleaned of
    /// what older versions wrote.
    Interfaces,
    /// A pending `<interfaces_file>.new` (a Proxmox GUI change not yet applied), cleaned alike.
    PendingInterfaces,
    /// The nmstate file (`nmstate_file`).
    Nmstate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Stanzas => "stanzas",
            Role::Interfaces => "interfaces",
            Role::PendingInterfaces => "interfaces.new",
            Role::Nmstate => "nmstate",
        }
    }

    /// What a symbolic link at the file's path means: the tool's own files are never written
    /// through one; Proxmox's interfaces file is, as it always was.
    pub fn links(self) -> files::Links {
        match self {
            Role::Stanzas | Role::Nmstate => files::Links::Refuse,
            Role::Interfaces | Role::PendingInterfaces => files::Links::Follow,
        }
    }
}

/// What an update does to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The file is to hold exactly these bytes (written only if it does not already).
    Write(String),
    /// The file is to be gone (removed if it exists).
    Remove,
    /// The file is left as it is.
    Keep,
}

/// How an update reports a [`Note`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// Logged at info level: what the write does.
    Info,
    /// Logged as a warning; the update deals with it (a damaged file is written anew).
    Warning,
    /// Logged as a warning on every run: the update cannot bring the file in step by itself and
    /// an admin has to act (`status` reports the file as refused).
    Refused,
}

/// Something an update says about a file, logged as `PATH[:LINE]: TEXT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    pub line: Option<usize>,
    pub text: String,
}

impl Note {
    fn new(kind: NoteKind, line: Option<usize>, text: impl Into<String>) -> Note {
        Note {
            kind,
            line,
            text: text.into(),
        }
    }
}

/// One host file and what an update does to it.
#[derive(Clone, Debug)]
pub struct PlannedFile {
    pub role: Role,
    pub path: PathBuf,
    pub action: Action,
    pub notes: Vec<Note>,
    /// The line the interfaces file lacks for ifupdown2 to read the tool's file (then a
    /// [`NoteKind::Refused`] note says so too).
    pub source_line: Option<String>,
    /// The file could not be read: it is left unchanged and the update fails with this.
    pub error: Option<String>,
}

impl PlannedFile {
    fn new(role: Role, path: &Path, action: Action) -> PlannedFile {
        PlannedFile {
            role,
            path: path.to_path_buf(),
            action,
            notes: Vec::new(),
            source_line: None,
            error: None,
        }
    }

    /// A note as the update logs it.
    pub fn describe(&self, note: &Note) -> String {
        match note.line {
            Some(line) => format!("{}:{line}: {}", self.path.display(), note.text),
            None => format!("{}: {}", self.path.display(), note.text),
        }
    }

    /// Whether the file already is what [`Action`] makes it, so that the update would not touch
    /// it. Reads only.
    pub fn in_sync(&self) -> anyhow::Result<bool> {
        match &self.action {
            Action::Write(content) => files::holds(&self.path, content, self.role.links()),
            Action::Remove => files::exists(&self.path, self.role.links()).map(|exists| !exists),
            Action::Keep => Ok(true),
        }
    }
}

/// Every host file an update concerns, in the order it writes them: the tool's file first, so
/// that a name leaves the interfaces file only once the tool's file lists it.
#[derive(Clone, Debug, Default)]
pub struct FilesPlan {
    pub files: Vec<PlannedFile>,
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
    let (previous, damaged) = read_listed(config);
    let (interfaces, removed) = migrate_interfaces(config);

    // What the tool's file lists from now on.
    let mut ports: Vec<HostPort> = match update {
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
        .chain(removed.iter().map(String::as_str))
        .filter(|n| !on_ovs.contains(n) && exists(n))
        .map(String::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let listed = Listed { ports, neutral };

    let mut files = Vec::new();
    if let Some(path) = &config.stanzas_file {
        let action = if matches!(update, Update::Clear) && listed.is_empty() {
            Action::Remove
        } else {
            Action::Write(stanzas::render(&listed))
        };
        files.push(PlannedFile::new(Role::Stanzas, path, action));
    }
    // Only once the tool's file lists them may the names leave the interfaces file.
    files.extend(interfaces);
    if let Some(path) = &config.nmstate_file {
        let refused = nmstate::applied_at_boot(path) && nmstate_service_enabled();
        let action = match update {
            Update::Clear => Action::Remove,
            _ if refused => Action::Remove,
            _ => Action::Write(nmstate::render(&listed.ports, &config.bridge)),
        };
        let mut file = PlannedFile::new(Role::Nmstate, path, action);
        if refused {
            file.notes.push(Note::new(
                NoteKind::Refused,
                None,
                format!(
                    "not written, and removed if it was there: nmstate.service is enabled and would apply it at boot, detaching every other port of the guests' bridges; set nmstate_file to a path outside {}",
                    nmstate::SERVICE_DIR
                ),
            ));
        }
        files.push(file);
    }
    // The damaged file is the one the listing was read from: the tool's file, else nmstate's.
    if let Some(note) = damaged {
        let source = if config.stanzas_file.is_some() {
            Role::Stanzas
        } else {
            Role::Nmstate
        };
        if let Some(file) = files.iter_mut().find(|f| f.role == source) {
            file.notes.insert(0, note);
        }
    }
    FilesPlan { files }
}

/// Carries out a plan in its order. Every file is attempted; the errors are reported together.
/// The interfaces files stop at their first failure.
fn write(plan: FilesPlan) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let mut errors: Vec<anyhow::Error> = plan
        .files
        .iter()
        .filter_map(|f| f.error.as_ref().map(|e| anyhow!("{e}")))
        .collect();
    // The interfaces file (and its pending `.new`) is cleaned only once the tool's own file has
    // been written: a name must never leave ifupdown2's configuration before it is listed in
    // ours. So a failure of the tool's file, or of the interfaces file, holds the rest back.
    let mut interfaces_failed = false;
    for file in &plan.files {
        let interfaces = matches!(file.role, Role::Interfaces | Role::PendingInterfaces);
        if file.error.is_some() || (interfaces && interfaces_failed) {
            interfaces_failed |= file.role == Role::Stanzas;
            continue;
        }
        let result = match &file.action {
            Action::Write(content) => {
                files::write_if_changed(&file.path, content, file.role.links())
            }
            Action::Remove => files::remove(&file.path, file.role.links()),
            Action::Keep => continue,
        };
        match result {
            Ok(w) => match file.role {
                Role::Stanzas => written.stanzas |= w,
                Role::Interfaces | Role::PendingInterfaces => written.interfaces |= w,
                Role::Nmstate => written.nmstate |= w,
            },
            Err(e) => {
                interfaces_failed |= interfaces || file.role == Role::Stanzas;
                errors.push(e);
            }
        }
        clean_temps(&file.path);
    }
    match errors.into_iter().reduce(|a, b| anyhow!("{a:#}; {b:#}")) {
        None => Ok(written),
        Some(e) => Err(e),
    }
}

/// Where the tool last put each guest port, as its own file lists it (or, with that disabled,
/// the nmstate file): [`crate::decide::desired`] reads it to put a lost port back where it was
/// when a pending value makes the guest configuration ambiguous. A damaged or missing file is
/// an empty record.
pub fn record(config: &Config) -> Record {
    read_listed(config)
        .0
        .ports
        .into_iter()
        .map(|p| (p.name, (p.bridge, p.vlan)))
        .collect()
}

/// What the tool's file (or, with that disabled, the nmstate file) lists now. A damaged file is
/// reported (the note) and rendered anew from what the run knows.
fn read_listed(config: &Config) -> (Listed, Option<Note>) {
    // The tool's own files: a symbolic link there reads as nothing (the write refuses it).
    let read = |path: &Path| files::read_optional(path, MAX_BYTES, files::Links::Refuse);
    let anew = |line, msg: String| {
        Some(Note::new(
            NoteKind::Warning,
            line,
            format!("{msg}; the file is written anew"),
        ))
    };
    if let Some(path) = &config.stanzas_file {
        return match read(path) {
            Ok(Some(text)) => match stanzas::parse(&text) {
                Ok(listed) => (listed, None),
                Err(e) => (Listed::default(), anew(Some(e.line), e.msg)),
            },
            Ok(None) => (Listed::default(), None),
            Err(e) => (Listed::default(), anew(None, format!("{e:#}"))),
        };
    }
    if let Some(path) = &config.nmstate_file
        && let Ok(Some(text)) = read(path)
    {
        match nmstate::parse(&text) {
            Ok(ports) => {
                let listed = Listed {
                    ports,
                    neutral: Vec::new(),
                };
                return (listed, None);
            }
            Err(e) => return (Listed::default(), anew(None, e)),
        }
    }
    (Listed::default(), None)
}

/// Decides the cleaning of the interfaces file and of a pending `interfaces.new` (Proxmox's GUI
/// writes changes there; "Apply Configuration" renames it over the interfaces file, so a stanza
/// left in it would come back). Each is cleaned only when it `source`s the tool's file, so that
/// no name ever vanishes from ifupdown2's configuration; otherwise the old stanzas stay and a
/// note says which line to add. Returns the planned files (the interfaces file whenever it is
/// configured, `.new` when it exists) and the names whose stanzas leave them. A file that cannot
/// be read stops the cleaning of both.
fn migrate_interfaces(config: &Config) -> (Vec<PlannedFile>, Vec<String>) {
    let mut planned = Vec::new();
    let mut removed = Vec::new();
    let Some(main) = &config.interfaces_file else {
        return (planned, removed);
    };
    let new = PathBuf::from(format!("{}.new", main.display()));
    for (role, path) in [(Role::Interfaces, main), (Role::PendingInterfaces, &new)] {
        let mut file = PlannedFile::new(role, path, Action::Keep);
        let content = match files::read_optional(path, MAX_BYTES, role.links())
            .with_context(|| format!("{} was left unchanged", path.display()))
        {
            Ok(Some(content)) => content,
            Ok(None) => {
                if role == Role::Interfaces {
                    planned.push(file);
                }
                continue;
            }
            Err(e) => {
                for earlier in &mut planned {
                    earlier.action = Action::Keep;
                }
                file.error = Some(format!("{e:#}"));
                planned.push(file);
                return (planned, Vec::new());
            }
        };
        let cleaned = migrate::clean(&content, |name| config.is_candidate(name));
        for (line, name) in &cleaned.unmarked {
            file.notes.push(Note::new(
                NoteKind::Refused,
                Some(*line),
                format!(
                    "the stanza of {name} looks like a guest port but carries no mark of this tool; left in place (remove it in the Proxmox GUI or by hand if a guest owns {name}: ifreload -a replays its VLAN)"
                ),
            ));
        }
        let Some(ours) = &config.stanzas_file else {
            if !cleaned.removed.is_empty() {
                file.notes.push(Note::new(
                    NoteKind::Refused,
                    None,
                    "holds stanzas an older ovs-autoattach wrote; left in place because stanzas_file is disabled",
                ));
            }
            planned.push(file);
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
                // earns the note.
                if role == Role::Interfaces {
                    let line = sources::line_to_add(ours);
                    file.notes.push(Note::new(
                        NoteKind::Refused,
                        None,
                        format!(
                            "ifupdown2 does not read {} ({why}); add the line `{line}` to {}{}",
                            ours.display(),
                            main.display(),
                            if cleaned.removed.is_empty() {
                                String::new()
                            } else {
                                "; until then the stanzas an older version wrote there are left in place".into()
                            }
                        ),
                    ));
                    file.source_line = Some(line);
                }
                planned.push(file);
                continue;
            }
        }
        if cleaned.changed(&content) {
            if !cleaned.removed.is_empty() {
                file.notes.push(Note::new(
                    NoteKind::Info,
                    None,
                    format!(
                        "moving the stanzas of {} to {}",
                        cleaned.removed.join(", "),
                        ours.display()
                    ),
                ));
            }
            removed.extend(cleaned.removed);
            file.action = Action::Write(cleaned.content);
        }
        planned.push(file);
    }
    (planned, removed)
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
