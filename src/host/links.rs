//! Network links over rtnetlink: the link, address and root-qdisc dumps (`RTM_GETLINK`,
//! `RTM_GETADDR`, `RTM_GETQDISC`), single lookups, and the changes `linkops` makes
//! (`RTM_SETLINK`, `RTM_NEWLINK` for a fwbr, `RTM_DELLINK`).
//!
//! neli 0.7 owns the socket and builds the requests, through its plain synchronous
//! `NlSocketHandle` rather than `NlRouter` (the router spawns a background thread per instance,
//! while a one-shot run only needs request and response on one socket). The dumps are decoded
//! from the raw datagrams ([`raw`]), and the link changes are encoded by hand: on a host with
//! thousands of links, neli's typed messages cost more than the kernel's own work.

use std::collections::BTreeSet;
use std::io;

use anyhow::{Context, Result, anyhow, bail};
use neli::{
    consts::{
        nl::NlmF,
        rtnl::{Ifla, RtAddrFamily, Rtm},
        socket::NlFamily,
    },
    nl::{NlPayload, NlmsghdrBuilder},
    rtnl::{IfinfomsgBuilder, Rtattr, RtattrBuilder},
    socket::synchronous::NlSocketHandle,
    types::{Buffer, RtBuffer},
    utils::Groups,
};

/// One host network link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,          // IFLA_IFNAME
    pub index: u32,            // ifi_index
    pub master: Option<u32>,   // IFLA_MASTER, None when absent or 0
    pub kind: Option<String>,  // IFLA_LINKINFO -> IFLA_INFO_KIND, None when absent
    pub mtu: Option<u32>,      // IFLA_MTU
    pub up: bool,              // IFF_UP in ifi_flags (the admin state)
    pub alias: Option<String>, // IFLA_IFALIAS
    /// IFLA_LINK_NETNSID is present: the link's peer (a veth's other end) lives in another
    /// network namespace. That is what makes a veth a container's NIC.
    pub peer_elsewhere: bool,
    /// The value of IFLA_LINK_NETNSID: the id this namespace gives the peer's namespace (what
    /// `RTM_GETNSID` answers for a process in that namespace).
    pub netnsid: Option<i32>,
}

/// Whether a link named `name` exists in this network namespace, from sysfs: a `stat` costs a
/// few microseconds where a netlink round trip costs tens, and `plug` asks this for every port
/// the host files list. Where sysfs is not this namespace's (no `lo` there), every link counts
/// as existing, which keeps entries rather than dropping them.
pub fn exists(name: &str) -> bool {
    if crate::decide::ifname::validate(name).is_err() {
        return false;
    }
    let sys = std::path::Path::new("/sys/class/net");
    sys.join(name).exists() || !sys.join("lo").exists()
}

/// A link list changing under a running dump sets NLM_F_DUMP_INTR; a
/// fresh dump is then the only way to get a consistent snapshot.
const DUMP_ATTEMPTS: usize = 5;

/// An open rtnetlink socket (NETLINK_ROUTE).
pub struct Rtnl {
    sock: NlSocketHandle,
    seq: u32,
}

impl Rtnl {
    pub fn open() -> Result<Rtnl> {
        let sock = NlSocketHandle::connect(NlFamily::Route, None, Groups::empty())
            .context("opening NETLINK_ROUTE socket")?;
        // Extended ACKs give us the kernel's own error text. Strict
        // checking (Linux >= 4.20) makes the kernel reject requests it
        // would otherwise half-ignore. Both are diagnostics only, so an
        // older kernel refusing them is not fatal.
        let _ = sock.enable_ext_ack(true);
        let _ = sock.enable_strict_checking(true);
        Ok(Rtnl { sock, seq: 0 })
    }

    /// RTM_GETLINK with NLM_F_DUMP: every link in the current network namespace.
    pub fn dump(&mut self) -> Result<Vec<Link>> {
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.send(NlmF::DUMP, 0, Vec::new())?;
            if let Some(links) = self.collect_dump(seq)? {
                return Ok(links);
            }
        }
        bail!("RTM_GETLINK dump kept being interrupted by concurrent link changes")
    }

    /// RTM_GETLINK for one link by name (IFLA_IFNAME attribute in the request, ifi_index 0, no dump).
    /// Ok(None) when the kernel answers ENODEV (no such device). Other errors are Err.
    pub fn by_name(&mut self, name: &str) -> Result<Option<Link>> {
        // The kernel copies the attribute as a C string, so an embedded
        // NUL would silently look up a different (truncated) name.
        if name.contains('\0') {
            bail!("interface name {name:?} contains a NUL byte");
        }
        let ifname = RtattrBuilder::default()
            .rta_type(Ifla::Ifname)
            .rta_payload(name)
            .build()
            .context("building IFLA_IFNAME attribute")?;
        let seq = self.send(NlmF::empty(), 0, vec![ifname])?;
        self.recv_single(seq)
            .with_context(|| format!("RTM_GETLINK for link {name:?}"))
    }

    /// RTM_GETLINK for one link by ifindex. Ok(None) on ENODEV.
    pub fn by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let ifi_index = libc::c_int::try_from(index)
            .map_err(|_| anyhow!("ifindex {index} does not fit the kernel's int"))?;
        let seq = self.send(NlmF::empty(), ifi_index, Vec::new())?;
        self.recv_single(seq)
            .with_context(|| format!("RTM_GETLINK for ifindex {index}"))
    }

    /// Sends one RTM_GETLINK request and returns its sequence number.
    ///
    /// No NLM_F_ACK: a successful single get is answered by exactly one
    /// RTM_NEWLINK and a dump ends with NLMSG_DONE, so an ACK would only
    /// cost an extra datagram and recv.
    fn send(
        &mut self,
        flags: NlmF,
        ifi_index: libc::c_int,
        mut attrs: Vec<Rtattr<Ifla, Buffer>>,
    ) -> Result<u32> {
        // We never read statistics. On current kernels this drops the IPv6
        // per-link MIB counters and VF stats; IFLA_STATS/IFLA_STATS64 are
        // still sent regardless.
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Ifla::ExtMask)
                .rta_payload(libc::RTEXT_FILTER_SKIP_STATS as u32)
                .build()
                .context("building IFLA_EXT_MASK attribute")?,
        );
        let ifinfo = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(ifi_index)
            .rtattrs(attrs.into_iter().collect::<RtBuffer<_, _>>())
            .build()
            .context("building ifinfomsg")?;

        self.seq = self.seq.wrapping_add(1);
        let msg = NlmsghdrBuilder::default()
            .nl_type(Rtm::Getlink)
            // neli does not add NLM_F_REQUEST itself; the kernel ignores
            // messages without it.
            .nl_flags(NlmF::REQUEST | flags)
            .nl_seq(self.seq)
            .nl_payload(NlPayload::Payload(ifinfo))
            .build()
            .context("building RTM_GETLINK request")?;
        self.sock.send(&msg).context("sending RTM_GETLINK")?;
        Ok(self.seq)
    }

    /// Reads the answer to a non-dump RTM_GETLINK.
    fn recv_single(&mut self, seq: u32) -> Result<Option<Link>> {
        let mut buf = vec![0u8; raw::DATAGRAM];
        loop {
            let len = self.recv_raw(&mut buf)?;
            for msg in raw::messages(&buf[..len]) {
                let msg = msg.context("parsing rtnetlink reply")?;
                // Leftovers of an earlier, abandoned request carry an older seq.
                if msg.seq != seq {
                    continue;
                }
                return match msg.ty {
                    raw::RTM_NEWLINK => raw::link(msg.payload)?.map(Some),
                    raw::NLMSG_ERROR => match raw::error(msg.flags, msg.payload, true)? {
                        Some(e) if raw_errno(&e) == Some(libc::ENODEV) => Ok(None),
                        Some(e) => Err(e),
                        None => Err(anyhow!(
                            "the kernel acknowledged RTM_GETLINK without an answer"
                        )),
                    },
                    other => Err(anyhow!("unexpected rtnetlink reply of type {other}")),
                };
            }
        }
    }

    /// Collects a dump until NLMSG_DONE. Returns `Ok(None)` when the kernel
    /// flagged the dump as interrupted, so the caller can retry.
    fn collect_dump(&mut self, seq: u32) -> Result<Option<Vec<Link>>> {
        let mut links = Vec::new();
        let mut interrupted = false;
        let mut buf = vec![0u8; raw::DATAGRAM];
        // The dump is always read to NLMSG_DONE: the kernel only continues a dump as we recv,
        // and an unfinished dump makes the next request on this socket fail with EBUSY.
        loop {
            let len = self.recv_raw(&mut buf)?;
            for msg in raw::messages(&buf[..len]) {
                let msg = msg.context("parsing rtnetlink dump message")?;
                // Leftovers of an earlier, abandoned request carry an older seq.
                if msg.seq != seq {
                    continue;
                }
                interrupted |= msg.flags & raw::NLM_F_DUMP_INTR != 0;
                match msg.ty {
                    // A link this tool cannot read (a name that is not UTF-8) cannot be a
                    // guest NIC either; it must not stop the others from being reconciled.
                    raw::RTM_NEWLINK => {
                        match raw::link(msg.payload).context("parsing rtnetlink dump message")? {
                            Ok(link) => links.push(link),
                            Err(e) => log::warn!("skipping a link: {e:#}"),
                        }
                    }
                    raw::NLMSG_DONE => {
                        let done = raw::error(msg.flags, msg.payload, false)
                            .context("parsing rtnetlink dump message")?;
                        if let Some(e) = done {
                            return Err(e).context("RTM_GETLINK dump");
                        }
                        return Ok((!interrupted).then_some(links));
                    }
                    // An error instead of data means the dump never started.
                    raw::NLMSG_ERROR => {
                        if let Some(e) = raw::error(msg.flags, msg.payload, true)
                            .context("parsing rtnetlink dump message")?
                        {
                            return Err(e).context("RTM_GETLINK dump");
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The links whose root queueing discipline is Proxmox's rate limit (`tc qdisc add dev X
    /// root handle 1: htb`), by ifindex: one RTM_GETQDISC dump. Open vSwitch replaces a port's
    /// qdiscs when it (re)adds the port, and a restart of ovs-vswitchd does that to every port,
    /// so a limit can vanish while the port looks untouched.
    pub fn rate_limited(&mut self) -> Result<BTreeSet<u32>> {
        self.dump_raw(
            "RTM_GETQDISC",
            raw::tc_dump_request,
            raw::RTM_NEWQDISC,
            raw::htb_root,
        )
    }

    /// The links that carry an address of their own, by ifindex: an IPv4 address other than
    /// `0.0.0.0`, or an IPv6 address wider than link-local. One RTM_GETADDR dump. A veth whose
    /// host end is addressed routes for its container (LXC's `veth.mode = router`, a CNI
    /// point-to-point link): it is no port for a switch.
    pub fn addressed(&mut self) -> Result<BTreeSet<u32>> {
        self.dump_raw(
            "RTM_GETADDR",
            raw::addr_dump_request,
            raw::RTM_NEWADDR,
            raw::own_address,
        )
    }

    /// A whole rtnetlink dump of messages of type `ty`, each read by `pick` into an ifindex it
    /// keeps (or not). Retried from the start when the kernel flags it interrupted.
    fn dump_raw(
        &mut self,
        what: &str,
        request: fn(u32) -> Vec<u8>,
        ty: u16,
        pick: fn(&[u8]) -> Result<Option<u32>>,
    ) -> Result<BTreeSet<u32>> {
        use std::os::fd::AsRawFd;
        for _ in 0..DUMP_ATTEMPTS {
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            let msg = request(seq);
            // SAFETY: `msg` is valid for reads of `msg.len()` bytes for the whole call.
            let n = unsafe { libc::send(self.sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error()).with_context(|| format!("sending {what}"));
            }
            let mut found = BTreeSet::new();
            let mut interrupted = false;
            let mut buf = vec![0u8; raw::DATAGRAM];
            'dump: loop {
                let len = self.recv_raw(&mut buf)?;
                for msg in raw::messages(&buf[..len]) {
                    let msg = msg.with_context(|| format!("parsing {what} dump"))?;
                    if msg.seq != seq {
                        continue;
                    }
                    interrupted |= msg.flags & raw::NLM_F_DUMP_INTR != 0;
                    match msg.ty {
                        t if t == ty => found.extend(pick(msg.payload)?),
                        raw::NLMSG_DONE => {
                            if let Some(e) = raw::error(msg.flags, msg.payload, false)? {
                                return Err(e).with_context(|| format!("{what} dump"));
                            }
                            break 'dump;
                        }
                        // An error instead of data means the dump never started; an
                        // acknowledgement carries no data and ends nothing.
                        raw::NLMSG_ERROR => match raw::error(msg.flags, msg.payload, true)? {
                            Some(e) => return Err(e).with_context(|| format!("{what} dump")),
                            None => break 'dump,
                        },
                        _ => {}
                    }
                }
            }
            if !interrupted {
                return Ok(found);
            }
        }
        bail!("{what} dump kept being interrupted by concurrent changes")
    }

    /// RTM_GETNSID for the network namespace of process `pid` (`NETNSA_PID`): the id this
    /// namespace gives it, as a peer's IFLA_LINK_NETNSID reports it. `Ok(None)` when it has none
    /// (no link of this namespace has its peer there: the kernel assigns none on a query) or the
    /// process is gone.
    pub fn nsid_of_pid(&mut self, pid: u32) -> Result<Option<i32>> {
        use std::os::fd::AsRawFd;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = raw::nsid_request(seq, pid);
        // SAFETY: `msg` is valid for reads of `msg.len()` bytes for the whole call.
        let n = unsafe { libc::send(self.sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("sending RTM_GETNSID");
        }
        let mut buf = vec![0u8; raw::DATAGRAM];
        loop {
            let len = self.recv_raw(&mut buf)?;
            for msg in raw::messages(&buf[..len]) {
                let msg = msg.context("parsing RTM_GETNSID reply")?;
                if msg.seq != seq {
                    continue;
                }
                return match msg.ty {
                    raw::RTM_NEWNSID => raw::nsid(msg.payload),
                    raw::NLMSG_ERROR => match raw::error(msg.flags, msg.payload, true)? {
                        Some(e) if raw_errno(&e) == Some(libc::ESRCH) => Ok(None),
                        Some(e) => Err(e).with_context(|| format!("RTM_GETNSID for pid {pid}")),
                        None => Ok(None),
                    },
                    other => Err(anyhow!("unexpected rtnetlink reply of type {other}")),
                };
            }
        }
    }

    /// Receives one datagram into `buf` (sized for the largest the kernel sends in a dump).
    fn recv_raw(&self, buf: &mut [u8]) -> Result<usize> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
            let n =
                unsafe { libc::recv(self.sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            match usize::try_from(n) {
                Ok(n) => return Ok(n),
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e).context("receiving rtnetlink reply");
                    }
                }
            }
        }
    }
}

/// A change to one link, as one RTM_SETLINK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetLink {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    /// `Some(0)` releases the link from its master.
    pub master: Option<u32>,
    pub alias: Option<String>,
}

/// Writes, each one request answered by the kernel's ACK (`NLM_F_ACK`), so a refusal comes
/// back with its errno and extended-ACK message.
impl Rtnl {
    /// RTM_SETLINK on `index`.
    pub fn set(&mut self, index: u32, change: &SetLink) -> Result<()> {
        let mut attrs = Vec::new();
        if let Some(mtu) = change.mtu {
            attrs.push(raw::attr(raw::IFLA_MTU_W, &mtu.to_ne_bytes()));
        }
        if let Some(master) = change.master {
            attrs.push(raw::attr(raw::IFLA_MASTER_W, &master.to_ne_bytes()));
        }
        if let Some(alias) = &change.alias {
            attrs.push(raw::attr(raw::IFLA_IFALIAS_W, alias.as_bytes()));
        }
        let (flags, mask) = match change.up {
            Some(true) => (libc::IFF_UP as u32, libc::IFF_UP as u32),
            Some(false) => (0, libc::IFF_UP as u32),
            None => (0, 0),
        };
        let ifindex = libc::c_int::try_from(index)
            .map_err(|_| anyhow!("ifindex {index} does not fit the kernel's int"))?;
        self.request(raw::RTM_SETLINK, 0, ifindex, flags, mask, &attrs)
            .with_context(|| format!("RTM_SETLINK on ifindex {index} ({change:?})"))
    }

    /// Creates a Linux bridge `name`, up, with `mtu` and the alias `alias` (the mark that says
    /// who created it).
    pub fn create_bridge(&mut self, name: &str, mtu: u32, alias: &str) -> Result<()> {
        crate::decide::ifname::validate(name).map_err(|e| anyhow!(e))?;
        let kind = raw::attr(raw::IFLA_INFO_KIND_W, b"bridge\0");
        let attrs = [
            raw::attr(raw::IFLA_IFNAME_W, format!("{name}\0").as_bytes()),
            raw::attr(raw::IFLA_MTU_W, &mtu.to_ne_bytes()),
            raw::attr(raw::IFLA_LINKINFO_W, &kind),
        ];
        let up = libc::IFF_UP as u32;
        let create = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        self.request(raw::RTM_NEWLINK, create, 0, up, up, &attrs)
            .with_context(|| format!("creating bridge {name}"))?;
        // The kernel takes IFLA_IFALIAS on a change, not on a creation.
        let index = self
            .by_name(name)?
            .ok_or_else(|| anyhow!("bridge {name} vanished right after its creation"))?
            .index;
        self.set(
            index,
            &SetLink {
                alias: Some(alias.to_string()),
                ..SetLink::default()
            },
        )
    }

    /// Deletes link `index`.
    pub fn delete(&mut self, index: u32) -> Result<()> {
        let ifindex = libc::c_int::try_from(index)
            .map_err(|_| anyhow!("ifindex {index} does not fit the kernel's int"))?;
        self.request(raw::RTM_DELLINK, 0, ifindex, 0, 0, &[])
            .with_context(|| format!("deleting ifindex {index}"))
    }

    /// Sends one request with NLM_F_ACK and waits for its answer.
    fn request(
        &mut self,
        ty: u16,
        extra_flags: u16,
        ifindex: libc::c_int,
        ifi_flags: u32,
        ifi_change: u32,
        attrs: &[Vec<u8>],
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = raw::request(ty, extra_flags, seq, ifindex, ifi_flags, ifi_change, attrs);
        // SAFETY: `msg` is valid for reads of `msg.len()` bytes for the whole call.
        let n = unsafe { libc::send(self.sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("sending rtnetlink request");
        }
        let mut buf = vec![0u8; raw::DATAGRAM];
        loop {
            let len = self.recv_raw(&mut buf)?;
            for msg in raw::messages(&buf[..len]) {
                let msg = msg.context("parsing rtnetlink reply")?;
                if msg.seq != seq || msg.ty != raw::NLMSG_ERROR {
                    continue;
                }
                return match raw::error(msg.flags, msg.payload, true)? {
                    None => Ok(()),
                    Some(e) => Err(e),
                };
            }
        }
    }
}

/// The errno behind an error from [`raw::error`].
fn raw_errno(e: &anyhow::Error) -> Option<i32> {
    e.downcast_ref::<io::Error>()
        .and_then(io::Error::raw_os_error)
}

/// In-place decoding of rtnetlink replies (`netlink(7)`, `rtnetlink(7)`): on a host with
/// thousands of links, building neli's typed messages (a buffer per attribute) costs more than
/// the kernel's own work. neli builds the requests and owns the socket.
mod raw {
    use std::io;

    use anyhow::{Context, Result, anyhow, bail};

    use super::{Link, c_string};

    /// The kernel puts at most 32 KiB of messages in one dump datagram.
    pub const DATAGRAM: usize = 64 * 1024;
    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    pub const RTM_NEWLINK: u16 = 16;
    pub const RTM_DELLINK: u16 = 17;
    pub const RTM_SETLINK: u16 = 19;
    pub const IFLA_IFNAME_W: u16 = IFLA_IFNAME;
    pub const IFLA_MTU_W: u16 = IFLA_MTU;
    pub const IFLA_MASTER_W: u16 = IFLA_MASTER;
    pub const IFLA_LINKINFO_W: u16 = IFLA_LINKINFO;
    pub const IFLA_IFALIAS_W: u16 = IFLA_IFALIAS;
    pub const IFLA_INFO_KIND_W: u16 = IFLA_INFO_KIND;
    pub const NLM_F_DUMP_INTR: u16 = 0x10;
    const NLM_F_CAPPED: u16 = 0x100;
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_MTU: u16 = 4;
    const IFLA_MASTER: u16 = 10;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_IFALIAS: u16 = 20;
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_LINK_NETNSID: u16 = 37;
    const HEADER: usize = 16;
    const IFINFOMSG: usize = 16;

    pub struct Message<'a> {
        pub ty: u16,
        pub flags: u16,
        pub seq: u32,
        pub payload: &'a [u8],
    }

    /// One attribute: header, payload, padding to 4 bytes.
    pub fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let len = 4 + payload.len();
        let mut out = Vec::with_capacity(align(len));
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align(len), 0);
        out
    }

    pub const RTM_NEWADDR: u16 = 20;
    const RTM_GETADDR: u16 = 22;
    /// `struct ifaddrmsg`: family, prefix length, flags, scope, ifindex.
    const IFADDRMSG: usize = 8;
    const IFA_ADDRESS: u16 = 1;
    const IFA_LOCAL: u16 = 2;
    const RT_SCOPE_LINK: u8 = 253;

    /// An RTM_GETADDR dump request for every address of every family.
    pub fn addr_dump_request(seq: u32) -> Vec<u8> {
        dump_request(RTM_GETADDR, IFADDRMSG, seq)
    }

    /// The ifindex of an RTM_NEWADDR payload that is an address of the link's own (see
    /// `Rtnl::addressed`).
    pub fn own_address(payload: &[u8]) -> Result<Option<u32>> {
        if payload.len() < IFADDRMSG {
            bail!("truncated ifaddrmsg");
        }
        let (family, scope, index) = (payload[0], payload[3], u32_at(payload, 4));
        match i32::from(family) {
            libc::AF_INET => {
                for attr in attributes(&payload[IFADDRMSG..]) {
                    let (ty, value) = attr?;
                    if (ty == IFA_LOCAL || ty == IFA_ADDRESS) && value.iter().any(|b| *b != 0) {
                        return Ok(Some(index));
                    }
                }
                Ok(None)
            }
            libc::AF_INET6 => Ok((scope != RT_SCOPE_LINK).then_some(index)),
            _ => Ok(None),
        }
    }

    /// A dump request: nlmsghdr (REQUEST | DUMP) and a zeroed family header of `body` bytes.
    fn dump_request(ty: u16, body: usize, seq: u32) -> Vec<u8> {
        let len = HEADER + body;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.resize(len, 0);
        out
    }

    pub const RTM_NEWQDISC: u16 = 36;
    const RTM_GETQDISC: u16 = 38;
    /// `struct tcmsg`: family, pads, ifindex, handle, parent, info.
    const TCMSG: usize = 20;
    const TCA_KIND: u16 = 1;
    const TC_H_ROOT: u32 = 0xFFFF_FFFF;
    /// `1:`, the handle Proxmox gives the root htb.
    const HTB_HANDLE: u32 = 0x0001_0000;

    /// An RTM_GETQDISC dump request for every link.
    pub fn tc_dump_request(seq: u32) -> Vec<u8> {
        dump_request(RTM_GETQDISC, TCMSG, seq)
    }

    /// The ifindex of an RTM_NEWQDISC payload that is a root `htb` with handle `1:`.
    pub fn htb_root(payload: &[u8]) -> Result<Option<u32>> {
        if payload.len() < TCMSG {
            bail!("truncated tcmsg");
        }
        let index = u32_at(payload, 4);
        let (handle, parent) = (u32_at(payload, 8), u32_at(payload, 12));
        if parent != TC_H_ROOT || handle != HTB_HANDLE {
            return Ok(None);
        }
        for attr in attributes(&payload[TCMSG..]) {
            let (ty, value) = attr?;
            if ty == TCA_KIND {
                return Ok((c_string(value)? == "htb").then_some(index));
            }
        }
        Ok(None)
    }

    /// A whole request: nlmsghdr (REQUEST | ACK | `extra_flags`), ifinfomsg, attributes.
    pub fn request(
        ty: u16,
        extra_flags: u16,
        seq: u32,
        ifindex: i32,
        ifi_flags: u32,
        ifi_change: u32,
        attrs: &[Vec<u8>],
    ) -> Vec<u8> {
        let body: usize = attrs.iter().map(Vec::len).sum();
        let len = HEADER + IFINFOMSG + body;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16 | extra_flags;
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        // struct ifinfomsg: family, pad, type, index, flags, change.
        out.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        out.extend_from_slice(&ifindex.to_ne_bytes());
        out.extend_from_slice(&ifi_flags.to_ne_bytes());
        out.extend_from_slice(&ifi_change.to_ne_bytes());
        for a in attrs {
            out.extend_from_slice(a);
        }
        out
    }

    pub const RTM_NEWNSID: u16 = 88;
    const RTM_GETNSID: u16 = 90;
    /// `struct rtgenmsg` (one byte: the family), padded.
    const RTGENMSG: usize = 4;
    const NETNSA_NSID: u16 = 1;
    const NETNSA_PID: u16 = 2;

    /// An RTM_GETNSID request for the namespace of process `pid`.
    pub fn nsid_request(seq: u32, pid: u32) -> Vec<u8> {
        let pid = attr(NETNSA_PID, &pid.to_ne_bytes());
        let len = HEADER + RTGENMSG + pid.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&RTM_GETNSID.to_ne_bytes());
        out.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        out.extend_from_slice(&pid);
        out
    }

    /// NETNSA_NSID of an RTM_NEWNSID payload; `None` for "not assigned" (a negative id).
    pub fn nsid(payload: &[u8]) -> Result<Option<i32>> {
        if payload.len() < RTGENMSG {
            bail!("truncated rtgenmsg");
        }
        for attr in attributes(&payload[RTGENMSG..]) {
            let (ty, value) = attr?;
            if ty == NETNSA_NSID {
                let id = u32_payload(value)? as i32;
                return Ok((id >= 0).then_some(id));
            }
        }
        Ok(None)
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    fn align(len: usize) -> usize {
        (len + 3) & !3
    }

    /// The messages of one datagram.
    pub fn messages(mut buf: &[u8]) -> impl Iterator<Item = Result<Message<'_>>> {
        std::iter::from_fn(move || {
            if buf.is_empty() {
                return None;
            }
            if buf.len() < HEADER {
                buf = &[];
                return Some(Err(anyhow!("truncated netlink header")));
            }
            let len = u32_at(buf, 0) as usize;
            if len < HEADER || len > buf.len() {
                buf = &[];
                return Some(Err(anyhow!("netlink message length {len} out of bounds")));
            }
            let msg = Message {
                ty: u16_at(buf, 4),
                flags: u16_at(buf, 6),
                seq: u32_at(buf, 8),
                payload: &buf[HEADER..len],
            };
            buf = &buf[align(len).min(buf.len())..];
            Some(Ok(msg))
        })
    }

    /// The attributes `(type, payload)` in `buf`.
    fn attributes(mut buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8])>> {
        std::iter::from_fn(move || {
            if buf.is_empty() {
                return None;
            }
            let len = if buf.len() >= 4 {
                u16_at(buf, 0) as usize
            } else {
                0
            };
            if len < 4 || len > buf.len() {
                buf = &[];
                return Some(Err(anyhow!("malformed attribute")));
            }
            let attr = (u16_at(buf, 2), &buf[4..len]);
            buf = &buf[align(len).min(buf.len())..];
            Some(Ok(attr))
        })
    }

    fn u32_payload(payload: &[u8]) -> Result<u32> {
        if payload.len() < 4 {
            bail!("a {}-byte attribute is not a u32", payload.len());
        }
        Ok(u32_at(payload, 0))
    }

    /// One RTM_NEWLINK payload. The outer error is a malformed message (the whole dump
    /// fails); the inner one is a link that cannot be read (a dump skips it).
    pub fn link(payload: &[u8]) -> Result<Result<Link>> {
        if payload.len() < IFINFOMSG {
            bail!("truncated ifinfomsg");
        }
        let attrs: Vec<(u16, &[u8])> = attributes(&payload[IFINFOMSG..]).collect::<Result<_>>()?;
        Ok(decode_link(payload, &attrs))
    }

    fn decode_link(payload: &[u8], attrs: &[(u16, &[u8])]) -> Result<Link> {
        let raw_index = u32_at(payload, 4) as i32;
        let index = u32::try_from(raw_index)
            .with_context(|| format!("kernel sent negative ifindex {raw_index}"))?;
        let ctx = || format!("parsing attributes of ifindex {index}");
        let (mut name, mut master, mut kind, mut mtu, mut alias) = (None, None, None, None, None);
        let mut netnsid = None;
        for &(ty, value) in attrs {
            match ty {
                IFLA_IFNAME => name = Some(c_string(value).with_context(ctx)?),
                IFLA_IFALIAS => alias = c_string(value).ok().filter(|a| !a.is_empty()),
                IFLA_MASTER => master = Some(u32_payload(value).with_context(ctx)?),
                IFLA_MTU => mtu = Some(u32_payload(value).with_context(ctx)?),
                IFLA_LINKINFO => kind = link_kind(value).with_context(ctx)?,
                IFLA_LINK_NETNSID => netnsid = Some(u32_payload(value).with_context(ctx)? as i32),
                _ => {}
            }
        }
        Ok(Link {
            name: name.ok_or_else(|| anyhow!("ifindex {index} has no IFLA_IFNAME"))?,
            index,
            master: master.filter(|&m| m != 0),
            kind,
            mtu,
            up: u32_at(payload, 8) & libc::IFF_UP as u32 != 0,
            alias,
            peer_elsewhere: netnsid.is_some(),
            netnsid,
        })
    }

    /// IFLA_INFO_KIND in a nested IFLA_LINKINFO (the first one, as neli's lookup).
    fn link_kind(linkinfo: &[u8]) -> Result<Option<String>> {
        for attr in attributes(linkinfo) {
            let (ty, value) = attr?;
            if ty == IFLA_INFO_KIND {
                return c_string(value).map(Some);
            }
        }
        Ok(None)
    }

    /// The error an NLMSG_ERROR or NLMSG_DONE payload reports, `None` for success, with the
    /// kernel's extended-ACK message as context when it sent one.
    pub fn error(flags: u16, payload: &[u8], is_error: bool) -> Result<Option<anyhow::Error>> {
        if payload.len() < 4 {
            // A bare NLMSG_DONE.
            return if is_error {
                Err(anyhow!("truncated netlink error"))
            } else {
                Ok(None)
            };
        }
        let errno = u32_at(payload, 0) as i32;
        if errno == 0 {
            return Ok(None);
        }
        let mut tlvs = &payload[4..];
        if is_error {
            // The request's header (and, unless capped, its payload) follows the errno.
            let echoed = if tlvs.len() >= HEADER {
                if flags & NLM_F_CAPPED != 0 {
                    HEADER
                } else {
                    align(u32_at(tlvs, 0) as usize)
                }
            } else {
                tlvs.len()
            };
            tlvs = &tlvs[echoed.min(tlvs.len())..];
        }
        let mut msg = None;
        if flags & NLM_F_ACK_TLVS != 0 {
            for attr in attributes(tlvs) {
                let (ty, value) = attr?;
                if ty == NLMSGERR_ATTR_MSG {
                    msg = c_string(value).ok();
                    break;
                }
            }
        }
        let os = io::Error::from_raw_os_error(errno.wrapping_neg());
        Ok(Some(match msg {
            Some(msg) if !msg.is_empty() => anyhow::Error::new(os).context(msg),
            _ => anyhow::Error::new(os),
        }))
    }
}

/// Decodes a NUL-terminated attribute string. neli's own `String` decoding
/// assumes a terminator is present and panics on an empty payload, so it is
/// not used on kernel data.
fn c_string(bytes: &[u8]) -> Result<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8(bytes[..end].to_vec()).context("attribute string is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_string_stops_at_nul_and_tolerates_missing_terminator() {
        assert_eq!(c_string(b"veth\0\0").unwrap(), "veth");
        assert_eq!(c_string(b"tun").unwrap(), "tun");
        assert_eq!(c_string(b"").unwrap(), "");
        assert!(c_string(b"\xff\0").is_err());
    }

    /// One netlink message: header, then `body` padded to 4 bytes.
    fn message(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize((m.len() + 3) & !3, 0);
        m
    }

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&(4 + payload.len() as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize((a.len() + 3) & !3, 0);
        a
    }

    fn newlink(index: i32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        for a in attrs {
            b.extend_from_slice(a);
        }
        b
    }

    /// A request built here is what the kernel expects: checked against a real kernel by
    /// setting the loopback's MTU to what it is (a no-op) and reading it back.
    #[test]
    fn requests_are_well_formed() {
        let a = raw::attr(4, &1500u32.to_ne_bytes());
        assert_eq!(a.len(), 8);
        let k = raw::attr(1, b"bridge\0");
        assert_eq!(k.len(), 12, "padded to 4 bytes");
        let msg = raw::request(raw::RTM_SETLINK, 0, 5, 1, 0, 0, &[a]);
        assert_eq!(msg.len(), 16 + 16 + 8);
        assert_eq!(
            u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize,
            msg.len()
        );
        let mut rtnl = Rtnl::open().unwrap();
        let lo = rtnl.by_name("lo").unwrap().unwrap();
        rtnl.set(
            lo.index,
            &SetLink {
                mtu: lo.mtu,
                ..SetLink::default()
            },
        )
        .unwrap_or_else(|e| {
            // Unprivileged: the kernel's EPERM proves the request was parsed.
            assert!(format!("{e:#}").contains("ermitted"), "{e:#}");
        });
    }

    #[test]
    fn raw_dump_messages_decode_like_neli() {
        let veth = newlink(
            7,
            &[
                attr(3, b"veth100i0\0"),
                attr(4, &1500u32.to_ne_bytes()),
                attr(10, &3u32.to_ne_bytes()),
                attr(18, &attr(1, b"veth\0")),
                attr(37, &4i32.to_ne_bytes()),
            ],
        );
        let mut dgram = message(raw::RTM_NEWLINK, 2, 9, &veth);
        dgram.extend(message(
            raw::RTM_NEWLINK,
            2,
            9,
            &newlink(1, &[attr(3, b"lo\0")]),
        ));
        dgram.extend(message(raw::NLMSG_DONE, 2, 9, &0i32.to_ne_bytes()));
        let msgs: Vec<_> = raw::messages(&dgram).collect::<Result<_>>().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!((msgs[2].ty, msgs[2].seq), (raw::NLMSG_DONE, 9));
        let link = raw::link(msgs[0].payload).unwrap().unwrap();
        assert_eq!(
            link,
            Link {
                name: "veth100i0".into(),
                index: 7,
                master: Some(3),
                kind: Some("veth".into()),
                mtu: Some(1500),
                up: false,
                alias: None,
                peer_elsewhere: true,
                netnsid: Some(4),
            }
        );
        let lo = raw::link(msgs[1].payload).unwrap().unwrap();
        assert_eq!((lo.kind, lo.master, lo.mtu), (None, None, None));
        assert!(raw::error(2, msgs[2].payload, false).unwrap().is_none());
        // Master 0 is no master; a link without a name or with a non-UTF-8 one is skipped
        // (inner error), a malformed message fails the dump (outer error).
        let m0 = raw::link(&newlink(
            2,
            &[attr(3, b"a\0"), attr(10, &0u32.to_ne_bytes())],
        ))
        .unwrap();
        assert_eq!(m0.unwrap().master, None);
        assert!(
            raw::link(&newlink(2, &[attr(4, &1500u32.to_ne_bytes())]))
                .unwrap()
                .is_err()
        );
        assert!(
            raw::link(&newlink(2, &[attr(3, b"\xff\0")]))
                .unwrap()
                .is_err()
        );
        assert!(
            raw::link(&newlink(-2, &[attr(3, b"a\0")]))
                .unwrap()
                .is_err()
        );
        assert!(raw::link(&newlink(2, &[vec![40, 0, 3, 0]])).is_err());
        assert!(raw::link(&[0u8; 8]).is_err());
        assert!(raw::messages(&dgram[..20]).any(|m| m.is_err()));
    }

    #[test]
    fn raw_errors_carry_the_kernel_message() {
        let mut body = (-libc::EOPNOTSUPP).to_ne_bytes().to_vec();
        body.extend(message(18, 0x301, 4, &[]));
        body.extend(attr(1, b"not here\0"));
        let e = raw::error(0x300, &body, true).unwrap().unwrap();
        assert_eq!(
            format!("{e:#}"),
            format!(
                "not here: {}",
                io::Error::from_raw_os_error(libc::EOPNOTSUPP)
            )
        );
        assert!(raw::error(0, &0i32.to_ne_bytes(), true).unwrap().is_none());
        let e = raw::error(0, &(-libc::EBUSY).to_ne_bytes(), false)
            .unwrap()
            .unwrap();
        assert_eq!(
            e.to_string(),
            io::Error::from_raw_os_error(libc::EBUSY).to_string()
        );
    }

    // Needs only a NETLINK_ROUTE socket, no privileges: every namespace has `lo`.
    #[test]
    fn loopback_lookups_agree() {
        let mut rtnl = Rtnl::open().unwrap();
        let lo = rtnl.by_name("lo").unwrap().expect("lo exists");
        assert_eq!(lo.kind, None);
        assert_eq!(rtnl.by_index(lo.index).unwrap().as_ref(), Some(&lo));
        assert!(rtnl.dump().unwrap().contains(&lo));
        assert_eq!(rtnl.by_name("nosuch0").unwrap(), None);
        assert!(rtnl.by_name("lo\0x").is_err());
    }
}
