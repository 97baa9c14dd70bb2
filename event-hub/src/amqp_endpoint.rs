//! Where the hub connects and how: the nodes of a comma-separated URL list, lapin's TLS
//! settings for `amqps://`, and connection errors that say why (a refused certificate named).

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use tidewell_core::tls::ClientTls;

use crate::Error;

/// The URLs of a comma-separated list, all `amqp://` or all `amqps://`: a list that mixes them
/// would let a TLS deployment fall back to plaintext when a node fails.
pub(crate) fn split_urls(list: &str) -> Result<Vec<String>, Error> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    let tls = urls.iter().filter(|u| u.starts_with("amqps://")).count();
    if tls != 0 && tls != urls.len() {
        return Err(Error::Config(tidewell_core::Error::Tls {
            reason: "the event hub URLs mix amqps:// and amqp://; give every node as amqps://"
                .into(),
        }));
    }
    if urls.is_empty() {
        return Err(Error::UnsupportedUrl {
            scheme: String::new(),
        });
    }
    Ok(urls)
}

/// lapin's TLS settings for `url` from `tls`: the CA file added to the system's roots, the client
/// certificate and key. TLS files with an `amqp://` URL are refused (they would go unused).
pub(crate) fn tls_config(url: &str, tls: &ClientTls) -> Result<OwnedTLSConfig, Error> {
    let config_error = Error::Config;
    if tls.is_default() {
        return Ok(OwnedTLSConfig::default());
    }
    if !url.starts_with("amqps:") {
        return Err(Error::Config(tidewell_core::Error::Tls {
            reason: "TLS files are set but the event hub URL is not amqps://; use amqps:// (port 5671) or unset them".into(),
        }));
    }
    let cert_chain = tls
        .ca_pem()
        .map_err(config_error)?
        .map(|pem| String::from_utf8_lossy(&pem).into_owned());
    let identity = tls
        .identity()
        .map_err(config_error)?
        .map(|id| OwnedIdentity::PKCS8 {
            pem: id.cert_pem,
            key: id.key_pem,
        });
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

pub(crate) fn connect_error(url: &str, e: impl Into<crate::error::BoxError>) -> Error {
    let source = e.into();
    let source = if url.starts_with("amqps:") {
        // Never a plaintext fallback: a TLS URL either completes a verified handshake or fails.
        let host = host_of(url);
        tidewell_core::tls::explain(&host, source.as_ref()).map_or_else(
            || {
                format!(
                    "TLS connection to {host} failed ({source}); is the broker's TLS listener on \
                     this port (5671 by default) and is its certificate trusted?"
                )
                .into()
            },
            Into::into,
        )
    } else {
        source
    };
    Error::Connect {
        url: tidewell_core::config::redact_url(url),
        source,
    }
}

/// `host:port` of an AMQP URL, without credentials.
pub(crate) fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}
