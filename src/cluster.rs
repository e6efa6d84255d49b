//! A three-master Redis Cluster on loopback, the module loaded on every node
//! (or all but one), optionally one replica per master.

use crate::reply::{run, text};
use crate::{Options, Server};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub nodes: Vec<Server>,
}

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Replicas per master (redis-cli --cluster-replicas).
    pub replicas: usize,
    /// cluster-node-timeout: how long a silent node takes to be marked failed.
    pub node_timeout_ms: u64,
    /// The node (index) started without the module.
    pub without_module: Option<usize>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            replicas: 0,
            node_timeout_ms: 5000,
            without_module: None,
        }
    }
}

/// A port that is free together with its cluster bus port (port + 10000).
fn free_cluster_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::with(ClusterOptions::default())
    }

    pub fn with(options: ClusterOptions) -> Cluster {
        let nodes: Vec<Server> = (0..3 * (1 + options.replicas))
            .map(|i| {
                Server::with(Options {
                    tcp: true,
                    port: Some(free_cluster_port()),
                    config: vec![
                        ("cluster-enabled".into(), "yes".into()),
                        (
                            "cluster-node-timeout".into(),
                            options.node_timeout_ms.to_string(),
                        ),
                    ],
                    without_module: options.without_module == Some(i),
                    ..Options::default()
                })
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port.unwrap()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &options.replicas.to_string()])
            .arg("--cluster-yes")
            .output()
            .expect("redis-cli (package redis-tools)");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Every node sees the cluster up, and every replica has synced.
        while !cluster.nodes.iter().all(|n| {
            let mut con = n.connect();
            run(&mut con, &["CLUSTER", "INFO"]).is_ok_and(|v| text(&v).contains("cluster_state:ok"))
                && run(&mut con, &["INFO", "replication"]).is_ok_and(|v| {
                    text(&v).contains("role:master") || text(&v).contains("master_link_status:up")
                })
        }) {
            assert!(
                Instant::now() < deadline,
                "the cluster never reached cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The index of the live primary that serves `key`'s slot.
    pub fn owner_index(&self, key: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| {
                n.try_connect()
                    .is_ok_and(|mut con| run(&mut con, &["EXISTS", key]).is_ok())
            })
            .expect("some node owns every slot")
    }

    /// The live primary that serves `key`'s slot.
    pub fn owner_of(&self, key: &str) -> &Server {
        &self.nodes[self.owner_index(key)]
    }

    /// Waits until every live node reports `state` (`ok` or `fail`).
    pub fn wait_for_state(&self, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let wanted = format!("cluster_state:{state}");
        while !self.nodes.iter().all(|n| match n.try_connect() {
            Ok(mut con) => {
                run(&mut con, &["CLUSTER", "INFO"]).is_ok_and(|v| text(&v).contains(&wanted))
            }
            Err(_) => true,
        }) {
            assert!(
                Instant::now() < deadline,
                "the cluster never reached {wanted}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A node's cluster id.
    pub fn id_of(&self, index: usize) -> String {
        text(&run(&mut self.nodes[index].connect(), &["CLUSTER", "MYID"]).unwrap())
    }

    pub fn seed_url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.nodes[0].port.unwrap())
    }
}
