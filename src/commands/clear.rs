//! `clear [--keep-ports]`: the tool's ports and host files go (package removal, or an admin
//! undoing the tool). Read top to bottom: observe, decide, act, report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Success;
use super::act;
use super::mirrors;
use super::pass;
use super::summary::Summary;
use crate::decide::config::Config;
use crate::decide::hostfiles::Update;
use crate::decide::plan;
use crate::host::hostfiles;
use crate::host::links::Rtnl;
use crate::host::lock::{self, Mode};
use crate::host::namespace;
use crate::host::vswitch::Vswitch;

/// Removes every port carrying the ownership mark and the host files. With `keep_ports`
/// (package removal), the marked ports of links that exist stay where they are and only lose
/// the mark, so that no running guest loses its network. The files are cleared even when OVS
/// cannot be reached, so that package removal never leaves stanzas behind; a name whose link
/// exists keeps a neutral stanza (see [`crate::decide::stanzas`]), so that ifupdown2 downs no
/// running guest on the next reload.
pub fn clear(config: &Config, keep_ports: bool) -> anyhow::Result<Success> {
    let started = Instant::now();
    namespace::check_host()?;
    // A switch that answers must be this host's before anything, files and locks included, is
    // touched; one that does not answer still lets package removal clear the files.
    let mut ovs = Vswitch::connect(config);
    if let Ok(ovs) = &mut ovs {
        pass::check_switch(ovs, &mut Rtnl::open()?)?;
    }
    let _lock = lock::main(&config.run_dir, Mode::Exclusive, lock::wait(config))?;
    // Observe.
    let live: BTreeSet<String> = Rtnl::open()?.dump()?.into_iter().map(|l| l.name).collect();
    let in_ovs = ovs.and_then(|mut ovs| {
        let observed = ovs.observe_all()?;
        // Decide.
        let plan = if keep_ports {
            plan::release(&observed, &live)
        } else {
            plan::clear(&observed)
        };
        let mirrors = mirrors::clear_plan(&observed)?;
        // Act.
        let (failed, ()) = act::commit(
            &mut ovs,
            &observed,
            &plan,
            &mirrors,
            &BTreeMap::new(),
            || (),
        )?;
        Ok((plan, failed, mirrors::finish_clear(&mirrors)))
    });
    let files = hostfiles::update(config, Update::Clear, &|name: &str| live.contains(name));
    let (plan, failed, mirrored) = in_ovs?;
    // Report.
    Ok(Summary {
        command: "clear",
        plan: &plan,
        invalid: 0,
        failed: &failed,
        listed: None,
        files,
        mirrors: &mirrored,
        started,
    }
    .report())
}
