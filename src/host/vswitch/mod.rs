//! The Open_vSwitch database, as this tool reads and writes it.
//!
//! Reads are narrow on the `plug` path (the bridge names and one port, never the whole
//! database), and every write is one transaction: the changes, guarded by `wait` preconditions
//! on the bridges they touch, plus `next_cfg += 1` so that [`Vswitch::wait_applied`] can tell when
//! ovs-vswitchd has acted on it, as `ovs-vsctl` does. [`transaction`] builds the operations and
//! is pure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

use crate::decide::config::Config;
use crate::decide::mirrors::MirrorPlan;
use crate::decide::observed::{OWNER_KEY, OWNER_VALUE, Observed, PortState};
use crate::decide::plan::{Change, Plan};
use crate::decide::vlan::{Vlan, VlanMode};
use crate::host::ovsdb::{Client, datum};
use crate::host::vswitchd;

const DB: &str = "Open_vSwitch";
const PORT_COLUMNS: [&str; 6] = [
    "_uuid",
    "name",
    "tag",
    "trunks",
    "vlan_mode",
    "external_ids",
];

/// ovs-vswitchd did not confirm a committed change within the timeout. The change is in the
/// database and ovs-vswitchd will act on it when it comes back.
#[derive(Debug)]
pub struct Unconfirmed {
    pub ports: Vec<String>,
    pub secs: u64,
}

impl std::fmt::Display for Unconfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.ports.is_empty() {
            "the VLAN updates and removals".to_string()
        } else {
            self.ports.join(", ")
        };
        write!(
            f,
            "ovs-vswitchd did not apply the change within {} s (is ovs-vswitchd running?); unconfirmed: {what}",
            self.secs
        )
    }
}

impl std::error::Error for Unconfirmed {}

pub struct Vswitch {
    client: Client,
    timeout: Duration,
    /// ovs-vswitchd's run directory, where its control socket is ([`vswitchd::rundir`]).
    rundir: Option<PathBuf>,
}

impl Vswitch {
    pub fn connect(config: &Config) -> anyhow::Result<Vswitch> {
        let endpoint = config.endpoint().map_err(|e| anyhow!(e))?;
        let client = Client::connect(&endpoint, config.timeout())?;
        Ok(Vswitch {
            client,
            timeout: config.timeout(),
            rundir: vswitchd::rundir(&endpoint),
        })
    }

    /// Has ovs-vswitchd drop its cached datapath flows ([`vswitchd::purge`]), bounded by the
    /// timeout: after a committed change that must stop mirror copies at once.
    pub fn purge_flows(&self) -> anyhow::Result<()> {
        match &self.rundir {
            Some(rundir) => vswitchd::purge(rundir, self.timeout),
            None => {
                log::info!(
                    "OVSDB is reached over TCP, so the control socket of its ovs-vswitchd is not known here: cached flows of a removed mirror copy until they expire (`ovs-appctl revalidator/purge` on that host stops them)"
                );
                Ok(())
            }
        }
    }

    /// Refuses unless the OVSDB server is visible from this PID namespace (see
    /// [`crate::host::namespace::check_server`]).
    pub fn check_same_host(&self) -> anyhow::Result<()> {
        crate::host::namespace::check_server(self.client.endpoint(), self.client.peer_pid())
    }

    /// The bridge names.
    pub fn bridge_names(&mut self) -> anyhow::Result<Vec<String>> {
        let results = self
            .client
            .transact(DB, vec![select("Bridge", json!([]), &["name"])])?;
        Ok(rows(&results, 0)?
            .iter()
            .filter_map(|b| b["name"].as_str().map(String::from))
            .collect())
    }

    /// Every bridge, every port and every mirror, in one consistent snapshot.
    pub fn observe_all(&mut self) -> anyhow::Result<Observed> {
        let reply = self.client.transact_raw(
            DB,
            vec![
                select("Bridge", json!([]), &["_uuid", "name", "ports", "mirrors"]),
                select("Port", json!([]), &PORT_COLUMNS),
                mirrors::select_all(),
            ],
        )?;
        if let Some(observed) = fast::observed(&reply) {
            return Ok(observed);
        }
        observed_all(&self.client.transact_results(&reply)?)
    }

    /// The bridge names and the ports `names` that exist: what `plug` needs (a NIC and the
    /// fwln that would carry it), and no more.
    pub fn observe_named(&mut self, names: &BTreeSet<String>) -> anyhow::Result<Observed> {
        let mut ops = vec![select("Bridge", json!([]), &["_uuid", "name"])];
        ops.extend(
            names
                .iter()
                .map(|n| select("Port", json!([["name", "==", n]]), &PORT_COLUMNS)),
        );
        let results = self.client.transact(DB, ops)?;
        let mut observed = Observed {
            bridges: bridge_map(rows(&results, 0)?),
            ..Observed::default()
        };
        let mut found = Vec::new();
        for i in 0..names.len() {
            if let Some(p) = rows(&results, 1 + i)?.first() {
                found.push(port_state(p)?);
            }
        }
        if found.is_empty() {
            return Ok(observed);
        }
        let holders = self.client.transact(
            DB,
            found
                .iter()
                .map(|(_, state)| {
                    select(
                        "Bridge",
                        json!([["ports", "includes", datum::uuid(&state.uuid)]]),
                        &["name"],
                    )
                })
                .collect(),
        )?;
        for (i, (name, mut state)) in found.into_iter().enumerate() {
            state.bridge = rows(&holders, i)?
                .first()
                .and_then(|b| b["name"].as_str())
                .map(String::from);
            observed.ports.insert(name, state);
        }
        Ok(observed)
    }

    /// Commits `plan` and the mirror changes `mirrors` in one transaction and returns the
    /// `next_cfg` that ovs-vswitchd must reach for it to be in effect. A
    /// [`crate::host::ovsdb::TxnError`] means nothing was committed.
    pub fn commit(
        &mut self,
        observed: &Observed,
        plan: &Plan,
        mirrors: &MirrorPlan,
        mtus: &BTreeMap<String, u32>,
    ) -> anyhow::Result<i64> {
        let mut ops = transaction(observed, plan, mtus)?;
        ops.extend(mirrors::ops(observed, plan, mirrors)?);
        ops.push(
            json!({"op": "mutate", "table": DB, "where": [], "mutations": [["next_cfg", "+=", 1]]}),
        );
        ops.push(select(DB, json!([]), &["next_cfg"]));
        let results = self.client.transact(DB, ops)?;
        let last = results
            .len()
            .checked_sub(1)
            .ok_or_else(|| anyhow!("OVSDB returned no results"))?;
        rows(&results, last)?
            .first()
            .and_then(|r| r["next_cfg"].as_i64())
            .ok_or_else(|| anyhow!("OVSDB did not return next_cfg"))
    }

    /// Waits, bounded by the timeout, until ovs-vswitchd has applied configuration `next_cfg`,
    /// then returns the ports among `ports` whose interface failed (with the reason).
    pub fn wait_applied(
        &mut self,
        next_cfg: i64,
        ports: &[String],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let deadline = Instant::now() + self.timeout;
        let initial = self
            .client
            .monitor(DB, "cfg", json!({DB: {"columns": ["cur_cfg"]}}))?;
        let mut cur = max_cur_cfg(&initial);
        while cur < next_cfg {
            match self.client.next_update("cfg", deadline)? {
                Some(update) => cur = cur.max(max_cur_cfg(&update)),
                None => {
                    return Err(Unconfirmed {
                        ports: ports.to_vec(),
                        secs: self.timeout.as_secs(),
                    }
                    .into());
                }
            }
        }
        if ports.is_empty() {
            return Ok(Vec::new());
        }
        let ops = ports
            .iter()
            .map(|p| {
                select(
                    "Interface",
                    json!([["name", "==", p]]),
                    &["name", "ofport", "error"],
                )
            })
            .collect();
        let results = self.client.transact(DB, ops)?;
        let mut failed = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let Some(row) = rows(&results, i)?.first() else {
                failed.push((port.clone(), "its interface row vanished".to_string()));
                continue;
            };
            if let Some(err) = datum::opt_str(&row["error"]) {
                failed.push((port.clone(), err.to_string()));
            } else if datum::opt_int(&row["ofport"]) == Some(-1) {
                failed.push((
                    port.clone(),
                    "ovs-vswitchd could not add it (ofport -1)".to_string(),
                ));
            }
        }
        Ok(failed)
    }
}

/// The operations that carry out `plan`: inserts for attached ports (marked as ours), updates of
/// VLAN columns, and one `mutate` of `ports` per bridge touched, each bridge guarded by a `wait`
/// so that a bridge deleted since it was observed fails the whole transaction instead of having
/// new rows silently garbage-collected.
///
/// Every change is guarded by a `wait` on what it was decided from ([`guard`]): an attach on
/// the port name still being free (or still the garbage row observed), every other change on
/// the port row still having the observed uuid, VLAN columns and ownership mark. Proxmox's
/// `tap_plug` (`del-port`, then `add-port`), a live `qm set` or ifupdown2 acting between the
/// tool's read and its commit therefore abort the transaction, and the caller decides again
/// from a fresh read, instead of writing a stale VLAN over a new one or deleting a port that
/// was re-created meanwhile.
pub fn transaction(
    observed: &Observed,
    plan: &Plan,
    mtus: &BTreeMap<String, u32>,
) -> anyhow::Result<Vec<Value>> {
    let mut ops = Vec::new();
    let mut inserts: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut deletes: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (i, change) in plan.changes.iter().enumerate() {
        ops.push(guard(observed, change));
        match change {
            Change::Attach {
                port,
                bridge,
                vlan,
                internal,
            } => {
                let (iface, row) = (format!("iface{i}"), port_row(i));
                let mut irow = json!({"name": port});
                if *internal {
                    irow["type"] = json!("internal");
                }
                if let Some(mtu) = mtus.get(bridge) {
                    irow["mtu_request"] = json!(mtu);
                }
                ops.push(
                    json!({"op": "insert", "table": "Interface", "row": irow, "uuid-name": iface}),
                );
                let mut prow = vlan_columns(vlan);
                prow["name"] = json!(port);
                prow["interfaces"] = datum::named_uuid(&iface);
                prow["external_ids"] = datum::map([(OWNER_KEY, OWNER_VALUE)]);
                ops.push(json!({"op": "insert", "table": "Port", "row": prow, "uuid-name": row}));
                inserts
                    .entry(bridge)
                    .or_default()
                    .push(datum::named_uuid(&row));
            }
            Change::Update { uuid, to, .. } => ops.push(update_vlan(uuid, to)),
            Change::Move {
                port,
                uuid,
                from,
                to,
                vlan,
            } => {
                ops.push(update_vlan(uuid, vlan));
                // Proxmox re-plugs a NIC on another bridge with that bridge's MTU
                // (`del-port` + `add-port ... mtu_request=`); so does a move.
                if let Some(mtu) = mtus.get(to.as_str()) {
                    ops.push(json!({"op": "update", "table": "Interface",
                                    "where": [["name", "==", port]], "row": {"mtu_request": mtu}}));
                }
                deletes.entry(from).or_default().push(datum::uuid(uuid));
                inserts.entry(to).or_default().push(datum::uuid(uuid));
            }
            Change::Disown { uuid, .. } => ops.push(json!({
                "op": "mutate", "table": "Port", "where": [["_uuid", "==", datum::uuid(uuid)]],
                "mutations": [["external_ids", "delete", datum::set([json!(OWNER_KEY)])]]
            })),
            Change::Prune { uuid, bridge, .. } => {
                deletes.entry(bridge).or_default().push(datum::uuid(uuid))
            }
        }
    }
    mutate_bridges(&mut ops, observed, "ports", inserts, deletes)?;
    Ok(ops)
}

/// The `wait` that makes `change` fail unless the port is as it was observed: for an attach,
/// no port of that name (or only the unreferenced row seen, which a commit collects); for any
/// other change, the row seen, with the VLAN columns seen and the ownership mark as seen.
fn guard(observed: &Observed, change: &Change) -> Value {
    let port = change.port();
    let seen = observed.ports.get(port);
    if let Change::Attach { .. } = change {
        let rows: Vec<Value> = seen
            .map(|s| json!({"_uuid": datum::uuid(&s.uuid)}))
            .into_iter()
            .collect();
        return json!({"op": "wait", "table": "Port", "where": [["name", "==", port]],
                      "columns": ["_uuid"], "until": "==", "rows": rows, "timeout": 0});
    }
    let Some(state) = seen else {
        // Every other change is planned from an observed row; a missing one means the plan
        // and the observation disagree, which a wait for the impossible turns into a retry.
        return json!({"op": "wait", "table": "Port", "where": [["name", "==", port]],
                      "columns": ["_uuid"], "until": "==", "rows": [{"_uuid": datum::uuid("00000000-0000-0000-0000-000000000000")}], "timeout": 0});
    };
    let vlan = vlan_columns(&state.vlan);
    let mark = datum::map([(OWNER_KEY, OWNER_VALUE)]);
    json!({"op": "wait", "table": "Port", "timeout": 0,
           "where": [["_uuid", "==", datum::uuid(&state.uuid)],
                     ["tag", "==", vlan["tag"]],
                     ["trunks", "==", vlan["trunks"]],
                     ["vlan_mode", "==", vlan["vlan_mode"]],
                     ["external_ids", if state.owned { "includes" } else { "excludes" }, mark]],
           "columns": ["_uuid"], "until": "==", "rows": [{"_uuid": datum::uuid(&state.uuid)}]})
}

/// Appends, for each bridge in `inserts` or `deletes`, a `wait` that the bridge is still the one
/// observed (so that one deleted meanwhile fails the whole transaction instead of having new
/// rows silently garbage-collected) and one `mutate` of its `column` (`ports`, `mirrors`).
pub(super) fn mutate_bridges(
    ops: &mut Vec<Value>,
    observed: &Observed,
    column: &str,
    mut inserts: BTreeMap<&str, Vec<Value>>,
    mut deletes: BTreeMap<&str, Vec<Value>>,
) -> anyhow::Result<()> {
    let touched: BTreeSet<&str> = inserts.keys().chain(deletes.keys()).copied().collect();
    for bridge in touched {
        let uuid = observed
            .bridges
            .get(bridge)
            .ok_or_else(|| anyhow!("bridge {bridge} is not in the observed state"))?;
        let here = json!([["_uuid", "==", datum::uuid(uuid)]]);
        ops.push(
            json!({"op": "wait", "table": "Bridge", "where": here, "columns": ["name"],
                        "until": "==", "rows": [{"name": bridge}], "timeout": 0}),
        );
        let mut mutations = Vec::new();
        if let Some(d) = deletes.remove(bridge) {
            mutations.push(json!([column, "delete", datum::set(d)]));
        }
        if let Some(i) = inserts.remove(bridge) {
            mutations.push(json!([column, "insert", datum::set(i)]));
        }
        ops.push(json!({"op": "mutate", "table": "Bridge", "where": here, "mutations": mutations}));
    }
    Ok(())
}

/// The named-uuid of the Port row that [`transaction`] inserts for `plan.changes[i]`.
fn port_row(i: usize) -> String {
    format!("port{i}")
}

/// The three VLAN columns, written explicitly (an empty set clears a column), so that a stale tag
/// or mode never survives.
fn vlan_columns(vlan: &Vlan) -> Value {
    json!({
        "tag": datum::set(vlan.tag.map(|t| json!(t))),
        "trunks": datum::set(vlan.trunks.iter().map(|t| json!(t))),
        "vlan_mode": datum::set(vlan.mode.map(|m| json!(m.as_str()))),
    })
}

fn update_vlan(uuid: &str, vlan: &Vlan) -> Value {
    json!({"op": "update", "table": "Port", "where": [["_uuid", "==", datum::uuid(uuid)]],
           "row": vlan_columns(vlan)})
}

fn select(table: &str, conditions: Value, columns: &[&str]) -> Value {
    json!({"op": "select", "table": table, "where": conditions, "columns": columns})
}

fn rows(results: &[Value], i: usize) -> anyhow::Result<&Vec<Value>> {
    results
        .get(i)
        .and_then(|r| r.get("rows"))
        .and_then(Value::as_array)
        .with_context(|| format!("OVSDB result {i} has no rows"))
}

/// The snapshot of [`Vswitch::observe_all`] from its three results: every bridge with its ports
/// and mirrors, every port, every mirror.
fn observed_all(results: &[Value]) -> anyhow::Result<Observed> {
    let bridges = rows(results, 0)?;
    let mut owner_of: BTreeMap<&str, &str> = BTreeMap::new();
    for b in bridges {
        let name = b["name"].as_str().unwrap_or_default();
        for p in datum::uuids(&b["ports"]) {
            owner_of.insert(p, name);
        }
    }
    let mirror_rows = rows(results, 2)?;
    let mut observed = Observed {
        bridges: bridge_map(bridges),
        mirrors: mirrors::decode(mirror_rows, &mirrors::holders(bridges))?,
        mirror_filter: mirrors::has_filter(mirror_rows),
        ..Observed::default()
    };
    for p in rows(results, 1)? {
        let (name, mut state) = port_state(p)?;
        state.bridge = owner_of.get(state.uuid.as_str()).map(|b| b.to_string());
        observed.ports.insert(name, state);
    }
    Ok(observed)
}

fn bridge_map(rows: &[Value]) -> BTreeMap<String, String> {
    rows.iter()
        .filter_map(|b| {
            Some((
                b["name"].as_str()?.to_string(),
                datum::as_uuid(&b["_uuid"])?.to_string(),
            ))
        })
        .collect()
}

fn port_state(row: &Value) -> anyhow::Result<(String, PortState)> {
    let name = row["name"]
        .as_str()
        .context("a Port row has no name")?
        .to_string();
    let uuid = datum::as_uuid(&row["_uuid"]).with_context(|| format!("port {name} has no uuid"))?;
    let tag = datum::opt_int(&row["tag"]).and_then(|t| u16::try_from(t).ok());
    let mut trunks: Vec<u16> = datum::ints(&row["trunks"])
        .into_iter()
        .filter_map(|t| u16::try_from(t).ok())
        .collect();
    trunks.sort_unstable();
    let mode = datum::opt_str(&row["vlan_mode"]).and_then(VlanMode::parse);
    let owned = datum::map_get(&row["external_ids"], OWNER_KEY) == Some(OWNER_VALUE);
    Ok((
        name,
        PortState {
            uuid: uuid.to_string(),
            bridge: None,
            vlan: Vlan { tag, trunks, mode },
            owned,
        },
    ))
}

/// The highest `cur_cfg` in a monitor reply or update (`{table: {uuid: {"new": {...}}}}`).
fn max_cur_cfg(tables: &Value) -> i64 {
    tables
        .get(DB)
        .and_then(Value::as_object)
        .map(|rows| {
            rows.values()
                .filter_map(|r| {
                    r.get("new")
                        .and_then(|n| n.get("cur_cfg"))
                        .and_then(Value::as_i64)
                })
                .max()
                .unwrap_or(i64::MIN)
        })
        .unwrap_or(i64::MIN)
}

mod fast;
mod mirrors;

#[cfg(test)]
mod tests {
    use super::*;

    fn observed() -> Observed {
        Observed {
            bridges: [
                ("ovsbr0".to_string(), "B0".to_string()),
                ("vmbr1".into(), "B1".into()),
            ]
            .into(),
            ..Observed::default()
        }
    }

    #[test]
    fn attach_inserts_marked_rows_and_one_guarded_mutate() {
        let plan = Plan {
            changes: vec![
                Change::Attach {
                    port: "tap100i0".into(),
                    bridge: "vmbr1".into(),
                    vlan: Vlan::proxmox(Some(10), vec![20]),
                    internal: false,
                },
                Change::Attach {
                    port: "tap101i0".into(),
                    bridge: "vmbr1".into(),
                    vlan: Vlan::default(),
                    internal: false,
                },
            ],
        };
        let ops = transaction(&observed(), &plan, &[("vmbr1".to_string(), 9000)].into()).unwrap();
        assert_eq!(ops.len(), 8);
        // Each attach first waits for its name to be free: a port Proxmox added meanwhile
        // aborts the transaction instead of meeting a duplicate.
        assert_eq!(
            ops[0],
            json!({"op": "wait", "table": "Port", "where": [["name", "==", "tap100i0"]],
                   "columns": ["_uuid"], "until": "==", "rows": [], "timeout": 0})
        );
        let ops: Vec<Value> = ops
            .into_iter()
            .filter(|o| o["table"] != "Port" || o["op"] != "wait")
            .collect();
        assert_eq!(ops.len(), 6);
        assert_eq!(
            ops[0],
            json!({"op": "insert", "table": "Interface", "row": {"name": "tap100i0", "mtu_request": 9000}, "uuid-name": "iface0"})
        );
        assert_eq!(
            ops[1]["row"],
            json!({"name": "tap100i0", "interfaces": ["named-uuid", "iface0"],
                   "external_ids": ["map", [["owner", "ovs-autoattach"]]],
                   "tag": ["set", [10]], "trunks": ["set", [20]], "vlan_mode": ["set", ["native-untagged"]]})
        );
        assert_eq!(ops[3]["row"]["tag"], json!(["set", []]));
        assert_eq!(ops[4]["op"], "wait");
        assert_eq!(ops[4]["where"], json!([["_uuid", "==", ["uuid", "B1"]]]));
        assert_eq!(
            ops[5]["mutations"],
            json!([[
                "ports",
                "insert",
                ["set", [["named-uuid", "port0"], ["named-uuid", "port1"]]]
            ]])
        );
    }

    #[test]
    fn move_update_prune() {
        let plan = Plan {
            changes: vec![
                Change::Move {
                    port: "tap1".into(),
                    uuid: "P1".into(),
                    from: "ovsbr0".into(),
                    to: "vmbr1".into(),
                    vlan: Vlan::proxmox(Some(5), vec![]),
                },
                Change::Update {
                    port: "tap2".into(),
                    uuid: "P2".into(),
                    bridge: "vmbr1".into(),
                    from: Vlan::default(),
                    to: Vlan::proxmox(None, vec![7, 8]),
                },
                Change::Prune {
                    port: "tap3".into(),
                    uuid: "P3".into(),
                    bridge: "ovsbr0".into(),
                    reason: "gone".into(),
                },
            ],
        };
        let mut seen = observed();
        for (name, uuid, owned) in [
            ("tap1", "P1", true),
            ("tap2", "P2", false),
            ("tap3", "P3", true),
        ] {
            seen.ports.insert(
                name.into(),
                PortState {
                    uuid: uuid.into(),
                    bridge: Some("ovsbr0".into()),
                    vlan: Vlan::default(),
                    owned,
                },
            );
        }
        let ops = transaction(&seen, &plan, &[("vmbr1".to_string(), 9000)].into()).unwrap();
        let ops_s: Vec<String> = ops
            .iter()
            .map(|o| {
                format!(
                    "{} {}",
                    o["op"].as_str().unwrap(),
                    o["table"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            ops_s,
            [
                "wait Port",
                "update Port",
                "update Interface",
                "wait Port",
                "update Port",
                "wait Port",
                "wait Bridge",
                "mutate Bridge",
                "wait Bridge",
                "mutate Bridge"
            ]
        );
        // Every change on an existing row is guarded by the row as it was read: uuid, VLAN
        // columns and ownership mark.
        assert_eq!(
            ops[3]["where"],
            json!([
                ["_uuid", "==", ["uuid", "P2"]],
                ["tag", "==", ["set", []]],
                ["trunks", "==", ["set", []]],
                ["vlan_mode", "==", ["set", []]],
                [
                    "external_ids",
                    "excludes",
                    ["map", [["owner", "ovs-autoattach"]]]
                ]
            ])
        );
        assert_eq!(ops[0]["where"][4][1], "includes");
        // A moved port gets the new bridge's MTU, as Proxmox's re-plug does.
        assert_eq!(
            ops[2],
            json!({"op": "update", "table": "Interface", "where": [["name", "==", "tap1"]],
                   "row": {"mtu_request": 9000}})
        );
        let ops: Vec<Value> = ops
            .into_iter()
            .filter(|o| o["table"] != "Interface" && (o["table"] != "Port" || o["op"] != "wait"))
            .collect();
        assert_eq!(ops[1]["row"]["trunks"], json!(["set", [7, 8]]));
        assert_eq!(
            ops[3]["mutations"],
            json!([["ports", "delete", ["set", [["uuid", "P1"], ["uuid", "P3"]]]]])
        );
        assert_eq!(
            ops[5]["mutations"],
            json!([["ports", "insert", ["set", [["uuid", "P1"]]]]])
        );
    }

    #[test]
    fn unknown_bridge_is_an_error() {
        let plan = Plan {
            changes: vec![Change::Attach {
                port: "t".into(),
                bridge: "nope".into(),
                vlan: Vlan::default(),
                internal: false,
            }],
        };
        assert!(transaction(&observed(), &plan, &BTreeMap::new()).is_err());
    }

    #[test]
    fn port_rows_decode() {
        let row = json!({"_uuid": ["uuid", "U"], "name": "tap1", "tag": 10, "trunks": ["set", [30, 20]],
                         "vlan_mode": "native-untagged", "external_ids": ["map", [["owner", "ovs-autoattach"]]]});
        let (name, s) = port_state(&row).unwrap();
        assert_eq!(name, "tap1");
        assert_eq!(s.vlan, Vlan::proxmox(Some(10), vec![20, 30]));
        assert!(s.owned);
        let row = json!({"_uuid": ["uuid", "U"], "name": "tap1", "tag": ["set", []], "trunks": ["set", []],
                         "vlan_mode": ["set", []], "external_ids": ["map", [["owner", "someone"]]]});
        let (_, s) = port_state(&row).unwrap();
        assert!(s.vlan.is_untagged() && !s.owned);
    }

    /// The generic decoding of a whole `transact` reply message.
    fn generic(reply: &Value) -> anyhow::Result<Observed> {
        observed_all(reply["result"].as_array().unwrap())
    }

    #[test]
    fn fast_decoder_agrees_with_the_generic_one() {
        let reply = json!({"id": 1, "error": null, "result": [
            {"rows": [
                {"_uuid": ["uuid", "B0"], "name": "ovsbr0",
                 "ports": ["set", [["uuid", "P1"], ["uuid", "P2"], ["uuid", "P5"]]],
                 "mirrors": ["set", []]},
                {"_uuid": ["uuid", "B1"], "name": "vmbr1", "ports": ["uuid", "P3"],
                 "mirrors": ["set", [["uuid", "M1"], ["uuid", "M2"]]]},
                {"_uuid": ["uuid", "B2"], "name": "empty", "ports": ["set", []],
                 "mirrors": ["set", []]}]},
            {"rows": [
                {"_uuid": ["uuid", "P1"], "name": "tap1\"x\u{e9}", "tag": 10, "trunks": ["set", [30, 20]],
                 "vlan_mode": "native-untagged",
                 "external_ids": ["map", [["a", "1"], ["owner", "ovs-autoattach"]]]},
                {"_uuid": ["uuid", "P2"], "name": "tap2", "tag": ["set", []], "trunks": ["set", []],
                 "vlan_mode": ["set", []], "external_ids": ["map", []]},
                {"_uuid": ["uuid", "P3"], "name": "eno1", "tag": 70000, "trunks": 5,
                 "vlan_mode": "bogus", "external_ids": ["map", [["owner", "someone"]]]},
                {"_uuid": ["uuid", "P4"], "name": "orphan", "tag": ["set", [7]],
                 "trunks": ["set", [1.5, 9, -3, 4095]], "vlan_mode": ["set", ["access"]],
                 "external_ids": ["map", [["owner", 5], ["owner", "ovs-autoattach"]]]},
                {"_uuid": ["uuid", "P5"], "name": "tap5", "tag": -1, "trunks": ["set", []],
                 "vlan_mode": ["set", []], "external_ids": ["map", [["uuid", "x"]]]}]},
            {"rows": [
                {"_uuid": ["uuid", "M1"], "name": "m1", "select_all": false,
                 "select_src_port": ["uuid", "P3"], "select_dst_port": ["set", [["uuid", "P3"]]],
                 "select_vlan": ["set", []], "output_port": ["uuid", "P2"], "output_vlan": ["set", []],
                 "external_ids": ["map", [["owner", "ovs-autoattach"]]]},
                {"_uuid": ["uuid", "M2"], "name": "m\"2", "select_all": true,
                 "select_src_port": ["set", []], "select_dst_port": ["set", []],
                 "select_vlan": ["set", [5]], "output_port": ["set", []], "output_vlan": 9,
                 "external_ids": ["map", []]},
                {"_uuid": ["uuid", "M3"], "name": "orphan", "select_all": false,
                 "select_src_port": ["set", []], "select_dst_port": ["set", []],
                 "select_vlan": ["set", []], "output_port": ["set", []], "output_vlan": ["set", []],
                 "external_ids": ["map", []]}]}]});
        let fast = fast::observed(&serde_json::to_vec(&reply).unwrap()).expect("usual shape");
        assert_eq!(fast, generic(&reply).unwrap());
        assert_eq!(fast.ports.len(), 5);
        assert_eq!(
            fast.ports["tap1\"x\u{e9}"].bridge.as_deref(),
            Some("ovsbr0")
        );
        assert!(fast.ports["orphan"].owned && fast.ports["orphan"].bridge.is_none());
        assert_eq!(fast.ports["eno1"].bridge.as_deref(), Some("vmbr1"));
        assert_eq!(fast.mirrors.len(), 3);
        assert_eq!(fast.mirrors[0].bridge.as_deref(), Some("vmbr1"));
        assert!(fast.mirrors[0].owned() && fast.mirrors[1].select_all);
        assert_eq!(fast.mirrors[2].bridge, None);
    }

    #[test]
    fn unusual_replies_take_the_generic_way() {
        let port = json!({"_uuid": ["uuid", "P1"], "name": "tap1", "tag": 10, "trunks": ["set", []],
                          "vlan_mode": ["set", []], "external_ids": ["map", []]});
        let bridges = json!({"rows": [{"_uuid": ["uuid", "B0"], "name": "br", "ports": ["uuid", "P1"],
                                       "mirrors": ["set", []]}]});
        let none = json!({"rows": []});
        let odd = |port: Value| json!({"id": 1, "result": [bridges, {"rows": [port]}, none]});
        let fast = |reply: &Value| fast::observed(&serde_json::to_vec(reply).unwrap());
        assert!(fast(&odd(port.clone())).is_some());
        // An operation error, a missing column, a set that is not a list, a nameless row, an
        // unknown tag, an extra result: all left to the generic decoder (and its errors).
        let err = json!({"id": 1, "result": [bridges, {"error": "x", "details": "y"}, none]});
        assert!(fast(&err).is_none());
        let err = json!({"id": 1, "result": [bridges, {"rows": [port]}, {"error": "x"}]});
        assert!(fast(&err).is_none());
        let nameless_mirror = json!({"rows": [{"_uuid": ["uuid", "M"], "name": 5}]});
        let err = json!({"id": 1, "result": [bridges, {"rows": [port]}, nameless_mirror]});
        assert!(fast(&err).is_none());
        assert!(generic(&err).is_err());
        let mut missing = port.clone();
        missing.as_object_mut().unwrap().remove("tag");
        assert!(fast(&odd(missing)).is_none());
        let mut odd_set = port.clone();
        odd_set["trunks"] = json!(["set", 5]);
        assert!(fast(&odd(odd_set)).is_none());
        let mut nameless = port.clone();
        nameless["name"] = json!(["set", []]);
        assert!(fast(&odd(nameless.clone())).is_none());
        assert!(generic(&odd(nameless)).is_err());
        let mut tagged = port.clone();
        tagged["tag"] = json!(["named-uuid", "x"]);
        assert!(fast(&odd(tagged)).is_none());
        let extra = json!({"id": 1, "result": [bridges, {"rows": [port]}, none, {"rows": []}]});
        assert!(fast(&extra).is_none());
    }

    #[test]
    fn cur_cfg_from_monitor_updates() {
        assert_eq!(
            max_cur_cfg(&json!({"Open_vSwitch": {"u": {"new": {"cur_cfg": 7}}}})),
            7
        );
        assert_eq!(max_cur_cfg(&json!({})), i64::MIN);
    }
}
