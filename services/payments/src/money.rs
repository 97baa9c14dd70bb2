//! Amounts and currencies, checked exactly (no floating point).

use serde::Deserialize;

/// An amount as a client sends it: a JSON number (`12.5`) or a string (`"12.50"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Amount {
    /// `"12.50"`.
    Text(String),
    /// `12.5`, read from its JSON text.
    Number(serde_json::Number),
}

/// The amount in minor units (cents): more than 0, at most two decimals, at most 1e12.
pub(crate) fn cents(amount: &Amount) -> Result<i64, &'static str> {
    let text = match amount {
        Amount::Text(t) => t.trim().to_owned(),
        Amount::Number(n) => n.to_string(),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text.as_str(), ""));
    if whole.is_empty()
        || whole.len() > 12
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("the amount must be a positive decimal number such as 12.50");
    }
    if frac.len() > 2 {
        return Err("the amount has at most two decimals");
    }
    let whole: i64 = whole.parse().map_err(|_| "the amount is too large")?;
    let frac: i64 = format!("{frac:0<2}").parse().map_err(|_| "bad decimals")?;
    let cents = whole
        .checked_mul(100)
        .and_then(|c| c.checked_add(frac))
        .ok_or("the amount is too large")?;
    if cents <= 0 {
        return Err("the amount must be more than 0");
    }
    Ok(cents)
}

/// `cents` as a decimal string with two decimals.
pub(crate) fn decimal(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Active ISO 4217 currency codes.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// The currency if `code` is an active ISO 4217 code (case-sensitive: `EUR`, not `eur`).
pub(crate) fn currency(code: &str) -> Result<String, &'static str> {
    if ISO_4217.binary_search(&code).is_ok() {
        Ok(code.to_owned())
    } else {
        Err("the currency must be an ISO 4217 code such as EUR or USD")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn t(s: &str) -> Result<i64, &'static str> {
        cents(&Amount::Text(s.into()))
    }

    #[test]
    fn amounts() {
        assert_eq!(t("12.50"), Ok(1250));
        assert_eq!(t("12.5"), Ok(1250));
        assert_eq!(t("12"), Ok(1200));
        assert_eq!(t("0.01"), Ok(1));
        let n = |j: &str| cents(&Amount::Number(serde_json::from_str(j).unwrap()));
        assert_eq!(n("19.99"), Ok(1999));
        assert_eq!(n("7"), Ok(700));
        for bad in [
            "0",
            "0.00",
            "-1",
            "1.234",
            "1e3",
            "",
            ".5",
            "abc",
            "1,5",
            "9999999999999",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
        assert!(n("-5").is_err());
        assert!(n("1.001").is_err());
        assert_eq!(decimal(1999), "19.99");
        assert_eq!(decimal(5), "0.05");
    }

    #[test]
    fn currencies() {
        let mut sorted = ISO_4217.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, ISO_4217, "binary search needs the list sorted");
        assert!(currency("EUR").is_ok());
        for bad in ["eur", "EU", "EURO", "XXX", "", "E'R"] {
            assert!(currency(bad).is_err(), "{bad}");
        }
    }
}
