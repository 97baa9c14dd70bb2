//! TLS to the OTLP collector (feature `tls`): the exporter's blocking HTTP client over rustls with
//! the ring provider, trusting the system's roots plus an optional CA file, with an optional
//! client certificate (mutual TLS).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;
use crate::otlp_tls::OtlpTls as TlsFiles;

/// The exporter's HTTP client. Built on its own thread: reqwest's blocking client refuses to be
/// built inside an async runtime, and `init` may be called from `#[tokio::main]`.
pub(crate) fn client(
    files: &TlsFiles,
    timeout: Duration,
) -> Result<reqwest::blocking::Client, Error> {
    let config = client_config(files)?;
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(config)
            .timeout(timeout)
            .build()
    })
    .join()
    .map_err(|_| Error::Config("building the OTLP HTTP client panicked".into()))?
    .map_err(|e| Error::Config(format!("cannot build the OTLP HTTP client with TLS: {e}")))
}

fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    // The system's roots; a few unreadable ones are not a reason to refuse to start.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert); // ok to ignore: a malformed system root is skipped
    }
    if let Some(ca) = &files.certificate {
        for cert in certificates(ca, "OTEL_EXPORTER_OTLP_CERTIFICATE")? {
            roots.add(cert).map_err(|e| {
                Error::Config(format!(
                    "OTEL_EXPORTER_OTLP_CERTIFICATE {}: a certificate was refused ({e})",
                    ca.display()
                ))
            })?;
        }
    }
    if roots.is_empty() {
        return Err(Error::Config(
            "no trusted roots for TLS to the collector: install the system's CA certificates \
             (ca-certificates) or name a CA file in OTEL_EXPORTER_OTLP_CERTIFICATE"
                .into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots);
    match (&files.client_certificate, &files.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::Config(format!(
                    "OTEL_EXPORTER_OTLP_CLIENT_KEY {}: no PEM private key could be read ({e})",
                    key.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::Config(format!(
                    "the client certificate and key do not make a TLS identity ({e}); check \
                     OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"
                ))
            })
        }
        _ => Err(Error::Config(
            "mutual TLS needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and \
             OTEL_EXPORTER_OTLP_CLIENT_KEY"
                .into(),
        )),
    }
}

fn certificates(path: &Path, var: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::Config(format!(
                "{var} {}: cannot read PEM certificates ({e})",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{var} {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tidewell-tls-unit-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn error(files: &TlsFiles) -> String {
        client_config(files).unwrap_err().to_string()
    }

    #[test]
    fn bad_certificate_settings_are_named() {
        let missing = TlsFiles {
            certificate: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let e = error(&missing);
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_CERTIFICATE") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );

        let empty = TlsFiles {
            certificate: Some(temp_file("empty.pem", "not a certificate\n")),
            ..TlsFiles::default()
        };
        assert!(
            error(&empty).contains("no PEM certificate"),
            "{}",
            error(&empty)
        );

        let half = TlsFiles {
            client_key: Some("/nonexistent/key.pem".into()),
            ..TlsFiles::default()
        };
        let e = error(&half);
        assert!(
            e.contains("CLIENT_CERTIFICATE") && e.contains("CLIENT_KEY"),
            "{e}"
        );
    }

    #[test]
    fn system_roots_are_enough_without_files() {
        // The machine's CA bundle (ca-certificates) is the trust store when no file is named.
        assert!(client_config(&TlsFiles::default()).is_ok());
    }
}
