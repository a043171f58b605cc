//! The links that rtnetlink requests create or change.
//!
//! Tools built on netlink never call `if_nametoindex`: `ip link set NAME up` (iproute2 6.x)
//! looks `NAME` up with an `RTM_GETLINK` request and then changes the link with an
//! `RTM_NEWLINK` naming it by index; `ip link add`, LXC and systemd-nspawn create veth pairs
//! with one `RTM_NEWLINK` carrying the name of each end. This module reads, out of a request
//! buffer, the links that `RTM_NEWLINK` and `RTM_SETLINK` messages create or change: by name
//! (`IFLA_IFNAME`, and the peer's for a veth pair) or, without a name, by index. Lookups
//! (`RTM_GETLINK`) are ignored, so that `ip link show` or `ip link del` start nothing. Every
//! length is checked against the buffer; anything malformed yields nothing.

use crate::names::IfName;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const RTA_HDRLEN: usize = 4;

const RTM_NEWLINK: u16 = 16;
#[cfg(test)]
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
/// Attribute type bits (without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Most links taken from one request (a veth pair has two).
pub const MAX_LINKS: usize = 4;

/// A link a request creates or changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Name(IfName),
    /// A change of an existing link named by its index only.
    Index(u32),
}

#[derive(Default, Debug)]
pub struct Links {
    list: [Option<Link>; MAX_LINKS],
}

impl Links {
    fn push(&mut self, link: Link) {
        if let Some(free) = self.list.iter_mut().find(|n| n.is_none()) {
            *free = Some(link);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Link> + '_ {
        self.list.iter().flatten().copied()
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The attributes in `b`, as (type without flags, payload), stopping at the first malformed one.
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    core::iter::from_fn(move || {
        let len = u16_at(b, at)? as usize;
        let kind = u16_at(b, at + 2)? & NLA_TYPE_MASK;
        let payload = b.get(at + RTA_HDRLEN..at.checked_add(len)?)?;
        at += align4(len.max(RTA_HDRLEN));
        Some((kind, payload))
    })
}

/// The links that the `RTM_NEWLINK` and `RTM_SETLINK` messages in `buf` (one or more netlink
/// messages) create or change. Names that are not valid interface names are left out.
pub fn links(buf: &[u8]) -> Links {
    let mut links = Links::default();
    let mut at = 0;
    while let Some(len) = u32_at(buf, at) {
        let len = len as usize;
        let Some(msg) = buf.get(at..at.saturating_add(len)) else {
            break;
        };
        if len < NLMSG_HDRLEN {
            break;
        }
        let kind = u16_at(msg, 4).unwrap_or(0);
        if matches!(kind, RTM_NEWLINK | RTM_SETLINK)
            && let Some(body) = msg.get(NLMSG_HDRLEN..)
        {
            link_attrs(body, true, &mut links);
        }
        at += align4(len);
    }
    links
}

/// The links in an `ifinfomsg` followed by link attributes; `top` is the message itself (not
/// a veth peer, whose description has the same shape).
fn link_attrs(body: &[u8], top: bool, links: &mut Links) {
    let (Some(index), Some(attributes)) = (u32_at(body, 4), body.get(IFINFOMSG_LEN..)) else {
        return;
    };
    let mut named = false;
    for (kind, payload) in attrs(attributes) {
        match kind {
            IFLA_IFNAME => {
                named = true;
                if let Some(name) = IfName::parse(payload) {
                    links.push(Link::Name(name));
                }
            }
            IFLA_LINKINFO if top => {
                let mut veth = false;
                for (kind, payload) in attrs(payload) {
                    match kind {
                        IFLA_INFO_KIND => veth = payload.split(|&b| b == 0).next() == Some(b"veth"),
                        IFLA_INFO_DATA if veth => {
                            for (kind, peer) in attrs(payload) {
                                if kind == VETH_INFO_PEER {
                                    link_attrs(peer, false, links);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // ifi_index is a signed int; 0 asks the kernel to choose (creation), negative is invalid.
    if top && !named && (1..=i32::MAX as u32).contains(&index) {
        links.push(Link::Index(index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((RTA_HDRLEN + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn ifinfomsg(index: i32) -> Vec<u8> {
        let mut i = vec![0; IFINFOMSG_LEN];
        i[4..8].copy_from_slice(&index.to_ne_bytes());
        i
    }

    fn msg(kind: u16, index: i32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = attrs.concat();
        let len = NLMSG_HDRLEN + IFINFOMSG_LEN + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]); // flags, seq, pid
        m.extend(ifinfomsg(index));
        m.extend_from_slice(&body);
        m
    }

    fn found(buf: &[u8]) -> Vec<String> {
        links(buf)
            .iter()
            .map(|l| match l {
                Link::Name(n) => String::from_utf8(n.as_bytes().to_vec()).unwrap(),
                Link::Index(i) => format!("#{i}"),
            })
            .collect()
    }

    #[test]
    fn ip_link_set_up_changes_a_link_by_index_after_looking_it_up() {
        let lookup = msg(
            RTM_GETLINK,
            0,
            &[
                attr(29, &9u32.to_ne_bytes()), // IFLA_EXT_MASK
                attr(IFLA_IFNAME, b"veth123i0\0"),
            ],
        );
        assert!(found(&lookup).is_empty());
        assert_eq!(found(&msg(RTM_NEWLINK, 7, &[])), ["#7"]);
        assert_eq!(found(&msg(RTM_SETLINK, 8, &[])), ["#8"]);
    }

    #[test]
    fn a_name_wins_over_the_index() {
        // A rename of link 7: the new name is the one that will exist.
        let m = msg(RTM_NEWLINK, 7, &[attr(IFLA_IFNAME, b"tap5i0\0")]);
        assert_eq!(found(&m), ["tap5i0"]);
        // Invalid names do not fall back to the index either.
        let m = msg(RTM_NEWLINK, 7, &[attr(IFLA_IFNAME, b"bad name\0")]);
        assert!(found(&m).is_empty());
        // Creation with a kernel-chosen name, or a nonsensical index.
        assert!(found(&msg(RTM_NEWLINK, 0, &[])).is_empty());
        assert!(found(&msg(RTM_NEWLINK, -3, &[])).is_empty());
    }

    #[test]
    fn veth_creation_names_both_ends() {
        let mut peer = ifinfomsg(0);
        peer.extend(attr(IFLA_IFNAME, b"vethpeer\0"));
        let linkinfo = [
            attr(IFLA_INFO_KIND, b"veth\0"),
            attr(
                IFLA_INFO_DATA | 0x8000,
                &attr(VETH_INFO_PEER | 0x8000, &peer),
            ),
        ]
        .concat();
        let m = msg(
            RTM_NEWLINK,
            0,
            &[
                attr(IFLA_IFNAME, b"veth200i0\0"),
                attr(IFLA_LINKINFO | 0x8000, &linkinfo),
            ],
        );
        assert_eq!(found(&m), ["veth200i0", "vethpeer"]);
    }

    #[test]
    fn info_data_of_other_kinds_is_not_a_peer() {
        let linkinfo = [
            attr(IFLA_INFO_KIND, b"vlan\0"),
            attr(IFLA_INFO_DATA, &attr(1, &[0; 20])),
        ]
        .concat();
        let m = msg(
            RTM_NEWLINK,
            0,
            &[
                attr(IFLA_IFNAME, b"vlan5\0"),
                attr(IFLA_LINKINFO, &linkinfo),
            ],
        );
        assert_eq!(found(&m), ["vlan5"]);
    }

    #[test]
    fn several_messages_in_one_buffer() {
        let m = [
            msg(RTM_SETLINK, 0, &[attr(IFLA_IFNAME, b"tap1i0\0")]),
            msg(20, 3, &[attr(IFLA_IFNAME, b"addrmsg\0")]), // RTM_NEWADDR
            msg(17, 4, &[]),                                // RTM_DELLINK
            msg(RTM_NEWLINK, 0, &[attr(IFLA_IFNAME, b"tap1i1\0")]),
        ]
        .concat();
        assert_eq!(found(&m), ["tap1i0", "tap1i1"]);
    }

    #[test]
    fn malformed_buffers_yield_nothing() {
        let good = msg(RTM_NEWLINK, 0, &[attr(IFLA_IFNAME, b"veth1\0")]);
        assert_eq!(found(&good), ["veth1"]);
        for cut in 0..good.len() {
            // A truncated buffer never yields a link that was not entirely inside it.
            let got = found(&good[..cut]);
            assert!(got.is_empty(), "{cut}: {got:?}");
        }
        // Lengths that point outside the buffer or loop in place.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(found(&bad).is_empty());
        let mut zero_attr = good.clone();
        zero_attr[32..34].copy_from_slice(&0u16.to_ne_bytes());
        assert!(found(&zero_attr).is_empty());
        let mut short_msg = good.clone();
        short_msg[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(found(&short_msg).is_empty());
        assert!(found(&[]).is_empty());
        assert!(found(&[0xff; 3]).is_empty());
    }

    #[test]
    fn at_most_max_links() {
        let one = msg(RTM_NEWLINK, 0, &[attr(IFLA_IFNAME, b"veth1\0")]);
        let many: Vec<u8> = std::iter::repeat_n(one, 10).flatten().collect();
        assert_eq!(found(&many).len(), MAX_LINKS);
    }
}
