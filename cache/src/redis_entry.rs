//! The Redis entry format (version 1): `tw1 <expires-at ms> <n> <tag key> <version> … \n<value>`,
//! one string per entry naming the entry's tags and the version each had when it was written,
//! then the value. Keys, tags and versions hold no whitespace (the builders refuse it), so spaces
//! separate them. A key that does not hold this format (an entry of the older hash layout, or a
//! foreign value) reads as a miss and is replaced by the next write.

use bytes::Bytes;

/// An entry as stored: the value and the tag versions it recorded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// When the entry expires, in Unix milliseconds.
    pub(crate) expires_at_ms: u64,
    /// Each tag key with the version it had when the entry was written.
    pub(crate) tags: Vec<(&'a str, &'a str)>,
    /// The encoded value.
    pub(crate) value: Bytes,
}

/// Parses an entry (see the module docs); `None` if `raw` is not one.
pub(crate) fn parse_entry(raw: &Bytes) -> Option<Entry<'_>> {
    let newline = raw.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(raw.get(..newline)?).ok()?;
    let mut words = header.split(' ');
    if words.next()? != "tw1" {
        return None;
    }
    let expires_at_ms = words.next()?.parse().ok()?;
    let n: usize = words.next()?.parse().ok()?;
    // Bounded by the header's own length, so a corrupt count cannot ask for a huge allocation.
    let mut tags = Vec::with_capacity(n.min(header.len() / 4));
    for _ in 0..n {
        tags.push((words.next()?, words.next()?));
    }
    if words.next().is_some() {
        return None;
    }
    Some(Entry {
        expires_at_ms,
        tags,
        value: raw.slice(newline + 1..),
    })
}

/// An entry as stored (see the module docs).
pub(crate) fn format_entry(
    expires_at_ms: u64,
    tags: &[String],
    versions: &[&str],
    value: &[u8],
) -> Vec<u8> {
    let header: usize = tags
        .iter()
        .zip(versions)
        .map(|(t, v)| t.len() + v.len() + 2)
        .sum();
    let mut out = Vec::with_capacity(32 + header + value.len());
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b"tw1 ");
    out.extend_from_slice(number.format(expires_at_ms).as_bytes());
    out.push(b' ');
    out.extend_from_slice(number.format(tags.len()).as_bytes());
    for (t, v) in tags.iter().zip(versions) {
        out.push(b' ');
        out.extend_from_slice(t.as_bytes());
        out.push(b' ');
        out.extend_from_slice(v.as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(expires_at_ms: u64, tags: &[(&str, &str)], value: &[u8]) -> Bytes {
        let (names, versions): (Vec<String>, Vec<&str>) =
            tags.iter().map(|(t, v)| ((*t).to_owned(), *v)).unzip();
        Bytes::from(format_entry(expires_at_ms, &names, &versions, value))
    }

    #[test]
    fn entries_parse_back() {
        let raw = stored(
            1_700_000_000_000,
            &[("{tw}:t:user:7", "0"), ("{tw}:t:all", "0195f0a1b2c3")],
            b"j{\"a\":\"x y\\nz\"}",
        );
        let entry = parse_entry(&raw).unwrap();
        assert_eq!(entry.expires_at_ms, 1_700_000_000_000);
        assert_eq!(
            entry.tags,
            [("{tw}:t:user:7", "0"), ("{tw}:t:all", "0195f0a1b2c3")]
        );
        assert_eq!(&entry.value[..], b"j{\"a\":\"x y\\nz\"}");

        let untagged = stored(5, &[], b"");
        let entry = parse_entry(&untagged).unwrap();
        assert!(entry.tags.is_empty());
        assert!(entry.value.is_empty());
        // A value may hold newlines of its own: only the first one ends the header.
        let raw = stored(5, &[("t", "1")], b"a\nb\n");
        assert_eq!(&parse_entry(&raw).unwrap().value[..], b"a\nb\n");
    }

    #[test]
    fn anything_else_is_not_an_entry() {
        for raw in [
            &b""[..],
            b"plain value",
            b"tw1 5 1 t\nv",              // a tag without its version
            b"tw1 5 2 t 1\nv",            // fewer tags than counted
            b"tw1 5 0 t 1\nv",            // more words than counted
            b"tw2 5 0\nv",                // another format version
            b"tw1 x 0\nv",                // expiry not a number
            b"tw1 5 99999999999999999\n", // a count that would be a huge allocation
            b"tw1 5 0",                   // no end of header
            b"tw1 5 1 \xff 1\nv",         // not UTF-8
        ] {
            assert_eq!(parse_entry(&Bytes::copy_from_slice(raw)), None, "{raw:?}");
        }
    }
}
