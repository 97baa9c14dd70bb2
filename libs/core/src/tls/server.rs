//! Server TLS: a certificate chain and key from PEM files, TLS 1.2 and 1.3 only, ALPN `h2` and
//! `http/1.1`, and the certificate reloaded without a restart when its files change or the
//! process gets SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::Error;
use crate::config::Env;

/// How often the certificate files are checked for a change.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Where a server's certificate and key are, and what it adds to HTTPS answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerTls {
    /// PEM file: the server's certificate, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM file: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The `Strict-Transport-Security` value sent on HTTPS answers; `None` sends none.
    pub hsts: Option<String>,
}

/// The default `Strict-Transport-Security`: one year, this host only.
pub const DEFAULT_HSTS: &str = "max-age=31536000";

impl ServerTls {
    /// The certificate in `cert_file` with the key in `key_file`, HSTS [`DEFAULT_HSTS`].
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            hsts: Some(DEFAULT_HSTS.to_owned()),
        }
    }

    /// Sends `value` as `Strict-Transport-Security` (e.g. `max-age=63072000; includeSubDomains`),
    /// or nothing with `None`.
    #[must_use]
    pub fn hsts(mut self, value: Option<String>) -> Self {
        self.hsts = value;
        self
    }

    /// The variables [`from_source`](Self::from_source) reads for `prefix`, with what each holds.
    pub fn var_names(prefix: &str) -> [(String, &'static str); 3] {
        [
            (
                format!("{prefix}_TLS_CERT_FILE"),
                "PEM certificate chain to serve HTTPS with (unset: plain HTTP)",
            ),
            (
                format!("{prefix}_TLS_KEY_FILE"),
                "PEM private key of the served certificate",
            ),
            (
                format!("{prefix}_HSTS"),
                "Strict-Transport-Security on HTTPS answers (`off`: none)",
            ),
        ]
    }

    /// Reads `<prefix>_TLS_CERT_FILE`, `<prefix>_TLS_KEY_FILE` and `<prefix>_HSTS` (default
    /// [`DEFAULT_HSTS`], `off` for none). `None` when neither file is set; one without the other
    /// is an error.
    pub fn from_source(env: &Env, prefix: &str) -> Result<Option<Self>, Error> {
        let [(cert, _), (key, _), (hsts, _)] = Self::var_names(prefix);
        let (c, k) = (env.string(&cert)?, env.string(&key)?);
        let tls = match (c, k) {
            (Some(c), Some(k)) => Self::new(c, k),
            (None, None) => return Ok(None),
            (c, _) => {
                return Err(Error::InvalidVar {
                    name: if c.is_some() { key } else { cert },
                    reason: "the served certificate and its key are set together".into(),
                    expected: "both or neither of the certificate and key files",
                });
            }
        };
        let hsts = match env.string(&hsts)? {
            None => Some(DEFAULT_HSTS.to_owned()),
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            Some(v) => Some(v),
        };
        Ok(Some(tls.hsts(hsts)))
    }

    /// The rustls configuration (ring, TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, no client
    /// certificates), with the certificate loaded now (an unreadable or mismatched file is an
    /// error here, at start) and reloaded afterwards when its files change or on SIGHUP. A reload
    /// that fails keeps the certificate in use and logs why. The watch ends when the last
    /// handle to the configuration is dropped.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = Arc::new(Reloading {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            current: RwLock::new(Loaded::read(&self.cert_file, &self.key_file, &provider)?),
            provider: Arc::clone(&provider),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| tls_error(format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        watch(Arc::downgrade(&resolver));
        Ok(Arc::new(config))
    }
}

impl ServerTls {
    /// A TLS acceptor with [`server_config`](Self::server_config).
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, Error> {
        Ok(tokio_rustls::TlsAcceptor::from(self.server_config()?))
    }
}

/// The server side of a TLS handshake on `io` from `peer`, within `timeout`; `None` (logged at
/// debug) when it fails or takes longer. Run it in the connection's own task, so a slow client
/// never holds up the accepts.
pub async fn handshake<IO>(
    acceptor: &tokio_rustls::TlsAcceptor,
    io: IO,
    timeout: Duration,
    peer: std::net::SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<IO>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

fn tls_error(reason: String) -> Error {
    Error::Tls { reason }
}

/// The certificate in use, and the files' modification times it was read at.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    stamp: (Option<SystemTime>, Option<SystemTime>),
}

impl Loaded {
    fn read(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> Result<Self, Error> {
        let stamp = (modified(cert_file), modified(key_file));
        let chain = CertificateDer::pem_file_iter(cert_file)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| {
                tls_error(format!(
                    "cannot read the certificate file {}: {e}",
                    cert_file.display()
                ))
            })?;
        if chain.is_empty() {
            return Err(tls_error(format!(
                "the certificate file {} holds no PEM certificate",
                cert_file.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
            tls_error(format!(
                "cannot read a private key from {}: {e}",
                key_file.display()
            ))
        })?;
        let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
            tls_error(format!(
                "the key in {} does not fit the certificate in {}: {e}",
                key_file.display(),
                cert_file.display()
            ))
        })?;
        Ok(Self {
            key: Arc::new(key),
            stamp,
        })
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves the current certificate; reloads it on request.
#[derive(Debug)]
struct Reloading {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Loaded>,
    provider: Arc<CryptoProvider>,
}

impl Reloading {
    /// Reads the files again if `force` or their modification times changed; keeps the current
    /// certificate when the new one does not load (a half-written file, a key that does not fit
    /// yet): the next change or signal tries again.
    fn reload(&self, force: bool) {
        let stamp = (modified(&self.cert_file), modified(&self.key_file));
        let unchanged = self
            .current
            .read()
            .map(|c| c.stamp == stamp)
            .unwrap_or(false);
        if unchanged && !force {
            return;
        }
        match Loaded::read(&self.cert_file, &self.key_file, &self.provider) {
            Ok(loaded) => {
                if let Ok(mut current) = self.current.write() {
                    *current = loaded;
                    tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
                }
            }
            Err(error) => {
                // Remember the stamp so a broken file is reported once per change, not every
                // poll; the certificate in use stays.
                if let Ok(mut current) = self.current.write() {
                    current.stamp = stamp;
                }
                tracing::warn!(%error, "TLS certificate not reloaded; still serving the previous one");
            }
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c.key))
    }
}

/// Polls the files every [`WATCH_EVERY`] and reloads on SIGHUP, while the resolver lives.
fn watch(resolver: Weak<Reloading>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no tokio runtime: the TLS certificate will not be reloaded");
        return;
    };
    handle.spawn(async move {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let force = match hup.as_mut() {
                Some(h) => tokio::select! {
                    _ = h.recv() => true,
                    () = tokio::time::sleep(WATCH_EVERY) => false,
                },
                None => {
                    tokio::time::sleep(WATCH_EVERY).await;
                    false
                }
            };
            #[cfg(not(unix))]
            let force = {
                tokio::time::sleep(WATCH_EVERY).await;
                false
            };
            let Some(resolver) = resolver.upgrade() else {
                return;
            };
            resolver.reload(force);
        }
    });
}
