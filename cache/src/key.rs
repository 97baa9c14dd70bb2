//! Key and tag builders, so call sites never concatenate strings.

use std::fmt;

use crate::Error;

/// The longest key or tag, in bytes (before the namespace prefix).
pub(crate) const MAX_NAME_LEN: usize = 512;

/// Whether `name` may be a cache prefix or a namespace name: 1 to 64 letters, digits, `-`, `_`
/// or `.`.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `parts` joined in one allocation of the exact size: the Redis key names made per operation
/// (`format!` runs the formatting machinery, ~10x the instructions).
pub(crate) fn joined(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// A cache key built from parts joined by `:`.
///
/// ```
/// use tidewell_cache::Key;
/// assert_eq!(Key::new("user").part(42).as_str(), "user:42");
/// assert_eq!(Key::new("payments").part("user-7").part("page").part(2).as_str(), "payments:user-7:page:2");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

/// A tag: a name that many keys share, invalidated with one write (e.g. `user:42`, `payments`).
///
/// ```
/// use tidewell_cache::Tag;
/// assert_eq!(Tag::new("user").part(42).as_str(), "user:42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

macro_rules! name_type {
    ($ty:ident, $what:literal) => {
        impl $ty {
            #[doc = concat!("A ", $what, " starting with `base`.")]
            pub fn new(base: impl fmt::Display) -> Self {
                Self(base.to_string())
            }

            /// Appends `:part`.
            #[must_use]
            pub fn part(mut self, part: impl fmt::Display) -> Self {
                use fmt::Write as _;
                // ok to ignore: writing to a String cannot fail
                let _ = write!(self.0, ":{part}");
                self
            }

            #[doc = concat!("The ", $what, " as text.")]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $ty {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $ty {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({:?})"), self.0)
            }
        }
    };
}

name_type!(Key, "key");
name_type!(Tag, "tag");

fn check(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        Some("it is empty".into())
    } else if name.len() > max {
        Some(format!("it is {} bytes; the limit is {max}", name.len()))
    } else if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '{' || c == '}')
    {
        Some("it holds whitespace, a control character or a brace".into())
    } else {
        None
    }
}

fn short(name: &str) -> String {
    name.chars().take(64).collect()
}

impl Key {
    pub(crate) fn validate(&self, max: usize) -> Result<(), Error> {
        match check(&self.0, max) {
            None => Ok(()),
            Some(reason) => Err(Error::InvalidKey {
                key: short(&self.0),
                reason,
            }),
        }
    }
}

impl Tag {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let reason = if self.0.starts_with("__") {
            Some("tags starting with \"__\" are reserved".into())
        } else {
            check(&self.0, MAX_NAME_LEN)
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(Error::InvalidTag {
                tag: short(&self.0),
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(Key::new("user").part(1).validate(512).is_ok());
        for bad in ["", "has space", "tab\t", "{slot}", "new\nline"] {
            assert!(Key::from(bad).validate(512).is_err(), "{bad:?}");
        }
        let long = Key::from("x".repeat(513));
        assert!(
            matches!(long.validate(512), Err(Error::InvalidKey { reason, .. }) if reason.contains("513"))
        );
        assert!(Tag::from("__ns").validate().is_err());
        assert!(Tag::new("user").part(9).validate().is_ok());
    }
}
