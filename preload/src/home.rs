//! Where the library may start the tool: only in the network and mount namespaces it was
//! loaded in, and only from a process that is not a child subreaper.
//!
//! **Namespaces.** The tool is meant for the host's NICs, the host's OVS and the host's files.
//! A process that has the library loaded can leave the namespaces it started in: LXC's setup
//! child (cloned with `CLONE_NEWNET | CLONE_NEWNS`) looks up the container's end of the veth
//! pair and runs `pivot_root` before it execs the container's init, and any program can call
//! `unshare`, `setns` or `clone` with `CLONE_NEWNET`. A tool started there would see the
//! container's links and resolve its file paths in the container's root file system. So the
//! namespaces of the thread that loads the library are recorded with the settings
//! ([`crate::config`]), and before each start the calling thread's current ones are compared
//! with them. Both are the `(st_dev, st_ino)` of `/proc/thread-self/ns/net` and
//! `/proc/thread-self/ns/mnt`, the identity the kernel gives a namespace. If either cannot be
//! read (no `/proc`), the library does not start anything: it cannot tell where it is.
//!
//! **Child subreapers.** The tool is started through an intermediate process that exits at
//! once, so that the tool is an orphan and is adopted by the nearest child subreaper among its
//! ancestors, or by init. If the caller itself set `PR_SET_CHILD_SUBREAPER`, that nearest
//! subreaper is the caller, whatever the number of intermediate processes: the tool would
//! become its child and its end a `SIGCHLD` and a pid from `waitpid(-1)` that the caller never
//! asked for. The library then starts nothing and leaves the NIC to the other triggers (the
//! guest hookscript, the ifupdown2 hook, the boot unit, a later `apply`).

use core::ffi::{CStr, c_int, c_long};

/// A namespace's identity: the device and inode of its `nsfs` file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Id {
    dev: u64,
    ino: u64,
}

/// The network and mount namespaces of a thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Namespaces {
    net: Id,
    mnt: Id,
}

impl Namespaces {
    /// The calling thread's namespaces, `None` if `/proc` cannot tell them.
    pub fn current() -> Option<Namespaces> {
        Some(Namespaces {
            net: id(c"/proc/thread-self/ns/net")?,
            mnt: id(c"/proc/thread-self/ns/mnt")?,
        })
    }
}

fn id(path: &CStr) -> Option<Id> {
    // SAFETY: an all-zero struct stat is valid; stat writes it.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a local buffer.
    let r = unsafe { libc::stat(path.as_ptr(), &mut st) };
    (r == 0).then_some(Id {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Why the library starts nothing from the calling thread right now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refusal {
    /// Not in the namespaces recorded at load (or they, or the current ones, are unknown).
    Namespace,
    /// The calling process is a child subreaper.
    Subreaper,
}

/// `None` if the calling thread may start the tool: it is in the namespaces `loaded` (those
/// recorded when the library was loaded), and its process is not a child subreaper.
pub fn refusal(loaded: Option<Namespaces>) -> Option<Refusal> {
    match (loaded, Namespaces::current()) {
        (Some(loaded), Some(now)) if loaded == now => {}
        _ => return Some(Refusal::Namespace),
    }
    is_subreaper().then_some(Refusal::Subreaper)
}

/// Whether the calling process has set `PR_SET_CHILD_SUBREAPER` (false on kernels without it).
fn is_subreaper() -> bool {
    let mut flag: c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int to the address passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_GET_CHILD_SUBREAPER as c_long,
            &mut flag as *mut c_int,
            0 as c_long,
            0 as c_long,
            0 as c_long,
        )
    };
    r == 0 && flag != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_at_home_where_it_started() {
        let here = Namespaces::current().expect("/proc/thread-self/ns readable");
        assert_eq!(Namespaces::current(), Some(here));
        assert_eq!(refusal(Some(here)), None);
        assert_eq!(refusal(None), Some(Refusal::Namespace));
    }

    /// Each test thread unshares on its own: namespaces belong to threads, not processes.
    fn in_thread_after_unshare(flags: c_int) -> (Namespaces, Option<Refusal>) {
        let here = Namespaces::current().unwrap();
        std::thread::spawn(move || {
            // Mount namespaces cannot be unshared by a thread sharing its fs with others.
            if flags & libc::CLONE_NEWNS != 0 {
                assert_eq!(unsafe { libc::unshare(libc::CLONE_FS) }, 0);
            }
            let r = unsafe { libc::unshare(flags) };
            assert_eq!(r, 0, "unshare: {}", std::io::Error::last_os_error());
            let now = Namespaces::current().unwrap();
            (now, refusal(Some(here)))
        })
        .join()
        .map(|(now, refused)| {
            assert_ne!(now, here);
            (now, refused)
        })
        .unwrap()
    }

    #[test]
    fn another_network_namespace_is_refused() {
        let here = Namespaces::current().unwrap();
        let (now, refused) = in_thread_after_unshare(libc::CLONE_NEWNET);
        assert_ne!(now.net, here.net);
        assert_eq!(now.mnt, here.mnt);
        assert_eq!(refused, Some(Refusal::Namespace));
    }

    #[test]
    fn another_mount_namespace_is_refused() {
        let here = Namespaces::current().unwrap();
        let (now, refused) = in_thread_after_unshare(libc::CLONE_NEWNS);
        assert_eq!(now.net, here.net);
        assert_ne!(now.mnt, here.mnt);
        assert_eq!(refused, Some(Refusal::Namespace));
    }
}
