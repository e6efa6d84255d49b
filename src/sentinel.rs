//! A primary, one replica and three sentinels on loopback, the module on the
//! data nodes (or not on the primary). The sentinels are the same server
//! binary started with `--sentinel` (Debian's redis-sentinel is that too), so
//! `REDIS_SERVER` picks the version of both.

use crate::reply::{run, text, texts};
use crate::{redis_server_binary, Options, Server, TempDir};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The name the sentinels monitor the primary under.
pub const MASTER: &str = "quantum-primary";

/// How to build the set.
#[derive(Clone, Debug, Default)]
pub struct SentinelOptions {
    /// Start the primary without the module.
    pub primary_without_module: bool,
    /// `requirepass` of the sentinels and of the data nodes (their `default` user).
    pub passwords: Option<Passwords>,
}

#[derive(Clone, Debug)]
pub struct Passwords {
    pub sentinel: String,
    pub data: String,
}

/// One `redis-server --sentinel` process.
pub struct SentinelProcess {
    child: Child,
    dir: TempDir,
    pub port: u16,
    password: Option<String>,
}

impl SentinelProcess {
    pub fn start(primary_port: u16, passwords: Option<&Passwords>) -> SentinelProcess {
        let dir = TempDir::new("sentinel");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        // Fast failure detection and failover, so a test sees one in seconds;
        // 1 s rather than less: a loaded machine stalled a primary filling a
        // backlog past 500 ms and the sentinels failed it over before the test began.
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {dir}/sentinel.log\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 2000\n\
             sentinel parallel-syncs {MASTER} 1\n",
            dir = dir.path().display()
        );
        let conf = match passwords {
            Some(p) => format!(
                "{conf}requirepass {}\nsentinel auth-pass {MASTER} {}\n",
                p.sentinel, p.data
            ),
            None => conf,
        };
        let path = dir.path().join("sentinel.conf");
        std::fs::write(&path, conf).expect("write sentinel.conf");
        let child = Command::new(redis_server_binary())
            .arg(&path)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        let sentinel = SentinelProcess {
            child,
            dir,
            port,
            password: passwords.map(|p| p.sentinel.clone()),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sentinel
            .connect()
            .is_ok_and(|mut con| run(&mut con, &["PING"]).is_ok())
        {
            assert!(
                Instant::now() < deadline,
                "the sentinel did not answer in 20 s:\n{}",
                sentinel.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sentinel
    }

    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let auth = self
            .password
            .as_ref()
            .map_or(String::new(), |p| format!(":{p}@"));
        redis::Client::open(format!("redis://{auth}127.0.0.1:{}", self.port))?.get_connection()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of the primary `sentinel` names.
fn named(sentinel: &SentinelProcess) -> Option<u16> {
    let mut con = sentinel.connect().ok()?;
    match run(&mut con, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]).ok()? {
        redis::Value::Array(addr) => text(addr.get(1)?).parse().ok(),
        _ => None,
    }
}

pub struct SentinelSet {
    /// The data nodes: `[0]` starts as the primary, `[1]` as its replica.
    pub nodes: Vec<Server>,
    pub sentinels: Vec<SentinelProcess>,
    data_password: Option<String>,
}

impl SentinelSet {
    pub fn start(options: SentinelOptions) -> SentinelSet {
        let passwords = options.passwords.as_ref();
        let config: Vec<(String, String)> = passwords
            .map(|p| {
                ["requirepass", "masterauth"]
                    .map(|name| (name.to_string(), p.data.clone()))
                    .to_vec()
            })
            .unwrap_or_default();
        let node = |without_module| {
            Server::with(Options {
                tcp: true,
                without_module,
                config: config.clone(),
                ..Options::default()
            })
        };
        let primary = node(options.primary_without_module);
        let mut set = SentinelSet {
            nodes: vec![primary, node(false)],
            sentinels: Vec::new(),
            data_password: passwords.map(|p| p.data.clone()),
        };
        let primary_port = set.nodes[0].port.unwrap();
        let mut r = set.connect(1);
        run(
            &mut r,
            &["REPLICAOF", "127.0.0.1", &primary_port.to_string()],
        )
        .unwrap();
        set.sentinels = (0..3)
            .map(|_| SentinelProcess::start(primary_port, passwords))
            .collect();
        set.wait_until_ready();
        set
    }

    /// A connection to data node `node`, as `default` with the data password.
    pub fn connect(&self, node: usize) -> redis::Connection {
        match &self.data_password {
            Some(password) => self.nodes[node].connect_as("default", password),
            None => self.nodes[node].connect(),
        }
    }

    /// Until the replica is linked and every sentinel knows the replica and
    /// the two other sentinels (needed to agree on a failover).
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = |s: &SentinelProcess| -> Option<bool> {
            let mut con = s.connect().ok()?;
            let master = texts(&run(&mut con, &["SENTINEL", "MASTER", MASTER]).ok()?);
            let field = |name: &str| {
                let at = master.iter().position(|k| k == name)?;
                master.get(at + 1)?.parse::<u32>().ok()
            };
            Some(field("num-slaves")? >= 1 && field("num-other-sentinels")? >= 2)
        };
        let mut r = self.connect(1);
        loop {
            let linked = run(&mut r, &["INFO", "replication"])
                .is_ok_and(|v| text(&v).contains("master_link_status:up"));
            if linked && self.sentinels.iter().all(|s| ready(s) == Some(true)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels never saw the replica and each other:\n{}",
                self.sentinels[0].log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis+sentinel://` URL naming the three sentinels and the master.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// Until every sentinel names the data node on `port` as the primary
    /// (a sentinel that did not lead a failover learns of it within seconds).
    pub fn wait_until_named(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.sentinels.iter().all(|s| named(s) == Some(port)) {
            assert!(
                Instant::now() < deadline,
                "the sentinels never all named port {port}:\n{}",
                self.sentinels[0].log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Until the replica has every write the primary made (WAIT).
    pub fn wait_synced(&self) {
        let mut con = self.connect(0);
        let acked = run(&mut con, &["WAIT", "1", "10000"]).unwrap();
        assert_eq!(
            crate::reply::int(&acked),
            1,
            "the replica did not catch up in 10 s"
        );
    }
}

impl Drop for SentinelSet {
    /// Killed rather than shut down: with a password the harness's SHUTDOWN
    /// would be refused and wait for its timeout.
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}
