//! Reading replies in tests: QUANTUM.RECOVER's map, and the group state that
//! tests compare before and after a call.

use crate::scenario::{GROUP, STREAM};
use redis::{Connection, Value};

/// QUANTUM.RECOVER's reply, keys in the order the server sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub keys: Vec<String>,
    pub mode: Option<String>,
    pub dry_run: bool,
    pub claimed: Vec<String>,
    pub quarantined: Vec<String>,
    pub dropped: Vec<String>,
    pub deleted: Vec<String>,
    pub kept: Vec<String>,
    pub scanned: i64,
    pub cursor: String,
    pub pending: i64,
    pub consumers: i64,
    /// `None` when the call skipped the consumer pass (DELETELIMIT 0).
    pub kept_total: Option<i64>,
    /// `None` without a dead-letter stream (the reply then has no such key).
    pub dead_lettered: Option<Vec<String>>,
    pub dead_letter_deferred: Option<Vec<String>>,
}

pub fn text(value: &Value) -> String {
    match value {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::Okay => "OK".into(),
        other => panic!("expected a string, got {other:?}"),
    }
}

pub fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => text(other)
            .parse()
            .unwrap_or_else(|_| panic!("expected an integer, got {other:?}")),
    }
}

pub fn texts(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().map(text).collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// Key/value pairs of a RESP3 map or a RESP2 flat array.
pub fn pairs(value: &Value) -> Vec<(String, Value)> {
    match value {
        Value::Map(items) => items.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        Value::Array(items) => items
            .chunks(2)
            .map(|kv| (text(&kv[0]), kv[1].clone()))
            .collect(),
        other => panic!("expected a map, got {other:?}"),
    }
}

impl Recovery {
    pub fn from_value(value: &Value) -> Recovery {
        let pairs = pairs(value);
        let optional = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let get =
            |key: &str| optional(key).unwrap_or_else(|| panic!("reply has no '{key}': {value:?}"));
        Recovery {
            keys: pairs.iter().map(|(k, _)| k.clone()).collect(),
            mode: match get("mode") {
                Value::Nil => None,
                v => Some(text(&v)),
            },
            dry_run: int(&get("dry-run")) == 1,
            claimed: texts(&get("claimed")),
            quarantined: texts(&get("quarantined")),
            dropped: texts(&get("dropped")),
            deleted: texts(&get("deleted")),
            kept: texts(&get("kept")),
            scanned: int(&get("scanned")),
            cursor: text(&get("cursor")),
            pending: int(&get("pending")),
            consumers: int(&get("consumers")),
            // Absent before issue 15; `keys` shows whether a reply had it.
            kept_total: pairs
                .iter()
                .find(|(k, _)| k == "kept-total")
                .and_then(|(_, v)| (*v != Value::Nil).then(|| int(v))),
            dead_lettered: optional("dead-lettered").map(|v| texts(&v)),
            dead_letter_deferred: optional("dead-letter-deferred").map(|v| texts(&v)),
        }
    }

    /// The reply without `mode` and `dry-run`: what a DRYRUN and the real call
    /// right after it must agree on.
    pub fn effects(&self) -> Recovery {
        Recovery {
            mode: None,
            dry_run: false,
            ..self.clone()
        }
    }
}

/// Runs a command given as words; a server error comes back as `Err` holding
/// its line as sent (`CODE message`).
pub fn run(con: &mut Connection, words: &[&str]) -> Result<Value, String> {
    let mut cmd = redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    cmd.query::<Value>(con).map_err(|e| error_line(&e))
}

pub fn error_line(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// QUANTUM.RECOVER key group <options...>, parsed.
pub fn recover(
    con: &mut Connection,
    key: &str,
    group: &str,
    options: &[&str],
) -> Result<Recovery, String> {
    let mut words = vec!["QUANTUM.RECOVER", key, group];
    words.extend_from_slice(options);
    run(con, &words).map(|v| Recovery::from_value(&v))
}

/// `(id, owner, deliveries)` of every PEL entry, in ID order.
/// QUANTUM.STATUS of the test stream and group, as its `(key, value)` pairs.
pub fn status(con: &mut Connection, options: &[&str]) -> Result<Vec<(String, Value)>, String> {
    let mut words = vec!["QUANTUM.STATUS", STREAM, GROUP];
    words.extend_from_slice(options);
    run(con, &words).map(|v| pairs(&v))
}

/// The value of `name` in a reply's `(key, value)` pairs; panics when missing.
pub fn field(fields: &[(String, Value)], name: &str) -> Value {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no '{name}' in the reply"))
        .1
        .clone()
}

pub fn pel(con: &mut Connection, key: &str, group: &str) -> Vec<(String, String, i64)> {
    pel_with_idle(con, key, group)
        .into_iter()
        .map(|(id, owner, deliveries, _)| (id, owner, deliveries))
        .collect()
}

/// `(id, owner, deliveries, idle ms)` of every PEL entry, in ID order.
pub fn pel_with_idle(
    con: &mut Connection,
    key: &str,
    group: &str,
) -> Vec<(String, String, i64, i64)> {
    match run(con, &["XPENDING", key, group, "-", "+", "1000000"]).expect("XPENDING") {
        Value::Array(rows) => rows
            .iter()
            .map(|row| match row {
                Value::Array(f) => (text(&f[0]), text(&f[1]), int(&f[3]), int(&f[2])),
                other => panic!("XPENDING row {other:?}"),
            })
            .collect(),
        other => panic!("XPENDING {other:?}"),
    }
}

/// `(name, pending, idle)` of every consumer, from XINFO CONSUMERS by field name.
pub fn consumers(con: &mut Connection, key: &str, group: &str) -> Vec<(String, i64, i64)> {
    let rows = run(con, &["XINFO", "CONSUMERS", key, group]).expect("XINFO CONSUMERS");
    match rows {
        Value::Array(rows) => rows
            .iter()
            .map(|row| {
                let fields = pairs(row);
                let field = |name: &str| fields.iter().find(|(k, _)| k == name).unwrap().1.clone();
                (
                    text(&field("name")),
                    int(&field("pending")),
                    int(&field("idle")),
                )
            })
            .collect(),
        other => panic!("XINFO CONSUMERS {other:?}"),
    }
}

pub fn consumer_names(con: &mut Connection, key: &str, group: &str) -> Vec<String> {
    consumers(con, key, group)
        .into_iter()
        .map(|c| c.0)
        .collect()
}

/// XINFO STREAM key FULL with every time field removed: what must not change
/// when a call changes nothing. Times are `*-time` values and the delivery
/// times inside PEL rows.
pub fn group_state(con: &mut Connection, key: &str) -> String {
    let full = run(con, &["XINFO", "STREAM", key, "FULL"]).expect("XINFO STREAM FULL");
    format!("{:?}", without_times(&full))
}

fn without_times(value: &Value) -> Value {
    let Value::Array(items) = value else {
        return value.clone();
    };
    let is_key = |v: &Value| matches!(v, Value::BulkString(b) if b.iter().all(|c| c.is_ascii_lowercase() || *c == b'-'));
    // A flat key/value array (XINFO's RESP2 maps): drop the `*-time` pairs.
    if items.len().is_multiple_of(2) && !items.is_empty() && items.iter().step_by(2).all(is_key) {
        let mut kept = Vec::new();
        for kv in items.chunks(2) {
            if !text(&kv[0]).ends_with("-time") {
                kept.push(kv[0].clone());
                kept.push(without_times(&kv[1]));
            }
        }
        return Value::Array(kept);
    }
    // PEL rows: [id, consumer, delivery-time, count] in the group, [id, delivery-time, count] in a consumer.
    let is_id =
        |v: &Value| matches!(v, Value::BulkString(b) if b.contains(&b'-') && b[0].is_ascii_digit());
    match items.as_slice() {
        [id, owner, Value::Int(_), count] if is_id(id) => {
            Value::Array(vec![id.clone(), owner.clone(), count.clone()])
        }
        [id, Value::Int(_), count] if is_id(id) => Value::Array(vec![id.clone(), count.clone()]),
        _ => Value::Array(items.iter().map(without_times).collect()),
    }
}

/// INFO quantum as `name -> value` (field names without the `quantum_` prefix).
pub fn info_quantum(con: &mut Connection) -> Vec<(String, String)> {
    let info = text(&run(con, &["INFO", "quantum"]).expect("INFO quantum"));
    info.lines()
        .filter_map(|line| line.strip_prefix("quantum_")?.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

pub fn info_counter(con: &mut Connection, name: &str) -> i64 {
    info_quantum(con)
        .into_iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO quantum has no integer '{name}'"))
}

/// How often `command` (as INFO commandstats names it, e.g. `xinfo|consumers`)
/// ran since the last CONFIG RESETSTAT; a module's internal calls count too.
pub fn command_calls(con: &mut Connection, command: &str) -> i64 {
    let stats = text(&run(con, &["INFO", "commandstats"]).expect("INFO commandstats"));
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Compares two ID lists, reporting lengths and the first difference instead of both lists.
pub fn assert_same_ids(actual: &[String], expected: &[String], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual.iter().zip(expected).position(|(a, e)| a != e);
    panic!(
        "{what}: {} IDs, expected {}; first difference at {first:?}: {:?} vs {:?}",
        actual.len(),
        expected.len(),
        first.map(|i| &actual[i]),
        first.map(|i| &expected[i]),
    );
}

/// The group's consumer names and PEL: what a call that changes nothing leaves as it was.
/// How many pending entries `consumer` holds (0 when it is not in the group).
pub fn held_by(con: &mut Connection, key: &str, group: &str, consumer: &str) -> i64 {
    consumers(con, key, group)
        .iter()
        .find(|c| c.0 == consumer)
        .map_or(0, |c| c.1)
}

pub fn consumers_and_pel(con: &mut Connection) -> (Vec<String>, Vec<(String, String, i64)>) {
    (consumer_names(con, STREAM, GROUP), pel(con, STREAM, GROUP))
}
