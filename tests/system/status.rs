//! `status` and `validate` end to end: `status` against a real Open vSwitch, each state in a
//! scenario built for it, in the human table and in the JSON document (parsed, never grepped);
//! its exit codes through a `del-br`, and proof that it never writes (OVSDB's `next_cfg`, the host
//! files' inode and mtime). `validate` with file and line, without OVS and as an unprivileged
//! user.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, GuestHost, Ovs, run, text};
use serde_json::Value;

/// Two OVS bridges, a QEMU guest with a tagged and a trunk NIC, an LXC guest with tag+trunks, a
/// raw container veth, and an interfaces file that sources the tool's file.
fn host() -> Ovs {
    GuestHost::new().qemu_around("name: web\n", "").start()
}

const GUESTS: [&str; 4] = ["tap100i0", "tap100i1", "veth200i0", "vethRaw01"];

/// `status` (human): exit code and standard output.
fn status(ovs: &Ovs) -> (i32, String) {
    let out = ovs.tool(&["status"]);
    (out.status.code().unwrap_or(-1), text(&out.stdout))
}

/// `status --json`: exit code and the parsed document.
fn status_json(ovs: &Ovs) -> (i32, Value) {
    let out = ovs.tool(&["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}):\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert_eq!(doc["version"], 1, "{doc:#}");
    for key in ["nics", "stale", "files", "mirrors"] {
        assert!(doc[key].is_array(), "{key} is not an array: {doc:#}");
    }
    (out.status.code().unwrap_or(-1), doc)
}

/// The entry of `name` in the document's `nics` (or `stale`) array.
fn entry<'a>(doc: &'a Value, array: &str, name: &str) -> &'a Value {
    doc[array]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {array}: {doc:#}"))
}

/// The cell of column `col` in the table row of `name` (the columns start where the header's
/// titles do).
fn cell(table: &str, name: &str, col: &str) -> String {
    let header = table
        .lines()
        .find(|l| l.starts_with("NIC "))
        .unwrap_or_else(|| panic!("no NIC table:\n{table}"));
    let start = header.find(col).unwrap();
    let next = header[start + col.len()..]
        .find(|c: char| c != ' ')
        .map(|i| start + col.len() + i);
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
    let end = next.unwrap_or(row.len()).min(row.len());
    row.get(start..end).unwrap_or("").trim().to_string()
}

/// Asserts `name`'s state in both outputs; returns its JSON entry.
fn assert_state(ovs: &Ovs, name: &str, state: &str) -> Value {
    let (_, table) = status(ovs);
    assert_eq!(cell(&table, name, "STATE"), state, "{name}:\n{table}");
    let (_, doc) = status_json(ovs);
    let array = if state == "stale" { "stale" } else { "nics" };
    let e = entry(&doc, array, name).clone();
    assert_eq!(e["state"], state, "{name}: {e:#}");
    e
}

/// Inode and modification time of every host file, to prove nothing was rewritten.
fn file_ids(ovs: &Ovs) -> Vec<(PathBuf, u64, i64, i64)> {
    [
        ovs.stanzas_path(),
        ovs.nmstate_path(),
        ovs.interfaces_path(),
    ]
    .into_iter()
    .map(|p| {
        let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        (p, m.ino(), m.mtime(), m.mtime_nsec())
    })
    .collect()
}

#[test]
fn ok_then_missing_after_a_del_br_then_ok_again_and_status_never_writes() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.tool_ok(&["apply"]);
    let (code, table) = status(&ovs);
    assert_eq!(code, 0, "{table}");
    for name in GUESTS {
        assert_eq!(cell(&table, name, "STATE"), "ok", "{table}");
    }
    assert!(
        table.trim_end().ends_with("; nothing to do"),
        "the summary line comes last:\n{table}"
    );
    let (code, doc) = status_json(&ovs);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["healthy"], true);
    let tap = entry(&doc, "nics", "tap100i0");
    assert_eq!(
        tap["guest"],
        serde_json::json!({"vmid": 100, "kind": "qemu", "net": "net0"})
    );
    assert_eq!(tap["decision"], "attach");
    assert_eq!(tap["desired"]["bridge"], "vmbr1");
    assert_eq!(tap["desired"]["vlan"]["tag"], 10);
    assert_eq!(tap["actual"]["bridge"], "vmbr1");
    assert_eq!(tap["actual"]["vlan"]["tag"], 10);
    assert_eq!(tap["actual"]["owned"], true);
    assert_eq!(tap["reason"], Value::Null);
    let veth = entry(&doc, "nics", "veth200i0");
    assert_eq!(
        veth["actual"]["vlan"]["trunks"],
        serde_json::json!([20, 30])
    );
    assert_eq!(veth["actual"]["vlan"]["vlan_mode"], "native-untagged");
    assert_eq!(entry(&doc, "nics", "vethRaw01")["guest"], Value::Null);
    let files: Vec<(&str, &str)> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["role"].as_str().unwrap(), f["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        files,
        [
            ("stanzas", "in-sync"),
            ("interfaces", "in-sync"),
            ("nmstate", "in-sync")
        ]
    );
    assert_eq!(doc["mirrors"], serde_json::json!([]));

    // The admin's `ifdown vmbr1; ifup vmbr1`.
    ovs.vsctl(&["del-br", "vmbr1"]);
    ovs.add_bridge("vmbr1");
    let cfg = ovs.next_cfg();
    let ids = file_ids(&ovs);
    let (code, table) = status(&ovs);
    assert_eq!(code, 1, "{table}");
    for name in ["tap100i0", "tap100i1", "veth200i0"] {
        assert_eq!(cell(&table, name, "STATE"), "missing", "{table}");
        assert_eq!(cell(&table, name, "ACTUAL"), "-", "{table}");
    }
    assert_eq!(cell(&table, "vethRaw01", "STATE"), "ok", "{table}");
    assert!(table.trim_end().ends_with("; run apply"), "{table}");
    let (code, doc) = status_json(&ovs);
    assert_eq!(code, 1);
    let tap = entry(&doc, "nics", "tap100i0");
    assert_eq!(tap["state"], "missing");
    assert_eq!(tap["actual"], Value::Null);
    assert_eq!(tap["desired"]["bridge"], "vmbr1");
    assert_eq!(tap["reason"], "attach tap100i0 to vmbr1 tag=10");
    assert_eq!(doc["counts"]["missing"], 3);
    // The host files already say what apply will restore.
    assert!(
        doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["state"] == "in-sync"),
        "{doc:#}"
    );
    assert_eq!(ovs.next_cfg(), cfg, "status wrote to OVSDB");
    assert_eq!(file_ids(&ovs), ids, "status rewrote a host file");
    assert_eq!(ovs.bridge_of("tap100i0"), None, "status attached a port");

    ovs.tool_ok(&["apply"]);
    let cfg = ovs.next_cfg();
    let ids = file_ids(&ovs);
    let (code, table) = status(&ovs);
    assert_eq!(code, 0, "{table}");
    let (code, _) = status_json(&ovs);
    assert_eq!(code, 0);
    assert_eq!(ovs.next_cfg(), cfg, "status wrote to OVSDB");
    assert_eq!(file_ids(&ovs), ids, "status rewrote a host file");
}

#[test]
fn drift_of_vlan_and_bridge() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.tool_ok(&["apply"]);
    ovs.vsctl(&["set", "Port", "tap100i0", "tag=99"]);
    ovs.vsctl(&[
        "del-port", "vmbr1", "tap100i1", "--", "add-port", "ovsbr0", "tap100i1",
    ]);
    let e = assert_state(&ovs, "tap100i0", "drift");
    assert_eq!(e["actual"]["vlan"]["tag"], 99);
    assert_eq!(e["desired"]["vlan"]["tag"], 10);
    assert_eq!(e["reason"], "update tap100i0 on vmbr1: tag=99 -> tag=10");
    let e = assert_state(&ovs, "tap100i1", "drift");
    assert_eq!(e["actual"]["bridge"], "ovsbr0");
    assert_eq!(e["actual"]["owned"], false, "a port someone else created");
    assert_eq!(
        e["reason"],
        "move tap100i1 from ovsbr0 to vmbr1 trunks=20,30-32"
    );
    let (code, table) = status(&ovs);
    assert_eq!(code, 1, "{table}");
    assert_eq!(cell(&table, "tap100i0", "ACTUAL"), "vmbr1 tag=99");
    assert_eq!(cell(&table, "tap100i1", "OWNED"), "no");
    ovs.tool_ok(&["apply"]);
    assert_state(&ovs, "tap100i0", "ok");
    assert_eq!(status(&ovs).0, 0);
}

#[test]
fn kept_off_link_down_and_linux_bridge() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.guest("lxc", 300, "net0: name=eth0,bridge=vmbr1,link_down=1\n");
    ovs.guest("qemu-server", 301, "net0: virtio,bridge=vmbr0\n");
    ovs.veth("veth300i0");
    ovs.tap("tap301i0");
    ovs.tool_ok(&["apply"]);
    let e = assert_state(&ovs, "veth300i0", "kept-off");
    assert_eq!(e["decision"], "detach");
    assert_eq!(e["reason"], "net0 has link_down=1");
    assert_eq!(e["actual"], Value::Null);
    let e = assert_state(&ovs, "tap301i0", "kept-off");
    assert_eq!(e["reason"], "net0 bridge vmbr0 is not an OVS bridge");
    let (code, table) = status(&ovs);
    assert_eq!(code, 0, "kept-off is where it belongs:\n{table}");
    assert_eq!(cell(&table, "veth300i0", "DESIRED"), "off OVS");
    // A port of ours for a NIC that must stay off is drift until apply prunes it.
    ovs.guest("lxc", 300, "net0: name=eth0,bridge=vmbr1\n");
    ovs.tool_ok(&["apply"]);
    ovs.guest("lxc", 300, "net0: name=eth0,bridge=vmbr1,link_down=1\n");
    let e = assert_state(&ovs, "veth300i0", "drift");
    assert_eq!(
        e["reason"],
        "prune veth300i0 from vmbr1 (net0 has link_down=1)"
    );
}

#[test]
fn ignored_enslaved_unconfigured_and_excluded() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.write_config("exclude: ['tap8*']\n");
    ovs.guest("qemu-server", 302, "net0: virtio,bridge=vmbr1\n");
    ovs.tap("tap302i0");
    ovs.sh("ip link add lnx0 type bridge; ip link set tap302i0 master lnx0");
    ovs.tap("tap999i0");
    ovs.tap("tap800i0");
    ovs.tool_ok(&["apply"]);
    let e = assert_state(&ovs, "tap302i0", "ignored");
    assert_eq!(e["reason"], "enslaved to lnx0");
    assert_eq!(e["decision"], "ignore");
    let e = assert_state(&ovs, "tap999i0", "ignored");
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .contains("no configuration for guest 999"),
        "{e:#}"
    );
    let e = assert_state(&ovs, "tap800i0", "ignored");
    assert_eq!(e["reason"], "matches the exclude pattern tap8*");
    let (code, table) = status(&ovs);
    assert_eq!(code, 0, "ignored NICs are not a failure:\n{table}");
}

#[test]
fn invalid_configuration_fails_status_even_after_apply() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.guest(
        "qemu-server",
        400,
        "net0: virtio,bridge=vmbr1,tag=4095\nnet1: virtio,bridge=vmbr1,trunks=5000\n",
    );
    ovs.tap("tap400i0");
    ovs.tap("tap400i1");
    ovs.tool_code(&["apply"], 1);
    let e = assert_state(&ovs, "tap400i0", "invalid");
    assert_eq!(e["decision"], "invalid");
    assert_eq!(e["reason"], "net0: tag: VLAN ID 4095 is outside 1-4094");
    let e = assert_state(&ovs, "tap400i1", "invalid");
    assert!(e["reason"].as_str().unwrap().contains("5000"), "{e:#}");
    let (code, table) = status(&ovs);
    assert_eq!(code, 1, "{table}");
    assert!(
        table
            .trim_end()
            .ends_with("needs an admin (see the reasons)"),
        "{table}"
    );
    let (_, doc) = status_json(&ovs);
    assert_eq!(doc["needs_apply"], false);
    assert_eq!(doc["needs_admin"], true);
}

#[test]
fn stale_ports_of_gone_links() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.tool_ok(&["apply"]);
    ovs.del_link("vethRaw01");
    // A row Proxmox left behind for a guest NIC that is gone, not the tool's.
    ovs.vsctl(&["--no-wait", "add-port", "ovsbr0", "tap555i0"]);
    let e = assert_state(&ovs, "vethRaw01", "stale");
    assert_eq!(e["actual"]["owned"], true);
    assert_eq!(e["actual"]["bridge"], "ovsbr0");
    assert_eq!(
        e["reason"],
        "prune vethRaw01 from ovsbr0 (its link is gone)"
    );
    let e = assert_state(&ovs, "tap555i0", "stale");
    assert_eq!(e["actual"]["owned"], false);
    assert_eq!(e["guest"]["vmid"], 555);
    let (code, doc) = status_json(&ovs);
    assert_eq!(code, 1);
    assert_eq!(doc["counts"]["stale"], 2);
    assert!(
        doc["nics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["name"] != "vethRaw01"),
        "a gone link is no NIC"
    );
    ovs.tool_ok(&["apply"]);
    let (code, doc) = status_json(&ovs);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["stale"], serde_json::json!([]));
}

#[test]
fn host_files_out_of_sync_and_refused() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.tool_ok(&["apply"]);
    let file = |doc: &Value, role: &str| {
        doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["role"] == role)
            .unwrap_or_else(|| panic!("no {role} file: {doc:#}"))
            .clone()
    };
    std::fs::remove_file(ovs.nmstate_path()).unwrap();
    let mut stanzas = std::fs::read_to_string(ovs.stanzas_path()).unwrap();
    stanzas.push_str("# an admin's edit\n");
    std::fs::write(ovs.stanzas_path(), &stanzas).unwrap();
    let (code, doc) = status_json(&ovs);
    assert_eq!(code, 1);
    assert_eq!(file(&doc, "stanzas")["state"], "out-of-sync");
    assert_eq!(file(&doc, "nmstate")["state"], "out-of-sync");
    assert_eq!(file(&doc, "interfaces")["state"], "in-sync");
    assert_eq!(
        std::fs::read_to_string(ovs.stanzas_path()).unwrap(),
        stanzas,
        "status rewrote the file"
    );
    assert!(
        !ovs.nmstate_path().exists(),
        "status wrote the nmstate file"
    );
    ovs.tool_ok(&["apply"]);
    assert_eq!(status_json(&ovs).0, 0);

    // Without the source line ifupdown2 never reads the tool's file: refused, with the line.
    std::fs::write(ovs.interfaces_path(), common::NETWORK_HEAD).unwrap();
    let (code, doc) = status_json(&ovs);
    assert_eq!(code, 1);
    let f = file(&doc, "interfaces");
    assert_eq!(f["state"], "refused", "{f:#}");
    assert_eq!(
        f["source_line"],
        format!("source {}/etc/interfaces.d/*", ovs.dir.display())
    );
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .contains("ifupdown2 does not read"),
        "{f:#}"
    );
    let (_, table) = status(&ovs);
    assert!(table.contains("refused"), "{table}");
}

#[test]
fn bad_configuration_is_exit_2() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.write_config("bridge: 'two words'\n");
    let out = ovs.tool(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

// --- validate ---

/// A configuration and guest configurations that the unprivileged user can read, and no OVS
/// (the socket named does not exist): `validate` needs neither.
fn validate_tree() -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("oaa-validate-")
        .tempdir()
        .unwrap();
    let d = tmp.path();
    for sub in ["pve/qemu-server", "pve/lxc"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(
        d.join("config.yaml"),
        format!(
            "ovsdb: unix:{0}/no-such.sock\npve_config_dir: {0}/pve\nrun_dir: {0}/run\nmirrors_file: {0}/mirrors.conf\n",
            d.display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("mirrors.conf"),
        "# SPAN port to the IDS VM\nvmbr1 eno12419 100 1\nvmbr1 vm200:0 100 1 select=sideways\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pve/qemu-server/100.conf"),
        "name: web\nnet0: virtio=BC:24:11:A3:DA:B1,bridge=vmbr1,tag=4095\nnet1: virtio,bridge=vmbr1\n\n[PENDING]\nnet1: virtio,bridge=vmbr1,tag=0\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pve/qemu-server/101.conf"),
        "name: db\nboot: order=scsi0\nnet0: virtio,bridge=vmbr1,trunks=5000\n",
    )
    .unwrap();
    std::fs::write(
        d.join("pve/lxc/200.conf"),
        "net0: name=eth0,bridge=vmbr1,tag=10,trunks=20;30\n",
    )
    .unwrap();
    // World-readable all the way down, as /etc is.
    for entry in walk(d) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    tmp
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            all.extend(walk(&e.path()));
        } else {
            all.push(e.path());
        }
    }
    all
}

/// `validate` as the unprivileged user `nobody`, outside any network namespace.
fn validate_as_nobody(config: &Path) -> (i32, String, String) {
    let out = run(Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--config",
        ])
        .arg(config)
        .arg("validate"));
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn validate_reports_bad_tag_trunks_and_mirror_rule_with_file_and_line_as_nobody_without_ovs() {
    if common::without_root() {
        return;
    }
    let tmp = validate_tree();
    let d = tmp.path().display().to_string();
    let (code, out, err) = validate_as_nobody(&tmp.path().join("config.yaml"));
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..2],
        [
            format!("{d}/pve/qemu-server/100.conf:2: net0: tag: VLAN ID 4095 is outside 1-4094"),
            format!(
                "{d}/pve/qemu-server/101.conf:3: net0: trunks: trunk VLAN ID 5000 is outside 0-4095"
            ),
        ],
        "{out}"
    );
    assert!(
        lines[2].starts_with(&format!("{d}/mirrors.conf:3: ")),
        "{out}"
    );
    assert!(lines[2].contains("select"), "{out}");
    assert_eq!(
        lines[3],
        format!(
            "validate: configuration {d}/config.yaml is valid; 3 guest configurations checked (2 qemu-server, 1 lxc); 1 mirror rules in {d}/mirrors.conf; 3 problems"
        )
    );
    assert_eq!(lines.len(), 4, "{out}");

    // Fixed: exit 0.
    std::fs::write(
        tmp.path().join("pve/qemu-server/100.conf"),
        "net0: virtio,bridge=vmbr1,tag=10\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("pve/qemu-server/101.conf"),
        "net0: virtio,bridge=vmbr1,trunks=20;4095\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("mirrors.conf"), "vmbr1 eno12419 100 1\n").unwrap();
    let (code, out, err) = validate_as_nobody(&tmp.path().join("config.yaml"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("; no problem found\n"), "{out}");
}

#[test]
fn validate_a_bad_tool_configuration_is_exit_2_with_its_line() {
    if common::without_root() {
        return;
    }
    let tmp = validate_tree();
    let config = tmp.path().join("config.yaml");
    let mut text_ = std::fs::read_to_string(&config).unwrap();
    text_.push_str("timeout_secs: 0\n");
    std::fs::write(&config, &text_).unwrap();
    let (code, out, err) = validate_as_nobody(&config);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        out,
        format!("{}:5: timeout_secs: 0 is outside 1-600\n", config.display())
    );
    std::fs::write(&config, text_.replace("timeout_secs: 0", "timeuot_secs: 5")).unwrap();
    let (code, out, _) = validate_as_nobody(&config);
    assert_eq!(code, 2);
    assert!(
        out.starts_with(&format!(
            "{}:5: unknown field `timeuot_secs`",
            config.display()
        )),
        "{out}"
    );
}

#[test]
fn validate_works_with_ovs_stopped() {
    if common::without_root() {
        return;
    }
    let ovs = Ovs::start();
    ovs.guest(
        "lxc",
        200,
        "arch: amd64\nnet0: name=eth0,bridge=vmbr1,tag=0\n",
    );
    ovs.guest("qemu-server", 100, "net0: virtio,bridge=vmbr1,tag=10\n");
    ovs.stop("vswitchd");
    ovs.stop("ovsdb");
    let out = ovs.tool(&["validate"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!(
            "{}/pve/lxc/200.conf:2: net0: tag: VLAN ID 0 is outside 1-4094\n",
            ovs.dir.display()
        )),
        "{stdout}"
    );
    // status, by contrast, needs OVS: a runtime failure, not a usage error.
    assert_eq!(ovs.tool(&["status"]).status.code(), Some(1));
}

/// A firewall NIC whose fwln fell out of its fwbr drifts (apply would put it back); so does a
/// mirror rule whose mirror is missing (pending), while a rule whose guest is stopped waits.
#[test]
fn firewall_and_mirror_drift() {
    if common::without_root() {
        return;
    }
    let ovs = host();
    ovs.guest(
        "lxc",
        300,
        "net0: name=eth0,bridge=vmbr1,tag=10,firewall=1,type=veth\n",
    );
    ovs.veth("veth300i0");
    let rules = ovs.dir.join("mirrors.conf");
    std::fs::write(&rules, "vmbr1 vm100:0 200 0\nvmbr1 vm100:0 999 0\n").unwrap();
    ovs.write_config(&format!("mirrors_file: {}\n", rules.display()));
    ovs.tool_ok(&["apply"]);
    let (code, doc) = status_json(&ovs);
    assert_eq!(code, 0, "{doc:#}");
    assert_state(&ovs, "veth300i0", "ok");
    let states: Vec<(&str, &str)> = doc["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["state"].as_str().unwrap(), m["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("active", "mirror_vmbr1_tap100i0_to_vm200i0"),
            ("waiting", "mirror_vmbr1_tap100i0_to_vm999i0")
        ],
        "{doc:#}"
    );

    ovs.sh("ip link set fwln300o0 nomaster");
    ovs.vsctl(&[
        "--",
        "--id=@m",
        "get",
        "Mirror",
        "mirror_vmbr1_tap100i0_to_vm200i0",
        "--",
        "remove",
        "Bridge",
        "vmbr1",
        "mirrors",
        "@m",
    ]);
    let (code, doc) = status_json(&ovs);
    assert_eq!(code, 1, "{doc:#}");
    let nic = assert_state(&ovs, "veth300i0", "drift");
    assert!(
        nic["reason"].as_str().unwrap().contains("into fwbr300i0"),
        "{nic:#}"
    );
    assert_eq!(doc["mirrors"][0]["state"], "pending", "{doc:#}");
    ovs.tool_ok(&["apply"]);
    assert_eq!(status_json(&ovs).0, 0);
}

/// On the host the rules are for (a bridge they name is a link here), `validate` also reports
/// what a rule names that does not exist: a bridge or source port that is no link, a guest NIC
/// with no `net<n>` line. Off that host (the test above) the same rules pass.
#[test]
fn validate_on_the_host_reports_what_the_rules_name_and_does_not_exist() {
    if common::without_root() {
        return;
    }
    let tmp = validate_tree();
    let d = tmp.path().display().to_string();
    std::fs::write(
        tmp.path().join("pve/qemu-server/100.conf"),
        "net0: virtio,bridge=vmbr1\nnet1: virtio,bridge=vmbr1\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("pve/qemu-server/101.conf"), "").unwrap();
    std::fs::write(
        tmp.path().join("mirrors.conf"),
        "vmbr1 eno12419 100 1\nvmbr1 eno1,eno9,vm200:0 100 5\nvmbr9 * - - output_vlan=5\nvmbr1 vm300:0 - - output_vlan=7\n",
    )
    .unwrap();
    let ns = format!("oaa-validate-{}", std::process::id());
    common::check(Command::new("ip").args(["netns", "add", &ns]));
    for link in ["vmbr1", "eno12419", "eno1"] {
        common::check(Command::new("ip").args(["-n", &ns, "tuntap", "add", link, "mode", "tap"]));
    }
    let out = run(Command::new("ip")
        .args(["netns", "exec", &ns, BIN, "--config"])
        .arg(tmp.path().join("config.yaml"))
        .arg("validate"));
    let _ = run(Command::new("ip").args(["netns", "del", &ns]));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..4],
        [
            format!(
                "{d}/mirrors.conf:2: rule's SOURCE eno9 does not exist (no such link on this host)"
            ),
            format!(
                "{d}/mirrors.conf:2: rule's destination 100 5 does not exist (no net5 line in qemu-server/100.conf or lxc/100.conf)"
            ),
            format!(
                "{d}/mirrors.conf:3: rule's BRIDGE vmbr9 does not exist (no such link on this host)"
            ),
            format!(
                "{d}/mirrors.conf:4: rule's SOURCE vm300:0 does not exist (no net0 line in qemu-server/300.conf or lxc/300.conf)"
            ),
        ],
        "{stdout}"
    );
    assert!(
        lines[4].ends_with(&format!("4 mirror rules in {d}/mirrors.conf; 4 problems")),
        "{stdout}"
    );
}
