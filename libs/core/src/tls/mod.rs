//! Client TLS settings shared by every backend: a CA file, a client certificate and key for
//! mutual TLS, read from files named by `TIDEWELL_<AREA>_TLS_*` variables, and the words a
//! refused handshake is explained with.
//!
//! Every Tidewell TLS client runs rustls on `ring` and verifies the server's certificate and host
//! name; there is no switch that turns verification off. Without a CA file the system's root
//! certificates are trusted.
//!
//! ```
//! use tidewell_core::config::Env;
//! use tidewell_core::tls::ClientTls;
//!
//! let env = Env::from_pairs([("TIDEWELL_CACHE_TLS_CA_FILE", "/etc/tidewell/ca.pem")]);
//! let tls = ClientTls::from_source(&env, "TIDEWELL_CACHE")?;
//! assert_eq!(tls.ca_file.as_deref(), Some(std::path::Path::new("/etc/tidewell/ca.pem")));
//! assert!(tls.cert_file.is_none());
//! # Ok::<(), tidewell_core::Error>(())
//! ```

#[cfg(feature = "server-tls")]
mod server;
#[cfg(feature = "server-tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "server-tls")))]
pub use server::{DEFAULT_HSTS, ServerTls, handshake};

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::config::Env;

/// Client TLS settings: what a `rediss://`, `amqps://` or `wss://` connection trusts and shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientTls {
    /// A PEM file of CA certificates that sign the server's certificate (a private CA). Unset:
    /// the system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// A PEM file with this client's certificate chain, for servers that require mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The PEM file with the private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// A client certificate and its key, read from their PEM files.
#[derive(Clone)]
pub struct Identity {
    /// The certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The private key, PEM (never shown in `Debug`).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl ClientTls {
    /// No CA file, no client certificate: the system's roots, no mutual TLS.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificates in the PEM file at `path`.
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents the certificate in `cert` (PEM) with the private key in `key` (PEM).
    #[must_use]
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }

    /// The names of the variables [`from_source`](Self::from_source) reads for `prefix`, with
    /// what each holds (for a configuration table or `--help`).
    pub fn var_names(prefix: &str) -> [(String, &'static str); 3] {
        [
            (
                format!("{prefix}_TLS_CA_FILE"),
                "PEM file of the CA certificates to trust instead of the system's roots",
            ),
            (
                format!("{prefix}_TLS_CERT_FILE"),
                "PEM file of the client certificate, for mutual TLS",
            ),
            (
                format!("{prefix}_TLS_KEY_FILE"),
                "PEM file of the client certificate's private key",
            ),
        ]
    }

    /// Reads `<prefix>_TLS_CA_FILE`, `<prefix>_TLS_CERT_FILE` and `<prefix>_TLS_KEY_FILE` (paths)
    /// from `env`. A certificate without its key (or the reverse) is an error.
    pub fn from_source(env: &Env, prefix: &str) -> Result<Self, Error> {
        let [(ca, _), (cert, _), (key, _)] = Self::var_names(prefix);
        let tls = Self {
            ca_file: env.string(&ca)?.map(PathBuf::from),
            cert_file: env.string(&cert)?.map(PathBuf::from),
            key_file: env.string(&key)?.map(PathBuf::from),
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(Error::InvalidVar {
                name: if tls.cert_file.is_some() { key } else { cert },
                reason: "a client certificate and its key are set together".into(),
                expected: "both or neither of the certificate and key files",
            });
        }
        Ok(tls)
    }

    /// Whether nothing is set (the system's roots, no client certificate).
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// The CA file's contents, checked to hold at least one PEM certificate.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, Error> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = read(path, "CA")?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(Error::Tls {
                reason: format!(
                    "the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                ),
            });
        }
        Ok(Some(pem))
    }

    /// The client certificate and key, read from their files.
    pub fn identity(&self) -> Result<Option<Identity>, Error> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some(Identity {
                cert_pem: read(cert, "client certificate")?,
                key_pem: read(key, "client key")?,
            })),
            (None, None) => Ok(None),
            _ => Err(Error::Tls {
                reason: "a client certificate needs its key file, and a key its certificate".into(),
            }),
        }
    }
}

#[cfg(feature = "redis")]
impl ClientTls {
    /// The certificates for a `rediss://` client (redis-rs's form). A CA file replaces the
    /// system's roots there: only that CA is trusted.
    pub fn redis_certificates(&self) -> Result<redis::TlsCertificates, Error> {
        Ok(redis::TlsCertificates {
            client_tls: self.identity()?.map(|id| redis::ClientTlsConfig {
                client_cert: id.cert_pem,
                client_key: id.key_pem,
            }),
            root_cert: self.ca_pem()?,
        })
    }

    /// A Redis client for `url`: `redis://` in plaintext, `rediss://` over TLS with these
    /// settings. A `#insecure` URL (redis-rs's switch that skips verification) is refused, and so
    /// is a CA or client certificate with a plaintext URL, which would silently go unused.
    pub fn redis_client(&self, url: &str) -> Result<redis::Client, Error> {
        let shown = crate::config::redact_url(url);
        let invalid = |reason: String| Error::Tls { reason };
        if url.contains('#') {
            return Err(invalid(format!(
                "the Redis URL {shown} has a fragment; `#insecure` (no certificate check) is not supported, set a CA file instead"
            )));
        }
        let tls = url.starts_with("rediss://") || url.starts_with("valkeys://");
        if tls {
            install_ring();
        }
        let client = if tls && !self.is_default() {
            redis::Client::build_with_tls(url, self.redis_certificates()?)
        } else if !tls && !self.is_default() {
            return Err(invalid(format!(
                "TLS files are set but the Redis URL {shown} is not rediss://; use rediss:// or unset them"
            )));
        } else {
            redis::Client::open(url)
        };
        client.map_err(|e| invalid(format!("the Redis URL {shown}: {e}")))
    }
}

#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
impl ClientTls {
    /// A rustls client configuration (ring, TLS 1.2 and 1.3) with these settings: the CA file's
    /// certificates as the only roots when set (as libpq's `sslrootcert` and redis-rs do), else
    /// the system's; the client certificate when set. Certificates and host names are always
    /// verified.
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, Error> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |reason: String| Error::Tls { reason };
        let mut roots = rustls::RootCertStore::empty();
        match self.ca_pem()? {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| invalid(format!("the CA file: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| invalid(format!("a certificate of the CA file: {e}")))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    return Err(invalid(format!(
                        "no system root certificates found ({:?}); install ca-certificates or set a CA file",
                        found.errors
                    )));
                }
                // Unreadable entries among readable ones are skipped, as every TLS client does.
                let _ = roots.add_parsable_certificates(found.certs);
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| invalid(e.to_string()))?
            .with_root_certificates(roots);
        match self.identity()? {
            Some(id) => {
                let chain = CertificateDer::pem_slice_iter(&id.cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid(format!("the client certificate: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(&id.key_pem)
                    .map_err(|e| invalid(format!("the client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid(format!("the client certificate and key: {e}")))
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// Makes rustls's `ring` provider the process default, unless one is installed: clients that
/// build their TLS configuration with the process default (redis-rs, tungstenite) then work even
/// where another crate of the build enables a second provider.
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub fn install_ring() {
    // Err only means a provider is already installed, which is all this needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Tls {
        reason: format!("cannot read the {what} file {}: {e}", path.display()),
    })
}

/// Explains a refused TLS handshake to `host` in a person's words, if `error` (or an error it was
/// caused by) is one: the certificate's signer is not trusted, it has expired or is not valid
/// yet, it was issued for another name, or the server wants a client certificate. `None` when the
/// error is not about TLS.
pub fn explain(host: &str, error: &(dyn StdError + 'static)) -> Option<String> {
    let text = chain_text(error);
    // BadSignature: a trusted CA has the issuer's name but did not sign it (another CA of the
    // same name); for the client that is the same as an unknown issuer.
    let reason = if text.contains("UnknownIssuer")
        || text.contains("unknown issuer")
        || text.contains("BadSignature")
    {
        "its certificate is not signed by a trusted CA; set the CA file to the CA that signed it"
    } else if text.contains("Expired") || text.contains("expired") {
        "its certificate has expired"
    } else if text.contains("NotValidYet") || text.contains("not valid yet") {
        "its certificate is not valid yet (check both clocks)"
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        "its certificate is not valid for this host name; connect by a name the certificate lists"
    } else if text.contains("CertificateRequired")
        || text.contains("certificate required")
        || text.contains("HandshakeFailure") && text.contains("AlertReceived")
    {
        "the server requires a client certificate; set the client certificate and key files"
    } else if text.contains("CorruptMessage")
        || text.contains("InvalidContentType")
        || text.contains("received corrupt message")
        || text.contains("InvalidMessage")
    {
        "it did not answer in TLS; is this its TLS port?"
    } else if text.contains("invalid peer certificate") || text.contains("InvalidCertificate") {
        "its certificate was refused"
    } else {
        return None;
    };
    Some(format!(
        "TLS to {host} refused: {reason} ({})",
        last_line(&text)
    ))
}

/// The error and every source it has, joined.
fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut text = format!("{error} {error:?}");
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(&format!(" | {e} {e:?}"));
        next = e.source();
    }
    text
}

fn last_line(text: &str) -> String {
    let first = text.split(" | ").last().unwrap_or(text);
    first.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_source_reads_the_three_paths_and_pairs_cert_with_key() {
        let env = Env::from_pairs([
            ("X_TLS_CA_FILE", "/ca.pem"),
            ("X_TLS_CERT_FILE", "/c.pem"),
            ("X_TLS_KEY_FILE", "/k.pem"),
        ]);
        let tls = ClientTls::from_source(&env, "X").unwrap();
        assert_eq!(
            tls,
            ClientTls::new()
                .ca_file("/ca.pem")
                .client_cert("/c.pem", "/k.pem")
        );
        assert!(
            ClientTls::from_source(&Env::from_pairs([("X_TLS_CERT_FILE", "/c")]), "X").is_err()
        );
        assert!(ClientTls::from_source(&Env::from_pairs([("X_TLS_KEY_FILE", "/k")]), "X").is_err());
        assert!(
            ClientTls::from_source(&Env::from_pairs::<&str, &str>([]), "X")
                .unwrap()
                .is_default()
        );
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let missing = ClientTls::new()
            .ca_file("/nonexistent/ca.pem")
            .ca_pem()
            .unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("tidewell-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"not a certificate").unwrap();
        let err = ClientTls::new().ca_file(&empty).ca_pem().unwrap_err();
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn explain_names_the_host_and_the_reason() {
        let e = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let text = explain("db.example:5432", &e).unwrap();
        assert!(text.contains("db.example:5432"), "{text}");
        assert!(text.contains("not signed by a trusted CA"), "{text}");
        let e = std::io::Error::other("invalid peer certificate: BadSignature");
        assert!(
            explain("h", &e)
                .unwrap()
                .contains("not signed by a trusted CA")
        );
        let e = std::io::Error::other("invalid peer certificate: Expired");
        assert!(explain("h", &e).unwrap().contains("expired"));
        let e = std::io::Error::other("invalid peer certificate: NotValidForName");
        assert!(explain("h", &e).unwrap().contains("host name"));
        let e = std::io::Error::other("connection refused");
        assert!(explain("h", &e).is_none());
    }

    #[test]
    fn identity_debug_hides_the_key() {
        let id = Identity {
            cert_pem: b"cert".to_vec(),
            key_pem: b"secret key".to_vec(),
        };
        let shown = format!("{id:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
