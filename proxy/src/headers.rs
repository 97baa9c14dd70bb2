//! The RFC 9110 header policy: hop-by-hop fields removed, `Via` added, the `X-Forwarded-*` family
//! set with a chain trusted only from configured proxies.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// A client's address and its text as a header value, made once per connection.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) ip: IpAddr,
    value: Option<HeaderValue>,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip();
        Self {
            ip,
            value: ip_value(ip),
        }
    }
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` and an `Upgrade`).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_tokens(headers).any(|t| t == "upgrade")
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop fields: every field named in `Connection`, and `Connection`,
/// `Keep-Alive`, `Proxy-Connection`, `TE` (kept as `TE: trailers` when the client accepts
/// trailers), `Transfer-Encoding` and `Upgrade`. With `upgrade`, `Upgrade` is kept and
/// `Connection: upgrade` set, as a tunnel needs.
///
/// `Trailer` is kept: RFC 9110 (6.6.2) makes it end to end, and hyper sends only the trailer
/// fields it announces, so removing it would drop the trailers this proxy forwards.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of these: one pass over the names (standard names compare as a
    // tag) instead of a hashed lookup per field.
    if !upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // RFC 9112 6.3: a message with Transfer-Encoding is framed by it; a Content-Length beside it
    // is wrong and must not be passed on (the next hop would trust it and cut or wait).
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let named: Vec<String> = connection_tokens(headers).collect();
    for name in named {
        if upgrade && name == "upgrade" {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(n);
        }
    }
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    for h in [
        header::CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::TE,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(h);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether `name` is one of the fields [`strip_hop_by_hop`] always removes.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(name)
}

/// Sets `X-Forwarded-For` (the chain kept and extended when `peer` is a trusted proxy, else
/// replaced by `peer`), `X-Real-IP` (the nearest untrusted address), `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (kept from a trusted proxy, else from this connection).
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    peer: Option<&Peer>,
    host: Option<&HeaderValue>,
    trusted: &[IpNet],
) {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let from_trusted = peer.is_some_and(|p| is_trusted(&p.ip));
    // Most requests carry none of the four (only a proxy in front sets them): one pass over the
    // names instead of four hashed removals.
    let any_forwarded = headers.keys().any(|n| {
        [
            &X_FORWARDED_FOR,
            &X_REAL_IP,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
        ]
        .contains(&n)
    });
    let incoming: Vec<String> = if from_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    if any_forwarded {
        headers.remove(&X_FORWARDED_FOR);
        headers.remove(&X_REAL_IP);
        if !from_trusted {
            headers.remove(&X_FORWARDED_PROTO);
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    let Some(peer) = peer else { return };
    if !from_trusted {
        // The common case, without building a chain: the peer is the client.
        if let Some(v) = &peer.value {
            headers.insert(X_FORWARDED_FOR, v.clone());
            headers.insert(X_REAL_IP, v.clone());
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        if let Some(h) = host {
            headers.insert(X_FORWARDED_HOST, h.clone());
        }
        return;
    }
    let mut chain = incoming;
    chain.push(peer.ip.to_string());
    // The client is the first address, from the right, that is not one of our proxies.
    let real = chain
        .iter()
        .rev()
        .find(|a| a.parse::<IpAddr>().map_or(true, |ip| !is_trusted(&ip)))
        .or(chain.first())
        .cloned();
    if let Ok(v) = HeaderValue::from_str(&chain.join(", ")) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if let Some(real) = real
        && let Ok(v) = HeaderValue::from_str(&real)
    {
        headers.insert(X_REAL_IP, v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Some(h) = host
    {
        headers.insert(X_FORWARDED_HOST, h.clone());
    }
}

/// An IP address as a header value, formatted on the stack (one allocation, for the value).
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    use std::io::Write as _;
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{ip}").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(buf.get(..len)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_fields_go() {
        let mut h = map(&[
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers, deflate"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        strip_hop_by_hop(&mut h, false);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["trailer"], "x-checksum", "end to end");
        assert_eq!(h.get_all("set-cookie").iter().count(), 2, "never merged");
    }

    #[test]
    fn upgrade_keeps_what_a_tunnel_needs() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn forwarded_chain_is_trusted_only_from_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(
            &mut h,
            Some(&Peer::new("1.2.3.4:1000".parse().unwrap())),
            Some(&HeaderValue::from_static("a.test")),
            &trusted,
        );
        assert_eq!(
            h["x-forwarded-for"], "1.2.3.4",
            "a client cannot forge the chain"
        );
        assert_eq!(h["x-real-ip"], "1.2.3.4");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.test");

        let mut h = map(&[
            ("x-forwarded-for", "7.7.7.7, 10.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(
            &mut h,
            Some(&Peer::new("10.2.2.2:1000".parse().unwrap())),
            Some(&HeaderValue::from_static("a.test")),
            &trusted,
        );
        assert_eq!(h["x-forwarded-for"], "7.7.7.7, 10.1.1.1, 10.2.2.2");
        assert_eq!(h["x-real-ip"], "7.7.7.7");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
