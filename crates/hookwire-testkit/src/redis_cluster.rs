//! A local Redis Cluster of real `redis-server` processes, for tests.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::redis_server::{RedisServer, RedisServerBuilder};

/// A Redis Cluster of N masters (no replicas) on free loopback ports, killed when dropped.
///
/// Each node is a [`RedisServer`] started with `--cluster-enabled yes` and its own
/// `--cluster-port`; the slots are assigned with `redis-cli --cluster create`.
///
/// ```no_run
/// let cluster = hookwire_testkit::RedisCluster::start(3).expect("cluster");
/// assert_eq!(cluster.urls().len(), 3);
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3, as Redis requires), creates the cluster and waits
    /// until every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> Result<Self, String> {
        let masters = masters.max(3);
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            let node = RedisServerBuilder::default()
                .arg("--cluster-enabled")
                .arg("yes")
                .arg("--cluster-port")
                .arg(crate::free_port().to_string())
                .arg("--cluster-node-timeout")
                .arg("2000")
                .start()?;
            nodes.push(node);
        }
        let mut create = Command::new(redis_cli());
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port()));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|e| format!("cannot run redis-cli ({e}); install redis-tools"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if cluster.nodes.iter().all(|n| {
                n.command("CLUSTER INFO")
                    .is_ok_and(|i| i.contains("cluster_state:ok"))
            }) {
                return Ok(cluster);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("cluster did not reach cluster_state:ok within 20 s".to_owned())
    }

    /// `redis://127.0.0.1:<port>/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

/// Where `redis-cli` is: `$HOOKWIRE_REDIS_CLI`, else on `PATH`.
fn redis_cli() -> String {
    std::env::var("HOOKWIRE_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned())
}
