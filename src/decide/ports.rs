//! The guest ports as the host files list them: the one type both renderers share, so the pure
//! renderers depend on nothing outside the core.

use std::collections::BTreeMap;

use crate::decide::plan::PortAfter;
use crate::decide::vlan::Vlan;

/// A guest port on Open vSwitch, as both host files describe it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub name: String,
    pub bridge: String,
    pub vlan: Vlan,
    /// Carries the ownership mark (restored by the stanza's `ovs_extra` on a manual `ifup`).
    pub owned: bool,
}

/// The host-file entries for the ports OVS holds once a plan is committed: the ports whose name
/// is a guest NIC present on the host.
pub fn entries(
    ports: &BTreeMap<String, PortAfter>,
    is_guest_nic: impl Fn(&str) -> bool,
) -> Vec<HostPort> {
    ports
        .iter()
        .filter(|(name, _)| is_guest_nic(name))
        .map(|(name, p)| HostPort {
            name: name.clone(),
            bridge: p.bridge.clone(),
            vlan: p.vlan.clone(),
            owned: p.owned,
        })
        .collect()
}
