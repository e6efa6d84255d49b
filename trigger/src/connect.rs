//! One connection to Redis within the run's deadline: redis://, rediss:// (TLS,
//! system roots or SSL_CERT_FILE) or unix:// URLs, or a Redis Cluster through a
//! seed node (--cluster or redis+cluster://); the password from a file or
//! REDISCLI_AUTH, never from the command line.

use crate::cluster::{self, Cluster};
use crate::failure::{self, Failure, CONFIG};
use redis::{Connection, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Connecting may take at most this long even with a longer deadline, so a
/// black-holed host fails fast and the unit's log says why.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the password comes from, first match wins.
fn password(password_file: Option<&Path>) -> Result<Option<String>, Failure> {
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join("redis-password"))
        .filter(|path| path.exists());
    if let Some(path) = password_file.map(Path::to_path_buf).or(credential) {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Failure::new(
                CONFIG,
                format!("cannot read password file {}: {e}", path.display()),
            )
        })?;
        let password = text.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(Failure::new(
                CONFIG,
                format!("password file {} is empty", path.display()),
            ));
        }
        return Ok(Some(password.to_string()));
    }
    Ok(std::env::var("REDISCLI_AUTH")
        .ok()
        .filter(|p| !p.is_empty()))
}

/// The password sources `password` looked at, for the error when none had one.
fn sources_tried() -> String {
    let credential = match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => format!(
            "{} does not exist",
            PathBuf::from(dir).join("redis-password").display()
        ),
        None => "$CREDENTIALS_DIRECTORY is not set (no LoadCredential=redis-password)".into(),
    };
    format!("--password-file (QUANTUM_PASSWORD_FILE) is not set, {credential}, REDISCLI_AUTH is not set or empty")
}

/// A connection to one server (named for messages), or to a Redis Cluster
/// through one seed node (commands go to the node owning their key).
pub enum Link {
    Single(Connection, String),
    Cluster(Box<Cluster>),
}

/// `redis+cluster://…` and `rediss+cluster://…` name a cluster seed node.
fn cluster_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("+cluster://")?;
    matches!(scheme, "redis" | "rediss").then(|| format!("{scheme}://{rest}"))
}

pub fn connect(
    given_url: &str,
    cluster: bool,
    password_file: Option<&Path>,
    deadline: Instant,
) -> Result<Link, Failure> {
    let (url, cluster) = match cluster_url(given_url) {
        Some(seed) => (seed, true),
        None => (given_url.to_string(), cluster),
    };
    let bad_url =
        |e: redis::RedisError| Failure::new(CONFIG, format!("bad --url {given_url:?}: {e}"));
    let info = url.as_str().into_connection_info().map_err(bad_url)?;
    let settings = info.redis_settings();
    if settings.password().is_some() {
        return Err(Failure::new(
            CONFIG,
            "the URL holds a password: put it in --password-file (or REDISCLI_AUTH) instead, \
             command lines are visible to every local user",
        ));
    }
    if cluster && settings.db() != 0 {
        return Err(Failure::new(
            CONFIG,
            format!("bad --url {given_url:?}: a Redis Cluster has only database 0"),
        ));
    }
    let password = password(password_file)?;
    if let (Some(user), None) = (settings.username(), &password) {
        // Connecting as `default` instead would silently bypass the least-privilege user.
        return Err(Failure::new(
            CONFIG,
            format!(
                "the URL names user {user:?} but no password was found: {}",
                sources_tried()
            ),
        ));
    }
    let connect_by = Instant::now() + remaining(deadline)?.min(CONNECT_TIMEOUT);
    if cluster {
        let cluster = Cluster::connect(info, password, given_url, connect_by)?;
        return Ok(Link::Cluster(Box::new(cluster)));
    }
    let name = match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => other.to_string(),
    };
    let con = single(info, password, connect_by).map_err(|e| {
        if e.message.contains("DB index is out of range") {
            Failure::new(
                CONFIG,
                format!(
                    "bad --url {given_url:?}: no such database on this server ({})",
                    e.message
                ),
            )
        } else {
            e
        }
    })?;
    Ok(Link::Single(con, name))
}

/// One server, ready within `connect_by`: rediss:// does its TLS handshake on
/// the first command, so a PING inside the connect bound catches a plaintext
/// or silent server here rather than at the deadline.
pub fn single(
    info: ConnectionInfo,
    password: Option<String>,
    connect_by: Instant,
) -> Result<Connection, Failure> {
    // No CLIENT SETINFO round trip on connect: the run is short and starts often.
    let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(password) = password {
        settings = settings.set_password(password);
    }
    let client = redis::Client::open(info.set_redis_settings(settings))
        .map_err(|e| Failure::new(CONFIG, format!("bad --url: {e}")))?;
    let not_ready = |e: redis::RedisError| {
        let f = failure::from_redis(&e);
        match e.is_timeout() {
            true => Failure::new(
                f.code,
                format!(
                    "no Redis answered within the {}s connect bound (a plaintext server \
                     behind rediss://, or one that never answers?): {}",
                    CONNECT_TIMEOUT.as_secs(),
                    f.message
                ),
            ),
            false => f,
        }
    };
    let mut con = client
        .get_connection_with_timeout(remaining(connect_by)?)
        .map_err(not_ready)?;
    let left = Some(remaining(connect_by)?);
    con.set_read_timeout(left)
        .and_then(|_| con.set_write_timeout(left))
        .map_err(|e| failure::from_redis(&e))?;
    redis::cmd("PING")
        .query::<()>(&mut con)
        .map_err(not_ready)?;
    Ok(con)
}

/// Time left before the deadline; none left is a timeout.
pub fn remaining(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::new(failure::UNAVAILABLE, "deadline reached"));
    }
    Ok(left)
}

/// The key a command is about, for cluster routing: QUANTUM.* and stream
/// commands (XPENDING, XRANGE, …) name it first, XINFO after its subcommand.
fn key_of(cmd: &redis::Cmd) -> Option<&[u8]> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|arg| match arg {
            redis::Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let name = String::from_utf8_lossy(args.first()?).to_ascii_uppercase();
    match name.as_str() {
        "XINFO" => args.get(2).copied(),
        n if n.starts_with("QUANTUM.") || n.starts_with('X') => args.get(1).copied(),
        _ => None,
    }
}

impl Link {
    /// Runs one command with the time left as its response timeout; in a
    /// cluster on the primary owning its key (slot 0's for a command without
    /// one), waiting out a cluster under change until the deadline.
    pub fn query(&mut self, cmd: &redis::Cmd, deadline: Instant) -> Result<redis::Value, Failure> {
        match self {
            Link::Single(con, name) => {
                let left = Some(remaining(deadline)?);
                con.set_read_timeout(left)
                    .and_then(|_| con.set_write_timeout(left))
                    .map_err(|e| failure::from_redis(&e))?;
                cmd.query(con)
                    .map_err(|e| cluster::at_node(failure::from_redis(&e), name))
            }
            Link::Cluster(cluster) => cluster.query(cmd, key_of(cmd), deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_routed_by_their_key() {
        let recover = redis::cmd("QUANTUM.RECOVER").arg("{a}:s").arg("g").clone();
        assert_eq!(key_of(&recover), Some(&b"{a}:s"[..]));
        let groups = redis::cmd("XINFO").arg("GROUPS").arg("{a}:s").clone();
        assert_eq!(key_of(&groups), Some(&b"{a}:s"[..]));
        assert_eq!(key_of(&redis::cmd("PING")), None);
        assert_eq!(key_of(redis::cmd("INFO").arg("quantum")), None);
    }
}
