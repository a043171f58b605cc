//! `--log syslog`: every log line as one datagram to the local syslog socket (`/dev/log`, or
//! the path in `OVS_AUTOATTACH_SYSLOG_SOCKET`), in the local form of RFC 3164,
//! `<PRI>ovs-autoattach[PID]: message`, facility daemon, severity by level. The syslog daemon
//! (journald, rsyslog) adds the time and the host name.
//!
//! Asked for syslog, the tool writes its lines nowhere else: when the socket cannot be reached,
//! a line is dropped, never written to stderr instead. The preload library relies on this, since
//! the tool it starts must leave the caller's output alone. Logging also never holds a run up
//! for long: a daemon that does not take a line within [`SEND_TIMEOUT`] gets no further lines
//! from this run.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use log::{Level, Log, Metadata, Record};

/// Where the syslog daemon listens.
pub const DEFAULT_SOCKET: &str = "/dev/log";
/// Overrides [`DEFAULT_SOCKET`] (for tests).
pub const SOCKET_ENV: &str = "OVS_AUTOATTACH_SYSLOG_SOCKET";
/// How long one line may wait for a daemon whose queue is full.
pub const SEND_TIMEOUT: Duration = Duration::from_millis(200);

const TAG: &str = "ovs-autoattach";
/// `LOG_DAEMON`.
const FACILITY: u8 = 3;

/// The syslog severity of a log level: error → err (3), warn → warning (4), info → info (6),
/// debug and trace → debug (7).
pub fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One line as sent: `<PRI>ovs-autoattach[PID]: message`, PRI = facility × 8 + severity.
pub fn line(level: Level, pid: u32, message: &str) -> String {
    format!(
        "<{}>{TAG}[{pid}]: {message}",
        FACILITY * 8 + severity(level)
    )
}

/// A logger that filters like `filter` (the same `-v`, `-q` and `OVS_AUTOATTACH_LOG` rules as
/// on stderr) and sends what passes to syslog.
pub struct Syslog {
    filter: env_logger::Logger,
    pid: u32,
    sink: Mutex<Sink>,
}

impl Syslog {
    /// Connects to the socket at `path` now; if that fails, every line is dropped.
    pub fn new(filter: env_logger::Logger, path: &Path) -> Syslog {
        Syslog {
            filter,
            pid: std::process::id(),
            sink: Mutex::new(Sink {
                path: path.to_path_buf(),
                socket: Sink::connect(path),
                reconnected: false,
            }),
        }
    }
}

/// Installs a [`Syslog`] logger on the socket [`SOCKET_ENV`] names, or [`DEFAULT_SOCKET`].
pub fn init(filter: env_logger::Logger) -> Result<(), log::SetLoggerError> {
    let path = std::env::var_os(SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_SOCKET.into());
    let max = filter.filter();
    log::set_boxed_logger(Box::new(Syslog::new(filter, &path)))?;
    log::set_max_level(max);
    Ok(())
}

impl Log for Syslog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let line = line(record.level(), self.pid, &record.args().to_string());
        self.sink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The connection to the daemon. `None` once it is unreachable or too slow: lines are dropped.
struct Sink {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    /// Whether the one reconnection a run gets has been used.
    reconnected: bool,
}

impl Sink {
    fn connect(path: &Path) -> Option<UnixDatagram> {
        let socket = UnixDatagram::unbound().ok()?;
        socket.connect(path).ok()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT)).ok()?;
        Some(socket)
    }

    fn send(&mut self, line: &[u8]) {
        let Some(socket) = &self.socket else {
            return;
        };
        let Err(e) = socket.send(line) else {
            return;
        };
        match e.kind() {
            // The daemon is there but does not read: stop waiting for it.
            ErrorKind::WouldBlock | ErrorKind::TimedOut => self.socket = None,
            // The daemon restarted since we connected and listens on a new socket at the same
            // path: once more, on a fresh connection.
            ErrorKind::ConnectionRefused | ErrorKind::NotConnected if !self.reconnected => {
                self.reconnected = true;
                self.socket = Sink::connect(&self.path);
                self.send(line);
            }
            // Anything else costs this line only.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn filter(level: log::LevelFilter) -> env_logger::Logger {
        env_logger::Builder::new().filter_level(level).build()
    }

    fn emit(logger: &Syslog, level: Level, message: &str) {
        logger.log(
            &Record::builder()
                .level(level)
                .target("ovs_autoattach::commands")
                .args(format_args!("{message}"))
                .build(),
        );
    }

    fn listener(dir: &Path) -> (PathBuf, UnixDatagram) {
        let path = dir.join("log");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (path, socket)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn lines_carry_facility_daemon_and_the_levels_severity() {
        assert_eq!(
            line(Level::Error, 42, "connecting to OVSDB: refused"),
            "<27>ovs-autoattach[42]: connecting to OVSDB: refused"
        );
        assert_eq!(line(Level::Warn, 7, "w"), "<28>ovs-autoattach[7]: w");
        assert_eq!(
            line(Level::Info, 4711, "attached tap100i0 to vmbr1 tag=10"),
            "<30>ovs-autoattach[4711]: attached tap100i0 to vmbr1 tag=10"
        );
        assert_eq!(line(Level::Debug, 1, "d"), "<31>ovs-autoattach[1]: d");
        assert_eq!(line(Level::Trace, 1, "t"), "<31>ovs-autoattach[1]: t");
    }

    #[test]
    fn filtered_records_are_sent_one_datagram_each() {
        let dir = tempfile::tempdir().unwrap();
        let (path, daemon) = listener(dir.path());
        let logger = Syslog::new(filter(log::LevelFilter::Info), &path);
        emit(&logger, Level::Debug, "not sent");
        emit(
            &logger,
            Level::Warn,
            "tap100i0: not attached: net0 is missing",
        );
        emit(&logger, Level::Info, "plug: 1 attached");
        let pid = std::process::id();
        assert_eq!(
            recv(&daemon),
            format!("<28>ovs-autoattach[{pid}]: tap100i0: not attached: net0 is missing")
        );
        assert_eq!(
            recv(&daemon),
            format!("<30>ovs-autoattach[{pid}]: plug: 1 attached")
        );
        daemon.set_nonblocking(true).unwrap();
        assert!(
            daemon.recv(&mut [0; 16]).is_err(),
            "the debug line was sent"
        );
    }

    #[test]
    fn an_unreachable_socket_drops_the_lines() {
        let dir = tempfile::tempdir().unwrap();
        let logger = Syslog::new(filter(log::LevelFilter::Debug), &dir.path().join("none"));
        emit(&logger, Level::Error, "dropped");
        assert!(logger.sink.lock().unwrap().socket.is_none());
    }

    #[test]
    fn a_restarted_daemon_gets_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let (path, daemon) = listener(dir.path());
        let logger = Syslog::new(filter(log::LevelFilter::Info), &path);
        emit(&logger, Level::Info, "first");
        assert!(recv(&daemon).ends_with(": first"));
        drop(daemon);
        std::fs::remove_file(&path).unwrap();
        let (_, daemon) = listener(dir.path());
        emit(&logger, Level::Info, "second");
        assert!(recv(&daemon).ends_with(": second"));
    }

    #[test]
    fn a_daemon_that_does_not_read_holds_the_run_up_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, daemon) = listener(dir.path());
        let logger = Syslog::new(filter(log::LevelFilter::Info), &path);
        let started = Instant::now();
        for i in 0..5000 {
            emit(&logger, Level::Info, &format!("line {i}"));
        }
        let elapsed = started.elapsed();
        assert!(logger.sink.lock().unwrap().socket.is_none());
        assert!(
            elapsed >= SEND_TIMEOUT && elapsed < SEND_TIMEOUT * 5,
            "{elapsed:?}"
        );
        // What the daemon's queue took arrived intact, in order.
        assert!(recv(&daemon).ends_with(": line 0"));
        assert!(recv(&daemon).ends_with(": line 1"));
    }
}
