//! Whether this process runs on the host the configuration describes.
//!
//! The tool acts on the OVS database, the links of one network namespace and files under `/etc`
//! and `/run`. Started anywhere else (by a preload library inherited into a container's setup
//! process, say, before it execs the container's init), its netlink view, its files and its lock
//! belong to someone else: a lock file that is not the host's serializes nothing, and a port
//! named after a link of that namespace is bogus on the host's switch. So every command that
//! reads or changes the host refuses to run when:
//! - it runs in a PID namespace nested below the one this `/proc` belongs to (`NSpid` in
//!   `/proc/self/status` lists more than one PID): every container runtime gives its containers
//!   their own, and a container's setup process still sees the host's `/proc`;
//! - where PID 1 can be inspected (not every sandbox lets root read `/proc/1`), its PID
//!   namespace or root directory is not this process's: a container that mounted its own
//!   `/proc`, or a `pivot_root`/`chroot` into another root filesystem.
//!
//! The rest is checked against the switch itself, before anything is written or locked: the
//! OVSDB server's process (its pid from the unix socket's peer credentials) must be visible
//! from this PID namespace ([`check_server`]), and at least one of its bridges must be a network
//! interface in this network namespace ([`foreign_switch`]). Comparing with PID 1's network
//! namespace instead would refuse the test sandboxes, which run Open vSwitch in a namespace of
//! their own, and a container with a `/proc` of its own shows its own PID 1.

use std::os::unix::fs::MetadataExt;

use anyhow::{Context, bail};

/// Refuses (with a message saying why) unless this process runs on the host: see the module
/// documentation.
pub fn check_host() -> anyhow::Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    if nested_pid_namespace(&status) {
        bail!(
            "this process runs in a PID namespace nested below the host's: inside a container, not on the host; nothing done"
        );
    }
    if let (Ok(ours), Ok(init)) = (
        std::fs::read_link("/proc/self/ns/pid"),
        std::fs::read_link("/proc/1/ns/pid"),
    ) && ours != init
    {
        bail!(
            "this process runs in another PID namespace than the host's init ({} against {}): inside a container, not on the host; nothing done",
            ours.display(),
            init.display()
        );
    }
    if let (Ok(root), Ok(init_root)) = (std::fs::metadata("/"), std::fs::metadata("/proc/1/root"))
        && (root.dev(), root.ino()) != (init_root.dev(), init_root.ino())
    {
        bail!(
            "this process's root directory is not the host's (a chroot or pivot_root into another root filesystem): the configured files are not the host's; nothing done"
        );
    }
    Ok(())
}

/// Whether a `/proc/<pid>/status` text says the process is in a nested PID namespace: its
/// `NSpid` line holds one PID per namespace level.
fn nested_pid_namespace(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|pids| pids.split_whitespace().count() > 1)
}

/// Refuses when the OVSDB server at `endpoint` (its process `pid`, from `SO_PEERCRED` on a unix
/// socket) runs in a PID namespace this process cannot see into (`pid` 0): this process runs
/// inside a container whose setup still reaches the host's socket through the host's file
/// system. The network namespace is the bridges' question ([`foreign_switch`]), not the
/// server's: a hardened ovsdb-server (`PrivateNetwork=`) serves the host's switch all the same.
pub fn check_server(endpoint: &str, pid: Option<i32>) -> anyhow::Result<()> {
    match pid {
        Some(pid) if pid <= 0 => bail!(
            "the OVSDB server at {endpoint} runs outside this process's PID namespace: this process runs inside a container, not on the host; nothing done"
        ),
        _ => Ok(()),
    }
}

/// The refusal when none of the OVS bridges is a network interface here: the links this
/// process sees are not the ones Open vSwitch switches.
pub fn foreign_switch(bridges: &[&str]) -> anyhow::Error {
    let shown: Vec<&str> = bridges.iter().copied().take(5).collect();
    anyhow::anyhow!(
        "none of Open vSwitch's bridges ({}) is a network interface in this network namespace: this is not the namespace the switch serves; nothing done",
        shown.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn nspid_levels() {
        assert!(!super::nested_pid_namespace("Name:\tx\nNSpid:\t4513\n"));
        assert!(super::nested_pid_namespace("NSpid:\t4519\t2\n"));
        assert!(!super::nested_pid_namespace("Name:\tx\n"));
    }

    #[test]
    fn this_process_is_on_its_own_host() {
        // The test runner runs on its own host, whatever that is.
        super::check_host().unwrap();
    }
}
