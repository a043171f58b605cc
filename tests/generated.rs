//! Files generated from the code and committed: the man page and the bash completion (from the
//! clap definition in `src/cli.rs`), and the shipped configuration file's documented defaults
//! (against `src/decide/config.rs`). Each test fails when the committed copy is stale.
//!
//! Refresh the generated files with `UPDATE_GENERATED=1 cargo test --test generated`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, italic, roman};
use ovs_autoattach::cli::Cli;
use ovs_autoattach::decide::config::Config;

const MAN: &str = "debian/ovs-autoattach.8";
const COMPLETION: &str = "debian/ovs-autoattach.bash-completion";
const SHIPPED_CONFIG: &str = "debian/config.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Compares `fresh` with the committed file, or rewrites it when `UPDATE_GENERATED` is set.
fn check_generated(path: &str, fresh: &[u8]) {
    let file = repo(path);
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&file, fresh).unwrap();
        return;
    }
    let committed = std::fs::read(&file).unwrap_or_default();
    assert!(
        committed == fresh,
        "{path} is stale: it no longer matches src/cli.rs. Refresh it with\n    UPDATE_GENERATED=1 cargo test --test generated\nand commit the result."
    );
}

/// Sections the clap definition cannot express.
fn extra_sections() -> Roff {
    let mut r = Roff::new();
    let para = |r: &mut Roff, tag: &str, text: &str| {
        r.control("TP", []);
        r.text([bold(tag)]);
        r.text([roman(text)]);
    };
    r.control("SH", ["WAITS AND TIMEOUTS"]);
    r.control("PP", []);
    r.text([roman(
        "Every wait is bounded. A run that gives up exits 1 with a message that names what it waited for, and leaves the rest to the next run or hook.",
    )]);
    para(
        &mut r,
        "Connecting to OVSDB",
        "timeout_secs (default 10 s), for unix and tcp sockets alike, name resolution included. A wedged ovsdb-server whose socket no longer accepts (its backlog full) ends the run with: timed out after 10 s connecting to OVSDB at unix:/var/run/openvswitch/db.sock (is ovsdb-server running and answering?).",
    );
    para(
        &mut r,
        "OVSDB requests and replies",
        "timeout_secs each: writing a request, and reading its reply (OVSDB at ... did not answer ... within 10 s).",
    );
    para(
        &mut r,
        "ovs-vswitchd applying a change",
        "timeout_secs. The change is in the database; the run warns that it is unconfirmed.",
    );
    para(
        &mut r,
        "ovs-vswitchd purging its flows",
        "timeout_secs for the connect and for the reply to revalidator/purge, sent after a run that removed or narrowed a mirror. A failure is a warning: the mirrors are right in OVSDB, only flows cached before keep copying until they expire.",
    );
    para(
        &mut r,
        "The run lock, plug",
        "5 s. plug shares /run/ovs-autoattach/lock with other plugs and waits only for an apply or clear, which holds it for under 2 s on a healthy host with 2000 guest NICs. A guest start (the hookscript's post-start) and ifreload (the if-up.d hook) wait for plug, so it gives up early: another ovs-autoattach run held /run/ovs-autoattach/lock for more than 5 s; gave up (the next run or the hook will do this). A Proxmox NIC is on its bridge by then (Proxmox plugs it itself); the apply holding the lock, or the next run, corrects the rest.",
    );
    para(
        &mut r,
        "The run lock, apply, clear and status",
        "twice timeout_secs (20 s by default): a holder stuck on OVSDB gives up after about one timeout_secs per wait.",
    );
    para(
        &mut r,
        "The host-files lock",
        "10 s (/run/ovs-autoattach/files.lock), held for the milliseconds a run takes to write the host files.",
    );
    para(
        &mut r,
        "A new veth's peer, plug",
        "1 s for the peer of a veth that is not Proxmox's to leave the host for its container; a veth whose peer stays is left alone.",
    );

    r.control("SH", ["EXIT STATUS"]);
    para(
        &mut r,
        "0",
        "Done: every guest NIC that should be attached is. status: nothing needs apply and nothing is invalid. validate: no problem found.",
    );
    para(
        &mut r,
        "1",
        "Runtime failure: OVS unreachable or a wait given up (see WAITS AND TIMEOUTS), a NIC not attached (bad guest configuration, ovs-vswitchd refused it or did not confirm in time), a host file not updated. Everything else was still done. status: a NIC missing, drifting, stale or invalid, or a host file out of sync or refused. validate: a problem in a guest configuration, printed as FILE:LINE: MESSAGE.",
    );
    para(
        &mut r,
        "2",
        "Usage or configuration error; nothing was touched. validate: the tool's own configuration is invalid, printed with its line.",
    );

    r.control("SH", ["ENVIRONMENT"]);
    para(
        &mut r,
        "OVS_AUTOATTACH_CONFIG",
        "The configuration file, as --config.",
    );
    para(
        &mut r,
        "OVS_AUTOATTACH_LOG",
        "Log filter in env_logger syntax (e.g. debug), overriding -v and -q.",
    );
    para(
        &mut r,
        "OVS_AUTOATTACH_LOG_TARGET",
        "Where log lines go, as --log.",
    );
    para(
        &mut r,
        "OVS_AUTOATTACH_SYSLOG_SOCKET",
        "With --log syslog: the syslog daemon's socket (default /dev/log).",
    );
    para(
        &mut r,
        "OVS_AUTOATTACH_BIN",
        "Read by the hooks, not by the tool: the path of the tool they run (default /usr/sbin/ovs-autoattach).",
    );

    r.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/ovs-autoattach/config.yaml",
            "The configuration; every key is optional and documented in the shipped file.",
        ),
        (
            "/etc/network/interfaces.d/ovs-autoattach",
            "The tool's own ifupdown2 file (stanzas_file): one stanza per guest port, none of them auto, so that ifreload -a never replays a stale VLAN. /etc/network/interfaces must source it (source /etc/network/interfaces.d/*). The tool owns it whole: a symbolic link at its path is refused, never written through.",
        ),
        (
            "/etc/network/interfaces",
            "Proxmox's file: only checked for that source line, and cleaned once of the managed block older versions wrote into it (a pending interfaces.new too). A symlinked one is written through its link.",
        ),
        (
            "/etc/nmstate/nmstate-dynamic.yaml",
            "The guest ports in nmstate's format. Owned whole, like the stanzas file: a symbolic link at its path is refused.",
        ),
        (
            "/etc/ovs-mirror/mirrors.conf",
            "Traffic-mirroring rules in proxmox-ovs-mirror's format (mirrors_file), kept as OVS mirrors marked owner=ovs-autoattach; see mirrors.md.",
        ),
        (
            "/run/ovs-autoattach/",
            "Lock files serializing concurrent runs (the directory is created 0700, the files 0600); last-apply, when the last successful apply ended and how long it took, and failures, one byte per failed apply, plug or clear since boot (status reads both for its monitoring formats).",
        ),
        (
            "/etc/pve/nodes/<node>/ovs-autoattach.json",
            "This node's summary for status --cluster (cluster_summary), written by apply and status into the mounted cluster file system when it changed, and hourly.",
        ),
        (
            "/run/lock/qemu-server/lock-<vmid>.conf, /run/lock/lxc/pve-config-<vmid>.lock",
            "Proxmox's guest configuration locks (pve_lock_dir), probed, never waited for: while Proxmox holds one (a start, a NIC hotplug), that guest's NICs are left to Proxmox. The hookscript's post-start plug runs inside the lock its caller holds and says so with --lock-held.",
        ),
        (
            "/usr/share/ovs-autoattach/ovs-autoattach-hookscript",
            "The Proxmox VE guest hookscript (post-start: plug the guest's NICs; post-stop: apply); /usr/share/ovs-autoattach/install-hookscript attaches it to the guests.",
        ),
        (
            "/etc/network/if-up.d/ovs-autoattach",
            "The ifupdown2 hook: apply when an OVS bridge comes up, plug for a guest port stanza or for a mirror rule's source port.",
        ),
        (
            "ovs-autoattach.service",
            "Runs apply at boot, after Open vSwitch and before networking.service and pve-guests.service.",
        ),
        (
            "ovs-autoattach-ovs-restart.service",
            "Runs apply after every start, restart or reload of ovs-vswitchd.service or openvswitch-switch.service (a package upgrade, systemd's restart after a crash): a restarted ovs-vswitchd drops the ports' rate limits.",
        ),
        (
            "ovs-autoattach-prometheus.timer",
            "Not enabled by default: every minute, status --format prometheus into /var/lib/prometheus/node-exporter/ovs-autoattach.prom for node_exporter's textfile collector; see monitoring.md.",
        ),
    ] {
        para(&mut r, path, what);
    }

    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("ovs-vsctl"),
        roman("(8), "),
        bold("ifreload"),
        roman("(8), "),
        bold("interfaces"),
        roman("(5), "),
        bold("qm"),
        roman("(1), "),
        bold("pct"),
        roman("(1); "),
        italic("/usr/share/doc/ovs-autoattach/"),
    ]);
    r
}

/// The page: clap_mangen's sections for what the clap definition says, ours for the rest. Each
/// rendered piece starts with the same apostrophe preamble; only the first keeps it.
fn man_page() -> Vec<u8> {
    type Render = fn(&clap_mangen::Man, &mut dyn std::io::Write) -> std::io::Result<()>;
    let man = clap_mangen::Man::new(Cli::command()).section("8");
    let preamble = Roff::new().render();
    let generated = |render: Render| {
        let mut out = Vec::new();
        render(&man, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        text.strip_prefix(&preamble).unwrap().to_string()
    };
    let mut page = preamble.clone();
    // clap_mangen leaves an empty date unquoted, which shifts the footer fields; write the title
    // line here.
    page += &format!(
        ".TH ovs-autoattach 8 \"\" \"ovs-autoattach {}\" \"System Administration\"\n",
        env!("CARGO_PKG_VERSION")
    );
    page += &generated(clap_mangen::Man::render_name_section);
    page += &generated(clap_mangen::Man::render_synopsis_section);
    page += description().render().strip_prefix(&preamble).unwrap();
    page += &generated(clap_mangen::Man::render_options_section);
    page += commands().render().strip_prefix(&preamble).unwrap();
    page += extra_sections().render().strip_prefix(&preamble).unwrap();
    page += &generated(clap_mangen::Man::render_version_section);
    page.into_bytes()
}

/// The subcommands with their arguments, all on this page (clap_mangen would point at a page per
/// subcommand).
fn commands() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["COMMANDS"]);
    let cmd = Cli::command();
    for sub in cmd.get_subcommands() {
        let args: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
            .filter(|a| !a.is_global_set())
            .collect();
        let mut head = vec![bold(sub.get_name())];
        for a in &args {
            head.push(roman(" "));
            match a.get_long() {
                Some(long) => {
                    head.push(roman("["));
                    head.push(bold(format!("--{long}")));
                    head.push(roman("]"));
                }
                None => {
                    let name = a
                        .get_value_names()
                        .and_then(|v| v.first())
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| a.get_id().to_string());
                    head.push(italic(name));
                }
            }
        }
        r.control("TP", []);
        r.text(head);
        r.text([roman(
            sub.get_about().map(|a| a.to_string()).unwrap_or_default(),
        )]);
        if !args.is_empty() {
            r.control("RS", []);
            for a in &args {
                let tag = match a.get_long() {
                    Some(long) => bold(format!("--{long}")),
                    None => italic(
                        a.get_value_names()
                            .and_then(|v| v.first())
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    ),
                };
                r.control("TP", []);
                r.text([tag]);
                r.text([roman(
                    a.get_help().map(|h| h.to_string()).unwrap_or_default(),
                )]);
            }
            r.control("RE", []);
        }
    }
    r
}

fn description() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["DESCRIPTION"]);
    for text in [
        "ovs-autoattach keeps every guest NIC of a Proxmox VE host (QEMU tap<vmid>i<n>, LXC veth<vmid>i<n>, raw LXC veth...) on the Open vSwitch bridge its guest configuration names, with the VLAN settings Proxmox would give it: tag alone is an access port, trunks alone a trunk, both a trunk whose native VLAN is tag, untagged.",
        "It is a stateless one-shot command: it reads the host's links, the guest configurations and the OVS database, decides, commits all changes in one OVSDB transaction, then sets up the kernel links as Proxmox's tap_plug leaves them (firewall bridges, IPv6, link state, rate limits), and lists the guest ports in /etc/network/interfaces.d/ovs-autoattach and /etc/nmstate/nmstate-dynamic.yaml. It runs when something calls it: the Proxmox guest hookscript, the ifupdown2 hook, the boot unit and the package's maintainer scripts.",
        "Ports it creates carry external_ids:owner=ovs-autoattach. Only such ports are ever pruned or cleared, plus rows named like a Proxmox guest NIC whose link is gone. A port someone else created for a guest NIC is corrected but never marked or deleted.",
    ] {
        r.control("PP", []);
        r.text([roman(text)]);
    }
    r
}

fn bash_completion() -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::Bash,
        &mut cmd,
        "ovs-autoattach",
        &mut out,
    );
    out
}

#[test]
fn man_page_is_current() {
    let page = man_page();
    let text = String::from_utf8(page.clone()).unwrap();
    check_generated(MAN, &page);
    assert!(text.contains("\n.TH ovs-autoattach 8 "), "{text}");
    for needle in [
        "apply",
        "plug",
        "clear",
        "\\-\\-dry\\-run",
        "EXIT STATUS",
        "OVS_AUTOATTACH_CONFIG",
        "\\-\\-log",
        "OVS_AUTOATTACH_SYSLOG_SOCKET",
        "status",
        "\\-\\-json",
        "validate",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
}

#[test]
fn man_page_renders_without_warnings() {
    // groff's own check, as lintian runs it.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z {} 2>&1 >/dev/null",
            repo(MAN).display()
        ))
        .output()
        .expect("man");
    let warnings = String::from_utf8_lossy(&out.stdout);
    assert!(warnings.trim().is_empty(), "groff warnings:\n{warnings}");
}

#[test]
fn bash_completion_is_current() {
    let script = bash_completion();
    let text = String::from_utf8(script.clone()).unwrap();
    assert!(text.contains("ovs-autoattach"), "{text}");
    check_generated(COMPLETION, &script);
    // And bash accepts it.
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(repo(COMPLETION))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped `/etc/ovs-autoattach/config.yaml` documents every key of `Config` with its real
/// default: as shipped (all commented) it is the defaults, and with every key uncommented it
/// still is.
#[test]
fn shipped_config_documents_every_default() {
    let shipped = std::fs::read_to_string(repo(SHIPPED_CONFIG)).unwrap();
    assert_eq!(Config::parse(&shipped).unwrap(), Config::default());

    let uncommented: String = shipped
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| l.split_once(':').is_some_and(|(k, _)| is_key(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        Config::parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}")),
        Config::default(),
        "a documented default differs from src/decide/config.rs:\n{uncommented}"
    );

    let documented: Vec<&str> = uncommented
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, _)| k))
        .collect();
    let fields = config_fields();
    assert!(!fields.is_empty());
    assert_eq!(
        documented, fields,
        "{SHIPPED_CONFIG} must document every key of Config, in order"
    );
    // Each key has a one-line explanation right above it.
    let lines: Vec<&str> = shipped.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.strip_prefix('#')
            .and_then(|l| l.split_once(':'))
            .is_some_and(|(k, _)| is_key(k))
        {
            assert!(
                i > 0 && lines[i - 1].starts_with("# ") && lines[i - 1].len() > 10,
                "{l}: no explanation above it"
            );
        }
    }
}

fn is_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// The field names of `pub struct Config` in src/decide/config.rs, in order.
fn config_fields() -> Vec<&'static str> {
    let src = include_str!("../src/decide/config.rs");
    let start = src.find("pub struct Config {").expect("struct Config");
    let body = &src[start..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':').map(|(k, _)| k))
        .filter(|k| is_key(k))
        .collect()
}

/// docs/design.md's module table lists every file under `src/`, and nothing that is gone.
#[test]
fn design_lists_every_source_file() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let design = std::fs::read_to_string(root.join("docs/design.md")).unwrap();
    let listed: std::collections::BTreeSet<String> = design
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(f, _)| f.to_string()))
        .filter(|f| f.ends_with(".rs"))
        .collect();
    let mut files = std::collections::BTreeSet::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root.join("src")).unwrap();
                files.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let missing: Vec<_> = files.difference(&listed).collect();
    let gone: Vec<_> = listed.difference(&files).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "docs/design.md's module table: missing {missing:?}, listed but gone {gone:?}"
    );
}

/// The core is self-contained and acyclic: no file under `src/decide/` names the adapters, the
/// commands or anything else of the crate outside `decide`, and the modules of `decide` (a
/// directory counts as one) use each other without a cycle. Read from the library's code, comments
/// and unit tests excluded: a doc link is not a dependency.
#[test]
fn the_core_imports_nothing_outside_itself_and_has_no_cycle() {
    use std::collections::{BTreeMap, BTreeSet};
    let decide = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/decide");
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut dirs = vec![decide.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&decide)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let module = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            // Unit tests may use any module of the core: only the library's own code counts, so
            // test modules (a file of its own, or `#[cfg(test)]` to the end of the file) do not.
            if rel.ends_with("tests.rs") || rel.ends_with("testing.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let library = text.split("#[cfg(test)]\nmod ").next().unwrap();
            let code: String = library
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                assert!(
                    rest.starts_with("decide::"),
                    "src/decide/{rel} uses crate::{}",
                    &rest[..rest
                        .find(|c: char| !c.is_alphanumeric() && c != '_')
                        .unwrap_or(0)]
                );
                let rest = &rest["decide::".len()..];
                let names = match rest.strip_prefix('{') {
                    Some(group) => &group[..group.find('}').unwrap()],
                    None => {
                        &rest[..rest
                            .find(|c: char| !c.is_alphanumeric() && c != '_')
                            .unwrap()]
                    }
                };
                for name in names
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap())
                {
                    if !name.is_empty() && name != "self" && name != module {
                        uses.entry(module.clone())
                            .or_default()
                            .insert(name.to_string());
                    }
                }
            }
        }
    }
    // Depth-first search: a module met again while it is on the path closes a cycle.
    fn visit<'a>(
        m: &'a str,
        uses: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|p| *p == m) {
            panic!(
                "module cycle in src/decide: {} -> {m}",
                path[at..].join(" -> ")
            );
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for next in uses.get(m).into_iter().flatten() {
            visit(next, uses, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in uses.keys() {
        visit(m, &uses, &mut Vec::new(), &mut done);
    }
    assert!(uses.len() > 10, "{uses:?}");
}

/// Every command reads top to bottom in short steps: no function in `src/commands/` is longer
/// than 60 lines (from its `fn` line to its closing brace).
#[test]
fn no_command_function_is_longer_than_60_lines() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
    let mut long = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            let body = line.trim_start();
            let indent = &line[..line.len() - body.len()];
            let is_fn = ["fn ", "pub fn ", "pub(super) fn ", "pub(crate) fn "]
                .iter()
                .any(|p| body.starts_with(p));
            if !is_fn || body.ends_with(';') {
                continue;
            }
            let close = format!("{indent}}}");
            let end = lines[at..]
                .iter()
                .position(|l| *l == close)
                .map_or(lines.len(), |n| at + n);
            if end - at + 1 > 60 {
                long.push(format!(
                    "{}:{}: {} lines",
                    path.file_name().unwrap().to_string_lossy(),
                    at + 1,
                    end - at + 1
                ));
            }
        }
    }
    assert!(long.is_empty(), "functions over 60 lines: {long:?}");
}
