//! Property tests over the two parsers that read files people edit by hand: guest
//! configurations and the interfaces file's managed block. Bounded (a few thousand cases each)
//! so they run in every CI pass.

use proptest::prelude::*;

use ovs_autoattach::decide::guest::{GuestConfig, Kind};
use ovs_autoattach::decide::ifname;
use ovs_autoattach::decide::interfaces::{BEGIN, END, parse_block, render_block, splice};
use ovs_autoattach::decide::vlan::{TAG_MAX, TAG_MIN, TRUNK_MAX, TRUNK_MIN, Vlan};
use ovs_autoattach::host::hostfiles::HostPort;

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

    /// Splicing into any file either refuses or keeps everything outside the block and
    /// round-trips the ports; clearing then restores the admin's text.
    #[test]
    fn splice_keeps_the_admins_bytes(lines in prop::collection::vec(admin_line(), 0..12), final_nl in any::<bool>(), ports in prop::collection::vec(port(), 0..6)) {
        let mut content = lines.join("\n");
        if final_nl && !content.is_empty() {
            content.push('\n');
        }
        let mut ports = ports;
        ports.sort();
        ports.dedup_by(|a, b| a.name == b.name);
        let block = render_block(&ports);
        let Ok(new) = splice(&content, Some(&block)) else {
            // Refused: the caller leaves the file untouched.
            return Ok(());
        };
        prop_assert_eq!(new.matches(BEGIN).count(), 1);
        let mut back = parse_block(&new).unwrap();
        back.sort();
        prop_assert_eq!(&back, &ports);
        let start = new.find(&block).unwrap();
        let outside = format!("{}{}", &new[..start], &new[start + block.len()..]);
        // Outside the block, the new file is the old one minus its old block plus at most the
        // separator that appending adds.
        let again = splice(&new, Some(&block)).unwrap();
        prop_assert_eq!(&again, &new, "splicing is idempotent");
        let cleared = splice(&new, None).unwrap();
        prop_assert!(!cleared.contains(BEGIN));
        prop_assert!(outside.starts_with(cleared.trim_end_matches('\n')) || cleared.starts_with(outside.trim_end_matches('\n')));
        if !content.contains("# BEGIN") && !content.contains("# END") && (content.is_empty() || content.ends_with('\n')) {
            prop_assert_eq!(cleared, content);
        }
    }
}
