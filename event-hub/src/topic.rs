//! AMQP topic patterns: words separated by `.`, where `*` matches one word and `#` zero or more.

/// Whether `pattern` is a valid binding pattern: non-empty words of printable ASCII; `*` and `#`
/// only as whole words.
pub(crate) fn is_valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 255
        && pattern.split('.').all(|w| {
            !w.is_empty()
                && (w == "*"
                    || w == "#"
                    || w.bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'#'))
        })
}

/// Whether event type (routing key) `key` matches topic `pattern`, with RabbitMQ's rules: words
/// separated by `.`, `*` matches one word, `#` zero or more.
///
/// ```
/// use tidewell_event_hub::topic_matches;
/// assert!(topic_matches("payments.payment.*", "payments.payment.created"));
/// assert!(topic_matches("admin.#", "admin.user.role.changed"));
/// assert!(!topic_matches("payments.*", "payments.payment.created"));
/// ```
pub fn matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    match_words(&pattern, &key)
}

fn match_words(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => {
            // `#` takes zero words, or one word and stays.
            match_words(rest, key)
                || (!key.is_empty() && match_words(pattern, key.get(1..).unwrap_or_default()))
        }
        Some((&"*", rest)) => {
            !key.is_empty() && match_words(rest, key.get(1..).unwrap_or_default())
        }
        Some((word, rest)) => {
            key.first() == Some(word) && match_words(rest, key.get(1..).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_topic_semantics() {
        let cases = [
            ("#", "a", true),
            ("#", "a.b.c", true),
            ("auth.#", "auth", true),
            ("auth.#", "auth.user.created", true),
            ("auth.#", "authz.user", false),
            ("auth.user.#", "auth.user.created", true),
            ("auth.user.#", "auth.session.revoked", false),
            ("*.user.*", "auth.user.created", true),
            ("*.user.*", "auth.user", false),
            ("*.user.*", "auth.user.created.v2", false),
            ("payments.*", "payments.payment.created", false),
            ("payments.*.created", "payments.payment.created", true),
            ("#.created", "payments.payment.created", true),
            ("#.created", "created", true),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
            ("a.#.z", "a.b.c", false),
            ("exact.key", "exact.key", true),
            ("exact.key", "exact.key.more", false),
        ];
        for (pattern, key, want) in cases {
            assert_eq!(matches(pattern, key), want, "{pattern} vs {key}");
        }
    }

    #[test]
    fn pattern_validation() {
        for ok in ["#", "auth.#", "*.user.*", "a.b_c-d"] {
            assert!(is_valid_pattern(ok), "{ok}");
        }
        for bad in ["", "a..b", "a.", "au*th", "a#.b", "a b"] {
            assert!(!is_valid_pattern(bad), "{bad}");
        }
    }
}
