//! The tool's own configuration, `/etc/ovs-autoattach/config.yaml`.
//!
//! Every key is optional and has the default documented in `debian/config.yaml`. Unknown keys are
//! errors (a typo must not silently fall back to a default on a production host), and every
//! value is validated here, before anything is touched, so that a bad file is a usage error
//! (exit 2) with the file and line in the message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::decide::{glob, ifname};

pub const DEFAULT_PATH: &str = "/etc/ovs-autoattach/config.yaml";

/// Largest configuration file accepted.
const MAX_BYTES: u64 = 1024 * 1024;

/// An error in what the user asked for: bad arguments or a bad configuration. Nothing has been
/// touched when it is returned; `main` maps it to exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// OVS bridge for guest NICs that no guest configuration describes.
    pub bridge: String,
    /// Host interface name prefixes that are guest NICs.
    pub prefixes: Vec<String>,
    /// Glob patterns of names never touched.
    pub exclude: Vec<String>,
    /// Glob patterns of links that are guest NICs although they do not look like one (a tap
    /// another hypervisor made, a veth whose peer stays on the host): attached to `bridge` like
    /// a raw container NIC. Explicit opt-in; empty by default, and `exclude` still wins.
    pub include: Vec<String>,
    /// The OVSDB server, `unix:PATH` or `tcp:HOST:PORT` as for `ovs-vsctl --db`.
    pub ovsdb: String,
    /// Holds `qemu-server/<vmid>.conf` and `lxc/<vmid>.conf`.
    pub pve_config_dir: PathBuf,
    /// The nmstate mirror of the guest ports; `null` disables it.
    pub nmstate_file: Option<PathBuf>,
    /// The tool's own ifupdown2 file, one stanza per guest port; `null` disables it.
    pub stanzas_file: Option<PathBuf>,
    /// The host's interfaces file (Proxmox's): checked for the `source` line that reads
    /// `stanzas_file`, and cleaned of the managed block older versions wrote into it (a pending
    /// `<interfaces_file>.new` too). Never otherwise written. `null` disables both.
    pub interfaces_file: Option<PathBuf>,
    /// The traffic-mirroring rules, in proxmox-ovs-mirror's `mirrors.conf` format
    /// ([`crate::decide::mirrors::rules`]); a missing file means no rules, `null` disables
    /// mirrors (they are then neither read nor changed, except by `clear`).
    pub mirrors_file: Option<PathBuf>,
    /// Lock files live here.
    pub run_dir: PathBuf,
    /// Where Proxmox keeps its guest configuration locks (`qemu-server/lock-<vmid>.conf`,
    /// `lxc/pve-config-<vmid>.lock`): a guest whose lock is held is being started, hotplugged
    /// or cleaned up by Proxmox, and its NICs are left to Proxmox meanwhile.
    pub pve_lock_dir: PathBuf,
    /// Bound on every wait for OVSDB and ovs-vswitchd.
    pub timeout_secs: u64,
    /// Whether `apply` and `status` keep this node's summary in
    /// `<pve_config_dir>/nodes/<node>/ovs-autoattach.json` for `status --cluster`.
    pub cluster_summary: ClusterSummary,
}

/// `cluster_summary`: when the node's summary is written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClusterSummary {
    /// Only when `pve_config_dir` is a mounted pmxcfs (the Proxmox cluster file system).
    #[default]
    Auto,
    /// Whatever `pve_config_dir` is (a directory standing in for pmxcfs).
    Always,
    /// Never.
    Off,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bridge: "ovsbr0".into(),
            prefixes: vec!["veth".into(), "tap".into()],
            exclude: Vec::new(),
            include: Vec::new(),
            ovsdb: "unix:/var/run/openvswitch/db.sock".into(),
            pve_config_dir: "/etc/pve".into(),
            nmstate_file: Some("/etc/nmstate/nmstate-dynamic.yaml".into()),
            stanzas_file: Some("/etc/network/interfaces.d/ovs-autoattach".into()),
            interfaces_file: Some("/etc/network/interfaces".into()),
            mirrors_file: Some("/etc/ovs-mirror/mirrors.conf".into()),
            run_dir: "/run/ovs-autoattach".into(),
            pve_lock_dir: "/run/lock".into(),
            timeout_secs: 10,
            cluster_summary: ClusterSummary::Auto,
        }
    }
}

/// Where the OVSDB server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Config {
    /// Loads `path`, or the default file when `path` is `None`. A missing default file means the
    /// built-in defaults; a missing explicit file is an error.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(e) => return Err(usage(format!("reading {}: {e}", path.display()))),
        };
        if meta.len() > MAX_BYTES {
            return Err(usage(format!(
                "{}: {} bytes is too large for a configuration file",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("reading {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
    }

    /// Parses and validates configuration text. An empty document means all defaults.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config = if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            Config::default()
        } else {
            yaml_serde::from_str::<Config>(text).map_err(|e| e.to_string())?
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        ifname::validate(&self.bridge).map_err(|e| format!("bridge: {e}"))?;
        if self.prefixes.is_empty() {
            return Err("prefixes: at least one prefix is needed".into());
        }
        for p in &self.prefixes {
            ifname::validate(p).map_err(|e| format!("prefixes: {e}"))?;
        }
        for g in &self.exclude {
            glob::validate(g).map_err(|e| format!("exclude: {e}"))?;
        }
        for g in &self.include {
            glob::validate(g).map_err(|e| format!("include: {e}"))?;
        }
        self.endpoint()?;
        for (key, path) in [
            ("pve_config_dir", Some(&self.pve_config_dir)),
            ("run_dir", Some(&self.run_dir)),
            ("pve_lock_dir", Some(&self.pve_lock_dir)),
            ("nmstate_file", self.nmstate_file.as_ref()),
            ("stanzas_file", self.stanzas_file.as_ref()),
            ("interfaces_file", self.interfaces_file.as_ref()),
            ("mirrors_file", self.mirrors_file.as_ref()),
        ] {
            if let Some(path) = path
                && !path.is_absolute()
            {
                return Err(format!("{key}: {} is not an absolute path", path.display()));
            }
        }
        if let (Some(ours), Some(main)) = (&self.stanzas_file, &self.interfaces_file)
            && ours == main
        {
            return Err(format!(
                "stanzas_file: {} is the interfaces file itself; the tool owns stanzas_file whole, so it must be a file of its own (default /etc/network/interfaces.d/ovs-autoattach)",
                ours.display()
            ));
        }
        if !(1..=600).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs: {} is outside 1-600",
                self.timeout_secs
            ));
        }
        Ok(())
    }

    /// The parsed `ovsdb` setting.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        if let Some(path) = self.ovsdb.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("ovsdb: unix: needs a socket path".into());
            }
            Ok(Endpoint::Unix(path.into()))
        } else if let Some(addr) = self.ovsdb.strip_prefix("tcp:") {
            if addr
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!("ovsdb: {:?} is not tcp:HOST:PORT", self.ovsdb));
            }
            Ok(Endpoint::Tcp(addr.into()))
        } else {
            Err(format!(
                "ovsdb: {:?} is not supported; use unix:PATH or tcp:HOST:PORT",
                self.ovsdb
            ))
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Whether `name` may be a guest NIC this tool touches: it starts with a configured prefix
    /// or matches an `include` pattern, is a valid interface name ([`ifname::validate`]: the
    /// kernel accepts `$(...)`, `;` and spaces in names, and ifupdown2 runs stanza names through
    /// a shell) and matches no `exclude` pattern. The link itself decides the rest
    /// ([`crate::decide::desired::nature`]).
    pub fn is_candidate(&self, name: &str) -> bool {
        (self.has_prefix(name) || self.is_included(name))
            && ifname::validate(name).is_ok()
            && !self.is_excluded(name)
    }

    pub fn is_included(&self, name: &str) -> bool {
        self.include.iter().any(|g| glob::matches(g, name))
    }

    /// Whether `name` starts with a configured prefix.
    pub fn has_prefix(&self, name: &str) -> bool {
        self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    pub fn is_excluded(&self, name: &str) -> bool {
        self.exclude.iter().any(|g| glob::matches(g, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_empty_and_comments() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(
            Config::parse("# all defaults\n\n").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn full_file() {
        let c = Config::parse(
            "bridge: vmbr1\nprefixes: [tap]\nexclude: ['tap9*']\novsdb: tcp:127.0.0.1:6640\npve_config_dir: /tmp/pve\nnmstate_file: null\ninterfaces_file: /tmp/i\nrun_dir: /tmp/r\ntimeout_secs: 3\n",
        )
        .unwrap();
        assert_eq!(c.bridge, "vmbr1");
        assert_eq!(c.nmstate_file, None);
        assert_eq!(
            c.mirrors_file.as_deref(),
            Some(Path::new("/etc/ovs-mirror/mirrors.conf"))
        );
        let off = Config::parse("mirrors_file: null\n").unwrap();
        assert_eq!(off.mirrors_file, None);
        assert_eq!(
            c.endpoint().unwrap(),
            Endpoint::Tcp("127.0.0.1:6640".into())
        );
        assert!(c.is_candidate("tap100i0"));
        assert!(!c.is_candidate("tap900i0"));
        assert!(!c.is_candidate("veth100i0"));
        assert!(!c.is_candidate("tap$(id>pw)"));
        assert!(!c.is_candidate("tap 1"));
        assert!(c.has_prefix("tap;x"));
    }

    #[test]
    fn unknown_key_names_the_line() {
        let e = Config::parse("bridge: vmbr0\nbirdge: vmbr1\n").unwrap_err();
        assert!(e.contains("birdge") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn wrong_types_and_values() {
        for bad in [
            "timeout_secs: ten\n",
            "timeout_secs: 0\n",
            "bridge: 'bad bridge'\n",
            "bridge: averyveryverylongbridgename\n",
            "prefixes: []\n",
            "prefixes: tap\n",
            "exclude: ['tap[']\n",
            "ovsdb: ssl:1.2.3.4:6640\n",
            "ovsdb: tcp:nohost\n",
            "run_dir: relative/dir\n",
            "mirrors_file: mirrors.conf\n",
            "bridge: [a, b]\n",
            "- just\n- a list\n",
            "bridge: vmbr0\n  bad: indentation\n",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_default_file_is_defaults_but_explicit_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.yaml");
        let e = Config::load(Some(&missing)).unwrap_err();
        assert!(e.is::<UsageError>());
        std::fs::write(&missing, "bridge: x y\n").unwrap();
        let e = Config::load(Some(&missing)).unwrap_err();
        assert!(e.to_string().contains("none.yaml"), "{e}");
    }
}
