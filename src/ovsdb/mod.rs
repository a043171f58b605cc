//! A small synchronous OVSDB client (RFC 7047 JSON-RPC over a unix or TCP socket).
//!
//! It does exactly what a one-shot tool needs: `transact`, `monitor` with its `update`
//! notifications, and answering the server's `echo` keepalives. Every read is bounded in time (the
//! configured timeout) and in size ([`MAX_MESSAGE`]), so a wedged or hostile server can make a run
//! fail, never hang or exhaust memory.

pub mod datum;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::config::Endpoint;

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

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.write_all(buf),
            Stream::Tcp(s) => s.write_all(buf),
        }
    }
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
}

impl Client {
    /// Connects to the server. `timeout` bounds the connect (TCP) and every later wait.
    pub fn connect(endpoint: &Endpoint, timeout: Duration) -> anyhow::Result<Client> {
        let (stream, name) = match endpoint {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path).with_context(|| {
                    format!(
                        "connecting to OVSDB at unix:{} (is openvswitch-switch running?)",
                        path.display()
                    )
                })?;
                (Stream::Unix(s), format!("unix:{}", path.display()))
            }
            Endpoint::Tcp(addr) => {
                use std::net::ToSocketAddrs;
                let sa = addr
                    .to_socket_addrs()
                    .with_context(|| format!("resolving OVSDB address {addr}"))?
                    .next()
                    .ok_or_else(|| anyhow!("OVSDB address {addr} resolves to nothing"))?;
                let s = TcpStream::connect_timeout(&sa, timeout)
                    .with_context(|| format!("connecting to OVSDB at tcp:{addr}"))?;
                (Stream::Tcp(s), format!("tcp:{addr}"))
            }
        };
        stream
            .set_write_timeout(Some(timeout))
            .context("setting the OVSDB write timeout")?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            next_id: 0,
            timeout,
            pending_updates: Vec::new(),
            endpoint: name,
        })
    }

    /// Runs one transaction on `db` and returns the per-operation results. Any operation error
    /// (or the server's trailing commit error) becomes a [`TxnError`]: OVSDB commits nothing
    /// in that case.
    pub fn transact(&mut self, db: &str, ops: Vec<Value>) -> anyhow::Result<Vec<Value>> {
        let mut params = Vec::with_capacity(ops.len() + 1);
        params.push(Value::String(db.into()));
        params.extend(ops);
        let result = self.call("transact", Value::Array(params))?;
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

    /// Sends a request and waits, bounded by the timeout, for the reply with the same id.
    fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"method": method, "params": params, "id": id});
        let mut bytes = serde_json::to_vec(&request).context("encoding an OVSDB request")?;
        bytes.push(b'\n');
        self.stream
            .write_all(&bytes)
            .with_context(|| format!("sending {method} to OVSDB at {}", self.endpoint))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let msg = self.read_message(deadline)?.ok_or_else(|| {
                anyhow!(
                    "OVSDB at {} did not answer {method} within {} s (is ovsdb-server wedged?)",
                    self.endpoint,
                    self.timeout.as_secs()
                )
            })?;
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                if let Some(err) = msg.get("error").filter(|e| !e.is_null()) {
                    bail!("OVSDB {method} failed: {err}");
                }
                return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
            }
            self.dispatch(msg)?;
        }
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
                self.stream
                    .write_all(&bytes)
                    .context("answering an OVSDB echo")?;
            }
            Some("update") => self.pending_updates.push(msg),
            _ => {}
        }
        Ok(())
    }

    /// Reads one complete JSON message, or `None` when `deadline` passes first.
    fn read_message(&mut self, deadline: Instant) -> anyhow::Result<Option<Value>> {
        let mut scanned = 0;
        let mut scanner = Scanner::default();
        loop {
            // The scanner counts from the first byte it was fed, which is the start of `buf`.
            if let Some(end) = scanner.feed(&self.buf[scanned..]) {
                let msg: Value = serde_json::from_slice(&self.buf[..end]).with_context(|| {
                    format!("decoding a message from OVSDB at {}", self.endpoint)
                })?;
                self.buf.drain(..end);
                return Ok(Some(msg));
            }
            scanned = self.buf.len();
            if scanner.error {
                bail!("OVSDB at {} sent something that is not JSON", self.endpoint);
            }
            if self.buf.len() > MAX_MESSAGE {
                bail!(
                    "OVSDB at {} sent a message larger than {MAX_MESSAGE} bytes",
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
                Ok(0) => bail!("OVSDB at {} closed the connection", self.endpoint),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading from OVSDB at {}", self.endpoint));
                }
            }
        }
    }
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
    fn scanner_flags_garbage() {
        let mut s = Scanner::default();
        assert_eq!(s.feed(b"HTTP/1.1 400"), None);
        assert!(s.error);
        let mut s = Scanner::default();
        assert_eq!(s.feed(b"}"), None);
        assert!(s.error);
    }
}
