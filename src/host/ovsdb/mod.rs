//! A small synchronous OVSDB client (RFC 7047 JSON-RPC over a unix or TCP socket).
//!
//! It does exactly what a one-shot tool needs: `transact`, `monitor` with its `update`
//! notifications, and answering the server's `echo` keepalives. ovs-vswitchd's control socket
//! speaks the same JSON-RPC 1.0, so [`crate::host::vswitchd`] sends its commands with this client
//! too ([`Client::connect_to`], [`Client::call`]). Every wait is bounded in time (the
//! configured timeout): the connect ([`connect`]), each request written, and each reply read;
//! and every read in size ([`MAX_MESSAGE`]), so a wedged or hostile server can make a run fail,
//! never hang or exhaust memory.

mod connect;
pub mod datum;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::decide::config::Endpoint;

/// Largest JSON message accepted from the server. A full read of a host with thousands of ports
/// is a few MB.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// A transaction the server refused (an operation error such as a constraint violation, or a
/// failed `wait`). Nothing of it was committed, so the caller may observe again and retry.
#[derive(Debug)]
pub struct TxnError(pub String);

impl std::fmt::Display for TxnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OVSDB refused the transaction: {}", self.0)
    }
}

impl std::error::Error for TxnError {}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    /// Writes all of `buf` before `deadline`: a server that reads slowly (or not at all) makes
    /// this fail once the deadline passes, however the bytes trickle.
    fn write_all_by(&mut self, mut buf: &[u8], deadline: Instant) -> std::io::Result<()> {
        while !buf.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            self.set_write_timeout(Some(left))?;
            match self.write(buf) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(ErrorKind::TimedOut.into());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The daemon at the other end, as messages name it.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    /// What it is called in messages: `OVSDB`, `ovs-vswitchd`.
    pub name: &'static str,
    /// The daemon a hint names: `ovsdb-server`, `ovs-vswitchd`.
    pub daemon: &'static str,
}

impl Server {
    pub const OVSDB: Server = Server {
        name: "OVSDB",
        daemon: "ovsdb-server",
    };
    pub const VSWITCHD: Server = Server {
        name: "ovs-vswitchd",
        daemon: "ovs-vswitchd",
    };
}

/// A request sent whose reply has not been read yet.
struct Pending {
    id: u64,
    method: &'static str,
}

pub struct Client {
    stream: Stream,
    /// Bytes received but not yet consumed as a message.
    buf: Vec<u8>,
    next_id: u64,
    timeout: Duration,
    /// `update` notifications that arrived while waiting for a reply, kept for [`Client::next_update`].
    pending_updates: Vec<Value>,
    endpoint: String,
    server: Server,
}

impl Client {
    /// The server's process as the kernel saw it at connect (`SO_PEERCRED`) on a unix socket:
    /// `Some(0)` when it runs in a PID namespace this process cannot see into, `None` on TCP.
    pub fn peer_pid(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        let Stream::Unix(s) = &self.stream else {
            return None;
        };
        // SAFETY: ucred is plain old data; the kernel fills at most `len` bytes of it.
        let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: valid descriptor, pointer and length for the whole call.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(cred.pid)
    }

    /// The endpoint, as `unix:PATH` or `tcp:HOST:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Connects to the OVSDB server. `timeout` bounds the connect (unix and TCP, name
    /// resolution included) and every later wait.
    pub fn connect(endpoint: &Endpoint, timeout: Duration) -> anyhow::Result<Client> {
        Client::connect_to(Server::OVSDB, endpoint, timeout)
    }

    /// Connects to `server`'s JSON-RPC socket, as [`Client::connect`].
    pub fn connect_to(
        server: Server,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> anyhow::Result<Client> {
        let deadline = Instant::now() + timeout;
        let (stream, name) = match endpoint {
            Endpoint::Unix(path) => {
                let name = format!("unix:{}", path.display());
                let s = connect::unix(path, deadline).map_err(|e| {
                    connect_error(e, server, &name, timeout, "is openvswitch-switch running?")
                })?;
                (Stream::Unix(s), name)
            }
            Endpoint::Tcp(addr) => {
                let name = format!("tcp:{addr}");
                let s = connect::tcp(addr, deadline).map_err(|e| {
                    let hint = format!("is {} listening there?", server.daemon);
                    connect_error(e, server, &name, timeout, &hint)
                })?;
                (Stream::Tcp(s), name)
            }
        };
        stream
            .set_write_timeout(Some(timeout))
            .with_context(|| format!("setting the {} write timeout", server.name))?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            next_id: 0,
            timeout,
            pending_updates: Vec::new(),
            endpoint: name,
            server,
        })
    }

    /// Runs one transaction on `db` and returns the per-operation results. Any operation error
    /// (or the server's trailing commit error) becomes a [`TxnError`]: OVSDB commits nothing
    /// in that case.
    pub fn transact(&mut self, db: &str, ops: Vec<Value>) -> anyhow::Result<Vec<Value>> {
        let pending = self.send_transact(db, ops)?;
        transact_results(self.reply(pending)?)
    }

    /// Like [`Client::transact`], but returns the reply message as the server sent it, for the
    /// caller to decode straight into its own types: a generic JSON tree of thousands of rows
    /// costs more than everything else a run does with them. An error of the request itself
    /// is reported here; [`Client::transact_results`] turns the message into what
    /// [`Client::transact`] would have returned, operation errors included.
    pub fn transact_raw(&mut self, db: &str, ops: Vec<Value>) -> anyhow::Result<Vec<u8>> {
        let pending = self.send_transact(db, ops)?;
        self.reply_raw(pending)
    }

    fn send_transact(&mut self, db: &str, ops: Vec<Value>) -> anyhow::Result<Pending> {
        let mut params = Vec::with_capacity(ops.len() + 1);
        params.push(Value::String(db.into()));
        params.extend(ops);
        self.send("transact", Value::Array(params))
    }

    /// The per-operation results of a message returned by [`Client::transact_raw`].
    pub fn transact_results(&self, reply: &[u8]) -> anyhow::Result<Vec<Value>> {
        let mut msg = self.decode(reply)?;
        transact_results(
            msg.get_mut("result")
                .map(Value::take)
                .unwrap_or(Value::Null),
        )
    }

    /// Starts monitoring `requests` on `db` under `monitor_id` and returns the initial contents.
    pub fn monitor(
        &mut self,
        db: &str,
        monitor_id: &str,
        requests: Value,
    ) -> anyhow::Result<Value> {
        self.call("monitor", json!([db, monitor_id, requests]))
    }

    /// The next table update for `monitor_id`, or `None` once `deadline` passes.
    pub fn next_update(
        &mut self,
        monitor_id: &str,
        deadline: Instant,
    ) -> anyhow::Result<Option<Value>> {
        loop {
            if let Some(pos) = self
                .pending_updates
                .iter()
                .position(|u| u.get("params").and_then(|p| p.get(0)) == Some(&json!(monitor_id)))
            {
                let mut u = self.pending_updates.remove(pos);
                return Ok(u
                    .get_mut("params")
                    .and_then(|p| p.get_mut(1))
                    .map(Value::take));
            }
            let Some(msg) = self.read_message(deadline)? else {
                return Ok(None);
            };
            self.dispatch(msg)?;
        }
    }

    /// Sends a request and waits, bounded by the timeout, for the reply with the same id;
    /// returns its result.
    pub fn call(&mut self, method: &'static str, params: Value) -> anyhow::Result<Value> {
        let pending = self.send(method, params)?;
        self.reply(pending)
    }

    /// Sends a request without waiting for its reply.
    fn send(&mut self, method: &'static str, params: Value) -> anyhow::Result<Pending> {
        self.next_id += 1;
        let id = self.next_id;
        // Written out around `params` rather than through `json!`, which would copy the whole
        // tree first (a transaction attaching thousands of ports is megabytes of it): the same
        // object, `{"id":..,"method":..,"params":..}`, one per line.
        let mut bytes = format!("{{\"id\":{id},\"method\":").into_bytes();
        serde_json::to_writer(&mut bytes, method).context("encoding a JSON-RPC request")?;
        bytes.extend_from_slice(b",\"params\":");
        serde_json::to_writer(&mut bytes, &params).context("encoding a JSON-RPC request")?;
        bytes.extend_from_slice(b"}\n");
        drop(params);
        self.write_all(&bytes, &format!("sending {method} to"))?;
        Ok(Pending { id, method })
    }

    /// Waits, bounded by the timeout, for the reply to `pending` and returns its result.
    fn reply(&mut self, pending: Pending) -> anyhow::Result<Value> {
        let reply = self.reply_raw(pending)?;
        let mut msg = self.decode(&reply)?;
        // Moved out, not cloned: a full read is thousands of rows.
        Ok(msg
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    /// Waits, bounded by the timeout, for the reply to `pending` and returns it undecoded;
    /// handles whatever else arrives first (see [`Client::dispatch`]).
    fn reply_raw(&mut self, pending: Pending) -> anyhow::Result<Vec<u8>> {
        let Pending { id, method } = pending;
        let deadline = Instant::now() + self.timeout;
        loop {
            let bytes = self.read_raw(deadline)?.ok_or_else(|| {
                anyhow!(
                    "{} at {} did not answer {method} within {} s (is {} wedged?)",
                    self.server.name,
                    self.endpoint,
                    self.timeout.as_secs(),
                    self.server.daemon
                )
            })?;
            // Most messages are told apart by their head alone, without building a tree of them;
            // anything the head does not describe plainly takes the generic way.
            if let Ok(head) = serde_json::from_slice::<Head>(&bytes)
                && head.id.as_ref().and_then(Value::as_u64) == Some(id)
                && head.method.is_none()
            {
                if let Some(err) = head.error {
                    bail!("{} {method} failed: {err}", self.server.name);
                }
                return Ok(bytes);
            }
            let msg = self.decode(&bytes)?;
            if msg.get("id").and_then(Value::as_u64) == Some(id) && msg.get("method").is_none() {
                if let Some(err) = msg.get("error").filter(|e| !e.is_null()) {
                    bail!("{} {method} failed: {err}", self.server.name);
                }
                return Ok(bytes);
            }
            self.dispatch(msg)?;
        }
    }

    /// Writes a whole message, bounded by the timeout; `doing` says what for ("sending transact
    /// to").
    fn write_all(&mut self, bytes: &[u8], doing: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        match self.stream.write_all_by(bytes, deadline) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::TimedOut => bail!(
                "timed out after {} s {doing} {} at {} (is {} wedged?)",
                self.timeout.as_secs(),
                self.server.name,
                self.endpoint,
                self.server.daemon
            ),
            Err(e) => {
                Err(e).with_context(|| format!("{doing} {} at {}", self.server.name, self.endpoint))
            }
        }
    }

    fn decode(&self, bytes: &[u8]) -> anyhow::Result<Value> {
        serde_json::from_slice(bytes).with_context(|| {
            format!(
                "decoding a message from {} at {}",
                self.server.name, self.endpoint
            )
        })
    }

    /// Handles a message that is not the awaited reply: answers `echo`, queues `update`s, drops
    /// stale replies.
    fn dispatch(&mut self, msg: Value) -> anyhow::Result<()> {
        match msg.get("method").and_then(Value::as_str) {
            Some("echo") => {
                let reply = json!({"id": msg.get("id").cloned().unwrap_or(Value::Null),
                                   "result": msg.get("params").cloned().unwrap_or(json!([])),
                                   "error": null});
                let mut bytes = serde_json::to_vec(&reply)?;
                bytes.push(b'\n');
                self.write_all(&bytes, "answering an echo of")?;
            }
            Some("update") => self.pending_updates.push(msg),
            _ => {}
        }
        Ok(())
    }

    /// Reads one complete JSON message, or `None` when `deadline` passes first.
    fn read_message(&mut self, deadline: Instant) -> anyhow::Result<Option<Value>> {
        match self.read_raw(deadline)? {
            Some(bytes) => self.decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Reads the bytes of one complete JSON message, or `None` when `deadline` passes first.
    fn read_raw(&mut self, deadline: Instant) -> anyhow::Result<Option<Vec<u8>>> {
        let mut scanned = 0;
        let mut scanner = Scanner::default();
        loop {
            // The scanner counts from the first byte it was fed, which is the start of `buf`.
            if let Some(end) = scanner.feed(&self.buf[scanned..]) {
                let rest = self.buf.split_off(end);
                return Ok(Some(std::mem::replace(&mut self.buf, rest)));
            }
            scanned = self.buf.len();
            if scanner.error {
                bail!(
                    "{} at {} sent something that is not JSON",
                    self.server.name,
                    self.endpoint
                );
            }
            if self.buf.len() > MAX_MESSAGE {
                bail!(
                    "{} at {} sent a message larger than {MAX_MESSAGE} bytes",
                    self.server.name,
                    self.endpoint
                );
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(deadline - now))?;
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!(
                    "{} at {} closed the connection",
                    self.server.name,
                    self.endpoint
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("reading from {} at {}", self.server.name, self.endpoint)
                    });
                }
            }
        }
    }
}

/// The error of a failed connect: a timeout names what it waited for; a refusal keeps the
/// system's reason and `hint`.
fn connect_error(
    e: connect::Failure,
    server: Server,
    endpoint: &str,
    timeout: Duration,
    hint: &str,
) -> anyhow::Error {
    let Server { name, daemon } = server;
    match e {
        connect::Failure::TimedOut => anyhow!(
            "timed out after {} s connecting to {name} at {endpoint} (is {daemon} running and answering?)",
            timeout.as_secs()
        ),
        connect::Failure::Io(e) => {
            anyhow::Error::new(e).context(format!("connecting to {name} at {endpoint} ({hint})"))
        }
    }
}

/// The per-operation results of a `transact` reply. Any operation error (or the server's trailing
/// commit error) becomes a [`TxnError`]: OVSDB commits nothing in that case.
fn transact_results(result: Value) -> anyhow::Result<Vec<Value>> {
    let results = match result {
        Value::Array(r) => r,
        other => bail!("OVSDB transact returned {other} instead of a result array"),
    };
    if let Some(err) = results.iter().find_map(|r| r.get("error")) {
        let details = results
            .iter()
            .find_map(|r| r.get("details").and_then(Value::as_str))
            .unwrap_or("");
        let err = err.as_str().unwrap_or("error");
        return Err(TxnError(if details.is_empty() {
            err.to_string()
        } else {
            format!("{err}: {details}")
        })
        .into());
    }
    Ok(results)
}

/// What tells a message apart: its id, whether it is a request (`method`), and its error. Other
/// members (a `result` of thousands of rows) are skipped, not decoded.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    id: Option<Value>,
    /// `Some` whenever the member is there, `null` included, as for a request.
    #[serde(default, deserialize_with = "present")]
    method: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde::de::IgnoredAny>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// Finds where the first JSON object in a byte stream ends, incrementally: OVSDB sends messages
/// back to back without framing, so the end of one is where its outermost brace closes.
#[derive(Default)]
struct Scanner {
    depth: usize,
    in_string: bool,
    escaped: bool,
    started: bool,
    pos: usize,
    error: bool,
}

impl Scanner {
    /// Feeds the next bytes; returns the end offset (relative to the first byte ever fed) of the
    /// first complete message.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for &b in bytes {
            self.pos += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    self.started = true;
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        self.error = true;
                        return None;
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(self.pos);
                    }
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ if !self.started => {
                    self.error = true;
                    return None;
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(stream: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = stream;
        loop {
            let mut s = Scanner::default();
            match s.feed(rest) {
                Some(end) => {
                    out.push(String::from_utf8_lossy(&rest[..end]).trim().to_string());
                    rest = &rest[end..];
                }
                None => return out,
            }
        }
    }

    #[test]
    fn scanner_splits_back_to_back_messages() {
        let msgs = split(br#"{"a":"}{\"x"}{"b":[1,{"c":"]"}]} {"d":1}"#);
        assert_eq!(
            msgs,
            vec![r#"{"a":"}{\"x"}"#, r#"{"b":[1,{"c":"]"}]}"#, r#"{"d":1}"#]
        );
    }

    #[test]
    fn scanner_is_incremental() {
        let whole = br#"{"id":1,"result":[{"rows":[{"name":"a\\"}]}]}"#;
        let mut s = Scanner::default();
        let (a, b) = whole.split_at(17);
        assert_eq!(s.feed(a), None);
        assert_eq!(s.feed(b), Some(whole.len()));
    }

    #[test]
    fn requests_are_encoded_as_json_would() {
        let (server, client) = UnixStream::pair().unwrap();
        let mut c = Client {
            stream: Stream::Unix(client),
            buf: Vec::new(),
            next_id: 6,
            timeout: Duration::from_secs(1),
            pending_updates: Vec::new(),
            endpoint: "test".into(),
            server: Server::OVSDB,
        };
        let params = json!(["Open_vSwitch", {"op": "select", "table": "Port", "where": [["name", "==", "a\"b"]]}]);
        let _ = c.send("transact", params.clone()).unwrap();
        let mut sent = vec![0u8; 4096];
        let n = (&server).read(&mut sent).unwrap();
        assert!(sent[..n].ends_with(b"}\n") && !sent[..n - 1].contains(&b'\n'));
        let got: Value = serde_json::from_slice(&sent[..n]).unwrap();
        assert_eq!(
            got,
            json!({"method": "transact", "params": params, "id": 7})
        );
    }

    #[test]
    fn a_server_that_never_reads_bounds_the_send() {
        let (_server, client) = UnixStream::pair().unwrap();
        let mut c = Client {
            stream: Stream::Unix(client),
            buf: Vec::new(),
            next_id: 0,
            timeout: Duration::from_millis(300),
            pending_updates: Vec::new(),
            endpoint: "unix:test".into(),
            server: Server::OVSDB,
        };
        // Far more than the socket buffers hold.
        let big = "x".repeat(16 * 1024 * 1024);
        let t = Instant::now();
        let e = c.send("transact", json!([big])).err().unwrap();
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        let msg = format!("{e:#}");
        assert!(
            msg.contains("timed out") && msg.contains("sending transact to OVSDB at unix:test"),
            "{msg}"
        );
    }

    #[test]
    fn scanner_flags_garbage() {
        let mut s = Scanner::default();
        assert_eq!(s.feed(b"HTTP/1.1 400"), None);
        assert!(s.error);
        let mut s = Scanner::default();
        assert_eq!(s.feed(b"}"), None);
        assert!(s.error);
    }
}
