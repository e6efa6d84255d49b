//! `redis+sentinel://[user@]host:port[,host:port…]/<master-name>[?db=N][#fragment]`:
//! what the URL says, and the connection settings it gives a sentinel or a data node.

use super::Addr;
use crate::failure::{ExitCode, Failure};
use redis::{ConnectionInfo, IntoConnectionInfo};

/// The port a sentinel listens on when the URL names none.
pub const SENTINEL_PORT: u16 = 26379;

/// What a `redis+sentinel://` URL says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelUrl {
    pub tls: bool,
    /// The data nodes' ACL user (`user@` before the hosts), if any.
    pub user: Option<String>,
    pub sentinels: Vec<Addr>,
    pub master: String,
    /// `?db=N` for the data nodes: the one query key taken.
    db: Option<String>,
    /// `#fragment` for every connection (e.g. `#insecure` for TLS).
    fragment: String,
}

pub fn show((host, port): &Addr) -> String {
    format!("{host}:{port}")
}

/// A host for a URL: an IPv6 address goes in brackets.
fn url_host(host: &str) -> String {
    match host.contains(':') && !host.starts_with('[') {
        true => format!("[{host}]"),
        false => host.to_string(),
    }
}

/// `host:port` or `host` (the sentinel port); `[v6]:port` and `[v6]` too.
fn parse_host(text: &str) -> Result<Addr, String> {
    let bad = || format!("sentinel {text:?} is not host:port");
    let bracketed = text.starts_with('[') && text.ends_with(']');
    let (host, port) = match text.rsplit_once(':') {
        _ if bracketed => (text, SENTINEL_PORT),
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            (host, port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?)
        }
        _ if !text.is_empty() && !text.contains(':') => (text, SENTINEL_PORT),
        _ => return Err(bad()),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', ' ', '[', ']']) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// `%XX` sequences decoded (a bad one is kept as it is): a query key is
/// judged by what the redis crate would read.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// `db`'s value; any other key is refused by name only (its value may be a
/// password meant for somewhere else), as is `db` twice or empty.
fn parse_query(query: &str) -> Result<Option<String>, String> {
    let mut db = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        if key != "db" {
            return Err(format!(
                "unknown query parameter {key:?} (only ?db=N is taken; the sentinels' password \
                 comes from --sentinel-password-file, the data nodes' from --password-file)"
            ));
        }
        let value = percent_decode(value);
        if value.is_empty() {
            return Err("query parameter \"db\" is empty: give ?db=N or leave it out".into());
        }
        if db.is_some() {
            return Err("query parameter \"db\" is given twice: give it once".into());
        }
        db = Some(value);
    }
    Ok(db)
}

fn parse_rest(tls: bool, rest: &str) -> Result<SentinelUrl, String> {
    let (rest, fragment) = rest.split_once('#').map_or((rest, ""), |(r, f)| (r, f));
    let (rest, query) = rest.split_once('?').map_or((rest, ""), |(r, q)| (r, q));
    let db = parse_query(query)?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) if !user.is_empty() => (Some(user.to_string()), hosts),
        Some(_) => return Err("an empty user name before '@'".into()),
        None => (None, authority),
    };
    if hosts.is_empty() {
        return Err("no sentinel named: give host:port[,host:port…] after the scheme".into());
    }
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        let addr = parse_host(host)?;
        // Listed twice, it would be asked twice (and counted once: resolve.rs).
        if !sentinels.contains(&addr) {
            sentinels.push(addr);
        }
    }
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
        db,
        fragment: fragment.to_string(),
    })
}

impl SentinelUrl {
    /// Connection settings for a data node (`node`) or a sentinel (`node` false):
    /// the user and the database are the data nodes'.
    pub fn info(&self, (host, port): &Addr, node: bool) -> Result<ConnectionInfo, Failure> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = match (&self.user, node) {
            (Some(user), true) => format!("{user}@"),
            _ => String::new(),
        };
        // The path holds the master name, so `?db=N` names the database; the
        // redis crate reads it from the path.
        let db = self.db.as_deref().filter(|_| node).unwrap_or_default();
        let fragment = match self.fragment.is_empty() {
            true => String::new(),
            false => format!("#{}", self.fragment),
        };
        let url = format!("{scheme}://{user}{}:{port}/{db}{fragment}", url_host(host));
        url.as_str()
            .into_connection_info()
            .map_err(|e| Failure::new(ExitCode::Config, format!("bad --url: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_sentinels_and_a_master() {
        let url =
            parse_url("rediss+sentinel://quantum@s1:26380,[::1]:1,s3,[::2]/mymaster?db=2#insecure")
                .unwrap()
                .unwrap();
        assert!(url.tls);
        assert_eq!(url.user.as_deref(), Some("quantum"));
        assert_eq!(
            url.sentinels,
            [
                ("s1".into(), 26380),
                ("::1".into(), 1),
                ("s3".into(), SENTINEL_PORT),
                ("::2".into(), SENTINEL_PORT)
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
        let twice = parse_url("redis+sentinel://s1,s1:26379,s2/m")
            .unwrap()
            .unwrap();
        assert_eq!(twice.sentinels.len(), 2, "{:?}", twice.sentinels);
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
            ("redis+sentinel://[::1/m", "is not host:port"),
            ("redis+sentinel://s1/m?db=0&db=1", "\"db\" is given twice"),
            ("redis+sentinel://s1/m?db=", "\"db\" is empty"),
            ("redis+sentinel://s1/m?db", "\"db\" is empty"),
        ] {
            let error = parse_url(url).unwrap().unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
    }

    /// Review r14 F5: a password-like key was silently dropped; now any key
    /// but `db` is refused, percent-encoded or not, without its value.
    #[test]
    fn unknown_query_keys_are_refused_without_their_value() {
        for (url, key) in [
            (
                "redis+sentinel://s1/m?sentinel_password=S3cr3t",
                "sentinel_password",
            ),
            ("redis+sentinel://s1/m?db=1&auth=S3cr3t", "auth"),
            ("redis+sentinel://s1/m?%70assword=S3cr3t", "password"),
            ("redis+sentinel://s1/m?protocol=resp3", "protocol"),
        ] {
            let error = parse_url(url).unwrap().unwrap_err();
            assert!(error.contains(&format!("{key:?}")), "{url}: {error}");
            assert!(!error.contains("S3cr3t"), "{error}");
        }
        let url = parse_url("redis+sentinel://s1/m?%64b=3").unwrap().unwrap();
        assert_eq!(
            url.info(&("h".into(), 1), true)
                .unwrap()
                .redis_settings()
                .db(),
            3
        );
        assert_eq!(percent_decode("%70a%zz%"), "pa%zz%");
    }
}
