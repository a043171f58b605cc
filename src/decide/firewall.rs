//! Proxmox's firewall shape for a guest NIC on an OVS bridge (`firewall=1`).
//!
//! pve-common's `tap_plug` does not put such a NIC on OVS itself. It creates a Linux bridge
//! `fwbr<vmid>i<n>` holding the tap/veth, and an OVS internal port `fwln<vmid>o<n>` on the
//! configured bridge, carrying the NIC's VLAN settings and enslaved to that fwbr (the firewall
//! filters on the fwbr). A reload or a del-br loses the fwln (and its kernel device); Proxmox
//! rebuilds it only on the next `tap_plug`, so the tool rebuilds it.
//!
//! Ownership: the fwln port the tool creates carries the port mark like any port of its own; a
//! fwbr the tool creates carries the link alias [`FWBR_MARK`] (Linux bridges have no
//! `external_ids`, the alias is what survives the run). Only marked objects are ever deleted.

use crate::decide::guest::{GuestId, NicId};
use crate::decide::nic::{self, Role};

/// `IFLA_IFALIAS` of a fwbr the tool created.
pub const FWBR_MARK: &str = "ovs-autoattach";

/// The two objects of a firewall NIC.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Names {
    /// The Linux bridge holding the NIC: `fwbr<vmid>i<n>`.
    pub fwbr: String,
    /// The OVS internal port enslaved to it: `fwln<vmid>o<n>`.
    pub fwln: String,
}

/// pve-common `$compute_fwbr_names`: `fwbr${vmid}i${devid}` and `fwln${vmid}o${devid}`.
pub fn names(nic: NicId) -> Names {
    let slot = nic.slot();
    Names {
        fwbr: slot.fwbr(),
        fwln: slot.fwln(),
    }
}

/// The guests a `fwln<vmid>o<n>` or `fwbr<vmid>i<n>` link may belong to: the VMID does not say
/// whether the guest is a VM or a container, so both.
pub fn guests_of(name: &str) -> Vec<GuestId> {
    match nic::parse(name) {
        Some((slot, Role::Fwbr | Role::Fwln)) => slot.guests().to_vec(),
        _ => Vec::new(),
    }
}

/// Whether `master` is the fwbr Proxmox would put `nic` in.
pub fn is_fwbr_of(master: &str, nic: NicId) -> bool {
    master == nic.slot().fwbr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_proxmox() {
        let nic = NicId::parse("tap100i3").unwrap();
        assert_eq!(
            names(nic),
            Names {
                fwbr: "fwbr100i3".into(),
                fwln: "fwln100o3".into()
            }
        );
        // 16 bytes: Proxmox's `check_iface_name` refuses it, and so does the tool.
        let nic = NicId::parse("veth999999999i31").unwrap();
        assert!(crate::decide::ifname::validate(&names(nic).fwln).is_err());
        assert!(is_fwbr_of("fwbr100i3", NicId::parse("tap100i3").unwrap()));
        assert!(!is_fwbr_of("fwbr100i30", NicId::parse("tap100i3").unwrap()));
    }

    #[test]
    fn fwln_names_parse_back() {
        assert_eq!(
            nic::parse_as("fwln100o3", Role::Fwln),
            Some(nic::Slot {
                vmid: 100,
                index: 3
            })
        );
        for bad in [
            "fwln100i3",
            "fwln0100o3",
            "fwlno3",
            "fwln100o",
            "tap100i3",
            "fwln1o03",
        ] {
            assert_eq!(nic::parse_as(bad, Role::Fwln), None, "{bad}");
        }
    }
}
