//! Redis Sentinel: `redis+sentinel://host:port[,host:port…]/<master-name>`
//! (`rediss+sentinel://` for TLS to the sentinels and the data nodes). The
//! sentinels are asked for the primary of `<master-name>` (SENTINEL
//! GET-MASTER-ADDR-BY-NAME, each in turn within a short bound), the named node
//! is checked to be a primary (ROLE), and every command goes there. After
//! READONLY, LOADING or a lost connection the sentinels are asked again, until
//! the deadline, and the command is sent to the primary they name then.
//!
//! The `redis` crate's `sentinel` module connects and asks ROLE without any
//! timeout (a black-holed sentinel or node would hold the run for minutes) and
//! asks SENTINEL MASTERS (more than a sentinel's ACL may grant), so the
//! sentinels are asked here, over plain connections made by `connect::single`.

use crate::cluster::{at_node, CALL_TIMEOUT};
use crate::connect::{self, remaining, single, NODE_CONNECT_TIMEOUT};
use crate::failure::{self, ExitCode, Failure};
use redis::{Connection, ConnectionInfo, FromRedisValue, IntoConnectionInfo, RedisError, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::warn;

/// `(host, port)` of a sentinel or a data node.
pub type Addr = (String, u16);

/// The port a sentinel listens on when the URL names none.
const SENTINEL_PORT: u16 = 26379;
/// The longest wait for one sentinel's answer: a hung one must leave time for the others.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);
/// The first pause while no primary can be found; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// The longest pause: a promoted replica is noticed within half a second.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// What a `redis+sentinel://` URL says.
#[derive(Debug, PartialEq, Eq)]
pub struct SentinelUrl {
    pub tls: bool,
    /// The data nodes' ACL user (`user@` before the hosts), if any.
    pub user: Option<String>,
    pub sentinels: Vec<Addr>,
    pub master: String,
    /// `?query` for the data nodes (`db=N`, `protocol=resp3`).
    query: String,
    /// `#fragment` for every connection (e.g. `#insecure` for TLS).
    fragment: String,
}

fn show((host, port): &Addr) -> String {
    format!("{host}:{port}")
}

/// A host for a URL: an IPv6 address goes in brackets.
fn url_host(host: &str) -> String {
    match host.contains(':') && !host.starts_with('[') {
        true => format!("[{host}]"),
        false => host.to_string(),
    }
}

/// `host:port` or `host` (the sentinel port); `[v6]:port` too.
fn parse_host(text: &str) -> Result<Addr, String> {
    let bad = || format!("sentinel {text:?} is not host:port");
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            (host, port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?)
        }
        _ if !text.is_empty() && !text.contains(':') => (text, SENTINEL_PORT),
        _ => return Err(bad()),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// `None` when `url` is not a Sentinel URL; otherwise what it says, or why it is wrong.
pub fn parse_url(url: &str) -> Option<Result<SentinelUrl, String>> {
    let (scheme, rest) = url.split_once("+sentinel://")?;
    let tls = match scheme {
        "redis" => false,
        "rediss" => true,
        _ => return None,
    };
    Some(parse_rest(tls, rest))
}

fn parse_rest(tls: bool, rest: &str) -> Result<SentinelUrl, String> {
    let (rest, fragment) = rest.split_once('#').map_or((rest, ""), |(r, f)| (r, f));
    let (rest, query) = rest.split_once('?').map_or((rest, ""), |(r, q)| (r, q));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) if !user.is_empty() => (Some(user.to_string()), hosts),
        Some(_) => return Err("an empty user name before '@'".into()),
        None => (None, authority),
    };
    if hosts.is_empty() {
        return Err("no sentinel named: give host:port[,host:port…] after the scheme".into());
    }
    let sentinels = hosts
        .split(',')
        .map(parse_host)
        .collect::<Result<Vec<_>, _>>()?;
    if path.is_empty() {
        return Err(
            "no master name: end the URL with /<master-name>, the name the \
                    sentinels monitor (`sentinel monitor <master-name> …`)"
                .into(),
        );
    }
    if path.contains('/') || path.chars().any(char::is_whitespace) {
        return Err(format!(
            "{path:?} is not a master name (one path segment, no spaces)"
        ));
    }
    Ok(SentinelUrl {
        tls,
        user,
        sentinels,
        master: path.to_string(),
        query: query.to_string(),
        fragment: fragment.to_string(),
    })
}

impl SentinelUrl {
    /// Connection settings for a data node (`node`) or a sentinel (`node` false):
    /// the user and the query are the data nodes'.
    fn info(&self, (host, port): &Addr, node: bool) -> Result<ConnectionInfo, Failure> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = match (&self.user, node) {
            (Some(user), true) => format!("{user}@"),
            _ => String::new(),
        };
        // The path holds the master name, so `?db=N` names the database; the
        // redis crate reads it from the path.
        let (mut db, mut query) = (String::new(), Vec::new());
        for pair in self.query.split('&').filter(|p| node && !p.is_empty()) {
            match pair.strip_prefix("db=") {
                Some(n) => db = n.to_string(),
                None => query.push(pair),
            }
        }
        let query = match query.is_empty() {
            true => String::new(),
            false => format!("?{}", query.join("&")),
        };
        let fragment = match self.fragment.is_empty() {
            true => String::new(),
            false => format!("#{}", self.fragment),
        };
        let url = format!(
            "{scheme}://{user}{}:{port}/{db}{query}{fragment}",
            url_host(host)
        );
        url.as_str()
            .into_connection_info()
            .map_err(|e| Failure::new(ExitCode::Config, format!("bad --url: {e}")))
    }
}

/// The sentinels of one master and a connection to the primary they name.
pub struct Sentinel {
    url: SentinelUrl,
    sentinel_password: Option<String>,
    password: Option<String>,
    primary: Option<(Addr, Connection)>,
    /// The primary of the last answered command, to notice a switch.
    served: Option<Addr>,
    /// How often commands went to another primary than before (a failover).
    pub switches: u64,
}

/// Whether `e` says the node is gone, hung or no primary (any more): ask the sentinels again.
fn ask_again(e: &RedisError) -> bool {
    e.is_timeout()
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.code(), Some("READONLY" | "LOADING" | "MASTERDOWN"))
}

/// `connect::connect` for a Sentinel URL (`shown` redacted for messages): the
/// data nodes' password from the usual sources, the sentinels' from its own file.
pub fn connect_url(
    parsed: Result<SentinelUrl, String>,
    shown: &str,
    cluster: bool,
    (password_file, sentinel_password_file): (Option<&Path>, Option<&Path>),
    deadline: Instant,
) -> Result<Sentinel, Failure> {
    let bad_url = |why: &str| Failure::new(ExitCode::Config, format!("bad --url {shown:?}: {why}"));
    let url = parsed.map_err(|why| bad_url(&why))?;
    if cluster {
        return Err(bad_url(
            "it names sentinels, not a Redis Cluster: drop --cluster (QUANTUM_CLUSTER)",
        ));
    }
    let password = connect::password(password_file)?;
    if let (Some(user), None) = (&url.user, &password) {
        // Connecting as `default` instead would silently bypass the least-privilege user.
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "the URL names user {user:?} but no password was found: {}",
                connect::sources_tried()
            ),
        ));
    }
    let sentinel_password = sentinel_password_file
        .map(connect::read_password_file)
        .transpose()?;
    Sentinel::connect(url, password, sentinel_password, deadline)
}

impl Sentinel {
    /// Finds the primary, trying again until the deadline while the sentinels
    /// cannot be reached or name no reachable primary.
    pub fn connect(
        url: SentinelUrl,
        password: Option<String>,
        sentinel_password: Option<String>,
        deadline: Instant,
    ) -> Result<Sentinel, Failure> {
        let mut sentinel = Sentinel {
            url,
            sentinel_password,
            password,
            primary: None,
            served: None,
            switches: 0,
        };
        sentinel.find_primary(deadline)?;
        sentinel.served = sentinel.primary.as_ref().map(|(addr, _)| addr.clone());
        Ok(sentinel)
    }

    pub fn master(&self) -> &str {
        &self.url.master
    }

    /// The primary commands go to now, once a failover switched it.
    pub fn switched_primary(&self) -> Option<String> {
        self.served.as_ref().filter(|_| self.switches > 0).map(show)
    }

    /// A connection to the data node `addr`, made within the node connect bound.
    pub fn node(&self, addr: &Addr, deadline: Instant) -> Result<Connection, Failure> {
        let connect_by = Instant::now() + remaining(deadline)?.min(NODE_CONNECT_TIMEOUT);
        single(
            self.url.info(addr, true)?,
            self.password.clone(),
            connect_by,
        )
    }

    /// Runs `cmd` on `sentinels` in turn until one answers it: that one and
    /// its answer, or why none did. An error reply (a wrong password, not a
    /// sentinel) ends the search: asking others would not mend the setting.
    fn ask_sentinels(
        &self,
        sentinels: &[Addr],
        cmd: &redis::Cmd,
        deadline: Instant,
    ) -> Result<Result<(Addr, Value), Vec<String>>, Failure> {
        let mut unanswered = Vec::new();
        for addr in sentinels {
            let Ok(left) = remaining(deadline) else {
                unanswered.push("deadline reached".into());
                break;
            };
            let connect_by = Instant::now() + left.min(SENTINEL_TIMEOUT);
            let info = self.url.info(addr, false)?;
            let mut con = match single(info, self.sentinel_password.clone(), connect_by) {
                Ok(con) => con,
                Err(f) if f.code == ExitCode::Unavailable => {
                    unanswered.push(format!("sentinel {}", f.message));
                    continue;
                }
                Err(f) => return Err(self.sentinel_failure(addr, f)),
            };
            let wait = Some(left.min(SENTINEL_TIMEOUT));
            con.set_read_timeout(wait)
                .and_then(|_| con.set_write_timeout(wait))
                .map_err(|e| failure::from_redis(&e))?;
            match cmd.query::<Value>(&mut con) {
                Ok(value) => return Ok(Ok((addr.clone(), value))),
                Err(e) if ask_again(&e) => unanswered.push(format!(
                    "sentinel {}: {}",
                    show(addr),
                    failure::from_redis(&e).message
                )),
                Err(e) => return Err(self.sentinel_failure(addr, failure::from_redis(&e))),
            }
        }
        Ok(Err(unanswered))
    }

    /// The primary the sentinels name now.
    pub fn named_primary(&self, deadline: Instant) -> Result<Addr, Failure> {
        Ok(self.named_primary_by(&self.url.sentinels, deadline)?.1)
    }

    /// The primary the first of `sentinels` that knows the master names, and
    /// that sentinel; a master no answering sentinel knows is a setting to fix (78).
    fn named_primary_by(
        &self,
        sentinels: &[Addr],
        deadline: Instant,
    ) -> Result<(Addr, Addr), Failure> {
        let master = &self.url.master;
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(master);
        let mut unknown = Vec::new();
        let mut unanswered = Vec::new();
        let mut left = sentinels;
        while !left.is_empty() {
            let (addr, answer) = match self.ask_sentinels(left, &cmd, deadline)? {
                Ok(answered) => answered,
                Err(reasons) => {
                    unanswered.extend(reasons);
                    break;
                }
            };
            match answer {
                Value::Nil => unknown.push(show(&addr)),
                Value::Array(items) if items.len() == 2 => {
                    let named = <(String, u16)>::from_redis_value(Value::Array(items));
                    let (host, port) = named.map_err(|_| {
                        failure::unexpected("SENTINEL GET-MASTER-ADDR-BY-NAME host and port")
                    })?;
                    return Ok((addr, (host, port)));
                }
                _ => return Err(failure::unexpected("SENTINEL GET-MASTER-ADDR-BY-NAME")),
            }
            // Go on with the sentinels after the one that did not know the name.
            let at = left.iter().position(|s| *s == addr).unwrap_or(0);
            left = &left[at + 1..];
        }
        if unknown.is_empty() {
            return Err(Failure::new(
                ExitCode::Unavailable,
                format!(
                    "no sentinel of {master:?} answered: {}",
                    unanswered.join("; ")
                ),
            ));
        }
        Err(Failure::new(
            ExitCode::Config,
            format!(
                "bad --url: no sentinel knows a master named {master:?} ({} answered that \
                 they monitor no such master): the URL's path must be the name in \
                 `sentinel monitor <master-name> …` (SENTINEL MASTERS lists them)",
                unknown.join(", ")
            ),
        ))
    }

    /// A sentinel's refusal, as an exit code and a message naming it.
    fn sentinel_failure(&self, addr: &Addr, f: Failure) -> Failure {
        let message = match f.message.starts_with(&show(addr)) {
            true => format!("sentinel {}", f.message),
            false => format!("sentinel {}: {}", show(addr), f.message),
        };
        match f.code {
            ExitCode::ModuleMissing => Failure::new(
                ExitCode::Config,
                format!(
                    "bad --url: {} is not a Redis Sentinel (it does not know the SENTINEL \
                     command): redis+sentinel:// names the sentinels (port 26379 by default), \
                     not the data nodes",
                    show(addr)
                ),
            ),
            ExitCode::NoPermission => Failure::new(
                ExitCode::NoPermission,
                format!("{message} (the sentinels' password comes from --sentinel-password-file)"),
            ),
            _ => f.reworded(message),
        }
    }

    /// The replicas the sentinels know of the master: address and flags.
    pub fn replicas(&self, deadline: Instant) -> Result<Vec<(Addr, String)>, Failure> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("REPLICAS").arg(&self.url.master);
        let (_, answer) = self
            .ask_sentinels(&self.url.sentinels, &cmd, deadline)?
            .map_err(|unanswered| {
                Failure::new(
                    ExitCode::Unavailable,
                    format!("no sentinel answered: {}", unanswered.join("; ")),
                )
            })?;
        let Value::Array(replicas) = answer else {
            return Err(failure::unexpected("SENTINEL REPLICAS"));
        };
        let mut out = Vec::new();
        for replica in replicas {
            let fields = HashMap::<String, String>::from_redis_value(replica)
                .map_err(|_| failure::unexpected("SENTINEL REPLICAS"))?;
            let get = |name: &str| {
                fields.get(name).cloned().ok_or_else(|| {
                    failure::unexpected(&format!("SENTINEL REPLICAS without {name}"))
                })
            };
            let port = get("port")?
                .parse()
                .map_err(|_| failure::unexpected("SENTINEL REPLICAS port"))?;
            out.push(((get("ip")?, port), get("flags")?));
        }
        Ok(out)
    }

    /// One try: the primary the first sentinel that knows the master names,
    /// connected and checked to be one; when it is not (a sentinel that has not
    /// yet heard of a failover names the dead primary), the next sentinel's.
    fn try_primary(&mut self, deadline: Instant) -> Result<(), Failure> {
        let sentinels = self.url.sentinels.clone();
        let mut left = &sentinels[..];
        let mut unusable: Option<Failure> = None;
        while !left.is_empty() {
            let (asked, addr) = match (self.named_primary_by(left, deadline), unusable) {
                (Ok(named), _) => named,
                // Those after it did not answer or know the name: the named one's trouble says more.
                (Err(f), Some(last))
                    if matches!(f.code, ExitCode::Unavailable | ExitCode::Config) =>
                {
                    return Err(last)
                }
                (Err(f), _) => return Err(f),
            };
            match self.checked_primary(&addr, deadline) {
                Ok(con) => {
                    self.primary = Some((addr, con));
                    return Ok(());
                }
                Err(f) if f.code == ExitCode::Unavailable => unusable = Some(f),
                Err(f) => return Err(f),
            }
            let at = left.iter().position(|s| *s == asked).unwrap_or(0);
            left = &left[at + 1..];
        }
        Err(unusable.expect("a sentinel named a primary"))
    }

    /// A connection to `addr`, which a sentinel named as the primary, if it is one.
    fn checked_primary(&self, addr: &Addr, deadline: Instant) -> Result<Connection, Failure> {
        let named = |why: String| {
            Failure::new(
                ExitCode::Unavailable,
                format!(
                    "Sentinel names {} as the primary of {:?}, but {why}",
                    show(addr),
                    self.url.master
                ),
            )
        };
        let mut con = match self.node(addr, deadline) {
            Ok(con) => con,
            Err(f) if f.code == ExitCode::Unavailable => return Err(named(f.message)),
            Err(f) => return Err(f),
        };
        if let Some(role) = role(&mut con) {
            if role != "master" {
                return Err(named(format!("it is a {role} (a failover under way?)")));
            }
        }
        Ok(con)
    }

    /// Connects to the primary the sentinels name, asking again until the deadline.
    fn find_primary(&mut self, deadline: Instant) -> Result<(), Failure> {
        let mut pause = FIRST_PAUSE;
        let mut logged = false;
        loop {
            let f = match self.try_primary(deadline) {
                Ok(()) => return Ok(()),
                Err(f) if f.code != ExitCode::Unavailable => return Err(f),
                Err(f) => f,
            };
            if !logged {
                warn!(
                    "{}; asking the sentinels again until the deadline",
                    f.message
                );
                logged = true;
            }
            let Ok(left) = remaining(deadline) else {
                return Err(f);
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_PAUSE);
            if remaining(deadline).is_err() {
                let message = format!("deadline reached: {}", f.message);
                return Err(f.reworded(message));
            }
        }
    }

    /// Runs one command on the primary; after READONLY, LOADING, a lost
    /// connection or a silent primary, asks the sentinels again and sends it
    /// to the primary they name, until the deadline. A command sent again may
    /// have run already: RECOVER from the same cursor re-claims nothing TO
    /// holds, RETIRE moves what the consumer still holds.
    pub fn query(&mut self, cmd: &redis::Cmd, deadline: Instant) -> Result<Value, Failure> {
        let mut pause = FIRST_PAUSE;
        let mut lost = false;
        let mut logged = false;
        loop {
            if self.primary.is_none() {
                self.find_primary(deadline).map_err(|f| Failure {
                    reply_lost: lost,
                    ..f
                })?;
            }
            let (addr, con) = self.primary.as_mut().expect("found above");
            let wait = Some(remaining(deadline)?.min(CALL_TIMEOUT));
            con.set_read_timeout(wait)
                .and_then(|_| con.set_write_timeout(wait))
                .map_err(|e| failure::from_redis(&e))?;
            let e = match cmd.query::<Value>(con) {
                Ok(value) => {
                    let addr = addr.clone();
                    self.note_served(addr);
                    return Ok(value);
                }
                Err(e) => e,
            };
            let name = show(addr);
            lost |= failure::reply_lost(&e);
            let f = Failure {
                reply_lost: lost,
                ..at_node(failure::from_redis(&e), &name)
            };
            if !ask_again(&e) {
                return Err(f);
            }
            self.primary = None;
            if !logged {
                warn!(
                    "{name}: {}; asking the sentinels of {:?} for the primary again, at most \
                     until the deadline",
                    f.message, self.url.master
                );
                logged = true;
            }
            let Ok(left) = remaining(deadline) else {
                return Err(f);
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    fn note_served(&mut self, addr: Addr) {
        if let Some(before) = self.served.as_ref().filter(|b| **b != addr) {
            warn!(
                "Sentinel named {} as the primary of {:?} instead of {} (a failover): \
                 switched_primary={}; the run goes on there",
                show(&addr),
                self.url.master,
                show(before),
                show(&addr)
            );
            self.switches += 1;
        }
        self.served = Some(addr);
    }
}

/// The node's role (`master`, `slave`): from ROLE, or from INFO replication
/// for a user without `+role`; `None` when neither may be run (the sentinels'
/// word stands, and a write to a replica answers READONLY).
fn role(con: &mut Connection) -> Option<String> {
    if let Ok(Value::Array(items)) = redis::cmd("ROLE").query::<Value>(con) {
        return items
            .into_iter()
            .next()
            .and_then(|v| String::from_redis_value(v).ok());
    }
    let info: String = redis::cmd("INFO").arg("replication").query(con).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .map(|r| r.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_sentinels_and_a_master() {
        let url = parse_url("rediss+sentinel://quantum@s1:26380,[::1]:1,s3/mymaster?db=2#insecure")
            .unwrap()
            .unwrap();
        assert!(url.tls);
        assert_eq!(url.user.as_deref(), Some("quantum"));
        assert_eq!(
            url.sentinels,
            [
                ("s1".into(), 26380),
                ("::1".into(), 1),
                ("s3".into(), SENTINEL_PORT)
            ]
        );
        assert_eq!(url.master, "mymaster");
        let node = url.info(&("::1".into(), 7), true).unwrap();
        assert_eq!(node.redis_settings().username(), Some("quantum"));
        assert_eq!(node.redis_settings().db(), 2);
        assert!(matches!(
            node.addr(),
            redis::ConnectionAddr::TcpTls { host, insecure: true, .. } if host == "::1"
        ));
        let sentinel = url.info(&("s1".into(), 26380), false).unwrap();
        assert_eq!(sentinel.redis_settings().username(), None);
        assert_eq!(sentinel.redis_settings().db(), 0);
        assert!(parse_url("redis://h:1").is_none());
        assert!(parse_url("redis+cluster://h:1").is_none());
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong() {
        for (url, why) in [
            ("redis+sentinel://s1:26379", "no master name"),
            ("redis+sentinel://s1:26379/", "no master name"),
            ("redis+sentinel:///mymaster", "no sentinel named"),
            ("redis+sentinel://s1:x/m", "\"s1:x\" is not host:port"),
            ("redis+sentinel://s1:1,,s2:2/m", "\"\" is not host:port"),
            ("redis+sentinel://s1:0/m", "is not host:port"),
            ("redis+sentinel://s1:1/a/b", "is not a master name"),
            ("redis+sentinel://@s1:1/m", "empty user name"),
        ] {
            let error = parse_url(url).unwrap().unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
    }
}
