//! ovs-vswitchd's control socket (what `ovs-appctl` talks to): JSON-RPC 1.0 over the unix socket
//! `<rundir>/ovs-vswitchd.<pid>.ctl`, the pid read from `<rundir>/ovs-vswitchd.pid`. The
//! run directory is the one of the OVSDB socket the tool is configured with (Debian's
//! `/run/openvswitch`). Requests go through the OVSDB client ([`crate::host::ovsdb`]), which
//! bounds the connect, the request and the reply by the tool's timeout.
//!
//! One command is used: `revalidator/purge`, which drops every datapath flow ovs-vswitchd has
//! cached. A deleted mirror does not make ovs-vswitchd revalidate its flows, so without it the
//! copies of a removed mirror keep arriving at its former output for as long as the flows that
//! carry them see traffic.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::json;

use crate::decide::config::Endpoint;
use crate::host::ovsdb::{Client, Server};

/// Largest pid file read.
const MAX_PIDFILE: u64 = 64;

/// The run directory of ovs-vswitchd for the OVSDB endpoint the tool uses: the directory of a
/// unix socket. A TCP endpoint says nothing of where the ovs-vswitchd it configures keeps its
/// control socket (it may be another host's, or another instance's): `None`, and no purge is
/// sent to a daemon the run did not change.
pub fn rundir(endpoint: &Endpoint) -> Option<PathBuf> {
    match endpoint {
        Endpoint::Unix(path) => Some(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        ),
        Endpoint::Tcp(_) => None,
    }
}

/// The control socket of the ovs-vswitchd whose pid file is in `rundir`.
pub fn control_socket(rundir: &Path) -> anyhow::Result<PathBuf> {
    let pidfile = rundir.join("ovs-vswitchd.pid");
    let mut text = String::new();
    std::fs::File::open(&pidfile)
        .and_then(|f| f.take(MAX_PIDFILE).read_to_string(&mut text))
        .with_context(|| format!("reading {} (is ovs-vswitchd running?)", pidfile.display()))?;
    let pid = text
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("{} holds no process id", pidfile.display()))?;
    Ok(rundir.join(format!("ovs-vswitchd.{pid}.ctl")))
}

/// `ovs-appctl revalidator/purge`: ovs-vswitchd drops its cached datapath flows, and the next
/// packets are translated anew, with the configuration it holds now.
pub fn purge(rundir: &Path, timeout: Duration) -> anyhow::Result<()> {
    let socket = control_socket(rundir)?;
    let mut client = Client::connect_to(Server::VSWITCHD, &Endpoint::Unix(socket), timeout)?;
    client.call("revalidator/purge", json!([]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;

    /// A control socket that answers one request with `reply` (`{id}` replaced by the request's
    /// id) and hands back the request.
    fn serve(
        dir: &Path,
        pid: u32,
        reply: &'static str,
    ) -> std::thread::JoinHandle<serde_json::Value> {
        std::fs::write(dir.join("ovs-vswitchd.pid"), format!("{pid}\n")).unwrap();
        let listener = UnixListener::bind(dir.join(format!("ovs-vswitchd.{pid}.ctl"))).unwrap();
        std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            let request: serde_json::Value = serde_json::from_str(&line).unwrap();
            let answer = reply.replace("{id}", &request["id"].to_string());
            (&conn).write_all(answer.as_bytes()).unwrap();
            request
        })
    }

    #[test]
    fn purge_sends_the_command_to_the_pid_files_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let server = serve(tmp.path(), 4242, r#"{"id":{id},"result":"","error":null}"#);
        purge(tmp.path(), Duration::from_secs(5)).unwrap();
        let request = server.join().unwrap();
        assert_eq!(request["method"], "revalidator/purge");
        assert_eq!(request["params"], json!([]));
    }

    #[test]
    fn a_refusal_a_missing_daemon_and_a_silent_one_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let server = serve(
            tmp.path(),
            7,
            r#"{"id":{id},"result":null,"error":"\"revalidator/purge\" is not a valid command"}"#,
        );
        let e = purge(tmp.path(), Duration::from_secs(5)).unwrap_err();
        server.join().unwrap();
        assert!(
            format!("{e:#}").contains("ovs-vswitchd revalidator/purge failed"),
            "{e:#}"
        );

        let none = tempfile::tempdir().unwrap();
        let e = purge(none.path(), Duration::from_secs(1)).unwrap_err();
        assert!(format!("{e:#}").contains("ovs-vswitchd.pid"), "{e:#}");
        std::fs::write(none.path().join("ovs-vswitchd.pid"), "x\n").unwrap();
        let e = purge(none.path(), Duration::from_secs(1)).unwrap_err();
        assert!(format!("{e:#}").contains("holds no process id"), "{e:#}");

        // Accepted but never answered: bounded by the timeout.
        let quiet = tempfile::tempdir().unwrap();
        std::fs::write(quiet.path().join("ovs-vswitchd.pid"), "9\n").unwrap();
        let _listener = UnixListener::bind(quiet.path().join("ovs-vswitchd.9.ctl")).unwrap();
        let t = std::time::Instant::now();
        let e = purge(quiet.path(), Duration::from_millis(300)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(
            format!("{e:#}").contains("ovs-vswitchd at unix:")
                && format!("{e:#}").contains("did not answer revalidator/purge"),
            "{e:#}"
        );
    }

    #[test]
    fn the_run_directory_is_the_db_sockets() {
        assert_eq!(
            rundir(&Endpoint::Unix("/run/openvswitch/db.sock".into())),
            Some(PathBuf::from("/run/openvswitch"))
        );
        assert_eq!(rundir(&Endpoint::Tcp("127.0.0.1:6640".into())), None);
        assert_eq!(
            rundir(&Endpoint::Unix("db.sock".into())),
            Some(PathBuf::from("."))
        );
    }
}
