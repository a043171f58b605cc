//! The mirror part of `apply`, `plug` and `clear`: read the rules file and the guest
//! configurations its rules name, plan with [`crate::decide::mirrors`] (the mirror changes go
//! into the same OVSDB transaction as the port changes), then set and clear the promiscuous flags
//! the plan asks for, and report.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::decide::config::Config;
use crate::decide::mirrors::{self, MirrorPlan, RuleState, Rules, Scope, Specs};
use crate::decide::observed::Observed;
use crate::decide::plan::Plan;
use crate::host::promisc::Promisc;
use crate::host::pve;

/// The rules of one run, resolved against the guest configurations.
pub struct Mirrors {
    /// The rules file; `None` when mirrors are off (`mirrors_file: null`).
    path: Option<PathBuf>,
    /// The file exists but could not be read: no mirror is changed, and the run fails.
    unreadable: bool,
    specs: Specs,
}

impl Mirrors {
    /// Reads the rules file (a missing file is no rules) and the guest configurations its rules
    /// name; with `only`, just those of the rules that may involve that interface (`plug` runs
    /// for every NIC that starts, and most are in no rule).
    pub fn read(config: &Config, only: Option<&str>) -> Mirrors {
        let Some(path) = config.mirrors_file.clone() else {
            return Mirrors {
                path: None,
                unreadable: false,
                specs: Specs::default(),
            };
        };
        let rules = match read_rules(&path) {
            Ok(bytes) => {
                let rules = Rules::parse(&bytes.unwrap_or_default());
                match only {
                    Some(iface) => rules.involving(iface),
                    None => rules,
                }
            }
            Err(e) => {
                log::error!("{e:#}; mirrors are left as they are");
                return Mirrors {
                    path: Some(path),
                    unreadable: true,
                    specs: Specs::default(),
                };
            }
        };
        let guests = pve::read_guests(&config.pve_config_dir, &mirrors::guests_to_read(&rules));
        Mirrors {
            path: Some(path),
            unreadable: false,
            specs: Specs::resolve(&rules, &guests),
        }
    }

    /// Whether this run reconciles mirrors at all.
    fn active(&self) -> bool {
        self.path.is_some() && !self.unreadable
    }

    /// Whether a dry run of `plan` would succeed as far as mirrors go.
    pub fn ok(&self, plan: &MirrorPlan) -> bool {
        !self.unreadable && plan.rule_counts().invalid == 0
    }

    /// Logs the lines that are not used, naming the file and the line, at `level` (`apply`
    /// warns; `plug`, which runs for every NIC that starts, leaves them to `apply`).
    pub fn log_refused(&self, level: log::Level) {
        let Some(path) = &self.path else { return };
        for (line, why) in &self.specs.invalid {
            log::log!(level, "{}:{line}: {why}; rule ignored", path.display());
        }
    }

    /// Whether a rule names `iface` (as a port or as a guest NIC): then `plug iface` reconciles
    /// those rules.
    pub fn involves(&self, iface: &str) -> bool {
        self.active() && self.specs.involving(iface).next().is_some()
    }

    /// The ports `plug iface` reads: its own, and those of the rules that involve it.
    pub fn ports_for(&self, iface: &str) -> BTreeSet<String> {
        let mut names = self.specs.ports_involving(iface);
        names.insert(iface.to_string());
        names
    }

    /// The mirror plan of this run, once `ports` is committed; reads the promiscuous flags it
    /// depends on.
    pub fn plan(
        &self,
        observed: &Observed,
        ports: &Plan,
        scope: Scope<'_>,
    ) -> anyhow::Result<MirrorPlan> {
        if !self.active() {
            return Ok(MirrorPlan::default());
        }
        let links = self.specs.promisc_links(observed);
        let flags = if links.is_empty() {
            Default::default()
        } else {
            Promisc::open()?.states(&links)?
        };
        Ok(mirrors::build(&self.specs, observed, ports, &flags, scope))
    }

    /// After the commit: the promiscuous flags, the waiting rules in the log (at `level`), and
    /// what the summary line says.
    pub fn finish(&self, plan: &MirrorPlan, level: log::Level) -> Outcome {
        let failed = set_flags(plan);
        for rule in &plan.rules {
            if let (RuleState::Waiting, Some(name), Some(what)) =
                (rule.state, &rule.mirror, &rule.detail)
            {
                log::log!(
                    level,
                    "mirror {name} (line {}) is waiting for {what}",
                    rule.line
                );
            }
        }
        Outcome::of(plan, failed + usize::from(self.unreadable))
    }
}

/// The mirror plan of `clear`: every mirror of ours, whatever the configuration says.
pub fn clear_plan(observed: &Observed) -> anyhow::Result<MirrorPlan> {
    let recorded: BTreeSet<String> = observed
        .mirrors
        .iter()
        .filter(|m| m.owned())
        .flat_map(|m| mirrors::links(m.promisc.as_deref()).map(String::from))
        .collect();
    let flags = if recorded.is_empty() {
        Default::default()
    } else {
        Promisc::open()?.states(&recorded)?
    };
    Ok(mirrors::clear(observed, &flags))
}

/// `clear`'s part of the summary.
pub fn finish_clear(plan: &MirrorPlan) -> Outcome {
    Outcome::of(plan, set_flags(plan))
}

/// Prints a plan's mirror changes for `apply --dry-run`.
pub fn print(plan: &MirrorPlan) {
    for change in &plan.changes {
        println!("{change}");
    }
    for link in &plan.promisc_on {
        println!("set {link} promiscuous");
    }
    for link in &plan.promisc_off {
        println!("clear the promiscuous flag of {link}");
    }
}

/// Sets and clears the flags the plan asks for; returns how many failed (each is logged).
fn set_flags(plan: &MirrorPlan) -> usize {
    let wanted = plan
        .promisc_on
        .iter()
        .map(|l| (l, true))
        .chain(plan.promisc_off.iter().map(|l| (l, false)));
    let mut sock = None;
    let mut failed = 0;
    for (link, on) in wanted {
        let result = match &mut sock {
            Some(s) => Ok(s),
            None => Promisc::open().map(|s| sock.insert(s)),
        }
        .and_then(|s: &mut Promisc| s.set(link, on));
        match (result, on) {
            (Ok(()), true) => log::info!("set {link} promiscuous for its mirrors"),
            (Ok(()), false) => log::info!(
                "cleared the promiscuous flag of {link} (set by this tool; no mirror of ours needs it any more)"
            ),
            (Err(e), _) => {
                failed += 1;
                log::warn!("{e:#}");
            }
        }
    }
    failed
}

/// Reads the rules file: `None` when there is none. Bounded, so that a wrong path (a device, a
/// huge log) fails the run instead of the host.
pub(super) fn read_rules(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    if meta.len() > mirrors::rules::MAX_BYTES {
        bail!(
            "{} is {} bytes; a rules file has at most {}",
            path.display(),
            meta.len(),
            mirrors::rules::MAX_BYTES
        );
    }
    std::fs::read(path)
        .map(Some)
        .with_context(|| format!("reading {}", path.display()))
}

/// What a run did about mirrors, for the summary line and the exit code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub active: usize,
    pub waiting: usize,
    pub invalid: usize,
    pub created: usize,
    pub updated: usize,
    pub removed: usize,
    /// Promiscuous flags not set or cleared, and an unreadable rules file.
    pub failed: usize,
}

impl Outcome {
    fn of(plan: &MirrorPlan, failed: usize) -> Outcome {
        let rules = plan.rule_counts();
        let changes = plan.counts();
        Outcome {
            active: rules.active,
            waiting: rules.waiting,
            invalid: rules.invalid,
            created: changes.created,
            updated: changes.updated,
            removed: changes.removed,
            failed,
        }
    }

    /// Whether mirrors are as the rules say (waiting rules included: they are not errors).
    pub fn ok(&self) -> bool {
        self.invalid == 0 && self.failed == 0
    }

    /// Whether the run changed nothing about mirrors and has nothing to report.
    pub fn quiet(&self) -> bool {
        self.created + self.updated + self.removed + self.invalid + self.failed == 0
    }

    /// The summary line's part: empty when there is nothing to say at all.
    pub fn segment(&self) -> String {
        if *self == Outcome::default() {
            return String::new();
        }
        let failed = if self.failed > 0 {
            format!(", {} failed", self.failed)
        } else {
            String::new()
        };
        format!(
            "{} mirrors: {} created, {} updated, {} removed, {} waiting, {} invalid{failed}; ",
            self.active, self.created, self.updated, self.removed, self.waiting, self.invalid
        )
    }
}
