//! What a device is called: a readable name and a type from the user agent, and the device id
//! format (UUID v4).
//!
//! ```
//! use tidewell_session_sync::device::{describe, DeviceType};
//!
//! let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
//!           (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
//! let d = describe(ua);
//! assert_eq!(d.name, "Safari on iOS");
//! assert_eq!(d.device_type, DeviceType::Mobile);
//! ```

use serde::{Deserialize, Serialize};

/// The kind of device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    /// A desktop or laptop browser.
    Desktop,
    /// A phone.
    Mobile,
    /// A tablet.
    Tablet,
    /// Not told by the user agent.
    Unknown,
}

impl DeviceType {
    /// `"desktop"`, `"mobile"`, `"tablet"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Mobile => "mobile",
            Self::Tablet => "tablet",
            Self::Unknown => "unknown",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "desktop" => Self::Desktop,
            "mobile" => Self::Mobile,
            "tablet" => Self::Tablet,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }
}

/// A device as its user agent describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// `"<browser> on <system>"`, e.g. `"Chrome on Windows"`.
    pub name: String,
    /// The kind of device.
    pub device_type: DeviceType,
}

/// Describes the device of a `User-Agent` string (best effort; unknown parts say so).
pub fn describe(user_agent: &str) -> Description {
    let ua = user_agent;
    let has = |s: &str| ua.contains(s);
    // Order matters: Edge and Opera say "Chrome", Chrome says "Safari", iPad on iPadOS 13+ says
    // "Macintosh".
    let browser = if has("Edg/") || has("Edge/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("SamsungBrowser/") {
        "Samsung Internet"
    } else if has("Firefox/") || has("FxiOS/") {
        "Firefox"
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") || has("HeadlessChrome/") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else {
        "Browser"
    };
    let system = if has("iPhone") || has("iPad") || has("iPod") {
        "iOS"
    } else if has("Android") {
        "Android"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Windows") {
        "Windows"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("Linux") {
        "Linux"
    } else {
        "an unknown system"
    };
    let device_type = if has("iPad") || has("Tablet") || (has("Android") && !has("Mobile")) {
        DeviceType::Tablet
    } else if has("Mobi") || has("iPhone") || has("iPod") {
        DeviceType::Mobile
    } else if ua.trim().is_empty() {
        DeviceType::Unknown
    } else {
        DeviceType::Desktop
    };
    Description {
        name: format!("{browser} on {system}"),
        device_type,
    }
}

/// Formats 16 random bytes as a UUID v4 (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`), setting the
/// version and variant bits.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether `id` is a UUID v4 as [`uuid_v4`] makes them (lowercase).
pub fn is_device_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_of_the_common_browsers() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "Chrome on Windows",
                DeviceType::Desktop,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
                "Edge on Windows",
                DeviceType::Desktop,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "Safari on macOS",
                DeviceType::Desktop,
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                "Firefox on Linux",
                DeviceType::Desktop,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
                DeviceType::Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "Chrome on Android",
                DeviceType::Tablet,
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0 Mobile/15E148 Safari/604.1",
                "Chrome on iOS",
                DeviceType::Tablet,
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
                "Chrome on Linux",
                DeviceType::Desktop,
            ),
            ("", "Browser on an unknown system", DeviceType::Unknown),
        ];
        for (ua, name, kind) in cases {
            let d = describe(ua);
            assert_eq!((d.name.as_str(), d.device_type), (name, kind), "{ua}");
        }
    }

    #[test]
    fn device_type_names_round_trip() {
        for t in [
            DeviceType::Desktop,
            DeviceType::Mobile,
            DeviceType::Tablet,
            DeviceType::Unknown,
        ] {
            assert_eq!(DeviceType::parse(t.as_str()), Some(t));
        }
        assert_eq!(DeviceType::parse("toaster"), None);
    }

    #[test]
    fn uuids_have_version_and_variant_bits() {
        for seed in [[0u8; 16], [0xff; 16], [0x5a; 16]] {
            let id = uuid_v4(seed);
            assert!(is_device_id(&id), "{id}");
        }
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
        for bad in [
            "",
            "not-a-uuid",
            "00000000-0000-1000-8000-000000000000",
            "00000000-0000-4000-c000-000000000000",
            "00000000-0000-4000-8000-00000000000G",
            "00000000-0000-4000-8000-0000000000000",
        ] {
            assert!(!is_device_id(bad), "{bad}");
        }
    }
}
