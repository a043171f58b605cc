//! The three commands. Each reads top to bottom: observe (links, guest configurations, OVS),
//! decide (desired state, then the plan, both pure), act (one OVSDB transaction, then the host
//! files), report (one line per change and a summary with counts and elapsed time).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::Context;

use crate::config::Config;
use crate::desired::{self, Decision, Desired, GuestFile, HostLink, Master};
use crate::guest::{self, GuestConfig, GuestId};
use crate::hostfiles::{self, HostPort, Written};
use crate::links::{Link, Rtnl};
use crate::lock::{self, Mode};
use crate::observed::Observed;
use crate::ovsdb::TxnError;
use crate::plan::{self, Change, Plan, Scope};
use crate::vswitch::{Unconfirmed, Vswitch};

/// How often a transaction refused because OVS changed under us is retried from a fresh read.
const ATTEMPTS: usize = 3;

/// Whether a command reached the desired state. `false` maps to exit code 1.
pub type Success = bool;

/// `apply`: full rescan and reconcile of every guest NIC, then both host files.
pub fn apply(config: &Config, dry_run: bool) -> anyhow::Result<Success> {
    let started = Instant::now();
    let _lock = lock::main(
        &config.run_dir,
        if dry_run {
            Mode::Shared
        } else {
            Mode::Exclusive
        },
    )?;
    let mut ovs = Vswitch::connect(config)?;
    let mut attempt = 1;
    loop {
        // Observe.
        let host = Host::scan(config)?;
        let observed = ovs.observe_all()?;
        // Decide.
        let desired = desired::build(config, &host.links, &host.guests, &bridge_names(&observed));
        let plan = plan::build(
            config,
            &desired,
            &observed,
            Scope::Full { live: &host.names },
        );
        let invalid = log_decisions(&desired);
        if dry_run {
            print_plan(&plan);
            return Ok(invalid == 0);
        }
        // Act.
        let failed = match commit(&mut ovs, &observed, &plan, &host.mtus) {
            Err(e) if e.is::<TxnError>() && attempt < ATTEMPTS => {
                log::debug!("{e:#}; reading OVS again (attempt {attempt})");
                attempt += 1;
                continue;
            }
            other => other?,
        };
        let after = plan::after(&observed, &plan);
        let ports = hostfiles::entries(&after, |name| host.is_guest_nic(config, name));
        let files = hostfiles::sync(config, &ports);
        // Report.
        return Ok(report(
            "apply",
            &plan,
            invalid,
            &failed,
            ports.len(),
            files,
            started,
        ));
    }
}

/// `plug IFACE`: the fast additive path for one interface. One link lookup, at most one guest
/// configuration read, a narrow OVS read and one transaction; never removes another port.
pub fn plug(config: &Config, iface: &str) -> anyhow::Result<Success> {
    let started = Instant::now();
    let _lock = lock::main(&config.run_dir, Mode::Shared)?;
    let mut rtnl = Rtnl::open()?;
    let Some(link) = rtnl.by_name(iface)? else {
        log::warn!("{iface} does not exist (any more); nothing to plug");
        return Ok(true);
    };
    if !config.is_candidate(iface) {
        log::info!(
            "{iface} is not a guest NIC (see prefixes and exclude in the configuration); left alone"
        );
        return Ok(true);
    }
    let master = match link.master {
        Some(index) => rtnl.by_index(index)?,
        None => None,
    };
    let links = [host_link(&link, master.as_ref())];
    let guests = read_guests(config, &desired::guests_to_read(config, &links));
    let mut ovs = Vswitch::connect(config)?;
    let mut attempt = 1;
    loop {
        let observed = ovs.observe_port(iface)?;
        let desired = desired::build(config, &links, &guests, &bridge_names(&observed));
        let plan = plan::build(config, &desired, &observed, Scope::Additive);
        let invalid = log_decisions(&desired);
        let mtus = bridge_mtus(&mut rtnl, &plan)?;
        let failed = match commit(&mut ovs, &observed, &plan, &mtus) {
            Err(e) if e.is::<TxnError>() && attempt < ATTEMPTS => {
                log::debug!("{e:#}; reading OVS again (attempt {attempt})");
                attempt += 1;
                continue;
            }
            other => other?,
        };
        let files = match plan::after(&observed, &plan).remove(iface) {
            Some(p) if matches!(desired.nics.get(iface), Some(Decision::Attach(_))) => {
                let port = HostPort {
                    name: iface.to_string(),
                    bridge: p.bridge,
                    vlan: p.vlan,
                    owned: p.owned,
                };
                hostfiles::upsert(config, port)
            }
            _ => Ok(Written::default()),
        };
        return Ok(report("plug", &plan, invalid, &failed, 1, files, started));
    }
}

/// `clear`: removes every port carrying the ownership mark, the managed block and the nmstate
/// file. The files are cleared even when OVS cannot be reached, so that package removal
/// never leaves stanzas behind.
pub fn clear(config: &Config) -> anyhow::Result<Success> {
    let started = Instant::now();
    let _lock = lock::main(&config.run_dir, Mode::Exclusive)?;
    let ovs_result = Vswitch::connect(config).and_then(|mut ovs| {
        let observed = ovs.observe_all()?;
        let plan = plan::clear(&observed);
        let failed = commit(&mut ovs, &observed, &plan, &BTreeMap::new())?;
        Ok((plan, failed))
    });
    let files = hostfiles::clear(config);
    let (plan, failed) = ovs_result?;
    Ok(report("clear", &plan, 0, &failed, 0, files, started))
}

/// The host as the decision needs it: its links, the guest configurations they point at, and
/// the MTU of every link (for `mtu_request`, which Proxmox sets to the bridge's MTU).
struct Host {
    links: Vec<HostLink>,
    guests: BTreeMap<GuestId, GuestFile>,
    names: BTreeSet<String>,
    mtus: BTreeMap<String, u32>,
}

impl Host {
    fn scan(config: &Config) -> anyhow::Result<Host> {
        let all = Rtnl::open()?.dump()?;
        let by_index: BTreeMap<u32, &Link> = all.iter().map(|l| (l.index, l)).collect();
        let links: Vec<HostLink> = all
            .iter()
            .map(|l| host_link(l, l.master.and_then(|m| by_index.get(&m).copied())))
            .collect();
        let guests = read_guests(config, &desired::guests_to_read(config, &links));
        Ok(Host {
            names: all.iter().map(|l| l.name.clone()).collect(),
            mtus: all
                .iter()
                .filter_map(|l| Some((l.name.clone(), l.mtu?)))
                .collect(),
            links,
            guests,
        })
    }

    /// A port name the host files should list: a guest NIC that exists on the host.
    fn is_guest_nic(&self, config: &Config, name: &str) -> bool {
        self.names.contains(name)
            && desired::candidates(config, &self.links).any(|l| l.name == name)
    }
}

fn host_link(link: &Link, master: Option<&Link>) -> HostLink {
    let master = match (link.master, master) {
        (None, _) => Master::None,
        (Some(_), Some(m)) if m.kind.as_deref() == Some("openvswitch") => Master::Ovs,
        (Some(_), Some(m)) => Master::Other(m.name.clone()),
        (Some(index), None) => Master::Other(format!("ifindex {index}")),
    };
    HostLink {
        name: link.name.clone(),
        kind: link.kind.clone(),
        master,
    }
}

/// Reads each guest configuration once. A file that cannot be read is recorded as such, so its
/// NICs are reported and left alone while the others proceed.
fn read_guests(config: &Config, ids: &BTreeSet<GuestId>) -> BTreeMap<GuestId, GuestFile> {
    ids.iter()
        .map(|id| {
            (
                *id,
                read_guest(&id.config_path(&config.pve_config_dir), id.kind),
            )
        })
        .collect()
}

fn read_guest(path: &std::path::Path, kind: guest::Kind) -> GuestFile {
    let read = || -> anyhow::Result<Option<Vec<u8>>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if meta.len() > guest::MAX_CONFIG_BYTES {
            anyhow::bail!(
                "{} bytes is larger than any guest configuration",
                meta.len()
            );
        }
        Ok(Some(std::fs::read(path)?))
    };
    match read().with_context(|| format!("reading {}", path.display())) {
        Ok(None) => GuestFile::Missing,
        Ok(Some(bytes)) => {
            GuestFile::Parsed(GuestConfig::parse(kind, &String::from_utf8_lossy(&bytes)))
        }
        Err(e) => GuestFile::Unreadable(format!("{e:#}")),
    }
}

fn bridge_names(observed: &Observed) -> BTreeSet<String> {
    observed.bridges.keys().cloned().collect()
}

/// MTUs of the bridges a plan attaches to, looked up one by one (the plug path has no dump).
fn bridge_mtus(rtnl: &mut Rtnl, plan: &Plan) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut mtus = BTreeMap::new();
    for c in &plan.changes {
        if let Change::Attach { bridge, .. } = c {
            if let Some(mtu) = rtnl.by_name(bridge)?.and_then(|l| l.mtu) {
                mtus.insert(bridge.clone(), mtu);
            }
        }
    }
    Ok(mtus)
}

/// Logs what was decided about NICs that will not be attached; returns how many are invalid.
fn log_decisions(desired: &Desired) -> usize {
    let mut invalid = 0;
    for (name, decision) in &desired.nics {
        match decision {
            Decision::Attach(_) => {}
            Decision::Detach(why) => log::debug!("{name}: kept off OVS: {why}"),
            Decision::Ignore(why) if why.contains("firewall") => {
                log::info!("{name}: left alone: {why}")
            }
            Decision::Ignore(why) => log::debug!("{name}: left alone: {why}"),
            Decision::Invalid(why) => {
                invalid += 1;
                log::warn!("{name}: not attached: {why}");
            }
        }
    }
    invalid
}

fn print_plan(plan: &Plan) {
    if plan.is_empty() {
        println!("nothing to do");
    }
    for change in &plan.changes {
        println!("{change}");
    }
}

/// Commits `plan` and waits for ovs-vswitchd. Returns the ports whose interface failed; an
/// [`Unconfirmed`] wait is reported here and counted as a failure of every port it names.
fn commit(
    ovs: &mut Vswitch,
    observed: &Observed,
    plan: &Plan,
    mtus: &BTreeMap<String, u32>,
) -> anyhow::Result<Vec<(String, String)>> {
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    let next_cfg = ovs.commit(observed, plan, mtus)?;
    for change in &plan.changes {
        log::info!("{}", change.describe(true));
    }
    let added: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Attach { .. } | Change::Move { .. }))
        .map(|c| c.port().to_string())
        .collect();
    match ovs.wait_applied(next_cfg, &added) {
        Ok(failed) => Ok(failed),
        Err(e) => match e.downcast::<Unconfirmed>() {
            Ok(u) => {
                log::warn!("{u}");
                Ok(u.ports
                    .iter()
                    .map(|p| (p.clone(), "unconfirmed".to_string()))
                    .chain(
                        // An unconfirmed wait with nothing added still failed to confirm the run.
                        u.ports
                            .is_empty()
                            .then(|| ("(configuration)".to_string(), "unconfirmed".to_string())),
                    )
                    .collect())
            }
            Err(e) => Err(e),
        },
    }
}

fn report(
    what: &str,
    plan: &Plan,
    invalid: usize,
    failed: &[(String, String)],
    listed: usize,
    files: anyhow::Result<Written>,
    started: Instant,
) -> Success {
    for (port, why) in failed.iter().filter(|(_, why)| why != "unconfirmed") {
        log::warn!("{port}: ovs-vswitchd reports: {why}");
    }
    let files_ok = match &files {
        Ok(_) => true,
        Err(e) => {
            log::error!("updating host files: {e:#}");
            false
        }
    };
    let [attached, updated, moved, pruned] = plan.counts();
    let written = files.as_ref().map(|w| {
        let names: Vec<&str> = [(w.nmstate, "nmstate"), (w.interfaces, "interfaces")]
            .into_iter()
            .filter_map(|(written, n)| written.then_some(n))
            .collect();
        if names.is_empty() {
            "no file rewritten".to_string()
        } else {
            format!("rewrote {}", names.join(" and "))
        }
    });
    log::info!(
        "{what}: {attached} attached, {updated} updated, {moved} moved, {pruned} pruned, {invalid} invalid, {} failed; {listed} guest ports in host files, {}; {} ms",
        failed.len(),
        written.unwrap_or_else(|_| "host files not updated".into()),
        started.elapsed().as_millis()
    );
    invalid == 0 && failed.is_empty() && files_ok
}
