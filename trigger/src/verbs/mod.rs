//! The verbs that talk to the module: `run`, `status`, `retire` and `check`
//! (`doctor` is doctor/). One connection per run; the targets (one, or those
//! of `--config`, targets.rs) run one after another on a worker thread, each
//! with the time left but a reserve for those still waiting (`target_deadline`),
//! and each says what happened as a `Done`;
//! report.rs turns those into the log lines, the metrics and the JSON, and
//! check.rs into the check's one line.

mod check;
mod retire;
mod run;
mod status;

use crate::cli::{Cli, Verb};
use crate::commands::{Progress, RetireSummary, RunSummary};
use crate::config_file::Target;
use crate::connect::{self, Link};
use crate::failure::{ExitCode, Failure};
use crate::metrics::{Counts, Gauges};
use crate::reply::StatusReport;
use crate::report::{self, Details, RunResult};
use crate::sentinel::ReplicaAcks;
use crate::startup::Setup;
use crate::targets::{self, Selection};
use quantum_protocol::error;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tracing::{error, warn};

/// When the run started and when it must end.
#[derive(Clone, Copy)]
pub struct Clock {
    /// (A target's own clock: when the target started.)
    pub started: Instant,
    /// `started` as a unix time, for the metrics.
    pub started_unix_s: f64,
    pub deadline: Instant,
    /// The run's own deadline (`--deadline` from the start): later than
    /// `deadline` when a target's share ends first.
    pub run_deadline: Instant,
}

impl Clock {
    /// `f` stopped a target whose share of the deadline, not the run's,
    /// ran out: said so (and how long the share was) rather than blame Redis.
    fn blame_share(&self, f: Failure) -> Failure {
        let share_over = self.deadline < self.run_deadline && Instant::now() >= self.deadline;
        if f.code != ExitCode::Unavailable || !share_over {
            return f;
        }
        let cause = match f.message.strip_prefix("Redis did not answer in time: ") {
            Some(why) => format!(" while its call waited for a reply ({why})"),
            None if f.message.starts_with("deadline reached") => String::new(),
            None => format!(" ({})", f.message),
        };
        let had = self.deadline.saturating_duration_since(self.started);
        let message = format!(
            "this target's share of the deadline ran out{cause}: it had {} ms, the rest of \
             the run's time being kept for the targets after it",
            had.as_millis()
        );
        f.reworded(message)
    }
}

/// What a verb hands back for the log file, the metrics and the JSON.
pub struct Done {
    pub result: RunResult,
    pub exit: ExitCode,
    /// `key=value` fields for the log-file line.
    pub fields: String,
    /// Why it failed (the JSON's `error`) ...
    pub error: Option<String>,
    /// ... or why it did nothing (`message`).
    pub message: Option<String>,
    /// The verb's own part of the JSON.
    pub details: Option<Details>,
    /// The group's pending entries and consumers afterwards (run only).
    pub gauges: Option<Gauges>,
    /// What this run moved when it reached the module: the metrics' `_total`
    /// counters add it up.
    pub counted: Option<Counts>,
    /// Whether the mode key held a mode, when the run could tell (run only).
    pub mode_known: Option<bool>,
    /// The primary a Sentinel failover switched the run to, if one did.
    pub switched_primary: Option<String>,
    /// Behind Sentinel: how many replicas acknowledged the writes (WAIT) before it reported.
    pub replica_acks: Option<ReplicaAcks>,
    /// QUANTUM.STATUS after the run (run: the parked and per-state gauges;
    /// check: what it judges).
    pub observed: Option<StatusReport>,
}

impl Done {
    /// A verb that did what it was asked; `details` is its JSON.
    fn success(result: RunResult, fields: String, details: Details) -> Done {
        Done {
            result,
            exit: ExitCode::Success,
            fields,
            error: None,
            message: None,
            details: Some(details),
            gauges: None,
            counted: None,
            mode_known: None,
            switched_primary: None,
            replica_acks: None,
            observed: None,
        }
    }

    /// The log line and the JSON name the primary a Sentinel failover switched the run to.
    fn switched(mut self, primary: Option<String>) -> Done {
        if let Some(primary) = &primary {
            self.fields
                .push_str(&format!(" switched_primary={primary}"));
        }
        self.switched_primary = primary;
        self
    }

    /// The log line and the JSON say how many replicas acknowledged the writes.
    fn acked(mut self, acks: Option<ReplicaAcks>) -> Done {
        if let Some(acks) = &acks {
            self.fields.push_str(&format!(
                " replicas_acked={} replicas={}",
                acks.acked, acks.replicas
            ));
        }
        self.replica_acks = acks;
        self
    }

    /// A failure before anything happened.
    fn failed(f: &Failure) -> Done {
        Done {
            result: RunResult::Error,
            exit: f.code,
            fields: format!("error={}", report::quoted(&f.message)),
            error: Some(f.message.clone()),
            message: None,
            details: None,
            gauges: None,
            counted: None,
            mode_known: None,
            switched_primary: None,
            replica_acks: None,
            observed: None,
        }
    }

    /// A refusal or a missing stream or group: not a failure (exit 0), said
    /// at WARN after `scope` (the target's `stream=… group=…`, none when the
    /// message names it); nothing moved.
    fn skipped(result: RunResult, scope: Option<&str>, message: String) -> Done {
        match scope {
            Some(scope) => warn!("{scope}: {message}"),
            None => warn!("{message}"),
        }
        Done {
            result,
            exit: ExitCode::Success,
            fields: format!("{}={}", result.as_str(), report::quoted(&message)),
            error: None,
            message: Some(message),
            details: None,
            gauges: None,
            counted: Some(Counts::default()),
            mode_known: None,
            switched_primary: None,
            replica_acks: None,
            observed: None,
        }
    }
}

/// How long past the deadline the main thread waits for the worker's own
/// answer (the worker's calls end at the deadline themselves when the network
/// lets them) before it reports without it.
const DEADLINE_GRACE: Duration = Duration::from_millis(300);

/// One part of the run's report: a target, or what concerns none (finding
/// the targets, connecting).
pub struct Entry {
    /// The target's stream and group.
    pub target: Option<(String, String)>,
    /// Log fields naming it: `stream=… group=…`, `discover="…"`, `config="…"`.
    pub scope: String,
    pub done: Done,
    /// How long the target took (what concerns no target: the run so far).
    pub elapsed: Duration,
}

/// The targets in the order they run (stream, group), what went wrong
/// finding them, and whether the list is complete (no discovery failed).
type Found = (Vec<(String, String)>, Vec<Entry>, bool);

/// What a target's verb has done so far, for the report if the deadline
/// passes before the verb's own answer: each verb keeps its own shape.
#[derive(Clone)]
enum Partial {
    Run(Progress<RunSummary>),
    Retire(Progress<RetireSummary>),
    /// One call (status, check), or connecting and finding the targets:
    /// nothing to report but the deadline.
    DeadlineOnly,
}

impl Partial {
    fn new(verb: Verb) -> Partial {
        match verb {
            Verb::Run => Partial::Run(Progress::default()),
            Verb::Retire => Partial::Retire(Progress::default()),
            _ => Partial::DeadlineOnly,
        }
    }

    /// The report of a verb the deadline overran while a call was in flight.
    fn overrun(&self, cli: &Cli, scope: &str) -> Done {
        let f = Failure::new(
            ExitCode::Unavailable,
            format!(
                "deadline reached: Redis did not answer (in full) within --deadline {}",
                humantime::format_duration(cli.deadline)
            ),
        );
        match self {
            Partial::Run(progress) => run::overrun(cli, progress, f, scope),
            Partial::Retire(progress) => retire::overrun(cli, progress, f),
            Partial::DeadlineOnly => {
                error!("{scope}: {}", f.message);
                Done::failed(&f)
            }
        }
    }
}

/// What the worker tells the main thread, as it happens.
enum Event {
    Targets(Found),
    Started(usize, Partial, Instant),
    Finished(usize, Done, Duration),
    /// Nothing could run (no connection, too many targets).
    Failed(Done),
}

/// Runs `verb` (not doctor) over every target and reports it; returns the exit code.
///
/// The work runs on a worker thread and this one waits for it at most until
/// the deadline: a node that answers one byte at a time, a hung TLS handshake
/// or a slow DNS lookup cannot hold the run (and the trading service's
/// ExecStartPre) longer. Returning from main ends the worker. The worker
/// sends each target's result as it finishes; a target still running at the
/// deadline is reported from its progress, those not started as not started
/// (both 75).
pub fn run(setup: Setup, verb: Verb, clock: Clock) -> ExitCode {
    let setup = Arc::new(setup);
    let (tx, rx) = mpsc::channel();
    {
        let setup = Arc::clone(&setup);
        std::thread::spawn(move || work(&setup, verb, clock, &tx));
    }
    let until = clock.deadline + DEADLINE_GRACE;
    let mut known: Option<Found> = None;
    let mut results: Vec<Option<(Done, Duration)>> = Vec::new();
    let mut current: Option<(usize, Partial, Instant)> = None;
    let mut failed = None;
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Event::Targets(found)) => {
                results = found.0.iter().map(|_| None).collect();
                known = Some(found);
            }
            Ok(Event::Started(i, partial, began)) => current = Some((i, partial, began)),
            Ok(Event::Finished(i, done, elapsed)) => results[i] = Some((done, elapsed)),
            Ok(Event::Failed(done)) => {
                failed = Some(done);
                break;
            }
            Err(_) => break,
        }
    }
    let cli = &setup.cli;
    let (entries, complete) = match (known, failed) {
        (Some((targets, problems, complete)), None) => {
            let mut entries = problems;
            let mut unstarted = Vec::new();
            for (i, ((stream, group), done)) in targets.into_iter().zip(results).enumerate() {
                let scope = scope_of(&stream, &group);
                let (done, elapsed) = done.unwrap_or_else(|| match &current {
                    Some((at, partial, began)) if *at == i => {
                        (partial.overrun(cli, &scope), began.elapsed())
                    }
                    _ => {
                        unstarted.push(i);
                        (not_started(), Duration::ZERO)
                    }
                });
                entries.push(Entry {
                    target: Some((stream, group)),
                    scope,
                    done,
                    elapsed,
                });
            }
            say_not_started(&entries, &unstarted);
            (entries, complete)
        }
        (_, failed) => {
            let scope = run_scope(&setup);
            // Connecting or finding the targets took the whole deadline: no
            // verb's call was sent.
            let done = failed.unwrap_or_else(|| Partial::DeadlineOnly.overrun(cli, &scope));
            let target = match setup.selection {
                Selection::One => Some((cli.stream.clone(), cli.group.clone())),
                Selection::File(..) => None,
            };
            (
                vec![Entry {
                    target,
                    scope,
                    done,
                    elapsed: clock.started.elapsed(),
                }],
                false,
            )
        }
    };
    match verb {
        Verb::Check => check::report(&setup, entries),
        _ => report::finish(&setup, verb, clock, entries, complete),
    }
}

/// A target the deadline came before (said by `say_not_started`).
fn not_started() -> Done {
    Done::failed(&Failure::new(
        ExitCode::Unavailable,
        "deadline reached before this target's turn: not started, nothing changed",
    ))
}

/// One line on stderr for every target not started (of `entries`, at the
/// indexes `unstarted` of the targets after the `problems`' entries): with
/// 100,000 targets a line each would hold the process past the deadline.
fn say_not_started(entries: &[Entry], unstarted: &[usize]) {
    let problems = entries.iter().take_while(|e| e.target.is_none()).count();
    let scopes: Vec<&str> = unstarted
        .iter()
        .filter_map(|i| entries.get(problems + i))
        .map(|e| e.scope.as_str())
        .collect();
    match scopes.as_slice() {
        [] => {}
        [one] => error!("{one}: {}", not_started().error.unwrap_or_default()),
        [first, .., last] => error!(
            "{} targets not started, from {first} to {last}: deadline reached before their \
             turn, nothing changed",
            scopes.len()
        ),
    }
}

/// The target's stream and group as log fields, for what is said about it.
pub fn scope(cli: &Cli) -> String {
    scope_of(&cli.stream, &cli.group)
}

/// The stream and group a verb works on, as log fields.
pub fn scope_of(stream: &str, group: &str) -> String {
    format!(
        "stream={} group={}",
        report::field_value(stream),
        report::field_value(group)
    )
}

/// Log fields for what concerns the whole run: its one target, or the config file.
fn run_scope(setup: &Setup) -> String {
    match &setup.selection {
        Selection::One => scope_of(&setup.cli.stream, &setup.cli.group),
        Selection::File(_, path) => {
            format!("config={}", report::field_value(&path.to_string_lossy()))
        }
    }
}

/// Connects, finds the targets and runs the verb on each (on the worker thread).
fn work(setup: &Setup, verb: Verb, clock: Clock, tx: &mpsc::Sender<Event>) {
    let cli = &setup.cli;
    let fail = |f: Failure| {
        error!("{}: {}", run_scope(setup), f.message);
        let _ = tx.send(Event::Failed(Done::failed(&f)));
    };
    let link = |deadline| {
        connect::connect(
            &cli.url,
            cli.cluster,
            cli.password_file.as_deref(),
            cli.sentinel_password_file.as_deref(),
            deadline,
        )
    };
    let mut con = match link(clock.deadline) {
        Ok(con) => con,
        Err(f) => return fail(f),
    };
    let (targets, problems, complete) = match &setup.selection {
        Selection::One => {
            let target = Target {
                stream: cli.stream.clone(),
                group: cli.group.clone(),
                options: Default::default(),
                pinned: Default::default(),
            };
            (vec![target], Vec::new(), true)
        }
        Selection::File(file, _) => match targets::resolve(&mut con, file, clock.deadline) {
            Ok(resolved) => {
                let complete = resolved.problems.is_empty();
                let problems = resolved
                    .problems
                    .into_iter()
                    .map(|p| {
                        // A stream the file names that does not exist: absent, as
                        // for a target with its group; anything else failed.
                        let done = match p.failure.message.starts_with(error::NO_SUCH_KEY) {
                            true => Done::skipped(
                                RunResult::Absent,
                                None,
                                format!("{}: {}", p.scope, p.failure.message),
                            ),
                            false => {
                                error!("{}: {}", p.scope, p.failure.message);
                                Done::failed(&p.failure)
                            }
                        };
                        Entry {
                            target: None,
                            scope: p.scope,
                            done,
                            elapsed: clock.started.elapsed(),
                        }
                    })
                    .collect();
                (resolved.targets, problems, complete)
            }
            Err(f) => return fail(f),
        },
    };
    let names = targets
        .iter()
        .map(|t| (t.stream.clone(), t.group.clone()))
        .collect();
    if tx
        .send(Event::Targets((names, problems, complete)))
        .is_err()
    {
        return;
    }
    let count = targets.len();
    let mut spent = Duration::ZERO;
    for (i, target) in targets.iter().enumerate() {
        let began = Instant::now();
        if began >= clock.deadline {
            // The main thread reports this target and the rest as not started.
            return;
        }
        let mine = Clock {
            started: began,
            deadline: target_deadline(
                clock.deadline,
                count - i - 1,
                (i > 0).then(|| spent / i as u32),
            ),
            ..clock
        };
        let target_cli = match setup.selection {
            Selection::One => cli.clone(),
            Selection::File(..) => targets::for_target(cli, target, &setup.explicit),
        };
        let partial = Partial::new(verb);
        let _ = tx.send(Event::Started(i, partial.clone(), began));
        let scope = scope_of(&target.stream, &target.group);
        let done = one_target(&target_cli, verb, &mut con, mine, &partial, &scope);
        // A call cut short may still get its reply: later targets get a fresh connection.
        let reconnect =
            done.exit == ExitCode::Unavailable && i + 1 < count && Instant::now() < clock.deadline;
        spent += began.elapsed();
        if tx.send(Event::Finished(i, done, began.elapsed())).is_err() {
            return;
        }
        if reconnect {
            match link(clock.deadline) {
                Ok(fresh) => con = fresh,
                Err(f) => warn!("reconnecting for the next targets: {}", f.message),
            }
        }
    }
}

/// The time kept for each target still waiting before any target was
/// measured: a target with nothing to move takes well under a millisecond.
pub const RESERVE_UNMEASURED: Duration = Duration::from_millis(1);

/// The least time a target gets (when the run has that much left): a cheap
/// call must not be cut by a timeout of a fraction of a millisecond.
pub const TARGET_FLOOR: Duration = Duration::from_millis(50);

/// When the target about to run must stop: the time left minus a reserve for
/// each of the `waiting` targets after it. The reserve is twice the mean time
/// of the targets done so far (`mean_spent`, none yet: `RESERVE_UNMEASURED`),
/// at most an equal share of the time left (the old hard split, never worse),
/// together at least `TARGET_FLOOR`; and the target gets at least
/// `TARGET_FLOOR` of what is left. So a slow
/// target may use what cheap ones leave, and the run still ends by the
/// deadline; a target left with no time is reported as not started.
fn target_deadline(deadline: Instant, waiting: usize, mean_spent: Option<Duration>) -> Instant {
    let now = Instant::now();
    let left = deadline.saturating_duration_since(now);
    let equal_share = left / (waiting as u32 + 1);
    let reserve = mean_spent
        .map_or(RESERVE_UNMEASURED, |mean| mean * 2)
        .min(equal_share);
    // The targets waiting together keep at least one target's floor: the
    // next one may need a fresh connection after this one is cut.
    let kept = match waiting {
        0 => Duration::ZERO,
        _ => (reserve * waiting as u32).max(TARGET_FLOOR.min(left)),
    };
    (deadline - kept).max(now + left.min(TARGET_FLOOR))
}

/// QUANTUM.STATUS after a run, for the per-state and parked gauges (LIMIT 1:
/// the counts and `parked` cover every consumer anyway); none when it fails,
/// which is said but does not fail a run that did its work.
fn observe(cli: &Cli, con: &mut Link, deadline: Instant) -> Option<StatusReport> {
    let mut one = cli.clone();
    one.limit = Some(1);
    match crate::commands::status(&one, con, deadline) {
        Ok(crate::commands::Outcome::Done(report)) => Some(report),
        Ok(_) => None,
        Err(f) => {
            warn!(
                "{}: no parked or per-state gauges this run: QUANTUM.STATUS: {}",
                scope(cli),
                f.message
            );
            None
        }
    }
}

/// Runs the verb on one target with its own share of the deadline.
fn one_target(
    cli: &Cli,
    verb: Verb,
    con: &mut Link,
    clock: Clock,
    partial: &Partial,
    scope: &str,
) -> Done {
    let deadline = clock.deadline;
    let done = match (verb, partial) {
        (Verb::Run, Partial::Run(progress)) => run::run(cli, con, clock, progress),
        (Verb::Status, _) => status::status(cli, con, deadline),
        (Verb::Retire, Partial::Retire(progress)) => retire::retire(cli, con, deadline, progress),
        (Verb::Check, _) => check::check(cli, con, deadline),
        _ => unreachable!("doctor returns before connecting; Partial::new follows the verb"),
    };
    let done = done.map(|done| {
        done.switched(con.switched_primary())
            .acked(con.take_replica_acks())
    });
    done.unwrap_or_else(|f| {
        let f = clock.blame_share(f);
        error!("{scope}: {}", f.message);
        Done::failed(&f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A retire the deadline overran keeps retire's report: the consumer,
    /// what the answered calls did, and that the call in flight may have run.
    #[test]
    fn a_retire_overrun_at_the_deadline_keeps_the_retire_report() {
        let cli = Cli::try_parse_from(["q", "retire", "--consumer", "exec-7"]).unwrap();
        let partial = Partial::new(Verb::Retire);
        if let Partial::Retire(progress) = &partial {
            let mut summary = progress.lock().unwrap();
            summary.moved = vec!["1-1".into()];
            summary.remaining = Some(4);
            summary.remaining_exact = true;
            summary.calls = 1;
        }
        let done = partial.overrun(&cli, "stream=s group=g");
        assert_eq!(
            (done.result, done.exit),
            (RunResult::Error, ExitCode::Unavailable)
        );
        let json = serde_json::to_value(done.details.as_ref().unwrap()).unwrap();
        assert_eq!(json["consumer"], "exec-7", "{json}");
        assert_eq!(json["last_call_unknown"], true, "{json}");
        assert_eq!(
            (json["calls"].as_u64(), json["remaining"].as_i64()),
            (Some(1), Some(4))
        );
        assert!(
            done.fields.contains("consumer=\"exec-7\""),
            "{}",
            done.fields
        );
        assert!(
            done.fields.contains("last_call_unknown=1"),
            "{}",
            done.fields
        );
        let message = done.message.unwrap();
        assert!(
            message.contains("the outcome of the last call is unknown"),
            "{message}"
        );
    }

    /// A status the deadline overran says only that: no claim of moved entries.
    #[test]
    fn a_status_overrun_says_only_the_deadline() {
        let cli = Cli::try_parse_from(["q", "status"]).unwrap();
        let done = Partial::new(Verb::Status).overrun(&cli, "stream=s group=g");
        assert_eq!(done.exit, ExitCode::Unavailable);
        let error = done.error.unwrap();
        assert!(error.starts_with("deadline reached"), "{error}");
        assert!(!error.contains("target consumer"), "{error}");
    }

    #[test]
    fn a_target_may_use_the_time_left_but_a_reserve_for_each_waiting_target() {
        let ms = Duration::from_millis;
        let deadline = Instant::now() + Duration::from_secs(10);
        // The last target: everything left.
        assert_eq!(target_deadline(deadline, 0, Some(ms(500))), deadline);
        // Nothing measured yet: 1 ms for each of 499 waiting targets.
        assert_eq!(target_deadline(deadline, 499, None), deadline - ms(1) * 499);
        // Measured: twice the mean.
        assert_eq!(
            target_deadline(deadline, 499, Some(ms(7))),
            deadline - ms(14) * 499
        );
        // Never less than an equal share (the old hard split): 10 s / 100.
        let mine = target_deadline(deadline, 99, Some(ms(1000)));
        let share = mine.saturating_duration_since(Instant::now());
        assert!(share >= ms(99) && share <= ms(101), "{share:?}");
        // One cheap target waiting keeps a target's floor, not 1 ms.
        assert_eq!(target_deadline(deadline, 1, None), deadline - ms(50));
        // 20,000 waiting: the equal share is half a millisecond, but a target
        // gets at least 50 ms ...
        let mine = target_deadline(deadline, 20_000, None);
        let share = mine.saturating_duration_since(Instant::now());
        assert!(share >= ms(49) && share <= ms(50), "{share:?}");
        // ... and never past the run's deadline.
        let soon = Instant::now() + ms(20);
        assert_eq!(target_deadline(soon, 20_000, Some(ms(1))), soon);
    }

    /// A target stopped by its own share says so and how long it had; the
    /// run's deadline, or a failure before the share ended, is left as is.
    #[test]
    fn a_target_cut_by_its_share_does_not_blame_redis() {
        let now = Instant::now();
        let share = Clock {
            started: now - Duration::from_millis(40),
            started_unix_s: 0.0,
            deadline: now,
            run_deadline: now + Duration::from_secs(3),
        };
        let timeout = Failure::new(
            ExitCode::Unavailable,
            "Redis did not answer in time: timed out",
        );
        let message = share.blame_share(timeout.clone()).message;
        assert!(
            message.starts_with("this target's share of the deadline ran out"),
            "{message}"
        );
        assert!(message.contains("it had 40 ms"), "{message}");
        assert!(!message.contains("Redis did not answer"), "{message}");
        let run_over = Clock {
            run_deadline: now,
            ..share
        };
        assert_eq!(
            run_over.blame_share(timeout.clone()).message,
            timeout.message
        );
        let refused = Failure::new(ExitCode::Usage, "WRONGTYPE");
        assert_eq!(share.blame_share(refused).message, "WRONGTYPE");
    }
}
