//! Typed configuration from environment variables.
//!
//! Every Tidewell configuration struct has a `from_env()` that reads documented variables
//! (`TIDEWELL_<AREA>_<NAME>`) through [`Env`]. Errors name the variable and the expected form and
//! never echo a value that could hold a secret.
//!
//! ```
//! use std::time::Duration;
//! use tidewell_core::config::Env;
//!
//! struct Config { timeout: Duration, max_body: u64 }
//!
//! impl Config {
//!     fn from_env() -> Result<Self, tidewell_core::Error> {
//!         Self::from_source(&Env::process())
//!     }
//!     fn from_source(env: &Env) -> Result<Self, tidewell_core::Error> {
//!         Ok(Self {
//!             timeout: env.duration("TIDEWELL_DEMO_TIMEOUT")?.unwrap_or(Duration::from_secs(30)),
//!             max_body: env.byte_size("TIDEWELL_DEMO_MAX_BODY")?.unwrap_or(1 << 20),
//!         })
//!     }
//! }
//!
//! let env = Env::from_pairs([("TIDEWELL_DEMO_TIMEOUT", "250ms"), ("TIDEWELL_DEMO_MAX_BODY", "64KiB")]);
//! let config = Config::from_source(&env)?;
//! assert_eq!(config.timeout, Duration::from_millis(250));
//! assert_eq!(config.max_body, 65_536);
//!
//! let bad = Env::from_pairs([("TIDEWELL_DEMO_TIMEOUT", "soon")]);
//! let err = Config::from_source(&bad).err().unwrap();
//! assert!(err.to_string().contains("TIDEWELL_DEMO_TIMEOUT"));
//! # Ok::<(), tidewell_core::Error>(())
//! ```

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

use crate::Error;

const DURATION_FORM: &str = "a duration such as \"250ms\", \"30s\", \"5m\" or \"1h30m\"";
const BYTES_FORM: &str =
    "a byte size such as \"512\", \"64KiB\", \"10MB\" or \"1GiB\" (KB = 1000, KiB = 1024)";
const URL_FORM: &str = "an absolute URL such as \"amqp://guest:guest@127.0.0.1:5672/%2f\"";
const BOOL_FORM: &str = "true or false (also 1/0, yes/no, on/off)";

/// Where configuration values come from: the process environment, or a fixed map (for tests,
/// since changing the process environment is unsafe in a threaded program).
#[derive(Clone, Debug)]
pub struct Env {
    source: Source,
}

#[derive(Clone, Debug)]
enum Source {
    Process,
    Map(HashMap<String, String>),
}

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Self {
            source: Source::Process,
        }
    }

    /// Reads only the given pairs.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            source: Source::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The variable's value; `None` when unset or empty.
    pub fn string(&self, name: &str) -> Result<Option<String>, Error> {
        let value = match &self.source {
            Source::Process => match std::env::var(name) {
                Ok(v) => Some(v),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(invalid(name, "a UTF-8 string", "it is not valid UTF-8"));
                }
            },
            Source::Map(map) => map.get(name).cloned(),
        };
        Ok(value.filter(|v| !v.trim().is_empty()))
    }

    /// The variable's value, or an error saying it must be set.
    pub fn required(&self, name: &str, expected: &'static str) -> Result<String, Error> {
        self.string(name)?.ok_or_else(|| Error::MissingVar {
            name: name.to_owned(),
            expected,
        })
    }

    /// A duration such as `250ms`, `30s` or `1h30m` (see [`parse_duration`]).
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, Error> {
        self.parsed(name, DURATION_FORM, parse_duration)
    }

    /// A byte size such as `64KiB` or `10MB` (see [`parse_byte_size`]).
    pub fn byte_size(&self, name: &str) -> Result<Option<u64>, Error> {
        self.parsed(name, BYTES_FORM, parse_byte_size)
    }

    /// An absolute URL. The error never repeats the value, which may hold a password.
    pub fn url(&self, name: &str) -> Result<Option<Url>, Error> {
        match self.string(name)? {
            None => Ok(None),
            Some(v) => Url::parse(v.trim())
                .map(Some)
                .map_err(|e| invalid(name, URL_FORM, &e.to_string())),
        }
    }

    /// A boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any case.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, Error> {
        self.parsed(name, BOOL_FORM, |v| match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("it is not a boolean".to_owned()),
        })
    }

    /// Any [`FromStr`] type; `expected` describes the form for the error message.
    pub fn parse<T>(&self, name: &str, expected: &'static str) -> Result<Option<T>, Error>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.parsed(name, expected, |v| {
            T::from_str(v).map_err(|e| e.to_string())
        })
    }

    fn parsed<T>(
        &self,
        name: &str,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Error> {
        match self.string(name)? {
            None => Ok(None),
            Some(v) => parse(v.trim())
                .map(Some)
                .map_err(|reason| invalid(name, expected, &format!("{reason} (got {v:?})"))),
        }
    }
}

/// The URL with any password replaced by `***`, for logs and error messages; `<invalid URL>` when
/// it does not parse (it may still hold a secret).
///
/// ```
/// use tidewell_core::config::redact_url;
/// assert_eq!(redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"), "amqp://guest:***@127.0.0.1:5672/%2f");
/// assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// assert_eq!(redact_url("not a url"), "<invalid URL>");
/// ```
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // ok to ignore: set_password fails only for URLs that cannot have one, excluded above
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<invalid URL>".to_owned(),
    }
}

fn invalid(name: &str, expected: &'static str, reason: &str) -> Error {
    Error::InvalidVar {
        name: name.to_owned(),
        expected,
        reason: reason.to_owned(),
    }
}

/// Parses a duration: one or more `<number><unit>` parts, units `ns`, `us`, `ms`, `s`, `m`, `h`,
/// `d`; whole numbers, or a decimal fraction on a single part (`1.5s`).
///
/// ```
/// use std::time::Duration;
/// use tidewell_core::config::parse_duration;
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
/// assert!(parse_duration("30").is_err(), "a unit is required");
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    let mut parts = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?} has a number without a unit"))?;
        let (number, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        if number.is_empty() {
            return Err(format!("{text:?} has a unit without a number"));
        }
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            _ => {
                return Err(format!(
                    "unknown unit {unit:?}; use ns, us, ms, s, m, h or d"
                ));
            }
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{number:?} is not a number"))?;
        let part = Duration::try_from_secs_f64(value * scale)
            .map_err(|_| format!("{text:?} is out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{text:?} is out of range"))?;
        rest = tail;
        parts += 1;
    }
    if parts > 1 && text.contains('.') {
        return Err("use a fraction only in a single-part duration such as \"1.5s\"".into());
    }
    Ok(total)
}

/// Parses a byte size: a whole number with an optional unit `B`, `KB`, `MB`, `GB`, `TB` (powers of
/// 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), case-insensitive, space allowed.
///
/// ```
/// use tidewell_core::config::parse_byte_size;
/// assert_eq!(parse_byte_size("64KiB"), Ok(65_536));
/// assert_eq!(parse_byte_size("10 MB"), Ok(10_000_000));
/// assert_eq!(parse_byte_size("512"), Ok(512));
/// assert!(parse_byte_size("1.5GiB").is_err());
/// ```
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("{text:?} does not start with a whole number"));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{number:?} is too large"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?}; use B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("1ns", Duration::from_nanos(1)),
            ("10us", Duration::from_micros(10)),
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7_200)),
            ("1d", Duration::from_secs(86_400)),
            ("1m30s", Duration::from_secs(90)),
            (" 0.25s ", Duration::from_millis(250)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "30", "ms", "1x", "1.2.3s", "1.5m30s", "-1s", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1kb"), Ok(1_000));
        assert_eq!(parse_byte_size("1 GiB"), Ok(1 << 30));
        for bad in [
            "",
            "KiB",
            "-1",
            "1 KiBs",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_errors_name_the_variable_and_form() {
        let env = Env::from_pairs([
            ("T_DUR", "soon"),
            ("T_SIZE", "lots"),
            ("T_URL", "amqp//secret-pass@host"),
            ("T_BOOL", "maybe"),
            ("T_EMPTY", "  "),
        ]);
        let err = env.duration("T_DUR").unwrap_err().to_string();
        assert!(err.contains("T_DUR") && err.contains("250ms"), "{err}");
        let err = env.byte_size("T_SIZE").unwrap_err().to_string();
        assert!(err.contains("T_SIZE") && err.contains("KiB"), "{err}");
        let err = env.url("T_URL").unwrap_err().to_string();
        assert!(
            err.contains("T_URL") && !err.contains("secret-pass"),
            "{err}"
        );
        assert!(env.bool("T_BOOL").is_err());
        assert_eq!(
            env.string("T_EMPTY").unwrap(),
            None,
            "blank counts as unset"
        );
        assert_eq!(env.duration("T_UNSET").unwrap(), None);
        let err = env
            .required("T_UNSET", "a service name")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment variable T_UNSET is not set; expected a service name"
        );
    }

    #[test]
    fn env_typed_values() {
        let env = Env::from_pairs([
            ("A", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("B", "ON"),
            ("C", "42"),
        ]);
        assert_eq!(env.url("A").unwrap().unwrap().scheme(), "amqp");
        assert_eq!(env.bool("B").unwrap(), Some(true));
        assert_eq!(env.parse::<u16>("C", "a port").unwrap(), Some(42));
        assert!(env.parse::<u8>("C", "a small number").unwrap().is_some());
        let err = Env::from_pairs([("C", "70000")])
            .parse::<u16>("C", "a port")
            .unwrap_err();
        assert!(err.to_string().contains("expected a port"), "{err}");
    }

    #[test]
    fn process_env_is_read() {
        // PATH is set in every test environment; reading it proves the process source is wired.
        assert!(Env::process().string("PATH").unwrap().is_some());
    }
}
