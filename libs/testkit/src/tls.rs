//! The TLS endpoints of `scripts/tls-fixture` (RabbitMQ, Redis, PostgreSQL with their TLS
//! listeners, certificates made by openssl), and TLS servers the tests start themselves with
//! certificates made here (expired, not yet valid), for the failures no real server is set up
//! to show.
#![allow(
    clippy::expect_used,
    reason = "a test kit: a server that cannot be set up is the calling test's failure"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// The running fixture: where its certificates are and which ports its servers listen on.
#[derive(Clone, Debug)]
pub struct TlsFixture {
    certs: PathBuf,
    vars: HashMap<String, String>,
}

impl TlsFixture {
    /// Reads `$TIDEWELL_TLS_FIXTURE/env` (default `/tmp/tidewell-tls-fixture/env`), written by
    /// `scripts/tls-fixture start`. Panics with what to run when the fixture is not up.
    pub fn get() -> Self {
        let dir = std::env::var("TIDEWELL_TLS_FIXTURE")
            .unwrap_or_else(|_| "/tmp/tidewell-tls-fixture".into());
        let env = PathBuf::from(&dir).join("env");
        let Ok(text) = std::fs::read_to_string(&env) else {
            panic!(
                "the TLS fixture is not running ({} is missing): run `scripts/tls-fixture start` \
                 (scripts/test does)",
                env.display()
            );
        };
        let vars: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let certs = PathBuf::from(
            vars.get("TIDEWELL_TEST_TLS_DIR")
                .cloned()
                .unwrap_or_default(),
        );
        Self { certs, vars }
    }

    fn port(&self, name: &str) -> u16 {
        self.vars
            .get(name)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from the TLS fixture's env file"))
    }

    /// The CA that signed every fixture server's certificate (PEM file).
    pub fn ca(&self) -> PathBuf {
        self.certs.join("ca.pem")
    }

    /// A CA that signed nothing here (PEM file): trusting only it, every server is refused.
    pub fn other_ca(&self) -> PathBuf {
        self.certs.join("other-ca.pem")
    }

    /// A client certificate signed by [`ca`](Self::ca) (PEM), for mutual TLS.
    pub fn client_cert(&self) -> PathBuf {
        self.certs.join("client.pem")
    }

    /// The client certificate's private key (PKCS#8 PEM).
    pub fn client_key(&self) -> PathBuf {
        self.certs.join("client.key")
    }

    /// RabbitMQ's TLS listener (a broker node of its own, TLS only).
    pub fn amqps_port(&self) -> u16 {
        self.port("TIDEWELL_TEST_AMQPS_PORT")
    }

    /// A Redis that speaks only TLS.
    pub fn rediss_port(&self) -> u16 {
        self.port("TIDEWELL_TEST_REDISS_PORT")
    }

    /// A Redis that speaks only TLS and requires a client certificate.
    pub fn rediss_mtls_port(&self) -> u16 {
        self.port("TIDEWELL_TEST_REDISS_MTLS_PORT")
    }

    /// A PostgreSQL with `ssl = on` that accepts only TLS connections (user `postgres`, trust).
    pub fn postgres_tls_port(&self) -> u16 {
        self.port("TIDEWELL_TEST_PG_TLS_PORT")
    }
}

/// What a [`TlsStub`]'s certificate says about its validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// Valid from yesterday for a year.
    Current,
    /// Valid for one day, two years ago.
    Expired,
    /// Valid from a year from now.
    NotYetValid,
}

/// A TLS server on 127.0.0.1 with a certificate for `localhost` signed by its own CA (made
/// here), that completes handshakes and then closes. With [`postgres`](Self::postgres) it first
/// answers PostgreSQL's SSLRequest, as a server with `ssl = on` does.
#[derive(Debug)]
pub struct TlsStub {
    /// The port it listens on.
    pub port: u16,
    /// Its CA (PEM file), to trust it.
    pub ca: PathBuf,
    /// Handshakes it completed.
    pub handshakes: Arc<std::sync::atomic::AtomicUsize>,
    _dir: TempDir,
}

#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TlsStub {
    /// Starts a stub whose certificate has `validity`.
    pub async fn start(validity: Validity) -> Self {
        Self::start_with(validity, false).await
    }

    /// Starts a stub that first answers PostgreSQL's SSLRequest with `S`.
    pub async fn postgres(validity: Validity) -> Self {
        Self::start_with(validity, true).await
    }

    async fn start_with(validity: Validity, postgres: bool) -> Self {
        let (ca_pem, chain, key) = make_certs(validity);
        let dir = std::env::temp_dir().join(crate::unique_name("tls-stub"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem).expect("write CA");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&handshakes);
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    if postgres {
                        let mut request = [0u8; 8];
                        if tcp.read_exact(&mut request).await.is_err()
                            || tcp.write_all(b"S").await.is_err()
                        {
                            return;
                        }
                    }
                    let accepted =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                    if let Ok(Ok(mut stream)) = accepted {
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = stream.shutdown().await;
                    }
                });
            }
        });
        Self {
            port,
            ca,
            handshakes,
            _dir: TempDir(dir),
        }
    }
}

/// A CA, and a certificate for `localhost` signed by it with its key, in PEM files of a temporary
/// directory (removed on drop): what a TLS server under test is given to serve.
#[derive(Debug)]
pub struct CertFiles {
    /// The CA's certificate (trust it to accept the server).
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
    dir: TempDir,
}

impl CertFiles {
    /// A new CA and a `localhost` certificate valid as `validity` says.
    pub fn generate(validity: Validity) -> Self {
        Self::generate_for(&["localhost"], validity)
    }

    /// A new CA and a certificate for `names` (DNS names or IP addresses).
    pub fn generate_for(names: &[&str], validity: Validity) -> Self {
        let dir = std::env::temp_dir().join(crate::unique_name("tls-certs"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let files = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir: TempDir(dir),
        };
        let (ca_pem, chain, key) = make_certs_for(names, validity);
        std::fs::write(&files.ca, ca_pem).expect("write CA");
        write_server(&files.cert, &files.key, &chain, &key);
        files
    }

    /// Replaces the files in place with a new CA and certificate (answers the new CA's path,
    /// `ca-2.pem`, `ca-3.pem`…): a certificate rotation as an operator does it.
    pub fn rotate(&self, validity: Validity) -> PathBuf {
        let n = std::fs::read_dir(&self.dir.0).map_or(0, Iterator::count);
        let (ca_pem, chain, key) = make_certs(validity);
        let ca = self.dir.0.join(format!("ca-{n}.pem"));
        std::fs::write(&ca, ca_pem).expect("write CA");
        write_server(&self.cert, &self.key, &chain, &key);
        ca
    }
}

/// Writes the key first and the certificate last, each through a rename, so a reader never sees
/// half a file.
fn write_server(
    cert: &Path,
    key: &Path,
    chain: &[CertificateDer<'static>],
    der: &PrivateKeyDer<'_>,
) {
    let tmp = key.with_extension("tmp");
    std::fs::write(&tmp, pem("PRIVATE KEY", der.secret_der())).expect("write key");
    std::fs::rename(&tmp, key).expect("rename key");
    let text: String = chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
    let tmp = cert.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write cert");
    std::fs::rename(&tmp, cert).expect("rename cert");
}

/// A rustls client configuration that trusts only the CA in `ca` (PEM file) and offers `alpn`.
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("add CA");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A CA (PEM) and a `localhost` certificate chain with its key, valid as `validity` says.
fn make_certs(
    validity: Validity,
) -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    make_certs_for(&["localhost"], validity)
}

/// [`make_certs`] for `names`.
fn make_certs_for(
    names: &[&str],
    validity: Validity,
) -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let day = time::Duration::days(1);
    let now = time::OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, crate::unique_name("Tidewell stub CA"));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - day * 2 * 365;
    ca_params.not_after = now + day * 2 * 365;
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");

    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    (params.not_before, params.not_after) = match validity {
        Validity::Current => (now - day, now + day * 365),
        Validity::Expired => (now - day * 2 * 365, now - day * (2 * 365 - 1)),
        Validity::NotYetValid => (now + day * 365, now + day * 2 * 365),
    };
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("certificate");
    let ca_pem = pem("CERTIFICATE", ca.der());
    let chain = vec![cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (ca_pem, chain, key)
}

/// PEM text of `der` with `label` (RFC 7468: base64 in lines of 64), e.g. `"CERTIFICATE"`.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
