//! `libovs_autoattach_preload.so`: an `LD_PRELOAD` library that runs `ovs-autoattach plug NAME`
//! when the process it is loaded into creates or looks up a guest NIC.
//!
//! Proxmox starts its guests through hooks that call the tool. Containers and VMs started by
//! other means (a raw `lxc-start`, a hand-run QEMU, tooling that creates veth or tap devices
//! itself) have no hook; this library, inside the process that creates the interface, sees the
//! name when it appears. It interposes
//!
//! * `if_nametoindex` (success: non-zero) and `if_indextoname` (success: non-null),
//! * `ioctl(TUNSETIFF)` (success: 0), how QEMU and `ip tuntap` create taps; the name is read
//!   from the `struct ifreq` after the call,
//! * `sendmsg` and `sendto` to an `AF_NETLINK` address: the links that `RTM_NEWLINK` and
//!   `RTM_SETLINK` requests on rtnetlink sockets create or change (see [`netlink`]), counted
//!   only if the link then exists. This is how `ip link`, LXC and systemd-nspawn work.
//!
//! Every hook returns exactly what the real function returned, with `errno` as the real
//! function left it. A name is handed on only after the real call succeeded, only if it is a
//! valid interface name starting with one of the configured prefixes (see [`config`]), and at
//! most once per process ([`seen`]). The tool is started fully detached and silent: its log
//! lines go to syslog, never to the caller's output ([`spawn`]).
//!
//! Nothing is started from a thread that is no longer in the network and mount namespaces the
//! library was loaded in (a container's setup child, after `unshare` or `setns`), nor from a
//! process that is a child subreaper, which would adopt the tool ([`home`]).
//!
//! The library is `no_std`, depends on libc only, never allocates and never panics by design
//! (the panic handler aborts).

#![cfg_attr(not(test), no_std)]

#[cfg(not(target_pointer_width = "64"))]
compile_error!("the raw signal structures in spawn.rs assume a 64-bit Linux target");

mod config;
mod home;
mod log;
mod names;
mod netlink;
mod seen;
mod spawn;

use core::ffi::{CStr, c_char, c_int, c_uint, c_ulong, c_void};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use config::Config;
use names::{IFNAMSIZ, IfName};
use netlink::Link;
use seen::{Insert, Table};

// Linked against libc.so.6 in every build. The `libc` crate links it only without its `std`
// feature, which the tool's own dependency turns on whenever both are built together (as for the
// package); the library would then have no NEEDED entry and unversioned libc symbols.
#[link(name = "c")]
unsafe extern "C" {}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// One step of a bounded wait for another thread: `false` once the wait has lasted long enough
/// (a few milliseconds) that the other thread is presumed gone.
pub(crate) fn backoff(spins: u32) -> bool {
    if spins < 64 {
        core::hint::spin_loop();
    } else if spins < 2048 {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::syscall(libc::SYS_sched_yield) };
    } else {
        return false;
    }
    true
}

// --- The real functions ---

/// A function of the next object in lookup order (libc), resolved once.
struct Real {
    name: &'static CStr,
    ptr: AtomicPtr<c_void>,
}

impl Real {
    const fn new(name: &'static CStr) -> Real {
        Real {
            name,
            ptr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The address, resolving it now if the constructor has not run yet; null if libc has no
    /// such function.
    fn resolve(&self) -> *mut c_void {
        let p = self.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            return p;
        }
        // SAFETY: dlsym with a NUL-terminated name; racing threads store the same value.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        self.ptr.store(p, Ordering::Release);
        p
    }
}

type NameToIndex = unsafe extern "C" fn(*const c_char) -> c_uint;
type IndexToName = unsafe extern "C" fn(c_uint, *mut c_char) -> *mut c_char;
type Ioctl = unsafe extern "C" fn(c_int, c_ulong, *mut c_void) -> c_int;
type SendMsg = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> libc::ssize_t;
type SendTo = unsafe extern "C" fn(
    c_int,
    *const c_void,
    libc::size_t,
    c_int,
    *const libc::sockaddr,
    libc::socklen_t,
) -> libc::ssize_t;

static REAL_IF_NAMETOINDEX: Real = Real::new(c"if_nametoindex");
static REAL_IF_INDEXTONAME: Real = Real::new(c"if_indextoname");
static REAL_IOCTL: Real = Real::new(c"ioctl");
static REAL_SENDMSG: Real = Real::new(c"sendmsg");
static REAL_SENDTO: Real = Real::new(c"sendto");

/// The real function as type `$ty`, or `None`.
macro_rules! real {
    ($real:expr, $ty:ty) => {{
        let p = $real.resolve();
        // SAFETY: dlsym found libc's function of this name, whose C type `$ty` spells out.
        (!p.is_null()).then(|| unsafe { core::mem::transmute::<*mut c_void, $ty>(p) })
    }};
}

/// Resolves the real functions and reads the settings (recording the namespaces the library
/// is loaded in), so that hooked calls find both ready. Runs from `.init_array` when the
/// library is loaded; allocates nothing and leaves `errno` as it found it.
#[cfg_attr(test, allow(dead_code))]
extern "C" fn init() {
    keeping_errno(init_inner);
}

#[cfg_attr(test, allow(dead_code))]
fn init_inner() {
    for real in [
        &REAL_IF_NAMETOINDEX,
        &REAL_IF_INDEXTONAME,
        &REAL_IOCTL,
        &REAL_SENDMSG,
        &REAL_SENDTO,
    ] {
        real.resolve();
    }
    let _ = config::get();
}

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

// --- errno ---

struct Errno(c_int);

impl Errno {
    fn save() -> Errno {
        // SAFETY: the calling thread's errno.
        Errno(unsafe { *libc::__errno_location() })
    }

    fn restore(self) {
        set_errno(self.0);
    }
}

fn set_errno(value: c_int) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = value };
}

// --- Re-entrancy ---

/// Threads (by kernel thread id) currently handing a name to the tool. A call that arrives
/// while its own thread is in there (a signal handler that calls a hooked function) passes
/// straight through.
static ACTIVE: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];

struct Reentry(&'static AtomicUsize);

impl Reentry {
    /// `None` if this thread is already inside (or, harmlessly, if 16 threads are): the caller
    /// then hands nothing on this time.
    fn enter() -> Option<Reentry> {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::syscall(libc::SYS_gettid) } as usize;
        if ACTIVE.iter().any(|a| a.load(Ordering::Acquire) == me) {
            return None;
        }
        ACTIVE
            .iter()
            .find(|a| {
                a.compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })
            .map(Reentry)
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

// --- Handing names to the tool ---

static SEEN: Table = Table::new();

#[derive(Clone, Copy)]
enum Via {
    NameToIndex,
    IndexToName,
    Tunsetiff,
    Netlink,
}

impl Via {
    fn label(self) -> &'static [u8] {
        match self {
            Via::NameToIndex => b"if_nametoindex",
            Via::IndexToName => b"if_indextoname",
            Via::Tunsetiff => b"ioctl TUNSETIFF",
            Via::Netlink => b"rtnetlink",
        }
    }
}

/// The settings, if the library is to hand names on at all.
fn active() -> Option<&'static Config> {
    config::get().filter(|c| c.active)
}

/// Whether `name` still needs handing on: a guest NIC prefix, not handled before.
fn wanted(config: &Config, name: &IfName) -> bool {
    config.prefixes.matches(name) && !SEEN.contains(name)
}

/// Hands `name`, which the real call just confirmed, to the tool unless it was handed on
/// before. Logs one line in debug mode.
#[inline(never)]
fn notify(config: &Config, name: &IfName, via: Via) {
    if !wanted(config, name) {
        return;
    }
    let Some(_inside) = Reentry::enter() else {
        return;
    };
    // Checked before the name is recorded: the same name may still be handed on from home.
    if let Some(refusal) = home::refusal(config.home) {
        let reported = match refusal {
            home::Refusal::Namespace => &NAMESPACE_REPORTED,
            home::Refusal::Subreaper => &SUBREAPER_REPORTED,
        };
        // Said once per process and reason, as for a full table.
        if config.debug && !reported.swap(true, Ordering::Relaxed) {
            report(config, name, via, Err(refusal));
        }
        return;
    }
    let outcome = match SEEN.insert(name) {
        Insert::Seen => return,
        // Said once: a looping caller must not flood its stderr.
        Insert::Full if FULL_REPORTED.swap(true, Ordering::Relaxed) => return,
        Insert::Full => None,
        Insert::New => Some(spawn::plug(config, name)),
    };
    if config.debug {
        report(config, name, via, Ok(outcome));
    }
}

static FULL_REPORTED: AtomicBool = AtomicBool::new(false);
static NAMESPACE_REPORTED: AtomicBool = AtomicBool::new(false);
static SUBREAPER_REPORTED: AtomicBool = AtomicBool::new(false);

/// The debug line for one notification: what was started (`Ok`), or why nothing was.
#[cold]
#[inline(never)]
fn report(
    config: &Config,
    name: &IfName,
    via: Via,
    outcome: Result<Option<spawn::Outcome>, home::Refusal>,
) {
    let bin = config.bin().to_bytes();
    let mut line = log::Line::new();
    line.push(name.as_bytes())
        .push(b" (")
        .push(via.label())
        .push(b"): ");
    match outcome {
        Err(home::Refusal::Namespace) => line.push(
            b"not started: this thread is not in the network and mount namespaces the library \
              was loaded in; nothing is started from other namespaces",
        ),
        Err(home::Refusal::Subreaper) => line.push(
            b"not started: this process is a child subreaper (PR_SET_CHILD_SUBREAPER) and \
              would adopt the tool; nothing is started from it",
        ),
        Ok(None) => line
            .push(b"not started: ")
            .num(seen::CAPACITY as i64)
            .push(b" names handled already; no more are handed on by this process"),
        Ok(Some(spawn::Outcome::Started(pid))) => line
            .push(b"started ")
            .push(bin)
            .push(b" --log syslog plug ")
            .push(name.as_bytes())
            .push(b", pid ")
            .num(pid.into()),
        Ok(Some(spawn::Outcome::CloneFailed(e))) => line
            .push(b"could not start ")
            .push(bin)
            .push(b": clone failed, errno ")
            .num(e.into()),
        Ok(Some(spawn::Outcome::ExecFailed(e))) => line
            .push(b"could not start ")
            .push(bin)
            .push(b": execve failed, errno ")
            .num(e.into()),
    };
    line.write();
}

/// Whether `fd` is an rtnetlink socket.
fn is_rtnetlink(fd: c_int) -> bool {
    let mut protocol: c_int = -1;
    let mut len = core::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a local int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            (&raw mut protocol).cast(),
            &mut len,
        )
    };
    r == 0 && protocol == libc::NETLINK_ROUTE
}

/// Whether a link named `name` exists now (in the caller's network namespace).
fn exists(name: &IfName) -> bool {
    // SAFETY: libc's if_nametoindex on a NUL-terminated name.
    real!(REAL_IF_NAMETOINDEX, NameToIndex).is_some_and(|f| unsafe { f(name.as_c_str()) } != 0)
}

/// The name of link `index`, if it exists now.
fn name_of(index: u32) -> Option<IfName> {
    let f = real!(REAL_IF_INDEXTONAME, IndexToName)?;
    let mut buf = [0 as c_char; IFNAMSIZ];
    // SAFETY: libc's if_indextoname into a buffer of IF_NAMESIZE bytes.
    let p = unsafe { f(index, buf.as_mut_ptr()) };
    // SAFETY: on success `buf` holds a NUL-terminated name.
    (!p.is_null()).then(|| unsafe { IfName::from_c_str(buf.as_ptr()) })?
}

/// The links an rtnetlink request sent on `fd` creates or changes, handed on if they exist
/// once it has been sent.
fn on_netlink(fd: c_int, request: &[u8]) {
    let Some(config) = active() else {
        return;
    };
    let links = netlink::links(request);
    let mut route = None;
    let mut is_route = || *route.get_or_insert_with(|| is_rtnetlink(fd));
    for link in links.iter() {
        let name = match link {
            Link::Name(name) => {
                if !wanted(config, &name) || !is_route() || !exists(&name) {
                    continue;
                }
                name
            }
            Link::Index(index) => match is_route().then(|| name_of(index)).flatten() {
                Some(name) => name,
                None => continue,
            },
        };
        notify(config, &name, Via::Netlink);
    }
}

/// Whether `addr` is a netlink socket address.
///
/// # Safety
/// `addr` is null or points to `len` readable bytes.
unsafe fn is_netlink_addr(addr: *const c_void, len: libc::socklen_t) -> bool {
    !addr.is_null()
        && len as usize >= core::mem::size_of::<libc::sa_family_t>()
        && unsafe { addr.cast::<libc::sa_family_t>().read_unaligned() }
            == libc::AF_NETLINK as libc::sa_family_t
}

// --- The hooks ---
//
// Each hook calls the real function and returns its result untouched. Only when the call
// succeeded in a way that may name a guest NIC does it go on, out of line, to the name
// handling, which saves `errno` first and restores it before returning. Every other call (a
// KVM_RUN ioctl in a vCPU loop, a UDP sendto) costs a pointer load, a call and a compare.

/// The `errno` the real function left, kept across `f`.
#[inline(always)]
fn keeping_errno(f: impl FnOnce()) {
    let errno = Errno::save();
    f();
    errno.restore();
}

/// # Safety
/// As `if_nametoindex(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn if_nametoindex(name: *const c_char) -> c_uint {
    let Some(real) = real!(REAL_IF_NAMETOINDEX, NameToIndex) else {
        set_errno(libc::ENOSYS);
        return 0;
    };
    let ret = unsafe { real(name) };
    if ret != 0 {
        // SAFETY: libc just read `name` as a C string.
        unsafe { on_c_name(name, Via::NameToIndex) };
    }
    ret
}

/// # Safety
/// As `if_indextoname(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn if_indextoname(index: c_uint, buf: *mut c_char) -> *mut c_char {
    let Some(real) = real!(REAL_IF_INDEXTONAME, IndexToName) else {
        set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    };
    let ret = unsafe { real(index, buf) };
    if !ret.is_null() {
        // SAFETY: on success libc wrote a NUL-terminated name to `ret`.
        unsafe { on_c_name(ret, Via::IndexToName) };
    }
    ret
}

/// Hands on the name in a C string that libc has just accepted or written.
///
/// # Safety
/// `name` is a NUL-terminated string.
#[inline(never)]
unsafe fn on_c_name(name: *const c_char, via: Via) {
    keeping_errno(|| {
        // SAFETY: as promised by the caller.
        if let (Some(config), Some(name)) = (active(), unsafe { IfName::from_c_str(name) }) {
            notify(config, &name, via);
        }
    });
}

/// `ioctl` with its variadic third argument taken as a pointer (how every ioctl passes it on
/// the ABIs we build for; callers that pass nothing leave a don't-care register, which the real
/// function ignores just the same).
///
/// # Safety
/// As `ioctl(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    let Some(real) = real!(REAL_IOCTL, Ioctl) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let ret = unsafe { real(fd, request, arg) };
    // The kernel reads the request as a 32-bit number.
    if ret == 0 && request as u32 == libc::TUNSETIFF as u32 && !arg.is_null() {
        // SAFETY: TUNSETIFF succeeded, so `arg` is a struct ifreq.
        unsafe { on_tunsetiff(arg) };
    }
    ret
}

/// Hands on the tap or tun device a successful `TUNSETIFF` attached to.
///
/// # Safety
/// `ifreq` points to a `struct ifreq`.
#[cold]
#[inline(never)]
unsafe fn on_tunsetiff(ifreq: *const c_void) {
    keeping_errno(|| {
        // SAFETY: a struct ifreq starts with the IFNAMSIZ bytes of ifr_name, which the kernel
        // has written back.
        let ifr_name = unsafe { core::slice::from_raw_parts(ifreq.cast::<u8>(), IFNAMSIZ) };
        if let (Some(config), Some(name)) = (active(), IfName::parse(ifr_name)) {
            notify(config, &name, Via::Tunsetiff);
        }
    });
}

/// # Safety
/// As `sendmsg(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sendmsg(
    fd: c_int,
    msg: *const libc::msghdr,
    flags: c_int,
) -> libc::ssize_t {
    let Some(real) = real!(REAL_SENDMSG, SendMsg) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let ret = unsafe { real(fd, msg, flags) };
    // SAFETY: the kernel just read `msg` and its address.
    if ret >= 0 && !msg.is_null() && unsafe { is_netlink_addr((*msg).msg_name, (*msg).msg_namelen) }
    {
        // SAFETY: as above, and the first iovec.
        unsafe { on_sendmsg(fd, msg, ret as usize) };
    }
    ret
}

/// Hands on the links an rtnetlink request sent with `sendmsg` creates or changes.
///
/// # Safety
/// `msg` is a valid `struct msghdr` whose first `sent` bytes the kernel has just read.
#[cold]
#[inline(never)]
unsafe fn on_sendmsg(fd: c_int, msg: *const libc::msghdr, sent: usize) {
    keeping_errno(|| {
        // SAFETY: as promised by the caller.
        unsafe {
            if (*msg).msg_iovlen > 0 && !(*msg).msg_iov.is_null() {
                let iov = &*(*msg).msg_iov;
                if !iov.iov_base.is_null() {
                    let len = iov.iov_len.min(sent);
                    on_netlink(
                        fd,
                        core::slice::from_raw_parts(iov.iov_base.cast::<u8>(), len),
                    );
                }
            }
        }
    });
}

/// # Safety
/// As `sendto(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: libc::size_t,
    flags: c_int,
    addr: *const libc::sockaddr,
    addr_len: libc::socklen_t,
) -> libc::ssize_t {
    let Some(real) = real!(REAL_SENDTO, SendTo) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let ret = unsafe { real(fd, buf, len, flags, addr, addr_len) };
    // SAFETY: the kernel just read `addr`.
    if ret >= 0 && !buf.is_null() && unsafe { is_netlink_addr(addr.cast(), addr_len) } {
        // SAFETY: the kernel just read the first `ret` bytes of `buf`.
        let sent = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len.min(ret as usize)) };
        on_sendto(fd, sent);
    }
    ret
}

/// Hands on the links an rtnetlink request sent with `sendto` creates or changes.
#[cold]
#[inline(never)]
fn on_sendto(fd: c_int, request: &[u8]) {
    keeping_errno(|| on_netlink(fd, request));
}
