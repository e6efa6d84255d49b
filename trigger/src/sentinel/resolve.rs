//! Asking the sentinels: every listed sentinel at once (one thread each,
//! each within `SENTINEL_TIMEOUT`), and the primary a majority of those that
//! named one agree on. A sentinel that cannot be reached, is not a sentinel,
//! refuses the password or answers garbage is passed over; its reason is kept
//! for the error when no sentinel could be used.

use super::url::{show, SentinelUrl};
use super::{ask_again, Addr};
use crate::connect::{remaining, single};
use crate::failure::{self, ExitCode, Failure};
use redis::{FromRedisValue, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The longest wait for one sentinel's answer: a hung one must not hold the run.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `cmd` on every sentinel in parallel: each one's answer or why it gave
/// none. Each exchange as a whole (connecting, MYID and the answer) is bounded
/// by `SENTINEL_TIMEOUT`: a sentinel still answering then (a trickle of bytes,
/// each within a read timeout) is passed over like one that failed, its thread
/// left to end on its own. A sentinel is asked once however often the URL
/// lists it: answers from the same sentinel (by SENTINEL MYID, else by
/// address) after the first are dropped, so one cannot vote twice.
pub fn ask_all(
    url: &SentinelUrl,
    password: Option<&str>,
    cmd: &redis::Cmd,
    deadline: Instant,
) -> Vec<(Addr, Result<Value, Failure>)> {
    let bound = match remaining(deadline) {
        Ok(left) => left.min(SENTINEL_TIMEOUT),
        Err(f) => {
            let each = |addr: &Addr| (addr.clone(), Err(f.clone()));
            return url.sentinels.iter().map(each).collect();
        }
    };
    let by = Instant::now() + bound;
    let (tx, rx) = std::sync::mpsc::channel();
    for (at, addr) in url.sentinels.iter().enumerate() {
        let (url, addr, tx) = (url.clone(), addr.clone(), tx.clone());
        let (password, cmd) = (password.map(str::to_string), cmd.clone());
        std::thread::spawn(move || {
            let answer = ask_one(&url, &addr, password.as_deref(), &cmd, by);
            let _ = tx.send((at, answer));
        });
    }
    drop(tx);
    let mut answers: Vec<Option<Answer>> = url.sentinels.iter().map(|_| None).collect();
    while let Ok((at, answer)) = rx.recv_timeout(by.saturating_duration_since(Instant::now())) {
        answers[at] = Some(answer);
    }
    let answers = url
        .sentinels
        .iter()
        .zip(answers)
        .map(|(addr, answer)| {
            let (id, answer) = answer.unwrap_or_else(|| {
                let why = format!(
                    "sentinel {}: no whole answer within {} ms",
                    show(addr),
                    bound.as_millis()
                );
                (None, Err(Failure::new(ExitCode::Unavailable, why)))
            });
            (addr.clone(), id, answer)
        })
        .collect();
    once_each(answers)
}

/// The answers with each sentinel's (its MYID, else its address) first one only.
fn once_each(
    answers: Vec<(Addr, Option<String>, Result<Value, Failure>)>,
) -> Vec<(Addr, Result<Value, Failure>)> {
    let mut seen = std::collections::HashSet::new();
    answers
        .into_iter()
        .filter(|(addr, id, _)| seen.insert(id.clone().unwrap_or_else(|| show(addr))))
        .map(|(addr, _, answer)| (addr, answer))
        .collect()
}

/// A sentinel's ID (SENTINEL MYID) and its answer.
type Answer = (Option<String>, Result<Value, Failure>);

/// One sentinel's identity (SENTINEL MYID, when it answers one) and its answer to `cmd`.
fn ask_one(
    url: &SentinelUrl,
    addr: &Addr,
    password: Option<&str>,
    cmd: &redis::Cmd,
    deadline: Instant,
) -> Answer {
    let left = match remaining(deadline) {
        Ok(left) => left,
        Err(f) => return (None, Err(f)),
    };
    let connected = url.info(addr, false).and_then(|info| {
        single(info, password.map(str::to_string), Instant::now() + left)
            .map_err(|f| sentinel_failure(addr, f))
    });
    let mut con = match connected {
        Ok(con) => con,
        Err(f) => return (None, Err(f)),
    };
    let wait = Some(left);
    if let Err(e) = con
        .set_read_timeout(wait)
        .and_then(|_| con.set_write_timeout(wait))
    {
        return (None, Err(failure::from_redis(&e)));
    }
    let id = redis::cmd("SENTINEL")
        .arg("MYID")
        .query::<String>(&mut con)
        .ok();
    let answer = cmd.query::<Value>(&mut con).map_err(|e| {
        let f = failure::from_redis(&e);
        let f = match ask_again(&e) {
            true => Failure::new(ExitCode::Unavailable, f.message),
            false => f,
        };
        sentinel_failure(addr, f)
    });
    (id, answer)
}

/// A sentinel's failure, as an exit code and a message naming it: a data node
/// (no SENTINEL command) is a setting (78), garbage is a protocol error.
fn sentinel_failure(addr: &Addr, f: Failure) -> Failure {
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
        ExitCode::Protocol => Failure::new(
            ExitCode::Protocol,
            format!(
                "sentinel {}: it did not answer as a Redis Sentinel does (is that address a \
                 sentinel?): {}",
                show(addr),
                f.message
            ),
        ),
        _ => f.reworded(message),
    }
}

/// The failure when no sentinel gave a usable answer: the code every one of
/// them failed with when they agree on a setting to fix (77 every password
/// refused, 78 none a sentinel), else 75 (asked again until the deadline).
pub fn none_usable(master: &str, failures: Vec<Failure>) -> Failure {
    let reasons: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
    let reasons = reasons.join("; ");
    let first = failures.first().map(|f| f.code);
    let all_same = failures.iter().all(|f| Some(f.code) == first);
    match first {
        Some(code @ (ExitCode::NoPermission | ExitCode::Config)) if all_same => {
            Failure::new(code, reasons)
        }
        _ => Failure::new(
            ExitCode::Unavailable,
            format!("no sentinel of {master:?} answered: {reasons}"),
        ),
    }
}

/// Why the sentinels named no primary.
pub struct NoPrimary {
    /// Sentinels named primaries but none has a majority (a tie): the
    /// primary in use is not confirmed, unlike when no sentinel answered.
    pub split: bool,
    pub failure: Failure,
}

/// The primary a strict majority of the sentinels that named one agree on.
/// No majority (a tie, a stale or lying sentinel against one other) is 75: the
/// run asks again until the deadline rather than guess. Sentinels that all
/// answered that they monitor no such master: 78.
pub fn vote(master: &str, answers: Vec<(Addr, Result<Value, Failure>)>) -> Result<Addr, Failure> {
    tally(master, answers).map_err(|no| no.failure)
}

/// `vote`, saying whether a failure was a split vote.
pub fn tally(
    master: &str,
    answers: Vec<(Addr, Result<Value, Failure>)>,
) -> Result<Addr, NoPrimary> {
    let no = |failure| NoPrimary {
        split: false,
        failure,
    };
    let mut named: BTreeMap<Addr, Vec<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut failures = Vec::new();
    for (sentinel, answer) in answers {
        match answer.and_then(|value| primary_in(value, &sentinel)) {
            Ok(Some(addr)) => named.entry(addr).or_default().push(show(&sentinel)),
            Ok(None) => unknown.push(show(&sentinel)),
            Err(f) => failures.push(f),
        }
    }
    let named = same_nodes_merged(named);
    let voters: usize = named.values().map(Vec::len).sum();
    if let Some((addr, _)) = named.iter().find(|(_, by)| by.len() * 2 > voters) {
        return Ok(addr.clone());
    }
    if voters > 0 {
        let sides: Vec<String> = named
            .iter()
            .map(|(addr, by)| format!("{} (by {})", show(addr), by.join(", ")))
            .collect();
        return Err(NoPrimary {
            split: true,
            failure: Failure::new(
                ExitCode::Unavailable,
                format!(
                    "the sentinels disagree about the primary of {master:?} and none has a \
                     majority: {}",
                    sides.join(" vs ")
                ),
            ),
        });
    }
    if !unknown.is_empty() {
        return Err(no(Failure::new(
            ExitCode::Config,
            format!(
                "bad --url: no sentinel knows a master named {master:?} ({} answered that \
                 they monitor no such master): the URL's path must be the name in \
                 `sentinel monitor <master-name> …` (SENTINEL MASTERS lists them)",
                unknown.join(", ")
            ),
        )));
    }
    Err(no(none_usable(master, failures)))
}

/// When the sentinels that named a primary named more than one: each
/// address with the sentinels that named it (`a (by s1, s2) vs b (by s3)`).
pub fn dissent(answers: &[(Addr, Result<Value, Failure>)]) -> Option<String> {
    let mut named: BTreeMap<Addr, Vec<String>> = BTreeMap::new();
    for (sentinel, answer) in answers {
        let Ok(value) = answer else { continue };
        if let Ok(Some(addr)) = primary_in(value.clone(), sentinel) {
            named.entry(addr).or_default().push(show(sentinel));
        }
    }
    let sides: Vec<String> = same_nodes_merged(named)
        .iter()
        .map(|(addr, by)| format!("{} (by {})", show(addr), by.join(", ")))
        .collect();
    (sides.len() > 1).then(|| sides.join(" vs "))
}

/// When more than one address was named: addresses that resolve to the same
/// socket address (`localhost:6379` and `127.0.0.1:6379`) are one node, under
/// the first of them, with all the sentinels that named either.
fn same_nodes_merged(named: BTreeMap<Addr, Vec<String>>) -> BTreeMap<Addr, Vec<String>> {
    use std::net::ToSocketAddrs;
    if named.len() < 2 {
        return named;
    }
    let mut merged: Vec<(Vec<std::net::SocketAddr>, Addr, Vec<String>)> = Vec::new();
    for (addr, by) in named {
        // `localhost` may resolve to ::1 and 127.0.0.1: any address in common.
        let resolved: Vec<_> = (addr.0.as_str(), addr.1)
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        match merged
            .iter_mut()
            .find(|(at, _, _)| at.iter().any(|a| resolved.contains(a)))
        {
            Some((_, _, voters)) => voters.extend(by),
            None => merged.push((resolved, addr, by)),
        }
    }
    merged.into_iter().map(|(_, addr, by)| (addr, by)).collect()
}

/// The address in a SENTINEL GET-MASTER-ADDR-BY-NAME answer; none: no such master.
fn primary_in(value: Value, sentinel: &Addr) -> Result<Option<Addr>, Failure> {
    let garbage = || {
        Failure::new(
            ExitCode::Protocol,
            format!(
                "sentinel {}: it did not answer as a Redis Sentinel does (an unexpected answer \
                 to SENTINEL GET-MASTER-ADDR-BY-NAME)",
                show(sentinel)
            ),
        )
    };
    match value {
        Value::Nil => Ok(None),
        Value::Array(items) if items.len() == 2 => {
            <(String, u16)>::from_redis_value(Value::Array(items))
                .map(Some)
                .map_err(|_| garbage())
        }
        _ => Err(garbage()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> Addr {
        ("127.0.0.1".into(), port)
    }

    fn names(port: u16) -> Result<Value, Failure> {
        Ok(Value::Array(vec![
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::BulkString(port.to_string().into_bytes()),
        ]))
    }

    fn fails(code: ExitCode) -> Result<Value, Failure> {
        Err(Failure::new(code, "sentinel x: why"))
    }

    /// Review r14 F2: the first answering sentinel was trusted even when stale or lying.
    #[test]
    fn the_majority_of_the_naming_sentinels_wins() {
        let answers = vec![(at(1), names(10)), (at(2), names(20)), (at(3), names(20))];
        assert_eq!(vote("m", answers).unwrap(), at(20));
        // One that failed and one that knows no such master do not vote.
        let answers = vec![
            (at(1), fails(ExitCode::Unavailable)),
            (at(2), Ok(Value::Nil)),
            (at(3), names(20)),
        ];
        assert_eq!(vote("m", answers).unwrap(), at(20));
        let tie = vec![(at(1), names(10)), (at(2), names(20))];
        let f = vote("m", tie).unwrap_err();
        assert_eq!(f.code, ExitCode::Unavailable);
        assert!(f.message.contains("disagree"), "{}", f.message);
        assert!(
            f.message.contains("127.0.0.1:10 (by 127.0.0.1:1)"),
            "{}",
            f.message
        );
    }

    /// Review r14b F4: a sentinel listed twice (or under two addresses) votes once.
    #[test]
    fn a_sentinel_listed_twice_votes_once() {
        let id = |name: &str| Some(name.to_string());
        let answers = vec![
            (at(1), id("a"), names(10)),
            (at(9), id("a"), names(10)),
            (at(3), None, names(20)),
            (at(3), None, names(20)),
        ];
        let once = once_each(answers);
        assert_eq!(once.len(), 2, "by MYID, then by address");
        let no = tally("m", once).expect_err("a tie");
        assert!(no.split, "a tie leaves the primary unconfirmed");
        assert!(
            no.failure.message.contains("disagree"),
            "{}",
            no.failure.message
        );
        let silent = vec![(at(1), fails(ExitCode::Unavailable))];
        assert!(!tally("m", silent).expect_err("no answer").split);
    }

    /// Review r14 F3: one bad sentinel ended the search; now it is passed over
    /// and the final code says whether every one failed for the same setting.
    #[test]
    fn failed_sentinels_are_passed_over_and_summed_up() {
        let answers = vec![
            (at(1), fails(ExitCode::Protocol)),
            (at(2), fails(ExitCode::NoPermission)),
            (at(3), names(20)),
        ];
        assert_eq!(vote("m", answers).unwrap(), at(20));
        let garbage = vec![(at(1), Ok(Value::Int(3))), (at(2), names(20))];
        assert_eq!(vote("m", garbage).unwrap(), at(20));
        let auth = vec![(at(1), fails(ExitCode::NoPermission)); 2];
        assert_eq!(vote("m", auth).unwrap_err().code, ExitCode::NoPermission);
        let mixed = vec![
            (at(1), fails(ExitCode::NoPermission)),
            (at(2), fails(ExitCode::Protocol)),
        ];
        assert_eq!(vote("m", mixed).unwrap_err().code, ExitCode::Unavailable);
        let unknown = vec![
            (at(1), Ok(Value::Nil)),
            (at(2), fails(ExitCode::Unavailable)),
        ];
        assert_eq!(vote("m", unknown).unwrap_err().code, ExitCode::Config);
    }
}
