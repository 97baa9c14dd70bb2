//! The holding tab's bookkeeping in the shared realtime mode: which tab wants which room, and
//! which tabs stopped answering. Plain Rust, tested natively; the browser half drives it.
//!
//! Every tab tells the holder its whole room list (when it changes, and in answer to each census
//! the holder runs every few seconds); a room stays joined while any tab lists it. A tab that
//! closes says so; one that crashed is forgotten after it missed two censuses in a row.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

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

/// A position per room (a few rooms: a vector keeps the `.wasm` small).
#[derive(Debug, Default)]
pub(crate) struct Positions(Vec<(String, Since)>);

impl Positions {
    /// The position in `room`.
    pub(crate) fn get(&self, room: &str) -> Option<&Since> {
        self.0.iter().find(|(r, _)| r == room).map(|(_, p)| p)
    }

    /// Sets the position in `room`.
    pub(crate) fn insert(&mut self, room: String, at: Since) {
        match self.0.iter_mut().find(|(r, _)| *r == room) {
            Some((_, p)) => *p = at,
            None => self.0.push((room, at)),
        }
    }

    /// Forgets `room`; answers its position.
    pub(crate) fn remove(&mut self, room: &str) -> Option<Since> {
        let i = self.0.iter().position(|(r, _)| r == room)?;
        Some(self.0.swap_remove(i).1)
    }
}

/// Which rooms the other tabs want.
#[derive(Debug, Default)]
pub(crate) struct Interests {
    /// Per tab: its id, the census it last answered, and its rooms (a few tabs, a few rooms:
    /// vectors keep the `.wasm` small).
    tabs: Vec<(String, u64, Vec<String>)>,
    census: u64,
}

impl Interests {
    /// Records `tab`'s whole room list (it answered the current census).
    pub(crate) fn announce(&mut self, tab: &str, rooms: Vec<String>) {
        self.forget(tab);
        self.tabs.push((tab.to_owned(), self.census, rooms));
    }

    /// `tab` closed.
    pub(crate) fn forget(&mut self, tab: &str) {
        self.tabs.retain(|(t, _, _)| t != tab);
    }

    /// Starts a census: tabs that answered neither of the last two are forgotten; answers
    /// whether any was.
    pub(crate) fn census(&mut self) -> bool {
        self.census += 1;
        let floor = self.census.saturating_sub(2);
        let before = self.tabs.len();
        self.tabs.retain(|(_, heard, _)| *heard >= floor);
        self.tabs.len() != before
    }

    /// Adds every room some tab wants to `rooms` (once each).
    pub(crate) fn add_rooms(&self, rooms: &mut Vec<String>) {
        for (_, _, theirs) in &self.tabs {
            for room in theirs {
                if !rooms.contains(room) {
                    rooms.push(room.clone());
                }
            }
        }
    }

    /// Forgets every tab (this tab stopped holding the connection).
    pub(crate) fn clear(&mut self) {
        self.tabs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rooms: &[&str]) -> Vec<String> {
        rooms.iter().map(|r| (*r).to_owned()).collect()
    }

    fn rooms(i: &Interests) -> Vec<String> {
        let mut all = Vec::new();
        i.add_rooms(&mut all);
        all.sort();
        all
    }

    #[test]
    fn a_room_stays_wanted_until_the_last_tab_leaves_it() {
        let mut i = Interests::default();
        i.announce("a", set(&["r1", "r2"]));
        i.announce("b", set(&["r2"]));
        assert_eq!(rooms(&i), set(&["r1", "r2"]));
        i.announce("a", set(&["r1"]));
        assert!(rooms(&i).contains(&"r2".to_owned()), "b still wants r2");
        i.forget("b");
        assert!(!rooms(&i).contains(&"r2".to_owned()));
        assert!(rooms(&i).contains(&"r1".to_owned()));
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
        assert!(!rooms(&i).contains(&"r2".to_owned()));
        assert!(rooms(&i).contains(&"r1".to_owned()));
    }

    #[test]
    fn positions_are_kept_per_room() {
        let mut p = Positions::default();
        let at = |o| Since {
            epoch: "e".into(),
            offset: o,
        };
        p.insert("a".into(), at(1));
        p.insert("b".into(), at(2));
        p.insert("a".into(), at(3));
        assert_eq!(p.get("a"), Some(&at(3)));
        assert_eq!(p.remove("a"), Some(at(3)));
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some(&at(2)));
        assert_eq!(p.remove("zz"), None);
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
