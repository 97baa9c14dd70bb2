//! What every handle of one proxy shares: the routes (each with its upstreams, rate limiter and
//! retry budget), the header values made once from the configuration, and the open tunnels.

use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::Authority;
use ipnet::IpNet;

use crate::Error;
use crate::config::{ProxyConfig, Route, SecurityHeaders};
use crate::limit::{Limiter, RetryBudget};
use crate::tunnel::Tunnels;
use crate::upstream::Upstreams;

/// Share of a route's requests (in thousandths) that may be retries, and the retries a quiet
/// route saves up.
const RETRY_RATIO: u64 = 200;
const RETRY_CAP: u64 = 10;

/// The state shared by every handle of one [`Proxy`](crate::Proxy).
pub(crate) struct ProxyState {
    config: ProxyConfig,
    routes: Vec<RouteState>,
    /// `Via` values for HTTP/1.0, 1.1 and 2, made once.
    via: [HeaderValue; 3],
    /// Security response headers, made once.
    security: Vec<(HeaderName, HeaderValue)>,
    /// Whether any route matches on the host (else a request's host name is never looked at).
    host_routes: bool,
    tunnels: Tunnels,
    /// Rate limits kept in Redis, once attached ([`Proxy::share_limits`](crate::Proxy::share_limits)).
    #[cfg(feature = "redis")]
    shared: std::sync::OnceLock<crate::shared_limit::SharedLimits>,
}

impl ProxyState {
    /// Checks `config` and builds the routes (and a connection pool per upstream).
    pub(crate) fn new(config: ProxyConfig) -> Result<Self, Error> {
        config.validate()?;
        let routes = config
            .routes
            .iter()
            .map(RouteState::new)
            .collect::<Result<_, _>>()?;
        let via = via_values(&config.via_name)?;
        let security = security_headers(&config.security_headers)?;
        let host_routes = config.routes.iter().any(|r| r.host.is_some());
        Ok(Self {
            config,
            routes,
            via,
            security,
            host_routes,
            tunnels: Tunnels::default(),
            #[cfg(feature = "redis")]
            shared: std::sync::OnceLock::new(),
        })
    }

    /// The shared rate limits, if attached.
    #[cfg(feature = "redis")]
    pub(crate) fn shared_limits(&self) -> Option<&crate::shared_limit::SharedLimits> {
        self.shared.get()
    }

    /// Attaches shared rate limits; `false` if some were attached already.
    #[cfg(feature = "redis")]
    pub(crate) fn share_limits(&self, limits: crate::shared_limit::SharedLimits) -> bool {
        self.shared.set(limits).is_ok()
    }

    /// Whether the local limiters decide (no shared limits attached).
    pub(crate) fn limits_are_local(&self) -> bool {
        #[cfg(feature = "redis")]
        {
            self.shared.get().is_none()
        }
        #[cfg(not(feature = "redis"))]
        {
            true
        }
    }

    pub(crate) fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// How long a request head may take ([`ProxyConfig::header_read_timeout`]).
    pub(crate) fn header_read_timeout(&self) -> Duration {
        self.config.header_read_timeout
    }

    /// The proxies whose `X-Forwarded-*` fields are believed.
    pub(crate) fn trusted_proxies(&self) -> &[IpNet] {
        &self.config.trusted_proxies
    }

    /// The first route that matches, and its index (for [`ProxyState::route`]).
    pub(crate) fn find_route(
        &self,
        method: &http::Method,
        authority: Option<&Authority>,
        path: &str,
    ) -> Option<(usize, &RouteState)> {
        // Only a route with a host condition reads the name (splitting off the port costs).
        let host = if self.host_routes {
            authority.map(Authority::host)
        } else {
            None
        };
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.route.matches(method, host, path))
    }

    /// The route at `index`, as [`ProxyState::find_route`] named it.
    pub(crate) fn route(&self, index: usize) -> Option<&RouteState> {
        self.routes.get(index)
    }

    /// The `Via` value this proxy adds to a message of `version`.
    pub(crate) fn via(&self, version: http::Version) -> HeaderValue {
        let [v10, v11, v2] = &self.via;
        match version {
            http::Version::HTTP_2 => v2.clone(),
            http::Version::HTTP_10 => v10.clone(),
            _ => v11.clone(),
        }
    }

    /// The security headers added to responses that lack them.
    pub(crate) fn security_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.security
    }

    /// The owner of this proxy's upgraded connections.
    pub(crate) fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }
}

/// One route and what it keeps between requests.
pub(crate) struct RouteState {
    route: Route,
    upstreams: Upstreams,
    limiter: Option<Limiter>,
    budget: RetryBudget,
}

impl RouteState {
    fn new(r: &Route) -> Result<Self, Error> {
        let tls = if r.upstreams.iter().any(|u| u.scheme_str() == Some("https")) {
            let config = r
                .tls
                .rustls_config()
                .map_err(|e| Error::Config(format!("route {:?}: {e}", r.prefix)))?;
            Some(config)
        } else {
            None
        };
        Ok(Self {
            upstreams: Upstreams::new(
                &r.upstreams,
                r.balance,
                r.eject_after,
                r.eject_for,
                r.connect_timeout,
                tls.as_ref(),
            )?,
            limiter: r.rate_limit.map(Limiter::new),
            budget: RetryBudget::new(RETRY_RATIO, RETRY_CAP),
            route: r.clone(),
        })
    }

    pub(crate) fn route(&self) -> &Route {
        &self.route
    }

    pub(crate) fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// How long the client at `ip` must wait when it is over the route's rate limit.
    pub(crate) fn rate_limited(&self, ip: IpAddr) -> Option<Duration> {
        let limiter = self.limiter.as_ref()?;
        limiter.check(ip).err()
    }

    /// Counts a request towards the route's retry budget.
    pub(crate) fn earn_retry(&self) {
        self.budget.earn();
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub(crate) fn spend_retry(&self) -> bool {
        self.budget.spend()
    }
}

/// `Via` values for HTTP/1.0, 1.1 and 2.
fn via_values(via_name: &str) -> Result<[HeaderValue; 3], Error> {
    let via_value = |proto: &str| {
        HeaderValue::from_str(&format!("{proto} {via_name}"))
            .map_err(|_| Error::Config(format!("via_name {via_name:?} is not a header value")))
    };
    Ok([via_value("1.0")?, via_value("1.1")?, via_value("2")?])
}

/// The security response headers `sec` asks for, as header values.
fn security_headers(sec: &SecurityHeaders) -> Result<Vec<(HeaderName, HeaderValue)>, Error> {
    let mut security = Vec::new();
    if !sec.enabled {
        return Ok(security);
    }
    let value = |name: &str, v: &str| {
        HeaderValue::from_str(v).map_err(|_| {
            Error::Config(format!(
                "security header {name} {v:?} is not a header value"
            ))
        })
    };
    security.push((
        header::X_FRAME_OPTIONS,
        value("frame_options", &sec.frame_options)?,
    ));
    security.push((
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ));
    security.push((
        header::REFERRER_POLICY,
        value("referrer_policy", &sec.referrer_policy)?,
    ));
    if let Some(csp) = &sec.content_security_policy {
        security.push((
            header::CONTENT_SECURITY_POLICY,
            value("content_security_policy", csp)?,
        ));
    }
    Ok(security)
}
