//! `quantum-stream-recover`: the small synchronous program systemd runs every
//! two minutes and before the trading service starts. It issues QUANTUM.*
//! commands, logs a summary, writes metrics and maps the result to sysexits.

mod cli;
mod cluster;
mod commands;
mod connect;
mod doctor;
mod env_file;
mod failure;
mod report;
mod status_table;

use clap::Parser;
use cli::{Cli, Verb};
use commands::{Outcome, RunSummary, Stopped};
use failure::Failure;
use report::{Metrics, RunResult};
use serde_json::json;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::{error, info, warn};

/// Ends a run that failed before the options were known (the caller said why
/// on stderr), with the JSON object when `--json` (or QUANTUM_JSON) asked for one.
fn early_exit(args: &[String], code: u8, message: &str) -> ExitCode {
    if cli::json_requested(args) {
        println!(
            "{}",
            json!({"result": "error", "error": message, "exit_code": code})
        );
    }
    ExitCode::from(code)
}

fn main() -> ExitCode {
    // Lossy only to find --env-file and --json: clap gets the real arguments
    // and refuses a value that is not UTF-8 (64) rather than altering it.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Err(message) = cli::load_env_file(&args) {
        eprintln!("quantum-stream-recover: {message}");
        return early_exit(&args, failure::CONFIG, &message);
    }
    let cli = match Cli::try_parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            return early_exit(&args, failure::USAGE, first.trim_start_matches("error: "));
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
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

    let mut con = connect::connect(
        &cli.url,
        cli.cluster,
        cli.password_file.as_deref(),
        deadline,
    );
    let done = match &mut con {
        Ok(con) => match verb {
            Verb::Run => run(&cli, con, deadline, started),
            Verb::Status => status(&cli, con, deadline),
            Verb::Retire => retire(&cli, con, deadline),
            Verb::Doctor => unreachable!("doctor returns before connecting"),
        },
        Err(f) => Err(f.clone()),
    };
    let done = done.unwrap_or_else(|f| {
        error!("{where_}: {}", f.message);
        Done::failed(&f, None)
    });

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
        };
        if let Err(e) = report::write_metrics(path, &metrics) {
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
        println!("{json}");
    }
    ExitCode::from(exit)
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
}

impl Done {
    fn success(fields: String, json: serde_json::Value) -> Done {
        Done {
            result: RunResult::Success,
            exit: 0,
            fields,
            json,
            gauges: None,
            counted: None,
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
    }
}

fn run(
    cli: &Cli,
    con: &mut connect::Link,
    deadline: Instant,
    started: Instant,
) -> Result<Done, Failure> {
    let summary = match commands::run(cli, con, deadline)? {
        Outcome::Done(summary) => summary,
        Outcome::Refused(m) => return Ok(not_done(m, RunResult::Refused)),
        Outcome::Absent(m) => {
            return Ok(not_done(
                format!("nothing to recover: {m}"),
                RunResult::Absent,
            ))
        }
    };
    let fields = summary_fields(&summary);
    let stream = report::field_value(&cli.stream);
    let group = report::field_value(&cli.group);
    if let Some(f) = &summary.stopped {
        error!(
            "stopped early, after recovering stream={stream} group={group} {fields}: {}",
            f.message
        );
        return Ok(Done::failed(f, Some(&summary)));
    }
    let more = if summary.cursor != "0-0" && !summary.dry_run {
        format!(
            " (stopped at cursor {} after --max-batches; the next run continues)",
            summary.cursor
        )
    } else {
        String::new()
    };
    let what = if summary.dry_run {
        "would recover"
    } else {
        "recovered"
    };
    info!(
        "{what} stream={stream} group={group} {fields} elapsed_ms={}{more}",
        started.elapsed().as_millis()
    );
    for name in &summary.deleted {
        info!("deleted consumer {name:?}");
    }
    for name in &summary.kept {
        warn!("consumer {name:?} is idle but still holds entries too fresh to move");
    }
    let mut done = Done::success(fields, run_json(&summary));
    done.gauges = Some((summary.pending, summary.consumers));
    done.counted = Some(counts(&summary));
    Ok(done)
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
                print!("{}", status.table(&cli.stream, &cli.group));
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
    let s = &summary;
    let counts = format!(
        "moved={} dropped={} remaining={} deleted={} calls={}",
        s.moved.len(),
        s.dropped.len(),
        s.remaining,
        u8::from(s.deleted),
        s.calls
    );
    let (result, exit, why) = match &s.stopped {
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
        "deleted": s.deleted,
        "calls": s.calls,
        "exit_code": exit,
    });
    let mut fields = format!("consumer={consumer:?} {counts}");
    match why {
        None => info!("retired consumer {consumer:?}: {counts}"),
        Some(why) => {
            let message = format!(
                "retire of consumer {consumer:?} stopped after {} calls ({why}): it still holds {} \
                 entries (as of the last answered call), which stay pending under its name: \
                 nothing is lost, the next retire continues",
                s.calls, s.remaining
            );
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
    })
}
