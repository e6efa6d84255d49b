//! One connection to Redis within the run's deadline: redis://, rediss:// (TLS,
//! system roots or SSL_CERT_FILE) or unix:// URLs, or a Redis Cluster through a
//! seed node (--cluster or redis+cluster://); the password from a file or
//! REDISCLI_AUTH, never from the command line.

use crate::failure::{self, Failure, CONFIG};
use redis::cluster::{ClusterClientBuilder, ClusterConnection};
use redis::{Connection, ConnectionLike, IntoConnectionInfo};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Connecting may take at most this long even with a longer deadline, so a
/// black-holed host fails fast and the unit's log says why.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
    }
    Ok(std::env::var("REDISCLI_AUTH")
        .ok()
        .filter(|p| !p.is_empty()))
}

/// A connection to one server, or to a Redis Cluster through one seed node
/// (commands go to the node owning their first key).
pub enum Link {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

/// `redis+cluster://…` and `rediss+cluster://…` name a cluster seed node.
fn cluster_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("+cluster://")?;
    matches!(scheme, "redis" | "rediss").then(|| format!("{scheme}://{rest}"))
}

pub fn connect(
    url: &str,
    cluster: bool,
    password_file: Option<&Path>,
    deadline: Instant,
) -> Result<Link, Failure> {
    let (url, cluster) = match cluster_url(url) {
        Some(seed) => (seed, true),
        None => (url.to_string(), cluster),
    };
    let bad_url = |e: redis::RedisError| Failure::new(CONFIG, format!("bad --url {url:?}: {e}"));
    let info = url.as_str().into_connection_info().map_err(bad_url)?;
    if info.redis_settings().password().is_some() {
        return Err(Failure::new(
            CONFIG,
            "the URL holds a password: put it in --password-file (or REDISCLI_AUTH) instead, \
             command lines are visible to every local user",
        ));
    }
    let password = password(password_file)?;
    let timeout = remaining(deadline)?.min(CONNECT_TIMEOUT);
    if cluster {
        let mut builder = ClusterClientBuilder::new([info])
            .connection_timeout(timeout)
            .response_timeout(timeout);
        if let Some(password) = password {
            builder = builder.password(password);
        }
        let client = builder.build().map_err(bad_url)?;
        return client
            .get_connection()
            .map(|con| Link::Cluster(Box::new(con)))
            .map_err(|e| failure::from_redis(&e));
    }
    // No CLIENT SETINFO round trip on connect: the run is short and starts often.
    let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(password) = password {
        settings = settings.set_password(password);
    }
    let client = redis::Client::open(info.set_redis_settings(settings)).map_err(bad_url)?;
    client
        .get_connection_with_timeout(timeout)
        .map(Link::Single)
        .map_err(|e| failure::from_redis(&e))
}

/// Time left before the deadline; none left is a timeout.
pub fn remaining(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::new(failure::UNAVAILABLE, "deadline reached"));
    }
    Ok(left)
}

impl Link {
    /// Runs one command with the time left as its response timeout.
    pub fn query(&mut self, cmd: &redis::Cmd, deadline: Instant) -> Result<redis::Value, Failure> {
        let left = Some(remaining(deadline)?);
        let set = match self {
            Link::Single(con) => con
                .set_read_timeout(left)
                .and_then(|_| con.set_write_timeout(left)),
            Link::Cluster(con) => con
                .set_read_timeout(left)
                .and_then(|_| con.set_write_timeout(left)),
        };
        set.map_err(|e| failure::from_redis(&e))?;
        let con: &mut dyn ConnectionLike = match self {
            Link::Single(con) => con,
            Link::Cluster(con) => con,
        };
        cmd.query(con).map_err(|e| failure::from_redis(&e))
    }

    /// `INFO <section>` of every node (one for a single server).
    pub fn info_of_every_node(
        &mut self,
        section: &str,
        deadline: Instant,
    ) -> Result<Vec<redis::Value>, Failure> {
        let reply = self.query(redis::cmd("INFO").arg(section), deadline)?;
        Ok(match (self, reply) {
            (Link::Cluster(_), redis::Value::Map(per_node)) => {
                per_node.into_iter().map(|(_, info)| info).collect()
            }
            (_, reply) => vec![reply],
        })
    }
}
