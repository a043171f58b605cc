//! VLAN settings of a port, with Proxmox's own semantics (`PVE::Network::tap_plug`):
//! `tag` alone is an access port, `trunks` alone a trunk, and both together a trunk whose native
//! VLAN is `tag`, sent untagged (`vlan_mode=native-untagged`).

use std::fmt;

/// A NIC's `tag` (its access or native VLAN): 1–4094, as qemu-server's and pve-container's
/// `tag` options declare it (`minimum => 1, maximum => 4094`).
pub const TAG_MIN: u16 = 1;
pub const TAG_MAX: u16 = 4094;

/// A trunk VLAN ID: 0–4095. Proxmox checks `trunks` against a pattern only and hands the IDs to
/// OVS unchanged, and OVS's `Port.trunks` column takes 0–4095 (`vswitch.ovsschema`).
pub const TRUNK_MIN: u16 = 0;
pub const TRUNK_MAX: u16 = 4095;

/// OVS `Port.vlan_mode`. Only [`VlanMode::NativeUntagged`] is ever desired; the others are kept
/// so that an admin's hand-set mode is observed faithfully and corrected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VlanMode {
    Trunk,
    Access,
    NativeTagged,
    NativeUntagged,
    Dot1qTunnel,
}

impl VlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VlanMode::Trunk => "trunk",
            VlanMode::Access => "access",
            VlanMode::NativeTagged => "native-tagged",
            VlanMode::NativeUntagged => "native-untagged",
            VlanMode::Dot1qTunnel => "dot1q-tunnel",
        }
    }

    pub fn parse(s: &str) -> Option<VlanMode> {
        Some(match s {
            "trunk" => VlanMode::Trunk,
            "access" => VlanMode::Access,
            "native-tagged" => VlanMode::NativeTagged,
            "native-untagged" => VlanMode::NativeUntagged,
            "dot1q-tunnel" => VlanMode::Dot1qTunnel,
            _ => return None,
        })
    }
}

/// The three VLAN columns of an OVS port. `trunks` is kept sorted and free of duplicates so that
/// equality means "same configuration".
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vlan {
    pub tag: Option<u16>,
    pub trunks: Vec<u16>,
    pub mode: Option<VlanMode>,
}

impl Vlan {
    /// The settings Proxmox would give a NIC with these `tag` and `trunks` options.
    pub fn proxmox(tag: Option<u16>, mut trunks: Vec<u16>) -> Vlan {
        trunks.sort_unstable();
        trunks.dedup();
        let mode = (tag.is_some() && !trunks.is_empty()).then_some(VlanMode::NativeUntagged);
        Vlan { tag, trunks, mode }
    }

    pub fn is_untagged(&self) -> bool {
        *self == Vlan::default()
    }

    /// The `ovs_options` / `ovs-vsctl set Port` form: `tag=10 trunks=20,30 vlan_mode=...`.
    /// Empty for an untagged port.
    pub fn ovs_options(&self) -> String {
        let mut parts = Vec::new();
        if let Some(tag) = self.tag {
            parts.push(format!("tag={tag}"));
        }
        if !self.trunks.is_empty() {
            let list: Vec<String> = self.trunks.iter().map(u16::to_string).collect();
            parts.push(format!("trunks={}", list.join(",")));
        }
        if let Some(mode) = self.mode {
            parts.push(format!("vlan_mode={}", mode.as_str()));
        }
        parts.join(" ")
    }
}

impl fmt::Display for Vlan {
    /// Compact form for logs and plans: `tag=10 trunks=20,30-40 vlan_mode=native-untagged`, or
    /// `untagged`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_untagged() {
            return f.write_str("untagged");
        }
        let mut sep = "";
        if let Some(tag) = self.tag {
            write!(f, "tag={tag}")?;
            sep = " ";
        }
        if !self.trunks.is_empty() {
            let ranges: Vec<String> = ranges(&self.trunks)
                .into_iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            write!(f, "{sep}trunks={}", ranges.join(","))?;
            sep = " ";
        }
        if let Some(mode) = self.mode {
            write!(f, "{sep}vlan_mode={}", mode.as_str())?;
        }
        Ok(())
    }
}

/// Parses a `tag` value the way Proxmox's schema reads an integer (`PVE::JSONSchema::is_integer`:
/// an optional sign, then decimal digits, leading zeros allowed) and checks it is
/// [`TAG_MIN`]–[`TAG_MAX`].
pub fn parse_tag(s: &str) -> Result<u16, String> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let value = decimal(digits).ok_or_else(|| format!("VLAN ID {s:?} is not a number"))?;
    // Every negative value (and -0) is below the minimum.
    check_tag(value)
        .filter(|_| !negative)
        .ok_or_else(|| format!("VLAN ID {s} is outside {TAG_MIN}-{TAG_MAX}"))
}

/// `id` as a tag, if it is [`TAG_MIN`]–[`TAG_MAX`].
pub fn check_tag(id: u32) -> Option<u16> {
    (u32::from(TAG_MIN)..=u32::from(TAG_MAX))
        .contains(&id)
        .then_some(id as u16)
}

/// `id` as a trunk VLAN ID, if it is [`TRUNK_MIN`]–[`TRUNK_MAX`].
pub fn check_trunk(id: u32) -> Option<u16> {
    (u32::from(TRUNK_MIN)..=u32::from(TRUNK_MAX))
        .contains(&id)
        .then_some(id as u16)
}

/// Parses one trunk VLAN ID: decimal digits (leading zeros allowed, as OVS reads them),
/// [`TRUNK_MIN`]–[`TRUNK_MAX`].
pub fn parse_trunk_id(s: &str) -> Result<u16, String> {
    let value = decimal(s).ok_or_else(|| format!("trunk VLAN ID {s:?} is not a number"))?;
    check_trunk(value)
        .ok_or_else(|| format!("trunk VLAN ID {s} is outside {TRUNK_MIN}-{TRUNK_MAX}"))
}

/// Parses a Proxmox `trunks` value, `20;30-40;50`, into a sorted list of IDs. Ranges expand; a
/// reversed range (`40-30`, which OVS refuses) or an ID outside [`TRUNK_MIN`]–[`TRUNK_MAX`] is an
/// error.
pub fn parse_trunks(s: &str) -> Result<Vec<u16>, String> {
    let mut ids = Vec::new();
    for item in s.split(';') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_trunk_id(a)?, parse_trunk_id(b)?);
                if a > b {
                    return Err(format!("trunk range {item:?} is reversed"));
                }
                ids.extend(a..=b);
            }
            None => ids.push(parse_trunk_id(item)?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The value of a non-empty string of ASCII digits, saturating at `u32::MAX` (any such value is
/// out of every VLAN range); `None` for anything else.
fn decimal(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| {
        s.bytes().fold(0u32, |n, b| {
            n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
        })
    })
}

/// Collapses a sorted ID list into inclusive ranges: `[20, 30, 31, 32]` → `[(20,20), (30,32)]`.
pub fn ranges(ids: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &id in ids {
        match out.last_mut() {
            Some((_, end)) if id == *end + 1 => *end = id,
            _ => out.push((id, id)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxmox_semantics() {
        assert_eq!(Vlan::proxmox(None, vec![]), Vlan::default());
        let access = Vlan::proxmox(Some(10), vec![]);
        assert_eq!((access.tag, access.mode), (Some(10), None));
        let trunk = Vlan::proxmox(None, vec![30, 20, 20]);
        assert_eq!((trunk.trunks.as_slice(), trunk.mode), (&[20, 30][..], None));
        let both = Vlan::proxmox(Some(10), vec![20]);
        assert_eq!(both.mode, Some(VlanMode::NativeUntagged));
    }

    #[test]
    fn display_and_options() {
        let v = Vlan::proxmox(Some(10), vec![20, 30, 31, 32, 40]);
        assert_eq!(
            v.to_string(),
            "tag=10 trunks=20,30-32,40 vlan_mode=native-untagged"
        );
        assert_eq!(
            v.ovs_options(),
            "tag=10 trunks=20,30,31,32,40 vlan_mode=native-untagged"
        );
        assert_eq!(Vlan::default().to_string(), "untagged");
        assert_eq!(Vlan::default().ovs_options(), "");
        assert_eq!(Vlan::proxmox(None, vec![5]).to_string(), "trunks=5");
    }

    /// `tag` is 1–4094: qemu-server `PVE/QemuServer/Network.pm` `$net_fmt` and pve-container
    /// `PVE/LXC/Config.pm` `$netconf_desc` both declare `tag` with `minimum => 1, maximum => 4094`.
    #[test]
    fn tag_boundaries() {
        assert_eq!(parse_tag("0"), Err("VLAN ID 0 is outside 1-4094".into()));
        assert_eq!(parse_tag("1"), Ok(1));
        assert_eq!(parse_tag("4094"), Ok(4094));
        assert_eq!(
            parse_tag("4095"),
            Err("VLAN ID 4095 is outside 1-4094".into())
        );
        assert_eq!(
            parse_tag("4096"),
            Err("VLAN ID 4096 is outside 1-4094".into())
        );
        assert_eq!((check_tag(0), check_tag(1)), (None, Some(1)));
        assert_eq!((check_tag(4094), check_tag(4095)), (Some(4094), None));
        assert_eq!(check_tag(4096), None);
    }

    /// Proxmox reads `tag` as a JSON-schema integer (pve-common `PVE/JSONSchema.pm`
    /// `is_integer`: `^[+-]?\d+$`) and compares it as a number, so a sign and leading zeros
    /// pass; OVS reads such a value the same way.
    #[test]
    fn tag_syntax() {
        assert_eq!(parse_tag("+5"), Ok(5));
        assert_eq!(parse_tag("0010"), Ok(10));
        assert_eq!(parse_tag("000000000000000000004094"), Ok(4094));
        for out in ["-5", "-0", "+0", "70000", "99999999999999999999"] {
            assert!(
                parse_tag(out).unwrap_err().contains("is outside"),
                "{out:?}"
            );
        }
        for bad in ["", "+", "-", "1e3", "10 ", " 10", "0x10", "5.0", "++5"] {
            assert!(
                parse_tag(bad).unwrap_err().contains("is not a number"),
                "{bad:?}"
            );
        }
    }

    /// Trunk IDs are 0–4095: Proxmox checks `trunks` against a pattern only and OVS's
    /// `Port.trunks` takes 0–4095 (`ovs-vsctl add-port br0 p trunks=4096` fails with "4096 is not
    /// in the valid range 0 to 4095").
    #[test]
    fn trunk_boundaries() {
        assert_eq!(parse_trunk_id("0"), Ok(0));
        assert_eq!(parse_trunk_id("1"), Ok(1));
        assert_eq!(parse_trunk_id("4094"), Ok(4094));
        assert_eq!(parse_trunk_id("4095"), Ok(4095));
        assert_eq!(
            parse_trunk_id("4096"),
            Err("trunk VLAN ID 4096 is outside 0-4095".into())
        );
        assert_eq!((check_trunk(0), check_trunk(1)), (Some(0), Some(1)));
        assert_eq!(
            (check_trunk(4094), check_trunk(4095)),
            (Some(4094), Some(4095))
        );
        assert_eq!(check_trunk(4096), None);
        assert_eq!(parse_trunk_id("010"), Ok(10));
        for bad in ["", "+5", "-1", "1e3", " 1"] {
            assert!(parse_trunk_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trunks() {
        assert_eq!(parse_trunks("20;30-33"), Ok(vec![20, 30, 31, 32, 33]));
        assert_eq!(parse_trunks("5;5;3"), Ok(vec![3, 5]));
        assert_eq!(parse_trunks("10;4095"), Ok(vec![10, 4095]));
        assert_eq!(parse_trunks("0;20"), Ok(vec![0, 20]));
        assert_eq!(parse_trunks("0-2;4094-4095"), Ok(vec![0, 1, 2, 4094, 4095]));
        assert_eq!(parse_trunks("0-4095").map(|v| v.len()), Ok(4096));
        assert_eq!(
            parse_trunks("40-30"),
            Err("trunk range \"40-30\" is reversed".into())
        );
        for bad in [
            "", "1;;2", "5-4096", "4096", "a", "1-2-3", "1;", "-5", "1,2",
        ] {
            assert!(parse_trunks(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn edge_ids_render() {
        let v = Vlan::proxmox(Some(10), vec![4095, 0, 1]);
        assert_eq!(
            v.to_string(),
            "tag=10 trunks=0-1,4095 vlan_mode=native-untagged"
        );
        assert_eq!(
            v.ovs_options(),
            "tag=10 trunks=0,1,4095 vlan_mode=native-untagged"
        );
    }

    #[test]
    fn range_compression() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 7), (9, 10)]);
        assert_eq!(ranges(&[]), vec![]);
    }

    #[test]
    fn modes_round_trip() {
        for m in [
            VlanMode::Trunk,
            VlanMode::Access,
            VlanMode::NativeTagged,
            VlanMode::NativeUntagged,
            VlanMode::Dot1qTunnel,
        ] {
            assert_eq!(VlanMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(VlanMode::parse("bogus"), None);
    }
}
