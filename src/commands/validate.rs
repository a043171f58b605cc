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
//! Exit codes: 0 no problem; 1 problems in guest configurations (or rules); 2 the tool's own
//! configuration is invalid, and nothing else was checked, since it says where to look.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Success;
use crate::config::{self, Config, UsageError};
use crate::decide::desired::GuestFile;
use crate::decide::guest::{GuestConfig, GuestId, Kind};
use crate::decide::mirrors::rules::Rules;
use crate::host::pve;

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
    let path = config_path.unwrap_or(Path::new(config::DEFAULT_PATH));
    // The tool's configuration: exit 2, and nothing else is checked.
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            let text = std::fs::read_to_string(path).ok();
            let problem = config_problem(path, &e.to_string(), text.as_deref());
            print(&format!("{problem}\n"))?;
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

    let mut problems = Vec::new();
    // Guest configurations.
    let dir = &config.pve_config_dir;
    let mut ids = BTreeSet::new();
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
    for (id, file) in pve::read_guests(dir, &ids) {
        problems.extend(guest_problems(&id.config_path(dir), &file));
    }
    // The mirror rules, each refused line with its file and line (exit 1).
    let mut rules_checked = None;
    if let Some(path) = &config.mirrors_file {
        match super::mirrors::read_rules(path) {
            Ok(None) => {}
            Ok(Some(bytes)) => {
                let rules = Rules::parse(&bytes);
                rules_checked = Some((path.clone(), rules.rules.len()));
                problems.extend(rules.errors.into_iter().map(|e| Problem {
                    file: path.clone(),
                    line: Some(e.line),
                    message: e.message,
                }));
            }
            Err(e) => problems.push(Problem {
                file: path.clone(),
                line: None,
                message: format!("{e:#}"),
            }),
        }
    }

    let mut out = String::new();
    for p in &problems {
        out.push_str(&format!("{p}\n"));
    }
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
    out.push_str(&format!(
        "validate: configuration {source} is valid; {guests}; {}\n",
        match problems.len() {
            0 => "no problem found".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        }
    ));
    print(&out)?;
    Ok(problems.is_empty())
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

/// The tool's configuration error from [`Config::load`] (`PATH: MESSAGE`) as a problem at its
/// line: the YAML parser's `at line N`, or else the line of the key the message starts with.
fn config_problem(path: &Path, message: &str, text: Option<&str>) -> Problem {
    let shown = path.display().to_string();
    let Some(rest) = message.strip_prefix(&format!("{shown}: ")) else {
        let reading = format!("reading {shown}: ");
        return Problem {
            file: path.to_path_buf(),
            line: None,
            message: message
                .strip_prefix(&reading)
                .unwrap_or(message)
                .to_string(),
        };
    };
    let from_parser = rest.rsplit_once(" at line ").and_then(|(msg, at)| {
        let line = at.split(' ').next()?.parse().ok()?;
        Some((msg.to_string(), line))
    });
    let (message, line) = match from_parser {
        Some((msg, line)) => (msg, Some(line)),
        None => {
            let key = rest.split_once(':').map(|(k, _)| k).filter(|k| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
            let line = key.zip(text).and_then(|(key, text)| {
                text.lines()
                    .position(|l| {
                        l.strip_prefix(key)
                            .is_some_and(|r| r.trim_start().starts_with(':'))
                    })
                    .map(|i| i + 1)
            });
            (rest.to_string(), line)
        }
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

    #[test]
    fn config_problems_carry_their_line() {
        let p = Path::new("/etc/ovs-autoattach/config.yaml");
        let text = "# comment\nbridge: vmbr0\ntimeout_secs: 0\n";
        let e = config_problem(
            p,
            "/etc/ovs-autoattach/config.yaml: timeout_secs: 0 is outside 1-600",
            Some(text),
        );
        assert_eq!(
            e.to_string(),
            "/etc/ovs-autoattach/config.yaml:3: timeout_secs: 0 is outside 1-600"
        );
        let e = config_problem(
            p,
            "/etc/ovs-autoattach/config.yaml: unknown field `birdge`, expected one of `bridge` at line 2 column 1",
            Some(text),
        );
        assert_eq!(
            e.to_string(),
            "/etc/ovs-autoattach/config.yaml:2: unknown field `birdge`, expected one of `bridge`"
        );
        // A key that is not in the file (a default that fails cannot happen, but a message
        // without a key can): no line.
        let e = config_problem(
            p,
            "/etc/ovs-autoattach/config.yaml: invalid type: sequence, expected struct Config",
            Some("- a\n"),
        );
        assert_eq!(e.line, None);
        let e = config_problem(
            p,
            "reading /etc/ovs-autoattach/config.yaml: No such file or directory (os error 2)",
            None,
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
