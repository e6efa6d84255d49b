//! A three-master Redis Cluster on loopback, the module loaded on every node.

use crate::reply::{run, text};
use crate::{Options, Server};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub nodes: Vec<Server>,
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
        let nodes: Vec<Server> = (0..3)
            .map(|_| {
                Server::with(Options {
                    tcp: true,
                    port: Some(free_cluster_port()),
                    config: vec![
                        ("cluster-enabled".into(), "yes".into()),
                        ("cluster-node-timeout".into(), "5000".into()),
                    ],
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
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (package redis-tools)");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.nodes.iter().all(|n| {
            run(&mut n.connect(), &["CLUSTER", "INFO"])
                .is_ok_and(|v| text(&v).contains("cluster_state:ok"))
        }) {
            assert!(
                Instant::now() < deadline,
                "the cluster never reached cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The node that serves `key`'s slot.
    pub fn owner_of(&self, key: &str) -> &Server {
        self.nodes
            .iter()
            .find(|n| run(&mut n.connect(), &["EXISTS", key]).is_ok())
            .expect("some node owns every slot")
    }

    pub fn seed_url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.nodes[0].port.unwrap())
    }
}
