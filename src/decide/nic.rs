//! Guest NIC names, spelled in one place.
//!
//! Proxmox names the host end of a guest's `net<n>` after the guest: `tap<vmid>i<n>` for QEMU
//! (qemu-server), `veth<vmid>i<n>` for LXC (pve-container). With `firewall=1` on an OVS bridge,
//! pve-common's `$compute_fwbr_names` adds a Linux bridge `fwbr<vmid>i<n>` and an OVS internal
//! port `fwln<vmid>o<n>`. A [`Slot`] is the `<vmid>`/`<n>` pair all four share; [`parse`] is the
//! one way back from any of these names to its slot and [`Role`]. Only names as Proxmox prints
//! them are recognised: no leading zeros, VMID 100–999999999, n 0–31. Which guest a slot
//! belongs to is [`crate::decide::guest`]'s part, which builds on this module.

/// Proxmox's VMID range and NIC count.
pub const VMID_MIN: u32 = 100;
pub const VMID_MAX: u32 = 999_999_999;
pub const MAX_NICS: u8 = 32;

/// NIC `<index>` of VMID `<vmid>`: what a NIC name says. A fwbr or fwln name does not say
/// whether the guest is a VM or a container ([`Slot::guests`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub vmid: u32,
    pub index: u8,
}

/// Which of a slot's names a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `tap<vmid>i<n>`: a QEMU NIC's tap device.
    Tap,
    /// `veth<vmid>i<n>`: an LXC NIC's host-side veth.
    Veth,
    /// `fwbr<vmid>i<n>`: the firewall's Linux bridge.
    Fwbr,
    /// `fwln<vmid>o<n>`: the firewall's OVS internal port.
    Fwln,
}

impl Slot {
    pub fn tap(self) -> String {
        format!("tap{}i{}", self.vmid, self.index)
    }

    pub fn veth(self) -> String {
        format!("veth{}i{}", self.vmid, self.index)
    }

    pub fn fwbr(self) -> String {
        format!("fwbr{}i{}", self.vmid, self.index)
    }

    pub fn fwln(self) -> String {
        format!("fwln{}o{}", self.vmid, self.index)
    }

    /// Both host interface names the slot may have, QEMU's first.
    pub fn hosts(self) -> [String; 2] {
        [self.tap(), self.veth()]
    }

    /// `vm<vmid>i<index>`: how the mirror names of proxmox-ovs-mirror end.
    pub fn label(self) -> String {
        format!("vm{}i{}", self.vmid, self.index)
    }
}

/// The slot and role of a name Proxmox makes for a guest NIC; `None` for any other name.
pub fn parse(name: &str) -> Option<(Slot, Role)> {
    let (role, rest, separator) = [
        ("tap", Role::Tap, 'i'),
        ("veth", Role::Veth, 'i'),
        ("fwbr", Role::Fwbr, 'i'),
        ("fwln", Role::Fwln, 'o'),
    ]
    .into_iter()
    .find_map(|(prefix, role, sep)| Some((role, name.strip_prefix(prefix)?, sep)))?;
    let (vmid, index) = rest.split_once(separator)?;
    let vmid: u32 = canonical_number(vmid)?.try_into().ok()?;
    let index: u8 = canonical_number(index)?.try_into().ok()?;
    ((VMID_MIN..=VMID_MAX).contains(&vmid) && index < MAX_NICS)
        .then_some((Slot { vmid, index }, role))
}

/// The slot of `name` when it has `role`.
pub fn parse_as(name: &str, role: Role) -> Option<Slot> {
    parse(name).and_then(|(slot, r)| (r == role).then_some(slot))
}

/// A decimal number without sign or leading zeros, as Proxmox prints them.
pub fn canonical_number(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_slot_and_role() {
        let slot = Slot {
            vmid: 100,
            index: 3,
        };
        for (name, role) in [
            (slot.tap(), Role::Tap),
            (slot.veth(), Role::Veth),
            (slot.fwbr(), Role::Fwbr),
            (slot.fwln(), Role::Fwln),
        ] {
            assert_eq!(parse(&name), Some((slot, role)), "{name}");
        }
        assert_eq!(slot.fwbr(), "fwbr100i3");
        assert_eq!(slot.fwln(), "fwln100o3");
        assert_eq!(slot.hosts(), ["tap100i3", "veth100i3"]);
        assert_eq!(slot.label(), "vm100i3");
        assert_eq!(parse_as("fwln100o3", Role::Fwln), Some(slot));
        assert_eq!(parse_as("fwln100o3", Role::Fwbr), None);
    }

    #[test]
    fn only_names_as_proxmox_prints_them() {
        for not in [
            "tap99i0",
            "tap100i32",
            "tap0100i0",
            "tap100i00",
            "fwln100i3",
            "fwbr100o3",
            "fwln0100o3",
            "fwlno3",
            "fwln100o",
            "fwln1o03",
            "tap1000000000i0",
            "veth-100i0",
            "tap0",
        ] {
            assert_eq!(parse(not), None, "{not}");
        }
    }
}
