//! Builders the core's unit tests share: host links and desired states as the tests write them.

use crate::decide::desired::{Decision, Desired, HostLink, Master};
use crate::decide::guest::NicId;

/// A link of the kind its name says: a `tap` is a `tun` (Proxmox's tap), anything else a veth;
/// a veth not named like Proxmox's has its peer in a container. No master.
pub fn link(name: &str) -> HostLink {
    link_on(name, Master::None)
}

/// [`link`], enslaved to `master`.
pub fn link_on(name: &str, master: Master) -> HostLink {
    let kind = if name.starts_with("tap") {
        "tun"
    } else {
        "veth"
    };
    HostLink {
        name: name.into(),
        kind: Some(kind.into()),
        master,
        peer_elsewhere: kind == "veth" && NicId::parse(name).is_none(),
        addressed: false,
    }
}

/// A desired state with these decisions and nothing else.
pub fn desired(nics: &[(&str, Decision)]) -> Desired {
    Desired {
        nics: nics
            .iter()
            .map(|(n, d)| (n.to_string(), d.clone()))
            .collect(),
        ..Desired::default()
    }
}
