//! A report built by hand for the renderings' unit tests: two NICs ok, one missing, one
//! drifting, one invalid; a host file in sync and one out of sync; a mirror rule waiting.

use super::*;

fn nic(name: &str, state: State) -> Nic {
    Nic {
        name: name.into(),
        guest: NicId::parse(name),
        decision: DecisionKind::Attach,
        desired: None,
        actual: None,
        state,
        reason: (state != State::Ok).then(|| format!("{name} is {}", state.as_str())),
        pending: None,
        source: None,
    }
}

fn file(path: &str, state: FileState) -> File {
    File {
        role: "stanzas".into(),
        path: path.into(),
        state,
        reason: None,
        source_line: None,
    }
}

pub(super) fn sample() -> Report {
    Report {
        nics: vec![
            nic("tap100i0", State::Ok),
            nic("tap101i0", State::Missing),
            nic("tap102i0", State::Drift),
            nic("tap103i0", State::Invalid),
            nic("tap104i0", State::Ok),
        ],
        stale: Vec::new(),
        files: vec![
            file(
                "/etc/network/interfaces.d/ovs-autoattach",
                FileState::InSync,
            ),
            file("/etc/x", FileState::OutOfSync),
        ],
        mirrors: vec![Mirror {
            rule: "span1".into(),
            state: RuleState::Waiting,
            reason: Some("waiting for eno1".into()),
            stats: None,
        }],
        other: Vec::new(),
    }
}
