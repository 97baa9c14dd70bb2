//! Passwords (argon2id) and the input rules for accounts.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

/// Hashes `password` with argon2id (the crate's defaults: 19 MiB, 2 passes, OWASP's minimum).
pub(crate) fn hash(password: &str) -> Result<String, String> {
    // A random salt from the operating system (argon2's `getrandom` feature).
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `stored`; a malformed `stored` matches nothing.
pub(crate) fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash of no password, verified against when the email is unknown, so that an unknown email
/// takes as long to refuse as a wrong password.
pub(crate) fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password 0").unwrap_or_default())
}

/// Checks an email address: one `@`, a non-empty local part, a domain with a dot, no spaces or
/// control characters, at most 254 bytes. Answers it trimmed and lowercased.
pub(crate) fn email(input: &str) -> Result<String, &'static str> {
    let e = input.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if ok {
        Ok(e)
    } else {
        Err("not a valid email address")
    }
}

/// The password policy: 10 to 128 characters, at least one letter and one digit.
pub(crate) fn policy(password: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < 10 {
        return Err("the password must have at least 10 characters");
    }
    if n > 128 {
        return Err("the password must have at most 128 characters");
    }
    if !password.chars().any(char::is_alphabetic) || !password.chars().any(|c| c.is_ascii_digit()) {
        return Err("the password must contain a letter and a digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("correct horse 1").unwrap_or_default();
        let b = hash("correct horse 1").unwrap_or_default();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse 1", &a));
        assert!(!verify("correct horse 2", &a));
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn emails() {
        assert_eq!(
            email(" Ann@Example.COM ").ok(),
            Some("ann@example.com".into())
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.y",
            "ann@x",
            "a b@x.y",
            "a@@x.y",
            "a@x..y",
            "a@.x",
            "' OR 1=1 --@x.y x",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_policy() {
        assert!(policy("short1").is_err());
        assert!(policy("longenoughbutnodigit").is_err());
        assert!(policy("1234567890123").is_err());
        assert!(policy("a sound password 42").is_ok());
        assert!(policy(&"a1".repeat(65)).is_err());
    }
}
