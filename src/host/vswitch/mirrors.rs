//! The `Mirror` table, as this tool reads and writes it: decoding its rows (for the full read of
//! [`super::Vswitch::observe_all`], both decoders, and the narrow read of `plug`), and the
//! operations that carry out a [`MirrorPlan`] in the same transaction as the port changes.
//!
//! `Bridge.mirrors` holds strong references: a mirror is created by inserting the row and adding
//! it to its bridge, and removed by taking it off its bridge (OVSDB deletes the row). Its port
//! columns are weak references: a port deleted later silently drops out of them, which is why a
//! guest restart (Proxmox's `del-port` and `add-port`) leaves a mirror without its output until
//! the next `plug` or `apply` writes the new row in.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

use super::{DB, PORT_COLUMNS, Vswitch, bridge_map, port_row, port_state, rows, select};
use crate::decide::mirrors::{self, MirrorChange, MirrorPlan, Out, PROMISC_KEY, Want};
use crate::decide::observed::{MirrorStats, OWNER_KEY, OWNER_VALUE, Observed, ObservedMirror};
use crate::decide::plan::PortRef;
use crate::decide::plan::{Change, Plan};
use crate::host::ovsdb::datum;

/// The read of the `Mirror` table: every column the server has, none named. Mirrors are few,
/// and this way a column that only newer servers have (`filter`, Open vSwitch 3.5) is read where
/// it exists and never named in a request where it does not (a server refuses an unknown
/// column): the rows say which columns the server's schema has ([`has_filter`]).
pub(super) fn select_all() -> Value {
    json!({"op": "select", "table": "Mirror", "where": []})
}

/// Whether the server's `Mirror` table has the `filter` column, as the rows read with
/// [`select_all`] show (with no row there is nothing to correct either).
pub(super) fn has_filter(rows: &[Value]) -> bool {
    rows.iter().any(|r| r.get("filter").is_some())
}

/// The `mirror uuid -> bridge name` map of `Bridge` rows read with their `mirrors` column.
pub(super) fn holders(bridges: &[Value]) -> BTreeMap<&str, &str> {
    let mut holder = BTreeMap::new();
    for b in bridges {
        let name = b["name"].as_str().unwrap_or_default();
        for m in datum::uuids(&b["mirrors"]) {
            holder.insert(m, name);
        }
    }
    holder
}

/// `Mirror` rows as the planner compares them. `holder` maps a mirror's uuid to its bridge.
pub(super) fn decode(
    rows: &[Value],
    holder: &BTreeMap<&str, &str>,
) -> anyhow::Result<Vec<ObservedMirror>> {
    rows.iter()
        .map(|row| {
            let uuid = datum::as_uuid(&row["_uuid"]).context("a Mirror row has no uuid")?;
            let name = row["name"]
                .as_str()
                .with_context(|| format!("mirror {uuid} has no name"))?;
            let uuids = |column: &str| -> BTreeSet<String> {
                datum::uuids(&row[column])
                    .into_iter()
                    .map(String::from)
                    .collect()
            };
            Ok(ObservedMirror {
                uuid: uuid.to_string(),
                name: name.to_string(),
                bridge: holder.get(uuid).map(|b| b.to_string()),
                select_all: row["select_all"].as_bool() == Some(true),
                select_src: uuids("select_src_port"),
                select_dst: uuids("select_dst_port"),
                select_vlan: datum::ints(&row["select_vlan"]).into_iter().collect(),
                output: uuids("output_port").into_iter().next(),
                output_vlan: datum::opt_int(&row["output_vlan"]),
                filter: datum::opt_str(&row["filter"]).map(String::from),
                stats: stats(&row["statistics"]),
                owner: datum::map_get(&row["external_ids"], OWNER_KEY).map(String::from),
                promisc: datum::map_get(&row["external_ids"], PROMISC_KEY).map(String::from),
            })
        })
        .collect()
}

/// A mirror's `statistics` map, when ovs-vswitchd has written both counters.
fn stats(column: &Value) -> Option<MirrorStats> {
    let count = |key| datum::map_int(column, key).and_then(|n| u64::try_from(n).ok());
    Some(MirrorStats {
        tx_packets: count("tx_packets")?,
        tx_bytes: count("tx_bytes")?,
    })
}

impl Vswitch {
    /// What a `plug` needs for the mirror rules of its NIC, in one snapshot: the bridges, every
    /// mirror, and the ports `names` (those that exist) with the bridge holding each. Mirrors are
    /// few; the port table is never read whole.
    pub fn observe_ports(&mut self, names: &BTreeSet<String>) -> anyhow::Result<Observed> {
        let mut ops = vec![
            select("Bridge", json!([]), &["_uuid", "name", "mirrors"]),
            select_all(),
        ];
        ops.extend(
            names
                .iter()
                .map(|n| select("Port", json!([["name", "==", n]]), &PORT_COLUMNS)),
        );
        let results = self.client.transact(DB, ops)?;
        let bridges = rows(&results, 0)?;
        let mirrors = rows(&results, 1)?;
        let mut observed = Observed {
            bridges: bridge_map(bridges),
            mirrors: decode(mirrors, &holders(bridges))?,
            mirror_filter: has_filter(mirrors),
            ..Observed::default()
        };
        for i in 0..names.len() {
            if let Some(p) = rows(&results, 2 + i)?.first() {
                let (name, state) = port_state(p)?;
                observed.ports.insert(name, state);
            }
        }
        if observed.ports.is_empty() {
            return Ok(observed);
        }
        let held: Vec<(String, Value)> = observed
            .ports
            .iter()
            .map(|(name, s)| {
                let cond = json!([["ports", "includes", datum::uuid(&s.uuid)]]);
                (name.clone(), select("Bridge", cond, &["name"]))
            })
            .collect();
        let (names, ops): (Vec<String>, Vec<Value>) = held.into_iter().unzip();
        let results = self.client.transact(DB, ops)?;
        for (i, name) in names.iter().enumerate() {
            let bridge = rows(&results, i)?
                .first()
                .and_then(|b| b["name"].as_str())
                .map(String::from);
            if let Some(state) = observed.ports.get_mut(name) {
                state.bridge = bridge;
            }
        }
        Ok(observed)
    }
}

/// The operations that carry out `mirrors`, to go in the transaction of the port plan `plan`
/// (whose attached ports they may reference by their named-uuid). Guarded like the port
/// changes: each bridge whose `mirrors` changes by a `wait` on its name, each mirror rewritten
/// and each existing port referenced by a `wait` on its row, so that anything deleted since it was
/// observed fails the whole transaction (and the run reads OVS again) instead of leaving a
/// mirror half-made.
pub fn ops(observed: &Observed, plan: &Plan, mirrors: &MirrorPlan) -> anyhow::Result<Vec<Value>> {
    let attached: BTreeMap<&str, String> = plan
        .changes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Change::Attach { port, .. } => Some((port.as_str(), port_row(i))),
            _ => None,
        })
        .collect();
    let mut ops = Vec::new();
    let mut inserts: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut deletes: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    // Existing port rows referenced, with their names.
    let mut referenced: BTreeMap<&str, &str> = BTreeMap::new();
    for (j, change) in mirrors.changes.iter().enumerate() {
        match change {
            MirrorChange::Create(want) => {
                let mut row = columns(want, &attached, &mut referenced)?;
                row["name"] = json!(want.name);
                row["external_ids"] = marks(want);
                let id = format!("mirror{j}");
                ops.push(json!({"op": "insert", "table": "Mirror", "row": row, "uuid-name": id}));
                inserts
                    .entry(&want.bridge)
                    .or_default()
                    .push(datum::named_uuid(&id));
            }
            MirrorChange::Update { uuid, want, .. } => {
                let here = json!([["_uuid", "==", datum::uuid(uuid)]]);
                ops.push(
                    json!({"op": "wait", "table": "Mirror", "where": here, "columns": ["name"],
                                "until": "==", "rows": [{"name": want.name}], "timeout": 0}),
                );
                let mut row = columns(want, &attached, &mut referenced)?;
                // Never asked for by a rule; named only where the server has the column.
                if observed.mirror_filter {
                    row["filter"] = datum::set([]);
                }
                ops.push(json!({"op": "update", "table": "Mirror", "where": here, "row": row}));
                ops.push(json!({"op": "mutate", "table": "Mirror", "where": here, "mutations": [
                    ["external_ids", "delete", datum::set([json!(OWNER_KEY), json!(PROMISC_KEY)])],
                    ["external_ids", "insert", marks(want)],
                ]}));
            }
            MirrorChange::Remove { uuid, bridge, .. } => {
                deletes.entry(bridge).or_default().push(datum::uuid(uuid))
            }
        }
    }
    for (uuid, name) in referenced {
        ops.push(json!({"op": "wait", "table": "Port", "where": [["_uuid", "==", datum::uuid(uuid)]],
                        "columns": ["name"], "until": "==", "rows": [{"name": name}], "timeout": 0}));
    }
    super::mutate_bridges(&mut ops, observed, "mirrors", inserts, deletes)?;
    Ok(ops)
}

/// The columns a rule decides, all written explicitly, so that nothing an admin (or the seed
/// tool) set on an adopted mirror survives: `select_all` off, no VLAN selection, no output VLAN
/// (and, by [`ops`], no `filter` where the server has that column).
/// `snaplen` is not the rule's business and is left as it is.
fn columns<'a>(
    want: &'a Want,
    attached: &BTreeMap<&str, String>,
    referenced: &mut BTreeMap<&'a str, &'a str>,
) -> anyhow::Result<Value> {
    let mut port = |r: &'a PortRef, name: &'a str| -> anyhow::Result<Value> {
        match r {
            PortRef::Row(uuid) => {
                referenced.insert(uuid, name);
                Ok(datum::uuid(uuid))
            }
            PortRef::New(port) => attached
                .get(port.as_str())
                .map(|row| datum::named_uuid(row))
                .ok_or_else(|| anyhow!("port {port} is not attached by this transaction")),
        }
    };
    let mut sources = Vec::new();
    for (name, r) in &want.sources {
        sources.push(port(r, name)?);
    }
    let (out, vlan) = match &want.out {
        Out::Port(name, r) => (Some(port(r, name)?), None),
        Out::Vlan(v) => (None, Some(json!(v))),
    };
    let only = |on: bool| {
        datum::set(if on && !want.all {
            sources.clone()
        } else {
            vec![]
        })
    };
    Ok(json!({
        "select_all": want.all,
        "select_src_port": only(want.select.src()),
        "select_dst_port": only(want.select.dst()),
        "select_vlan": datum::set(want.vlans.iter().map(|v| json!(v))),
        "output_port": datum::set(out),
        "output_vlan": datum::set(vlan),
    }))
}

/// The mark, and the promiscuous record when there is one.
fn marks(want: &Want) -> Value {
    let links = mirrors::record(&want.promisc);
    let mut pairs = vec![(OWNER_KEY, OWNER_VALUE)];
    if let Some(links) = &links {
        pairs.push((PROMISC_KEY, links.as_str()));
    }
    datum::map(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::mirrors::Select;
    use crate::decide::vlan::Vlan;

    fn observed() -> Observed {
        Observed {
            bridges: [("vmbr1".to_string(), "B1".to_string())].into(),
            ..Observed::default()
        }
    }

    fn want(src: PortRef, out: PortRef, select: Select) -> Want {
        Want {
            name: "mirror_vmbr1_eno1_to_vm100i1".into(),
            bridge: "vmbr1".into(),
            all: false,
            sources: vec![("eno1".into(), src)],
            out: Out::Port("tap100i1".into(), out),
            select,
            vlans: BTreeSet::new(),
            promisc: ["eno1".to_string()].into(),
        }
    }

    #[test]
    fn a_mirror_of_a_port_attached_in_the_same_transaction() {
        let plan = Plan {
            changes: vec![
                Change::Update {
                    port: "x".into(),
                    uuid: "X".into(),
                    bridge: "vmbr1".into(),
                    from: Vlan::default(),
                    to: Vlan::default(),
                },
                Change::Attach {
                    port: "tap100i1".into(),
                    bridge: "vmbr1".into(),
                    vlan: Vlan::default(),
                    internal: false,
                },
            ],
        };
        let mplan = MirrorPlan {
            changes: vec![MirrorChange::Create(want(
                PortRef::Row("E1".into()),
                PortRef::New("tap100i1".into()),
                Select::Src,
            ))],
            ..MirrorPlan::default()
        };
        let ops = ops(&observed(), &plan, &mplan).unwrap();
        assert_eq!(ops.len(), 4, "{ops:#?}");
        assert_eq!(ops[0]["op"], "insert");
        assert_eq!(ops[0]["uuid-name"], "mirror0");
        assert_eq!(
            ops[0]["row"],
            json!({"name": "mirror_vmbr1_eno1_to_vm100i1", "select_all": false,
                   "select_src_port": ["set", [["uuid", "E1"]]], "select_dst_port": ["set", []],
                   "select_vlan": ["set", []], "output_port": ["set", [["named-uuid", port_row(1)]]],
                   "output_vlan": ["set", []],
                   "external_ids": ["map", [["owner", "ovs-autoattach"], ["ovs-autoattach-promisc", "eno1"]]]})
        );
        // The existing source row is guarded, then the bridge, then the bridge's mirrors.
        assert_eq!(ops[1]["table"], "Port");
        assert_eq!(ops[1]["rows"], json!([{"name": "eno1"}]));
        assert_eq!(
            (ops[2]["op"].as_str(), ops[2]["table"].as_str()),
            (Some("wait"), Some("Bridge"))
        );
        assert_eq!(
            ops[3]["mutations"],
            json!([["mirrors", "insert", ["set", [["named-uuid", "mirror0"]]]]])
        );
        // A port the plan does not attach cannot be referenced as new.
        assert!(ops_err(&Plan::default(), &mplan));
    }

    fn ops_err(plan: &Plan, mplan: &MirrorPlan) -> bool {
        ops(&observed(), plan, mplan).is_err()
    }

    #[test]
    fn updates_are_guarded_and_keep_other_external_ids() {
        let mplan = MirrorPlan {
            changes: vec![
                MirrorChange::Update {
                    uuid: "M1".into(),
                    want: want(
                        PortRef::Row("E1".into()),
                        PortRef::Row("T1".into()),
                        Select::Both,
                    ),
                    adopt: true,
                    differs: vec![],
                },
                MirrorChange::Remove {
                    uuid: "M2".into(),
                    name: "old".into(),
                    bridge: "vmbr1".into(),
                    reason: "x".into(),
                },
            ],
            ..MirrorPlan::default()
        };
        let ops = ops(&observed(), &Plan::default(), &mplan).unwrap();
        let kinds: Vec<(&str, &str)> = ops
            .iter()
            .map(|o| (o["op"].as_str().unwrap(), o["table"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("wait", "Mirror"),
                ("update", "Mirror"),
                ("mutate", "Mirror"),
                ("wait", "Port"),
                ("wait", "Port"),
                ("wait", "Bridge"),
                ("mutate", "Bridge"),
            ]
        );
        assert_eq!(
            ops[1]["row"]["select_dst_port"],
            json!(["set", [["uuid", "E1"]]])
        );
        assert_eq!(
            ops[2]["mutations"][0],
            json!([
                "external_ids",
                "delete",
                ["set", ["owner", "ovs-autoattach-promisc"]]
            ])
        );
        assert_eq!(
            ops[6]["mutations"],
            json!([["mirrors", "delete", ["set", [["uuid", "M2"]]]]])
        );
        // A server without `Mirror.filter` (Open vSwitch 3.1) never sees the column named.
        assert!(!serde_json::to_string(&ops).unwrap().contains("filter"));
        // One with it (3.5) has it cleared with the other columns a rule decides.
        let with_filter = Observed {
            mirror_filter: true,
            ..observed()
        };
        let ops = super::ops(&with_filter, &Plan::default(), &mplan).unwrap();
        assert_eq!(ops[1]["row"]["filter"], json!(["set", []]));
        assert_eq!(
            serde_json::to_string(&ops)
                .unwrap()
                .matches("filter")
                .count(),
            1
        );
    }

    #[test]
    fn mirror_rows_decode() {
        let bridges =
            [json!({"_uuid": ["uuid", "B1"], "name": "vmbr1", "mirrors": ["uuid", "M1"]})];
        let rows = [
            json!({"_uuid": ["uuid", "M1"], "name": "m1", "select_all": false,
                   "select_src_port": ["uuid", "P1"], "select_dst_port": ["set", [["uuid", "P1"], ["uuid", "P2"]]],
                   "select_vlan": ["set", []], "output_port": ["uuid", "P3"], "output_vlan": ["set", []],
                   "external_ids": ["map", [["owner", "ovs-autoattach"], ["ovs-autoattach-promisc", "eno1"]]]}),
            json!({"_uuid": ["uuid", "M2"], "name": "m2", "select_all": true,
                   "select_src_port": ["set", []], "select_dst_port": ["set", []],
                   "select_vlan": ["set", [10, 20]], "output_port": ["set", []], "output_vlan": 7,
                   "external_ids": ["map", []]}),
        ];
        let m = decode(&rows, &holders(&bridges)).unwrap();
        assert_eq!(m[0].bridge.as_deref(), Some("vmbr1"));
        assert!(m[0].owned() && !m[0].select_all && m[0].select_vlan.is_empty());
        assert_eq!(m[0].select_dst.len(), 2);
        assert_eq!(
            (m[0].output.as_deref(), m[0].promisc.as_deref()),
            (Some("P3"), Some("eno1"))
        );
        assert_eq!(m[1].bridge, None);
        assert!(m[1].select_all && !m[1].owned());
        assert_eq!(m[1].select_vlan, [10, 20].into());
        assert_eq!((m[1].output.as_deref(), m[1].output_vlan), (None, Some(7)));
        assert!(decode(&[json!({"name": "x"})], &BTreeMap::new()).is_err());
        // Open vSwitch 3.1 rows have no `filter`; 3.5 rows have it, set or empty.
        assert!(!has_filter(&rows) && m[0].filter.is_none());
        let mut newer = rows.clone();
        newer[0]["filter"] = json!("icmp");
        newer[0]["statistics"] = json!(["map", [["tx_bytes", 980], ["tx_packets", 10]]]);
        newer[1]["statistics"] = json!(["map", []]);
        newer[1]["filter"] = json!(["set", []]);
        let m = decode(&newer, &holders(&bridges)).unwrap();
        assert!(has_filter(&newer));
        assert_eq!(
            (m[0].filter.as_deref(), m[1].filter.as_deref()),
            (Some("icmp"), None)
        );
        assert_eq!(
            (m[0].stats, m[1].stats),
            (
                Some(MirrorStats {
                    tx_packets: 10,
                    tx_bytes: 980
                }),
                None
            )
        );
    }
}
