//! Which certificate files TLS to the collector uses: configuration only, read by `telemetry`
//! and used by `tls` (feature `tls`).

/// Certificates for TLS to the collector (used with the `tls` feature): PEM files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpTls {
    /// CA certificates trusted in addition to the system's roots (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub certificate: Option<std::path::PathBuf>,
    /// The client's certificate chain, for mutual TLS (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`).
    pub client_certificate: Option<std::path::PathBuf>,
    /// The client's private key, for mutual TLS (`OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub client_key: Option<std::path::PathBuf>,
}

impl OtlpTls {
    #[cfg(not(feature = "tls"))]
    pub(crate) fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}
