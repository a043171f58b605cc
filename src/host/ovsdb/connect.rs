//! Connecting to OVSDB within a deadline.
//!
//! `connect(2)` on a unix stream socket blocks without bound while the listener's backlog is
//! full, which is what a wedged ovsdb-server that no longer accepts looks like. The socket's send
//! timeout (`SO_SNDTIMEO`) bounds a blocking `connect(2)` on Linux (socket(7)), for unix and TCP
//! sockets alike: the call returns `EAGAIN` (unix) or `EINPROGRESS` (TCP) when it passes, and
//! succeeds as soon as the listener makes room. TCP goes through std's `connect_timeout` (a
//! non-blocking connect and `poll`), and a host name is resolved on a helper thread so that a
//! slow resolver is bounded too.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Why a connect failed.
#[derive(Debug)]
pub enum Failure {
    /// The deadline passed first.
    TimedOut,
    /// The system said no (refused, no such socket, permission...).
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// Connects to the unix stream socket at `path`, giving up at `deadline`.
pub fn unix(path: &Path, deadline: Instant) -> Result<UnixStream, Failure> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(Failure::Io(io::Error::new(
            ErrorKind::InvalidInput,
            "not a usable socket path (empty, too long or holding a NUL byte)",
        )));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len =
        (std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: a plain socket(2) call; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::TimedOut);
        }
        set_send_timeout(&sock, Some(left))?;
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
        let r = unsafe {
            libc::connect(
                sock.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                len,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // The send timeout passed while the listener's backlog stayed full.
            Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => return Err(Failure::TimedOut),
            _ => return Err(e.into()),
        }
    }
    set_send_timeout(&sock, None)?;
    Ok(UnixStream::from(sock))
}

/// Connects to `addr` (`HOST:PORT`), resolving and connecting within `deadline`; each address
/// the name resolves to is tried in turn.
pub fn tcp(addr: &str, deadline: Instant) -> Result<TcpStream, Failure> {
    let addrs = resolve(addr, deadline)?;
    let mut last = io::Error::new(ErrorKind::NotFound, "the address resolves to nothing");
    for sa in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::TimedOut);
        }
        match TcpStream::connect_timeout(&sa, left) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == ErrorKind::TimedOut => return Err(Failure::TimedOut),
            Err(e) => last = e,
        }
    }
    Err(Failure::Io(last))
}

/// The addresses of `addr`: at once for a literal address, else from the resolver on a helper
/// thread, which is abandoned (a one-shot run exits soon after) if it outlasts `deadline`.
fn resolve(addr: &str, deadline: Instant) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = addr.to_string();
    std::thread::Builder::new()
        .name("ovsdb-resolve".into())
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(Vec::from_iter));
        })?;
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure::TimedOut),
    }
}

fn set_send_timeout(sock: &OwnedFd, t: Option<Duration>) -> io::Result<()> {
    let tv = match t {
        // At least a microsecond: a zero timeval means "no timeout".
        Some(t) => libc::timeval {
            tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_usec: (t.subsec_micros().max(u32::from(t.as_secs() == 0))) as libc::suseconds_t,
        },
        None => libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    // SAFETY: `tv` is a valid timeval of the size passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const tv).cast::<libc::c_void>(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A listener that never accepts, with its backlog filled: the next connect would block.
    fn stuck(dir: &Path) -> (UnixListener, Vec<OwnedFd>, std::path::PathBuf) {
        let path = dir.join("stuck.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // SAFETY: listen(2) on a socket we own; a second listen only lowers the backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let mut queued = Vec::new();
        for _ in 0..8 {
            // SAFETY: socket(2), then owned.
            let fd = unsafe {
                libc::socket(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            };
            assert!(fd >= 0);
            // SAFETY: fresh descriptor.
            let sock = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: sockaddr_un is plain old data.
            let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
                *d = *s as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            // SAFETY: a valid sockaddr_un.
            let r = unsafe {
                libc::connect(
                    sock.as_raw_fd(),
                    (&raw const addr).cast::<libc::sockaddr>(),
                    len,
                )
            };
            if r != 0 {
                assert_eq!(
                    io::Error::last_os_error().raw_os_error(),
                    Some(libc::EAGAIN)
                );
                return (listener, queued, path);
            }
            queued.push(sock);
        }
        panic!("the backlog never filled");
    }

    #[test]
    fn a_full_backlog_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let (_listener, _queued, path) = stuck(tmp.path());
        let t = Instant::now();
        let r = unix(&path, Instant::now() + Duration::from_millis(300));
        assert!(matches!(r, Err(Failure::TimedOut)), "{r:?}");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[test]
    fn a_listening_socket_connects_and_a_missing_one_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ok.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        assert!(unix(&path, Instant::now() + Duration::from_secs(1)).is_ok());
        let gone = tmp.path().join("gone.sock");
        match unix(&gone, Instant::now() + Duration::from_secs(1)) {
            Err(Failure::Io(e)) => assert_eq!(e.kind(), ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tcp_literal_addresses_are_not_resolved() {
        assert_eq!(
            resolve("127.0.0.1:6640", Instant::now()).unwrap(),
            vec!["127.0.0.1:6640".parse::<SocketAddr>().unwrap()]
        );
    }
}
