//! What Open vSwitch holds right now, reduced to what the reconciler compares. Plain data: the
//! OVSDB adapter (`host::vswitch`) fills it, the pure planner reads it.

use std::collections::{BTreeMap, BTreeSet};

use crate::decide::vlan::Vlan;

/// An OVSDB row UUID, as the server prints it.
pub type Uuid = String;

/// `Port.external_ids` key and value that mark a port as created by this tool. Only marked ports
/// are ever deleted; the mark lives in OVSDB itself, so ownership survives reboots, killed runs
/// and reinstalls without any state file of ours.
pub const OWNER_KEY: &str = "owner";
pub const OWNER_VALUE: &str = "ovs-autoattach";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Every OVS bridge by name.
    pub bridges: BTreeMap<String, Uuid>,
    /// Ports by name: all of them after a full read, or just the one asked for.
    pub ports: BTreeMap<String, PortState>,
    /// Every `Mirror` row after a full read; on the `plug` path only when a mirror rule involves
    /// the NIC ([`crate::decide::mirrors`]).
    pub mirrors: Vec<ObservedMirror>,
    /// The server's `Mirror` table has the `filter` column (Open vSwitch 3.5, schema 8.8.0;
    /// 3.1 has none), as the rows read show: a transaction may name it only then.
    pub mirror_filter: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortState {
    pub uuid: Uuid,
    /// The bridge holding the port. `None` only for a row no bridge references, which OVSDB
    /// garbage-collects at the next commit.
    pub bridge: Option<String>,
    pub vlan: Vlan,
    /// Carries the ownership mark.
    pub owned: bool,
}

/// A `Mirror` row as the planner compares it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedMirror {
    pub uuid: Uuid,
    pub name: String,
    /// The bridge whose `mirrors` holds it; `None` for a row no bridge holds (garbage OVSDB
    /// collects at the next commit).
    pub bridge: Option<String>,
    pub select_all: bool,
    pub select_src: BTreeSet<Uuid>,
    pub select_dst: BTreeSet<Uuid>,
    /// `select_vlan`: the VLANs mirrored, none for all.
    pub select_vlan: BTreeSet<i64>,
    pub output: Option<Uuid>,
    pub output_vlan: Option<i64>,
    /// `filter`, when set (Open vSwitch 3.5's flow-match filter on what is mirrored).
    pub filter: Option<String>,
    /// `statistics`: what ovs-vswitchd has sent out of the mirror, when it reports it.
    pub stats: Option<MirrorStats>,
    /// `external_ids:owner`, whoever it names.
    pub owner: Option<String>,
    /// `external_ids:`[`crate::decide::mirrors::PROMISC_KEY`]: a link, or several separated by
    /// commas ([`crate::decide::mirrors::links`]).
    pub promisc: Option<String>,
}

/// A mirror's `statistics` (ovs-vswitchd updates them every few seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MirrorStats {
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl ObservedMirror {
    /// Carries the tool's mark.
    pub fn owned(&self) -> bool {
        self.owner.as_deref() == Some(OWNER_VALUE)
    }
}
