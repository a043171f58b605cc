//! The pure core: everything that decides, as functions of plain data. Nothing here opens a
//! socket, a file or a process, so every rule is unit-tested without root.
//!
//! [`config`] is the tool's own configuration and its policy, [`nic`] spells guest NIC names
//! (tap, veth, fwbr, fwln) and parses them back, [`guest`] parses guest configurations,
//! [`desired`] says where every guest NIC belongs (for a raw LXC container's NIC, with
//! [`lxc`], its own configuration),
//! [`plan`] compares that with what OVS holds ([`observed`]). The host files list the guest
//! ports ([`ports`]): [`stanzas`] renders the tool's ifupdown2 file, [`nmstate`] the nmstate
//! file, [`sources`] checks that the interfaces file reads ours, and [`migrate`] cleans the
//! interfaces file of what older versions wrote into it; [`hostfiles`] decides, from the files
//! as read, what each is to hold, when one is refused, and in which order they are written.
//! [`vlan`], [`ifname`] and [`glob`] are the value types and checks they share. [`firewall`] is
//! Proxmox's firewall shape and [`linkplan`] the kernel side of a plug (fwbr, fwln, IPv6, rate
//! limits, `link_down`). [`mirrors`] keeps the traffic mirrors of proxmox-ovs-mirror's rules
//! file; [`status`] reads the desired state and the plan into the `status` report.

pub mod config;
pub(crate) mod desired;
pub(crate) mod firewall;
pub(crate) mod glob;
pub mod guest;
pub(crate) mod hostfiles;
pub mod ifname;
pub(crate) mod linkplan;
pub(crate) mod lxc;
pub mod migrate;
pub(crate) mod mirrors;
pub(crate) mod nic;
pub(crate) mod nmstate;
pub(crate) mod observed;
pub(crate) mod plan;
pub mod ports;
pub(crate) mod sources;
pub mod stanzas;
pub(crate) mod status;
#[cfg(test)]
mod testing;
pub mod vlan;
