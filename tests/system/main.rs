//! The system tests: the tool against a real Open vSwitch (userspace datapath), real ifupdown2,
//! nmstate, `ip` and `tc`, each test in network namespaces of its own. They need root; run them
//! with `scripts/test`, which installs what they need. As another user each test returns at once
//! after one line that says so ([`common::root_or_skip`]).
//!
//! One binary, so that the harness ([`common`]) compiles once.

mod common;

mod day2;
mod engine;
mod hardening;
mod hooks;
mod hostfiles;
mod lifecycle;
mod lxc;
mod mirrors;
mod package;
mod preload;
mod races;
mod raw;
mod reload;
mod replug;
mod sequences;
mod status;
