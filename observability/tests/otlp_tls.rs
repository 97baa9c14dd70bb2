//! Spans exported over TLS (feature `tls`): a test OTLP/HTTP receiver that only speaks TLS, with
//! a certificate from a test CA the exporter is told to trust (`with_otlp_certificate`, the
//! builder form of `OTEL_EXPORTER_OTLP_CERTIFICATE`). One test per binary: `init` installs the
//! global subscriber.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tidewell_observability::{LogFormat, TelemetryConfig, init};
use tokio::net::TcpListener;

/// A TLS-only OTLP/HTTP receiver for `localhost`; answers its URL, the CA's PEM, and the names
/// of the spans it received.
async fn tls_receiver() -> (String, String, Arc<Mutex<Vec<String>>>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &*ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let names: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = names.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (acceptor, kept) = (acceptor.clone(), kept.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate fails here; nothing to serve.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            for rs in export.resource_spans {
                                for ss in rs.scope_spans {
                                    kept.lock()
                                        .unwrap()
                                        .extend(ss.spans.into_iter().map(|s| s.name));
                                }
                            }
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (
        format!("https://localhost:{port}/v1/traces"),
        tidewell_testkit::tls::pem("CERTIFICATE", ca.der()),
        names,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_trusted_through_a_ca_file() {
    let (endpoint, ca_pem, names) = tls_receiver().await;
    let dir = std::env::temp_dir().join(format!(
        "tidewell-otlp-tls-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let telemetry = init(
        TelemetryConfig::new("otlp-tls-test")
            .with_log_format(LogFormat::Off)
            .with_otlp_traces_endpoint(endpoint)
            .with_otlp_certificate(&ca_file),
    )
    .unwrap();
    tracing::info_span!("exported.over.tls").in_scope(|| tracing::info!("inside"));
    tokio::task::spawn_blocking(move || telemetry.flush())
        .await
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !names
        .lock()
        .unwrap()
        .iter()
        .any(|n| n == "exported.over.tls")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the span did not arrive over TLS: {:?}",
            names.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
