//! The three verbs as Redis calls: `run` follows QUANTUM.RECOVER's cursor in
//! batches and `retire` repeats QUANTUM.RETIRE until the consumer is empty
//! (each call its own atomic step); `status` is one call.

use crate::cli::Cli;
use crate::connect::Link;
use crate::failure::{self, ExitCode, Failure};
use crate::reply::{self, RecoverBatch, RetireStep, StatusReport};
use quantum_protocol::{command, error, keyword, CURSOR_AFTER_ALL, CURSOR_END};
use redis::Value;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// A verb's work so far (a drain's `RunSummary`, a retire's `RetireSummary`),
/// updated after each answered call: what the main thread reports if the
/// deadline passes while a call is still waiting for Redis.
pub type Progress<T> = Arc<Mutex<T>>;

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

/// The batches of one `run`, summed; its JSON is the `--json` output of `run`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunSummary {
    /// The cursor the previous run saved, where this one started.
    pub resumed_from: Option<String>,
    /// Every batch's IDs and names, `scanned` added up; mode, cursor, pending
    /// and consumers as the last batch said; `kept` as the last batch that
    /// looked at every consumer saw them (None: no batch did, `--delete-limit 0`).
    #[serde(flatten)]
    pub sums: RecoverBatch,
    /// After a Sentinel switch: IDs the earlier primary answered as
    /// claimed (quarantined) that the one the run ends on did not move again.
    /// Most reached it before the switch and are with TO there, but this run
    /// did not see that: `claimed` lists only what the final primary answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_before_switch: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined_before_switch: Option<Vec<String>>,
    pub batches: u64,
    /// Whether `kept` came from the last batch (it ran the consumer step after
    /// every move of the drain), so it says who still holds fresh entries.
    #[serde(skip)]
    pub kept_current: bool,
    /// The last call was sent but its reply never came (the deadline, a
    /// dropped connection): it may have moved entries not listed here.
    pub last_call_unknown: bool,
    /// Why the drain stopped before its end after earlier batches had moved
    /// entries (the deadline, a lost connection): those batches still count.
    #[serde(skip)]
    pub stopped: Option<Failure>,
    /// A later batch was refused or found the stream or group gone.
    #[serde(skip)]
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

/// Whether a RECOVER call runs its consumer step: XINFO CONSUMERS, a pass over
/// every consumer of the group (100,000 in a zombie-heavy one), to delete
/// zombies and name the kept. A drain needs it once, not on every batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConsumerStep {
    Run,
    /// DELETELIMIT 0: the module then answers `pending` and `consumers` from XINFO GROUPS.
    Skip,
}

fn recover_command(cli: &Cli, cursor: Option<&str>, step: ConsumerStep) -> redis::Cmd {
    let mut cmd = redis::cmd(command::RECOVER);
    cmd.arg(&cli.stream).arg(&cli.group);
    let names = [
        (keyword::TO, &cli.to),
        (keyword::QUARANTINE, &cli.quarantine),
        (keyword::DEADLETTER, &cli.dead_letter),
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
        (
            keyword::DELETELIMIT,
            match step {
                ConsumerStep::Run => cli.delete_limit,
                ConsumerStep::Skip => Some(0),
            },
        ),
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
/// repeat the same plan: it stops after one batch. Only the first batch runs
/// the consumer step; when later batches moved entries (which may leave a
/// zombie empty) and the drain reached the end of the PEL, one more call runs
/// it alone (CURSOR after every ID), so a drain of N batches pays for the
/// group's consumer list twice, not N times. After the cluster switched
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
    progress: &Progress<RunSummary>,
) -> Result<Outcome<RunSummary>, Failure> {
    let lock = || progress.lock().unwrap_or_else(PoisonError::into_inner);
    lock().resumed_from = start.clone();
    let mut cursor = start;
    let mut restart = false;
    // In a cluster, after a restart: the IDs already reported, so a lost
    // claim made again counts once (behind Sentinel they are set aside).
    let mut reported: Option<HashSet<String>> = None;
    // Entries moved by batches that skipped the consumer step.
    let mut moved_since_step = false;
    let mut finishing = false;
    loop {
        let switches = con.owner_switches();
        let batches = lock().batches;
        let step = match batches == 0 || finishing {
            true => ConsumerStep::Run,
            false => ConsumerStep::Skip,
        };
        let cmd = recover_command(cli, cursor.as_deref(), step);
        // A switch found by this call (the new primary then refused): what the
        // old one answered is set aside, as after a switch found before reporting.
        let settle = |summary: &mut RunSummary, con: &Link| {
            if con.is_sentinel() && con.owner_switches() != switches {
                summary.set_aside();
            }
            summary.settle_switch();
        };
        let stop = |f: Failure, con: &Link| {
            let mut summary = lock();
            settle(&mut summary, con);
            summary.last_call_unknown = f.reply_lost;
            summary.stopped = Some(f);
            Ok(Outcome::Done(summary.clone()))
        };
        // After earlier batches, or when the call may have run: report what is known.
        let reply = match call(con, &cmd, deadline) {
            Err(f) if batches > 0 || f.reply_lost => return stop(f, con),
            reply => reply?,
        };
        let batch = match reply.and_then(reply::parse) {
            Err(f) if batches > 0 => return stop(f, con),
            parsed => parsed?,
        };
        let batch = match batch {
            Outcome::Done(batch) => batch,
            // Refused or gone before anything happened: pass the outcome on.
            other if batches == 0 => {
                return other.and_then(|_: RecoverBatch| Ok(RunSummary::default()))
            }
            // After earlier batches changed things (the mode flipped mid-run):
            // report those, and why it stopped.
            Outcome::Refused(m) => {
                let mut summary = lock();
                settle(&mut summary, con);
                summary.sums.mode = mode_in_refusal(&m);
                summary.interrupted = Some(Interrupted::Refused(m));
                return Ok(Outcome::Done(summary.clone()));
            }
            Outcome::Absent(m) => {
                let mut summary = lock();
                settle(&mut summary, con);
                summary.interrupted = Some(Interrupted::Absent(m));
                return Ok(Outcome::Done(summary.clone()));
            }
        };
        if con.owner_switches() != switches && batches > 0 && !restart {
            tracing::warn!(
                "{}: the stream's owner changed: claims the old owner made may not have \
                 reached the new one, so the drain starts again at the beginning of the PEL",
                crate::verbs::scope(cli)
            );
            restart = true;
        }
        let mut summary = lock();
        if restart {
            match con.is_sentinel() {
                true => summary.set_aside(),
                false => {
                    let ids = summary.sums.claimed.iter().chain(&summary.sums.quarantined);
                    reported
                        .get_or_insert_with(HashSet::new)
                        .extend(ids.cloned());
                }
            }
        }
        let moved =
            !(batch.claimed.is_empty() && batch.quarantined.is_empty() && batch.dropped.is_empty());
        moved_since_step = (moved_since_step || moved) && step == ConsumerStep::Skip;
        add_batch(&mut summary, batch, reported.as_ref());
        summary.kept_current = step == ConsumerStep::Run;
        let at_max_batches = summary.batches >= cli.max_batches;
        let ends = if cli.dry_run || finishing {
            true
        } else if restart {
            at_max_batches
        } else if summary.sums.cursor == CURSOR_END {
            // Otherwise the closing consumer step follows, even after the last
            // batch --max-batches allows: it examines no PEL entry.
            !moved_since_step || cli.delete_limit == Some(0)
        } else {
            at_max_batches
        };
        if ends {
            drop(summary);
            let switched = match cli.dry_run || restart {
                true => Ok(false),
                false => switched_on_confirm(con, deadline),
            };
            let mut summary = lock();
            match switched {
                Ok(false) => {
                    summary.settle_switch();
                    return Ok(Outcome::Done(summary.clone()));
                }
                Err(f) => {
                    summary.settle_switch();
                    summary.stopped = Some(f);
                    return Ok(Outcome::Done(summary.clone()));
                }
                Ok(true) => {}
            }
            summary.set_aside();
            (finishing, moved_since_step, cursor) = (false, false, None);
            continue;
        }
        if restart {
            restart = false;
            cursor = None;
        } else if summary.sums.cursor == CURSOR_END {
            finishing = true;
            cursor = Some(CURSOR_AFTER_ALL.to_string());
        } else {
            cursor = Some(summary.sums.cursor.clone());
        }
    }
}

/// Whether the sentinels, asked before the verb reports, name another primary
/// than the one that answered (a graceful failover leaves the old one writable
/// for seconds, and Sentinel then drops what it was sent): the work goes on
/// there. An error when that cannot be confirmed by the deadline.
fn switched_on_confirm(con: &mut Link, deadline: Instant) -> Result<bool, Failure> {
    let switches = con.owner_switches();
    con.confirm_primary(deadline)?;
    let switched = con.owner_switches() != switches;
    if switched {
        tracing::warn!(
            "the sentinels name another primary than the one that answered: what it \
             answered may be lost, so the work starts again on the named one"
        );
    }
    Ok(switched)
}

impl RunSummary {
    /// After a Sentinel switch to another primary: what the earlier one answered as
    /// claimed or quarantined moves to `*_before_switch` (the new primary may
    /// not hold it), and `claimed`/`quarantined` start again with what the
    /// primary the run ends on answers.
    fn set_aside(&mut self) {
        let claimed = std::mem::take(&mut self.sums.claimed);
        let quarantined = std::mem::take(&mut self.sums.quarantined);
        self.claimed_before_switch
            .get_or_insert_with(Vec::new)
            .extend(claimed);
        self.quarantined_before_switch
            .get_or_insert_with(Vec::new)
            .extend(quarantined);
    }

    /// Before reporting: an ID the final primary moved too is listed there
    /// only, so each ID is reported once.
    pub fn settle_switch(&mut self) {
        // Without a switch there is nothing to settle, and a drain's IDs
        // (a million of them) are not worth hashing for nothing.
        if self.claimed_before_switch.is_none() && self.quarantined_before_switch.is_none() {
            return;
        }
        let here: HashSet<&String> = self
            .sums
            .claimed
            .iter()
            .chain(&self.sums.quarantined)
            .collect();
        for before in [
            &mut self.claimed_before_switch,
            &mut self.quarantined_before_switch,
        ]
        .into_iter()
        .flatten()
        {
            let mut seen = HashSet::new();
            before.retain(|id| !here.contains(id) && seen.insert(id.clone()));
        }
    }
}

/// Adds one batch to the drain's sums; IDs in `reported` were already counted.
fn add_batch(summary: &mut RunSummary, batch: RecoverBatch, reported: Option<&HashSet<String>>) {
    let new = |ids: Vec<String>| {
        ids.into_iter()
            .filter(|id| reported.is_none_or(|seen| !seen.contains(id)))
    };
    let sums = &mut summary.sums;
    sums.mode = batch.mode;
    sums.dry_run = batch.dry_run;
    sums.claimed.extend(new(batch.claimed));
    sums.quarantined.extend(new(batch.quarantined));
    sums.dropped.extend(batch.dropped);
    sums.deleted.extend(batch.deleted);
    if let Some(dead_letter) = batch.dead_letter {
        let sum = sums.dead_letter.get_or_insert_with(Default::default);
        sum.copied.extend(dead_letter.copied);
        sum.deferred.extend(dead_letter.deferred);
    }
    // A batch that skipped the consumer pass leaves the last one's list standing.
    if batch.kept.is_some() {
        sums.kept = batch.kept;
    }
    sums.scanned += batch.scanned;
    sums.cursor = batch.cursor;
    sums.pending = batch.pending;
    sums.consumers = batch.consumers;
    summary.batches += 1;
}

pub fn status(
    cli: &Cli,
    con: &mut Link,
    deadline: Instant,
) -> Result<Outcome<StatusReport>, Failure> {
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
    call(con, &cmd, deadline)?.and_then(reply::parse)
}

/// Why a retire stopped before the consumer was empty.
#[derive(Debug, Clone)]
pub enum Stopped {
    /// The mode guard refused a later call (exit 0, like any refusal).
    Refused(String),
    /// The deadline, a lost connection or another failure (its exit code).
    Failed(Failure),
}

/// The calls of one `retire`, summed; with the consumer's name its JSON is
/// the `--json` output of `retire`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RetireSummary {
    pub moved: Vec<String>,
    pub dropped: Vec<String>,
    /// Entries the consumer still held after the last answered call (none answered: None) ...
    pub remaining: Option<i64>,
    /// ... exactly, or at least that many (the module looks one entry further than it moved).
    pub remaining_exact: bool,
    pub deleted: bool,
    /// Answered calls.
    pub calls: u64,
    /// A call was sent but its reply was lost (timeout, dropped connection):
    /// it may have moved up to COUNT more entries and deleted the consumer.
    /// Behind Sentinel also when the call was then sent again to the new
    /// primary: the lost sending may have moved entries not listed here.
    pub last_call_unknown: bool,
    #[serde(skip)]
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
/// deadline, recording each answered call in `progress`. Each call is atomic:
/// stopping between calls leaves the rest of the entries with the consumer,
/// where the next retire finds them.
pub fn retire(
    cli: &Cli,
    con: &mut Link,
    deadline: Instant,
    progress: &Progress<RetireSummary>,
) -> Result<Outcome<RetireSummary>, Failure> {
    let consumer = cli.consumer.as_ref().ok_or_else(|| {
        Failure::new(
            ExitCode::Usage,
            "retire needs --consumer (or QUANTUM_CONSUMER)",
        )
    })?;
    let cmd = retire_command(cli, consumer);
    let lock = || progress.lock().unwrap_or_else(PoisonError::into_inner);
    let done = |summary: &mut RetireSummary, stopped| {
        summary.stopped = stopped;
        Ok(Outcome::Done(summary.clone()))
    };
    let mut seen = HashSet::new();
    loop {
        let lost = con.lost_replies();
        let calls = lock().calls;
        let outcome =
            match call(con, &cmd, deadline).and_then(|o| o.and_then(reply::parse::<RetireStep>)) {
                Ok(outcome) => outcome,
                // Nothing happened, or nothing that anyone knows of: a plain failure.
                Err(f) if calls == 0 && !f.reply_lost => return Err(f),
                Err(f) => {
                    let mut summary = lock();
                    summary.last_call_unknown |= f.reply_lost;
                    return done(&mut summary, Some(Stopped::Failed(f)));
                }
            };
        let step = match outcome {
            Outcome::Done(step) => step,
            // Refused or gone before anything happened: pass the outcome on.
            other if calls == 0 => return other.and_then(|_| Ok(lock().clone())),
            // After earlier calls moved entries: report those, and why it stopped.
            Outcome::Refused(m) => return done(&mut lock(), Some(Stopped::Refused(m))),
            Outcome::Absent(m) => {
                let gone = format!("the stream or group went away between calls: {m}");
                let stopped = Stopped::Failed(failure::unexpected(&gone));
                return done(&mut lock(), Some(stopped));
            }
        };
        let mut summary = lock();
        // A failover cut a reply off and the call was sent again: the lost one
        // may have moved entries this report does not list.
        summary.last_call_unknown |= con.lost_replies() != lost;
        let progress = step.moved.len() + step.dropped.len();
        // After a switch an entry the old primary moved (and lost) is moved again: once.
        let new = |ids: Vec<String>, seen: &mut HashSet<String>| {
            ids.into_iter()
                .filter(|id| seen.insert(id.clone()))
                .collect::<Vec<_>>()
        };
        summary.moved.extend(new(step.moved, &mut seen));
        summary.dropped.extend(new(step.dropped, &mut seen));
        summary.remaining = Some(step.remaining);
        summary.remaining_exact = step.remaining_exact;
        // The last call's word, on the primary that answered it.
        summary.deleted = step.deleted;
        summary.calls += 1;
        drop(summary);
        if step.remaining == 0 {
            match switched_on_confirm(con, deadline) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(f) => return done(&mut lock(), Some(Stopped::Failed(f))),
            }
            return done(&mut lock(), None);
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

    /// Review r14b F5: after a switch `claimed` holds what the final primary
    /// answered; the rest is listed apart, each ID once.
    #[test]
    fn after_a_switch_each_id_is_listed_once_on_its_side() {
        let mut summary = RunSummary::default();
        summary.sums.claimed = vec!["1-0".into(), "2-0".into()];
        summary.sums.quarantined = vec!["3-0".into()];
        summary.set_aside();
        summary.sums.claimed.push("2-0".into());
        summary.settle_switch();
        assert_eq!(summary.sums.claimed, ["2-0"]);
        assert_eq!(summary.claimed_before_switch, Some(vec!["1-0".to_string()]));
        assert_eq!(
            summary.quarantined_before_switch,
            Some(vec!["3-0".to_string()])
        );
        assert!(summary.sums.quarantined.is_empty());
    }

    #[test]
    fn a_refusal_names_the_mode_it_found() {
        let live = "MODE refused: mode key '{u}:mode' is 'LIVE'; allowed modes: TESTNET";
        assert_eq!(mode_in_refusal(live).as_deref(), Some("LIVE"));
        let missing = "MODE refused: mode key 'quantum:mode' is missing; allowed modes: TESTNET";
        assert_eq!(mode_in_refusal(missing), None);
    }
}
