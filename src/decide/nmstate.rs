//! `/etc/nmstate/nmstate-dynamic.yaml`: the guest ports in nmstate's declarative format.
//!
//! One `ovs-bridge` entry per bridge with guest ports, plus the configured default bridge always;
//! each bridge lists its guest ports sorted by name with their VLAN settings. Interface entries
//! exist only where nmstate has a type for the port: a veth is `type: veth` with its controller;
//! a tap has no nmstate type (`tun` is query-only), so it appears only as a bridge port.
//! Rendering is deterministic (sorted, no hash maps), so an unchanged state renders the same bytes
//! and never rewrites the file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decide::ifname;
use crate::decide::ports::HostPort;
use crate::decide::vlan::{self, Vlan, VlanMode};

const HEADER: &str = "# Managed by ovs-autoattach: guest ports on Open vSwitch. Do not edit; changes are overwritten.\n";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Doc {
    interfaces: Vec<Iface>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Iface {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    controller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bridge: Option<BridgeConf>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct BridgeConf {
    port: Vec<PortConf>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PortConf {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vlan: Option<VlanConf>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct VlanConf {
    mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<u16>,
    #[serde(
        default,
        rename = "enable-native",
        skip_serializing_if = "Option::is_none"
    )]
    enable_native: Option<bool>,
    #[serde(
        default,
        rename = "trunk-tags",
        skip_serializing_if = "Option::is_none"
    )]
    trunk_tags: Option<Vec<TrunkTag>>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
enum TrunkTag {
    Id {
        id: u16,
    },
    Range {
        #[serde(rename = "id-range")]
        id_range: IdRange,
    },
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct IdRange {
    min: u16,
    max: u16,
}

/// Where `nmstatectl service` (nmstate's `nmstate.service`) looks for state files at boot.
pub const SERVICE_DIR: &str = "/etc/nmstate";

/// Whether `nmstate.service`, when enabled, would apply `file` at boot: a `.yml` or `.yaml` file
/// directly in [`SERVICE_DIR`]. Applying ours would do damage, as nmstate 2.2's own merge code
/// shows: a bridge's `port` list is the complete list, so the uplink is detached and internal
/// ports are deleted; at boot, before the guests run, a listed tap is created as an OVS
/// internal interface and a listed veth fails the whole apply. The file is then renamed to
/// `.applied`.
pub fn applied_at_boot(file: &std::path::Path) -> bool {
    file.parent() == Some(std::path::Path::new(SERVICE_DIR))
        && matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        )
}

/// Renders the file for `ports` (any order) with `default_bridge` always declared. A port or
/// bridge whose name is not a valid interface name is never written.
pub fn render(ports: &[HostPort], default_bridge: &str) -> String {
    let ports: Vec<&HostPort> = ports
        .iter()
        .filter(|p| ifname::validate(&p.name).is_ok() && ifname::validate(&p.bridge).is_ok())
        .collect();
    let mut by_bridge: BTreeMap<&str, Vec<&HostPort>> = BTreeMap::new();
    by_bridge.entry(default_bridge).or_default();
    for p in &ports {
        by_bridge.entry(p.bridge.as_str()).or_default().push(p);
    }
    let mut interfaces = Vec::new();
    for (bridge, mut members) in by_bridge {
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let port: Vec<PortConf> = members
            .iter()
            .map(|p| PortConf {
                name: p.name.clone(),
                vlan: vlan_conf(&p.vlan),
            })
            .collect();
        interfaces.push(Iface {
            name: bridge.to_string(),
            kind: "ovs-bridge".into(),
            state: "up".into(),
            controller: None,
            bridge: (!port.is_empty()).then_some(BridgeConf { port }),
        });
    }
    let mut veths: Vec<&HostPort> = ports
        .iter()
        .copied()
        .filter(|p| p.name.starts_with("veth"))
        .collect();
    veths.sort_by(|a, b| a.name.cmp(&b.name));
    for p in veths {
        interfaces.push(Iface {
            name: p.name.clone(),
            kind: "veth".into(),
            state: "up".into(),
            controller: Some(p.bridge.clone()),
            bridge: None,
        });
    }
    let body =
        yaml_serde::to_string(&Doc { interfaces }).expect("serializing plain structs cannot fail");
    format!("{HEADER}{body}")
}

/// Reads back the ports of a file this module rendered (for the additive `plug` path when the
/// tool's ifupdown2 file is disabled). Ownership is not recorded in nmstate, so it comes back false.
pub fn parse(text: &str) -> Result<Vec<HostPort>, String> {
    let doc: Doc = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    let mut ports = Vec::new();
    for iface in doc
        .interfaces
        .into_iter()
        .filter(|i| i.kind == "ovs-bridge")
    {
        ifname::validate(&iface.name)?;
        for p in iface.bridge.map(|b| b.port).unwrap_or_default() {
            ifname::validate(&p.name)?;
            ports.push(HostPort {
                name: p.name,
                bridge: iface.name.clone(),
                vlan: p.vlan.map(vlan_from).unwrap_or_default(),
                owned: false,
            });
        }
    }
    Ok(ports)
}

fn vlan_conf(v: &Vlan) -> Option<VlanConf> {
    let trunk = !v.trunks.is_empty()
        || matches!(
            v.mode,
            Some(VlanMode::Trunk | VlanMode::NativeTagged | VlanMode::NativeUntagged)
        );
    if trunk {
        let tags = vlan::ranges(&v.trunks)
            .into_iter()
            .map(|(a, b)| {
                if a == b {
                    TrunkTag::Id { id: a }
                } else {
                    TrunkTag::Range {
                        id_range: IdRange { min: a, max: b },
                    }
                }
            })
            .collect();
        Some(VlanConf {
            mode: "trunk".into(),
            tag: v.tag,
            enable_native: v.tag.map(|_| true),
            trunk_tags: Some(tags),
        })
    } else {
        v.tag.map(|t| VlanConf {
            mode: "access".into(),
            tag: Some(t),
            enable_native: None,
            trunk_tags: None,
        })
    }
}

fn vlan_from(c: VlanConf) -> Vlan {
    let mut trunks = Vec::new();
    for t in c.trunk_tags.unwrap_or_default() {
        match t {
            TrunkTag::Id { id } => trunks.push(id),
            TrunkTag::Range { id_range } => trunks.extend(id_range.min..=id_range.max),
        }
    }
    Vlan::proxmox(c.tag, trunks)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn port(name: &str, bridge: &str, vlan: Vlan) -> HostPort {
        HostPort {
            name: name.into(),
            bridge: bridge.into(),
            vlan,
            owned: true,
        }
    }

    /// The shapes every renderer is tested on: empty, one port, tag, trunks, tag+trunks, trunk IDs
    /// at the ends of their range, several bridges.
    pub fn shapes() -> Vec<(&'static str, Vec<HostPort>)> {
        vec![
            ("empty", vec![]),
            ("one", vec![port("veth100i0", "ovsbr0", Vlan::default())]),
            (
                "tag",
                vec![port("tap100i0", "ovsbr0", Vlan::proxmox(Some(10), vec![]))],
            ),
            (
                "trunks",
                vec![port(
                    "tap101i0",
                    "ovsbr0",
                    Vlan::proxmox(None, vec![20, 30, 31, 32]),
                )],
            ),
            (
                "tag_trunks",
                vec![port(
                    "veth102i0",
                    "ovsbr0",
                    Vlan::proxmox(Some(10), vec![20, 30]),
                )],
            ),
            // Trunk IDs 0 and 4095 are valid in OVS (and in NetworkManager's `ovs-port.trunks`,
            // 0-4095); nmstate's trunk tags are plain u16 ids and id-ranges.
            (
                "trunk_edges",
                vec![port(
                    "tap103i0",
                    "ovsbr0",
                    Vlan::proxmox(Some(10), vec![0, 1, 2, 4095]),
                )],
            ),
            (
                "bridges",
                vec![
                    port("veth201i1", "vmbr2", Vlan::proxmox(Some(30), vec![])),
                    port("tap200i0", "vmbr1", Vlan::proxmox(Some(5), vec![])),
                    port("vethRaw1", "ovsbr0", Vlan::default()),
                    port("tap200i1", "vmbr1", Vlan::default()),
                ],
            ),
        ]
    }

    #[test]
    fn only_yaml_files_in_etc_nmstate_are_applied_at_boot() {
        use std::path::Path;
        assert!(applied_at_boot(Path::new(
            "/etc/nmstate/nmstate-dynamic.yaml"
        )));
        assert!(applied_at_boot(Path::new("/etc/nmstate/x.yml")));
        assert!(!applied_at_boot(Path::new("/etc/nmstate/x.yaml.off")));
        assert!(!applied_at_boot(Path::new("/etc/nmstate/sub/x.yaml")));
        assert!(!applied_at_boot(Path::new(
            "/etc/ovs-autoattach/nmstate-dynamic.yaml"
        )));
    }

    #[test]
    fn golden_empty() {
        assert_eq!(
            render(&[], "ovsbr0"),
            format!("{HEADER}interfaces:\n- name: ovsbr0\n  type: ovs-bridge\n  state: up\n")
        );
    }

    #[test]
    fn golden_tag_and_trunks() {
        let ports = [
            port(
                "veth102i0",
                "ovsbr0",
                Vlan::proxmox(Some(10), vec![20, 30, 31]),
            ),
            port("tap100i0", "ovsbr0", Vlan::proxmox(Some(10), vec![])),
            port("tap101i0", "vmbr1", Vlan::proxmox(None, vec![7])),
        ];
        let want = format!(
            "{HEADER}interfaces:
- name: ovsbr0
  type: ovs-bridge
  state: up
  bridge:
    port:
    - name: tap100i0
      vlan:
        mode: access
        tag: 10
    - name: veth102i0
      vlan:
        mode: trunk
        tag: 10
        enable-native: true
        trunk-tags:
        - id: 20
        - id-range:
            min: 30
            max: 31
- name: vmbr1
  type: ovs-bridge
  state: up
  bridge:
    port:
    - name: tap101i0
      vlan:
        mode: trunk
        trunk-tags:
        - id: 7
- name: veth102i0
  type: veth
  state: up
  controller: ovsbr0
"
        );
        assert_eq!(render(&ports, "ovsbr0"), want);
    }

    #[test]
    fn deterministic_and_order_independent() {
        for (name, mut ports) in shapes() {
            let a = render(&ports, "ovsbr0");
            ports.reverse();
            assert_eq!(a, render(&ports, "ovsbr0"), "{name}");
        }
    }

    #[test]
    fn round_trips() {
        for (name, ports) in shapes() {
            let mut back = parse(&render(&ports, "ovsbr0")).unwrap();
            let mut want: Vec<HostPort> = ports
                .iter()
                .map(|p| HostPort {
                    owned: false,
                    ..p.clone()
                })
                .collect();
            back.sort();
            want.sort();
            assert_eq!(back, want, "{name}");
        }
    }

    /// The real nmstate parser accepts every shape, types nothing as `unknown`, and generates a
    /// configuration from it.
    #[test]
    fn valid_for_nmstate() {
        for (name, ports) in shapes() {
            let text = render(&ports, "ovsbr0");
            let state = ::nmstate::NetworkState::new_from_yaml(&text)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            for iface in state.interfaces.to_vec() {
                assert_ne!(
                    iface.iface_type(),
                    ::nmstate::InterfaceType::Unknown,
                    "{name}: {}",
                    iface.name()
                );
            }
            state
                .gen_conf()
                .unwrap_or_else(|e| panic!("{name}: gen_conf: {e}\n{text}"));
        }
    }
}
