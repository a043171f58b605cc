//! The tool's own ifupdown2 file, `/etc/network/interfaces.d/ovs-autoattach`: one stanza per
//! guest port on Open vSwitch, so that the host's network configuration says which guest ports
//! exist, with their bridge and VLAN.
//!
//! The tool owns the whole file and renders it from scratch on every change: no markers, no
//! splicing. Proxmox's network editor never reads or writes sourced files, so nothing else
//! rewrites it.
//!
//! The stanzas have no `auto` (and no `allow-*`) line, on purpose. ifupdown2's `ifreload -a`
//! brings up only `auto` interfaces and remembers what it brought up; so with no `auto` line:
//! - a reload never replays a stanza, and a stanza that went stale (Proxmox changes a running
//!   guest's tag live, with no hook) can never put a guest back into its old VLAN;
//! - a reload costs what it costs without the tool (about ten times less than with 200 `auto`
//!   guest stanzas, see docs/benchmarks.md);
//! - ifupdown2 never learns these names, so dropping a stanza never makes it down the link or
//!   delete the port on the next reload.
//!
//! The ports themselves are put back after a reload by the tool's if-up.d hook (`apply` when a
//! bridge comes up), from the guests' current configurations.
//!
//! A host upgraded from the managed block of `/etc/network/interfaces` is the exception:
//! ifupdown2 remembers the `auto` stanzas it brought up from there, and downs any of them that
//! disappears from its configuration while the link exists. So a name the file listed keeps a
//! *neutral* stanza (`iface NAME inet manual`, nothing else) for as long as its link exists,
//! even once the NIC is no longer a guest port on OVS; the stanza goes with the link.

use std::fmt::Write as _;

use crate::decide::ifname;
use crate::decide::observed::{OWNER_KEY, OWNER_VALUE};
use crate::decide::ports::HostPort;
use crate::decide::vlan::{Vlan, VlanMode, parse_tag, parse_trunk_id};

const HEADER: &str = "\
# Written by ovs-autoattach: the guest ports it keeps on Open vSwitch. The whole file is
# rewritten on every change; edit the guests' configurations instead (see ovs-autoattach(8)).
# No stanza here has an `auto` line: `ifreload -a` never replays them, and ovs-autoattach's
# if-up.d hook puts the guest ports back after a reload from the guests' current settings.
";
const NEUTRAL: &str = "# Not a guest port on Open vSwitch now; kept while the link exists so that ifupdown2 never downs it.";

/// What the file lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// Guest ports on OVS, with their bridge and VLAN.
    pub ports: Vec<HostPort>,
    /// Names kept with a neutral stanza.
    pub neutral: Vec<String>,
}

impl Listed {
    /// Every name the file lists.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ports
            .iter()
            .map(|p| p.name.as_str())
            .chain(self.neutral.iter().map(String::as_str))
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.neutral.is_empty()
    }
}

/// A problem in the file at a 1-based line.
#[derive(Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub msg: String,
}

/// Renders the whole file, sorted by name. A name or bridge that is not a valid interface name
/// is never written (the callers filter them out already; this is the last line of defence, as
/// ifupdown2 builds shell command lines from these words).
pub fn render(listed: &Listed) -> String {
    let mut ports: Vec<&HostPort> = listed
        .ports
        .iter()
        .filter(|p| ifname::validate(&p.name).is_ok() && ifname::validate(&p.bridge).is_ok())
        .collect();
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports.dedup_by(|a, b| a.name == b.name);
    let mut neutral: Vec<&str> = listed
        .neutral
        .iter()
        .map(String::as_str)
        .filter(|n| ifname::validate(n).is_ok() && !ports.iter().any(|p| p.name == *n))
        .collect();
    neutral.sort_unstable();
    neutral.dedup();

    let mut out = String::from(HEADER);
    for p in ports {
        let n = &p.name;
        let _ = write!(
            out,
            "\niface {n} inet manual\n    ovs_type OVSPort\n    ovs_bridge {}\n",
            p.bridge
        );
        let options = p.vlan.ovs_options();
        if !options.is_empty() {
            let _ = writeln!(out, "    ovs_options {options}");
        }
        if p.owned {
            let _ = writeln!(
                out,
                "    ovs_extra set Port {n} external_ids:{OWNER_KEY}={OWNER_VALUE}"
            );
        }
    }
    for n in neutral {
        let _ = write!(out, "\n{NEUTRAL}\niface {n} inet manual\n");
    }
    out
}

/// Reads back what [`render`] wrote. Refuses anything it would not have written, with the line:
/// a damaged file is reported and rendered anew.
pub fn parse(content: &str) -> Result<Listed, LineError> {
    let mut listed = Listed::default();
    // The stanza being read: its name and whether an option made it a port.
    let mut current: Option<HostPort> = None;
    let finish = |listed: &mut Listed, current: Option<HostPort>| {
        if let Some(p) = current {
            if p.bridge.is_empty() {
                listed.neutral.push(p.name);
            } else {
                listed.ports.push(p);
            }
        }
    };
    for (i, line) in content.lines().enumerate() {
        let err = |msg: String| LineError { line: i + 1, msg };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            [first, ..] if first.starts_with('#') => {}
            ["iface", name, "inet", "manual"] => {
                ifname::validate(name).map_err(err)?;
                finish(&mut listed, current.take());
                current = Some(HostPort {
                    name: name.to_string(),
                    bridge: String::new(),
                    vlan: Vlan::default(),
                    owned: false,
                });
            }
            [option, rest @ ..] if line.starts_with(char::is_whitespace) => {
                let Some(port) = current.as_mut() else {
                    return Err(err(format!("{option} outside a stanza")));
                };
                match (*option, rest) {
                    ("ovs_type", ["OVSPort"]) => {}
                    ("ovs_bridge", [bridge]) => {
                        ifname::validate(bridge).map_err(err)?;
                        port.bridge = bridge.to_string();
                    }
                    ("ovs_options", options) => port.vlan = parse_options(options).map_err(err)?,
                    ("ovs_extra", ["set", "Port", name, mark])
                        if *name == port.name
                            && *mark == format!("external_ids:{OWNER_KEY}={OWNER_VALUE}") =>
                    {
                        port.owned = true
                    }
                    _ => return Err(err(format!("unexpected line {:?}", line.trim()))),
                }
            }
            _ => return Err(err(format!("unexpected line {:?}", line.trim()))),
        }
    }
    finish(&mut listed, current);
    Ok(listed)
}

/// Parses the words of an `ovs_options` line as [`Vlan::ovs_options`] renders them.
pub fn parse_options(options: &[&str]) -> Result<Vlan, String> {
    let mut vlan = Vlan::default();
    for o in options {
        match o.split_once('=') {
            Some(("tag", v)) => vlan.tag = Some(parse_tag(v)?),
            Some(("trunks", v)) => {
                vlan.trunks = v.split(',').map(parse_trunk_id).collect::<Result<_, _>>()?;
                vlan.trunks.sort_unstable();
                vlan.trunks.dedup();
            }
            Some(("vlan_mode", v)) => {
                vlan.mode =
                    Some(VlanMode::parse(v).ok_or_else(|| format!("unknown vlan_mode {v:?}"))?)
            }
            _ => return Err(format!("unexpected ovs_options item {o:?}")),
        }
    }
    Ok(vlan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::nmstate::tests::{port, shapes};

    fn listed(ports: Vec<HostPort>, neutral: &[&str]) -> Listed {
        Listed {
            ports,
            neutral: neutral.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn golden_file() {
        let ports = vec![
            HostPort {
                owned: false,
                ..port("veth101i0", "ovsbr0", Vlan::default())
            },
            port("tap100i0", "vmbr1", Vlan::proxmox(Some(10), vec![30, 40])),
        ];
        assert_eq!(
            render(&listed(ports, &["tap102i0"])),
            HEADER.to_owned()
                + "\niface tap100i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10 trunks=30,40 vlan_mode=native-untagged\n    ovs_extra set Port tap100i0 external_ids:owner=ovs-autoattach\n\niface veth101i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n\n"
                + NEUTRAL
                + "\niface tap102i0 inet manual\n"
        );
        assert_eq!(render(&Listed::default()), HEADER);
    }

    #[test]
    fn no_stanza_is_auto() {
        for (name, ports) in shapes() {
            let text = render(&listed(ports, &["tap9i0"]));
            for line in text.lines() {
                let first = line.split_whitespace().next().unwrap_or_default();
                assert!(
                    first != "auto" && !first.starts_with("allow-"),
                    "{name}: {line}"
                );
            }
        }
    }

    #[test]
    fn round_trips_every_shape() {
        for (name, ports) in shapes() {
            let mut want = listed(ports, &["veth300i1", "tap301i0"]);
            let mut back = parse(&render(&want)).unwrap();
            back.ports.sort();
            want.ports.sort();
            want.neutral.sort();
            assert_eq!(back, want, "{name}");
        }
    }

    #[test]
    fn a_port_wins_over_a_neutral_stanza_of_the_same_name() {
        let text = render(&listed(
            vec![port("tap1i0", "ovsbr0", Vlan::default())],
            &["tap1i0"],
        ));
        assert_eq!(text.matches("iface tap1i0").count(), 1);
    }

    #[test]
    fn hostile_names_are_never_written() {
        let evil = [
            port("tap$(id>pw)", "ovsbr0", Vlan::default()),
            port("tap;rm", "ovsbr0", Vlan::default()),
            port("tap a", "ovsbr0", Vlan::default()),
            port("tap1i0", "br;x", Vlan::default()),
        ];
        let text = render(&listed(evil.to_vec(), &["veth`x`", "veth 1"]));
        assert_eq!(text, HEADER);
    }

    /// `ovs_options` takes the guest configuration's ranges: tag 1-4094, trunk IDs 0-4095.
    #[test]
    fn vlan_ranges_read_back() {
        let file = |options: &str| {
            format!(
                "iface tap1 inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n    ovs_options {options}\n"
            )
        };
        let ports = parse(&file("tag=4094 trunks=0,4095 vlan_mode=native-untagged"))
            .unwrap()
            .ports;
        assert_eq!(ports[0].vlan.trunks, [0, 4095]);
        for bad in ["tag=0", "tag=4095", "trunks=4096"] {
            assert_eq!(parse(&file(bad)).unwrap_err().line, 4, "{bad}");
        }
    }

    #[test]
    fn damaged_files_are_refused_with_the_line() {
        for (content, line) in [
            ("iface tap$(x) inet manual\n", 1),
            ("# c\n\niface tap1 inet manual\n    ovs_bridge a;b\n", 4),
            ("iface tap1 inet manual\n    ovs_options tag=5000\n", 2),
            ("    ovs_bridge ovsbr0\n", 1),
            ("auto tap1\n", 1),
            ("iface tap1 inet manual\n    pre-up rm -rf /\n", 2),
            (
                "iface tap1 inet manual\n    ovs_extra set Port tap2 external_ids:owner=ovs-autoattach\n",
                2,
            ),
        ] {
            assert_eq!(parse(content).unwrap_err().line, line, "{content:?}");
        }
    }
}
