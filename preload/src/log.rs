//! The debug line (`OVS_AUTOATTACH_LOG=debug`): built in a stack buffer, written to fd 2 with
//! one `write`, so that lines of concurrent threads do not interleave.

use core::ffi::c_long;

const CAPACITY: usize = 512;

pub struct Line {
    buf: [u8; CAPACITY],
    len: usize,
}

impl Line {
    /// A line starting with `ovs-autoattach-preload[<pid>]: `.
    pub fn new() -> Line {
        let mut line = Line {
            buf: [0; CAPACITY],
            len: 0,
        };
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::syscall(libc::SYS_getpid) };
        line.push(b"ovs-autoattach-preload[").num(pid).push(b"]: ");
        line
    }

    /// Appends `bytes`, truncating at the capacity (one byte stays free for the newline).
    #[inline(never)]
    pub fn push(&mut self, bytes: &[u8]) -> &mut Line {
        let n = bytes.len().min(CAPACITY - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self
    }

    #[inline(never)]
    pub fn num(&mut self, n: i64) -> &mut Line {
        if n < 0 {
            self.push(b"-");
        }
        let m = n.unsigned_abs();
        if m >= 10 {
            self.num((m / 10) as i64);
        }
        self.push(&[b'0' + (m % 10) as u8])
    }

    #[cfg(test)]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Ends the line and writes it to stderr; errors are ignored.
    pub fn write(&mut self) {
        self.buf[self.len] = b'\n';
        // SAFETY: writes initialized bytes of our own buffer.
        unsafe {
            libc::syscall(
                libc::SYS_write,
                2 as c_long,
                self.buf.as_ptr(),
                (self.len + 1) as c_long,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_truncation() {
        let mut l = Line {
            buf: [0; CAPACITY],
            len: 0,
        };
        l.num(0)
            .push(b" ")
            .num(1234)
            .push(b" ")
            .num(-56)
            .push(b" ")
            .num(i64::MIN);
        assert_eq!(l.as_bytes(), b"0 1234 -56 -9223372036854775808");
        for _ in 0..100 {
            l.push(b"0123456789");
        }
        assert_eq!(l.as_bytes().len(), CAPACITY - 1);
        assert!(
            Line::new()
                .as_bytes()
                .starts_with(b"ovs-autoattach-preload[")
        );
    }
}
