//! Carries out the kernel-link changes [`crate::decide::linkplan`] decided, in order, over
//! rtnetlink (and `/proc/sys`, and tc for rate limits). Each failure is returned with the link
//! and what failed; the others still run.

use anyhow::anyhow;

use crate::decide::firewall::FWBR_MARK;
use crate::decide::linkplan::Op;
use crate::host::links::{Rtnl, SetLink};
use crate::host::{sysctl, tc};

/// A change that failed: the link, the change and why.
pub type Failure = (String, String);

pub fn carry_out(rtnl: &mut Rtnl, ops: &[Op]) -> Vec<Failure> {
    let mut failed = Vec::new();
    for op in ops {
        match one(rtnl, op) {
            Ok(()) => log::info!("{op}"),
            Err(e) => failed.push((op.link().to_string(), format!("{op}: {e:#}"))),
        }
    }
    failed
}

fn index(rtnl: &mut Rtnl, name: &str) -> anyhow::Result<u32> {
    Ok(rtnl
        .by_name(name)?
        .ok_or_else(|| anyhow!("{name} does not exist"))?
        .index)
}

fn one(rtnl: &mut Rtnl, op: &Op) -> anyhow::Result<()> {
    match op {
        Op::CreateBridge { name, mtu } => rtnl.create_bridge(name, *mtu, FWBR_MARK),
        Op::Up { name, mtu, master } => {
            let master = match master {
                Some(m) => Some(index(rtnl, m)?),
                None => None,
            };
            let link = index(rtnl, name)?;
            // Proxmox's order: the MTU first (a bridge port must match), then the master, up.
            rtnl.set(
                link,
                &SetLink {
                    mtu: Some(*mtu),
                    ..SetLink::default()
                },
            )?;
            rtnl.set(
                link,
                &SetLink {
                    up: Some(true),
                    master,
                    ..SetLink::default()
                },
            )
        }
        Op::Down { name } => {
            let link = index(rtnl, name)?;
            rtnl.set(
                link,
                &SetLink {
                    up: Some(false),
                    ..SetLink::default()
                },
            )
        }
        Op::Release { name } => {
            let link = index(rtnl, name)?;
            rtnl.set(
                link,
                &SetLink {
                    master: Some(0),
                    ..SetLink::default()
                },
            )
        }
        Op::DeleteBridge { name } => {
            let Some(link) = rtnl.by_name(name)? else {
                return Ok(());
            };
            // Checked again right before the delete: only a bridge of ours ever goes.
            if link.alias.as_deref() != Some(FWBR_MARK) || link.kind.as_deref() != Some("bridge") {
                anyhow::bail!("{name} is not a bridge this tool created; left alone");
            }
            rtnl.delete(link.index)
        }
        Op::DisableIpv6 { name } => sysctl::disable_ipv6(name),
        Op::RateLimit { name, bytes } => match tc::rate_limit(name, *bytes)? {
            Ok(()) => Ok(()),
            Err(f) => Err(anyhow!("`{}` failed: {}", f.command, f.error)),
        },
    }
}
