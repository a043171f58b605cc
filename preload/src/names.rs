//! Interface names as the library sees them, and the prefixes that make a name a guest NIC.
//!
//! The rules match the tool's own (`src/ifname.rs`): 1–15 bytes of ASCII letters, digits, `-`,
//! `_` and `.`, and not `.` or `..`. Anything else is never handed to the tool.

use core::ffi::c_char;

/// `IFNAMSIZ`: the kernel's name buffer, including the terminating NUL.
pub const IFNAMSIZ: usize = 16;

/// A valid interface name, NUL-padded to [`IFNAMSIZ`] bytes so that it doubles as a C string.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IfName {
    bytes: [u8; IFNAMSIZ],
    len: u8,
}

impl IfName {
    /// The name in `raw` up to its first NUL (or all of `raw` if it has none), if it is valid.
    pub fn parse(raw: &[u8]) -> Option<IfName> {
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let name = raw.get(..len)?;
        if name.is_empty() || name.len() >= IFNAMSIZ || name == b"." || name == b".." {
            return None;
        }
        if !name.iter().all(|&b| name_byte(b)) {
            return None;
        }
        let mut bytes = [0u8; IFNAMSIZ];
        bytes[..name.len()].copy_from_slice(name);
        Some(IfName {
            bytes,
            len: name.len() as u8,
        })
    }

    /// The name in the C string at `p`, reading no further than its NUL and at most
    /// [`IFNAMSIZ`] bytes.
    ///
    /// # Safety
    /// `p` is null or points to a NUL-terminated string or to at least [`IFNAMSIZ`] bytes.
    pub unsafe fn from_c_str(p: *const c_char) -> Option<IfName> {
        if p.is_null() {
            return None;
        }
        // SAFETY: strnlen reads no further than the NUL or IFNAMSIZ bytes, and the bytes it
        // counted exist.
        let len = unsafe { libc::strnlen(p, IFNAMSIZ) };
        if len == IFNAMSIZ {
            return None; // no NUL within IFNAMSIZ bytes: too long for an interface name
        }
        IfName::parse(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The name with its terminating NUL.
    pub fn as_c_str(&self) -> *const c_char {
        self.bytes.as_ptr().cast()
    }

    /// The padded name as two words, for the lock-free table of names already handled.
    pub fn words(&self) -> [u64; 2] {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&self.bytes[..8]);
        hi.copy_from_slice(&self.bytes[8..]);
        [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
    }
}

/// Whether `b` may appear in an interface name: ASCII letters, digits, `-`, `_`, `.` (a bitmap
/// lookup, since every hooked call checks every byte of its name).
fn name_byte(b: u8) -> bool {
    const fn bitmap() -> [u64; 4] {
        let mut map = [0u64; 4];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.' {
                map[b / 64] |= 1 << (b % 64);
            }
            b += 1;
        }
        map
    }
    const MAP: [u64; 4] = bitmap();
    MAP[(b / 64) as usize] >> (b % 64) & 1 == 1
}

/// Most prefixes kept from `OVS_AUTOATTACH_PREFIXES`.
pub const MAX_PREFIXES: usize = 16;

/// The name prefixes of guest NICs, parsed from a comma-separated list without allocating.
#[derive(Clone, Copy, Debug)]
pub struct Prefixes {
    list: [[u8; IFNAMSIZ - 1]; MAX_PREFIXES],
    lens: [u8; MAX_PREFIXES],
    count: usize,
}

impl Prefixes {
    pub const NONE: Prefixes = Prefixes {
        list: [[0; IFNAMSIZ - 1]; MAX_PREFIXES],
        lens: [0; MAX_PREFIXES],
        count: 0,
    };

    /// `veth,tap`, the tool's own default.
    pub const DEFAULT: &'static [u8] = b"veth,tap";

    /// Parses `a,b,c`. Blanks around entries and empty entries are ignored, as are entries that
    /// no valid name can start with (too long or outside the name alphabet), and entries beyond
    /// the first [`MAX_PREFIXES`].
    pub fn parse(text: &[u8]) -> Prefixes {
        let mut p = Prefixes::NONE;
        for entry in text.split(|&b| b == b',') {
            let entry = entry.trim_ascii();
            let usable =
                !entry.is_empty() && entry.len() < IFNAMSIZ && entry.iter().all(|&b| name_byte(b));
            if !usable || p.count == MAX_PREFIXES {
                continue;
            }
            p.list[p.count][..entry.len()].copy_from_slice(entry);
            p.lens[p.count] = entry.len() as u8;
            p.count += 1;
        }
        p
    }

    pub fn matches(&self, name: &IfName) -> bool {
        let name = name.as_bytes();
        (0..self.count).any(|i| name.starts_with(&self.list[i][..self.lens[i] as usize]))
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_tool_accepts() {
        for n in [
            &b"tap100i0"[..],
            b"veth999999999i3",
            b"a",
            b"bond0.100",
            b"x_y-z",
        ] {
            assert_eq!(IfName::parse(n).unwrap().as_bytes(), n);
        }
        assert_eq!(
            IfName::parse(b"veth1\0garbage").unwrap().as_bytes(),
            b"veth1"
        );
    }

    #[test]
    fn refuses_what_the_tool_refuses() {
        for n in [
            &b""[..],
            b"\0tap",
            b".",
            b"..",
            b"veth1234567890ab",
            b"a/b",
            b"a b",
            b"tap$(id)",
            b"t\xc3\xa4p",
            b"tap\n",
        ] {
            assert_eq!(IfName::parse(n), None, "{n:?}");
        }
    }

    #[test]
    fn c_strings_are_read_up_to_the_nul_and_no_further_than_16_bytes() {
        let ok = b"tap5i0\0";
        assert_eq!(
            unsafe { IfName::from_c_str(ok.as_ptr().cast()) }
                .unwrap()
                .as_bytes(),
            b"tap5i0"
        );
        let long = [b'a'; 16];
        assert_eq!(unsafe { IfName::from_c_str(long.as_ptr().cast()) }, None);
        let fifteen = *b"abcdefghijklmno\0";
        assert!(unsafe { IfName::from_c_str(fifteen.as_ptr().cast()) }.is_some());
        assert_eq!(unsafe { IfName::from_c_str(core::ptr::null()) }, None);
    }

    #[test]
    fn words_differ_for_different_names() {
        let a = IfName::parse(b"veth1234567890a").unwrap();
        let b = IfName::parse(b"veth1234567890b").unwrap();
        assert_ne!(a.words(), b.words());
        assert_eq!(
            a.words(),
            IfName::parse(b"veth1234567890a").unwrap().words()
        );
    }

    #[test]
    fn prefixes() {
        let p = Prefixes::parse(Prefixes::DEFAULT);
        let m = |n: &[u8]| p.matches(&IfName::parse(n).unwrap());
        assert!(m(b"veth100i0") && m(b"tap5i1") && m(b"tap"));
        assert!(!m(b"lo") && !m(b"vmbr0") && !m(b"ta"));

        let p = Prefixes::parse(b" fw , ,x.y,bad prefix,,aaaaaaaaaaaaaaaaaaaa");
        assert_eq!(p.count, 2);
        assert!(p.matches(&IfName::parse(b"fwpr100p0").unwrap()));
        assert!(p.matches(&IfName::parse(b"x.y1").unwrap()));
        assert!(!p.matches(&IfName::parse(b"veth1").unwrap()));

        assert!(Prefixes::parse(b"").is_empty());
        assert!(Prefixes::parse(b" , ").is_empty());
        let many = Prefixes::parse(b"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r");
        assert_eq!(many.count, MAX_PREFIXES);
    }
}
