//! Per-link IPv6 switch, `/proc/sys/net/ipv6/conf/<link>/disable_ipv6`, as Proxmox's
//! `disable_ipv6` writes it for every NIC it plugs.

use std::path::PathBuf;

use anyhow::Context;

use crate::decide::ifname;

fn path(link: &str) -> Option<PathBuf> {
    ifname::validate(link).ok()?;
    Some(PathBuf::from(format!(
        "/proc/sys/net/ipv6/conf/{link}/disable_ipv6"
    )))
}

/// Whether `link` has IPv6 enabled. A link without the file (IPv6 disabled in the kernel, or
/// no such link) has nothing to disable.
pub fn ipv6_enabled(link: &str) -> bool {
    path(link)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|v| v.trim() == "0")
}

/// Disables IPv6 on `link` (Proxmox: "drop link local address (it can't be used when on a
/// bridge anyway)").
pub fn disable_ipv6(link: &str) -> anyhow::Result<()> {
    let Some(p) = path(link) else {
        anyhow::bail!("{link:?} is not an interface name");
    };
    if !p.exists() {
        return Ok(());
    }
    std::fs::write(&p, "1\n").with_context(|| format!("writing {}", p.display()))
}
