//! `check`: one QUANTUM.STATUS per target (read-only, any mode), judged by
//! check.rs into one monitoring-plugins line and its exit code 0/1/2/3.
//! Nothing here is a sysexits code: Redis unreachable or the module missing
//! is UNKNOWN (3), as monitoring systems expect.

use super::{Done, Entry};
use crate::check::{self, Finding, Seen, TargetFinding, Thresholds};
use crate::cli::Cli;
use crate::commands::{self, Outcome};
use crate::connect::Link;
use crate::console;
use crate::failure::{ExitCode, Failure};
use crate::report::RunResult;
use crate::startup::Setup;
use std::time::Instant;

/// Asks one target's group; its answer rides in `Done::observed`.
pub fn check(cli: &Cli, con: &mut Link, deadline: Instant) -> Result<Done, Failure> {
    let mut one = cli.clone();
    one.limit = Some(1);
    let done = match commands::status(&one, con, deadline)? {
        Outcome::Done(report) => Done {
            result: RunResult::Success,
            exit: ExitCode::Success,
            fields: format!("pending={}", report.pending),
            error: None,
            message: None,
            details: None,
            gauges: None,
            counted: None,
            mode_known: None,
            observed: Some(report),
            switched_primary: None,
            replica_acks: None,
        },
        Outcome::Refused(m) => Done::skipped(RunResult::Refused, Some(&super::scope(cli)), m),
        Outcome::Absent(m) => Done::skipped(RunResult::Absent, Some(&super::scope(cli)), m),
    };
    Ok(done)
}

/// What one entry of the run says about its target.
fn finding(done: &Done) -> Finding {
    if let Some(report) = &done.observed {
        return match &report.parked {
            Some(parked) => Finding::Seen(Seen {
                pending: report.pending.max(0) as u64,
                recovered: parked.target.pending.max(0) as u64,
                recovered_oldest_idle_ms: parked.target.oldest_idle_ms.unwrap_or(0).max(0) as u64,
                quarantined: parked.quarantine.pending.max(0) as u64,
            }),
            None => Finding::Unreachable(
                "the loaded quantum module is older than check: its QUANTUM.STATUS has no \
                 parked field"
                    .into(),
            ),
        };
    }
    match (done.result, done.exit) {
        (RunResult::Absent, _) => Finding::Absent,
        (_, ExitCode::ModuleMissing) => Finding::ModuleMissing,
        _ => Finding::Unreachable(
            done.error
                .clone()
                .or_else(|| done.message.clone())
                .unwrap_or_default(),
        ),
    }
}

/// Prints the one line and returns the check's exit code (0 OK, 1 WARNING,
/// 2 CRITICAL, 3 UNKNOWN).
pub fn report(setup: &Setup, entries: Vec<Entry>) -> ExitCode {
    let cli = &setup.cli;
    let limits = match Thresholds::new(cli.parked_warning, cli.parked_critical) {
        Ok(limits) => limits,
        Err(why) => {
            console::out(&format!("QUANTUM-STREAM-RECOVER UNKNOWN - {why}\n"));
            return ExitCode::CheckUnknown;
        }
    };
    let findings: Vec<TargetFinding> = entries
        .iter()
        .map(|entry| {
            let (stream, group) = entry.target.clone().unwrap_or_default();
            TargetFinding {
                stream,
                group,
                scope: entry.target.is_none().then(|| entry.scope.clone()),
                finding: finding(&entry.done),
            }
        })
        .collect();
    let result = check::evaluate(&findings, &limits);
    console::out(&format!("{}\n", result.line));
    match result.health.exit_code() {
        0 => ExitCode::Success,
        1 => ExitCode::ChecksFailed,
        2 => ExitCode::CheckCritical,
        _ => ExitCode::CheckUnknown,
    }
}
