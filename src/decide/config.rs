//! The tool's own configuration, `/etc/ovs-autoattach/config.yaml`, as the core reads it: the
//! keys, their defaults, their validation, and the policy the core applies with them (which
//! names are candidates). Reading the file is the adapters' part (`host::config`).
//!
//! Every key is optional and has the default documented in `debian/config.yaml`. Unknown keys are
//! errors (a typo must not silently fall back to a default on a production host), and every
//! value is validated here, before anything is touched, so that a bad file is a usage error
//! (exit 2) whose line is known ([`ConfigError`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::decide::vlan::{self, Vlan, VlanMode};
use crate::decide::{glob, ifname};

/// A configuration the tool refuses: what is wrong, and the 1-based line when it is known (the
/// YAML parser's position, or the line of the key whose value is bad).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} at line {line}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

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
    /// Where raw container NICs go when their own container's configuration says nothing: the
    /// first rule that matches the container's name or the NIC's name wins.
    pub raw: Vec<RawRule>,
    /// Where a raw container NIC goes that neither its container's configuration nor a `raw`
    /// rule places; `None` is `bridge`, untagged (a trunk of every VLAN).
    pub raw_default: Option<RawPlace>,
    /// The OVSDB server, `unix:PATH` or `tcp:HOST:PORT` as for `ovs-vsctl --db`.
    pub ovsdb: String,
    /// Holds `qemu-server/<vmid>.conf` and `lxc/<vmid>.conf`.
    pub pve_config_dir: PathBuf,
    /// LXC's `lxcpath`: a raw LXC container's configuration is `<lxc_path>/<name>/config`.
    pub lxc_path: PathBuf,
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
            raw: Vec::new(),
            raw_default: None,
            ovsdb: "unix:/var/run/openvswitch/db.sock".into(),
            pve_config_dir: "/etc/pve".into(),
            lxc_path: "/var/lib/lxc".into(),
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

/// A place for raw container NICs in the tool's configuration (`raw_default`, and the place of
/// a `raw` rule): a bridge and the VLAN columns of the port, as written; [`RawPlace::vlan`]
/// checks and shapes them.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawPlace {
    pub bridge: String,
    pub tag: Option<u16>,
    #[serde(default)]
    pub trunks: Vec<u16>,
    pub vlan_mode: Option<String>,
}

/// A `raw` rule: `container: NAME` (every NIC of that LXC container) or `nic: GLOB` (host NICs
/// by name), and the place they go to.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub container: Option<String>,
    pub nic: Option<String>,
    pub bridge: String,
    pub tag: Option<u16>,
    #[serde(default)]
    pub trunks: Vec<u16>,
    pub vlan_mode: Option<String>,
}

impl RawRule {
    /// Whether this rule places NIC `nic` of container `container` (if one was found).
    pub fn matches(&self, nic: &str, container: Option<&str>) -> bool {
        match (&self.container, &self.nic) {
            (Some(name), _) => container == Some(name.as_str()),
            (None, Some(pattern)) => glob::matches(pattern, nic),
            (None, None) => false,
        }
    }

    pub fn place(&self) -> RawPlace {
        RawPlace {
            bridge: self.bridge.clone(),
            tag: self.tag,
            trunks: self.trunks.clone(),
            vlan_mode: self.vlan_mode.clone(),
        }
    }

    /// Exactly one of `container` (an LXC container name) and `nic` (a glob), and a place
    /// [`RawPlace::vlan`] accepts.
    fn check(&self) -> Result<(), String> {
        match (&self.container, &self.nic) {
            (Some(name), None) => {
                if name.is_empty() || name.contains('/') || name.len() > 255 {
                    return Err(format!("container: {name:?} is no LXC container name"));
                }
            }
            (None, Some(pattern)) => glob::validate(pattern).map_err(|e| format!("nic: {e}"))?,
            _ => return Err("a raw rule names either a container or a nic pattern".into()),
        }
        self.place().check()
    }
}

impl RawPlace {
    /// The bridge must be a valid interface name, `tag` 1-4094 and `trunks` 0-4095 (as for
    /// Proxmox NICs).
    fn check(&self) -> Result<(), String> {
        ifname::validate(&self.bridge).map_err(|e| format!("bridge: {e}"))?;
        self.vlan().map(|_| ())
    }

    /// The port's VLAN columns. Without `vlan_mode` the port is shaped as Proxmox shapes one
    /// (`tag` and `trunks` together: `native-untagged`); with it, only combinations Open
    /// vSwitch honours: `access` needs a tag and no trunks, `trunk` no tag, the others a tag.
    pub fn vlan(&self) -> Result<Vlan, String> {
        if let Some(tag) = self.tag
            && !(vlan::TAG_MIN..=vlan::TAG_MAX).contains(&tag)
        {
            return Err(format!("tag: VLAN ID {tag} is outside 1-4094"));
        }
        if let Some(t) = self.trunks.iter().find(|t| **t > vlan::TRUNK_MAX) {
            return Err(format!("trunks: VLAN ID {t} is outside 0-4095"));
        }
        let mut vlan = Vlan::proxmox(self.tag, self.trunks.clone());
        if let Some(mode) = &self.vlan_mode {
            let mode = VlanMode::parse(mode).ok_or_else(|| {
                format!("vlan_mode: {mode:?} is none of access, trunk, native-tagged, native-untagged, dot1q-tunnel")
            })?;
            match (mode, vlan.tag, vlan.trunks.is_empty()) {
                (VlanMode::Access, Some(_), true) | (VlanMode::Trunk, None, _) => {}
                (VlanMode::Access, _, _) => {
                    return Err("vlan_mode: access needs a tag and no trunks".into());
                }
                (VlanMode::Trunk, Some(_), _) => {
                    return Err("vlan_mode: trunk takes no tag (Open vSwitch ignores it); use native-untagged or native-tagged".into());
                }
                (_, None, _) => return Err(format!("vlan_mode: {} needs a tag", mode.as_str())),
                (_, Some(_), _) => {}
            }
            vlan.mode = Some(mode);
        }
        Ok(vlan)
    }
}

/// The 1-based line of item `n` (1-based) of the block list under the key at line `key_line`:
/// the `n`th line after it that starts with `-` at the first item's indentation, before the
/// next key at the left margin. `None` for a flow list (`raw: [...]`).
fn list_item(text: &str, key_line: usize, n: usize) -> Option<usize> {
    let mut indent = None;
    let mut seen = 0;
    for (i, line) in text.lines().enumerate().skip(key_line) {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let at = line.len() - body.len();
        if at == 0 && !body.starts_with('-') {
            return None;
        }
        if body.starts_with('-') && *indent.get_or_insert(at) == at {
            seen += 1;
            if seen == n {
                return Some(i + 1);
            }
        }
    }
    None
}

/// Where the OVSDB server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Config {
    /// Parses and validates configuration text. An empty document means all defaults.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let whole = text;
        let config = if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            Config::default()
        } else {
            yaml_serde::from_str::<Config>(text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                let text = e.to_string();
                // The parser's own text ends with its position, which `line` now carries.
                let message = match text.rsplit_once(" at line ") {
                    Some((message, _)) if line.is_some() => message.to_string(),
                    _ => text,
                };
                // The parser puts a duplicate key at the start of its mapping: the line that
                // matters is the key's second one.
                let line = match duplicate_key(&message) {
                    Some(key) => key_lines(whole, key).nth(1),
                    None => line,
                };
                ConfigError { line, message }
            })?
        };
        config.validate().map_err(|message| {
            // A bad value is reported at its key's line: `key: ...` at the start of a line.
            let key = message.split_once(':').map(|(k, _)| k).filter(|k| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
            let line = key.and_then(|key| {
                text.lines()
                    .position(|l| {
                        l.strip_prefix(key)
                            .is_some_and(|r| r.trim_start().starts_with(':'))
                    })
                    .map(|i| i + 1)
            });
            // A bad `raw` rule is reported at its own item of the list, when it is a block list.
            let rule = message
                .strip_prefix("raw: rule ")
                .and_then(|r| r.split_once(':'))
                .and_then(|(n, _)| n.parse::<usize>().ok());
            let line = match (line, rule) {
                (Some(at), Some(n)) => Some(list_item(text, at, n).unwrap_or(at)),
                _ => line,
            };
            ConfigError { line, message }
        })?;
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
        for (i, rule) in self.raw.iter().enumerate() {
            rule.check()
                .map_err(|e| format!("raw: rule {}: {e}", i + 1))?;
        }
        if let Some(place) = &self.raw_default {
            place.check().map_err(|e| format!("raw_default: {e}"))?;
        }
        self.endpoint()?;
        for (key, path) in [
            ("pve_config_dir", Some(&self.pve_config_dir)),
            ("lxc_path", Some(&self.lxc_path)),
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

/// The key a parser error names as given twice (`duplicate field `bridge``).
fn duplicate_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("duplicate field `")?;
    rest.split_once('`').map(|(key, _)| key)
}

/// The 1-based lines that start with `key:` (a top-level key of the file).
fn key_lines<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.lines().enumerate().filter_map(move |(i, l)| {
        l.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
            .then_some(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
        assert!(e.message.contains("birdge") && e.line == Some(2), "{e:?}");
        assert!(e.to_string().contains("line 2"), "{e}");
        // A key given twice: its second line, not the start of the file.
        let e = Config::parse("# c\n# c\n# c\nbridge: vmbr0\ntimeout_secs: 3\n\nbridge: vmbr1\n")
            .unwrap_err();
        assert_eq!(e.line, Some(7), "{e:?}");
        assert!(e.message.contains("duplicate field `bridge`"), "{e:?}");
        let e = Config::parse("# comment\nbridge: vmbr0\ntimeout_secs: 0\n").unwrap_err();
        assert_eq!(
            e,
            ConfigError {
                line: Some(3),
                message: "timeout_secs: 0 is outside 1-600".into()
            }
        );
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
}

#[cfg(test)]
mod raw_tests {
    use super::*;

    #[test]
    fn raw_rules_and_default() {
        let c = Config::parse(
            "bridge: ovsbr0\nraw:\n  - {container: web, bridge: vmbr1, tag: 30}\n  - nic: 'vethdb*'\n    bridge: vmbr2\n    trunks: [20, 10, 20]\n  - {nic: 'vethx*', bridge: vmbr2, tag: 5, vlan_mode: access}\nraw_default: {bridge: ovsbr0, tag: 999}\nlxc_path: /srv/lxc\n",
        )
        .unwrap();
        assert_eq!(c.raw.len(), 3);
        assert!(c.raw[0].matches("vethAAAAAA", Some("web")));
        assert!(!c.raw[0].matches("vethAAAAAA", None));
        assert!(c.raw[1].matches("vethdb1", None));
        assert_eq!(
            c.raw[1].place().vlan(),
            Ok(Vlan::proxmox(None, vec![10, 20]))
        );
        assert_eq!(
            c.raw[2].place().vlan().unwrap().mode,
            Some(VlanMode::Access)
        );
        let place = c.raw_default.unwrap();
        assert_eq!(place.bridge, "ovsbr0");
        assert_eq!(place.vlan(), Ok(Vlan::proxmox(Some(999), vec![])));
        assert_eq!(c.lxc_path, PathBuf::from("/srv/lxc"));
    }

    #[test]
    fn bad_raw_entries_name_their_line() {
        for (text, line, says) in [
            (
                "raw:\n  - {container: web, bridge: vmbr1}\n  - {bridge: vmbr1, tag: 4095, nic: 'v*'}\n",
                3,
                "tag: VLAN ID 4095 is outside 1-4094",
            ),
            (
                "raw:\n  - {container: web, nic: 'v*', bridge: vmbr1}\n",
                2,
                "either a container or a nic",
            ),
            ("raw:\n  - {nic: 'v[', bridge: vmbr1}\n", 2, "unclosed"),
            ("raw:\n  - {nic: 'v*', bridge: 'a b'}\n", 2, "bridge:"),
            ("raw:\n  - {nic: 'v*', bridge: b, tagg: 3}\n", 2, "tagg"),
            (
                "bridge: ovsbr0\nraw_default: {bridge: ovsbr0, trunks: [5], vlan_mode: access}\n",
                2,
                "access needs a tag and no trunks",
            ),
            (
                "raw_default:\n  bridge: ovsbr0\n  tag: 5\n  vlan_mode: trunk\n",
                1,
                "trunk takes no tag",
            ),
            ("raw_default: {bridge: b, vlan_mode: bogus}\n", 1, "bogus"),
            ("raw_default: {bridge: b, trunks: [4096]}\n", 1, "4096"),
            ("raw_default: {tag: 5}\n", 1, "bridge"),
            ("lxc_path: lxc\n", 1, "not an absolute path"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(
                e.message.contains(says) && e.line == Some(line),
                "{text:?}: {e:?}"
            );
        }
    }
}
