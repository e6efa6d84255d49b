//! The three verbs as Redis calls: `run` follows QUANTUM.RECOVER's cursor in
//! batches and `retire` repeats QUANTUM.RETIRE until the consumer is empty
//! (each call its own atomic step); `status` is one call.

use crate::cli::Cli;
use crate::connect::Link;
use crate::failure::{self, Failure};
use quantum_protocol::{command, error, key, keyword};
use redis::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The drain so far, updated after each answered batch: what the main thread
/// reports if the deadline passes while a call is still waiting for Redis.
pub type Progress = Arc<Mutex<RunSummary>>;

/// How a call that reached the module ended, when it did not fail.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// The mode guard said no; nothing changed.
    Refused(String),
    /// The stream or the group does not exist (yet): nothing to do.
    Absent(String),
}

impl<T> Outcome<T> {
    /// Converts a `Done` value; the other outcomes pass through.
    fn and_then<U>(self, f: impl FnOnce(T) -> Result<U, Failure>) -> Result<Outcome<U>, Failure> {
        Ok(match self {
            Outcome::Done(value) => Outcome::Done(f(value)?),
            Outcome::Refused(m) => Outcome::Refused(m),
            Outcome::Absent(m) => Outcome::Absent(m),
        })
    }
}

/// The batches of one `run`, summed.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub mode: Option<String>,
    pub dry_run: bool,
    pub claimed: Vec<String>,
    pub quarantined: Vec<String>,
    pub dropped: Vec<String>,
    pub deleted: Vec<String>,
    /// As the last batch that looked at every consumer saw them: at most 100
    /// names (the module's cap) ...
    pub kept: Vec<String>,
    /// ... and how many there were.
    pub kept_total: i64,
    pub scanned: i64,
    pub batches: u64,
    pub cursor: String,
    pub pending: i64,
    pub consumers: i64,
    /// Why the drain stopped before its end after earlier batches had moved
    /// entries (the deadline, a lost connection): those batches still count.
    pub stopped: Option<Failure>,
    /// A later batch was refused or found the stream or group gone.
    pub interrupted: Option<Interrupted>,
}

/// Why a drain ended early without failing, after earlier batches moved entries.
#[derive(Debug, Clone)]
pub enum Interrupted {
    /// The mode guard refused a later batch (the mode changed mid-run).
    Refused(String),
    /// The stream or the group went away (deleted, or an unsynced replica promoted).
    Absent(String),
}

/// The mode a refusal names (`… mode key 'k' is 'LIVE'; allowed modes: …`);
/// none when the key is missing or not a string.
pub fn mode_in_refusal(message: &str) -> Option<String> {
    let head = message.rsplit_once("; allowed modes")?.0;
    let mode = head.rsplit_once(" is '")?.1.strip_suffix('\'')?;
    Some(mode.to_string())
}

/// A module reply's map (RESP2 flat array) as `(key, value)` pairs.
pub fn pairs(value: Value) -> Result<Vec<(String, Value)>, Failure> {
    let Value::Array(items) = value else {
        return Err(failure::unexpected("expected a map"));
    };
    if !items.len().is_multiple_of(2) {
        return Err(failure::unexpected("odd map length"));
    }
    let mut items = items.into_iter();
    let mut out = Vec::new();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        out.push((text(&key)?, value));
    }
    Ok(out)
}

pub fn text(value: &Value) -> Result<String, Failure> {
    match value {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        _ => Err(failure::unexpected("expected a string")),
    }
}

pub fn int(value: &Value) -> Result<i64, Failure> {
    match value {
        Value::Int(n) => Ok(*n),
        _ => Err(failure::unexpected("expected an integer")),
    }
}

pub fn texts(value: &Value) -> Result<Vec<String>, Failure> {
    match value {
        Value::Array(items) => items.iter().map(text).collect(),
        _ => Err(failure::unexpected("expected an array")),
    }
}

pub fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Result<&'a Value, Failure> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .ok_or_else(|| failure::unexpected(&format!("no '{name}' in the reply")))
}

/// Calls a QUANTUM.* command; the mode guard's and a missing stream's answers
/// are outcomes, not failures.
fn call(con: &mut Link, cmd: &redis::Cmd, deadline: Instant) -> Result<Outcome<Value>, Failure> {
    match con.query(cmd, deadline) {
        Ok(value) => Ok(Outcome::Done(value)),
        Err(f) if error::has_code(&f.message, error::MODE) => Ok(Outcome::Refused(f.message)),
        Err(f)
            if f.message.starts_with(error::NOGROUP)
                || f.message.starts_with(error::NO_SUCH_KEY) =>
        {
            Ok(Outcome::Absent(f.message))
        }
        Err(f) => Err(f),
    }
}

fn recover_command(cli: &Cli, cursor: Option<&str>) -> redis::Cmd {
    let mut cmd = redis::cmd(command::RECOVER);
    cmd.arg(&cli.stream).arg(&cli.group);
    let names = [
        (keyword::TO, &cli.to),
        (keyword::QUARANTINE, &cli.quarantine),
        (keyword::MODEKEY, &cli.mode_key),
    ];
    for (keyword, value) in names {
        if let Some(value) = value {
            cmd.arg(keyword).arg(value);
        }
    }
    let numbers = [
        (keyword::MINIDLE, cli.min_idle),
        (keyword::COUNT, cli.count),
        (keyword::SCAN, cli.scan),
        (keyword::ZOMBIEIDLE, cli.zombie_idle),
        (keyword::DELETELIMIT, cli.delete_limit),
        (keyword::MAXDELIVERIES, cli.max_deliveries),
    ];
    for (keyword, value) in numbers {
        if let Some(value) = value {
            cmd.arg(keyword).arg(value);
        }
    }
    if let Some(cursor) = cursor {
        cmd.arg(keyword::CURSOR).arg(cursor);
    }
    if cli.dry_run {
        cmd.arg(keyword::DRYRUN);
    }
    cmd
}

/// Follows the cursor from `start` (none: the beginning of the PEL) until the
/// end of the PEL or `--max-batches`, recording each answered batch in
/// `progress`. A DRYRUN changes nothing, so following its cursor would only
/// repeat the same plan: it stops after one batch. After the cluster switched
/// the stream's owner (failover, migration) the drain starts again at the
/// beginning of the PEL: claims the old primary made but never replicated are
/// pending under their old owner again, behind the cursor. RECOVER never
/// re-claims what TO already holds, so the second pass is cheap; an entry it
/// claims again (its first claim was lost) is reported and counted once.
pub fn run(
    cli: &Cli,
    con: &mut Link,
    start: Option<String>,
    deadline: Instant,
    progress: &Progress,
) -> Result<Outcome<RunSummary>, Failure> {
    let lock = || progress.lock().unwrap_or_else(PoisonError::into_inner);
    let mut cursor = start;
    let mut restart = false;
    // After a restart: the IDs already reported, so a lost claim made again counts once.
    let mut reported: Option<HashSet<String>> = None;
    loop {
        let switches = con.owner_switches();
        let batches = lock().batches;
        let reply = match call(con, &recover_command(cli, cursor.as_deref()), deadline) {
            Err(f) if batches > 0 => {
                let mut summary = lock();
                summary.stopped = Some(f);
                return Ok(Outcome::Done(summary.clone()));
            }
            reply => reply?,
        };
        let fields = match reply.and_then(pairs)? {
            Outcome::Done(fields) => fields,
            // Refused or gone before anything happened: pass the outcome on.
            other if batches == 0 => return other.and_then(|_| Ok(RunSummary::default())),
            // After earlier batches changed things (the mode flipped mid-run):
            // report those, and why it stopped.
            Outcome::Refused(m) => {
                let mut summary = lock();
                summary.mode = mode_in_refusal(&m);
                summary.interrupted = Some(Interrupted::Refused(m));
                return Ok(Outcome::Done(summary.clone()));
            }
            Outcome::Absent(m) => {
                let mut summary = lock();
                summary.interrupted = Some(Interrupted::Absent(m));
                return Ok(Outcome::Done(summary.clone()));
            }
        };
        if con.owner_switches() != switches && batches > 0 && !restart {
            tracing::warn!(
                "the stream's owner changed: claims the old owner made may not have reached \
                 the new one, so the drain starts again at the beginning of the PEL"
            );
            restart = true;
        }
        let mut summary = lock();
        if restart {
            let ids = summary.claimed.iter().chain(&summary.quarantined);
            reported
                .get_or_insert_with(HashSet::new)
                .extend(ids.cloned());
        }
        add_batch(&mut summary, &fields, reported.as_ref())?;
        if summary.batches >= cli.max_batches || cli.dry_run {
            return Ok(Outcome::Done(summary.clone()));
        }
        if restart {
            restart = false;
            cursor = None;
        } else if summary.cursor == "0-0" {
            return Ok(Outcome::Done(summary.clone()));
        } else {
            cursor = Some(summary.cursor.clone());
        }
    }
}

/// Adds one batch's reply to the drain's sums; IDs in `reported` were already counted.
fn add_batch(
    summary: &mut RunSummary,
    fields: &[(String, Value)],
    reported: Option<&HashSet<String>>,
) -> Result<(), Failure> {
    let new = |ids: Vec<String>| {
        ids.into_iter()
            .filter(|id| reported.is_none_or(|seen| !seen.contains(id)))
    };
    summary.mode = match field(fields, key::MODE)? {
        Value::Nil => None,
        v => Some(text(v)?),
    };
    summary.dry_run = int(field(fields, key::DRY_RUN)?)? == 1;
    summary
        .claimed
        .extend(new(texts(field(fields, key::CLAIMED)?)?));
    summary
        .quarantined
        .extend(new(texts(field(fields, key::QUARANTINED)?)?));
    summary.dropped.extend(texts(field(fields, key::DROPPED)?)?);
    summary.deleted.extend(texts(field(fields, key::DELETED)?)?);
    // `kept-total` is nil when the batch skipped the consumer pass
    // (DELETELIMIT 0): the last batch that made one still holds.
    match fields
        .iter()
        .find(|(k, _)| k == key::KEPT_TOTAL)
        .map(|(_, v)| v)
    {
        Some(Value::Nil) => {}
        Some(total) => {
            summary.kept = texts(field(fields, key::KEPT)?)?;
            summary.kept_total = int(total)?;
        }
        // A module from before `kept-total`: its `kept` is the whole list.
        None => {
            summary.kept = texts(field(fields, key::KEPT)?)?;
            summary.kept_total = summary.kept.len() as i64;
        }
    }
    summary.scanned += int(field(fields, key::SCANNED)?)?;
    summary.cursor = text(field(fields, key::CURSOR)?)?;
    summary.pending = int(field(fields, key::PENDING)?)?;
    summary.consumers = int(field(fields, key::CONSUMERS)?)?;
    summary.batches += 1;
    Ok(())
}

pub fn status(
    cli: &Cli,
    con: &mut Link,
    deadline: Instant,
) -> Result<Outcome<Vec<(String, Value)>>, Failure> {
    let mut cmd = redis::cmd(command::STATUS);
    cmd.arg(&cli.stream).arg(&cli.group);
    if let Some(ms) = cli.zombie_idle {
        cmd.arg(keyword::ZOMBIEIDLE).arg(ms);
    }
    if let Some(limit) = cli.limit {
        cmd.arg(keyword::LIMIT).arg(limit);
    }
    if let Some(key) = &cli.mode_key {
        cmd.arg(keyword::MODEKEY).arg(key);
    }
    call(con, &cmd, deadline)?.and_then(pairs)
}

/// Why a retire stopped before the consumer was empty.
#[derive(Debug)]
pub enum Stopped {
    /// The mode guard refused a later call (exit 0, like any refusal).
    Refused(String),
    /// The deadline, a lost connection or another failure (its exit code).
    Failed(Failure),
}

/// The calls of one `retire`, summed.
#[derive(Debug, Default)]
pub struct RetireSummary {
    pub moved: Vec<String>,
    pub dropped: Vec<String>,
    /// Entries the consumer still held after the last answered call (none answered: None) ...
    pub remaining: Option<i64>,
    /// ... exactly, or at least that many (the module looks at most COUNT past its moves).
    pub remaining_exact: bool,
    pub deleted: bool,
    /// Answered calls.
    pub calls: u64,
    /// A call was sent but its reply was lost (timeout, dropped connection):
    /// it may have moved up to COUNT more entries and deleted the consumer.
    pub last_call_unknown: bool,
    pub stopped: Option<Stopped>,
}

fn retire_command(cli: &Cli, consumer: &str) -> redis::Cmd {
    let mut cmd = redis::cmd(command::RETIRE);
    cmd.arg(&cli.stream).arg(&cli.group).arg(consumer);
    if let Some(to) = &cli.to {
        cmd.arg(keyword::TO).arg(to);
    }
    if let Some(count) = cli.retire_count {
        cmd.arg(keyword::COUNT).arg(count);
    }
    if let Some(key) = &cli.mode_key {
        cmd.arg(keyword::MODEKEY).arg(key);
    }
    cmd
}

/// Calls QUANTUM.RETIRE until the consumer is empty (and so deleted) or the
/// deadline. Each call is atomic: stopping between calls leaves the rest of
/// the entries with the consumer, where the next retire finds them.
pub fn retire(
    cli: &Cli,
    con: &mut Link,
    deadline: Instant,
) -> Result<Outcome<RetireSummary>, Failure> {
    let consumer = cli.consumer.as_ref().ok_or_else(|| {
        Failure::new(
            failure::USAGE,
            "retire needs --consumer (or QUANTUM_CONSUMER)",
        )
    })?;
    let cmd = retire_command(cli, consumer);
    let mut summary = RetireSummary::default();
    loop {
        let outcome = match call(con, &cmd, deadline).and_then(|o| o.and_then(pairs)) {
            Ok(outcome) => outcome,
            // Nothing happened, or nothing that anyone knows of: a plain failure.
            Err(f) if summary.calls == 0 && !f.reply_lost => return Err(f),
            Err(f) => {
                summary.last_call_unknown = f.reply_lost;
                summary.stopped = Some(Stopped::Failed(f));
                return Ok(Outcome::Done(summary));
            }
        };
        let fields = match outcome {
            Outcome::Done(fields) => fields,
            // Refused or gone before anything happened: pass the outcome on.
            other if summary.calls == 0 => return other.and_then(|_| Ok(summary)),
            // After earlier calls moved entries: report those, and why it stopped.
            Outcome::Refused(m) => {
                summary.stopped = Some(Stopped::Refused(m));
                return Ok(Outcome::Done(summary));
            }
            Outcome::Absent(m) => {
                let gone = format!("the stream or group went away between calls: {m}");
                summary.stopped = Some(Stopped::Failed(failure::unexpected(&gone)));
                return Ok(Outcome::Done(summary));
            }
        };
        let moved = texts(field(&fields, key::MOVED)?)?;
        let dropped = texts(field(&fields, key::DROPPED)?)?;
        let progress = moved.len() + dropped.len();
        summary.moved.extend(moved);
        summary.dropped.extend(dropped);
        let remaining = int(field(&fields, key::REMAINING)?)?;
        summary.remaining = Some(remaining);
        // A module from before `remaining-exact` counted exactly.
        summary.remaining_exact = match fields.iter().find(|(k, _)| k == key::REMAINING_EXACT) {
            Some((_, exact)) => int(exact)? == 1,
            None => true,
        };
        summary.deleted = int(field(&fields, key::DELETED)?)? == 1;
        summary.calls += 1;
        if remaining == 0 {
            return Ok(Outcome::Done(summary));
        }
        if progress == 0 {
            return Err(failure::unexpected(
                "QUANTUM.RETIRE moved nothing yet reports entries remaining",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_mode_it_found() {
        let live = "MODE refused: mode key '{u}:mode' is 'LIVE'; allowed modes: TESTNET";
        assert_eq!(mode_in_refusal(live).as_deref(), Some("LIVE"));
        let missing = "MODE refused: mode key 'quantum:mode' is missing; allowed modes: TESTNET";
        assert_eq!(mode_in_refusal(missing), None);
    }
}
