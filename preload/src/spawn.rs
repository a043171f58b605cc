//! Starts `ovs-autoattach --log syslog plug NAME` fully detached from the calling process, and
//! silent: its standard input, output and error are `/dev/null`, and `--log syslog` sends its
//! log lines to the system log instead. The caller's output stays exactly what the caller wrote.
//!
//! Everything the child needs (argv, envp) is built first, in fixed-size buffers on the
//! caller's stack. Then, with every signal blocked in the calling thread:
//!
//! 1. `clone(CLONE_VM | CLONE_VFORK)` starts an intermediate process on a separate stack.
//!    Its exit signal is 0, so its end raises no `SIGCHLD` in the application, and only a wait
//!    with `__WALL` (ours) can reap it. It calls `setsid` and
//! 2. clones the final process the same way, then exits at once. The final process resets
//!    every signal disposition and the signal mask, puts `/dev/null` on descriptors 0, 1 and 2,
//!    closes every descriptor above 2 (an inherited tap descriptor would keep the tap alive)
//!    and `execve`s the tool by absolute path.
//!
//! `CLONE_VFORK` suspends the caller only until the final process has called `execve` and
//! the intermediate has exited; the caller then reaps the intermediate. The final process is
//! reparented to init (or the nearest subreaper) and never waited for. Nothing here runs the
//! application's `pthread_atfork` handlers, copies its page tables, or allocates.
//!
//! Until their `execve` or exit, the two children share the caller's memory, including its
//! `errno`; the hooks restore `errno` afterwards.

use core::ffi::{c_char, c_int, c_long, c_void};
use core::ptr;

use crate::config::{CHILD_MARK, Config};
use crate::names::IfName;

/// Environment entries passed on at most (including our marker); the rest are dropped, after
/// the tool's own `OVS_AUTOATTACH_*` variables, which always come first.
pub const MAX_ENV: usize = 256;
const STACK: usize = 8192;

pub enum Outcome {
    /// The tool was executed in process `pid`.
    Started(c_int),
    /// `clone` failed with this errno.
    CloneFailed(c_int),
    /// `execve` of the tool failed with this errno.
    ExecFailed(c_int),
}

#[repr(C, align(16))]
struct Stack([u8; STACK]);

impl Stack {
    fn top(&mut self) -> *mut c_void {
        // SAFETY: one past the end of the buffer; stacks grow down on every Linux target we
        // build for.
        unsafe { self.0.as_mut_ptr().add(STACK).cast() }
    }
}

/// What the two children read and write. Lives in the caller's stack frame, which the
/// children share until they exec or exit.
#[repr(C)]
struct Job {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    final_stack: *mut c_void,
    /// Set by the intermediate: the final process's pid, or -errno.
    pid: c_int,
    /// Set by the final process if `execve` returned.
    exec_errno: c_int,
}

unsafe extern "C" {
    static environ: *const *const c_char;
}

/// The child's environment: `environ` without `LD_PRELOAD`, the tool's own variables first,
/// plus [`CHILD_MARK`]; null-terminated.
///
/// # Safety
/// `env` is null or a null-terminated array of C strings that stays valid while the result is
/// used.
unsafe fn child_env(env: *const *const c_char, out: &mut [*const c_char; MAX_ENV]) {
    let mut n = 0;
    out[n] = CHILD_MARK.as_ptr();
    n += 1;
    for ours in [true, false] {
        let mut p = env;
        while !p.is_null() {
            // SAFETY: `env` is null-terminated.
            let entry = unsafe { *p };
            if entry.is_null() || n == MAX_ENV - 1 {
                break;
            }
            p = unsafe { p.add(1) };
            let starts = |prefix: &[u8]| {
                // SAFETY: compares within the entry's NUL-terminated bytes only (a NUL in
                // the entry ends the comparison as a mismatch, since prefixes have none).
                prefix
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| unsafe { *entry.add(i) } as u8 == b)
            };
            if starts(b"LD_PRELOAD=") || starts(b"OVS_AUTOATTACH_PRELOAD_CHILD=") {
                continue;
            }
            if starts(b"OVS_AUTOATTACH_") == ours {
                out[n] = entry;
                n += 1;
            }
        }
    }
    out[n] = ptr::null();
}

/// Starts `<bin> --log syslog plug <name>` as described in the module documentation.
#[cold]
#[inline(never)]
pub fn plug(config: &Config, name: &IfName) -> Outcome {
    let bin = config.bin();
    let argv: [*const c_char; 6] = [
        bin.as_ptr(),
        c"--log".as_ptr(),
        c"syslog".as_ptr(),
        c"plug".as_ptr(),
        name.as_c_str(),
        ptr::null(),
    ];
    let mut envp = [ptr::null(); MAX_ENV];
    // SAFETY: `environ` is libc's null-terminated environment; it is only read.
    unsafe { child_env(ptr::addr_of!(environ).read(), &mut envp) };
    let mut intermediate_stack = Stack([0; STACK]);
    let mut final_stack = Stack([0; STACK]);
    let mut job = Job {
        path: bin.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        final_stack: final_stack.top(),
        pid: 0,
        exec_errno: 0,
    };
    let job_ptr: *mut Job = &mut job;

    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: plain system calls on local buffers. The raw rt_sigprocmask also blocks the
    // signals libc reserves for itself, so that no handler of the application runs on the
    // children's stacks, in memory shared with the caller.
    unsafe {
        sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            intermediate,
            intermediate_stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK, // exit signal 0
            job_ptr.cast(),
        );
        let outcome = if pid < 0 {
            Outcome::CloneFailed(*libc::__errno_location())
        } else {
            let mut status = 0;
            loop {
                let r = libc::syscall(
                    libc::SYS_wait4,
                    pid as c_long,
                    &mut status as *mut c_int,
                    libc::__WALL as c_long,
                    ptr::null_mut::<c_void>(),
                );
                if r >= 0 || *libc::__errno_location() != libc::EINTR {
                    break;
                }
            }
            let child = ptr::read_volatile(&raw const (*job_ptr).pid);
            let exec_errno = ptr::read_volatile(&raw const (*job_ptr).exec_errno);
            if child < 0 {
                Outcome::CloneFailed(-child)
            } else if exec_errno != 0 {
                Outcome::ExecFailed(exec_errno)
            } else {
                Outcome::Started(child)
            }
        };
        sigprocmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        outcome
    }
}

/// `rt_sigprocmask` with the kernel's 64-bit set.
unsafe fn sigprocmask(how: c_int, set: *const u64, old: *mut u64) {
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how as c_long,
            set,
            old,
            core::mem::size_of::<u64>() as c_long,
        )
    };
}

/// The intermediate process: new session, start the final process, exit.
extern "C" fn intermediate(arg: *mut c_void) -> c_int {
    let job = arg.cast::<Job>();
    // SAFETY: `job` is the caller's Job, alive while the caller is suspended by CLONE_VFORK.
    unsafe {
        libc::syscall(libc::SYS_setsid);
        let pid = libc::clone(
            final_process,
            (*job).final_stack,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg,
        );
        let pid = if pid < 0 {
            -*libc::__errno_location()
        } else {
            pid
        };
        ptr::write_volatile(&raw mut (*job).pid, pid);
    }
    0
}

/// The kernel's `struct sigaction` (x86_64, aarch64, ppc64, s390x; riscv64 has no
/// `sa_restorer` and reads the zero there as the empty mask), enough to set `SIG_DFL`.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The final process: clean signal state, `/dev/null` on 0–2, no other descriptors, exec the
/// tool.
extern "C" fn final_process(arg: *mut c_void) -> c_int {
    let job = arg.cast::<Job>();
    // SAFETY: only system calls, on the Job the caller keeps alive until our execve or exit.
    unsafe {
        let default = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig as c_long,
                    &default as *const KernelSigaction,
                    ptr::null_mut::<KernelSigaction>(),
                    core::mem::size_of::<u64>() as c_long,
                );
            }
        }
        let none: u64 = 0;
        sigprocmask(libc::SIG_SETMASK, &none, ptr::null_mut());
        silence();
        close_from(3);
        libc::syscall(libc::SYS_execve, (*job).path, (*job).argv, (*job).envp);
        ptr::write_volatile(&raw mut (*job).exec_errno, *libc::__errno_location());
        libc::syscall(libc::SYS_exit, 127 as c_long);
    }
    127
}

/// Puts `/dev/null` (read-write) on descriptors 0, 1 and 2, so that nothing the tool writes
/// reaches the caller's output and nothing it reads comes from the caller's input. The
/// descriptor `openat` returns is left for [`close_from`] if it is above 2.
///
/// If `/dev/null` cannot be opened (a chroot without `/dev`), 0–2 stay as inherited: closing
/// them instead would hand their numbers to the next files the tool opens, and a stray write to
/// standard error would then land in one of them. The tool is still quiet, since `--log syslog`
/// keeps its log lines off standard error.
unsafe fn silence() {
    unsafe {
        let null = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD as c_long,
            c"/dev/null".as_ptr(),
            libc::O_RDWR as c_long,
        );
        if null < 0 {
            return;
        }
        for fd in 0..=2 {
            // dup3 rather than dup2, which aarch64 lacks; dup3 refuses equal descriptors,
            // and a `null` that is already one of 0–2 is in place.
            if null != fd {
                libc::syscall(libc::SYS_dup3, null, fd, 0 as c_long);
            }
        }
    }
}

/// Closes every descriptor from `first` on: `close_range` (Linux 5.9), or a loop up to the
/// descriptor limit on older kernels.
unsafe fn close_from(first: c_int) {
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first as c_long,
            !0u32 as c_long,
            0 as c_long,
        ) == 0
        {
            return;
        }
        let mut limit = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let max = if libc::syscall(
            libc::SYS_prlimit64,
            0 as c_long,
            libc::RLIMIT_NOFILE as c_long,
            ptr::null::<libc::rlimit64>(),
            &mut limit as *mut libc::rlimit64,
        ) == 0
        {
            limit.rlim_cur.min(1 << 20) as c_int
        } else {
            1024
        };
        for fd in first..max {
            libc::syscall(libc::SYS_close, fd as c_long);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    fn env_of(entries: &[&CStr]) -> Vec<String> {
        let mut raw: Vec<*const c_char> = entries.iter().map(|e| e.as_ptr()).collect();
        raw.push(ptr::null());
        let mut out = [ptr::null(); MAX_ENV];
        unsafe { child_env(raw.as_ptr(), &mut out) };
        out.iter()
            .take_while(|p| !p.is_null())
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn child_environment_drops_ld_preload_and_keeps_the_rest() {
        let env = env_of(&[
            c"PATH=/usr/bin",
            c"LD_PRELOAD=/usr/lib/ovs-autoattach/libovs_autoattach_preload.so",
            c"LD_PRELOADX=kept",
            c"OVS_AUTOATTACH_CONFIG=/etc/x.yaml",
            c"LD_LIBRARY_PATH=/x",
        ]);
        assert_eq!(
            env,
            [
                "OVS_AUTOATTACH_PRELOAD_CHILD=1",
                "OVS_AUTOATTACH_CONFIG=/etc/x.yaml",
                "PATH=/usr/bin",
                "LD_PRELOADX=kept",
                "LD_LIBRARY_PATH=/x",
            ]
        );
    }

    #[test]
    fn oversized_environment_keeps_the_tools_variables() {
        let filler: Vec<std::ffi::CString> = (0..MAX_ENV * 2)
            .map(|i| std::ffi::CString::new(format!("V{i}=x")).unwrap())
            .collect();
        let mut entries: Vec<&CStr> = filler.iter().map(|c| c.as_c_str()).collect();
        entries.push(c"OVS_AUTOATTACH_CONFIG=/c.yaml");
        let env = env_of(&entries);
        assert_eq!(env.len(), MAX_ENV - 1);
        assert_eq!(env[1], "OVS_AUTOATTACH_CONFIG=/c.yaml");
        assert_eq!(env[2], "V0=x");
    }

    #[test]
    fn empty_environment() {
        assert_eq!(env_of(&[]), ["OVS_AUTOATTACH_PRELOAD_CHILD=1"]);
        let mut out = [ptr::null(); MAX_ENV];
        unsafe { child_env(ptr::null(), &mut out) };
        assert!(!out[0].is_null() && out[1].is_null());
    }
}
