//! What the host files are to hold after an update, and what is said about them. The adapter
//! (`host::hostfiles`) takes the files lock, reads the files, calls [`plan`], and writes in the
//! order [`Progress`] admits; every rule is here:
//!
//! - The tool's file lists the guest ports on OVS whose link exists, and keeps every other name
//!   it listed, or that leaves the interfaces file, with a neutral stanza while its link exists:
//!   ifupdown2 downs an interface that vanishes from its configuration while it remembers it.
//! - `apply` gives the full state; `plug` knows only its own port, so the entry of its one NIC is
//!   replaced in what the file already lists ([`Update`]). `clear` removes the files.
//! - A listing that cannot be parsed is reported and written anew from what the run knows.
//! - The nmstate file is refused (not written, and removed) where `nmstate.service` would apply it
//!   at boot.
//! - The interfaces file, and a pending `interfaces.new`, are cleaned of what older versions
//!   wrote only when the interfaces file `source`s the tool's file, and only once the tool's file
//!   has been written; otherwise a note says which line to add.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::decide::desired::Record;
use crate::decide::migrate;
use crate::decide::nmstate;
use crate::decide::ports::HostPort;
use crate::decide::sources::{self, Sourced};
use crate::decide::stanzas::{self, Listed};

/// The unit whose enablement makes the nmstate file dangerous (see [`nmstate::applied_at_boot`]).
pub const NMSTATE_SERVICE: &str = "nmstate.service";

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

    /// Whether the file is read and written through a symbolic link at its path: the tool's own
    /// files never are (a link there reads as missing and is refused for writing); Proxmox's
    /// interfaces file is, as it always was.
    pub fn follows_links(self) -> bool {
        match self {
            Role::Stanzas | Role::Nmstate => false,
            Role::Interfaces | Role::PendingInterfaces => true,
        }
    }

    /// The interfaces file or its pending `.new`: Proxmox's files, which the tool only cleans.
    fn is_interfaces(self) -> bool {
        matches!(self, Role::Interfaces | Role::PendingInterfaces)
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

/// One host file and what an update does to it. Whether the disk already holds that
/// (`in_sync`) is the adapter's to find out, as it reads.
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
}

/// Every host file an update concerns, in the order it writes them: the tool's file first, so
/// that a name leaves the interfaces file only once the tool's file lists it.
#[derive(Clone, Debug, Default)]
pub struct FilesPlan {
    pub files: Vec<PlannedFile>,
}

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

/// Where the host files are (`None`: disabled), and the settings that shape what they hold.
pub struct Settings<'a> {
    pub stanzas_file: Option<&'a Path>,
    pub nmstate_file: Option<&'a Path>,
    pub interfaces_file: Option<&'a Path>,
    /// The bridge the nmstate file always declares.
    pub bridge: &'a str,
    /// Whether a name may be a guest NIC's (the configured prefixes, include and exclude): only
    /// such stanzas are taken out of the interfaces file.
    pub is_candidate: &'a dyn Fn(&str) -> bool,
}

impl Settings<'_> {
    /// The file the current listing is read from: the tool's file, or, with that disabled, the
    /// nmstate file. A damaged one is the file its note goes to.
    pub fn listing(&self) -> Option<(Role, &Path)> {
        match (self.stanzas_file, self.nmstate_file) {
            (Some(path), _) => Some((Role::Stanzas, path)),
            (None, Some(path)) => Some((Role::Nmstate, path)),
            (None, None) => None,
        }
    }

    /// Proxmox's pending interfaces file, `<interfaces_file>.new`.
    pub fn pending_file(&self) -> Option<PathBuf> {
        self.interfaces_file
            .map(|main| PathBuf::from(format!("{}.new", main.display())))
    }
}

/// A host file as read: `Ok(None)` when it does not exist (or, for the tool's own files, is a
/// symbolic link), `Err` with the reason it could not be read.
pub type Read = Result<Option<String>, String>;

/// The host files as read under the files lock, and what the host says about them.
#[derive(Clone, Debug)]
pub struct Contents {
    /// The file [`Settings::listing`] names.
    pub listing: Read,
    /// The interfaces file and its pending `.new`.
    pub interfaces: Read,
    pub pending: Read,
    /// Whether systemd would start [`NMSTATE_SERVICE`]: an enablement link of it in some
    /// directory that [`enables`].
    pub nmstate_service_enabled: bool,
}

/// Whether a unit linked into the directory `name` (under `/etc/systemd/system`) is started:
/// a `*.wants` or `*.requires` directory.
pub fn enables(name: &str) -> bool {
    name.ends_with(".wants") || name.ends_with(".requires")
}

/// What the listing (read from the file [`Settings::listing`] names) lists now. A damaged tool's
/// file is reported (the note) and rendered anew from what the run knows; a damaged or
/// unreadable nmstate file reads as empty, an unreadable tool's file is reported likewise.
pub fn listed(settings: &Settings<'_>, read: Read) -> (Listed, Option<Note>) {
    let anew = |line, msg: String| {
        Some(Note::new(
            NoteKind::Warning,
            line,
            format!("{msg}; the file is written anew"),
        ))
    };
    match (settings.listing(), read) {
        (Some((Role::Stanzas, _)), Ok(Some(text))) => match stanzas::parse(&text) {
            Ok(listed) => (listed, None),
            Err(e) => (Listed::default(), anew(Some(e.line), e.msg)),
        },
        (Some((Role::Stanzas, _)), Err(e)) => (Listed::default(), anew(None, e)),
        (Some((Role::Nmstate, _)), Ok(Some(text))) => match nmstate::parse(&text) {
            Ok(ports) => {
                let listed = Listed {
                    ports,
                    neutral: Vec::new(),
                };
                (listed, None)
            }
            Err(e) => (Listed::default(), anew(None, e)),
        },
        _ => (Listed::default(), None),
    }
}

/// Where the tool last put each guest port, as the listing says: [`crate::decide::desired`]
/// reads it to put a lost port back where it was when a pending value makes the guest
/// configuration ambiguous. A damaged or missing file is an empty record.
pub fn record(settings: &Settings<'_>, read: Read) -> Record {
    listed(settings, read)
        .0
        .ports
        .into_iter()
        .map(|p| (p.name, (p.bridge, p.vlan)))
        .collect()
}

/// What every file is to hold after `update`, from the files as read. `exists` says whether a
/// link exists on the host now: an entry whose link is gone is dropped (the source host of a
/// live migration never runs `post-stop`).
pub fn plan(
    settings: &Settings<'_>,
    contents: Contents,
    update: &Update<'_>,
    exists: &dyn Fn(&str) -> bool,
) -> FilesPlan {
    let (previous, damaged) = listed(settings, contents.listing);
    let (interfaces, removed) = migrate_interfaces(settings, contents.interfaces, contents.pending);
    let listed = listed_after(&previous, &removed, update, exists);

    let mut files = Vec::new();
    if let Some(path) = settings.stanzas_file {
        let action = if matches!(update, Update::Clear) && listed.is_empty() {
            Action::Remove
        } else {
            Action::Write(stanzas::render(&listed))
        };
        files.push(PlannedFile::new(Role::Stanzas, path, action));
    }
    // Only once the tool's file lists them may the names leave the interfaces file.
    files.extend(interfaces);
    if let Some(path) = settings.nmstate_file {
        let refused = nmstate::applied_at_boot(path) && contents.nmstate_service_enabled;
        let action = match update {
            Update::Clear => Action::Remove,
            _ if refused => Action::Remove,
            _ => Action::Write(nmstate::render(&listed.ports, settings.bridge)),
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
    // The damaged file is the one the listing was read from.
    if let Some(note) = damaged
        && let Some((source, _)) = settings.listing()
        && let Some(file) = files.iter_mut().find(|f| f.role == source)
    {
        file.notes.insert(0, note);
    }
    FilesPlan { files }
}

/// What the tool's file lists from now on: the guest ports after `update` whose link exists,
/// and, as neutral names (sorted, once each), every other name the file listed or that leaves
/// the interfaces file (`removed`) while its link exists.
fn listed_after(
    previous: &Listed,
    removed: &[String],
    update: &Update<'_>,
    exists: &dyn Fn(&str) -> bool,
) -> Listed {
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
    Listed { ports, neutral }
}

/// Decides the cleaning of the interfaces file and of a pending `interfaces.new` (Proxmox's GUI
/// writes changes there; "Apply Configuration" renames it over the interfaces file, so a stanza
/// left in it would come back). Each is cleaned only when it `source`s the tool's file, so that
/// no name ever vanishes from ifupdown2's configuration; otherwise the old stanzas stay and a
/// note says which line to add. Returns the planned files (the interfaces file whenever it is
/// configured, `.new` when it exists) and the names whose stanzas leave them. A file that could
/// not be read stops the cleaning of both.
fn migrate_interfaces(
    settings: &Settings<'_>,
    interfaces: Read,
    pending: Read,
) -> (Vec<PlannedFile>, Vec<String>) {
    let mut planned = Vec::new();
    let mut removed = Vec::new();
    let (Some(main), Some(new)) = (settings.interfaces_file, settings.pending_file()) else {
        return (planned, removed);
    };
    for (role, path, read) in [
        (Role::Interfaces, main, interfaces),
        (Role::PendingInterfaces, new.as_path(), pending),
    ] {
        let mut file = PlannedFile::new(role, path, Action::Keep);
        let content = match read {
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
                file.error = Some(format!("{} was left unchanged: {e}", path.display()));
                planned.push(file);
                return (planned, Vec::new());
            }
        };
        let cleaned = migrate::clean(&content, settings.is_candidate);
        for (line, name) in &cleaned.unmarked {
            file.notes.push(Note::new(
                NoteKind::Refused,
                Some(*line),
                format!(
                    "the stanza of {name} looks like a guest port but carries no mark of this tool; left in place (remove it in the Proxmox GUI or by hand if a guest owns {name}: ifreload -a replays its VLAN)"
                ),
            ));
        }
        let Some(ours) = settings.stanzas_file else {
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

/// Carries a plan out in its order: which files are attempted, given how the earlier ones went,
/// and what was written. The interfaces file (and its pending `.new`) is cleaned only once the
/// tool's own file has been written: a name must never leave ifupdown2's configuration before
/// it is listed in ours. So a failure of the tool's file, or of the interfaces file, holds the
/// rest of the interfaces files back; the nmstate file is written regardless.
#[derive(Debug, Default)]
pub struct Progress {
    held_back: bool,
    /// What was written so far.
    pub written: Written,
}

impl Progress {
    /// Whether `file` is to be written (or removed) now. A file that could not be read is not
    /// ([`PlannedFile::error`]).
    pub fn admits(&mut self, file: &PlannedFile) -> bool {
        if file.error.is_some() || (file.role.is_interfaces() && self.held_back) {
            self.held_back |= file.role == Role::Stanzas;
            return false;
        }
        true
    }

    /// Records a write or removal of the file `role` that succeeded; `changed`: it touched the
    /// file.
    pub fn done(&mut self, role: Role, changed: bool) {
        match role {
            Role::Stanzas => self.written.stanzas |= changed,
            Role::Interfaces | Role::PendingInterfaces => self.written.interfaces |= changed,
            Role::Nmstate => self.written.nmstate |= changed,
        }
    }

    /// Records a write or removal of the file `role` that failed.
    pub fn failed(&mut self, role: Role) {
        self.held_back |= role.is_interfaces() || role == Role::Stanzas;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::nmstate::tests::port;
    use crate::decide::vlan::Vlan;

    const OURS: &str = "/etc/network/interfaces.d/ovs-autoattach";
    const NMSTATE: &str = "/var/lib/ovs-autoattach/guests.yml";
    const INTERFACES: &str = "/etc/network/interfaces";
    const SOURCE: &str = "source /etc/network/interfaces.d/*\n";
    const HEAD: &str = "auto lo\niface lo inet loopback\n";
    /// The managed block an older version wrote into the interfaces file.
    const OLD_BLOCK: &str = "# BEGIN ovs-autoattach\nauto tap100i0\nallow-ovs tap100i0\niface tap100i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_extra set Port tap100i0 external_ids:owner=ovs-autoattach\n# END ovs-autoattach\n";
    /// A guest-shaped stanza without the tool's mark, outside any block.
    const UNMARKED: &str =
        "auto tap300i0\niface tap300i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n";

    fn guest(name: &str) -> bool {
        name.starts_with("tap") || name.starts_with("veth")
    }

    fn settings() -> Settings<'static> {
        Settings {
            stanzas_file: Some(Path::new(OURS)),
            nmstate_file: Some(Path::new(NMSTATE)),
            interfaces_file: Some(Path::new(INTERFACES)),
            bridge: "vmbr0",
            is_candidate: &guest,
        }
    }

    fn contents() -> Contents {
        Contents {
            listing: Ok(None),
            interfaces: Ok(Some(format!("{HEAD}{SOURCE}"))),
            pending: Ok(None),
            nmstate_service_enabled: false,
        }
    }

    fn tap(vmid: u32) -> HostPort {
        port(&format!("tap{vmid}i0"), "vmbr1", Vlan::default())
    }

    fn listing(ports: Vec<HostPort>, neutral: &[&str]) -> Read {
        Ok(Some(stanzas::render(&Listed {
            ports,
            neutral: neutral.iter().map(|n| n.to_string()).collect(),
        })))
    }

    fn all_exist(_: &str) -> bool {
        true
    }

    fn file(plan: &FilesPlan, role: Role) -> &PlannedFile {
        plan.files
            .iter()
            .find(|f| f.role == role)
            .unwrap_or_else(|| panic!("no {} file in {plan:?}", role.as_str()))
    }

    /// What the tool's file lists in `plan`.
    fn ours(plan: &FilesPlan) -> Listed {
        match &file(plan, Role::Stanzas).action {
            Action::Write(text) => stanzas::parse(text).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn texts(file: &PlannedFile, kind: NoteKind) -> Vec<&str> {
        file.notes
            .iter()
            .filter(|n| n.kind == kind)
            .map(|n| n.text.as_str())
            .collect()
    }

    #[test]
    fn roles_and_links() {
        let roles = [
            Role::Stanzas,
            Role::Interfaces,
            Role::PendingInterfaces,
            Role::Nmstate,
        ];
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            ["stanzas", "interfaces", "interfaces.new", "nmstate"]
        );
        let follow: Vec<bool> = roles.iter().map(|r| r.follows_links()).collect();
        assert_eq!(follow, [false, true, true, false]);
    }

    #[test]
    fn the_files_in_their_order_and_a_note_with_its_path() {
        let s = settings();
        let plan_ = plan(&s, contents(), &Update::All(&[tap(100)]), &all_exist);
        let order: Vec<Role> = plan_.files.iter().map(|f| f.role).collect();
        assert_eq!(order, [Role::Stanzas, Role::Interfaces, Role::Nmstate]);
        assert_eq!(
            s.pending_file().unwrap(),
            Path::new("/etc/network/interfaces.new")
        );
        let f = file(&plan_, Role::Stanzas);
        assert_eq!(
            f.describe(&Note::new(NoteKind::Info, Some(3), "x")),
            format!("{OURS}:3: x")
        );
        assert_eq!(
            f.describe(&Note::new(NoteKind::Info, None, "x")),
            format!("{OURS}: x")
        );
        // Disabled files are not planned.
        let s = Settings {
            nmstate_file: None,
            interfaces_file: None,
            ..settings()
        };
        let plan_ = plan(&s, contents(), &Update::All(&[]), &all_exist);
        let order: Vec<Role> = plan_.files.iter().map(|f| f.role).collect();
        assert_eq!(order, [Role::Stanzas]);
    }

    #[test]
    fn apply_lists_the_ports_and_keeps_the_rest_neutral_while_their_link_exists() {
        let c = Contents {
            listing: listing(vec![tap(100), tap(101)], &["tap102i0", "tap103i0"]),
            ..contents()
        };
        let exists = |n: &str| n != "tap103i0" && n != "tap104i0";
        let plan_ = plan(&settings(), c, &Update::All(&[tap(100), tap(104)]), &exists);
        let listed = ours(&plan_);
        assert_eq!(listed.ports, [tap(100)], "a port whose link is gone goes");
        assert_eq!(listed.neutral, ["tap101i0", "tap102i0"]);
        assert_eq!(
            file(&plan_, Role::Stanzas).action,
            Action::Write(stanzas::render(&listed))
        );
        assert_eq!(
            file(&plan_, Role::Nmstate).action,
            Action::Write(nmstate::render(&[tap(100)], "vmbr0"))
        );
    }

    #[test]
    fn plug_replaces_its_one_entry() {
        let c = || Contents {
            listing: listing(vec![tap(100), tap(101)], &["tap102i0"]),
            ..contents()
        };
        let moved = port("tap101i0", "vmbr2", Vlan::proxmox(Some(5), vec![]));
        let update = Update::One {
            name: "tap101i0",
            port: Some(moved.clone()),
        };
        let listed = ours(&plan(&settings(), c(), &update, &all_exist));
        assert_eq!(listed.ports, [tap(100), moved]);
        assert_eq!(listed.neutral, ["tap102i0"]);
        // Off OVS: the name stays, neutral.
        let update = Update::One {
            name: "tap100i0",
            port: None,
        };
        let listed = ours(&plan(&settings(), c(), &update, &all_exist));
        assert_eq!(listed.ports, [tap(101)]);
        assert_eq!(listed.neutral, ["tap100i0", "tap102i0"]);
        // A plug of a name listed neutral puts it back on OVS, listed once.
        let update = Update::One {
            name: "tap102i0",
            port: Some(port("tap102i0", "vmbr1", Vlan::default())),
        };
        let listed = ours(&plan(&settings(), c(), &update, &all_exist));
        assert_eq!(listed.ports, [tap(100), tap(101), tap(102)]);
        assert!(listed.neutral.is_empty());
    }

    #[test]
    fn clear_removes_the_files_unless_a_name_must_stay() {
        let s = settings();
        let gone = |_: &str| false;
        let c = || Contents {
            listing: listing(vec![tap(100)], &["tap102i0"]),
            ..contents()
        };
        let plan_ = plan(&s, c(), &Update::Clear, &gone);
        assert_eq!(file(&plan_, Role::Stanzas).action, Action::Remove);
        assert_eq!(file(&plan_, Role::Nmstate).action, Action::Remove);
        // Links that still exist keep their names, neutral; nmstate's file goes regardless.
        let plan_ = plan(&s, c(), &Update::Clear, &all_exist);
        let listed = ours(&plan_);
        assert!(listed.ports.is_empty());
        assert_eq!(listed.neutral, ["tap100i0", "tap102i0"]);
        assert_eq!(file(&plan_, Role::Nmstate).action, Action::Remove);
    }

    #[test]
    fn a_damaged_listing_is_written_anew_with_a_warning_on_its_file() {
        let c = Contents {
            listing: Ok(Some("iface tap100i0 inet manual\n    bogus\n".into())),
            ..contents()
        };
        let plan_ = plan(&settings(), c, &Update::All(&[tap(101)]), &all_exist);
        let f = file(&plan_, Role::Stanzas);
        assert_eq!(f.notes.len(), 1);
        assert_eq!(f.notes[0].kind, NoteKind::Warning);
        assert_eq!(f.notes[0].line, Some(2));
        assert!(
            f.notes[0].text.ends_with("; the file is written anew"),
            "{:?}",
            f.notes
        );
        assert_eq!(ours(&plan_).ports, [tap(101)]);
        assert!(ours(&plan_).neutral.is_empty());
        assert!(file(&plan_, Role::Nmstate).notes.is_empty());
        // Unreadable: the reason, no line.
        let c = Contents {
            listing: Err("reading x: denied".into()),
            ..contents()
        };
        let plan_ = plan(&settings(), c, &Update::All(&[]), &all_exist);
        assert_eq!(
            file(&plan_, Role::Stanzas).notes,
            [Note::new(
                NoteKind::Warning,
                None,
                "reading x: denied; the file is written anew"
            )]
        );
        // A damaged file ahead of the other notes on it: the nmstate file, with ours disabled.
        let s = Settings {
            stanzas_file: None,
            nmstate_file: Some(Path::new("/etc/nmstate/guests.yml")),
            ..settings()
        };
        let c = Contents {
            listing: Ok(Some("not: [yaml".into())),
            nmstate_service_enabled: true,
            ..contents()
        };
        let plan_ = plan(&s, c, &Update::All(&[]), &all_exist);
        let kinds: Vec<NoteKind> = file(&plan_, Role::Nmstate)
            .notes
            .iter()
            .map(|n| n.kind)
            .collect();
        assert_eq!(kinds, [NoteKind::Warning, NoteKind::Refused]);
    }

    #[test]
    fn the_listing_is_ours_else_nmstates() {
        let s = settings();
        assert_eq!(s.listing(), Some((Role::Stanzas, Path::new(OURS))));
        let no_ours = Settings {
            stanzas_file: None,
            ..settings()
        };
        assert_eq!(no_ours.listing(), Some((Role::Nmstate, Path::new(NMSTATE))));
        let neither = Settings {
            nmstate_file: None,
            ..no_ours
        };
        assert_eq!(neither.listing(), None);
        assert_eq!(
            listed(&neither, listing(vec![tap(1)], &[])),
            Default::default()
        );

        // The nmstate file lists ports only, without the mark; damaged it warns, unreadable it
        // is silent.
        let yaml = nmstate::render(&[tap(100)], "vmbr0");
        let (l, note) = listed(&no_ours, Ok(Some(yaml)));
        let unmarked = HostPort {
            owned: false,
            ..tap(100)
        };
        assert_eq!((l.ports, l.neutral, note), (vec![unmarked], vec![], None));
        let (l, note) = listed(&no_ours, Ok(Some("not: [yaml".into())));
        assert!(l.is_empty() && note.unwrap().kind == NoteKind::Warning);
        assert_eq!(listed(&no_ours, Err("denied".into())), Default::default());
        assert_eq!(listed(&no_ours, Ok(None)), Default::default());
        assert_eq!(listed(&s, Ok(None)), Default::default());

        // The record is where the listing put each port.
        let moved = port("tap100i0", "vmbr2", Vlan::proxmox(Some(7), vec![]));
        let record = record(&s, listing(vec![moved], &["tap101i0"]));
        assert_eq!(
            record.into_iter().collect::<Vec<_>>(),
            [(
                "tap100i0".to_string(),
                ("vmbr2".to_string(), Vlan::proxmox(Some(7), vec![]))
            )]
        );
        assert!(super::record(&s, Ok(Some("bogus".into()))).is_empty());
    }

    #[test]
    fn nmstate_is_refused_where_its_service_would_apply_it_at_boot() {
        let at_boot = Settings {
            nmstate_file: Some(Path::new("/etc/nmstate/guests.yml")),
            ..settings()
        };
        let enabled = || Contents {
            nmstate_service_enabled: true,
            ..contents()
        };
        let plan_ = plan(&at_boot, enabled(), &Update::All(&[tap(100)]), &all_exist);
        let f = file(&plan_, Role::Nmstate);
        assert_eq!(f.action, Action::Remove);
        let refused = texts(f, NoteKind::Refused);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].starts_with(
                "not written, and removed if it was there: nmstate.service is enabled"
            ) && refused[0].ends_with("set nmstate_file to a path outside /etc/nmstate"),
            "{refused:?}"
        );
        // Also on clear, the note says so.
        let plan_ = plan(&at_boot, enabled(), &Update::Clear, &all_exist);
        assert_eq!(
            texts(file(&plan_, Role::Nmstate), NoteKind::Refused).len(),
            1
        );
        // Not enabled, or a file nmstate.service does not read: written, no note.
        for (s, c) in [(&at_boot, contents()), (&settings(), enabled())] {
            let plan_ = plan(s, c, &Update::All(&[tap(100)]), &all_exist);
            let f = file(&plan_, Role::Nmstate);
            assert!(matches!(f.action, Action::Write(_)) && f.notes.is_empty());
        }
    }

    #[test]
    fn which_systemd_directories_start_a_unit() {
        for yes in ["multi-user.target.wants", "network.target.requires"] {
            assert!(enables(yes), "{yes}");
        }
        for no in [
            "nmstate.service.d",
            "multi-user.target",
            "wants",
            "x.wants.d",
        ] {
            assert!(!enables(no), "{no}");
        }
    }

    #[test]
    fn the_interfaces_file_is_cleaned_only_when_it_sources_ours() {
        let c = || Contents {
            interfaces: Ok(Some(format!("{HEAD}{SOURCE}{OLD_BLOCK}"))),
            ..contents()
        };
        let plan_ = plan(&settings(), c(), &Update::All(&[]), &all_exist);
        let f = file(&plan_, Role::Interfaces);
        assert_eq!(f.action, Action::Write(format!("{HEAD}{SOURCE}")));
        assert_eq!(
            f.notes,
            [Note::new(
                NoteKind::Info,
                None,
                format!("moving the stanzas of tap100i0 to {OURS}")
            )]
        );
        assert_eq!(f.source_line, None);
        // The name it held stays in ifupdown2's configuration: neutral in ours, while it exists.
        assert_eq!(ours(&plan_).neutral, ["tap100i0"]);
        let plan_ = plan(&settings(), c(), &Update::All(&[]), &|_: &str| false);
        assert!(ours(&plan_).neutral.is_empty());
        // A port on OVS is listed as such, not also as neutral.
        let plan_ = plan(&settings(), c(), &Update::All(&[tap(100)]), &all_exist);
        assert_eq!(ours(&plan_).ports, [tap(100)]);
        assert!(ours(&plan_).neutral.is_empty());
        // Nothing to clean: kept, no note.
        let plan_ = plan(&settings(), contents(), &Update::All(&[]), &all_exist);
        let f = file(&plan_, Role::Interfaces);
        assert_eq!((&f.action, f.notes.len()), (&Action::Keep, 0));
    }

    #[test]
    fn without_the_source_line_nothing_leaves_and_the_line_to_add_is_said() {
        let c = |interfaces: String| Contents {
            interfaces: Ok(Some(interfaces)),
            ..contents()
        };
        let plan_ = plan(
            &settings(),
            c(format!("{HEAD}{OLD_BLOCK}")),
            &Update::All(&[]),
            &all_exist,
        );
        let f = file(&plan_, Role::Interfaces);
        assert_eq!(f.action, Action::Keep);
        assert_eq!(
            f.source_line.as_deref(),
            Some("source /etc/network/interfaces.d/*")
        );
        assert_eq!(
            texts(f, NoteKind::Refused),
            [format!(
                "ifupdown2 does not read {OURS} (no source line reads it); add the line `source /etc/network/interfaces.d/*` to {INTERFACES}; until then the stanzas an older version wrote there are left in place"
            )]
        );
        assert!(
            ours(&plan_).neutral.is_empty(),
            "names that stay do not move"
        );
        // source-directory is named, with its line; without old stanzas, no "until then".
        let plan_ = plan(
            &settings(),
            c(format!(
                "{HEAD}source-directory /etc/network/interfaces.d\n"
            )),
            &Update::All(&[]),
            &all_exist,
        );
        let f = file(&plan_, Role::Interfaces);
        assert_eq!(
            texts(f, NoteKind::Refused),
            [format!(
                "ifupdown2 does not read {OURS} (line 3 has source-directory, which ifupdown2 does not read); add the line `source /etc/network/interfaces.d/*` to {INTERFACES}"
            )]
        );
    }

    #[test]
    fn unmarked_guest_stanzas_are_reported_with_their_line() {
        let c = Contents {
            interfaces: Ok(Some(format!("{HEAD}{SOURCE}{UNMARKED}"))),
            ..contents()
        };
        let plan_ = plan(&settings(), c, &Update::All(&[]), &all_exist);
        let f = file(&plan_, Role::Interfaces);
        assert_eq!(f.action, Action::Keep);
        assert_eq!(f.notes.len(), 1);
        assert_eq!(
            (f.notes[0].kind, f.notes[0].line),
            (NoteKind::Refused, Some(5))
        );
        assert!(
            f.notes[0]
                .text
                .starts_with("the stanza of tap300i0 looks like a guest port but carries no mark"),
            "{:?}",
            f.notes
        );
        // Only names that may be a guest's count.
        let s = Settings {
            is_candidate: &|n: &str| n.starts_with("veth"),
            ..settings()
        };
        let c = Contents {
            interfaces: Ok(Some(format!("{HEAD}{SOURCE}{UNMARKED}"))),
            ..contents()
        };
        let plan_ = plan(&s, c, &Update::All(&[]), &all_exist);
        assert!(file(&plan_, Role::Interfaces).notes.is_empty());
    }

    #[test]
    fn with_ours_disabled_the_old_stanzas_stay() {
        let s = Settings {
            stanzas_file: None,
            ..settings()
        };
        let c = Contents {
            interfaces: Ok(Some(format!("{HEAD}{OLD_BLOCK}"))),
            ..contents()
        };
        let plan_ = plan(&s, c, &Update::All(&[]), &all_exist);
        let f = file(&plan_, Role::Interfaces);
        assert_eq!(f.action, Action::Keep);
        assert_eq!(
            texts(f, NoteKind::Refused),
            [
                "holds stanzas an older ovs-autoattach wrote; left in place because stanzas_file is disabled"
            ]
        );
        assert_eq!(f.source_line, None);
    }

    #[test]
    fn a_pending_file_is_cleaned_alike_and_only_the_live_one_earns_the_source_note() {
        // Both source ours: both cleaned, the names from both kept neutral.
        let block_101 = OLD_BLOCK.replace("tap100i0", "tap101i0");
        let c = Contents {
            interfaces: Ok(Some(format!("{HEAD}{SOURCE}{OLD_BLOCK}"))),
            pending: Ok(Some(format!("{HEAD}{SOURCE}{block_101}"))),
            ..contents()
        };
        let plan_ = plan(&settings(), c, &Update::All(&[]), &all_exist);
        let order: Vec<Role> = plan_.files.iter().map(|f| f.role).collect();
        assert_eq!(
            order,
            [
                Role::Stanzas,
                Role::Interfaces,
                Role::PendingInterfaces,
                Role::Nmstate
            ]
        );
        let f = file(&plan_, Role::PendingInterfaces);
        assert_eq!(f.path, Path::new("/etc/network/interfaces.new"));
        assert_eq!(f.action, Action::Write(format!("{HEAD}{SOURCE}")));
        assert_eq!(ours(&plan_).neutral, ["tap100i0", "tap101i0"]);
        // A pending file without the source line is left alone, silently.
        let c = Contents {
            pending: Ok(Some(format!("{HEAD}{OLD_BLOCK}"))),
            ..contents()
        };
        let plan_ = plan(&settings(), c, &Update::All(&[]), &all_exist);
        let f = file(&plan_, Role::PendingInterfaces);
        assert_eq!(
            (&f.action, f.notes.len(), &f.source_line),
            (&Action::Keep, 0, &None)
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_stops_the_cleaning_of_both() {
        // The pending file: the live one's cleaning is taken back, nothing moves.
        let c = Contents {
            interfaces: Ok(Some(format!("{HEAD}{SOURCE}{OLD_BLOCK}"))),
            pending: Err("reading /etc/network/interfaces.new: denied".into()),
            ..contents()
        };
        let plan_ = plan(&settings(), c, &Update::All(&[]), &all_exist);
        assert_eq!(file(&plan_, Role::Interfaces).action, Action::Keep);
        let f = file(&plan_, Role::PendingInterfaces);
        assert_eq!(f.action, Action::Keep);
        assert_eq!(
            f.error.as_deref(),
            Some(
                "/etc/network/interfaces.new was left unchanged: reading /etc/network/interfaces.new: denied"
            )
        );
        assert!(ours(&plan_).neutral.is_empty());
        // The live one: the pending file is not looked at.
        let c = Contents {
            interfaces: Err("denied".into()),
            pending: Ok(Some(format!("{HEAD}{SOURCE}{OLD_BLOCK}"))),
            ..contents()
        };
        let plan_ = plan(&settings(), c, &Update::All(&[]), &all_exist);
        let order: Vec<Role> = plan_.files.iter().map(|f| f.role).collect();
        assert_eq!(order, [Role::Stanzas, Role::Interfaces, Role::Nmstate]);
        assert_eq!(
            file(&plan_, Role::Interfaces).error.as_deref(),
            Some("/etc/network/interfaces was left unchanged: denied")
        );
        // A missing live file is planned (kept); a missing pending file is not.
        let c = Contents {
            interfaces: Ok(None),
            ..contents()
        };
        let plan_ = plan(&settings(), c, &Update::All(&[]), &all_exist);
        let f = file(&plan_, Role::Interfaces);
        assert_eq!((&f.action, &f.error), (&Action::Keep, &None));
    }

    fn planned(role: Role, error: bool) -> PlannedFile {
        let mut f = PlannedFile::new(role, Path::new("/x"), Action::Remove);
        f.error = error.then(|| "unreadable".to_string());
        f
    }

    #[test]
    fn the_interfaces_files_are_written_only_after_ours() {
        let stanzas = planned(Role::Stanzas, false);
        let interfaces = planned(Role::Interfaces, false);
        let pending = planned(Role::PendingInterfaces, false);
        let nmstate = planned(Role::Nmstate, false);

        // All well: everything in turn, and what changed is recorded.
        let mut p = Progress::default();
        for f in [&stanzas, &interfaces, &pending, &nmstate] {
            assert!(p.admits(f));
            p.done(f.role, f.role != Role::PendingInterfaces);
        }
        assert_eq!(p.written.names(), ["stanzas", "nmstate", "interfaces"]);

        // Ours failed: the interfaces files are held back, nmstate's is not.
        let mut p = Progress::default();
        assert!(p.admits(&stanzas));
        p.failed(Role::Stanzas);
        assert!(!p.admits(&interfaces) && !p.admits(&pending));
        assert!(p.admits(&nmstate));
        p.done(Role::Nmstate, true);
        assert_eq!(p.written.names(), ["nmstate"]);

        // The interfaces file failed: its pending `.new` is held back.
        let mut p = Progress::default();
        assert!(p.admits(&stanzas) && p.admits(&interfaces));
        p.failed(Role::Interfaces);
        assert!(!p.admits(&pending) && p.admits(&nmstate));

        // nmstate's failing holds nothing back.
        let mut p = Progress::default();
        p.failed(Role::Nmstate);
        assert!(p.admits(&interfaces) && p.admits(&pending));
        assert_eq!(p.written, Written::default());
        assert!(p.written.names().is_empty());
    }

    #[test]
    fn a_file_that_could_not_be_read_is_not_written() {
        let mut p = Progress::default();
        assert!(!p.admits(&planned(Role::Interfaces, true)));
        // Alone, it holds nothing back (its pending file is not planned then).
        assert!(p.admits(&planned(Role::PendingInterfaces, false)));
        // Ours unreadable would hold the interfaces files back.
        let mut p = Progress::default();
        assert!(!p.admits(&planned(Role::Stanzas, true)));
        assert!(!p.admits(&planned(Role::Interfaces, false)));
        assert!(p.admits(&planned(Role::Nmstate, false)));
    }
}
