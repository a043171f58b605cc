//! The library's settings, read from the environment once (by the constructor, or by the first
//! hooked call if that comes earlier) into static storage.
//!
//! | Variable | Meaning |
//! |---|---|
//! | `OVS_AUTOATTACH_PREFIXES` | comma-separated name prefixes, default `veth,tap` |
//! | `OVS_AUTOATTACH_BIN` | absolute path of the tool, default `/usr/sbin/ovs-autoattach` |
//! | `OVS_AUTOATTACH_LOG` | `debug`: one stderr line per notification |
//! | `OVS_AUTOATTACH_PRELOAD_CHILD` | set in the tool's environment; makes the library inert |
//!
//! The network and mount namespaces of the loading thread are recorded at the same moment
//! ([`crate::home`]): the library starts the tool only from those.
//!
//! In secure-execution mode (`AT_SECURE`: setuid, setgid or file capabilities, possible when the
//! library is listed in `/etc/ld.so.preload`) the library is inert: the environment belongs to a
//! less privileged caller and must not choose what runs, or with which configuration.

use core::cell::UnsafeCell;
use core::ffi::{CStr, c_char};
use core::sync::atomic::{AtomicU8, Ordering};

use crate::home::Namespaces;
use crate::names::Prefixes;

/// The installed tool.
pub const DEFAULT_BIN: &[u8] = b"/usr/sbin/ovs-autoattach";
/// Longest accepted `OVS_AUTOATTACH_BIN`, without its NUL.
pub const MAX_BIN: usize = 255;
/// Marks the spawned tool's environment, so that the library (if it is loaded there anyway,
/// through `/etc/ld.so.preload`) never spawns from the tool or anything it runs.
pub const CHILD_MARK: &CStr = c"OVS_AUTOATTACH_PRELOAD_CHILD=1";

pub struct Config {
    /// Whether names are handed to the tool at all.
    pub active: bool,
    pub debug: bool,
    pub prefixes: Prefixes,
    /// The namespaces the library was loaded in (`None`: unknown, so none is home).
    pub home: Option<Namespaces>,
    /// The tool's path, NUL-terminated.
    bin: [u8; MAX_BIN + 1],
}

impl Config {
    const INERT: Config = Config {
        active: false,
        debug: false,
        prefixes: Prefixes::NONE,
        home: None,
        bin: [0; MAX_BIN + 1],
    };

    /// Builds the settings from the variables' values (`None`: unset).
    pub fn from_values(
        secure: bool,
        child: bool,
        prefixes: Option<&[u8]>,
        bin: Option<&[u8]>,
        log: Option<&[u8]>,
    ) -> Config {
        let mut c = Config::INERT;
        c.debug = log == Some(b"debug");
        c.prefixes = Prefixes::parse(prefixes.unwrap_or(Prefixes::DEFAULT));
        let bin = match bin {
            Some(b) if b.starts_with(b"/") && b.len() <= MAX_BIN && !b.contains(&0) => b,
            _ => DEFAULT_BIN,
        };
        c.bin[..bin.len()].copy_from_slice(bin);
        c.active = !secure && !child && !c.prefixes.is_empty();
        c
    }

    pub fn bin(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bin).unwrap_or(c"/usr/sbin/ovs-autoattach")
    }

    #[cold]
    #[inline(never)]
    fn from_environment() -> Config {
        // SAFETY: getauxval and getenv only read process state; the strings getenv returns
        // are NUL-terminated and copied before anything else runs.
        let mut config = unsafe {
            let var = |name: &CStr| -> Option<&[u8]> {
                let p: *const c_char = libc::getenv(name.as_ptr());
                (!p.is_null()).then(|| CStr::from_ptr(p).to_bytes())
            };
            Config::from_values(
                libc::getauxval(libc::AT_SECURE) != 0,
                // LXC runs a container's hooks (`lxc.hook.mount`, `autodev`, `start`, ...)
                // with the launcher's environment, `LD_PRELOAD` included, some of them from the
                // container's setup process, where a fresh load would take the container's
                // namespaces for home. A hook is never what creates a guest's NIC, so the
                // library stays inert in every hook.
                var(c"OVS_AUTOATTACH_PRELOAD_CHILD").is_some() || var(c"LXC_HOOK_TYPE").is_some(),
                var(c"OVS_AUTOATTACH_PREFIXES"),
                var(c"OVS_AUTOATTACH_BIN"),
                var(c"OVS_AUTOATTACH_LOG"),
            )
        };
        if config.active {
            config.home = Namespaces::current();
        }
        config
    }
}

const UNSET: u8 = 0;
const LOADING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNSET);

struct Slot(UnsafeCell<Config>);
// SAFETY: written once by the thread that moves STATE from UNSET to LOADING, read only after
// STATE is READY (release/acquire).
unsafe impl Sync for Slot {}
static CONFIG: Slot = Slot(UnsafeCell::new(Config::INERT));

/// The settings, loading them on first use. `None` only if another thread is loading them and
/// does not finish within a bounded wait (e.g. it was left behind by a `fork` in this process);
/// the caller then behaves as if the library were inert.
pub fn get() -> Option<&'static Config> {
    let mut spins = 0u32;
    loop {
        match STATE.load(Ordering::Acquire) {
            READY => {
                // SAFETY: see `Slot`.
                return Some(unsafe { &*CONFIG.0.get() });
            }
            UNSET => {
                if STATE
                    .compare_exchange(UNSET, LOADING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    // SAFETY: this thread alone writes, and nobody reads before READY.
                    unsafe { *CONFIG.0.get() = Config::from_environment() };
                    STATE.store(READY, Ordering::Release);
                }
            }
            _ => {
                spins += 1;
                if !crate::backoff(spins) {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::IfName;

    fn name(n: &[u8]) -> IfName {
        IfName::parse(n).unwrap()
    }

    #[test]
    fn defaults() {
        let c = Config::from_values(false, false, None, None, None);
        assert!(c.active && !c.debug);
        assert_eq!(c.bin().to_bytes(), DEFAULT_BIN);
        assert!(c.prefixes.matches(&name(b"veth1i0")) && c.prefixes.matches(&name(b"tap1i0")));
    }

    #[test]
    fn variables() {
        let c = Config::from_values(
            false,
            false,
            Some(b"fwln"),
            Some(b"/opt/x/ovs-autoattach"),
            Some(b"debug"),
        );
        assert!(c.active && c.debug);
        assert_eq!(c.bin().to_bytes(), b"/opt/x/ovs-autoattach");
        assert!(c.prefixes.matches(&name(b"fwln100i0")) && !c.prefixes.matches(&name(b"tap1")));
        // Only "debug" turns logging on.
        assert!(!Config::from_values(false, false, None, None, Some(b"info")).debug);
    }

    #[test]
    fn relative_or_oversized_bin_falls_back_to_the_installed_tool() {
        let long = [b'/'; MAX_BIN + 1];
        for bin in [&b"ovs-autoattach"[..], b"", &long] {
            let c = Config::from_values(false, false, None, Some(bin), None);
            assert_eq!(c.bin().to_bytes(), DEFAULT_BIN, "{bin:?}");
        }
        let max = [b'/'; MAX_BIN];
        let c = Config::from_values(false, false, None, Some(&max), None);
        assert_eq!(c.bin().to_bytes(), &max[..]);
    }

    #[test]
    fn inert_when_secure_in_the_child_or_without_prefixes() {
        assert!(!Config::from_values(true, false, None, None, None).active);
        assert!(!Config::from_values(false, true, None, None, None).active);
        assert!(!Config::from_values(false, false, Some(b""), None, None).active);
    }
}
