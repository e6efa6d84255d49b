//! What a run leaves behind besides its exit code: a `--log-file` line per
//! target, the `--metrics-file` textfile for node_exporter (metrics.rs), and
//! the `--json` object (an array when the targets come from `--config`); every
//! client-chosen name in them is escaped by `field_value` or `quoted`.

use crate::cli::{self, Verb};
use crate::commands::{RetireSummary, RunSummary};
use crate::failure::ExitCode;
use crate::files::{self, Symlink};
use crate::metrics::{self, Metrics, TargetRun};
use crate::reply::StatusReport;
use crate::startup::Setup;
use crate::target_metrics::{self, TargetGauges};
use crate::verbs::{Clock, Entry};
use crate::{console, startup};
use serde::Serialize;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::error;

/// The `result` label of the metrics and the JSON. Every result but `error`
/// is healthy: a refusal is what LIVE is for, and a missing stream or group is
/// nothing to do (its own alert catches a name that stays missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    Success,
    Refused,
    /// The stream or the group does not exist.
    Absent,
    /// `--dry-run`: nothing changed, so no recovery to report as a success.
    DryRun,
    Error,
}

impl Serialize for RunResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl RunResult {
    pub const ALL: [RunResult; 5] = [
        RunResult::Success,
        RunResult::Refused,
        RunResult::Absent,
        RunResult::DryRun,
        RunResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Refused => "refused",
            RunResult::Absent => "absent",
            RunResult::DryRun => "dry-run",
            RunResult::Error => "error",
        }
    }

    fn level(self) -> &'static str {
        match self {
            RunResult::Success | RunResult::DryRun => "INFO",
            RunResult::Refused | RunResult::Absent => "WARN",
            RunResult::Error => "ERROR",
        }
    }
}

/// A name as a log field: as it is when plain, else quoted and escaped like a
/// Rust string, so a newline or a space in a stream name cannot forge a line
/// or a field.
pub fn field_value(name: &str) -> String {
    let plain = !name.is_empty()
        && name.chars().all(|c| {
            !c.is_control()
                && !c.is_whitespace()
                && !is_format_char(c)
                && !matches!(c, '"' | '\\' | '=')
        });
    if plain {
        name.to_string()
    } else {
        quoted(name)
    }
}

/// Invisible and bidirectional format characters (U+200B–U+200F, U+202A–U+202E,
/// U+2060–U+2069, U+061C, U+FEFF), which Rust's `{:?}` leaves raw: they can
/// reorder or hide what a reader of the log sees.
pub fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

/// `name` quoted and escaped like a Rust string, format characters included.
pub fn quoted(name: &str) -> String {
    format!("{name:?}")
        .chars()
        .map(|c| match is_format_char(c) {
            true => format!("\\u{{{:x}}}", u32::from(c)),
            false => c.to_string(),
        })
        .collect()
}

/// Appends `<RFC 3339 ms UTC> [LEVEL] <fields>` to `path`, opened for append
/// on each run so logrotate can move the file between runs; created 0640 like
/// logrotate's `create 0640 quantum quantum` (set after creation, whatever the
/// umask). A symlink there is refused (O_NOFOLLOW): the ExecStartPre may run as
/// a more privileged user than the owner of the log folder; so is anything but
/// a regular file (a FIFO would hold the run past its deadline).
pub fn append_log_line(path: &Path, result: RunResult, fields: &str) -> std::io::Result<()> {
    append_log_lines(path, &[(result, fields.to_string())])
}

/// Appends a line per `(result, fields)` as `append_log_line` does, opening
/// the file once and writing them all at once: a run over 100,000 targets
/// must not open the file 100,000 times after its deadline.
fn append_log_lines(path: &Path, lines: &[(RunResult, String)]) -> std::io::Result<()> {
    let now = humantime::format_rfc3339_millis(SystemTime::now());
    let line: String = lines
        .iter()
        .map(|(result, fields)| format!("{now} [{}] {fields}\n", result.level()))
        .collect();
    let mut create = OpenOptions::new();
    create.append(true).create_new(true).mode(0o640);
    let file = match files::open_regular(path, &mut create, Symlink::Refuse) {
        Ok(file) => {
            file.set_permissions(fs::Permissions::from_mode(0o640))?;
            file
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            files::open_regular(path, OpenOptions::new().append(true), Symlink::Refuse)?
        }
        Err(e) => return Err(e),
    };
    (&file).write_all(line.as_bytes())
}

/// The `--json` object: what every verb says, then the verb's own part.
#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    /// What a part of the run that is no target concerns (`discover="…"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_ms: Option<u64>,
    result: RunResult,
    exit_code: ExitCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    /// The log or metrics file that could not be written.
    #[serde(skip_serializing_if = "Option::is_none")]
    output_error: Option<&'a str>,
    /// The primary a Sentinel failover switched the run to.
    #[serde(skip_serializing_if = "Option::is_none")]
    switched_primary: Option<&'a str>,
    /// Behind Sentinel: replicas that acknowledged the writes before it reported (WAIT) ...
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas_acked: Option<u64>,
    /// ... of how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<u64>,
    #[serde(flatten)]
    details: Option<&'a Details>,
}

/// A verb's own part of the `--json` object.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Details {
    Run(RunSummary),
    Status {
        #[serde(flatten)]
        report: StatusReport,
        /// Consumers left out of the list by LIMIT.
        unlisted: i64,
    },
    Retire {
        consumer: String,
        #[serde(flatten)]
        summary: RetireSummary,
    },
}

fn print_json<T: Serialize + ?Sized>(report: &T) {
    match serde_json::to_string(report) {
        Ok(json) => console::out(&format!("{json}\n")),
        Err(e) => console::err_line(&format!("quantum-stream-recover: --json: {e}")),
    }
}

/// How long past the deadline a run waits for another run's metrics lock.
const METRICS_LOCK_WAIT: Duration = Duration::from_millis(500);

/// Writes what a verb did: a log line per entry, the metrics (run only) and
/// the JSON (one object; an array when the targets came from a config file).
/// A log or metrics file that cannot be written is exit 73 (EX_CANTCREAT)
/// after a run that was otherwise fine: monitoring is blind without it. The
/// exit code is the worst entry's: the numerically largest.
pub fn finish(
    setup: &Setup,
    verb: Verb,
    clock: Clock,
    entries: Vec<Entry>,
    complete: bool,
) -> ExitCode {
    let cli = &setup.cli;
    let elapsed = clock.started.elapsed();
    if entries.is_empty() {
        tracing::warn!(
            "no target: the config file names no stream and group that exist now, so there was \
             nothing to do"
        );
    }
    let mut unwritten = Vec::new();
    if let Some(path) = &cli.log_file {
        let lines: Vec<(RunResult, String)> = entries
            .iter()
            .map(|entry| {
                let line = format!(
                    "{} {} elapsed_ms={}",
                    entry.scope,
                    entry.done.fields,
                    entry.elapsed.as_millis()
                );
                (entry.done.result, line)
            })
            .collect();
        if !lines.is_empty() {
            if let Err(e) = append_log_lines(path, &lines) {
                unwritten.push(format!("cannot append to {}: {e}", path.display()));
            }
        }
    }
    if let (Verb::Run, Some(path)) = (verb, &cli.metrics_file) {
        // No entry at all is a file whose targets are all gone, not a failure.
        let failed_before_targets =
            !entries.is_empty() && entries.iter().all(|e| e.target.is_none());
        let mut targets: Vec<TargetRun> = entries.iter().filter_map(target_run).collect();
        if let Some(result) = run_level_result(&entries).filter(|_| setup.selection.is_file()) {
            targets.push(TargetRun {
                result,
                ..TargetRun::failed(String::new())
            });
        }
        let metrics = Metrics {
            started_unix_s: clock.started_unix_s,
            duration_s: elapsed.as_secs_f64(),
            targets,
            // One target (--stream, the ExecStartPre) says nothing about the others.
            complete: complete && setup.selection.is_file(),
            failed_before_targets,
        };
        // The deadline holds for the metrics too: at most a short wait for
        // another run's lock past it.
        let wait_until = clock.deadline.max(Instant::now()) + METRICS_LOCK_WAIT;
        if let Err(e) = metrics::write_metrics(path, &metrics, wait_until) {
            unwritten.push(format!("cannot write metrics to {}: {e}", path.display()));
        }
    }
    let output_error = (!unwritten.is_empty()).then(|| unwritten.join("; "));
    let mut exit = worst(entries.iter().map(|e| e.done.exit));
    if let Some(message) = &output_error {
        error!("{message}");
        if exit == ExitCode::Success {
            exit = ExitCode::CantCreate;
        }
    }
    if cli.json {
        let reports: Vec<JsonReport> = entries
            .iter()
            .map(|entry| {
                let done = &entry.done;
                let (stream, group) = match &entry.target {
                    Some((stream, group)) => (Some(stream.as_str()), Some(group.as_str())),
                    None => (None, None),
                };
                JsonReport {
                    command: Some(verb.name()),
                    stream,
                    group,
                    scope: entry.target.is_none().then_some(entry.scope.as_str()),
                    elapsed_ms: Some(entry.elapsed.as_millis() as u64),
                    result: done.result,
                    exit_code: match setup.selection.is_file() {
                        true => done.exit,
                        false => exit,
                    },
                    error: done.error.as_deref(),
                    message: done.message.as_deref(),
                    output_error: output_error.as_deref(),
                    switched_primary: done.switched_primary.as_deref(),
                    replicas_acked: done.replica_acks.map(|a| a.acked),
                    replicas: done.replica_acks.map(|a| a.replicas),
                    details: done.details.as_ref(),
                }
            })
            .collect();
        match (setup.selection.is_file(), reports.as_slice()) {
            (false, [one]) => print_json(one),
            _ => print_json(&reports),
        }
    }
    exit
}

/// The worst of some exit codes: the numerically largest (sysexits put the
/// ones an operator must act on last; 0 only when every part was fine).
pub fn worst(codes: impl Iterator<Item = ExitCode>) -> ExitCode {
    codes
        .max_by_key(|code| code.as_u8())
        .unwrap_or(ExitCode::Success)
}

/// The result of the run's own series (no `stream`/`group` labels), when it
/// needs one: what went wrong finding the targets (`error`, else `absent` for
/// a group-less target whose stream is missing), also when the run failed
/// before it had any target (a first run of a new config has no target series
/// yet), and `absent` when it found none at all; the alerts see each. None
/// when every target was found: the next such run drops the series.
fn run_level_result(entries: &[Entry]) -> Option<RunResult> {
    let problems: Vec<RunResult> = entries
        .iter()
        .filter(|e| e.target.is_none())
        .map(|e| e.done.result)
        .collect();
    if problems.contains(&RunResult::Error) {
        return Some(RunResult::Error);
    }
    let none_found = entries.iter().all(|e| e.target.is_none());
    (none_found || !problems.is_empty()).then_some(RunResult::Absent)
}

/// One target's metrics; none for what concerns no target (a discovery error).
fn target_run(entry: &Entry) -> Option<TargetRun> {
    let (stream, group) = entry.target.as_ref()?;
    let done = &entry.done;
    Some(TargetRun {
        labels: target_metrics::target_labels(stream, group),
        result: done.result,
        counters: done.counted,
        gauges: done.gauges,
        mode_known: done.mode_known,
        observed: done.observed.as_ref().and_then(TargetGauges::from_status),
    })
}

/// Ends a run that failed before the options were known (the caller said why
/// on stderr), with the JSON object when `--json` (or QUANTUM_JSON) asked for
/// one. The log line and the metrics (`result="error"`) are written too where
/// the arguments or the environment name their paths, so a typo in the env
/// file is seen by the alerts rather than leaving the last success standing.
pub fn early_failure(args: &[String], code: ExitCode, message: &str) -> ExitCode {
    if startup::json_requested(args) {
        print_json(&JsonReport {
            command: None,
            stream: None,
            group: None,
            scope: None,
            elapsed_ms: None,
            result: RunResult::Error,
            exit_code: code,
            error: Some(message),
            message: None,
            output_error: None,
            switched_primary: None,
            replicas_acked: None,
            replicas: None,
            details: None,
        });
    }
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let value = |name: &str, env: &str| startup::early_value(args, name, env);
    // With a config file (and no --stream picking one target) the run has no
    // target yet: it is said for the run, not for an invented default target.
    let config = value("--config", "QUANTUM_CONFIG")
        .filter(|_| value("--stream", "QUANTUM_STREAM").is_none());
    let target = || {
        let stream =
            value("--stream", "QUANTUM_STREAM").unwrap_or_else(|| cli::DEFAULT_STREAM.into());
        let group = value("--group", "QUANTUM_GROUP").unwrap_or_else(|| cli::DEFAULT_GROUP.into());
        (stream, group)
    };
    if let Some(path) = value("--log-file", "QUANTUM_LOG_FILE") {
        let scope = match &config {
            Some(config) => format!("config={}", field_value(config)),
            None => {
                let (stream, group) = target();
                format!(
                    "stream={} group={}",
                    field_value(&stream),
                    field_value(&group)
                )
            }
        };
        let line = format!(
            "{scope} error={} exit_code={} elapsed_ms=0",
            quoted(message),
            code.as_u8()
        );
        if let Err(e) = append_log_line(Path::new(&path), RunResult::Error, &line) {
            console::err_line(&format!(
                "quantum-stream-recover: cannot append to {path}: {e}"
            ));
        }
    }
    match value("--metrics-file", "QUANTUM_METRICS_FILE") {
        Some(path) if !startup::names_other_verb(args) => {
            let labels = match &config {
                Some(_) => String::new(),
                None => {
                    let (stream, group) = target();
                    target_metrics::target_labels(&stream, &group)
                }
            };
            let metrics = Metrics {
                started_unix_s,
                duration_s: 0.0,
                targets: vec![TargetRun::failed(labels)],
                complete: false,
                failed_before_targets: true,
            };
            let wait_until = Instant::now() + METRICS_LOCK_WAIT;
            if let Err(e) = metrics::write_metrics(Path::new(&path), &metrics, wait_until) {
                console::err_line(&format!(
                    "quantum-stream-recover: cannot write metrics to {path}: {e}"
                ));
            }
        }
        _ => {}
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_plain_and_the_rest_is_quoted() {
        assert_eq!(
            field_value("quantum:stream:trade.intent"),
            "quantum:stream:trade.intent"
        );
        assert_eq!(field_value("a\n[INFO] b"), "\"a\\n[INFO] b\"");
        assert_eq!(field_value("a b"), "\"a b\"");
        assert_eq!(field_value("k=v"), "\"k=v\"");
        assert_eq!(field_value(""), "\"\"");
        assert_eq!(field_value("a\u{202E}b"), "\"a\\u{202e}b\"");
        assert_eq!(quoted("x\u{2066}y"), "\"x\\u{2066}y\"");
    }
}
