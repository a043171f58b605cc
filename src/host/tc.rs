//! Rate limits, set with `/sbin/tc` exactly as Proxmox's `setup_tc_rate_limit` sets them.
//!
//! This is the one place the tool runs a program instead of speaking netlink: an HTB class over
//! raw netlink needs rate tables computed in user space (`tc_calc_rtable`), and the point is to
//! leave the limit exactly as Proxmox would, so the same commands are the right tool. Fixed
//! arguments, a validated interface name, no shell.

use std::process::Command;

use anyhow::{Context, bail};

use crate::decide::ifname;

/// The program, as Proxmox calls it.
const TC: &str = "/sbin/tc";

/// A step that failed: the command line and what tc said.
#[derive(Debug)]
pub struct Failed {
    pub command: String,
    pub error: String,
}

/// Sets `bytes` per second on `link`: first removes any limit (errors ignored, as Proxmox does:
/// there may be none), then htb root and class, the ingress qdisc and the police filter. Stops
/// at the first step that fails and returns it; the steps before it stay.
pub fn rate_limit(link: &str, bytes: u64) -> anyhow::Result<Result<(), Failed>> {
    if ifname::validate(link).is_err() {
        bail!("{link:?} is not an interface name");
    }
    let rate = format!("{bytes}bps");
    let burst = "1048576b";
    for args in [
        &[
            "class", "del", "dev", link, "parent", "1:", "classid", "1:1",
        ][..],
        &[
            "filter", "del", "dev", link, "parent", "ffff:", "protocol", "all", "pref", "50", "u32",
        ],
        &["qdisc", "del", "dev", link, "ingress"],
        &["qdisc", "del", "dev", link, "root"],
    ] {
        let _ = run(args)?;
    }
    for args in [
        &[
            "qdisc", "add", "dev", link, "root", "handle", "1:", "htb", "default", "1",
        ][..],
        &[
            "class", "add", "dev", link, "parent", "1:", "classid", "1:1", "htb", "rate", &rate,
            "burst", burst,
        ],
        &["qdisc", "add", "dev", link, "handle", "ffff:", "ingress"],
        &[
            "filter", "add", "dev", link, "parent", "ffff:", "prio", "50", "basic", "police",
            "rate", &rate, "burst", burst, "mtu", "64kb", "drop",
        ],
    ] {
        if let Err(error) = run(args)? {
            return Ok(Err(Failed {
                command: format!("{TC} {}", args.join(" ")),
                error,
            }));
        }
    }
    Ok(Ok(()))
}

/// Runs tc; the inner error is tc's own complaint, the outer one a tc that could not be run.
fn run(args: &[&str]) -> anyhow::Result<Result<(), String>> {
    log::debug!("running {TC} {}", args.join(" "));
    let out = Command::new(TC)
        .args(args)
        .output()
        .with_context(|| format!("running {TC}"))?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Ok(Err(if err.is_empty() {
            format!("exited with {}", out.status)
        } else {
            err
        }))
    }
}
