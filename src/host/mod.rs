//! The adapters: thin layers over what the tool observes and changes on the host. They carry
//! no decisions; each turns the pure core's plain data into effects, or the host into plain data.
//!
//! [`config`] reads the tool's configuration file, [`links`] speaks rtnetlink and [`linkops`]
//! carries out link changes with it, [`sysctl`] and [`tc`] the IPv6 switch and rate limits,
//! [`ovsdb`] is an RFC 7047 client and [`vswitch`] the Open vSwitch schema over it, [`pve`]
//! reads guest configurations and sees which guests Proxmox is working on, [`lxc`] finds a raw
//! container NIC's LXC container and reads its configuration, [`namespace`] checks
//! that the run is on the host, [`files`] writes files atomically, [`hostfiles`] keeps the host
//! files in step, [`lock`] serializes runs, and [`syslog`] sends log lines to the system log.
//! [`promisc`] sets a link's promiscuous flag (for traffic mirrors), and [`vswitchd`] sends
//! ovs-vswitchd its control commands. [`runstate`] records the runs since boot in the run
//! directory (last apply, failures), and [`pmxcfs`] keeps the node summaries of the cluster view
//! in the cluster file system.

pub(crate) mod config;
pub(crate) mod files;
pub(crate) mod hostfiles;
pub(crate) mod linkops;
pub(crate) mod links;
pub mod lock;
pub(crate) mod lxc;
pub(crate) mod namespace;
pub(crate) mod ovsdb;
pub(crate) mod pmxcfs;
pub(crate) mod promisc;
pub(crate) mod pve;
pub(crate) mod runstate;
pub(crate) mod sysctl;
pub mod syslog;
pub(crate) mod tc;
pub(crate) mod vswitch;
pub(crate) mod vswitchd;
