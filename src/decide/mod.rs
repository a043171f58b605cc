//! The pure core: everything that decides, as functions of plain data. Nothing here opens a
//! socket, a file or a process, so every rule is unit-tested without root.
//!
//! [`guest`] parses guest configurations, [`desired`] says where every guest NIC belongs,
//! [`plan`] compares that with what OVS holds ([`observed`]), and [`nmstate`] and
//! [`interfaces`] render the host files. [`vlan`], [`ifname`] and [`glob`] are the value types
//! and checks they share.

pub mod desired;
pub mod glob;
pub mod guest;
pub mod ifname;
pub mod interfaces;
pub mod nmstate;
pub mod observed;
pub mod plan;
pub mod vlan;
