//! The names this process has already handed to the tool: a fixed table, lock-free.
//!
//! Slots fill strictly in order and are never emptied, and a name is only written into the
//! first empty slot, after comparing it with every filled slot before. Two threads adding the
//! same name therefore race for the same slot: one wins, the other finds the name there.
//!
//! No lock is taken, so a `fork` of the application at any moment leaves the child a usable
//! table. A slot caught half-written (its writer was interrupted by a signal handler that calls
//! back into the library, or stayed behind in the parent of a `fork`) is waited for a bounded
//! time and then treated as holding another name; the worst case is one extra, harmless `plug`.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::names::IfName;

/// Names remembered per process. A process creating more guest NICs than this (a launcher
/// running for months) stops spawning for new names; see `docs/preload.md`.
pub const CAPACITY: usize = 128;

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const FULL: u8 = 2;

pub struct Table {
    slots: [Slot; CAPACITY],
}

struct Slot {
    state: AtomicU8,
    name: [AtomicU64; 2],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    /// The name is new and now recorded: spawn for it.
    New,
    /// The name was recorded before.
    Seen,
    /// The table is full; nothing recorded.
    Full,
}

impl Table {
    pub const fn new() -> Table {
        #[allow(clippy::declare_interior_mutable_const)]
        const SLOT: Slot = Slot {
            state: AtomicU8::new(EMPTY),
            name: [AtomicU64::new(0), AtomicU64::new(0)],
        };
        Table {
            slots: [SLOT; CAPACITY],
        }
    }

    /// Whether `name` is recorded. Read-only: the fast path of every repeated call.
    pub fn contains(&self, name: &IfName) -> bool {
        let words = name.words();
        for slot in &self.slots {
            match slot.settled() {
                EMPTY => return false,
                FULL if slot.holds(words) => return true,
                _ => {}
            }
        }
        false
    }

    /// Records `name` unless it is there already.
    pub fn insert(&self, name: &IfName) -> Insert {
        let words = name.words();
        let mut i = 0;
        while let Some(slot) = self.slots.get(i) {
            match slot.settled() {
                EMPTY => {
                    if slot
                        .state
                        .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Acquire)
                        .is_ok()
                    {
                        slot.name[0].store(words[0], Ordering::Relaxed);
                        slot.name[1].store(words[1], Ordering::Relaxed);
                        slot.state.store(FULL, Ordering::Release);
                        return Insert::New;
                    }
                    continue; // lost the race for this slot: look at what the winner wrote
                }
                FULL if slot.holds(words) => return Insert::Seen,
                _ => {}
            }
            i += 1;
        }
        Insert::Full
    }
}

impl Slot {
    /// The slot's state, waiting a bounded time for a write in progress to finish.
    fn settled(&self) -> u8 {
        let mut spins = 0;
        loop {
            let state = self.state.load(Ordering::Acquire);
            if state != WRITING {
                return state;
            }
            spins += 1;
            if !crate::backoff(spins) {
                return WRITING;
            }
        }
    }

    fn holds(&self, words: [u64; 2]) -> bool {
        self.name[0].load(Ordering::Relaxed) == words[0]
            && self.name[1].load(Ordering::Relaxed) == words[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> IfName {
        IfName::parse(n.as_bytes()).unwrap()
    }

    #[test]
    fn each_name_once() {
        let t = Table::new();
        assert!(!t.contains(&name("veth1")));
        assert_eq!(t.insert(&name("veth1")), Insert::New);
        assert_eq!(t.insert(&name("veth1")), Insert::Seen);
        assert!(t.contains(&name("veth1")));
        assert!(!t.contains(&name("veth2")));
        assert_eq!(t.insert(&name("veth2")), Insert::New);
        assert_eq!(t.insert(&name("veth1")), Insert::Seen);
    }

    #[test]
    fn full_table_records_nothing_more() {
        let t = Table::new();
        for i in 0..CAPACITY {
            let n = format!("tap{i}");
            assert_eq!(t.insert(&name(&n)), Insert::New);
        }
        assert_eq!(t.insert(&name("tap0")), Insert::Seen);
        assert_eq!(t.insert(&name("tapnew")), Insert::Full);
        assert!(!t.contains(&name("tapnew")));
    }

    #[test]
    fn concurrent_inserts_of_the_same_names_succeed_once_each() {
        let t = Table::new();
        let news = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..40 {
                        if t.insert(&name(&format!("veth{i}"))) == Insert::New {
                            news.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(news.load(Ordering::Relaxed), 40);
    }
}
