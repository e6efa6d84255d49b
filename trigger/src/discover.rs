//! `[[discover]]` against one primary: the streams whose keys match a pattern
//! (SCAN 0 MATCH pattern TYPE stream COUNT n, to the end) and the consumer
//! groups of each (XINFO GROUPS). In a cluster the caller runs this on every
//! primary: a key lives on exactly one. Only `redis` and `std` are used here,
//! so the integration test builds this file as it is.
//!
//! A key that matches but is not a stream is not returned by SCAN's TYPE
//! filter; one deleted or retyped between SCAN and XINFO GROUPS is skipped and
//! named in `Discovery::skipped`; neither is an error. A stream or group
//! whose name is not UTF-8 (the trigger names them as text) is listed in
//! `Discovery::not_utf8` for the caller to report as a failed target.

use redis::{ConnectionLike, RedisError, Value};
use std::time::Instant;

/// Keys SCAN examines per call: a call costs Redis O(COUNT), well under a
/// millisecond at this size, and a million keys take a thousand round trips.
pub const SCAN_COUNT: usize = 1000;

/// A stream and its consumer groups (none: the stream has no group yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGroups {
    pub stream: String,
    pub groups: Vec<String>,
}

/// What one pattern found on one or more primaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Sorted by stream; groups sorted.
    pub streams: Vec<StreamGroups>,
    /// Keys SCAN returned but that could not be used, and why.
    pub skipped: Vec<String>,
    /// `(stream, group)` whose name is not UTF-8, each written with `\xNN`
    /// escapes (group `*`: the stream's own name is not UTF-8).
    pub not_utf8: Vec<(String, String)>,
    /// Stopped early: more than `limit` (stream, group) pairs were found.
    pub truncated: bool,
}

impl Discovery {
    /// How many (stream, group) pairs were found.
    pub fn pairs(&self) -> usize {
        self.streams.iter().map(|s| s.groups.len()).sum()
    }

    /// Adds another primary's findings (a key lives on one primary only).
    pub fn merge(&mut self, other: Discovery) {
        self.streams.extend(other.streams);
        self.streams.sort_by(|a, b| a.stream.cmp(&b.stream));
        self.skipped.extend(other.skipped);
        self.not_utf8.extend(other.not_utf8);
        self.truncated |= other.truncated;
    }
}

#[derive(Debug)]
pub enum DiscoverError {
    Redis(RedisError),
    /// The deadline came before SCAN reached the end of the keyspace; what
    /// it had found by then (sorted), which the caller may still run.
    Deadline(Box<Discovery>),
}

impl std::fmt::Display for DiscoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DiscoverError::Redis(e) => write!(f, "{e}"),
            DiscoverError::Deadline(_) => write!(f, "deadline reached while discovering streams"),
        }
    }
}

impl From<RedisError> for DiscoverError {
    fn from(e: RedisError) -> Self {
        DiscoverError::Redis(e)
    }
}

/// The streams matching `pattern` on this node and their groups, stopping once
/// more than `limit` (stream, group) pairs were found (`truncated`: the caller
/// reports max-targets exceeded rather than cutting silently). Each call's
/// timeout is the connection's; `deadline` is checked between calls.
pub fn discover<C: ConnectionLike>(
    con: &mut C,
    pattern: &str,
    limit: usize,
    deadline: Instant,
) -> Result<Discovery, DiscoverError> {
    let mut found = Discovery::default();
    let mut cursor = String::from("0");
    loop {
        if Instant::now() >= deadline {
            found.streams.sort_by(|a, b| a.stream.cmp(&b.stream));
            return Err(DiscoverError::Deadline(Box::new(found)));
        }
        let (next, keys): (String, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(&cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("TYPE")
            .arg("stream")
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query(con)?;
        for key in keys {
            let stream = match String::from_utf8(key) {
                Ok(stream) => stream,
                Err(e) => {
                    let name = escaped(e.as_bytes());
                    found.not_utf8.push((name, "*".into()));
                    continue;
                }
            };
            match groups_of(con, &stream)? {
                Some(reply) => {
                    for group in non_utf8_group_names(&reply) {
                        found.not_utf8.push((stream.clone(), group));
                    }
                    let groups = group_names(&reply);
                    found.streams.push(StreamGroups { stream, groups });
                }
                None => found
                    .skipped
                    .push(format!("{stream:?}: no longer a stream")),
            }
            if found.pairs() > limit {
                found.truncated = true;
                break;
            }
        }
        if found.truncated || next == "0" {
            break;
        }
        cursor = next;
    }
    found.streams.sort_by(|a, b| a.stream.cmp(&b.stream));
    Ok(found)
}

/// XINFO GROUPS of `stream` (its names: `group_names`, `non_utf8_group_names`);
/// `None` if the key is gone or is no longer a stream (it changed after SCAN saw it).
pub fn groups_of<C: ConnectionLike>(
    con: &mut C,
    stream: &str,
) -> Result<Option<Value>, RedisError> {
    match redis::cmd("XINFO").arg("GROUPS").arg(stream).query(con) {
        Ok(reply) => Ok(Some(reply)),
        Err(e) if e.code() == Some("WRONGTYPE") => Ok(None),
        Err(e) if e.to_string().contains("no such key") => Ok(None),
        Err(e) => Err(e),
    }
}

/// A name that is not UTF-8, readable: printable ASCII as it is, every other
/// byte (and `\`, `"`) as an escape such as `\xff`.
pub fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// The group names of an XINFO GROUPS reply, sorted. A group whose name is
/// not UTF-8 is left out (the trigger names groups as text): see
/// `non_utf8_group_names`.
pub fn group_names(reply: &Value) -> Vec<String> {
    let mut names: Vec<String> = raw_group_names(reply)
        .into_iter()
        .filter_map(|name| String::from_utf8(name).ok())
        .collect();
    names.sort();
    names
}

/// The names `group_names` leaves out, escaped (`escaped`), sorted.
pub fn non_utf8_group_names(reply: &Value) -> Vec<String> {
    let mut names: Vec<String> = raw_group_names(reply)
        .into_iter()
        .filter(|name| std::str::from_utf8(name).is_err())
        .map(|name| escaped(&name))
        .collect();
    names.sort();
    names
}

fn raw_group_names(reply: &Value) -> Vec<Vec<u8>> {
    let Value::Array(groups) = reply else {
        return Vec::new();
    };
    groups.iter().filter_map(group_name).collect()
}

/// The `name` field of one XINFO GROUPS entry (RESP2 flat pairs or RESP3 map).
fn group_name(entry: &Value) -> Option<Vec<u8>> {
    let pairs: Vec<(&Value, &Value)> = match entry {
        Value::Array(flat) => flat
            .chunks(2)
            .filter_map(|p| Some((p.first()?, p.get(1)?)))
            .collect(),
        Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
        _ => return None,
    };
    pairs
        .into_iter()
        .find_map(|(k, v)| match (text(k)?.as_str(), v) {
            ("name", Value::BulkString(name)) => Some(name.clone()),
            ("name", Value::SimpleString(name)) => Some(name.clone().into_bytes()),
            _ => None,
        })
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Whether `key` matches SCAN's glob `pattern` as Redis matches it (`*`, `?`,
/// `[abc]`, `[a-z]`, `[^x]`, `\` escapes): for a stream named on the command
/// line, which `[[discover]]` tables would have found it.
pub fn pattern_matches(pattern: &str, key: &str) -> bool {
    fn matches(p: &[char], k: &[char]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some(('*', rest)) => (0..=k.len()).any(|i| matches(rest, &k[i..])),
            Some(('?', rest)) => !k.is_empty() && matches(rest, &k[1..]),
            Some(('[', rest)) => match (k.split_first(), class(rest)) {
                (Some((c, k_rest)), Some((accepts, after))) => {
                    accepts(*c) && matches(after, k_rest)
                }
                _ => false,
            },
            Some(('\\', rest)) if !rest.is_empty() => {
                k.first() == Some(&rest[0]) && matches(&rest[1..], &k[1..])
            }
            Some((c, rest)) => k.first() == Some(c) && matches(rest, &k[1..]),
        }
    }
    /// A `[...]` class after its `[`: what it accepts and the pattern after `]`.
    #[allow(clippy::type_complexity)]
    fn class(p: &[char]) -> Option<(Box<dyn Fn(char) -> bool + '_>, &[char])> {
        let (negate, body) = match p.first() {
            Some('^') => (true, &p[1..]),
            _ => (false, p),
        };
        let end = body.iter().position(|&c| c == ']')?;
        let set = &body[..end];
        let accepts = move |c: char| {
            let mut i = 0;
            let mut hit = false;
            while i < set.len() {
                if set[i] == '\\' && i + 1 < set.len() {
                    hit |= set[i + 1] == c;
                    i += 2;
                } else if i + 2 < set.len() && set[i + 1] == '-' {
                    let (lo, hi) = (set[i].min(set[i + 2]), set[i].max(set[i + 2]));
                    hit |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate
        };
        Some((Box::new(accepts), &body[end + 1..]))
    }
    let p: Vec<char> = pattern.chars().collect();
    let k: Vec<char> = key.chars().collect();
    matches(&p, &k)
}

#[cfg(test)]
mod pattern_tests {
    use super::pattern_matches;

    #[test]
    fn patterns_match_as_scan_matches() {
        for (pattern, key, expected) in [
            ("*", "anything", true),
            ("orders.*", "orders.eu", true),
            ("orders.*", "fills.eu", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-c]llo", "hbllo", true),
            ("{trade}:*", "{trade}:s", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("", "", true),
        ] {
            assert_eq!(pattern_matches(pattern, key), expected, "{pattern} {key}");
        }
    }
}
