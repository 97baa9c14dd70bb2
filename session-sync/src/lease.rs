//! The `localStorage` lease behind `refreshOnce` where the Web Locks API is missing: one record
//! naming the holder and when its hold ends.
//!
//! `localStorage` has no compare-and-swap, so a tab takes the lease by writing its record, waiting
//! a moment for other tabs' writes to land, and reading it back: the tab whose record is there
//! holds it. A holder that dies (tab closed, page frozen) holds it only until `expires_at`.
//!
//! ```
//! use tidewell_session_sync::lease::Lease;
//!
//! let mine = Lease { owner: "tab-a".into(), nonce: "n1".into(), expires_at: 1_000.0 };
//! let text = mine.encode();
//! assert!(Lease::may_take(Some(&text), "tab-b", 999.0) == false);
//! assert!(Lease::may_take(Some(&text), "tab-b", 1_000.0));
//! assert!(Lease::may_take(None, "tab-b", 0.0));
//! assert!(Lease::decode(&text).is_some_and(|l| l.is_held_by("tab-a", "n1", 500.0)));
//! ```

/// A lease record, stored as `v1|<owner>|<nonce>|<expires_at>` (no JSON parser needed in the
/// browser).
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// The holder's tab id.
    pub owner: String,
    /// Unique per attempt, so that a tab tells its current attempt from an older one.
    pub nonce: String,
    /// When the hold ends, in milliseconds since the Unix epoch (whole milliseconds are kept).
    pub expires_at: f64,
}

impl Lease {
    /// The stored text.
    pub fn encode(&self) -> String {
        // Truncation intended: whole milliseconds; negative times read as 0.
        let expires = self.expires_at.max(0.0) as u64;
        format!("v1|{}|{}|{expires}", self.owner, self.nonce)
    }

    /// Parses a stored record; `None` for anything else (treated as no lease).
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('|');
        let (Some("v1"), Some(owner), Some(nonce), Some(expires), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if owner.is_empty() || nonce.is_empty() {
            return None;
        }
        Some(Self {
            owner: owner.to_owned(),
            nonce: nonce.to_owned(),
            expires_at: expires.parse::<u64>().ok()? as f64,
        })
    }

    /// Whether `tab` may write its record now, given the stored one: there is none, it is not a
    /// lease, it expired, or it is `tab`'s own.
    pub fn may_take(stored: Option<&str>, tab: &str, now: f64) -> bool {
        match stored.and_then(Self::decode) {
            None => true,
            Some(lease) => lease.owner == tab || lease.expires_at <= now,
        }
    }

    /// Whether this record is `tab`'s attempt `nonce` and still holds at `now`.
    pub fn is_held_by(&self, tab: &str, nonce: &str, now: f64) -> bool {
        self.is_attempt(tab, nonce) && self.expires_at > now
    }

    /// Whether this record is `tab`'s attempt `nonce`, expired or not (no other tab wrote since).
    pub fn is_attempt(&self, tab: &str, nonce: &str) -> bool {
        self.owner == tab && self.nonce == nonce
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_in_the_slot_does_not_block_anyone() {
        for garbage in [
            "{",
            "null",
            "v1|a|b",
            "v1|a|b|x",
            "v1||b|5",
            "v2|a|b|5",
            "v1|a|b|5|6",
        ] {
            assert!(Lease::decode(garbage).is_none(), "{garbage}");
            assert!(Lease::may_take(Some(garbage), "t", 0.0), "{garbage}");
        }
    }

    #[test]
    fn a_live_lease_of_another_tab_blocks_until_it_expires() {
        let l = Lease {
            owner: "a".into(),
            nonce: "1".into(),
            expires_at: 100.0,
        };
        let s = l.encode();
        assert!(!Lease::may_take(Some(&s), "b", 99.9));
        assert!(Lease::may_take(Some(&s), "a", 99.9));
        assert!(Lease::may_take(Some(&s), "b", 100.0));
        assert!(l.is_held_by("a", "1", 99.0));
        assert!(!l.is_held_by("a", "2", 99.0));
        assert!(!l.is_held_by("a", "1", 100.0));
        assert!(!l.is_held_by("b", "1", 99.0));
        assert!(
            l.is_attempt("a", "1"),
            "expired, but still this attempt's record"
        );
        assert!(!l.is_attempt("a", "2"));
    }
}
