//! A link's promiscuous flag over rtnetlink: read with `RTM_GETLINK`, set and cleared with
//! `RTM_NEWLINK` (`ifi_change = IFF_PROMISC`), as `ip link set DEV promisc on|off` does.
//!
//! The flag read is the one an administrator sets (`IFF_PROMISC` as the kernel reports it in
//! `ifi_flags`), not the promiscuity counter that packet sockets and the kernel datapath raise:
//! that is the flag the rules' `promisc=yes` asks for, and the only one this tool ever changes.
//! Deciding when to change it is [`crate::decide::mirrors`]'s business.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow, bail};
use neli::{
    consts::{
        nl::NlmF,
        rtnl::{Iff, Ifla, RtAddrFamily, Rtm},
        socket::NlFamily,
    },
    nl::{NlPayload, NlmsghdrBuilder},
    rtnl::{Ifinfomsg, IfinfomsgBuilder, RtattrBuilder},
    socket::synchronous::NlSocketHandle,
    types::RtBuffer,
    utils::Groups,
};

use crate::decide::ifname;

pub struct Promisc {
    sock: NlSocketHandle,
    seq: u32,
}

impl Promisc {
    pub fn open() -> Result<Promisc> {
        let sock = NlSocketHandle::connect(NlFamily::Route, None, Groups::empty())
            .context("opening NETLINK_ROUTE socket")?;
        let _ = sock.enable_ext_ack(true);
        Ok(Promisc { sock, seq: 0 })
    }

    /// The flag of each of `names` that exists as a link (the others are left out).
    pub fn states(&mut self, names: &BTreeSet<String>) -> Result<BTreeMap<String, bool>> {
        let mut states = BTreeMap::new();
        for name in names {
            if let Some(on) = self.get(name)? {
                states.insert(name.clone(), on);
            }
        }
        Ok(states)
    }

    /// Whether `name` is promiscuous; `None` when there is no such link.
    pub fn get(&mut self, name: &str) -> Result<Option<bool>> {
        let seq = self.send(
            Rtm::Getlink,
            NlmF::empty(),
            name,
            Iff::empty(),
            Iff::empty(),
        )?;
        match self
            .answer(seq)
            .with_context(|| format!("RTM_GETLINK for link {name}"))?
        {
            Answer::Link(flags) => Ok(Some(flags.contains(Iff::PROMISC))),
            Answer::NoDevice => Ok(None),
            Answer::Ack => Err(anyhow!("RTM_GETLINK for link {name}: no answer")),
        }
    }

    /// Sets (`on`) or clears the flag of `name`.
    pub fn set(&mut self, name: &str, on: bool) -> Result<()> {
        let flags = if on { Iff::PROMISC } else { Iff::empty() };
        let seq = self.send(Rtm::Newlink, NlmF::ACK, name, flags, Iff::PROMISC)?;
        let what = || {
            format!(
                "setting promisc {} on link {name}",
                if on { "on" } else { "off" }
            )
        };
        match self.answer(seq).with_context(what)? {
            Answer::Ack | Answer::Link(_) => Ok(()),
            Answer::NoDevice => Err(anyhow!("no such link")).with_context(what),
        }
    }

    fn send(&mut self, ty: Rtm, flags: NlmF, name: &str, iff: Iff, change: Iff) -> Result<u32> {
        // The kernel reads the name as a C string; only valid interface names are ever asked.
        if let Err(e) = ifname::validate(name) {
            bail!("{e}");
        }
        let attr = RtattrBuilder::default()
            .rta_type(Ifla::Ifname)
            .rta_payload(name)
            .build()
            .context("building IFLA_IFNAME attribute")?;
        let info = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(0)
            .ifi_flags(iff)
            .ifi_change(change)
            .rtattrs([attr].into_iter().collect::<RtBuffer<_, _>>())
            .build()
            .context("building ifinfomsg")?;
        self.seq = self.seq.wrapping_add(1);
        let msg = NlmsghdrBuilder::default()
            .nl_type(ty)
            .nl_flags(NlmF::REQUEST | flags)
            .nl_seq(self.seq)
            .nl_payload(NlPayload::Payload(info))
            .build()
            .context("building rtnetlink request")?;
        self.sock.send(&msg).context("sending rtnetlink request")?;
        Ok(self.seq)
    }

    fn answer(&mut self, seq: u32) -> Result<Answer> {
        loop {
            let (msgs, _) = self
                .sock
                .recv::<Rtm, Ifinfomsg>()
                .context("receiving rtnetlink reply")?;
            for msg in msgs {
                let msg = msg.context("parsing rtnetlink reply")?;
                if *msg.nl_seq() != seq {
                    continue;
                }
                return match msg.nl_payload() {
                    NlPayload::Payload(info) => Ok(Answer::Link(*info.ifi_flags())),
                    NlPayload::Ack(_) => Ok(Answer::Ack),
                    NlPayload::Err(e) if -*e.error() == libc::ENODEV => Ok(Answer::NoDevice),
                    NlPayload::Err(e) => Err(std::io::Error::from_raw_os_error(-*e.error()).into()),
                    _ => Err(anyhow!("unexpected rtnetlink reply")),
                };
            }
        }
    }
}

enum Answer {
    Link(Iff),
    Ack,
    NoDevice,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Needs only a NETLINK_ROUTE socket, no privileges: every namespace has `lo`.
    #[test]
    fn reads_the_flag_of_lo_and_knows_missing_links() {
        let mut p = Promisc::open().unwrap();
        assert_eq!(p.get("lo").unwrap(), Some(false));
        assert_eq!(p.get("nosuch0").unwrap(), None);
        assert!(p.get("a b").is_err());
        let names: BTreeSet<String> = ["lo", "nosuch0"].map(String::from).into();
        assert_eq!(
            p.states(&names).unwrap(),
            [("lo".to_string(), false)].into()
        );
    }
}
