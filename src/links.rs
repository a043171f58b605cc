//! Reading network links over rtnetlink (`RTM_GETLINK`) with neli 0.7.
//!
//! Uses neli's plain synchronous `NlSocketHandle` rather than `NlRouter`:
//! the router spawns a background thread per instance, while a CLI only
//! needs strict request/response on one socket.

use std::io;

use anyhow::{Context, Result, anyhow, bail};
use neli::{
    attr::Attribute,
    consts::{
        nl::{NlmF, Nlmsg, NlmsgerrAttr},
        rtnl::{Ifla, IflaInfo, RtAddrFamily, Rtm},
        socket::NlFamily,
    },
    err::{Nlmsgerr, SocketError},
    iter::NlBufferIter,
    nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder},
    rtnl::{Ifinfomsg, IfinfomsgBuilder, Rtattr, RtattrBuilder},
    socket::synchronous::NlSocketHandle,
    types::{Buffer, RtBuffer},
    utils::{Groups, synchronous::BufferPoolGuard},
};

/// One host network link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,         // IFLA_IFNAME
    pub index: u32,           // ifi_index
    pub master: Option<u32>,  // IFLA_MASTER, None when absent or 0
    pub kind: Option<String>, // IFLA_LINKINFO -> IFLA_INFO_KIND, None when absent
    pub mtu: Option<u32>,     // IFLA_MTU
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

    /// Receives one datagram (which may hold several netlink messages).
    fn recv(&self) -> Result<NlBufferIter<Rtm, Ifinfomsg, BufferPoolGuard<'_>>> {
        loop {
            match self.sock.recv::<Rtm, Ifinfomsg>() {
                Ok((iter, _groups)) => return Ok(iter),
                Err(SocketError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("receiving rtnetlink reply"),
            }
        }
    }

    /// Reads the answer to a non-dump RTM_GETLINK.
    fn recv_single(&mut self, seq: u32) -> Result<Option<Link>> {
        loop {
            for msg in self.recv()? {
                let msg = msg.context("parsing rtnetlink reply")?;
                // Leftovers of an earlier, abandoned request carry an older seq.
                if *msg.nl_seq() != seq {
                    continue;
                }
                return match msg.nl_payload() {
                    NlPayload::Payload(ifinfo) => parse_link(ifinfo).map(Some),
                    NlPayload::Err(err) if *err.error() == -libc::ENODEV => Ok(None),
                    NlPayload::Err(err) => Err(kernel_error(err)),
                    other => Err(anyhow!("unexpected reply: {other:?}")),
                };
            }
        }
    }

    /// Collects a dump until NLMSG_DONE. Returns `Ok(None)` when the kernel
    /// flagged the dump as interrupted, so the caller can retry.
    fn collect_dump(&mut self, seq: u32) -> Result<Option<Vec<Link>>> {
        let mut links = Vec::new();
        let mut interrupted = false;
        // The dump is always read to NLMSG_DONE: the kernel only continues a dump as we recv,
        // and an unfinished dump makes the next request on this socket fail with EBUSY.
        loop {
            for msg in self.recv()? {
                let msg = msg.context("parsing rtnetlink dump message")?;
                if *msg.nl_seq() != seq {
                    continue;
                }
                interrupted |= msg.nl_flags().contains(NlmF::DUMP_INTR);
                match msg.nl_payload() {
                    // A link this tool cannot read (a name that is not UTF-8) cannot be a
                    // guest NIC either; it must not stop the others from being reconciled.
                    NlPayload::Payload(ifinfo) => match parse_link(ifinfo) {
                        Ok(link) => links.push(link),
                        Err(e) => log::warn!("skipping a link: {e:#}"),
                    },
                    NlPayload::DumpExtAck(done) if *done.error() != 0 => {
                        return Err(kernel_error(done)).context("RTM_GETLINK dump");
                    }
                    NlPayload::DumpExtAck(_) | NlPayload::Empty if is_done(&msg) => {
                        return Ok((!interrupted).then_some(links));
                    }
                    // An error instead of data means the dump never started.
                    NlPayload::Err(err) => {
                        return Err(kernel_error(err)).context("RTM_GETLINK dump");
                    }
                    _ => {}
                }
            }
        }
    }
}

fn is_done(msg: &Nlmsghdr<Rtm, Ifinfomsg>) -> bool {
    u16::from(*msg.nl_type()) == u16::from(Nlmsg::Done)
}

/// Turns a netlink error (or failed NLMSG_DONE) into an `io::Error` with
/// the kernel's extended-ACK message as context when it sent one.
fn kernel_error<M>(err: &Nlmsgerr<M>) -> anyhow::Error {
    // wrapping_neg: the errno comes from the kernel, never panic on it.
    let os = io::Error::from_raw_os_error(err.error().wrapping_neg());
    let msg = err
        .ext_ack()
        .get_attr_handle()
        .get_attribute(NlmsgerrAttr::Msg)
        .and_then(|attr| c_string(attr.nla_payload().as_ref()).ok());
    match msg {
        Some(msg) if !msg.is_empty() => anyhow::Error::new(os).context(msg),
        _ => anyhow::Error::new(os),
    }
}

fn parse_link(ifinfo: &Ifinfomsg) -> Result<Link> {
    let index = u32::try_from(*ifinfo.ifi_index())
        .with_context(|| format!("kernel sent negative ifindex {}", ifinfo.ifi_index()))?;
    let ctx = || format!("parsing attributes of ifindex {index}");

    let (mut name, mut master, mut kind, mut mtu) = (None, None, None, None);
    for attr in ifinfo.rtattrs().get_attr_handle().iter() {
        match attr.rta_type() {
            Ifla::Ifname => name = Some(c_string(attr.payload().as_ref()).with_context(ctx)?),
            Ifla::Master => master = Some(attr.get_payload_as::<u32>().with_context(ctx)?),
            Ifla::Mtu => mtu = Some(attr.get_payload_as::<u32>().with_context(ctx)?),
            Ifla::Linkinfo => kind = link_kind(attr).with_context(ctx)?,
            _ => {}
        }
    }
    Ok(Link {
        name: name.ok_or_else(|| anyhow!("ifindex {index} has no IFLA_IFNAME"))?,
        index,
        master: master.filter(|&m| m != 0),
        kind,
        mtu,
    })
}

/// IFLA_INFO_KIND lives inside the nested IFLA_LINKINFO; physical NICs and
/// loopback carry no kind at all.
fn link_kind(linkinfo: &Rtattr<Ifla, Buffer>) -> Result<Option<String>> {
    let nested = linkinfo.get_attr_handle::<IflaInfo>()?;
    nested
        .get_attribute(IflaInfo::Kind)
        .map(|kind| c_string(kind.payload().as_ref()))
        .transpose()
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
