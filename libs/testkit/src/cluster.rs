//! The local cluster of `scripts/local-cluster` (three RabbitMQ nodes, a Redis Cluster of three
//! masters and three replicas), and the faults the tests inject into it: a node stopped and
//! started again.
#![allow(
    clippy::expect_used,
    reason = "a test kit: a cluster that cannot be reached is the calling test's failure"
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

/// The running local cluster: its URLs and nodes, read from the env file the script wrote.
#[derive(Clone, Debug)]
pub struct LocalCluster {
    vars: HashMap<String, String>,
}

/// The script, found from this crate's place in the workspace.
fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/local-cluster")
}

/// The local cluster for a benchmark: started if it is not running (RabbitMQ and Redis only),
/// and stopped again when dropped if this guard started it.
#[derive(Debug)]
pub struct ClusterGuard {
    started: bool,
}

impl ClusterGuard {
    /// Starts `scripts/local-cluster start --infra` unless the cluster's env file exists.
    pub fn ensure() -> Self {
        let dir = std::env::var("TIDEWELL_CLUSTER_DIR")
            .unwrap_or_else(|_| "/tmp/tidewell-local-cluster".into());
        if PathBuf::from(dir).join("env").exists() {
            return Self { started: false };
        }
        run(&["start", "--infra"]);
        Self { started: true }
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if self.started {
            // ok to ignore: a cluster left running costs only disk and memory
            let _ = Command::new(script()).arg("stop").status();
        }
    }
}

impl LocalCluster {
    /// Reads `$TIDEWELL_CLUSTER_DIR/env` (default `/tmp/tidewell-local-cluster/env`), written
    /// by `scripts/local-cluster start`. Panics with what to run when the cluster is not up.
    pub fn get() -> Self {
        let dir = std::env::var("TIDEWELL_CLUSTER_DIR")
            .unwrap_or_else(|_| "/tmp/tidewell-local-cluster".into());
        let env = PathBuf::from(&dir).join("env");
        let Ok(text) = std::fs::read_to_string(&env) else {
            panic!(
                "the local cluster is not running ({} is missing): run `scripts/local-cluster \
                 start --infra` (scripts/test does)",
                env.display()
            );
        };
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches(['\'', '"']).to_owned()))
            .collect();
        Self { vars }
    }

    fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the local cluster's env file"))
    }

    /// The AMQP URLs of the three RabbitMQ nodes, comma-separated (the hub's URL for a cluster).
    pub fn amqp_urls(&self) -> String {
        self.var("TIDEWELL_CLUSTER_AMQP_URLS").to_owned()
    }

    /// The same URLs on the virtual host `vhost` (created by [`LocalCluster::vhost`]).
    pub fn amqp_urls_on(&self, vhost: &str) -> String {
        self.amqp_urls()
            .split(',')
            .map(|u| format!("{}/{vhost}", u.trim_end_matches('/')))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The RabbitMQ node names (`twc1@localhost`, ...), in node order (1, 2, 3).
    pub fn rabbit_nodes(&self) -> Vec<String> {
        self.var("TIDEWELL_CLUSTER_RABBIT_NODES")
            .split(',')
            .filter_map(|n| n.split_once(':').map(|(name, _)| name.to_owned()))
            .collect()
    }

    /// `redis-cluster://` with every node of the Redis Cluster.
    pub fn redis_url(&self) -> String {
        self.var("TIDEWELL_CLUSTER_REDIS_URL").to_owned()
    }

    /// Creates a virtual host of a unique name on the RabbitMQ cluster, with every permission
    /// for `guest`, and returns its name: a test's exchanges and queues stay apart from every
    /// other test's, whatever names its code under test declares.
    pub fn vhost(&self) -> String {
        let name = crate::unique_name("tw-vhost");
        self.rabbitmqctl(1, &["add_vhost", &name]);
        self.rabbitmqctl(
            1,
            &["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"],
        );
        name
    }

    /// The node (1-based, in [`rabbit_nodes`](Self::rabbit_nodes) order) that leads the quorum
    /// queue `queue` on `vhost`.
    pub fn quorum_leader(&self, vhost: &str, queue: &str) -> usize {
        let out = self.rabbitmqctl(
            1,
            &[
                "list_queues",
                "-p",
                vhost,
                "name",
                "leader",
                "--no-table-headers",
                "-q",
            ],
        );
        let leader = out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(name, _)| name.trim() == queue)
            .map(|(_, leader)| leader.trim().to_owned())
            .unwrap_or_else(|| panic!("queue {queue} not found on {vhost}:\n{out}"));
        self.rabbit_nodes()
            .iter()
            .position(|n| *n == leader)
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("leader {leader} is not a node of the local cluster"))
    }

    /// Runs `rabbitmqctl` against node `node` (1-based) and returns what it printed.
    pub fn rabbitmqctl(&self, node: usize, args: &[&str]) -> String {
        let nodes = self.rabbit_nodes();
        let name = nodes
            .get(node.wrapping_sub(1))
            .unwrap_or_else(|| panic!("no RabbitMQ node {node}"));
        let out = Command::new(script())
            .args(["rabbitmqctl", name])
            .args(args)
            .output()
            .expect("scripts/local-cluster runs");
        assert!(
            out.status.success(),
            "rabbitmqctl -n {name} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops RabbitMQ node `node` (1-based): its process ends.
    pub fn stop_rabbit(&self, node: usize) {
        run(&["rabbit-stop", &node.to_string()]);
    }

    /// Starts RabbitMQ node `node` again and waits until it is back in the cluster.
    pub fn start_rabbit(&self, node: usize) {
        run(&["rabbit-start", &node.to_string()]);
    }

    /// The Redis masters that are up now, with the slot ranges each serves (asked of a node
    /// that answers).
    pub fn redis_masters(&self) -> Vec<(u16, Vec<(u16, u16)>)> {
        for port in self.redis_ports() {
            let Some(nodes) = redis_cli(port, &["cluster", "nodes"]) else {
                continue;
            };
            // `<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slots>...`
            return nodes
                .lines()
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let flags = fields.get(2)?;
                    if !flags.contains("master") || flags.contains("fail") {
                        return None;
                    }
                    let port = fields
                        .get(1)?
                        .split('@')
                        .next()?
                        .rsplit(':')
                        .next()?
                        .parse()
                        .ok()?;
                    let ranges = fields
                        .iter()
                        .skip(8)
                        .filter_map(|range| {
                            let (a, b) = range.split_once('-').unwrap_or((range, range));
                            Some((a.parse().ok()?, b.parse().ok()?))
                        })
                        .collect();
                    Some((port, ranges))
                })
                .filter(|(_, ranges): &(u16, Vec<(u16, u16)>)| !ranges.is_empty())
                .collect();
        }
        panic!("no Redis node of the local cluster answers");
    }

    /// The port of the Redis master that serves `key`'s slot now.
    pub fn redis_owner(&self, key: &str) -> u16 {
        let slot = self
            .redis_ports()
            .into_iter()
            .find_map(|p| {
                redis_cli(p, &["cluster", "keyslot", key])?
                    .trim()
                    .parse::<u16>()
                    .ok()
            })
            .expect("a Redis node of the local cluster answers CLUSTER KEYSLOT");
        self.redis_masters()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|(port, _)| port)
            .unwrap_or_else(|| panic!("no Redis master of the local cluster serves {key:?}"))
    }

    /// How many keys matching `pattern` the Redis node on `port` holds (a full `SCAN`).
    pub fn redis_count(&self, port: u16, pattern: &str) -> u64 {
        redis_cli(port, &["--scan", "--pattern", pattern])
            .map(|keys| keys.lines().filter(|l| !l.is_empty()).count() as u64)
            .unwrap_or_else(|| panic!("SCAN on {port} failed"))
    }

    fn redis_ports(&self) -> Vec<u16> {
        self.var("TIDEWELL_CLUSTER_REDIS_PORTS")
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect()
    }

    /// Stops the Redis node on `port`.
    pub fn stop_redis(&self, port: u16) {
        run(&["redis-stop", &port.to_string()]);
    }

    /// Starts the Redis node on `port` again.
    pub fn start_redis(&self, port: u16) {
        run(&["redis-start", &port.to_string()]);
    }
}

/// `redis-cli -p port args...`'s output, if it succeeded.
fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn run(args: &[&str]) {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("scripts/local-cluster runs");
    assert!(
        out.status.success(),
        "scripts/local-cluster {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
