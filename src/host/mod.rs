//! The adapters: thin layers over what the tool observes and changes on the host. They carry
//! no decisions; each turns the pure core's plain data into effects, or the host into plain data.
//!
//! [`links`] speaks rtnetlink, [`ovsdb`] is an RFC 7047 client and [`vswitch`] the Open vSwitch
//! schema over it, [`pve`] reads guest configurations, [`files`] writes files atomically,
//! [`hostfiles`] keeps the host files in step, [`lock`] serializes runs, and [`syslog`] sends log
//! lines to the system log. [`promisc`] sets a link's promiscuous flag (for traffic mirrors).
//! [`runstate`] records the runs since boot in the run directory (last apply, failures), and
//! [`pmxcfs`] keeps the node summaries of the cluster view in the cluster file system.

pub mod files;
pub mod hostfiles;
pub mod linkops;
pub mod links;
pub mod lock;
pub mod namespace;
pub mod ovsdb;
pub mod pmxcfs;
pub mod promisc;
pub mod pve;
pub mod runstate;
pub mod sysctl;
pub mod syslog;
pub mod tc;
pub mod vswitch;
