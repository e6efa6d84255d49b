//! `quantum-stream-recover`: the small synchronous program systemd runs every
//! two minutes and before the trading service starts. It issues QUANTUM.*
//! commands, logs a summary, writes metrics and maps the result to sysexits.

mod cli;
mod commands;
mod connect;
mod doctor;
mod failure;
mod report;
mod status_table;

use clap::Parser;
use cli::{Cli, Verb};
use commands::{Outcome, RunSummary};
use failure::Failure;
use report::{Metrics, RunResult};
use serde_json::json;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(message) = cli::load_env_file(&args) {
        eprintln!("quantum-stream-recover: {message}");
        return ExitCode::from(failure::CONFIG);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { failure::USAGE } else { 0 });
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
    let where_ = format!("stream={} group={}", cli.stream, cli.group);
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
        Done {
            result: RunResult::Error,
            exit: f.code,
            fields: format!("error={:?}", f.message),
            json: json!({"result": "error", "error": f.message, "exit_code": f.code}),
            gauges: None,
        }
    });

    let elapsed_ms = started.elapsed().as_millis();
    if let Some(path) = &cli.log_file {
        let line = format!("{where_} {} elapsed_ms={elapsed_ms}", done.fields);
        if let Err(e) = report::append_log_line(path, done.result, &line) {
            warn!("cannot append to {}: {e}", path.display());
        }
    }
    if let (Verb::Run, Some(path)) = (verb, &cli.metrics_file) {
        // Counters come from INFO quantum so they survive trigger restarts.
        let counters = con
            .ok()
            .and_then(|mut con| commands::module_counters(&mut con, deadline).ok());
        let metrics = Metrics {
            result: done.result,
            started_unix_s,
            duration_s: started.elapsed().as_secs_f64(),
            counters: counters.map(|c| {
                let get = |name: &str| c.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v);
                [
                    get("claimed"),
                    get("quarantined"),
                    get("dropped"),
                    get("deleted"),
                ]
            }),
            gauges: done.gauges,
        };
        if let Err(e) = report::write_metrics(path, &metrics) {
            warn!("cannot write metrics to {}: {e}", path.display());
        }
    }
    if cli.json {
        let mut json = done.json;
        json["command"] = json!(format!("{verb:?}").to_lowercase());
        json["stream"] = json!(cli.stream);
        json["group"] = json!(cli.group);
        json["elapsed_ms"] = json!(elapsed_ms as u64);
        println!("{json}");
    }
    ExitCode::from(done.exit)
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
}

impl Done {
    fn success(fields: String, json: serde_json::Value) -> Done {
        Done {
            result: RunResult::Success,
            exit: 0,
            fields,
            json,
            gauges: None,
        }
    }
}

/// Refusals and a missing stream are not failures: exit 0, said at WARN.
fn not_done(message: String, result: RunResult) -> Done {
    warn!("{message}");
    Done {
        result,
        exit: 0,
        fields: format!("{}={message:?}", result.as_str()),
        json: json!({"result": result.as_str(), "message": message, "exit_code": 0}),
        gauges: None,
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
                RunResult::Success,
            ))
        }
    };
    let fields = summary_fields(&summary);
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
        "{what} stream={} group={} {fields} elapsed_ms={}{more}",
        cli.stream,
        cli.group,
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
    Ok(done)
}

fn summary_fields(s: &RunSummary) -> String {
    format!(
        "claimed={} quarantined={} dropped={} deleted={} kept={} batches={}",
        s.claimed.len(),
        s.quarantined.len(),
        s.dropped.len(),
        s.deleted.len(),
        s.kept.len(),
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
            let fields = format!(
                "pending={} consumers={}",
                status.pending,
                status.consumers.len()
            );
            Ok(Done::success(fields, status.to_json()))
        }
        Outcome::Refused(m) => Ok(not_done(m, RunResult::Refused)),
        Outcome::Absent(m) => Ok(not_done(
            format!("nothing to show: {m}"),
            RunResult::Success,
        )),
    }
}

fn retire(cli: &Cli, con: &mut connect::Link, deadline: Instant) -> Result<Done, Failure> {
    match commands::retire(cli, con, deadline)? {
        Outcome::Done((moved, dropped, deleted)) => {
            let consumer = cli.consumer.as_deref().unwrap_or_default();
            info!(
                "retired consumer {consumer:?}: moved={} dropped={} deleted={deleted}",
                moved.len(),
                dropped.len()
            );
            let fields = format!(
                "consumer={consumer:?} moved={} dropped={} deleted={}",
                moved.len(),
                dropped.len(),
                u8::from(deleted)
            );
            let json = json!({"result": "success", "consumer": consumer, "moved": moved, "dropped": dropped, "deleted": deleted, "exit_code": 0});
            Ok(Done::success(fields, json))
        }
        Outcome::Refused(m) => Ok(not_done(m, RunResult::Refused)),
        Outcome::Absent(m) => Ok(not_done(
            format!("nothing to retire: {m}"),
            RunResult::Success,
        )),
    }
}
