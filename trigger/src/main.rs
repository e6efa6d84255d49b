//! `quantum-stream-recover`: the small synchronous program systemd runs every
//! two minutes and before the trading service starts. It issues QUANTUM.*
//! commands, logs a summary, writes metrics and maps the result to sysexits.

mod cli;
mod cluster;
mod commands;
mod connect;
mod console;
mod doctor;
mod doctor_sentinel;
mod env_file;
mod failure;
mod files;
mod redis_conf;
mod report;
mod sentinel;
mod state;
mod status_table;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Verb};
use commands::{Interrupted, Outcome, Progress, RunSummary, Stopped};
use failure::Failure;
use report::{Metrics, RunResult};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{mpsc, Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{error, info, warn};

/// Ends a run that failed before the options were known (the caller said why
/// on stderr), with the JSON object when `--json` (or QUANTUM_JSON) asked for
/// one. The log line and the metrics (`result="error"`) are written too where
/// the arguments or the environment name their paths, so a typo in the env
/// file is seen by the alerts rather than leaving the last success standing.
fn early_exit(args: &[String], code: u8, message: &str) -> ExitCode {
    if cli::json_requested(args) {
        let json = json!({"result": "error", "error": message, "exit_code": code});
        console::out(&format!("{json}\n"));
    }
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let value = |name: &str, env: &str| cli::early_value(args, name, env);
    if let Some(path) = value("--log-file", "QUANTUM_LOG_FILE") {
        let stream =
            value("--stream", "QUANTUM_STREAM").unwrap_or_else(|| cli::DEFAULT_STREAM.into());
        let group = value("--group", "QUANTUM_GROUP").unwrap_or_else(|| cli::DEFAULT_GROUP.into());
        let line = format!(
            "stream={} group={} error={message:?} exit_code={code} elapsed_ms=0",
            report::field_value(&stream),
            report::field_value(&group)
        );
        if let Err(e) = report::append_log_line(Path::new(&path), RunResult::Error, &line) {
            console::err_line(&format!(
                "quantum-stream-recover: cannot append to {path}: {e}"
            ));
        }
    }
    match value("--metrics-file", "QUANTUM_METRICS_FILE") {
        Some(path) if !cli::names_other_verb(args) => {
            let metrics = Metrics {
                result: RunResult::Error,
                started_unix_s,
                duration_s: 0.0,
                counters: None,
                gauges: None,
                mode_known: None,
            };
            let wait_until = Instant::now() + METRICS_LOCK_WAIT;
            if let Err(e) = report::write_metrics(Path::new(&path), &metrics, wait_until) {
                console::err_line(&format!(
                    "quantum-stream-recover: cannot write metrics to {path}: {e}"
                ));
            }
        }
        _ => {}
    }
    ExitCode::from(code)
}

fn main() -> ExitCode {
    // Lossy only to find --env-file, --json and the output paths: clap gets the
    // real arguments and refuses a value that is not UTF-8 (64) rather than
    // altering it.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Err(message) = cli::load_env_file(&args) {
        console::err_line(&format!("quantum-stream-recover: {message}"));
        return early_exit(&args, failure::CONFIG, &message);
    }
    let parsed = Cli::command()
        .try_get_matches_from(std::env::args_os())
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if e.use_stderr() => {
            let text = connect::redact_urls_in(&e.to_string());
            console::err_line(text.trim_end());
            let first = text.lines().next().unwrap_or_default();
            return early_exit(&args, failure::USAGE, first.trim_start_matches("error: "));
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    if let Err(message) = cli::check_verb_options(&cli, &matches) {
        console::err_line(&format!("quantum-stream-recover: {message}"));
        return early_exit(&args, failure::USAGE, &message);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        // A broken stderr must not make the subscriber print (and panic) about it.
        .log_internal_errors(false)
        .init();
    // One process-wide TLS provider for rediss:// (ignored if one is already set).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let started = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let deadline = started + cli.deadline;
    let verb = cli.command.unwrap_or(Verb::Run);
    let where_ = format!(
        "stream={} group={}",
        report::field_value(&cli.stream),
        report::field_value(&cli.group)
    );
    if verb == Verb::Doctor {
        return ExitCode::from(doctor::run(&cli, deadline));
    }

    // The work runs on a worker thread and this one waits for it at most
    // until the deadline: a node that answers one byte at a time, a hung
    // TLS handshake or a slow DNS lookup cannot hold the run (and the trading
    // service's ExecStartPre) longer. Returning from main ends the worker.
    let cli = Arc::new(cli);
    let progress = Progress::default();
    let (tx, rx) = mpsc::channel();
    {
        let (cli, progress, where_) = (Arc::clone(&cli), progress.clone(), where_.clone());
        std::thread::spawn(move || {
            let _ = tx.send(work(&cli, verb, deadline, started, &progress, &where_));
        });
    }
    let waited = deadline.saturating_duration_since(Instant::now()) + DEADLINE_GRACE;
    let done = match rx.recv_timeout(waited) {
        Ok(done) => done,
        Err(_) => overrun(&cli, &progress, &where_),
    };

    let elapsed_ms = started.elapsed().as_millis();
    // A log or metrics file that cannot be written is exit 73 (EX_CANTCREAT)
    // after a run that was otherwise fine: monitoring is blind without it.
    let mut unwritten = Vec::new();
    if let Some(path) = &cli.log_file {
        let line = format!("{where_} {} elapsed_ms={elapsed_ms}", done.fields);
        if let Err(e) = report::append_log_line(path, done.result, &line) {
            unwritten.push(format!("cannot append to {}: {e}", path.display()));
        }
    }
    if let (Verb::Run, Some(path)) = (verb, &cli.metrics_file) {
        let metrics = Metrics {
            result: done.result,
            started_unix_s,
            duration_s: started.elapsed().as_secs_f64(),
            counters: done.counted,
            gauges: done.gauges,
            mode_known: done.mode_known,
        };
        // The deadline holds for the metrics too: at most a short wait for
        // another run's lock past it.
        let wait_until = deadline.max(Instant::now()) + METRICS_LOCK_WAIT;
        if let Err(e) = report::write_metrics(path, &metrics, wait_until) {
            unwritten.push(format!("cannot write metrics to {}: {e}", path.display()));
        }
    }
    let mut json = done.json;
    let mut exit = done.exit;
    if !unwritten.is_empty() {
        let message = unwritten.join("; ");
        error!("{message}");
        json["output_error"] = json!(message);
        if exit == 0 {
            exit = failure::CANT_CREATE;
            json["exit_code"] = json!(exit);
        }
    }
    if cli.json {
        json["command"] = json!(format!("{verb:?}").to_lowercase());
        json["stream"] = json!(cli.stream);
        json["group"] = json!(cli.group);
        json["elapsed_ms"] = json!(elapsed_ms as u64);
        console::out(&format!("{json}\n"));
    }
    ExitCode::from(exit)
}

/// How long past the deadline a run waits for another run's metrics lock.
const METRICS_LOCK_WAIT: Duration = Duration::from_millis(500);

/// How long past the deadline the main thread waits for the worker's own
/// answer (the worker's calls end at the deadline themselves when the network
/// lets them) before it reports without it.
const DEADLINE_GRACE: Duration = Duration::from_millis(300);

/// Connects and runs the verb (on the worker thread).
fn work(
    cli: &Cli,
    verb: Verb,
    deadline: Instant,
    started: Instant,
    progress: &Progress,
    where_: &str,
) -> Done {
    let done = connect::connect(
        &cli.url,
        cli.cluster,
        cli.password_file.as_deref(),
        cli.sentinel_password_file.as_deref(),
        deadline,
    )
    .and_then(|mut con| {
        let done = match verb {
            Verb::Run => run(cli, &mut con, deadline, started, progress),
            Verb::Status => status(cli, &mut con, deadline),
            Verb::Retire => retire(cli, &mut con, deadline),
            Verb::Doctor => unreachable!("doctor returns before connecting"),
        };
        done.map(|done| done.switched(con.switched_primary()))
    });
    done.unwrap_or_else(|f| {
        error!("{where_}: {}", f.message);
        Done::failed(&f, None)
    })
}

/// The deadline passed while the worker still waited for Redis: what the
/// answered batches did, and that the last call's outcome is unknown.
fn overrun(cli: &Cli, progress: &Progress, where_: &str) -> Done {
    let f = Failure::new(
        failure::UNAVAILABLE,
        format!(
            "deadline reached: Redis did not answer (in full) within --deadline {}; the \
             outcome of the last call is unknown (entries it may have moved are with the \
             target consumer, not lost, and are not counted here)",
            humantime::format_duration(cli.deadline)
        ),
    );
    let summary = progress
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match summary.batches {
        0 => {
            error!("{where_}: {}", f.message);
            Done::failed(&f, None)
        }
        _ => {
            error!(
                "stopped early, after recovering {where_} {}: {}",
                summary_fields(&summary),
                f.message
            );
            Done::failed(&f, Some(&summary))
        }
    }
}

/// What a verb hands back for the log file, the metrics and the JSON.
struct Done {
    result: RunResult,
    exit: u8,
    /// `key=value` fields for the log-file line.
    fields: String,
    json: serde_json::Value,
    /// The group's pending entries and consumers afterwards (run only).
    gauges: Option<(i64, i64)>,
    /// What this run moved (claimed, quarantined, dropped, deleted) when it
    /// reached the module: the metrics' `_total` counters add it up.
    counted: Option<[u64; 4]>,
    /// Whether the mode key held a mode, when the run could tell (run only).
    mode_known: Option<bool>,
}

impl Done {
    /// The log line and the JSON name the primary a Sentinel failover switched the run to.
    fn switched(mut self, primary: Option<String>) -> Done {
        if let Some(primary) = primary {
            self.fields
                .push_str(&format!(" switched_primary={primary}"));
            self.json["switched_primary"] = json!(primary);
        }
        self
    }

    fn success(fields: String, json: serde_json::Value) -> Done {
        Done {
            result: RunResult::Success,
            exit: 0,
            fields,
            json,
            gauges: None,
            counted: None,
            mode_known: None,
        }
    }

    /// A failure; `summary` holds what earlier batches of a drain did.
    fn failed(f: &Failure, summary: Option<&RunSummary>) -> Done {
        let error = format!("error={:?}", f.message);
        let Some(summary) = summary else {
            return Done {
                result: RunResult::Error,
                exit: f.code,
                fields: error,
                json: json!({"result": "error", "error": f.message, "exit_code": f.code}),
                gauges: None,
                counted: None,
                mode_known: None,
            };
        };
        let mut json = run_json(summary);
        json["result"] = json!("error");
        json["error"] = json!(f.message);
        json["exit_code"] = json!(f.code);
        Done {
            result: RunResult::Error,
            exit: f.code,
            fields: format!("{} {error}", summary_fields(summary)),
            json,
            gauges: Some((summary.pending, summary.consumers)),
            counted: Some(counts(summary)),
            mode_known: Some(true),
        }
    }
}

/// Refusals and a missing stream or group are not failures: exit 0, said at WARN.
fn not_done(message: String, result: RunResult) -> Done {
    warn!("{message}");
    Done {
        result,
        exit: 0,
        fields: format!("{}={message:?}", result.as_str()),
        json: json!({"result": result.as_str(), "message": message, "exit_code": 0}),
        gauges: None,
        counted: Some([0; 4]),
        mode_known: None,
    }
}

/// Whether the mode guard's refusal says the mode key holds a mode (LIVE, a
/// typo of TESTNET) rather than nothing (missing, misspelled --mode-key) or
/// something that is not a string: the module's words (module/src/mode.rs).
fn mode_known_from_refusal(message: &str) -> bool {
    !(message.contains("' is missing; allowed modes")
        || message.contains(", not a string; allowed modes"))
}

fn run(
    cli: &Cli,
    con: &mut connect::Link,
    deadline: Instant,
    started: Instant,
    progress: &Progress,
) -> Result<Done, Failure> {
    // A dry run changes nothing: it neither uses nor moves the saved cursor.
    let state_dir = cli.state_dir.as_deref().filter(|_| !cli.dry_run);
    let start = match state_dir.map(|dir| state::load(dir, &cli.stream, &cli.group)) {
        Some(Ok(cursor)) => cursor,
        Some(Err(why)) => {
            warn!("{why}: starting at the beginning of the PEL");
            None
        }
        None => None,
    };
    let summary = match commands::run(cli, con, start.clone(), deadline, progress)? {
        Outcome::Done(summary) => summary,
        Outcome::Refused(m) => {
            let mut done = not_done(m, RunResult::Refused);
            done.mode_known = done.json["message"].as_str().map(mode_known_from_refusal);
            return Ok(done);
        }
        Outcome::Absent(m) => {
            return Ok(not_done(
                format!("nothing to recover: {m}"),
                RunResult::Absent,
            ))
        }
    };
    if let Some(interrupted) = &summary.interrupted {
        return Ok(interrupted_done(cli, &summary, interrupted, start));
    }
    let saved = match state_dir {
        Some(dir) => match state::save(dir, &cli.stream, &cli.group, &summary.cursor) {
            Ok(path) => Some(path),
            Err(e) => {
                warn!(
                    "cannot save the cursor in {}: {e}; the next run starts at the beginning \
                     of the PEL",
                    dir.display()
                );
                None
            }
        },
        None => None,
    };
    let mut fields = summary_fields(&summary);
    let stream = report::field_value(&cli.stream);
    let group = report::field_value(&cli.group);
    let mut json = run_json(&summary);
    json["resumed_from"] = json!(start);
    if let Some(f) = &summary.stopped {
        error!(
            "stopped early, after recovering stream={stream} group={group} {fields}: {}",
            f.message
        );
        let mut done = Done::failed(f, Some(&summary));
        done.json["resumed_from"] = json!(start);
        return Ok(done);
    }
    let mut more = match &start {
        Some(cursor) => format!(" (continued from cursor {cursor}, saved by the previous run)"),
        None => String::new(),
    };
    if summary.cursor != "0-0" && !summary.dry_run {
        more.push_str(&match &saved {
            Some(path) => format!(
                " (stopped at cursor {} after --max-batches; saved in {}: the next run \
                 continues from it)",
                summary.cursor,
                path.display()
            ),
            None => format!(
                " (stopped at cursor {} after --max-batches; without --state-dir the next run \
                 starts again at the beginning of the PEL)",
                summary.cursor
            ),
        });
    }
    let result = match summary.dry_run {
        true => RunResult::DryRun,
        false => RunResult::Success,
    };
    json["result"] = json!(result.as_str());
    if summary.dry_run {
        fields = format!("dry_run=1 {fields}");
        info!(
            "dry run, nothing changed: would recover stream={stream} group={group} {fields} \
             elapsed_ms={}",
            started.elapsed().as_millis()
        );
    } else {
        info!(
            "recovered stream={stream} group={group} {fields} elapsed_ms={}{more}",
            started.elapsed().as_millis()
        );
    }
    let deleted = match summary.dry_run {
        true => "would delete",
        false => "deleted",
    };
    for name in &summary.deleted {
        info!("{deleted} consumer {}", report::quoted(name));
    }
    for name in &summary.kept {
        warn!(
            "consumer {} is idle but still holds entries too fresh to move",
            report::quoted(name)
        );
    }
    let mut done = Done::success(fields, json);
    done.result = result;
    done.gauges = Some((summary.pending, summary.consumers));
    done.counted = Some(counts(&summary));
    done.mode_known = Some(summary.mode.is_some());
    Ok(done)
}

/// A drain that a later batch found refused (the mode changed) or without its
/// stream or group: the result says so at WARN, with what earlier batches did.
/// The cursor is not saved: the next run starts at the beginning of the PEL.
fn interrupted_done(
    cli: &Cli,
    summary: &RunSummary,
    interrupted: &Interrupted,
    start: Option<String>,
) -> Done {
    let (result, message) = match interrupted {
        Interrupted::Refused(m) => (RunResult::Refused, m.clone()),
        Interrupted::Absent(m) => (RunResult::Absent, format!("nothing more to recover: {m}")),
    };
    let fields = summary_fields(summary);
    warn!(
        "{message}; batch {} stopped the drain, the earlier ones recovered stream={} group={} \
         {fields}",
        summary.batches + 1,
        report::field_value(&cli.stream),
        report::field_value(&cli.group)
    );
    let mut json = run_json(summary);
    json["result"] = json!(result.as_str());
    json["message"] = json!(message);
    json["exit_code"] = json!(0);
    json["resumed_from"] = json!(start);
    let mut done = Done::success(format!("{fields} {}={message:?}", result.as_str()), json);
    done.result = result;
    done.counted = Some(counts(summary));
    done.mode_known = match interrupted {
        Interrupted::Refused(m) => Some(mode_known_from_refusal(m)),
        Interrupted::Absent(_) => Some(summary.mode.is_some()),
    };
    done
}

/// What a drain moved, for the counters; a dry run moved nothing.
fn counts(s: &RunSummary) -> [u64; 4] {
    match s.dry_run {
        true => [0; 4],
        false => [&s.claimed, &s.quarantined, &s.dropped, &s.deleted].map(|ids| ids.len() as u64),
    }
}

fn summary_fields(s: &RunSummary) -> String {
    format!(
        "claimed={} quarantined={} dropped={} deleted={} kept={} batches={}",
        s.claimed.len(),
        s.quarantined.len(),
        s.dropped.len(),
        s.deleted.len(),
        s.kept_total,
        s.batches
    )
}

fn run_json(s: &RunSummary) -> serde_json::Value {
    json!({
        "result": "success",
        "mode": s.mode,
        "dry_run": s.dry_run,
        "claimed": s.claimed,
        "quarantined": s.quarantined,
        "dropped": s.dropped,
        "deleted": s.deleted,
        "kept": s.kept,
        "kept_total": s.kept_total,
        "batches": s.batches,
        "scanned": s.scanned,
        "cursor": s.cursor,
        "pending": s.pending,
        "consumers": s.consumers,
        "exit_code": 0,
    })
}

fn status(cli: &Cli, con: &mut connect::Link, deadline: Instant) -> Result<Done, Failure> {
    match commands::status(cli, con, deadline)? {
        Outcome::Done(fields) => {
            let status = status_table::Status::from_reply(&fields)?;
            if !cli.json {
                console::out(&status.table(&cli.stream, &cli.group));
            }
            let fields = format!("pending={} consumers={}", status.pending, status.total());
            Ok(Done::success(fields, status.to_json()))
        }
        Outcome::Refused(m) => Ok(not_done(m, RunResult::Refused)),
        Outcome::Absent(m) => Ok(not_done(format!("nothing to show: {m}"), RunResult::Absent)),
    }
}

fn retire(cli: &Cli, con: &mut connect::Link, deadline: Instant) -> Result<Done, Failure> {
    let summary = match commands::retire(cli, con, deadline)? {
        Outcome::Done(summary) => summary,
        Outcome::Refused(m) => return Ok(not_done(m, RunResult::Refused)),
        Outcome::Absent(m) => {
            return Ok(not_done(
                format!("nothing to retire: {m}"),
                RunResult::Absent,
            ))
        }
    };
    let consumer = cli.consumer.as_deref().unwrap_or_default();
    let shown = report::quoted(consumer);
    let s = &summary;
    let mut counts = format!(
        "moved={} dropped={} remaining={} deleted={} calls={}",
        s.moved.len(),
        s.dropped.len(),
        s.remaining.map_or("unknown".into(), |n| n.to_string()),
        u8::from(s.deleted),
        s.calls
    );
    if !s.remaining_exact && s.remaining.is_some() {
        counts.push_str(" remaining_exact=0");
    }
    if s.last_call_unknown {
        counts.push_str(" last_call_unknown=1");
    }
    // One call that moved nothing and deleted nothing: no such consumer.
    let absent = s.calls == 1 && s.moved.is_empty() && s.dropped.is_empty() && !s.deleted;
    let (result, exit, why) = match &s.stopped {
        None if absent => {
            warn!("consumer {shown} is not in the group: nothing to retire");
            (RunResult::Absent, 0, None)
        }
        None => (RunResult::Success, 0, None),
        Some(Stopped::Refused(m)) => (RunResult::Refused, 0, Some(m.clone())),
        Some(Stopped::Failed(f)) => (RunResult::Error, f.code, Some(f.message.clone())),
    };
    let mut json = json!({
        "result": result.as_str(),
        "consumer": consumer,
        "moved": s.moved,
        "dropped": s.dropped,
        "remaining": s.remaining,
        "remaining_exact": s.remaining_exact,
        "deleted": s.deleted,
        "calls": s.calls,
        "last_call_unknown": s.last_call_unknown,
        "exit_code": exit,
    });
    let mut fields = format!("consumer={shown} {counts}");
    match why {
        None if absent => {}
        None => info!("retired consumer {shown}: {counts}"),
        Some(why) => {
            let message = stop_message(cli, &shown, s, &why);
            if exit == 0 {
                warn!("{message}; {counts}");
            } else {
                error!("{message}; {counts}");
            }
            fields.push_str(&format!(" stopped={why:?}"));
            json["message"] = json!(message);
        }
    }
    Ok(Done {
        result,
        exit,
        fields,
        json,
        gauges: None,
        counted: None,
        mode_known: None,
    })
}

/// Why a retire stopped short, and where the entries are as far as anyone can
/// know: after a lost reply the last call may have run in full.
fn stop_message(cli: &Cli, shown: &str, s: &commands::RetireSummary, why: &str) -> String {
    let held = match (s.remaining, s.remaining_exact) {
        (Some(n), true) => format!("{n} entries"),
        (Some(n), false) => format!("at least {n} entries"),
        (None, _) => "an unknown number of entries".into(),
    };
    let rest = "nothing is lost: entries not moved stay pending under its name, \
                and the next retire continues";
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
