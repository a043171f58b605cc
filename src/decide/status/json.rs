//! `status --json`: the report as the JSON document of docs/status.md.
//!
//! Serialized straight from borrowed views of the report, one view struct per object of the
//! schema, with the fields in the order they are printed: at thousands of NICs a
//! `serde_json::Value` tree would cost tens of milliseconds.

use serde::Serialize;

use super::{Counts, FileCounts, PortState, Report, State, kind_name};
use crate::decide::desired::Chosen;
use crate::decide::guest::NicId;
use crate::decide::vlan::Vlan;

/// The version of the JSON document; raised only when a field changes meaning or goes away.
const JSON_VERSION: u32 = 1;

impl Report {
    /// The JSON document (schema version [`JSON_VERSION`], documented in docs/status.md),
    /// pretty-printed, with a final newline.
    pub(crate) fn to_json(&self) -> String {
        let doc = Doc {
            version: JSON_VERSION,
            healthy: self.healthy(),
            needs_apply: self.needs_apply(),
            needs_admin: self.needs_admin(),
            counts: self.counts(),
            file_counts: self.file_counts(),
            nics: self
                .nics
                .iter()
                .map(|n| NicView {
                    name: &n.name,
                    guest: n.guest.map(GuestView::of),
                    decision: n.decision.as_str(),
                    desired: n.desired.as_ref().map(|p| PlaceView {
                        bridge: &p.bridge,
                        vlan: VlanView::of(&p.vlan),
                    }),
                    actual: n.actual.as_ref().map(ActualView::of),
                    state: n.state.as_str(),
                    reason: n.reason.as_deref(),
                    source: n.source.as_deref(),
                    pending: n.pending.as_ref().map(|p| PendingView {
                        value: &p.value,
                        following: match p.following {
                            Chosen::Current => "current",
                            Chosen::Pending => "pending",
                        },
                    }),
                })
                .collect(),
            stale: self
                .stale
                .iter()
                .map(|s| StaleView {
                    name: &s.name,
                    guest: s.guest.map(GuestView::of),
                    actual: ActualView::of(&s.actual),
                    state: State::Stale.as_str(),
                    reason: &s.reason,
                })
                .collect(),
            files: self
                .files
                .iter()
                .map(|f| FileView {
                    role: &f.role,
                    path: &f.path,
                    state: f.state.as_str(),
                    reason: f.reason.as_deref(),
                    source_line: f.source_line.as_deref(),
                })
                .collect(),
            mirrors: self
                .mirrors
                .iter()
                .map(|m| MirrorView {
                    rule: &m.rule,
                    state: m.state.as_str(),
                    reason: m.reason.as_deref(),
                    statistics: m.stats.map(|s| StatsView {
                        tx_packets: s.tx_packets,
                        tx_bytes: s.tx_bytes,
                    }),
                })
                .collect(),
            other: &self.other,
        };
        // Serializing plain structs of strings, numbers and options cannot fail.
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }
}

#[derive(Serialize)]
struct Doc<'a> {
    version: u32,
    healthy: bool,
    needs_apply: bool,
    needs_admin: bool,
    counts: Counts,
    file_counts: FileCounts,
    nics: Vec<NicView<'a>>,
    stale: Vec<StaleView<'a>>,
    files: Vec<FileView<'a>>,
    mirrors: Vec<MirrorView<'a>>,
    other: &'a [String],
}

#[derive(Serialize)]
struct NicView<'a> {
    name: &'a str,
    guest: Option<GuestView>,
    decision: &'static str,
    desired: Option<PlaceView<'a>>,
    actual: Option<ActualView<'a>>,
    state: &'static str,
    reason: Option<&'a str>,
    // Only NICs no Proxmox configuration describes have one; the key is absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    // Only QEMU NICs with a `[PENDING]` network value have one; the key is absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<PendingView<'a>>,
}

#[derive(Serialize)]
struct PendingView<'a> {
    value: &'a str,
    following: &'static str,
}

#[derive(Serialize)]
struct StaleView<'a> {
    name: &'a str,
    guest: Option<GuestView>,
    actual: ActualView<'a>,
    state: &'static str,
    reason: &'a str,
}

#[derive(Serialize)]
struct GuestView {
    vmid: u32,
    kind: &'static str,
    net: String,
}

impl GuestView {
    fn of(nic: NicId) -> GuestView {
        GuestView {
            vmid: nic.guest.vmid,
            kind: kind_name(nic.guest.kind),
            net: nic.key(),
        }
    }
}

#[derive(Serialize)]
struct PlaceView<'a> {
    bridge: &'a str,
    vlan: VlanView<'a>,
}

/// What OVS holds for a port; its UUID is no business of the report's readers.
#[derive(Serialize)]
struct ActualView<'a> {
    bridge: Option<&'a str>,
    vlan: VlanView<'a>,
    owned: bool,
}

impl ActualView<'_> {
    fn of(port: &PortState) -> ActualView<'_> {
        ActualView {
            bridge: port.bridge.as_deref(),
            vlan: VlanView::of(&port.vlan),
            owned: port.owned,
        }
    }
}

#[derive(Serialize)]
struct VlanView<'a> {
    tag: Option<u16>,
    trunks: &'a [u16],
    vlan_mode: Option<&'static str>,
}

impl VlanView<'_> {
    fn of(v: &Vlan) -> VlanView<'_> {
        VlanView {
            tag: v.tag,
            trunks: &v.trunks,
            vlan_mode: v.mode.map(|m| m.as_str()),
        }
    }
}

#[derive(Serialize)]
struct FileView<'a> {
    role: &'a str,
    path: &'a str,
    state: &'static str,
    reason: Option<&'a str>,
    source_line: Option<&'a str>,
}

#[derive(Serialize)]
struct MirrorView<'a> {
    rule: &'a str,
    state: &'static str,
    reason: Option<&'a str>,
    statistics: Option<StatsView>,
}

/// A mirror's `statistics`, as ovs-vswitchd last wrote them.
#[derive(Serialize)]
struct StatsView {
    tx_packets: u64,
    tx_bytes: u64,
}
