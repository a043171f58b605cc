//! VLAN settings of a port, with Proxmox's own semantics (`PVE::Network::tap_plug`):
//! `tag` alone is an access port, `trunks` alone a trunk, and both together a trunk whose native
//! VLAN is `tag`, sent untagged (`vlan_mode=native-untagged`).

use std::fmt;

/// Lowest and highest usable 802.1Q VLAN IDs (0 and 4095 are reserved).
pub const MIN_ID: u16 = 1;
pub const MAX_ID: u16 = 4094;

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

/// Parses a Proxmox `tag` value: a VLAN ID from 1 to 4094.
pub fn parse_id(s: &str) -> Result<u16, String> {
    let id: u32 = s
        .parse()
        .ok()
        .filter(|_| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("VLAN ID {s:?} is not a number"))?;
    if !(u32::from(MIN_ID)..=u32::from(MAX_ID)).contains(&id) {
        return Err(format!("VLAN ID {id} is outside {MIN_ID}-{MAX_ID}"));
    }
    Ok(id as u16)
}

/// Parses a Proxmox `trunks` value, `20;30-40;50`, into a sorted list of IDs. Ranges expand; a
/// reversed range (`40-30`) or an ID outside 1–4094 is an error.
pub fn parse_trunks(s: &str) -> Result<Vec<u16>, String> {
    let mut ids = Vec::new();
    for item in s.split(';') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_id(a)?, parse_id(b)?);
                if a > b {
                    return Err(format!("trunk range {item:?} is reversed"));
                }
                ids.extend(a..=b);
            }
            None => ids.push(parse_id(item)?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
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

    #[test]
    fn ids() {
        assert_eq!(parse_id("1"), Ok(1));
        assert_eq!(parse_id("4094"), Ok(4094));
        for bad in [
            "0",
            "4095",
            "70000",
            "",
            "-1",
            "+5",
            "1e3",
            "10 ",
            "99999999999999999999",
        ] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trunks() {
        assert_eq!(parse_trunks("20;30-33"), Ok(vec![20, 30, 31, 32, 33]));
        assert_eq!(parse_trunks("5;5;3"), Ok(vec![3, 5]));
        assert_eq!(parse_trunks("1-4094").map(|v| v.len()), Ok(4094));
        for bad in ["40-30", "", "1;;2", "0-5", "5-4095", "a", "1-2-3"] {
            assert!(parse_trunks(bad).is_err(), "{bad:?}");
        }
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
