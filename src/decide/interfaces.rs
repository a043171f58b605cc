//! The managed block of `/etc/network/interfaces`.
//!
//! Each guest port gets a stanza that ifupdown2 replays on `ifreload -a`: the port is re-added to
//! its bridge, and because ifupdown2 first clears the port's `tag`, `trunks`, `vlan_mode` and
//! `external_ids`, the stanza also carries them back (`ovs_options` for the VLAN columns,
//! `ovs_extra` for the ownership mark). Without them a reload would drop a tagged guest into the
//! untagged network.
//!
//! [`splice`] puts the block into the admin's file and refuses, rather than guesses, when the
//! markers are damaged: everything outside the block is the admin's and is kept byte for byte.

use std::fmt::Write as _;

use crate::decide::ifname;
use crate::decide::observed::{OWNER_KEY, OWNER_VALUE};
use crate::decide::vlan::{Vlan, VlanMode, parse_tag, parse_trunk_id};
use crate::host::hostfiles::HostPort;

pub const BEGIN: &str = "# BEGIN ovs-autoattach";
pub const END: &str = "# END ovs-autoattach";
/// The block of the original runbook's daemon, migrated in place.
const LEGACY_BEGIN: &str = "# BEGIN nmstate-monitor";
const LEGACY_END: &str = "# END nmstate-monitor";
const MANAGED: &str = "# Managed by ovs-autoattach: guest ports on Open vSwitch. Do not edit; changes are overwritten.";
const EMPTY: &str = "# No guest OVS ports detected.";

/// A problem with the file, at a 1-based line.
#[derive(Debug, PartialEq, Eq)]
pub struct SpliceError {
    pub line: usize,
    pub msg: String,
}

/// Renders the block, markers included, for `ports` sorted by name.
pub fn render_block(ports: &[HostPort]) -> String {
    let mut sorted: Vec<&HostPort> = ports.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = format!("{BEGIN}\n{MANAGED}\n");
    if sorted.is_empty() {
        out.push_str(EMPTY);
        out.push('\n');
    }
    for (i, p) in sorted.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let n = &p.name;
        let _ = writeln!(out, "auto {n}\nallow-ovs {n}\niface {n} inet manual");
        let _ = writeln!(out, "    ovs_type OVSPort\n    ovs_bridge {}", p.bridge);
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
    out.push_str(END);
    out.push('\n');
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Marker {
    Begin { legacy: bool },
    End { legacy: bool },
}

/// A marker line: its kind, line number and byte range (newline included).
struct Found {
    marker: Marker,
    line: usize,
    start: usize,
    end: usize,
}

fn find_markers(content: &str) -> Result<Vec<Found>, SpliceError> {
    let mut found = Vec::new();
    let mut start = 0;
    for (i, raw) in content.split_inclusive('\n').enumerate() {
        let line = i + 1;
        let text = raw.strip_suffix('\n').unwrap_or(raw);
        if text.ends_with('\r') {
            return Err(SpliceError {
                line,
                msg: "the file has CRLF line endings; convert it with dos2unix first".into(),
            });
        }
        let marker = match text.trim() {
            BEGIN => Some(Marker::Begin { legacy: false }),
            END => Some(Marker::End { legacy: false }),
            LEGACY_BEGIN => Some(Marker::Begin { legacy: true }),
            LEGACY_END => Some(Marker::End { legacy: true }),
            _ => None,
        };
        if let Some(marker) = marker {
            if text != text.trim() {
                return Err(SpliceError {
                    line,
                    msg: format!(
                        "the marker line {:?} is indented or padded; markers must stand alone at the start of a line",
                        text.trim()
                    ),
                });
            }
            found.push(Found {
                marker,
                line,
                start,
                end: start + raw.len(),
            });
        }
        start += raw.len();
    }
    Ok(found)
}

/// The byte range of the existing block (markers included), if there is exactly one well-formed
/// block; an error for damaged markers.
fn block_range(content: &str) -> Result<Option<(usize, usize)>, SpliceError> {
    let found = find_markers(content)?;
    match found.as_slice() {
        [] => Ok(None),
        [b, e] => match (b.marker, e.marker) {
            (Marker::Begin { legacy: l1 }, Marker::End { legacy: l2 }) if l1 == l2 => {
                Ok(Some((b.start, e.end)))
            }
            (Marker::Begin { .. }, Marker::End { .. }) => Err(SpliceError {
                line: e.line,
                msg: "the END marker does not match the BEGIN marker".into(),
            }),
            (Marker::End { .. }, _) => Err(SpliceError {
                line: b.line,
                msg: "an END marker comes before any BEGIN marker".into(),
            }),
            (Marker::Begin { .. }, Marker::Begin { .. }) => Err(SpliceError {
                line: e.line,
                msg: "a second BEGIN marker; the file holds two managed blocks or a damaged one"
                    .into(),
            }),
        },
        [only] => Err(SpliceError {
            line: only.line,
            msg: match only.marker {
                Marker::Begin { .. } => "a BEGIN marker without its END marker".into(),
                Marker::End { .. } => "an END marker without a BEGIN marker".into(),
            },
        }),
        [_, _, third, ..] => Err(SpliceError {
            line: third.line,
            msg: "more than one managed block".into(),
        }),
    }
}

/// Puts `block` into `content`: in place of the existing block (ours or the legacy one), or
/// appended after one blank line. With `block` `None`, removes the block and the blank line
/// appending added.
pub fn splice(content: &str, block: Option<&str>) -> Result<String, SpliceError> {
    match (block_range(content)?, block) {
        (Some((s, e)), Some(b)) => Ok(format!("{}{b}{}", &content[..s], &content[e..])),
        (Some((s, e)), None) => {
            let (mut before, after) = (&content[..s], &content[e..]);
            if after.is_empty() && before.ends_with("\n\n") {
                before = &before[..before.len() - 1];
            } else if after.is_empty() && before == "\n" {
                before = "";
            }
            Ok(format!("{before}{after}"))
        }
        (None, Some(b)) if content.is_empty() => Ok(b.to_string()),
        (None, Some(b)) => {
            let nl = if content.ends_with('\n') { "" } else { "\n" };
            Ok(format!("{content}{nl}\n{b}"))
        }
        (None, None) => Ok(content.to_string()),
    }
}

/// The ports recorded in the file's current block (empty without a block). Used by `plug`, which
/// adds its one port to what the file already says.
pub fn parse_block(content: &str) -> Result<Vec<HostPort>, SpliceError> {
    let Some((s, e)) = block_range(content)? else {
        return Ok(Vec::new());
    };
    let first_line = content[..s].matches('\n').count() + 1;
    let mut ports: Vec<HostPort> = Vec::new();
    for (i, line) in content[s..e].lines().enumerate() {
        let err = |msg: String| SpliceError {
            line: first_line + i,
            msg,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["iface", name, "inet", "manual"] => {
                ifname::validate(name).map_err(err)?;
                ports.push(HostPort {
                    name: name.to_string(),
                    bridge: String::new(),
                    vlan: Vlan::default(),
                    owned: false,
                });
            }
            ["ovs_bridge", bridge] => {
                ifname::validate(bridge).map_err(err)?;
                if let Some(p) = ports.last_mut() {
                    p.bridge = bridge.to_string();
                }
            }
            ["ovs_options", options @ ..] => {
                let vlan = parse_options(options).map_err(err)?;
                if let Some(p) = ports.last_mut() {
                    p.vlan = vlan;
                }
            }
            ["ovs_extra", ..] if line.contains(&format!("{OWNER_KEY}={OWNER_VALUE}")) => {
                if let Some(p) = ports.last_mut() {
                    p.owned = true;
                }
            }
            _ => {}
        }
    }
    ports.retain(|p| !p.bridge.is_empty());
    Ok(ports)
}

fn parse_options(options: &[&str]) -> Result<Vlan, String> {
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

    const HEAD: &str = "# my network\nauto lo\niface lo inet loopback\n\nauto vmbr0\niface vmbr0 inet manual\n    ovs_type OVSBridge\n    ovs_ports eno1\n";

    #[test]
    fn golden_block() {
        let ports = [
            port("tap100i0", "vmbr1", Vlan::proxmox(Some(10), vec![30, 40])),
            HostPort {
                owned: false,
                ..port("veth101i0", "ovsbr0", Vlan::default())
            },
        ];
        assert_eq!(
            render_block(&ports),
            "# BEGIN ovs-autoattach\n".to_owned()
                + MANAGED
                + "\nauto tap100i0\nallow-ovs tap100i0\niface tap100i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10 trunks=30,40 vlan_mode=native-untagged\n    ovs_extra set Port tap100i0 external_ids:owner=ovs-autoattach\n\nauto veth101i0\nallow-ovs veth101i0\niface veth101i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n# END ovs-autoattach\n"
        );
        assert_eq!(
            render_block(&[]),
            format!("{BEGIN}\n{MANAGED}\n{EMPTY}\n{END}\n")
        );
    }

    #[test]
    fn append_replace_clear_round_trip() {
        let block = render_block(&[port("tap1i0", "ovsbr0", Vlan::default())]);
        for original in [HEAD, "", "no final newline", "ends with blank\n\n"] {
            let added = splice(original, Some(&block)).unwrap();
            assert!(added.starts_with(original));
            let replaced = splice(&added, Some(&render_block(&[]))).unwrap();
            assert!(replaced.starts_with(original) && replaced.ends_with(&render_block(&[])));
            let cleared = splice(&replaced, None).unwrap();
            if original.ends_with('\n') || original.is_empty() {
                assert_eq!(cleared, original);
            } else {
                assert_eq!(
                    cleared,
                    format!("{original}\n"),
                    "only a final newline is added"
                );
            }
        }
        assert_eq!(
            splice(HEAD, Some(&block)).unwrap(),
            format!("{HEAD}\n{block}")
        );
    }

    #[test]
    fn block_in_the_middle_keeps_both_sides() {
        let tail = "\n# after the block\nsource /etc/network/interfaces.d/*";
        let content = format!("{HEAD}{}{tail}", render_block(&[]));
        let new = render_block(&[port("tap1i0", "ovsbr0", Vlan::default())]);
        assert_eq!(
            splice(&content, Some(&new)).unwrap(),
            format!("{HEAD}{new}{tail}")
        );
    }

    #[test]
    fn legacy_block_is_migrated_in_place() {
        let legacy = "# BEGIN nmstate-monitor\n# Managed by nmstate-monitor, do not edit manually.\nauto veth1234\nallow-ovs veth1234\niface veth1234 inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n# END nmstate-monitor\n";
        let content = format!("{HEAD}\n{legacy}\n# tail\n");
        let block = render_block(&[]);
        assert_eq!(
            splice(&content, Some(&block)).unwrap(),
            format!("{HEAD}\n{block}\n# tail\n")
        );
    }

    #[test]
    fn damaged_markers_are_refused_with_the_line() {
        let cases = [
            (format!("{HEAD}{BEGIN}\nauto x\n"), 9, "without its END"),
            (format!("{HEAD}{END}\n{BEGIN}\n"), 9, "before"),
            (
                format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n"),
                3,
                "more than one",
            ),
            (format!("{BEGIN}\n{BEGIN}\n"), 2, "second BEGIN"),
            (format!("x\n  {BEGIN}\n{END}\n"), 2, "indented"),
            (format!("{BEGIN}\n{LEGACY_END}\n"), 2, "does not match"),
            (format!("{END}\n"), 1, "without a BEGIN"),
            (
                "auto lo\r\niface lo inet loopback\r\n".to_string(),
                1,
                "CRLF",
            ),
        ];
        for (content, line, msg) in cases {
            let e = splice(&content, Some(&render_block(&[]))).unwrap_err();
            assert_eq!(e.line, line, "{content:?}: {e:?}");
            assert!(e.msg.contains(msg), "{content:?}: {e:?}");
            assert!(splice(&content, None).is_err());
        }
    }

    #[test]
    fn parse_block_round_trips_every_shape() {
        for (name, ports) in shapes() {
            let file = splice(HEAD, Some(&render_block(&ports))).unwrap();
            let mut back = parse_block(&file).unwrap();
            let mut want = ports.clone();
            back.sort();
            want.sort();
            assert_eq!(back, want, "{name}");
        }
        assert_eq!(parse_block(HEAD).unwrap(), vec![]);
    }

    #[test]
    fn parse_block_refuses_hostile_content() {
        let bad = format!("{BEGIN}\niface tap$(x) inet manual\n    ovs_bridge ovsbr0\n{END}\n");
        assert_eq!(parse_block(&bad).unwrap_err().line, 2);
        let bad = format!(
            "x\n{BEGIN}\niface tap1 inet manual\n    ovs_bridge ovsbr0\n    ovs_options tag=5000\n{END}\n"
        );
        assert_eq!(parse_block(&bad).unwrap_err().line, 5);
    }

    /// `ovs_options` takes the same ranges as the guest configuration: tag 1-4094, trunk IDs
    /// 0-4095.
    #[test]
    fn parse_block_vlan_ranges() {
        let block = |options: &str| {
            format!(
                "{BEGIN}\niface tap1 inet manual\n    ovs_bridge ovsbr0\n    ovs_options {options}\n{END}\n"
            )
        };
        let ports =
            parse_block(&block("tag=4094 trunks=0,4095 vlan_mode=native-untagged")).unwrap();
        assert_eq!(ports[0].vlan, Vlan::proxmox(Some(4094), vec![0, 4095]));
        assert_eq!(
            parse_block(&block("tag=1")).unwrap()[0].vlan,
            Vlan::proxmox(Some(1), vec![])
        );
        for bad in ["tag=0", "tag=4095", "trunks=4096", "trunks=1,,2"] {
            assert!(parse_block(&block(bad)).is_err(), "{bad}");
        }
    }
}
