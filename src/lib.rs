//! Test harness: real `redis-server` processes with the built module loaded.
//!
//! The server binary comes from `REDIS_SERVER` or `PATH`, so the same tests run
//! against other server versions; the module from `QUANTUM_MODULE` and the
//! trigger from `QUANTUM_TRIGGER`, or else the newest build under the target
//! directory (build first: `cargo build`).

use redis::{Connection, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod crash_loop;
pub mod nspawn;
pub mod reply;
pub mod rng;
pub mod scenario;
pub mod sentinel;
pub mod trigger;
pub use reply::Recovery;

/// The build stamp this harness was compiled with; the loaded module must match it.
pub const BUILD: &str = env!("QUANTUM_BUILD");

pub fn redis_server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// The newest `file` under target/{debug,release}, unless `override_var` names one.
fn built_artifact(file: &str, override_var: &str) -> PathBuf {
    if let Ok(path) = std::env::var(override_var) {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let newest = ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join(file))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max_by_key(|(modified, _)| *modified);
    match newest {
        Some((_, path)) => path,
        None => panic!(
            "no {file} under {}: run `cargo build` first (or set {override_var})",
            target.display()
        ),
    }
}

/// The README's `ACL SETUSER quantum-recover …` line as argv, with the
/// password `pw` for its placeholder: the least-privilege user it documents.
pub fn readme_acl_user() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let rule = readme
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with("ACL SETUSER quantum-recover "))
        .expect("README shows the ACL SETUSER line");
    rule.split_whitespace()
        .map(|w| if w == ">CHANGE-ME" { ">pw" } else { w }.to_string())
        .collect()
}

/// A stand-in server on a free loopback port (a fake or misbehaving
/// sentinel, proxy or Redis): each accepted connection is handed to `serve`
/// on its own thread. Its port.
pub fn serve_on_loopback<F>(serve: F) -> u16
where
    F: Fn(std::net::TcpStream) + Clone + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(client));
        }
    });
    port
}

pub fn module_path() -> PathBuf {
    built_artifact("libquantum.so", "QUANTUM_MODULE")
}

pub fn trigger_path() -> PathBuf {
    built_artifact("quantum-stream-recover", "QUANTUM_TRIGGER")
}

/// The reference consumer, examples/consumer.
pub fn consumer_path() -> PathBuf {
    built_artifact("quantum-consumer", "QUANTUM_CONSUMER_BIN")
}

/// A fresh directory under the system temp dir, removed on drop; `label`
/// shows in its name, so a kept-alive test's files can be found.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("quantum-{label}-"))
            .tempdir()
            .expect("a temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Extra `--name value` settings (e.g. `appendonly yes`).
    pub config: Vec<(String, String)>,
    /// Arguments after the module path on the loadmodule line.
    pub module_args: Vec<String>,
    /// Listen on a TCP port too (replication needs one).
    pub tcp: bool,
    /// With `tcp`, this port rather than a free one (a cluster bus needs port + 10000 free too).
    pub port: Option<u16>,
    /// Start without the module.
    pub without_module: bool,
    /// Lines of a redis.conf the server starts from (written into its directory;
    /// CONFIG REWRITE needs one). Command-line settings still apply on top.
    pub config_file: Option<String>,
    /// `retire-budget` on the loadmodule line unless `module_args` names it.
    /// By default its 10 s maximum, so COUNT alone decides what a RETIRE call
    /// moves however loaded the test machine is (the budget's own tests set
    /// theirs); None: the module's default (5 ms), as the benchmark runs.
    pub retire_budget_ms: Option<u32>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            config: Vec::new(),
            module_args: Vec::new(),
            tcp: false,
            port: None,
            without_module: false,
            config_file: None,
            retire_budget_ms: Some(10_000),
        }
    }
}

pub struct Server {
    child: Child,
    options: Options,
    dir: TempDir,
    pub port: Option<u16>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts redis-server on `dir` (its socket, log and data files live there);
/// returns the process and its TCP port, if any.
fn spawn(dir: &Path, options: &Options) -> Result<(Child, Option<u16>), String> {
    let port = options.tcp.then(|| options.port.unwrap_or_else(free_port));
    let mut command = Command::new(redis_server_binary());
    if let Some(lines) = &options.config_file {
        let path = dir.join("redis.conf");
        std::fs::write(&path, lines).map_err(|e| format!("cannot write redis.conf: {e}"))?;
        command.arg(path);
    }
    command
        .arg("--port")
        .arg(port.unwrap_or(0).to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--unixsocket")
        .arg(dir.join("redis.sock"))
        .arg("--unixsocketperm")
        .arg("700")
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .args(["--save", "", "--daemonize", "no", "--loglevel", "verbose"]);
    if !options.without_module {
        command
            .arg("--loadmodule")
            .arg(module_path())
            .args(&options.module_args);
        let named = options
            .module_args
            .iter()
            .any(|a| a.contains("retire-budget"));
        if let (Some(ms), false) = (options.retire_budget_ms, named) {
            command.args(["retire-budget".to_string(), ms.to_string()]);
        }
    }
    for (name, value) in &options.config {
        command.arg(format!("--{name}")).arg(value);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", redis_server_binary()))?;
    Ok((child, port))
}

impl Server {
    /// A server with the module loaded, on a unix socket in a temp dir.
    pub fn start() -> Server {
        Server::with(Options::default())
    }

    pub fn with(options: Options) -> Server {
        let dir = TempDir::new("redis");
        Server::start_in(dir, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server; `Err` carries the server's log when it did not come up.
    pub fn try_with(options: Options) -> Result<Server, String> {
        Server::start_in(TempDir::new("redis"), options)
    }

    fn start_in(dir: TempDir, options: Options) -> Result<Server, String> {
        let (child, port) = spawn(dir.path(), &options)?;
        let mut server = Server {
            child,
            options,
            dir,
            port,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("redis-server exited ({status}):\n{}", self.log()));
            }
            if let Ok(mut con) = self.try_connect() {
                // NOAUTH is an answer too: the server is up and wants a password.
                let answer: redis::RedisResult<String> = redis::cmd("PING").query(&mut con);
                if answer.is_ok() || answer.is_err_and(|e| e.code() == Some("NOAUTH")) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server did not answer in 20 s:\n{}",
            self.log()
        ))
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connection, or why there is none (a killed server).
    pub fn try_connect(&self) -> redis::RedisResult<Connection> {
        let url = format!("unix://{}", self.socket().display());
        redis::Client::open(url)?.get_connection()
    }

    /// A RESP2 connection.
    pub fn connect(&self) -> Connection {
        self.try_connect().expect("connect to the test server")
    }

    /// A RESP3 connection.
    pub fn connect_resp3(&self) -> Connection {
        let url = format!("unix://{}?protocol=resp3", self.socket().display());
        redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("connect with RESP3")
    }

    /// A connection as `user` (ACL tests).
    pub fn connect_as(&self, user: &str, password: &str) -> Connection {
        let url = format!(
            "unix://{}?user={user}&pass={password}",
            self.socket().display()
        );
        redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("connect as an ACL user")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// The server's process id (to stop it with SIGSTOP, as a hung node).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it must survive every test).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server (SHUTDOWN NOSAVE, then kill) and starts it again on the
    /// same directory and options, so it reloads its AOF.
    pub fn restart(mut self) -> Server {
        self.stop();
        let (child, port) = spawn(self.dir.path(), &self.options).unwrap_or_else(|e| panic!("{e}"));
        (self.child, self.port) = (child, port);
        self.wait_until_ready().unwrap_or_else(|e| panic!("{e}"));
        self
    }

    fn stop(&mut self) {
        if let Ok(mut con) = self.try_connect() {
            let _: redis::RedisResult<Value> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut con);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.is_alive() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A primary and a replica of it, both with the module, the link up.
pub fn primary_and_replica() -> (Server, Server) {
    let tcp = || Options {
        tcp: true,
        ..Options::default()
    };
    let (primary, replica) = (Server::with(tcp()), Server::with(tcp()));
    let mut r = replica.connect();
    let port = primary.port.unwrap().to_string();
    reply::run(&mut r, &["REPLICAOF", "127.0.0.1", &port]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reply::run(&mut r, &["INFO", "replication"])
        .is_ok_and(|v| reply::text(&v).contains("master_link_status:up"))
    {
        assert!(Instant::now() < deadline, "the replica never linked up");
        std::thread::sleep(Duration::from_millis(20));
    }
    (primary, replica)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
