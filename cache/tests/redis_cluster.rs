//! The cache on a real 3-node Redis Cluster started by the test: reads, tag invalidation, the
//! raced load, clear, and local tiers kept in step over cluster pub/sub, for prefixes spread over
//! the nodes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidewell_cache::{Cache, Key, Tag};

const MIN: Duration = Duration::from_secs(60);

struct Cluster {
    ports: Vec<u16>,
    nodes: Vec<Child>,
    dir: PathBuf,
    /// TLS-only nodes (`--tls-port`, `--tls-cluster`): the CA file clients trust.
    tls: Option<PathBuf>,
}

fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..50_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

impl Cluster {
    /// `redis-cli` with the TLS flags of a TLS cluster.
    fn cli(&self) -> Command {
        let mut cli = Command::new("redis-cli");
        if let Some(ca) = &self.tls {
            cli.arg("--tls").arg("--cacert").arg(ca);
        }
        cli
    }

    fn start() -> Self {
        Self::start_with(None)
    }

    /// A cluster speaking only TLS with `certs` (valid for 127.0.0.1, the address the nodes
    /// announce), also between its nodes.
    fn start_tls(certs: &tidewell_testkit::tls::CertFiles) -> Self {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&tidewell_testkit::tls::CertFiles>) -> Self {
        let dir = std::env::temp_dir().join(tidewell_testkit::unique_name("tw-cluster"));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = ports
            .iter()
            .map(|p| {
                let mut server = Command::new("redis-server");
                match certs {
                    None => server.args(["--port", &p.to_string()]),
                    Some(c) => server
                        .args(["--port", "0", "--tls-port", &p.to_string()])
                        .args(["--tls-cluster", "yes", "--tls-auth-clients", "no"])
                        .arg("--tls-cert-file")
                        .arg(&c.cert)
                        .arg("--tls-key-file")
                        .arg(&c.key)
                        .arg("--tls-ca-cert-file")
                        .arg(&c.ca),
                };
                server
                    .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
                    .args([
                        "--cluster-config-file",
                        &format!("nodes-{p}.conf"),
                        "--cluster-node-timeout",
                        "2000",
                    ])
                    .args(["--save", "", "--appendonly", "no"])
                    .current_dir(&dir)
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server on PATH (apt-get install redis-server)")
            })
            .collect();
        let cluster = Self {
            ports,
            nodes,
            dir,
            tls: certs.map(|c| c.ca.clone()),
        };
        for p in &cluster.ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", *p)).is_err() {
                assert!(Instant::now() < deadline, "cluster node {p} did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = cluster
            .cli()
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli on PATH (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = cluster.ports.iter().all(|p| {
                let info = cluster
                    .cli()
                    .args(["-p", &p.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok")
            });
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not reach state ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss-cluster"
        } else {
            "redis-cluster"
        };
        format!("{scheme}://{}", nodes.join(","))
    }

    /// The port of the node that owns `key`'s slot.
    fn owner(&self, key: &str) -> u16 {
        let p = self.ports[0].to_string();
        let slot = self
            .cli()
            .args(["-p", &p, "cluster", "keyslot", key])
            .output()
            .unwrap();
        let slot: u16 = String::from_utf8_lossy(&slot.stdout)
            .trim()
            .parse()
            .unwrap();
        let slots = self
            .cli()
            .args(["-p", &p, "cluster", "slots"])
            .output()
            .unwrap();
        // `cluster slots` prints: start, end, ip, port, id, ... per range.
        let lines: Vec<String> = String::from_utf8_lossy(&slots.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        for w in lines.windows(4) {
            if let (Ok(start), Ok(end), Ok(port)) = (
                w[0].parse::<u16>(),
                w[1].parse::<u16>(),
                w[3].parse::<u16>(),
            ) && (start..=end).contains(&slot)
                && self.ports.contains(&port)
            {
                return port;
            }
        }
        panic!("no owner for slot {slot}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_redis_cluster() {
    let cluster = Cluster::start();
    let prefixes = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let owners: HashSet<u16> = prefixes
        .iter()
        .map(|p| cluster.owner(&format!("{{{p}}}")))
        .collect();
    assert!(
        owners.len() >= 2,
        "the prefixes spread over several nodes: {owners:?}"
    );

    for prefix in prefixes {
        let build = || {
            Cache::builder()
                .url(cluster.url())
                .prefix(prefix)
                .fail_open(false)
                .local_tier(100, Duration::from_secs(30))
                .build()
        };
        let (a, b) = (build().await.unwrap(), build().await.unwrap());
        for c in [&a, &b] {
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.health().await.local_tier_live != Some(true) {
                assert!(Instant::now() < deadline, "feed live on the cluster");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let (na, nb) = (a.namespace("users").unwrap(), b.namespace("users").unwrap());
        let key = Key::new("user").part(1);
        let tag = Tag::new("user").part(1);
        na.set(&key, &"Ada", MIN, std::slice::from_ref(&tag))
            .await
            .unwrap();
        assert_eq!(
            nb.get::<String>(&key).await.unwrap().as_deref(),
            Some("Ada"),
            "{prefix}"
        );
        assert_eq!(
            na.get::<String>(&key).await.unwrap().as_deref(),
            Some("Ada")
        );

        b.invalidate_tags(std::slice::from_ref(&tag)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while na.get::<String>(&key).await.unwrap().is_some() {
            assert!(
                Instant::now() < deadline,
                "invalidation reached the other local tier ({prefix})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A load raced by an invalidation is not served afterwards.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let load = {
            let (na, key, tag) = (na.clone(), key.clone(), tag.clone());
            tokio::spawn(async move {
                na.get_or_load(&key, MIN, &[tag], move || async move {
                    rx.await.unwrap();
                    Ok::<_, std::io::Error>("old".to_owned())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.invalidate_tags(std::slice::from_ref(&tag)).await.unwrap();
        tx.send(()).unwrap();
        assert_eq!(load.await.unwrap().unwrap(), "old");
        assert_eq!(na.get::<String>(&key).await.unwrap(), None, "{prefix}");

        for i in 0..50 {
            na.set(&Key::new("k").part(i), &i, MIN, &[]).await.unwrap();
        }
        na.clear().await.unwrap();
        assert_eq!(
            nb.get::<u32>(&Key::new("k").part(7)).await.unwrap(),
            None,
            "clear reached the slot's node ({prefix})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_tls_redis_cluster_and_refuses_an_untrusted_one() {
    use tidewell_core::tls::ClientTls;
    use tidewell_testkit::tls::{CertFiles, Validity};
    let certs = CertFiles::generate_for(&["localhost", "127.0.0.1"], Validity::Current);
    let cluster = Cluster::start_tls(&certs);
    let build = |tls: ClientTls| {
        Cache::builder()
            .url(cluster.url())
            .prefix("tls")
            .fail_open(false)
            .tls(tls)
            .build()
    };
    let cache = build(ClientTls::new().ca_file(&certs.ca)).await.unwrap();
    let ns = cache.namespace("n").unwrap();
    for i in 0..20_u32 {
        ns.set(&Key::new("k").part(i), &i, MIN, &[]).await.unwrap();
    }
    for i in 0..20_u32 {
        assert_eq!(
            ns.get::<u32>(&Key::new("k").part(i)).await.unwrap(),
            Some(i)
        );
    }
    let other = CertFiles::generate(Validity::Current);
    let refused = build(ClientTls::new().ca_file(&other.ca)).await;
    let e = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("not signed by a trusted CA"), "{e}");
}
