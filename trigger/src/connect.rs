//! One connection to Redis within the run's deadline: redis://, rediss:// (TLS,
//! system roots or SSL_CERT_FILE) or unix:// URLs, or a Redis Cluster through a
//! seed node (--cluster or redis+cluster://); the password from a file or
//! REDISCLI_AUTH, never from the command line.

use crate::cluster::{self, Cluster};
use crate::failure::{self, ExitCode, Failure};
use crate::files::Symlink;
use crate::sentinel::{self, Sentinel};
use redis::{Connection, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::warn;

/// Connecting may take at most this long even with a longer deadline, so a
/// black-holed host fails fast and the unit's log says why.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A cluster node gets less: a hung one must leave time for the others.
pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest password file read (Redis passwords are short).
const MAX_PASSWORD_FILE: u64 = 64 * 1024;

/// Where the password comes from, first match wins.
pub fn password(password_file: Option<&Path>) -> Result<Option<String>, Failure> {
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join("redis-password"))
        .filter(|path| path.exists());
    if let Some(path) = password_file.map(Path::to_path_buf).or(credential) {
        return read_password_file(&path).map(Some);
    }
    Ok(std::env::var("REDISCLI_AUTH")
        .ok()
        .filter(|p| !p.is_empty()))
}

/// A password file's first line; a missing, unreadable or empty file is 78.
pub fn read_password_file(path: &Path) -> Result<String, Failure> {
    // A FIFO or a device there must not hold the run past its deadline.
    let text = crate::files::read_regular(path, MAX_PASSWORD_FILE, Symlink::Follow)
        .and_then(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
        })
        .map_err(|e| {
            Failure::new(
                ExitCode::Config,
                format!("cannot read password file {}: {e}", path.display()),
            )
        })?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(Failure::new(
            ExitCode::Config,
            format!("password file {} is empty", path.display()),
        ));
    }
    Ok(password.to_string())
}

/// The password sources `password` looked at, for the error when none had one.
pub fn sources_tried() -> String {
    let credential = match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => format!(
            "{} does not exist",
            PathBuf::from(dir).join("redis-password").display()
        ),
        None => "$CREDENTIALS_DIRECTORY is not set (no LoadCredential=redis-password)".into(),
    };
    format!("--password-file (QUANTUM_PASSWORD_FILE) is not set, {credential}, REDISCLI_AUTH is not set or empty")
}

/// A connection to one server (named for messages), to a Redis Cluster
/// through one seed node (commands go to the node owning their key), or to
/// the primary a set of sentinels names (followed through a failover).
pub enum Link {
    Single(Connection, String),
    Cluster(Box<Cluster>),
    Sentinel(Box<Sentinel>),
}

/// The userinfo of a URL's authority (`user:password` before the last `@`).
fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    Some(authority.rsplit_once('@')?.0)
}

/// The query's `key=value` pairs (before any `#fragment`).
fn query_pairs(url: &str) -> impl Iterator<Item = (&str, &str)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// A query key as the redis crate reads it (percent-decoded), lower-cased.
fn query_key(key: &str) -> String {
    sentinel::percent_decode(key).to_ascii_lowercase()
}

fn is_password_key(key: &str) -> bool {
    matches!(query_key(key).as_str(), "password" | "pass")
}

/// The query keys a plain URL may carry: the redis crate ignores any other,
/// and a misspelt one (`?auth=`, `?passwd=`) may hold a password.
const QUERY_KEYS: [&str; 3] = ["db", "protocol", "user"];

/// The first query key of `url` that is not one of `QUERY_KEYS`, decoded.
fn unknown_query_key(url: &str) -> Option<String> {
    query_pairs(url)
        .map(|(key, _)| query_key(key))
        .find(|key| !QUERY_KEYS.contains(&key.as_str()))
}

/// A password in the userinfo (`user:pw@`, `:pw@`) or the query (`?password=`, `?pass=`).
fn holds_password(url: &str) -> bool {
    userinfo(url).is_some_and(|u| u.contains(':'))
        || query_pairs(url).any(|(key, _)| is_password_key(key))
}

/// The first query key of `url` given twice or with an empty value, decoded:
/// which one the redis crate takes is not for an operator to guess.
fn doubtful_query_key(url: &str) -> Option<(String, &'static str)> {
    let mut seen = Vec::new();
    for (key, value) in query_pairs(url) {
        let key = query_key(key);
        if value.is_empty() {
            return Some((key, "is empty"));
        }
        if seen.contains(&key) {
            return Some((key, "is given twice"));
        }
        seen.push(key);
    }
    None
}

/// Whether a query value is shown in messages: not a password's, nor an
/// unknown key's (`?auth=`, `?sentinel_password=` may hold one).
fn hidden_value(key: &str) -> bool {
    is_password_key(key) || !QUERY_KEYS.contains(&query_key(key).as_str())
}

/// The URL for messages: any password, and any unknown query key's value, replaced by `****`.
pub fn redact_url(url: &str) -> String {
    let mut shown = url.to_string();
    if let Some((user, _)) = userinfo(url).and_then(|u| u.split_once(':')) {
        let start = url.find("://").map_or(0, |i| i + 3);
        let end = start + userinfo(url).map_or(0, str::len);
        shown = format!("{}{user}:****{}", &url[..start], &url[end..]);
    }
    if query_pairs(&shown).any(|(key, _)| hidden_value(key)) {
        let (base, query) = shown.split_once('?').unwrap_or((&shown, ""));
        let (query, fragment) = query
            .split_once('#')
            .map_or((query, None), |(q, f)| (q, Some(f)));
        let pairs: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((key, _)) if hidden_value(key) => format!("{key}=****"),
                _ => p.to_string(),
            })
            .collect();
        let fragment = fragment.map_or(String::new(), |f| format!("#{f}"));
        return format!("{base}?{}{fragment}", pairs.join("&"));
    }
    shown
}

/// `text` with the password of every URL in it redacted (a usage error may
/// quote a URL given where an option was expected).
pub fn redact_urls_in(text: &str) -> String {
    text.split(' ')
        .map(|word| match word.contains("://") {
            true => redact_url(word),
            false => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A further cluster seed node: `(host, port)`.
type Seed = (String, u16);

/// `redis+cluster://…` and `rediss+cluster://…` name cluster seed nodes:
/// `host:port[,host:port…]`. Returns the URL of the first seed and the others.
fn cluster_url(url: &str) -> Option<Result<(String, Vec<Seed>), String>> {
    let (scheme, rest) = url.split_once("+cluster://")?;
    if !matches!(scheme, "redis" | "rediss") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    let mut hosts = hosts.split(',');
    let first = hosts.next().unwrap_or_default();
    let others = hosts
        .map(|h| {
            h.rsplit_once(':')
                .and_then(|(host, port)| Some((host.to_string(), port.parse().ok()?)))
                .filter(|(host, port)| !host.is_empty() && *port != 0)
                .ok_or_else(|| format!("seed {h:?} is not host:port"))
        })
        .collect::<Result<Vec<_>, _>>();
    Some(others.map(|others| (format!("{scheme}://{user}{first}{tail}"), others)))
}

pub fn connect(
    given_url: &str,
    cluster: bool,
    password_file: Option<&Path>,
    sentinel_password_file: Option<&Path>,
    deadline: Instant,
) -> Result<Link, Failure> {
    // Checked before parsing, and the URL is only ever shown redacted: a URL
    // that also fails to parse must not carry its password into the journal.
    if holds_password(given_url) {
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "the URL {:?} holds a password: put it in --password-file (or REDISCLI_AUTH) \
                 instead, command lines are visible to every local user",
                redact_url(given_url)
            ),
        ));
    }
    let shown = redact_url(given_url);
    let sentinel_url = sentinel::parse_url(given_url);
    if let (None, Some(_)) = (&sentinel_url, sentinel_password_file) {
        // From the command line this is a usage error (startup.rs); from the environment a slip.
        warn!(
            "--sentinel-password-file (QUANTUM_SENTINEL_PASSWORD_FILE) is set but the URL is \
             not a redis+sentinel:// URL: the file is not used"
        );
    }
    if let Some(parsed) = sentinel_url {
        let passwords = (password_file, sentinel_password_file);
        let sentinel = sentinel::connect_url(parsed, &shown, cluster, passwords, deadline)?;
        return Ok(Link::Sentinel(Box::new(sentinel)));
    }
    let (url, seeds, cluster) = match cluster_url(given_url) {
        Some(Ok((first, others))) => (first, others, true),
        Some(Err(why)) => {
            return Err(Failure::new(
                ExitCode::Config,
                format!("bad --url {shown:?}: {why}"),
            ));
        }
        None => (given_url.to_string(), Vec::new(), cluster),
    };
    if let Some(key) = unknown_query_key(&url) {
        // Named, never its value: it may be a password.
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "bad --url: unknown query parameter {key:?} (only {} are taken; the password \
                 comes from --password-file or REDISCLI_AUTH)",
                QUERY_KEYS.join(", ")
            ),
        ));
    }
    if let Some((key, why)) = doubtful_query_key(&url) {
        return Err(Failure::new(
            ExitCode::Config,
            format!("bad --url: query parameter {key:?} {why}: give it once, with a value"),
        ));
    }
    let bad_url =
        |e: redis::RedisError| Failure::new(ExitCode::Config, format!("bad --url {shown:?}: {e}"));
    let info = url.as_str().into_connection_info().map_err(bad_url)?;
    let settings = info.redis_settings();
    if settings.password().is_some() {
        return Err(Failure::new(
            ExitCode::Config,
            "the URL holds a password: put it in --password-file (or REDISCLI_AUTH) instead, \
             command lines are visible to every local user",
        ));
    }
    if cluster && settings.db() != 0 {
        return Err(Failure::new(
            ExitCode::Config,
            format!("bad --url {shown:?}: a Redis Cluster has only database 0"),
        ));
    }
    let password = password(password_file)?;
    if let (Some(user), None) = (settings.username(), &password) {
        // Connecting as `default` instead would silently bypass the least-privilege user.
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "the URL names user {user:?} but no password was found: {}",
                sources_tried()
            ),
        ));
    }
    if cluster {
        let cluster = Cluster::connect(info, seeds, password, &shown, deadline)?;
        return Ok(Link::Cluster(Box::new(cluster)));
    }
    let connect_by = Instant::now() + remaining(deadline)?.min(CONNECT_TIMEOUT);
    let name = node_name(info.addr());
    let con = single(info, password, connect_by).map_err(|e| {
        if e.message.contains("DB index is out of range") {
            Failure::new(
                ExitCode::Config,
                format!(
                    "bad --url {shown:?}: no such database on this server ({})",
                    e.message
                ),
            )
        } else {
            e
        }
    })?;
    Ok(Link::Single(con, name))
}

/// A server's address for messages.
fn node_name(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => other.to_string(),
    }
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
    let bound = connect_by.saturating_duration_since(Instant::now());
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    let node = node_name(info.addr());
    let client = redis::Client::open(info.set_redis_settings(settings))
        .map_err(|e| Failure::new(ExitCode::Config, format!("bad --url: {e}")))?;
    let not_ready = |e: redis::RedisError| {
        let f = failure::from_redis(&e);
        let hint = match tls {
            true => " (a plaintext server behind rediss://, or one that never answers?)",
            false => " (hung, overloaded, or not Redis?)",
        };
        match e.is_timeout() {
            true => Failure::new(
                f.code,
                format!(
                    "{node} did not answer within the {:.1}s connect bound{hint}: {}",
                    bound.as_secs_f64(),
                    f.message
                ),
            ),
            false => Failure::new(f.code, format!("{node}: {}", f.message)),
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
        return Err(Failure::new(ExitCode::Unavailable, "deadline reached"));
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
                cmd.query(con).map_err(|e| match e.code() {
                    Some("MOVED" | "ASK") => Failure::new(
                        ExitCode::Config,
                        format!(
                            "{name} answered {}: this is a Redis Cluster node: use --cluster \
                             or a redis+cluster:// URL",
                            failure::from_redis(&e).message
                        ),
                    ),
                    _ => Failure {
                        reply_lost: failure::reply_lost(&e),
                        ..cluster::at_node(failure::from_redis(&e), name)
                    },
                })
            }
            Link::Cluster(cluster) => cluster.query(cmd, key_of(cmd), deadline),
            Link::Sentinel(sentinel) => sentinel.query(cmd, deadline),
        }
    }

    /// How often the cluster switched the owner of a slot this run used.
    pub fn owner_switches(&self) -> u64 {
        match self {
            Link::Single(..) => 0,
            Link::Cluster(cluster) => cluster.switches,
            Link::Sentinel(sentinel) => sentinel.switches,
        }
    }

    /// Whether the primary is the one the sentinels name (`redis+sentinel://`).
    pub fn is_sentinel(&self) -> bool {
        matches!(self, Link::Sentinel(_))
    }

    /// Behind Sentinel: how many calls lost their reply and were sent again
    /// (to the primary named then); the lost ones may have run.
    pub fn lost_replies(&self) -> u64 {
        match self {
            Link::Sentinel(sentinel) => sentinel.lost_replies,
            _ => 0,
        }
    }

    /// Behind Sentinel: asks the sentinels, before a verb reports, whether the
    /// primary that answered is still the one they name and its replicas hold
    /// what it was sent; another one counts as a switch (`owner_switches`),
    /// no majority or a deposed primary with no successor by the deadline is
    /// an error (the outcome is unknown). Nothing to do for the other links.
    pub fn confirm_primary(&mut self, deadline: Instant) -> Result<(), Failure> {
        match self {
            Link::Sentinel(sentinel) => sentinel.confirm_primary(deadline),
            _ => Ok(()),
        }
    }

    /// Behind Sentinel: how many replicas acknowledged the writes before the
    /// verb reported (WAIT), of how many; taken, so the next target starts without.
    pub fn take_replica_acks(&mut self) -> Option<sentinel::ReplicaAcks> {
        match self {
            Link::Sentinel(sentinel) => sentinel.acks.take(),
            _ => None,
        }
    }

    /// The primary a Sentinel failover switched the run to, if one did.
    pub fn switched_primary(&self) -> Option<String> {
        match self {
            Link::Sentinel(sentinel) => sentinel.switched_primary(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_found_and_never_shown() {
        for url in [
            "redis://user:S3cr3t@host:badport",
            "redis://:S3cr3t@host",
            "rediss://user:S3cr3t@host:6379/0?x=1#insecure",
            "redis://host/?password=S3cr3t",
            "unix:///run/redis.sock?db=0&pass=S3cr3t",
            "redis://host/?%70assword=S3cr3t",
            "redis+cluster://u:S3cr3t@h:1",
        ] {
            assert!(holds_password(url), "{url}");
            let shown = redact_url(url);
            assert!(
                !shown.contains("S3cr3t") && shown.contains("****"),
                "{shown}"
            );
        }
        assert_eq!(
            redact_url("redis://user:pw@host:badport/x"),
            "redis://user:****@host:badport/x"
        );
        for url in [
            "redis://user@host:6379",
            "unix:///a@b/s.sock?db=1",
            "redis://h:1/?user=u",
        ] {
            assert!(!holds_password(url), "{url}");
            assert_eq!(redact_url(url), url);
            assert_eq!(unknown_query_key(url), None);
        }
    }

    /// Review r14 F5: `?auth=…` was silently dropped by the redis crate.
    #[test]
    fn unknown_query_keys_are_named() {
        let key = |url| unknown_query_key(url);
        assert_eq!(key("redis://h:1/?auth=S3cr3t").as_deref(), Some("auth"));
        assert_eq!(key("unix:///s.sock?db=1&%41uth=x").as_deref(), Some("auth"));
        assert_eq!(key("unix:///s.sock?db=1&protocol=resp3&user=u"), None);
        // Review r14b F6: twice or empty is named too.
        let doubtful = |url| doubtful_query_key(url).map(|(k, why)| format!("{k} {why}"));
        assert_eq!(
            doubtful("redis://h/?db=0&db=1").as_deref(),
            Some("db is given twice")
        );
        assert_eq!(doubtful("redis://h/?db=").as_deref(), Some("db is empty"));
        assert_eq!(doubtful("unix:///s.sock?db=1&protocol=resp3"), None);
    }

    #[test]
    fn cluster_urls_take_a_seed_list() {
        let (first, others) = cluster_url("redis+cluster://u@h1:1,h2:2,[::1]:3/?x=1")
            .unwrap()
            .unwrap();
        assert_eq!(first, "redis://u@h1:1/?x=1");
        assert_eq!(others, [("h2".into(), 2), ("[::1]".into(), 3)]);
        assert!(cluster_url("redis+cluster://h1:1,h2").unwrap().is_err());
        assert!(cluster_url("redis://h1:1").is_none());
    }

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
