use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test (in this process or another) uses: `<prefix>-<pid>-<n>-<random>`,
/// lowercase ASCII letters, digits and `-` only, so it is safe as a queue, exchange, key prefix or
/// (with `-` replaced) database name.
///
/// ```
/// let a = tidewell_testkit::unique_name("orders");
/// let b = tidewell_testkit::unique_name("orders");
/// assert!(a.starts_with("orders-") && a != b);
/// ```
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag: String = (0..6)
        .map(|_| fastrand::alphanumeric().to_ascii_lowercase())
        .collect();
    format!("{prefix}-{}-{n}-{tag}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_safe() {
        let names: HashSet<String> = (0..1_000).map(|_| unique_name("t")).collect();
        assert_eq!(names.len(), 1_000);
        assert!(names.iter().all(|n| {
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }));
    }
}
