//! `retire`: hands a stopping consumer's entries over in bounded QUANTUM.RETIRE
//! calls, then says what moved and, if it stopped short, where the rest is.

use super::Done;
use crate::cli::Cli;
use crate::commands::{self, Outcome, Progress, RetireSummary, Stopped};
use crate::connect::Link;
use crate::failure::{ExitCode, Failure};
use crate::report::{self, Details, RunResult};
use std::sync::PoisonError;
use std::time::Instant;
use tracing::{error, info, warn};

pub fn retire(
    cli: &Cli,
    con: &mut Link,
    deadline: Instant,
    progress: &Progress<RetireSummary>,
) -> Result<Done, Failure> {
    // Only a config table's own `dry-run = true` gets here (a run-wide one is
    // refused before any work): that target is refused, the others go on.
    if cli.dry_run {
        return Err(Failure::new(
            ExitCode::Usage,
            "dry-run = true in this target's config table and retire has no dry run: \
             nothing was retired here",
        ));
    }
    let summary = match commands::retire(cli, con, deadline, progress)? {
        Outcome::Done(summary) => summary,
        Outcome::Refused(m) => {
            return Ok(Done::skipped(
                RunResult::Refused,
                Some(&super::scope(cli)),
                m,
            ))
        }
        Outcome::Absent(m) => {
            let message = format!("nothing to retire: {m}");
            return Ok(Done::skipped(
                RunResult::Absent,
                Some(&super::scope(cli)),
                message,
            ));
        }
    };
    Ok(report(cli, summary))
}

/// The deadline passed while the worker still waited for Redis: what the
/// answered calls did, and that the call in flight may have run in full.
pub fn overrun(cli: &Cli, progress: &Progress<RetireSummary>, deadline: Failure) -> Done {
    let mut summary = progress
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    summary.last_call_unknown = true;
    summary.stopped = Some(Stopped::Failed(deadline));
    report(cli, summary)
}

/// Says on stderr what a retire did, and why it stopped short if it did.
fn report(cli: &Cli, summary: RetireSummary) -> Done {
    let consumer = cli.consumer.clone().unwrap_or_default();
    let shown = report::quoted(&consumer);
    let counts = summary_fields(&summary);
    let s = &summary;
    // One call that moved nothing and deleted nothing: no such consumer.
    let absent = s.calls == 1 && s.moved.is_empty() && s.dropped.is_empty() && !s.deleted;
    let (result, exit, why) = match &s.stopped {
        None if absent => {
            let scope = super::scope(cli);
            warn!("{scope}: consumer {shown} is not in the group: nothing to retire");
            (RunResult::Absent, ExitCode::Success, None)
        }
        None => (RunResult::Success, ExitCode::Success, None),
        Some(Stopped::Refused(m)) => (RunResult::Refused, ExitCode::Success, Some(m.clone())),
        Some(Stopped::Failed(f)) => (RunResult::Error, f.code, Some(f.message.clone())),
    };
    let mut fields = format!("consumer={shown} {counts}");
    let mut message = None;
    match why {
        None if absent => {}
        None => info!(
            "retired consumer {shown} in {}: {counts}",
            super::scope(cli)
        ),
        Some(why) => {
            let said = stop_message(cli, &shown, s, &why);
            let scope = super::scope(cli);
            if exit == ExitCode::Success {
                warn!("{scope}: {said}; {counts}");
            } else {
                error!("{scope}: {said}; {counts}");
            }
            fields.push_str(&format!(" stopped={}", report::quoted(&why)));
            message = Some(said);
        }
    }
    Done {
        result,
        exit,
        fields,
        error: None,
        message,
        details: Some(Details::Retire { consumer, summary }),
        gauges: None,
        counted: None,
        mode_known: None,
        switched_primary: None,
        replica_acks: None,
        observed: None,
    }
}

/// `moved=… dropped=… remaining=… deleted=… calls=…` for the log.
fn summary_fields(s: &RetireSummary) -> String {
    let mut fields = format!(
        "moved={} dropped={} remaining={} deleted={} calls={}",
        s.moved.len(),
        s.dropped.len(),
        s.remaining.map_or("unknown".into(), |n| n.to_string()),
        u8::from(s.deleted),
        s.calls
    );
    if !s.remaining_exact && s.remaining.is_some() {
        fields.push_str(" remaining_exact=0");
    }
    if s.last_call_unknown {
        fields.push_str(" last_call_unknown=1");
    }
    fields
}

/// Why a retire stopped short, and where the entries are as far as anyone can
/// know: after a lost reply the last call may have run in full.
fn stop_message(cli: &Cli, shown: &str, s: &RetireSummary, why: &str) -> String {
    let held = match (s.remaining, s.remaining_exact) {
        (Some(n), true) => format!("{n} entries"),
        (Some(n), false) => {
            format!("at least {n} entries (a call counts only one entry past what it moved)")
        }
        (None, _) => "an unknown number of entries".into(),
    };
    let rest = "nothing is lost: entries not moved stay pending under its name, \
                and the next retire continues";
    if !s.last_call_unknown && s.remaining == Some(0) {
        return format!(
            "retire of consumer {shown} stopped after {} calls ({why}): the last answered \
             call left it holding no entries, but that is not confirmed (nothing leaves the \
             group: what was not moved is pending under its name, and the next retire \
             continues)",
            s.calls
        );
    }
    if !s.last_call_unknown {
        return format!(
            "retire of consumer {shown} stopped after {} calls ({why}): it still holds {held} \
             (as of the last answered call), which stay pending under its name: nothing is \
             lost, the next retire continues",
            s.calls
        );
    }
    let count = cli
        .retire_count
        .map_or("COUNT (quantum.retire-count)".into(), |n| n.to_string());
    let to = cli
        .to
        .as_deref()
        .map_or("TO (quantum.target)".into(), report::quoted);
    let before = match s.calls {
        0 => "no call was answered".to_string(),
        n => format!("after {n} answered calls it held {held}"),
    };
    format!(
        "retire of consumer {shown} stopped ({why}); the outcome of the last call is unknown \
         (its reply was lost): it may have moved up to {count} more entries to {to} and, if \
         that emptied the consumer, deleted it; {before}; {rest}"
    )
}
