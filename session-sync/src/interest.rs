//! The holding tab's bookkeeping in the shared realtime mode: which tab wants which room, and
//! which tabs stopped answering. Plain Rust, tested natively; the browser half drives it.
//!
//! Every tab tells the holder its whole room list (when it changes, and in answer to each census
//! the holder runs every few seconds); a room stays joined while any tab lists it. A tab that
//! closes says so; one that crashed is forgotten after it missed two censuses in a row.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::collections::{BTreeMap, BTreeSet};

/// A position in a room: the `since` of a subscribe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Since {
    /// The room's history epoch.
    pub(crate) epoch: String,
    /// The last offset seen.
    pub(crate) offset: u64,
}

impl Since {
    /// Whether an event at `epoch`/`offset` is one this position has already seen.
    pub(crate) fn covers(&self, epoch: &str, offset: u64) -> bool {
        self.epoch == epoch && offset <= self.offset
    }

    /// The position to resume from when both `self` and `other` must be covered: the older one
    /// in the same epoch; `other` (the one asked for) when the epochs differ.
    pub(crate) fn earliest(self, other: Since) -> Since {
        if self.epoch == other.epoch && self.offset <= other.offset {
            self
        } else {
            other
        }
    }
}

/// Which rooms the other tabs want.
#[derive(Debug, Default)]
pub(crate) struct Interests {
    /// Per tab: the census it last answered, and its rooms.
    tabs: BTreeMap<String, (u64, BTreeSet<String>)>,
    census: u64,
}

impl Interests {
    /// Records `tab`'s whole room list (it answered the current census).
    pub(crate) fn announce(&mut self, tab: &str, rooms: BTreeSet<String>) {
        self.tabs.insert(tab.to_owned(), (self.census, rooms));
    }

    /// `tab` closed.
    pub(crate) fn forget(&mut self, tab: &str) {
        self.tabs.remove(tab);
    }

    /// Starts a census: tabs that answered neither of the last two are forgotten; answers
    /// whether any was.
    pub(crate) fn census(&mut self) -> bool {
        self.census += 1;
        let floor = self.census.saturating_sub(2);
        let before = self.tabs.len();
        self.tabs.retain(|_, (heard, _)| *heard >= floor);
        self.tabs.len() != before
    }

    /// Every room some tab wants.
    pub(crate) fn rooms(&self) -> BTreeSet<String> {
        self.tabs
            .values()
            .flat_map(|(_, rooms)| rooms.iter().cloned())
            .collect()
    }

    /// Forgets every tab (this tab stopped holding the connection).
    pub(crate) fn clear(&mut self) {
        self.tabs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rooms: &[&str]) -> BTreeSet<String> {
        rooms.iter().map(|r| (*r).to_owned()).collect()
    }

    #[test]
    fn a_room_stays_wanted_until_the_last_tab_leaves_it() {
        let mut i = Interests::default();
        i.announce("a", set(&["r1", "r2"]));
        i.announce("b", set(&["r2"]));
        assert_eq!(i.rooms(), set(&["r1", "r2"]));
        i.announce("a", set(&["r1"]));
        assert!(i.rooms().contains("r2"), "b still wants r2");
        i.forget("b");
        assert!(!i.rooms().contains("r2"));
        assert!(i.rooms().contains("r1"));
    }

    #[test]
    fn a_silent_tab_is_forgotten_after_two_censuses() {
        let mut i = Interests::default();
        i.announce("alive", set(&["r1"]));
        i.announce("crashed", set(&["r2"]));
        assert!(!i.census());
        i.announce("alive", set(&["r1"]));
        assert!(!i.census(), "one missed census is forgiven");
        i.announce("alive", set(&["r1"]));
        assert!(i.census());
        assert!(!i.rooms().contains("r2"));
        assert!(i.rooms().contains("r1"));
    }

    #[test]
    fn positions_order_within_an_epoch_only() {
        let at = |e: &str, o| Since {
            epoch: e.into(),
            offset: o,
        };
        assert!(at("e", 5).covers("e", 5));
        assert!(!at("e", 5).covers("e", 6));
        assert!(!at("e", 5).covers("f", 1));
        assert_eq!(at("e", 5).earliest(at("e", 3)), at("e", 3));
        assert_eq!(at("e", 3).earliest(at("e", 5)), at("e", 3));
        assert_eq!(at("e", 3).earliest(at("f", 9)), at("f", 9));
    }
}
