//! Cleans `/etc/network/interfaces` (and a pending `interfaces.new`) of what earlier versions of
//! the tool, and the runbook's `nmstate-monitor` daemon before them, wrote into it: the managed
//! block of guest stanzas. The guest ports now live in the tool's own file
//! ([`crate::decide::stanzas`]).
//!
//! The file is Proxmox's: its network editor rewrites it, drops comment lines that are not under
//! a stanza (so the `# BEGIN` line goes), keeps a comment right under a stanza as that stanza's
//! comment (so `# END` survives under some stanza), drops `allow-ovs`, re-indents and reorders
//! options, and reorders stanzas (admin stanzas end up between guest stanzas, uplinks included).
//! So the cleaning never relies on the markers being intact, and removes only what is provably
//! the tool's:
//! - every stanza that carries the tool's mark, `ovs_extra set Port NAME
//!   external_ids:owner=ovs-autoattach`, wherever it stands, with its `auto NAME` and
//!   `allow-* NAME` lines;
//! - inside an intact block (a `# BEGIN` line, then its `# END` line), also the unmarked stanzas
//!   of exactly the shape the block's writers rendered (`iface NAME inet manual`, `ovs_type
//!   OVSPort`, `ovs_bridge`, optional `ovs_options`), but only for a guest NIC's name:
//!   - a Proxmox NIC name, `tap<vmid>i<n>` or `veth<vmid>i<n>` ([`NicId::parse`]);
//!   - a raw container veth (`veth...`) that the block itself lists the way both writers listed
//!     every port they wrote: the lines `auto NAME` and `allow-ovs NAME`, right before its
//!     `iface NAME inet manual` line. The writers' blocks had no other list of names (their
//!     header is one fixed line), Proxmox's editor drops every `allow-ovs` line (and breaks the
//!     block with the same save), and an admin's OVS port stanza names its bridge's class
//!     (`allow-vmbr1`), never `allow-ovs`.
//!
//!   That covers ports the tool did not own and the runbook's block, whose stanzas never had a
//!   mark. An uplink (`eno2`, `ovs_type OVSPort`) that Proxmox's editor moved into a block has
//!   the same shape and stays;
//! - every marker line and the blocks' header comments, wherever they stand.
//!
//! Everything else stays byte for byte: admin stanzas, every other comment line (also one right
//! under `# END`, or under a removed stanza), order and indentation. An unmarked guest-port
//! stanza that is not removed is reported with its line instead.

use crate::decide::guest::NicId;
use crate::decide::ifname;
use crate::decide::observed::{OWNER_KEY, OWNER_VALUE};

/// Marker and header lines of the managed blocks (ours, then the runbook's).
const BLOCK_LINES: [&str; 7] = [
    BEGIN,
    END,
    "# Managed by ovs-autoattach: guest ports on Open vSwitch. Do not edit; changes are overwritten.",
    "# No guest OVS ports detected.",
    LEGACY_BEGIN,
    LEGACY_END,
    "# Managed by nmstate-monitor, do not edit manually.",
];
const BEGIN: &str = "# BEGIN ovs-autoattach";
const END: &str = "# END ovs-autoattach";
const LEGACY_BEGIN: &str = "# BEGIN nmstate-monitor";
const LEGACY_END: &str = "# END nmstate-monitor";

/// What cleaning a file does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// The cleaned file; equal to the input when there was nothing to remove.
    pub content: String,
    /// The interfaces whose stanzas were removed, in file order.
    pub removed: Vec<String>,
    /// Guest-port stanzas left in place for want of a mark: (1-based line, name).
    pub unmarked: Vec<(usize, String)>,
}

impl Migration {
    pub fn changed(&self, original: &str) -> bool {
        self.content != original
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line<'a> {
    Blank,
    Comment,
    /// `iface NAME ...` or `mapping NAME`: starts a stanza.
    Stanza(&'a str),
    /// `auto` / `allow-CLASS` with its names.
    Class,
    /// `source`, `source-directory` and any other top-level keyword: ends a stanza.
    Directive,
    /// An option line (indented or not) inside a stanza.
    Option,
}

fn classify(text: &str) -> Line<'_> {
    let trimmed = text.trim();
    let mut words = trimmed.split_whitespace();
    match words.next() {
        None => Line::Blank,
        Some(w) if w.starts_with('#') => Line::Comment,
        Some("iface" | "mapping") => Line::Stanza(words.next().unwrap_or_default()),
        Some("auto") => Line::Class,
        Some(w) if w.starts_with("allow-") => Line::Class,
        Some("source" | "source-directory" | "rename") => Line::Directive,
        Some(_) => Line::Option,
    }
}

/// One stanza: the line range of its `iface` line and the option and comment lines under it.
struct Stanza<'a> {
    name: &'a str,
    first: usize,
    last: usize,
}

fn stanzas<'a>(kinds: &[Line<'a>]) -> Vec<Stanza<'a>> {
    let mut out: Vec<Stanza> = Vec::new();
    let mut open = false;
    for (i, kind) in kinds.iter().enumerate() {
        match kind {
            Line::Stanza(name) => {
                out.push(Stanza {
                    name,
                    first: i,
                    last: i,
                });
                open = true;
            }
            Line::Option | Line::Comment if open => {
                if let Some(s) = out.last_mut() {
                    s.last = i;
                }
            }
            _ => open = false,
        }
    }
    out
}

/// The option lines of a stanza, as words.
fn options<'a>(lines: &[&'a str], kinds: &[Line], s: &Stanza) -> Vec<Vec<&'a str>> {
    (s.first + 1..=s.last)
        .filter(|&i| kinds[i] == Line::Option)
        .map(|i| lines[i].split_whitespace().collect())
        .collect()
}

fn is_marked(opts: &[Vec<&str>], name: &str) -> bool {
    let mark = format!("external_ids:{OWNER_KEY}={OWNER_VALUE}");
    opts.iter().any(
        |w| matches!(w.as_slice(), ["ovs_extra", "set", "Port", n, m] if *n == name && *m == mark),
    )
}

/// A stanza of the shape the managed blocks' writers rendered for a guest port.
fn is_guest_port_shape(lines: &[&str], opts: &[Vec<&str>], s: &Stanza) -> bool {
    let iface: Vec<&str> = lines[s.first].split_whitespace().collect();
    if iface.as_slice() != ["iface", s.name, "inet", "manual"] || ifname::validate(s.name).is_err()
    {
        return false;
    }
    let mut port = false;
    let mut bridge = false;
    for w in opts {
        match w.as_slice() {
            ["ovs_type", "OVSPort"] => port = true,
            ["ovs_bridge", b] if ifname::validate(b).is_ok() => bridge = true,
            ["ovs_options", ..] | ["ovs_extra", ..] => {}
            _ => return false,
        }
    }
    port && bridge
}

/// Whether the block starting at line `begin` lists the stanza `s` itself, as both writers
/// listed every port: `auto NAME` and `allow-ovs NAME` on the two lines right before its `iface`
/// line, inside the block.
fn block_lists(lines: &[&str], begin: usize, s: &Stanza) -> bool {
    let listing = |i: usize, class: &str| {
        let words: Vec<&str> = lines[i].split_whitespace().collect();
        words == [class, s.name]
    };
    s.first >= begin + 3 && listing(s.first - 2, "auto") && listing(s.first - 1, "allow-ovs")
}

/// Whether an unmarked stanza inside an intact block (starting at line `begin`) is the block's
/// own guest port: a Proxmox NIC name, or a raw veth the block itself lists.
fn is_blocks_guest(lines: &[&str], begin: usize, s: &Stanza) -> bool {
    NicId::parse(s.name).is_some() || (s.name.starts_with("veth") && block_lists(lines, begin, s))
}

/// The 0-based ranges of intact blocks: a BEGIN line and the next marker line, its END.
fn intact_blocks(kinds: &[Line], lines: &[&str]) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, &str)> = None;
    for (i, line) in lines.iter().enumerate() {
        if kinds[i] != Line::Comment {
            continue;
        }
        match (line.trim(), open) {
            (BEGIN, None) => open = Some((i, END)),
            (LEGACY_BEGIN, None) => open = Some((i, LEGACY_END)),
            (t, Some((b, end))) if t == end => {
                blocks.push((b, i));
                open = None;
            }
            (BEGIN | LEGACY_BEGIN | END | LEGACY_END, _) => open = None,
            _ => {}
        }
    }
    blocks
}

/// Cleans `content` as the module documentation says. `is_guest_name` says which names are guest
/// NICs (the tool's prefixes): an unmarked guest-port stanza is reported only for those, since
/// an uplink (`eno1`) has the same shape. Pure: the caller writes the result.
pub fn clean(content: &str, is_guest_name: impl Fn(&str) -> bool) -> Migration {
    let lines: Vec<&str> = content.split_inclusive('\n').collect();
    let kinds: Vec<Line> = lines.iter().map(|l| classify(l)).collect();
    let blocks = intact_blocks(&kinds, &lines);
    let block_of = |i: usize| {
        blocks
            .iter()
            .find(|&&(b, e)| b < i && i < e)
            .map(|&(b, _)| b)
    };

    let mut remove = vec![false; lines.len()];
    let mut removed: Vec<String> = Vec::new();
    let mut unmarked = Vec::new();
    for s in stanzas(&kinds) {
        let opts = options(&lines, &kinds, &s);
        let shaped = is_guest_port_shape(&lines, &opts, &s);
        let ours = is_marked(&opts, s.name)
            || block_of(s.first).is_some_and(|b| is_blocks_guest(&lines, b, &s));
        if shaped && ours {
            // The `iface` line and the options; a comment under them is not the tool's (the
            // marker lines go below, with every other marker line).
            for i in s.first..=s.last {
                if kinds[i] != Line::Comment {
                    remove[i] = true;
                }
            }
            removed.push(s.name.to_string());
        } else if shaped && is_guest_name(s.name) {
            unmarked.push((s.first + 1, s.name.to_string()));
        }
    }
    for (i, line) in lines.iter().enumerate() {
        if kinds[i] == Line::Comment && BLOCK_LINES.contains(&line.trim()) {
            remove[i] = true;
        }
    }

    // `auto` and `allow-*` lines: drop the removed names; drop the line once it names nothing.
    let mut rewritten: Vec<Option<String>> = vec![None; lines.len()];
    for (i, line) in lines.iter().enumerate() {
        if kinds[i] != Line::Class {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let kept: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !removed.iter().any(|r| r == w))
            .collect();
        if kept.len() == words.len() - 1 {
            continue;
        }
        if kept.is_empty() {
            remove[i] = true;
        } else {
            let indent = &line[..line.len() - line.trim_start().len()];
            let nl = if line.ends_with('\n') { "\n" } else { "" };
            rewritten[i] = Some(format!("{indent}{} {}{nl}", words[0], kept.join(" ")));
        }
    }

    // Blank lines that separated removed lines from what follows go with them; at the end of the
    // file, so do the blank lines that separated them from what precedes.
    let mut last_kept_nonblank: Option<usize> = None;
    let mut after_removed = false;
    let mut drop_blank = vec![false; lines.len()];
    for i in 0..lines.len() {
        match (kinds[i], remove[i]) {
            (_, true) => after_removed = true,
            (Line::Blank, false) => drop_blank[i] = after_removed,
            (_, false) => {
                after_removed = false;
                last_kept_nonblank = Some(i);
            }
        }
    }
    let tail = last_kept_nonblank.map_or(0, |k| k + 1);
    if remove[tail..].iter().any(|r| *r) {
        for i in tail..lines.len() {
            if kinds[i] == Line::Blank {
                drop_blank[i] = true;
            }
        }
    }

    let mut out = String::with_capacity(content.len());
    for (i, line) in lines.iter().enumerate() {
        if remove[i] || drop_blank[i] {
            continue;
        }
        match &rewritten[i] {
            Some(r) => out.push_str(r),
            None => out.push_str(line),
        }
    }
    Migration {
        content: out,
        removed,
        unmarked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean_(content: &str) -> Migration {
        clean(content, |n| n.starts_with("tap") || n.starts_with("veth"))
    }

    #[test]
    fn uplinks_are_not_reported() {
        let content = "auto eno1\niface eno1 inet manual\n\tovs_type OVSPort\n\tovs_bridge vmbr1\n";
        let m = clean_(content);
        assert!(m.unmarked.is_empty() && m.content == content);
    }

    const HEAD: &str = "# my network\nauto lo\niface lo inet loopback\n\nauto vmbr0\niface vmbr0 inet manual\n    ovs_type OVSBridge\n    ovs_ports eno1\n";

    /// The block as ovs-autoattach 0.1.0 rendered it, appended as it appended it.
    const OLD_BLOCK: &str = "# BEGIN ovs-autoattach\n# Managed by ovs-autoattach: guest ports on Open vSwitch. Do not edit; changes are overwritten.\nauto tap100i0\nallow-ovs tap100i0\niface tap100i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10\n    ovs_extra set Port tap100i0 external_ids:owner=ovs-autoattach\n\nauto veth101i0\nallow-ovs veth101i0\niface veth101i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n# END ovs-autoattach\n";

    #[test]
    fn an_intact_block_goes_and_the_admins_bytes_stay() {
        let m = clean_(&format!("{HEAD}\n{OLD_BLOCK}"));
        assert_eq!(m.content, HEAD);
        assert_eq!(m.removed, ["tap100i0", "veth101i0"]);
        assert!(m.unmarked.is_empty());
        // In the middle of the file.
        let tail = "\n# after\nsource /etc/network/interfaces.d/*\n";
        let m = clean_(&format!("{HEAD}\n{OLD_BLOCK}{tail}"));
        assert_eq!(m.content, format!("{HEAD}{tail}"));
    }

    #[test]
    fn the_runbooks_block_goes() {
        let legacy = "# BEGIN nmstate-monitor\n# Managed by nmstate-monitor, do not edit manually.\nauto veth1234\nallow-ovs veth1234\niface veth1234 inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n\nauto tap100i0\nallow-ovs tap100i0\niface tap100i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n# END nmstate-monitor\n";
        let m = clean_(&format!("{HEAD}\n{legacy}"));
        assert_eq!(m.content, HEAD);
        assert_eq!(m.removed, ["veth1234", "tap100i0"]);
    }

    /// A tap the block lists but Proxmox never names so (`tap5678`, an OpenVPN `tap0`) is not a
    /// guest NIC: its unmarked stanza stays, and is reported.
    #[test]
    fn a_tap_without_a_proxmox_name_stays_even_when_the_block_lists_it() {
        let stanza = "auto tap5678\nallow-ovs tap5678\niface tap5678 inet manual\n    ovs_type OVSPort\n    ovs_bridge ovsbr0\n";
        let content = format!("{HEAD}\n# BEGIN nmstate-monitor\n{stanza}# END nmstate-monitor\n");
        let m = clean_(&content);
        assert_eq!(m.content, format!("{HEAD}\n{stanza}"));
        assert!(m.removed.is_empty());
        assert_eq!(m.unmarked, [(13, "tap5678".to_string())]);
    }

    /// The uplink of a bridge, which Proxmox's editor moves between guest stanzas, has a guest
    /// port's shape: inside an intact block it stays, byte for byte, even with an `allow-ovs`
    /// line (only a raw veth's name counts as listed by the block).
    #[test]
    fn an_uplink_inside_an_intact_block_stays() {
        let uplink = "auto eno2\niface eno2 inet manual\n\tovs_type OVSPort\n\tovs_bridge vmbr1\n";
        let listed = "auto eno3\nallow-ovs eno3\niface eno3 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n";
        let content = format!(
            "{HEAD}\n# BEGIN ovs-autoattach\n# Managed by ovs-autoattach: guest ports on Open vSwitch. Do not edit; changes are overwritten.\nauto tap100i0\nallow-ovs tap100i0\niface tap100i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_options tag=10\n\n{uplink}\n{listed}\nauto veth200i0\nallow-ovs veth200i0\niface veth200i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n# END ovs-autoattach\n"
        );
        let m = clean(&content, |_| true);
        assert_eq!(m.content, format!("{HEAD}\n{uplink}\n{listed}"));
        assert_eq!(m.removed, ["tap100i0", "veth200i0"]);
        // Reported like every unmarked guest-port stanza that stays, when the caller's prefixes
        // take the name; the tool's own (`tap`, `veth`) do not.
        assert_eq!(
            m.unmarked,
            [(20, "eno2".to_string()), (26, "eno3".to_string())]
        );
        assert!(clean_(&content).unmarked.is_empty());
    }

    /// Inside an intact block only guest NIC names go: Proxmox's exact pattern, or a raw veth
    /// that the block lists with `auto NAME` and `allow-ovs NAME` right before its stanza.
    #[test]
    fn only_guest_nic_names_go_from_an_intact_block() {
        let stanza = |name: &str| {
            format!("iface {name} inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n")
        };
        let listed = |name: &str| format!("auto {name}\nallow-ovs {name}\n{}", stanza(name));
        let kept = [
            // Taps that are not Proxmox's pattern: a leading zero, a VMID out of 100-999999999,
            // an index out of 0-31.
            listed("tap0100i0"),
            listed("tap99i0"),
            listed("tap1000000000i0"),
            listed("tap100i32"),
            // Raw veths the block does not list as its writers did.
            format!("auto vethRaw02\n{}", stanza("vethRaw02")),
            format!(
                "allow-ovs vethRaw03\nauto vethRaw03\n{}",
                stanza("vethRaw03")
            ),
            format!(
                "auto vethRaw04\nallow-ovs vethRaw04\n# note\n{}",
                stanza("vethRaw04")
            ),
            format!(
                "auto vethRaw05 vethRaw06\nallow-ovs vethRaw05\n{}",
                stanza("vethRaw05")
            ),
            format!(
                "auto vethRaw07\nallow-ovs vethRaw08\n{}",
                stanza("vethRaw07")
            ),
        ];
        let gone = [
            listed("tap100i0"),
            stanza("tap999999999i31"),
            stanza("veth100i0"),
            listed("vethA1b2C3"),
            // Not a Proxmox name (LXC's hotplug peer), but a veth the block lists.
            listed("veth100i0p"),
        ];
        let body: Vec<String> = kept.iter().chain(&gone).cloned().collect();
        let content = format!(
            "# BEGIN ovs-autoattach\n{}# END ovs-autoattach\n",
            body.join("\n")
        );
        let m = clean(&content, |_| false);
        assert_eq!(m.content, kept.join("\n"));
        assert_eq!(
            m.removed,
            [
                "tap100i0",
                "tap999999999i31",
                "veth100i0",
                "vethA1b2C3",
                "veth100i0p"
            ]
        );
        // Outside an intact block, none of them goes: they carry no mark.
        let m = clean(&body.join("\n"), |_| false);
        assert_eq!(m.content, body.join("\n"));
    }

    /// The admin's comments stay byte for byte: under `# END`, inside the block, under a
    /// removed stanza, and between its options. Only the marker and header lines go.
    #[test]
    fn admin_comments_in_and_after_a_block_stay() {
        let m = clean_(&format!("{HEAD}\n{OLD_BLOCK}# vmbr2 is for storage\n"));
        assert_eq!(m.content, format!("{HEAD}\n# vmbr2 is for storage\n"));
        assert_eq!(m.removed, ["tap100i0", "veth101i0"]);

        let content = format!(
            "{HEAD}\n# BEGIN ovs-autoattach\n# Managed by ovs-autoattach: guest ports on Open vSwitch. Do not edit; changes are overwritten.\n# tap100i0 is the web server\nauto tap100i0\nallow-ovs tap100i0\niface tap100i0 inet manual\n    ovs_type OVSPort\n# VLAN 10 is the DMZ\n    ovs_bridge vmbr1\n    ovs_options tag=10\n#under the stanza, as Proxmox writes a comment\n\n# END ovs-autoattach\n# after the block\n#  indented or not\n\nauto eno1\niface eno1 inet manual\n"
        );
        let m = clean_(&content);
        assert_eq!(
            m.content,
            format!(
                "{HEAD}\n# tap100i0 is the web server\n# VLAN 10 is the DMZ\n#under the stanza, as Proxmox writes a comment\n\n# after the block\n#  indented or not\n\nauto eno1\niface eno1 inet manual\n"
            )
        );
        assert_eq!(m.removed, ["tap100i0"]);
        assert_eq!(clean_(&m.content).content, m.content, "idempotent");
    }

    /// As Proxmox's editor leaves the block (no `# BEGIN`, `# END` under the last guest
    /// stanza): a comment right under `# END` is the admin's and stays.
    #[test]
    fn a_comment_under_end_stays_after_a_gui_save() {
        let content = format!(
            "{HEAD}\nauto tap100i0\niface tap100i0 inet manual\n\tovs_bridge vmbr1\n\tovs_options tag=10\n\tovs_type OVSPort\n\tovs_extra set Port tap100i0 external_ids:owner=ovs-autoattach\n# END ovs-autoattach\n# keep the uplink below on vmbr1\n\nauto eno2\niface eno2 inet manual\n\tovs_type OVSPort\n\tovs_bridge vmbr1\n"
        );
        let m = clean_(&content);
        assert_eq!(
            m.content,
            format!(
                "{HEAD}\n# keep the uplink below on vmbr1\n\nauto eno2\niface eno2 inet manual\n\tovs_type OVSPort\n\tovs_bridge vmbr1\n"
            )
        );
        assert_eq!(m.removed, ["tap100i0"]);
    }

    #[test]
    fn nothing_to_do_changes_nothing() {
        for content in [HEAD, "", "no newline", "auto x\n\n\n"] {
            let m = clean_(content);
            assert_eq!(m.content, content);
            assert!(!m.changed(content));
        }
    }

    #[test]
    fn an_unmarked_guest_stanza_outside_a_block_stays_and_is_reported() {
        let content = format!(
            "{HEAD}\nauto tap200i0\niface tap200i0 inet manual\n\tovs_bridge vmbr1\n\tovs_type OVSPort\n"
        );
        let m = clean_(&content);
        assert_eq!(m.content, content);
        assert_eq!(m.unmarked, [(11, "tap200i0".to_string())]);
    }

    #[test]
    fn foreign_stanzas_inside_a_block_stay() {
        let content = format!(
            "{HEAD}\n# BEGIN ovs-autoattach\nauto vlan60\niface vlan60 inet static\n    address 10.60.0.10/24\n    ovs_type OVSIntPort\n    ovs_bridge vmbr1\n\nauto tap100i0\niface tap100i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n\nauto tap101i0\niface tap101i0 inet static\n    address 10.0.0.1/24\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n# END ovs-autoattach\n"
        );
        let m = clean_(&content);
        assert_eq!(
            m.content,
            format!(
                "{HEAD}\nauto vlan60\niface vlan60 inet static\n    address 10.60.0.10/24\n    ovs_type OVSIntPort\n    ovs_bridge vmbr1\n\nauto tap101i0\niface tap101i0 inet static\n    address 10.0.0.1/24\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n"
            )
        );
        assert_eq!(m.removed, ["tap100i0"]);
    }

    #[test]
    fn shared_auto_lines_keep_the_other_names() {
        let content = "auto lo tap1i0 eno1\niface lo inet loopback\n\niface tap1i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_extra set Port tap1i0 external_ids:owner=ovs-autoattach\n\nauto eno1\niface eno1 inet manual\n";
        let m = clean_(content);
        assert_eq!(
            m.content,
            "auto lo eno1\niface lo inet loopback\n\nauto eno1\niface eno1 inet manual\n"
        );
    }

    #[test]
    fn a_mark_naming_another_port_or_a_hostile_name_is_not_ours() {
        for content in [
            "auto tap1i0\niface tap1i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_extra set Port tap2i0 external_ids:owner=ovs-autoattach\n",
            "auto tap1i0\niface tap1i0 inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    post-up echo hi\n    ovs_extra set Port tap1i0 external_ids:owner=ovs-autoattach\n",
            "iface tap$(x) inet manual\n    ovs_type OVSPort\n    ovs_bridge vmbr1\n    ovs_extra set Port tap$(x) external_ids:owner=ovs-autoattach\n",
        ] {
            assert_eq!(clean_(content).content, content);
        }
    }

    #[test]
    fn orphan_markers_go_even_under_an_admin_stanza() {
        let content = "auto vmbr1\niface vmbr1 inet manual\n\tovs_type OVSBridge\n# END ovs-autoattach\n#Guests\n";
        assert_eq!(
            clean_(content).content,
            "auto vmbr1\niface vmbr1 inet manual\n\tovs_type OVSBridge\n#Guests\n"
        );
    }

    #[test]
    fn cleaning_is_idempotent() {
        let once = clean_(&format!("{HEAD}\n{OLD_BLOCK}\n# tail\n")).content;
        assert_eq!(clean_(&once).content, once);
    }
}
