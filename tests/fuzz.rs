//! Property tests over what reads files people (and Proxmox's editor) write: guest
//! configurations, the cleaning of the interfaces file, and the tool's own stanzas file. Bounded (a few thousand cases each)
//! so they run in every CI pass.

use proptest::prelude::*;

use ovs_autoattach::decide::guest::{GuestConfig, Kind};
use ovs_autoattach::decide::ports::HostPort;
use ovs_autoattach::decide::stanzas::{self, Listed};
use ovs_autoattach::decide::vlan::{TAG_MAX, TAG_MIN, TRUNK_MAX, TRUNK_MIN, Vlan};
use ovs_autoattach::decide::{ifname, migrate};

const BEGIN: &str = "# BEGIN ovs-autoattach";
const END: &str = "# END ovs-autoattach";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 3000,
        ..ProptestConfig::default()
    }
}

/// Values that look like net<n> items, valid and not.
fn net_item() -> impl Strategy<Value = String> {
    prop_oneof![
        "(virtio|e1000|vmxnet3|virtuo)(=[0-9A-F:]{0,17})?",
        "(virtio|e1000|macaddr|hwaddr)=[0-9A-Fa-f][02468ACEace](:[0-9A-F]{2}){5}",
        "model=(virtio|e1000|x)",
        "name=eth[0-9]",
        "(| |\t)",
        "bridge=[a-z0-9/ .;$-]{0,18}",
        "tag=[+-]?[0-9]{0,6}",
        "trunks=[0-9;-]{0,20}",
        "(firewall|link_down)=[a-z0-9]{0,5}",
        "mtu=[0-9a-z]{0,6}",
        "rate=[0-9.e-]{0,6}",
        "[a-z_]{1,8}=[^,\n]{0,10}",
        "[^,\n]{0,12}",
    ]
}

fn config_line() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..40, prop::collection::vec(net_item(), 0..7))
            .prop_map(|(n, items)| format!("net{n}: {}", items.join(","))),
        "\\[[a-z:]{0,12}\\]".prop_map(String::from),
        "[a-z]{1,8}: [^\n]{0,20}".prop_map(String::from),
        any::<String>().prop_map(|s| s.replace('\n', " ")),
    ]
}

fn port() -> impl Strategy<Value = HostPort> {
    (
        "(tap|veth)[0-9]{3}i[0-9]",
        "(ovsbr0|vmbr[0-9])",
        proptest::option::of(TAG_MIN..=TAG_MAX),
        prop::collection::vec(TRUNK_MIN..=TRUNK_MAX, 0..5),
        any::<bool>(),
    )
        .prop_map(|(name, bridge, tag, trunks, owned)| HostPort {
            name,
            bridge,
            vlan: Vlan::proxmox(tag, trunks),
            owned,
        })
}

fn admin_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(BEGIN.to_string()),
        Just(END.to_string()),
        Just(format!("  {BEGIN}")),
        Just("# BEGIN nmstate-monitor".to_string()),
        Just("# END nmstate-monitor".to_string()),
        "(auto|iface|#|    ovs_)[a-z0-9 _]{0,20}".prop_map(String::from),
        "[^\n]{0,30}".prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Any text: no panic, and whatever is accepted is within Proxmox's rules.
    #[test]
    fn guest_parser_accepts_only_valid_nics(lines in prop::collection::vec(config_line(), 0..12), lxc in any::<bool>()) {
        let text = lines.join("\n");
        let parsed = GuestConfig::parse(if lxc { Kind::Lxc } else { Kind::Qemu }, &text);
        for spec in parsed.nets.values().flatten() {
            if let Some(b) = &spec.bridge {
                prop_assert!(ifname::validate(b).is_ok(), "bridge {b:?}");
            }
            prop_assert!(spec.tag.is_none_or(|t| (1..=4094).contains(&t)), "tag {:?}", spec.tag);
            prop_assert!(spec.trunks.iter().all(|t| (0..=4095).contains(t)), "trunks {:?}", spec.trunks);
            prop_assert!(spec.trunks.windows(2).all(|w| w[0] < w[1]));
        }
    }

    /// Empty items between the others change nothing (`parse_property_string` skips them).
    #[test]
    fn empty_items_change_nothing(items in prop::collection::vec(net_item(), 1..7), lxc in any::<bool>()) {
        let kind = if lxc { Kind::Lxc } else { Kind::Qemu };
        let plain = GuestConfig::parse(kind, &format!("net0: {}\n", items.join(",")));
        let padded = GuestConfig::parse(kind, &format!("net0: {}\n", items.join(",,")));
        prop_assert_eq!(plain, padded);
    }

    /// A duplicated net<n> key: for LXC the last line always wins; for QEMU a last line that is
    /// accepted on its own wins.
    #[test]
    fn last_net_line_wins(first in prop::collection::vec(net_item(), 0..7), last in prop::collection::vec(net_item(), 0..7), lxc in any::<bool>()) {
        let kind = if lxc { Kind::Lxc } else { Kind::Qemu };
        let last = format!("net0: {}\n", last.join(","));
        let alone = GuestConfig::parse(kind, &last).nets[&0].clone();
        let both = GuestConfig::parse(kind, &format!("net0: {}\n{last}", first.join(","))).nets[&0].clone();
        if lxc || alone.is_ok() {
            prop_assert_eq!(both, alone);
        }
    }

    #[test]
    fn guest_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = GuestConfig::parse(Kind::Qemu, &String::from_utf8_lossy(&bytes));
    }

    /// Cleaning any file never invents a line, is idempotent, and leaves a file that holds
    /// nothing of the tool's exactly as it was.
    #[test]
    fn cleaning_keeps_the_admins_lines(lines in prop::collection::vec(admin_line(), 0..14), final_nl in any::<bool>(), ports in prop::collection::vec(port(), 0..4), at in 0usize..14) {
        let mut lines = lines;
        let ours = stanzas_of_old_versions(&ports);
        let untouched = lines.join("\n");
        lines.insert(at.min(lines.len()), ours);
        let mut content = lines.join("\n");
        if final_nl && !content.is_empty() {
            content.push('\n');
        }
        let cleaned = migrate::clean(&content, |_| true);
        for line in cleaned.content.lines() {
            prop_assert!(content.lines().any(|l| l == line) || line.starts_with("auto ") || line.starts_with("allow-"), "invented {line:?}");
        }
        prop_assert_eq!(&migrate::clean(&cleaned.content, |_| true).content, &cleaned.content, "idempotent");
        for p in &ports {
            let mark = format!("ovs_extra set Port {} ", p.name);
            prop_assert!(!cleaned.content.contains(&mark), "{} left", p.name);
        }
        if !untouched.contains("ovs-autoattach") && !untouched.contains("nmstate-monitor") {
            let mut u = untouched.clone();
            if final_nl && !u.is_empty() { u.push('\n'); }
            prop_assert_eq!(migrate::clean(&u, |_| true).content, u);
        }
    }

    /// The tool's own file round-trips every listing.
    #[test]
    fn stanzas_round_trip(ports in prop::collection::vec(port(), 0..8), neutral in prop::collection::vec("(tap|veth)[0-9]{3}i[0-9]", 0..4)) {
        let mut ports = ports;
        ports.sort();
        ports.dedup_by(|a, b| a.name == b.name);
        let listed = Listed { ports: ports.clone(), neutral };
        let back = stanzas::parse(&stanzas::render(&listed)).unwrap();
        let mut got = back.ports.clone();
        got.sort();
        prop_assert_eq!(got, ports);
    }
}

/// Marked stanzas as the managed block of 0.1.0 held them.
fn stanzas_of_old_versions(ports: &[HostPort]) -> String {
    ports
        .iter()
        .map(|p| {
            let n = &p.name;
            let opts = p.vlan.ovs_options();
            let opts = if opts.is_empty() { String::new() } else { format!("    ovs_options {opts}\n") };
            format!("auto {n}\niface {n} inet manual\n    ovs_type OVSPort\n    ovs_bridge {}\n{opts}    ovs_extra set Port {n} external_ids:owner=ovs-autoattach\n", p.bridge)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
