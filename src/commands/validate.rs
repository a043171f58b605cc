//! `validate`: the check to run before a reload, or from configuration management.
//!
//! It needs no OVS and no root, and changes nothing: it reads the tool's configuration, then
//! every guest configuration of this node under `pve_config_dir` (`qemu-server/*.conf`,
//! `lxc/*.conf`; every guest, running or not), of which only the `net<n>` lines the tool reads,
//! parsed by the same parser `apply` uses ([`GuestConfig::parse`]), and reports each problem as
//! `FILE:LINE: MESSAGE` on standard output, then one summary line. A `net<n>` key given on
//! several lines is judged by the value the tool uses (see [`GuestConfig::parse`]), and its line
//! is that value's line.
//!
//! The mirror rules are checked line by line as `apply` reads them, and on the host they are for
//! (see [`missing`]) for what they name: each bridge and source port must be a link here, each
//! guest NIC a `net<n>` line of its guest's configuration.
//!
//! Exit codes: 0 no problem; 1 problems in guest configurations (or rules); 2 the tool's own
//! configuration is invalid, and nothing else was checked, since it says where to look.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Success;
use crate::decide::config::Config;
use crate::decide::desired::GuestFile;
use crate::decide::guest::{GuestConfig, GuestId, Kind};
use crate::decide::mirrors::rules::{Host, LineError, Rules};
use crate::decide::nic::Slot;
use crate::error::UsageError;
use crate::host::config::{self as host_config, LoadError};
use crate::host::{links, pve};

/// A problem at a file and, when known, a 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Problem {
    file: PathBuf,
    line: Option<usize>,
    message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// `validate`, with the `--config` path as given (`None`: the default file, or the built-in
/// defaults when it does not exist, as for every other command).
pub fn validate(config_path: Option<&Path>) -> anyhow::Result<Success> {
    // The tool's configuration: exit 2, and nothing else is checked.
    let (config, source) = load(config_path)?;
    // Guest configurations.
    let dir = &config.pve_config_dir;
    let (ids, mut problems) = guests(dir);
    let files = pve::read_guests(dir, &ids);
    for (id, file) in &files {
        problems.extend(guest_problems(&id.config_path(dir), file));
    }
    // The mirror rules, each refused line with its file and line, and what a rule names that
    // does not exist (exit 1).
    let rules_checked = config.mirrors_file.as_ref().and_then(|path| {
        let (count, found) = rule_problems(path, &files);
        problems.extend(found);
        count.map(|n| (path.clone(), n))
    });
    // Report.
    let mut out = String::new();
    for p in &problems {
        out.push_str(&format!("{p}\n"));
    }
    out.push_str(&summary(&source, dir, &ids, rules_checked, problems.len()));
    print(&out)?;
    Ok(problems.is_empty())
}

/// The tool's configuration and how to name where it came from; a refused one is printed as a
/// problem at its line and returned as a [`UsageError`] (exit 2).
fn load(config_path: Option<&Path>) -> anyhow::Result<(Config, String)> {
    let path = config_path.unwrap_or(Path::new(host_config::DEFAULT_PATH));
    let config = match host_config::read(config_path) {
        Ok(c) => c,
        Err((path, e)) => {
            print(&format!("{}\n", config_problem(&path, &e)))?;
            return Err(UsageError(format!(
                "validate: {} is not a valid configuration; nothing else was checked",
                path.display()
            ))
            .into());
        }
    };
    let source = if config_path.is_none() && !path.exists() {
        format!("built-in defaults (no {})", path.display())
    } else {
        path.display().to_string()
    };
    Ok((config, source))
}

/// Every guest with a configuration file under `dir`, and the directories that could not be
/// listed.
fn guests(dir: &Path) -> (BTreeSet<GuestId>, Vec<Problem>) {
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for kind in [Kind::Qemu, Kind::Lxc] {
        match list_guests(dir, kind) {
            Ok(found) => ids.extend(found),
            Err(e) => problems.push(Problem {
                file: kind_dir(dir, kind),
                line: None,
                message: format!("{e:#}"),
            }),
        }
    }
    (ids, problems)
}

/// The refused lines of the rules file `path` and what its rules name that does not exist
/// ([`missing`]), and how many rules it holds (`None`: no file).
fn rule_problems(
    path: &Path,
    guests: &BTreeMap<GuestId, GuestFile>,
) -> (Option<usize>, Vec<Problem>) {
    match super::mirrors::read_rules(path) {
        Ok(None) => (None, Vec::new()),
        Ok(Some(bytes)) => {
            let rules = Rules::parse(&bytes);
            let mut errors = rules.errors.clone();
            errors.extend(missing(&rules, guests));
            errors.sort_by_key(|e| e.line);
            let problems = errors.into_iter().map(|e| Problem {
                file: path.to_path_buf(),
                line: Some(e.line),
                message: e.message,
            });
            (Some(rules.rules.len()), problems.collect())
        }
        Err(e) => (
            None,
            vec![Problem {
                file: path.to_path_buf(),
                line: None,
                message: format!("{e:#}"),
            }],
        ),
    }
}

/// What the rules name and this host does not have ([`Rules::missing`]): each bridge and source
/// port as a link here (sysfs), each guest NIC as a `net<n>` line of its guest's configuration.
/// Only on the host the rules are for, where at least one bridge that the rules or the guest
/// configurations name is a link: run elsewhere (configuration management checking a copy of
/// the files), `validate` checks the lines alone, and says so on standard error.
fn missing(rules: &Rules, guests: &BTreeMap<GuestId, GuestFile>) -> Vec<LineError> {
    if rules.rules.is_empty() {
        return Vec::new();
    }
    let mut bridges: BTreeSet<String> = rules.rules.iter().map(|r| r.bridge.clone()).collect();
    let mut nics = BTreeSet::new();
    for (id, file) in guests {
        let GuestFile::Parsed(conf) = file else {
            continue;
        };
        for (index, net) in &conf.nets {
            nics.insert(Slot {
                vmid: id.vmid,
                index: *index,
            });
            bridges.extend(net.as_ref().ok().and_then(|n| n.bridge.clone()));
        }
    }
    let mut names = rules.link_names();
    names.extend(bridges.iter().cloned());
    let links: BTreeSet<String> = names.into_iter().filter(|n| links::exists(n)).collect();
    if !bridges.iter().any(|b| links.contains(b)) {
        log::warn!(
            "no bridge the mirror rules or the guest configurations name is a link here: this is not the host they are for, so what the rules name is not checked"
        );
        return Vec::new();
    }
    rules.missing(&Host { links, nics })
}

/// The closing line: what was checked, and how many problems.
fn summary(
    source: &str,
    dir: &Path,
    ids: &BTreeSet<GuestId>,
    rules_checked: Option<(PathBuf, usize)>,
    problems: usize,
) -> String {
    let count = |kind| ids.iter().filter(|g| g.kind == kind).count();
    let guests = if pve::present(dir) {
        format!(
            "{} guest configurations checked ({} qemu-server, {} lxc)",
            ids.len(),
            count(Kind::Qemu),
            count(Kind::Lxc)
        )
    } else {
        format!(
            "no guest configuration checked ({} does not exist)",
            dir.display()
        )
    };
    let guests = match rules_checked {
        Some((path, n)) => format!("{guests}; {n} mirror rules in {}", path.display()),
        None => guests,
    };
    let found = match problems {
        0 => "no problem found".to_string(),
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    };
    format!("validate: configuration {source} is valid; {guests}; {found}\n")
}

fn print(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to standard output")
}

fn kind_dir(dir: &Path, kind: Kind) -> PathBuf {
    // The directory of `config_path`, whatever the VMID.
    GuestId { kind, vmid: 100 }
        .config_path(dir)
        .parent()
        .map_or_else(|| dir.to_path_buf(), Path::to_path_buf)
}

/// The guests of one kind that have a configuration file in `dir`; a missing directory has none.
/// Files not named `<vmid>.conf` (pmxcfs's temporary files) are not guest configurations.
fn list_guests(dir: &Path, kind: Kind) -> anyhow::Result<Vec<GuestId>> {
    let sub = kind_dir(dir, kind);
    let entries = match std::fs::read_dir(&sub) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", sub.display())),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", sub.display()))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|name| GuestId::from_file_name(kind, name))
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The problems of one guest configuration: each `net<n>` value the tool would refuse, at its
/// line, and a file it cannot read.
fn guest_problems(path: &Path, file: &GuestFile) -> Vec<Problem> {
    match file {
        // Gone since it was listed: nothing to check.
        GuestFile::Missing => Vec::new(),
        GuestFile::Unreadable(e) => {
            let reading = format!("reading {}: ", path.display());
            vec![Problem {
                file: path.to_path_buf(),
                line: None,
                message: e.strip_prefix(&reading).unwrap_or(e).to_string(),
            }]
        }
        GuestFile::Parsed(conf) => net_problems(path, conf),
    }
}

fn net_problems(path: &Path, conf: &GuestConfig) -> Vec<Problem> {
    conf.nets
        .iter()
        .filter_map(|(index, net)| {
            let e = net.as_ref().err()?;
            let key = format!("net{index}");
            Some(Problem {
                file: path.to_path_buf(),
                line: conf.lines.get(index).copied(),
                message: if e.starts_with(&format!("{key} ")) {
                    e.clone()
                } else {
                    format!("{key}: {e}")
                },
            })
        })
        .collect()
}

/// The tool's configuration refused at `path`, as a problem at its line when the line is known.
fn config_problem(path: &Path, e: &LoadError) -> Problem {
    let (line, message) = match e {
        LoadError::Read(message) => {
            let reading = format!("reading {}: ", path.display());
            let message = message.strip_prefix(&reading).unwrap_or(message);
            (None, message.to_string())
        }
        LoadError::Invalid(e) => (e.line, e.message.clone()),
    };
    Problem {
        file: path.to_path_buf(),
        line,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::config::ConfigError;

    #[test]
    fn config_problems_carry_their_line() {
        let p = Path::new("/etc/ovs-autoattach/config.yaml");
        let text = "# comment\nbridge: vmbr0\ntimeout_secs: 0\n";
        let invalid = |text: &str| LoadError::Invalid(Config::parse(text).unwrap_err());
        let e = config_problem(p, &invalid(text));
        assert_eq!(
            e.to_string(),
            "/etc/ovs-autoattach/config.yaml:3: timeout_secs: 0 is outside 1-600"
        );
        let e = config_problem(p, &invalid("# comment\nbirdge: vmbr0\n"));
        assert!(
            e.to_string().starts_with(
                "/etc/ovs-autoattach/config.yaml:2: unknown field `birdge`, expected one of `bridge`"
            ),
            "{e}"
        );
        assert!(!e.message.contains(" at line "), "{e}");
        // A message without a line: none is made up.
        let e = config_problem(
            p,
            &LoadError::Invalid(ConfigError {
                line: None,
                message: "invalid type: sequence, expected struct Config".into(),
            }),
        );
        assert_eq!(e.line, None);
        let e = config_problem(
            p,
            &LoadError::Read(
                "reading /etc/ovs-autoattach/config.yaml: No such file or directory (os error 2)"
                    .into(),
            ),
        );
        assert_eq!(
            e.to_string(),
            "/etc/ovs-autoattach/config.yaml: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn net_problems_at_their_lines() {
        let conf = GuestConfig::parse(
            Kind::Qemu,
            "name: vm\nnet0: virtio,bridge=vmbr0,tag=4095\nnet1: virtio,bridge=vmbr0\nnet2: virtio,bridge=vmbr0,trunks=5000\nnet3:\n",
        );
        let path = Path::new("/etc/pve/qemu-server/100.conf");
        let lines: Vec<String> = net_problems(path, &conf)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "/etc/pve/qemu-server/100.conf:2: net0: tag: VLAN ID 4095 is outside 1-4094",
                "/etc/pve/qemu-server/100.conf:4: net2: trunks: trunk VLAN ID 5000 is outside 0-4095",
                "/etc/pve/qemu-server/100.conf:5: net3 has no value",
            ]
        );
        let unreadable = GuestFile::Unreadable(
            "reading /etc/pve/lxc/200.conf: 2000000 bytes is larger than any guest configuration"
                .into(),
        );
        assert_eq!(
            guest_problems(Path::new("/etc/pve/lxc/200.conf"), &unreadable)[0].to_string(),
            "/etc/pve/lxc/200.conf: 2000000 bytes is larger than any guest configuration"
        );
    }

    #[test]
    fn lists_only_guest_configuration_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("qemu-server")).unwrap();
        for name in [
            "100.conf",
            "101.conf",
            "100.conf.tmp.123",
            "notes.txt",
            "0100.conf",
        ] {
            std::fs::write(dir.join("qemu-server").join(name), "").unwrap();
        }
        let mut ids: Vec<u32> = list_guests(dir, Kind::Qemu)
            .unwrap()
            .iter()
            .map(|g| g.vmid)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, [100, 101]);
        assert!(list_guests(dir, Kind::Lxc).unwrap().is_empty());
    }
}
