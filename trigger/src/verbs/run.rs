//! `run` (the default verb): drains the PEL in batches from the saved cursor,
//! saves where it stopped, and says what moved.

use super::{Clock, Done};
use crate::cli::Cli;
use crate::commands::{self, Interrupted, Outcome, Progress, RunSummary};
use crate::connect::Link;
use crate::failure::Failure;
use crate::metrics::{Counts, Gauges};
use crate::report::{self, Details, RunResult};
use crate::state;
use quantum_protocol::CURSOR_END;
use std::sync::PoisonError;
use tracing::{error, info, warn};

pub fn run(
    cli: &Cli,
    con: &mut Link,
    clock: Clock,
    progress: &Progress<RunSummary>,
) -> Result<Done, Failure> {
    // A dry run changes nothing: it neither uses nor moves the saved cursor.
    let state_dir = cli.state_dir.as_deref().filter(|_| !cli.dry_run);
    let start = match state_dir.map(|dir| state::load(dir, &cli.stream, &cli.group)) {
        Some(Ok(cursor)) => cursor,
        Some(Err(why)) => {
            warn!(
                "{}: {why}: starting at the beginning of the PEL",
                super::scope(cli)
            );
            None
        }
        None => None,
    };
    let drained = commands::run(cli, con, start.clone(), clock.deadline, progress);
    let summary = match drained.map_err(|f| clock.blame_share(f))? {
        Outcome::Done(summary) => summary,
        Outcome::Refused(m) => {
            let known = mode_known_from_refusal(&m);
            let mut done = Done::skipped(RunResult::Refused, Some(&super::scope(cli)), m);
            done.mode_known = Some(known);
            // LIVE is when parked entries matter most: STATUS reads in any mode.
            if cli.metrics_file.is_some() {
                done.observed = super::observe(cli, con, clock.deadline);
            }
            return Ok(done);
        }
        Outcome::Absent(m) => {
            let message = format!("nothing to recover: {m}");
            return Ok(Done::skipped(
                RunResult::Absent,
                Some(&super::scope(cli)),
                message,
            ));
        }
    };
    let target = super::scope_of(&cli.stream, &cli.group);
    if let Some(interrupted) = &summary.interrupted {
        return Ok(interrupted_done(&target, summary.clone(), interrupted));
    }
    // No batch answered: no cursor to save (the saved one stays).
    let state_dir = state_dir.filter(|_| summary.batches > 0);
    let saved = match state_dir {
        Some(dir) => match state::save(dir, &cli.stream, &cli.group, &summary.sums.cursor) {
            Ok(path) => Some(path),
            Err(e) => {
                warn!(
                    "{target}: cannot save the cursor in {}: {e}; the next run starts at the \
                     beginning of the PEL",
                    dir.display()
                );
                None
            }
        },
        None => None,
    };
    if let Some(f) = summary.stopped.clone() {
        return Ok(stopped(cli, &target, &clock.blame_share(f), summary));
    }
    let more = where_it_continues(&summary, &start, saved.as_deref());
    let fields = log_drained(&summary, &target, clock, &more);
    let result = match summary.sums.dry_run {
        true => RunResult::DryRun,
        false => RunResult::Success,
    };
    let (gauges, counted, mode_known) = (
        gauges(&summary),
        counts(&summary),
        summary.sums.mode.is_some(),
    );
    // Moved, not cloned: a drain's summary lists every ID it moved.
    let mut done = Done::success(result, fields, Details::Run(summary));
    done.gauges = Some(gauges);
    done.counted = Some(counted);
    done.mode_known = Some(mode_known);
    // Only the metrics show it: without them, no extra pass over the consumers.
    // The drain's own replies cannot stand in for it: RECOVER answers
    // `pending`, `consumers` and the kept zombies, not the consumers by state
    // (live/zombie/stuck) nor what TO and QUARANTINE hold and their oldest
    // entry's age, which the parked gauges and their alerts need; and it must
    // be read after the drain, whose last call may have deleted consumers.
    if cli.metrics_file.is_some() {
        done.observed = super::observe(cli, con, clock.deadline);
    }
    Ok(done)
}

/// Says on stderr what a finished drain did (or would do); returns its log fields.
fn log_drained(summary: &RunSummary, target: &str, clock: Clock, more: &str) -> String {
    let fields = summary_fields(summary);
    let elapsed_ms = clock.started.elapsed().as_millis();
    let fields = if summary.sums.dry_run {
        let fields = format!("dry_run=1 {fields}");
        info!("dry run, nothing changed: would recover {target} {fields} elapsed_ms={elapsed_ms}");
        fields
    } else {
        info!("recovered {target} {fields} elapsed_ms={elapsed_ms}{more}");
        fields
    };
    let deleted = match summary.sums.dry_run {
        true => "would delete",
        false => "deleted",
    };
    for name in &summary.sums.deleted {
        info!("{deleted} consumer {} in {target}", report::quoted(name));
    }
    // Only a complete drain whose last call looked at every consumer knows why
    // one still holds entries; a run cut short simply did not reach them.
    if summary.kept_current && summary.sums.cursor == CURSOR_END && !summary.sums.dry_run {
        for name in summary.sums.kept.iter().flat_map(|k| &k.names) {
            warn!(
                "{target}: consumer {} is idle but still holds entries too fresh to move",
                report::quoted(name)
            );
        }
    }
    if let Some(deferred) = summary
        .sums
        .dead_letter
        .as_ref()
        .map(|d| &d.deferred)
        .filter(|d| !d.is_empty())
    {
        warn!(
            "{target}: {} poison entries stayed with their owner: their dead-letter copies \
             would pass maxmemory (the next run tries again)",
            deferred.len()
        );
    }
    fields
}

/// For the log: where this run started and where the next one starts.
fn where_it_continues(
    summary: &RunSummary,
    start: &Option<String>,
    saved: Option<&std::path::Path>,
) -> String {
    let mut more = match start {
        Some(cursor) => format!(" (continued from cursor {cursor}, saved by the previous run)"),
        None => String::new(),
    };
    if summary.sums.cursor != "0-0" {
        more.push_str(&match saved {
            Some(path) => format!(
                " (stopped at cursor {} after --max-batches; saved in {}: the next run \
                 continues from it)",
                summary.sums.cursor,
                path.display()
            ),
            None => format!(
                " (stopped at cursor {} after --max-batches; without --state-dir the next run \
                 starts again at the beginning of the PEL)",
                summary.sums.cursor
            ),
        });
    }
    more
}

/// A drain that failed after earlier batches moved entries: those count.
fn failed_after(f: &Failure, summary: RunSummary) -> Done {
    Done {
        result: RunResult::Error,
        exit: f.code,
        fields: format!(
            "{} error={}",
            summary_fields(&summary),
            report::quoted(&f.message)
        ),
        error: Some(f.message.clone()),
        message: None,
        gauges: Some(gauges(&summary)),
        counted: Some(counts(&summary)),
        mode_known: Some(true),
        observed: None,
        details: Some(Details::Run(summary)),
        switched_primary: None,
        replica_acks: None,
    }
}

/// A drain that a later batch found refused (the mode changed) or without its
/// stream or group: the result says so at WARN, with what earlier batches did.
/// The cursor is not saved: the next run starts at the beginning of the PEL.
fn interrupted_done(target: &str, summary: RunSummary, interrupted: &Interrupted) -> Done {
    let (result, message) = match interrupted {
        Interrupted::Refused(m) => (RunResult::Refused, m.clone()),
        Interrupted::Absent(m) => (RunResult::Absent, format!("nothing more to recover: {m}")),
    };
    let fields = summary_fields(&summary);
    warn!(
        "{message}; batch {} stopped the drain, the earlier ones recovered {target} {fields}",
        summary.batches + 1,
    );
    let fields = format!("{fields} {}={}", result.as_str(), report::quoted(&message));
    let mut done = Done::success(result, fields, Details::Run(summary.clone()));
    done.message = Some(message);
    done.counted = Some(counts(&summary));
    done.mode_known = match interrupted {
        Interrupted::Refused(m) => Some(mode_known_from_refusal(m)),
        Interrupted::Absent(_) => Some(summary.sums.mode.is_some()),
    };
    done
}

/// The deadline passed while the worker still waited for Redis: what the
/// answered batches did, and that the last call's outcome is unknown.
pub fn overrun(
    cli: &Cli,
    progress: &Progress<RunSummary>,
    deadline: Failure,
    target: &str,
) -> Done {
    let mut summary = progress
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    summary.settle_switch();
    summary.last_call_unknown = true;
    stopped(cli, target, &deadline, summary)
}

/// A drain stopped by `f` (the deadline, a lost connection, an unexpected
/// reply): what the answered batches did, and whether the last call may have
/// moved more.
fn stopped(cli: &Cli, target: &str, f: &Failure, summary: RunSummary) -> Done {
    let f = match summary.last_call_unknown {
        true => f.clone().reworded(format!(
            "{}; the outcome of the last call is unknown (its reply was lost): it may have \
             moved up to {} more entries to {}, not lost, and not counted here",
            f.message,
            cli.count
                .map_or("COUNT (quantum.count)".into(), |n| n.to_string()),
            cli.to
                .as_deref()
                .map_or("TO (quantum.target)".into(), report::quoted),
        )),
        false => f.clone(),
    };
    if summary.batches == 0 {
        error!("{target}: {}", f.message);
        return Done::failed(&f);
    }
    let fields = summary_fields(&summary);
    error!(
        "stopped early, after recovering {target} {fields}: {}",
        f.message
    );
    failed_after(&f, summary)
}

/// Whether the mode guard's refusal says the mode key holds a mode (LIVE, a
/// typo of TESTNET) rather than nothing (missing, misspelled --mode-key) or
/// something that is not a string: the module's words (module/src/mode.rs).
fn mode_known_from_refusal(message: &str) -> bool {
    !(message.contains("' is missing; allowed modes")
        || message.contains(", not a string; allowed modes"))
}

/// What a drain moved, for the counters; a dry run moved nothing.
fn counts(s: &RunSummary) -> Counts {
    if s.sums.dry_run {
        return Counts::default();
    }
    // What an earlier primary moved before a switch was moved too (once).
    let before = |ids: &Option<Vec<String>>| ids.as_ref().map_or(0, Vec::len) as u64;
    Counts {
        claimed: s.sums.claimed.len() as u64 + before(&s.claimed_before_switch),
        quarantined: s.sums.quarantined.len() as u64 + before(&s.quarantined_before_switch),
        dropped: s.sums.dropped.len() as u64,
        deleted: s.sums.deleted.len() as u64,
    }
}

fn gauges(s: &RunSummary) -> Gauges {
    Gauges {
        pending: s.sums.pending,
        consumers: s.sums.consumers,
    }
}

fn summary_fields(s: &RunSummary) -> String {
    // Only when a dead-letter stream was in use: the line is unchanged without one.
    let dead_letter = match &s.sums.dead_letter {
        Some(d) => format!(
            " dead_lettered={} dead_letter_deferred={}",
            d.copied.len(),
            d.deferred.len()
        ),
        None => String::new(),
    };
    // Only after a switch: the line is unchanged without one.
    let before_switch = match (&s.claimed_before_switch, &s.quarantined_before_switch) {
        (Some(claimed), Some(quarantined)) => format!(
            " claimed_before_switch={} quarantined_before_switch={}",
            claimed.len(),
            quarantined.len()
        ),
        _ => String::new(),
    };
    format!(
        "claimed={} quarantined={}{before_switch}{dead_letter} dropped={} deleted={} kept={} \
         batches={}",
        s.sums.claimed.len(),
        s.sums.quarantined.len(),
        s.sums.dropped.len(),
        s.sums.deleted.len(),
        s.sums
            .kept
            .as_ref()
            .map_or("unknown".into(), |k| k.total.to_string()),
        s.batches
    )
}
