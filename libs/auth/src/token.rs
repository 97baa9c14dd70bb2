use std::fmt;

/// A signed JWT. Its text is shown only by [`Token::as_str`]: `Debug` prints `Token(<redacted>)`
/// and there is no `Display`, so a token cannot slip into a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token received from elsewhere (a header, a cookie).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The compact JWT text, to put in an `Authorization: Bearer` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Takes the compact JWT text out.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let t = Token::new("eyJhbGciOiJIUzI1NiJ9.e30.sig");
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert_eq!(
            format!("{:#?}", Some(&t)),
            "Some(\n    Token(<redacted>),\n)"
        );
    }
}
