//! Routes and gateway settings, from code or from a TOML file.

use std::time::Duration;

use http::{Method, Uri};
use ipnet::IpNet;
use serde::Deserialize;
use tidewell_core::config::{Env, parse_byte_size, parse_duration};
use tidewell_core::tls::ClientTls;

use crate::Error;

/// How a route spreads requests over its upstreams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Balance {
    /// In turn.
    #[default]
    RoundRobin,
    /// To the upstream with the fewest requests in flight (ties in turn).
    LeastInFlight,
}

/// What the upstream sees as `Host`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostHeader {
    /// The client's `Host` (the original is also in `X-Forwarded-Host`).
    #[default]
    Preserve,
    /// The upstream's authority.
    Upstream,
}

/// A token bucket per client IP on one route, as nginx `limit_req`: `per_second` sustained,
/// `burst` at once; over it, 429 with `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second refilled.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

/// One route: which requests it takes (first match wins, in the order given) and where they go.
///
/// A request matches when its path is `prefix` or starts with `prefix` followed by `/` (so
/// `/api` takes `/api` and `/api/x`, not `/apix`), and its host and method match when given.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Route {
    /// The path prefix (starts with `/`).
    pub prefix: String,
    /// Only requests for this host (without port, case-insensitive).
    pub host: Option<String>,
    /// Only these methods (empty: all).
    pub methods: Vec<Method>,
    /// Upstream base URLs: `http://host:port` (HTTP/1.1), `h2c://host:port` (HTTP/2 cleartext)
    /// or `https://host:port` (TLS, HTTP/2 when the upstream picks `h2` by ALPN, else HTTP/1.1).
    pub upstreams: Vec<Uri>,
    /// For `https://` upstreams: the CA file trusted instead of the system's roots, a client
    /// certificate. The upstream's certificate and host name are always verified.
    pub tls: ClientTls,
    /// Replaces `prefix` in the forwarded path (`Some("")` strips it).
    pub rewrite: Option<String>,
    /// What the upstream sees as `Host`.
    pub host_header: HostHeader,
    /// How upstreams are chosen.
    pub balance: Balance,
    /// Time to the upstream's response head; then 504.
    pub timeout: Duration,
    /// Time to connect to an upstream; then the next one, or 502.
    pub connect_timeout: Duration,
    /// Largest request body; over it, 413 (even mid-stream).
    pub max_body: u64,
    /// Extra tries on another upstream when that is safe (see the crate docs).
    pub retries: u32,
    /// The per-client rate limit.
    pub rate_limit: Option<RateLimit>,
    /// An upgraded connection (WebSocket) with no bytes either way for this long is closed.
    pub upgrade_idle_timeout: Duration,
    /// Consecutive connect failures that take an upstream out of rotation.
    pub eject_after: u32,
    /// How long an ejected upstream stays out.
    pub eject_for: Duration,
}

impl Route {
    /// A route for `prefix` to `upstreams`, with the defaults: `Host` preserved, round robin, 30 s
    /// response timeout, 2 s connect timeout, 10 MiB body, 1 retry, no rate limit, 60 s upgrade
    /// idle timeout, ejection after 3 connect failures for 10 s.
    pub fn new(prefix: &str, upstreams: &[&str]) -> Result<Self, Error> {
        let route = Self {
            prefix: prefix.to_owned(),
            host: None,
            methods: Vec::new(),
            upstreams: upstreams
                .iter()
                .map(|u| parse_upstream(prefix, u))
                .collect::<Result<_, _>>()?,
            tls: ClientTls::default(),
            rewrite: None,
            host_header: HostHeader::Preserve,
            balance: Balance::RoundRobin,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            max_body: 10 * 1024 * 1024,
            retries: 1,
            rate_limit: None,
            upgrade_idle_timeout: Duration::from_secs(60),
            eject_after: 3,
            eject_for: Duration::from_secs(10),
        };
        route.validate()?;
        Ok(route)
    }

    /// TLS to this route's `https://` upstreams: a private CA, a client certificate.
    #[must_use]
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// Replaces the prefix in forwarded paths (`""` strips it).
    #[must_use]
    pub fn rewrite(mut self, to: &str) -> Self {
        self.rewrite = Some(to.to_owned());
        self
    }

    /// Only requests for `host`.
    #[must_use]
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_ascii_lowercase());
        self
    }

    /// Only these methods.
    #[must_use]
    pub fn methods(mut self, methods: &[Method]) -> Self {
        self.methods = methods.to_vec();
        self
    }

    /// Sets what the upstream sees as `Host`.
    #[must_use]
    pub fn host_header(mut self, h: HostHeader) -> Self {
        self.host_header = h;
        self
    }

    /// Sets how upstreams are chosen.
    #[must_use]
    pub fn balance(mut self, b: Balance) -> Self {
        self.balance = b;
        self
    }

    /// Sets the time to the upstream's response head (then 504).
    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets the largest request body (then 413).
    #[must_use]
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets the extra tries on another upstream when safe.
    #[must_use]
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Limits each client IP on this route.
    #[must_use]
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> Self {
        self.rate_limit = Some(RateLimit { per_second, burst });
        self
    }

    /// Sets the idle timeout of upgraded connections.
    #[must_use]
    pub fn upgrade_idle_timeout(mut self, t: Duration) -> Self {
        self.upgrade_idle_timeout = t;
        self
    }

    /// Sets passive health: eject an upstream after `failures` consecutive connect failures, for
    /// `cool_down`.
    #[must_use]
    pub fn eject(mut self, failures: u32, cool_down: Duration) -> Self {
        self.eject_after = failures.max(1);
        self.eject_for = cool_down;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let p = &self.prefix;
        if !p.starts_with('/') {
            return Err(Error::Config(format!(
                "route {p:?}: prefix must start with '/'"
            )));
        }
        if self.upstreams.is_empty() {
            return Err(Error::Config(format!(
                "route {p:?}: give at least one upstream (http://host:port or h2c://host:port)"
            )));
        }
        if let Some(r) = &self.rewrite
            && !(r.is_empty() || r.starts_with('/'))
        {
            return Err(Error::Config(format!(
                "route {p:?}: rewrite {r:?} must be empty or start with '/'"
            )));
        }
        if let Some(l) = &self.rate_limit
            && (!(l.per_second > 0.0 && l.per_second.is_finite()) || l.burst == 0)
        {
            return Err(Error::Config(format!(
                "route {p:?}: rate_limit needs per_second > 0 and burst >= 1"
            )));
        }
        Ok(())
    }

    /// Whether this route takes a request.
    pub(crate) fn matches(&self, method: &Method, host: Option<&str>, path: &str) -> bool {
        let prefix = self.prefix.trim_end_matches('/');
        let path_ok = prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'));
        path_ok
            && (self.methods.is_empty() || self.methods.contains(method))
            && self
                .host
                .as_deref()
                .is_none_or(|h| host.is_some_and(|x| x.eq_ignore_ascii_case(h)))
    }

    /// The path sent upstream.
    pub(crate) fn upstream_path(&self, path: &str) -> String {
        let Some(to) = &self.rewrite else {
            return path.to_owned();
        };
        let prefix = self.prefix.trim_end_matches('/');
        let rest = path.get(prefix.len()..).unwrap_or("");
        let joined = format!("{}{rest}", to.trim_end_matches('/'));
        if joined.starts_with('/') {
            joined
        } else {
            format!("/{joined}")
        }
    }
}

fn parse_upstream(route: &str, url: &str) -> Result<Uri, Error> {
    let uri: Uri = url.parse().map_err(|e| {
        Error::Config(format!(
            "route {route:?}: upstream {url:?} is not a URL ({e}); use http://host:port, h2c://host:port or https://host:port"
        ))
    })?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "h2c" | "https"), Some(_)) if uri.path() == "/" || uri.path().is_empty() => {
            Ok(uri)
        }
        _ => Err(Error::Config(format!(
            "route {route:?}: upstream {url:?} must be http://host:port, h2c://host:port or https://host:port, with no path"
        ))),
    }
}

/// Response headers added for browsers unless the upstream set them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeaders {
    /// Adds the headers at all.
    pub enabled: bool,
    /// `X-Frame-Options`.
    pub frame_options: String,
    /// `Referrer-Policy`.
    pub referrer_policy: String,
    /// `Content-Security-Policy`, if any.
    pub content_security_policy: Option<String>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self {
            enabled: true,
            frame_options: "DENY".into(),
            referrer_policy: "strict-origin-when-cross-origin".into(),
            content_security_policy: None,
        }
    }
}

/// The whole proxy: routes (first match wins) and gateway settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Routes, tried in order.
    pub routes: Vec<Route>,
    /// Peers whose `X-Forwarded-For` chain is trusted (load balancers in front of this proxy).
    pub trusted_proxies: Vec<IpNet>,
    /// Security response headers.
    pub security_headers: SecurityHeaders,
    /// The value this proxy adds to `Via` (`1.1 <name>`).
    pub via_name: String,
    /// How long [`serve`](crate::serve) waits for a request head (request line and headers) on
    /// HTTP/1, counted from the connection's start or the end of the previous response; then it
    /// closes the connection (slow clients sending headers byte by byte, idle keep-alive
    /// connections). Checked coarsely: a connection may live up to an eighth of it longer
    /// (at most one second). Default 30 s.
    pub header_read_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            trusted_proxies: Vec::new(),
            security_headers: SecurityHeaders::default(),
            via_name: "tidewell".into(),
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

impl ProxyConfig {
    /// No routes, no trusted proxies, the default security headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route (after the existing ones).
    #[must_use]
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Trusts the `X-Forwarded-For` chain from peers in these CIDRs (`10.0.0.0/8`).
    pub fn trust_proxies(mut self, cidrs: &[&str]) -> Result<Self, Error> {
        for c in cidrs {
            self.trusted_proxies.push(c.parse().map_err(|e| {
                Error::Config(format!(
                    "trusted proxy {c:?} is not a CIDR ({e}); use 10.0.0.0/8"
                ))
            })?);
        }
        Ok(self)
    }

    /// Sets the security response headers.
    #[must_use]
    pub fn security_headers(mut self, h: SecurityHeaders) -> Self {
        self.security_headers = h;
        self
    }

    /// Sets how long a request head may take ([`ProxyConfig::header_read_timeout`]).
    #[must_use]
    pub fn header_read_timeout(mut self, t: Duration) -> Self {
        self.header_read_timeout = t;
        self
    }

    /// Reads the TOML file named by `TIDEWELL_PROXY_CONFIG`.
    pub fn from_env() -> Result<Self, Error> {
        let path = Env::process()
            .required("TIDEWELL_PROXY_CONFIG", "a path to the proxy's TOML file")
            .map_err(|e| Error::Config(e.to_string()))?;
        Self::from_file(&path)
    }

    /// Reads a TOML file (see [`ProxyConfig::from_toml`]).
    pub fn from_file(path: &str) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses the TOML form:
    ///
    /// ```
    /// let config = tidewell_proxy::ProxyConfig::from_toml(r#"
    ///     trusted_proxies = ["10.0.0.0/8"]
    ///     header_read_timeout = "15s"
    ///
    ///     [security_headers]
    ///     content_security_policy = "default-src 'self'"
    ///
    ///     [[route]]
    ///     prefix = "/api/users"
    ///     upstreams = ["http://127.0.0.1:3001", "http://127.0.0.1:3002"]
    ///     rewrite = "/users"
    ///     balance = "least_in_flight"
    ///     timeout = "5s"
    ///     max_body = "1MiB"
    ///     rate_limit = { per_second = 50, burst = 100 }
    ///
    ///     [[route]]
    ///     prefix = "/"
    ///     upstreams = ["h2c://127.0.0.1:3003"]
    /// "#)?;
    /// assert_eq!(config.routes.len(), 2);
    /// assert_eq!(config.header_read_timeout, std::time::Duration::from_secs(15));
    /// # Ok::<(), tidewell_proxy::Error>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| Error::Config(format!("invalid TOML: {e}")))?;
        let mut config = Self::new()
            .trust_proxies(
                &file
                    .trusted_proxies
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            )?
            .security_headers(file.security_headers);
        if let Some(v) = file.via_name {
            config.via_name = v;
        }
        if let Some(t) = file.header_read_timeout {
            config.header_read_timeout = parse_duration(&t)
                .map_err(|e| Error::Config(format!("header_read_timeout {t:?}: {e}")))?;
        }
        for r in file.route {
            config.routes.push(r.into_route()?);
        }
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.routes.is_empty() {
            return Err(Error::Config(
                "no routes: add at least one [[route]] with a prefix and upstreams".into(),
            ));
        }
        for r in &self.routes {
            r.validate()?;
        }
        if self.header_read_timeout.is_zero() {
            return Err(Error::Config(
                "header_read_timeout must be more than zero (e.g. \"30s\")".into(),
            ));
        }
        if !self.via_name.bytes().all(|b| b.is_ascii_graphic()) || self.via_name.is_empty() {
            return Err(Error::Config(format!(
                "via_name {:?} must be one token of visible ASCII",
                self.via_name
            )));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    security_headers: SecurityHeaders,
    via_name: Option<String>,
    header_read_timeout: Option<String>,
    #[serde(default)]
    route: Vec<FileRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    prefix: String,
    upstreams: Vec<String>,
    host: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
    rewrite: Option<String>,
    #[serde(default)]
    host_header: HostHeader,
    #[serde(default)]
    balance: Balance,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    max_body: Option<String>,
    retries: Option<u32>,
    rate_limit: Option<RateLimit>,
    upgrade_idle_timeout: Option<String>,
    eject_after: Option<u32>,
    eject_for: Option<String>,
    tls_ca_file: Option<String>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
}

impl FileRoute {
    fn into_route(self) -> Result<Route, Error> {
        let p = self.prefix.clone();
        let ups: Vec<&str> = self.upstreams.iter().map(String::as_str).collect();
        let mut r = Route::new(&self.prefix, &ups)?;
        let dur = |field: &str, v: Option<String>, d: Duration| -> Result<Duration, Error> {
            v.map_or(Ok(d), |t| {
                parse_duration(&t)
                    .map_err(|e| Error::Config(format!("route {p:?}: {field} {t:?}: {e}")))
            })
        };
        r.timeout = dur("timeout", self.timeout, r.timeout)?;
        r.connect_timeout = dur("connect_timeout", self.connect_timeout, r.connect_timeout)?;
        r.upgrade_idle_timeout = dur(
            "upgrade_idle_timeout",
            self.upgrade_idle_timeout,
            r.upgrade_idle_timeout,
        )?;
        r.eject_for = dur("eject_for", self.eject_for, r.eject_for)?;
        if let Some(b) = self.max_body {
            r.max_body = parse_byte_size(&b)
                .map_err(|e| Error::Config(format!("route {p:?}: max_body {b:?}: {e}")))?;
        }
        for m in &self.methods {
            r.methods.push(
                m.parse().map_err(|_| {
                    Error::Config(format!("route {p:?}: {m:?} is not an HTTP method"))
                })?,
            );
        }
        r.host = self.host.map(|h| h.to_ascii_lowercase());
        r.rewrite = self.rewrite;
        r.host_header = self.host_header;
        r.balance = self.balance;
        r.retries = self.retries.unwrap_or(r.retries);
        r.rate_limit = self.rate_limit;
        r.eject_after = self.eject_after.unwrap_or(r.eject_after).max(1);
        if let Some(ca) = self.tls_ca_file {
            r.tls = r.tls.ca_file(ca);
        }
        match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => r.tls = r.tls.client_cert(cert, key),
            (None, None) => {}
            _ => {
                return Err(Error::Config(format!(
                    "route {p:?}: tls_cert_file and tls_key_file are set together"
                )));
            }
        }
        r.validate()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matching_is_on_segment_boundaries() {
        let r = Route::new("/api", &["http://127.0.0.1:1"]).unwrap();
        let get = Method::GET;
        assert!(r.matches(&get, None, "/api"));
        assert!(r.matches(&get, None, "/api/users"));
        assert!(!r.matches(&get, None, "/apix"));
        let root = Route::new("/", &["http://127.0.0.1:1"]).unwrap();
        assert!(root.matches(&get, None, "/anything"));
        let hosted = r.host("API.example.com").methods(&[Method::POST]);
        assert!(hosted.matches(&Method::POST, Some("api.EXAMPLE.com"), "/api"));
        assert!(!hosted.matches(&Method::GET, Some("api.example.com"), "/api"));
        assert!(!hosted.matches(&Method::POST, Some("other"), "/api"));
    }

    #[test]
    fn rewrites() {
        let r = Route::new("/api/users", &["http://127.0.0.1:1"]).unwrap();
        assert_eq!(r.upstream_path("/api/users/7"), "/api/users/7");
        let strip = r.clone().rewrite("");
        assert_eq!(strip.upstream_path("/api/users/7"), "/7");
        assert_eq!(strip.upstream_path("/api/users"), "/");
        let moved = r.rewrite("/v2/people");
        assert_eq!(moved.upstream_path("/api/users/7"), "/v2/people/7");
    }

    #[test]
    fn bad_configuration_names_the_route_and_field() {
        for (text, needle) in [
            (
                "[[route]]\nprefix = \"api\"\nupstreams = [\"http://a:1\"]",
                "start with '/'",
            ),
            (
                "[[route]]\nprefix = \"/a\"\nupstreams = []",
                "at least one upstream",
            ),
            (
                "[[route]]\nprefix = \"/a\"\nupstreams = [\"ftp://a:1\"]",
                "http://host:port",
            ),
            (
                "[[route]]\nprefix = \"/a\"\nupstreams = [\"http://a:1\"]\ntimeout = \"soon\"",
                "timeout",
            ),
            (
                "[[route]]\nprefix = \"/a\"\nupstreams = [\"http://a:1\"]\nsurprise = 1",
                "surprise",
            ),
            (
                "trusted_proxies = [\"10.0.0.0/99\"]\n[[route]]\nprefix = \"/a\"\nupstreams = [\"http://a:1\"]",
                "CIDR",
            ),
            ("", "no routes"),
        ] {
            let e = ProxyConfig::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
