//! The `--metrics-file` textfile for node_exporter: this run's values added
//! to the previous file's, per target (`stream` and `group` labels on every
//! series), written atomically under a lock.

use crate::files::{self, Symlink};
use crate::report::RunResult;
use crate::target_metrics::{self, TargetGauges};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

const PREFIX: &str = "quantum_stream_recovery_";

/// What this run measured, per target. Whatever a target's run could not
/// measure (counters when it did not reach the module, the last success after
/// a failure) is carried over from the previous file, so a failed run never
/// resets a series.
pub struct Metrics {
    pub started_unix_s: f64,
    pub duration_s: f64,
    pub targets: Vec<TargetRun>,
    /// The run's targets came from the config file and the list is complete
    /// (no discovery failed): series of targets no longer in it are dropped.
    /// Otherwise (one target, a discovery error) they are kept.
    pub complete: bool,
    /// The run failed before its targets were known: every target of the
    /// previous file gets this result (the alerts see the failure).
    pub failed_before_targets: bool,
}

/// One target's part of the metrics.
pub struct TargetRun {
    /// `stream="…",group="…"` (target_metrics::target_labels); empty for the
    /// run itself when it failed before it knew its targets (a config file
    /// error, no connection): its series then carry no `stream`/`group`
    /// label, rather than name a target nobody configured.
    pub labels: String,
    pub result: RunResult,
    /// What this run moved (claimed, quarantined, dropped, deleted), added to
    /// the previous file's `_total` counters; none when the run did not reach
    /// the module. Counted here rather than read from `INFO quantum`, whose
    /// counters live in each server process: a failover, a restart or a
    /// promoted replica would make them fall, and Prometheus would read a reset.
    pub counters: Option<Counts>,
    /// The group after the run.
    pub gauges: Option<Gauges>,
    /// Whether the mode key held a string mode (allowed or not), when the run
    /// reached the module and could tell.
    pub mode_known: Option<bool>,
    /// Consumers by state and what TO and QUARANTINE hold (QUANTUM.STATUS after the run).
    pub observed: Option<TargetGauges>,
}

impl TargetRun {
    /// A target (or with empty `labels` the run) that failed before reaching the module.
    pub fn failed(labels: String) -> TargetRun {
        TargetRun {
            labels,
            result: RunResult::Error,
            counters: None,
            gauges: None,
            mode_known: None,
            observed: None,
        }
    }
}

/// What one run moved, for the `_total` counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub claimed: u64,
    pub quarantined: u64,
    pub dropped: u64,
    pub deleted: u64,
}

impl Counts {
    /// Each count beside the name of its counter.
    fn by_series(self) -> [(&'static str, u64); 4] {
        [
            ("claimed_total", self.claimed),
            ("quarantined_total", self.quarantined),
            ("dropped_total", self.dropped),
            ("deleted_total", self.deleted),
        ]
    }
}

/// The group as the last batch saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gauges {
    pub pending: i64,
    pub consumers: i64,
}

/// `(name, help, type)` of every metric, in file order; every series carries
/// `stream` and `group` labels.
const SERIES: [(&str, &str, &str); 14] = [
    (
        "claimed_total",
        "Entries moved to the recovery consumer by the runs that wrote this file.",
        "counter",
    ),
    (
        "quarantined_total",
        "Entries parked in the quarantine consumer by the runs that wrote this file.",
        "counter",
    ),
    (
        "dropped_total",
        "PEL entries dropped (stream entry gone) by the runs that wrote this file.",
        "counter",
    ),
    (
        "deleted_total",
        "Dead consumers deleted by the runs that wrote this file.",
        "counter",
    ),
    (
        "last_run_timestamp_seconds",
        "When the last run started.",
        "gauge",
    ),
    (
        "last_success_timestamp_seconds",
        "When the last successful run started.",
        "gauge",
    ),
    (
        "last_run_duration_seconds",
        "How long the last run took.",
        "gauge",
    ),
    (
        "last_run_result",
        "1 for the last run's result (success, refused, absent: stream or group missing, dry-run, error), 0 for the others.",
        "gauge",
    ),
    (
        "pending",
        "The group's pending entries after the last run.",
        "gauge",
    ),
    (
        "consumers",
        "The group's consumers after the last run.",
        "gauge",
    ),
    (
        "mode_known",
        "1 when the mode key held a mode (allowed or not) at the last run that reached the module, 0 when it was missing or not a string (every run is then refused).",
        "gauge",
    ),
    (
        target_metrics::BY_STATE,
        target_metrics::BY_STATE_HELP,
        "gauge",
    ),
    (
        target_metrics::PARKED_ENTRIES,
        target_metrics::PARKED_ENTRIES_HELP,
        "gauge",
    ),
    (
        target_metrics::PARKED_OLDEST,
        target_metrics::PARKED_OLDEST_HELP,
        "gauge",
    ),
];

/// A textfile's values: `series (name and labels) -> value`, only this
/// trigger's own labelled series with a finite number: a corrupt line must
/// not be carried into every later file (node_exporter drops a file it
/// cannot parse).
fn parse_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, value)| {
            target_of(series).is_some() && value.parse::<f64>().is_ok_and(f64::is_finite)
        })
        .map(|(series, value)| (series.to_string(), value.to_string()))
        .collect()
}

/// The `stream="…",group="…"` labels of one of this trigger's series, if it
/// is one: a known name, then exactly `stream`, `group` and the one extra
/// label that name takes (`result`, `state`, `role`) with a known value, in
/// that order, values escaped as the text format says.
fn target_of(series: &str) -> Option<&str> {
    let rest = series.strip_prefix(PREFIX)?;
    let (name, labels) = rest.split_once('{')?;
    let labels = labels.strip_suffix('}')?;
    SERIES.iter().find(|(known, _, _)| *known == name)?;
    let after_stream = label(labels, "stream=")?;
    let after_group = label(after_stream.strip_prefix(',')?, "group=")?;
    let target = &labels[..labels.len() - after_group.len()];
    let extra: &[&str] = match name {
        "last_run_result" => &["success", "refused", "absent", "dry-run", "error"],
        target_metrics::BY_STATE => &["live", "zombie", "stuck"],
        target_metrics::PARKED_ENTRIES | target_metrics::PARKED_OLDEST => &["target", "quarantine"],
        _ => return after_group.is_empty().then_some(target),
    };
    let key = match name {
        "last_run_result" => "result",
        target_metrics::BY_STATE => "state",
        _ => "role",
    };
    let value = after_group
        .strip_prefix(',')?
        .strip_prefix(key)?
        .strip_prefix("=\"")?
        .strip_suffix('"')?;
    extra.contains(&value).then_some(target)
}

/// After `name="value"` at the start of `text` (value escaped: `\\`, `\"`,
/// `\n`), the rest of `text`.
fn label<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let value = text.strip_prefix(name)?.strip_prefix('"')?;
    let mut chars = value.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, '\\' | '"' | 'n')) => {}
                _ => return None,
            },
            '"' => return Some(&value[i + 1..]),
            '\n' => return None,
            _ => {}
        }
    }
    None
}

/// A series of the file before labels (one target per install): known, and
/// dropped rather than called garbled.
fn unlabelled_series(series: &str) -> bool {
    let Some(name) = series.strip_prefix(PREFIX) else {
        return false;
    };
    SERIES.iter().any(|(known, _, _)| *known == name)
        || RunResult::ALL
            .iter()
            .any(|r| name == format!("last_run_result{{result=\"{}\"}}", r.as_str()))
}

pub fn render_metrics(metrics: &Metrics, previous: &BTreeMap<String, String>) -> String {
    let mut values: BTreeMap<String, String> = previous.clone();
    // A set, not a scan of the targets per series: with 100,000 targets the
    // file has over two million series.
    let this_run: std::collections::HashSet<&str> =
        metrics.targets.iter().map(|t| t.labels.as_str()).collect();
    let listed = |series: &str| target_of(series).is_some_and(|t| this_run.contains(t));
    if metrics.complete {
        values.retain(|series, _| listed(series));
    }
    let mut targets: Vec<&TargetRun> = metrics.targets.iter().collect();
    let failed: Vec<TargetRun>;
    if metrics.failed_before_targets {
        let mut earlier: Vec<&str> = previous.keys().filter_map(|s| target_of(s)).collect();
        earlier.sort();
        earlier.dedup();
        failed = earlier
            .into_iter()
            .filter(|labels| !this_run.contains(labels))
            .map(|labels| TargetRun::failed(labels.to_string()))
            .collect();
        targets.extend(failed.iter());
    }
    for target in targets {
        set_target(&mut values, metrics, target, previous);
    }

    let mut out = String::new();
    for (name, help, kind) in SERIES {
        let full = format!("{PREFIX}{name}{{");
        let lines: Vec<String> = values
            .iter()
            .filter(|(series, _)| series.starts_with(&full) || **series == full[..full.len() - 1])
            .map(|(series, value)| format!("{series} {value}\n"))
            .collect();
        if !lines.is_empty() {
            let full = &full[..full.len() - 1];
            out.push_str(&format!("# HELP {full} {help}\n# TYPE {full} {kind}\n"));
            out.extend(lines);
        }
    }
    out
}

/// One target's series.
fn set_target(
    values: &mut BTreeMap<String, String>,
    metrics: &Metrics,
    target: &TargetRun,
    previous: &BTreeMap<String, String>,
) {
    let labels = &target.labels;
    // The run's own series (no labels): `name` or `name{result="…"}`.
    let key = |name: &str, extra: &str| {
        let all = format!("{labels}{extra}");
        match all.strip_prefix(',').unwrap_or(&all) {
            "" => format!("{PREFIX}{name}"),
            all => format!("{PREFIX}{name}{{{all}}}"),
        }
    };
    let mut set = |name: &str, extra: &str, value: String| {
        values.insert(key(name, extra), value);
    };
    if let Some(counters) = target.counters {
        for (name, added) in counters.by_series() {
            let before = previous
                .get(&key(name, ""))
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map_or(0, |v| v as u64);
            set(name, "", before.saturating_add(added).to_string());
        }
    }
    let started = format!("{:.3}", metrics.started_unix_s);
    set("last_run_timestamp_seconds", "", started.clone());
    if target.result == RunResult::Success {
        set("last_success_timestamp_seconds", "", started);
    }
    set(
        "last_run_duration_seconds",
        "",
        format!("{:.6}", metrics.duration_s),
    );
    for result in RunResult::ALL {
        let flag = u8::from(result == target.result);
        let extra = format!(",result=\"{}\"", result.as_str());
        set("last_run_result", &extra, flag.to_string());
    }
    if let Some(gauges) = target.gauges {
        set("pending", "", gauges.pending.to_string());
        set("consumers", "", gauges.consumers.to_string());
    }
    if let Some(known) = target.mode_known {
        set("mode_known", "", u8::from(known).to_string());
    }
    if let Some(observed) = &target.observed {
        for (name, extra, value) in target_metrics::series(observed) {
            set(name, &extra, value);
        }
    }
}

/// The most of a previous metrics file read back. A target's series take
/// about 2 KiB plus 22 times its escaped stream and group names, so the file
/// of `max-targets` 100,000 with names of up to ~150 bytes each fits; a longer
/// one is not carried over (see `write_metrics`) rather than refused on
/// every run.
const MAX_METRICS_FILE: u64 = 1 << 30;

/// Holds an exclusive flock on `.<name>.lock` beside the metrics file (opened
/// O_NOFOLLOW) while runs read, add to and replace the file: two runs at once
/// (the timer and the ExecStartPre) must not lose each other's counts. Waits
/// at most until `wait_until`.
fn lock_beside(dir: &Path, name: &str, wait_until: Instant) -> std::io::Result<fs::File> {
    let path = dir.join(format!(".{name}.lock"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < wait_until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!("another run held {} until the deadline", path.display()),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Lines of a previous metrics file that are neither comments nor this
/// trigger's series: said, since their counters cannot be carried over.
fn garbled_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter(|l| parse_values(l).is_empty())
        .filter(|l| {
            !l.rsplit_once(' ')
                .is_some_and(|(s, _)| unlabelled_series(s))
        })
        .collect()
}

/// Writes the textfile atomically: a temp file in the same folder, then rename.
/// The temp file has an unpredictable name and is created with O_EXCL (which
/// never follows a symlink); rename replaces whatever is at `path`, a symlink
/// included, without following it. The previous file is read with O_NOFOLLOW.
pub fn write_metrics(path: &Path, metrics: &Metrics, wait_until: Instant) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _lock = lock_beside(dir, &name, wait_until)?;
    let previous = match files::read_regular(path, MAX_METRICS_FILE, Symlink::Refuse) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        // A FIFO or a device where the metrics go: refused (73).
        Err(e) if e.kind() == ErrorKind::InvalidInput => return Err(e),
        // Longer than anything this trigger writes for sane names: refusing
        // it would leave it stale on every later run, so it is replaced.
        Err(e) if e.kind() == ErrorKind::InvalidData => {
            tracing::warn!(
                "the metrics file {} is {e}: not carried over, its counters restart from 0",
                path.display()
            );
            String::new()
        }
        // None yet, or a symlink (replaced by the rename, never followed).
        Err(_) => String::new(),
    };
    let garbled = garbled_lines(&previous);
    if let Some(first) = garbled.first() {
        let first: String = first.chars().take(80).collect();
        tracing::warn!(
            "the metrics file {} holds {} line(s) this trigger did not write (first: {}): \
             kept the series that parse; a counter on such a line restarts from 0",
            path.display(),
            garbled.len(),
            crate::report::quoted(&first)
        );
    }
    let text = render_metrics(metrics, &parse_values(&previous));
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(text.as_bytes())?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    temp.persist(path).map(drop).map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_metrics::{target_labels, Parked};

    fn counts(claimed: u64, quarantined: u64, dropped: u64, deleted: u64) -> Option<Counts> {
        Some(Counts {
            claimed,
            quarantined,
            dropped,
            deleted,
        })
    }

    fn target(stream: &str, result: RunResult, counters: Option<Counts>) -> TargetRun {
        TargetRun {
            labels: target_labels(stream, "g"),
            result,
            counters,
            gauges: counters.map(|_| Gauges {
                pending: 3,
                consumers: 2,
            }),
            mode_known: None,
            observed: None,
        }
    }

    fn metrics(targets: Vec<TargetRun>) -> Metrics {
        Metrics {
            started_unix_s: 1_700_000_000.5,
            duration_s: 0.002,
            targets,
            complete: true,
            failed_before_targets: false,
        }
    }

    const S: &str = "quantum_stream_recovery_";

    #[test]
    fn counters_add_each_run_per_target_and_a_failed_run_keeps_them() {
        let first = render_metrics(
            &metrics(vec![
                target("a", RunResult::Success, counts(1, 2, 3, 4)),
                target("b", RunResult::Success, counts(5, 0, 0, 0)),
            ]),
            &BTreeMap::new(),
        );
        assert!(first.contains(&format!("{S}claimed_total{{stream=\"a\",group=\"g\"}} 1\n")));
        assert!(first.contains(&format!("{S}claimed_total{{stream=\"b\",group=\"g\"}} 5\n")));
        assert!(first.contains(&format!(
            "{S}last_success_timestamp_seconds{{stream=\"a\",group=\"g\"}} 1700000000.500\n"
        )));
        assert!(first.contains(&format!(
            "{S}last_run_result{{stream=\"a\",group=\"g\",result=\"success\"}} 1\n"
        )));
        assert_eq!(
            first
                .matches("# TYPE quantum_stream_recovery_deleted_total counter\n")
                .count(),
            1
        );

        let previous = parse_values(&first);
        assert_eq!(
            previous.len(),
            first.lines().filter(|l| !l.starts_with('#')).count()
        );
        let mut failed = metrics(vec![
            target("a", RunResult::Success, counts(10, 0, 0, 1)),
            target("b", RunResult::Error, None),
        ]);
        failed.started_unix_s = 1_700_000_100.0;
        let second = render_metrics(&failed, &previous);
        assert!(second.contains(&format!(
            "{S}claimed_total{{stream=\"a\",group=\"g\"}} 11\n"
        )));
        assert!(second.contains(&format!("{S}deleted_total{{stream=\"a\",group=\"g\"}} 5\n")));
        assert!(second.contains(&format!("{S}claimed_total{{stream=\"b\",group=\"g\"}} 5\n")));
        assert!(second.contains(&format!(
            "{S}last_success_timestamp_seconds{{stream=\"b\",group=\"g\"}} 1700000000.500\n"
        )));
        assert!(second.contains(&format!(
            "{S}last_run_result{{stream=\"b\",group=\"g\",result=\"error\"}} 1\n"
        )));
    }

    #[test]
    fn targets_gone_from_a_complete_run_are_dropped_else_kept() {
        let first = render_metrics(
            &metrics(vec![
                target("a", RunResult::Success, counts(1, 0, 0, 0)),
                target("b", RunResult::Success, counts(1, 0, 0, 0)),
            ]),
            &BTreeMap::new(),
        );
        let previous = parse_values(&first);
        let only_a = vec![target("a", RunResult::Success, counts(1, 0, 0, 0))];
        let complete = render_metrics(&metrics(only_a), &previous);
        assert!(!complete.contains("stream=\"b\""), "{complete}");
        let mut partial = metrics(vec![target("a", RunResult::Success, counts(1, 0, 0, 0))]);
        partial.complete = false;
        let partial = render_metrics(&partial, &previous);
        assert!(partial.contains(&format!("{S}claimed_total{{stream=\"b\",group=\"g\"}} 1\n")));
        // A run that failed before its targets were known marks every earlier target.
        let mut none = metrics(Vec::new());
        none.complete = false;
        none.failed_before_targets = true;
        let none = render_metrics(&none, &previous);
        for t in ["a", "b"] {
            assert!(none.contains(&format!(
                "{S}last_run_result{{stream=\"{t}\",group=\"g\",result=\"error\"}} 1\n"
            )));
        }
    }

    #[test]
    fn only_well_formed_labelled_series_of_this_trigger_are_carried_over() {
        let previous = parse_values(
            "quantum_stream_recovery_claimed_total{stream=\"a\",group=\"g\"} abc\n\
             quantum_stream_recovery_deleted_total{stream=\"a\",group=\"g\",evil=\"x\"} 7\n\
             quantum_stream_recovery_deleted_total{group=\"g\",stream=\"a\"} 7\n\
             quantum_stream_recovery_deleted_total{stream=\"a\\q\",group=\"g\"} 7\n\
             quantum_stream_recovery_dropped_total{stream=\"a\",group=\"g\"} NaN\n\
             quantum_stream_recovery_last_run_result{stream=\"a\",group=\"g\",result=\"bogus\"} 1\n\
             quantum_stream_recovery_quarantined_total 4\n\
             quantum_stream_recovery_quarantined_total{stream=\"a \\\"q\\\"\\n\",group=\"g\"} 4\n\
             other_metric 1\n",
        );
        assert_eq!(
            previous.keys().collect::<Vec<_>>(),
            ["quantum_stream_recovery_quarantined_total{stream=\"a \\\"q\\\"\\n\",group=\"g\"}"]
        );
        // The file before labels is not garbled, only not carried over.
        assert!(garbled_lines("quantum_stream_recovery_claimed_total 4\n").is_empty());
        assert_eq!(garbled_lines("other_metric 1\n").len(), 1);
    }

    /// promtool (package prometheus, as the integration tests) parses and
    /// lints a file with hostile names, every family and two targets.
    #[test]
    fn promtool_accepts_the_file() {
        let mut odd = target(
            "odd \"name\"\\with\nnewline",
            RunResult::Success,
            counts(1, 1, 0, 0),
        );
        odd.mode_known = Some(true);
        odd.observed = Some(TargetGauges {
            live: 2,
            zombie: 1,
            stuck: 0,
            recovered: Parked {
                entries: 3,
                oldest_idle_ms: 1_234_567,
            },
            quarantined: Parked::default(),
        });
        let text = render_metrics(
            &metrics(vec![odd, target("b", RunResult::Refused, None)]),
            &BTreeMap::new(),
        );
        assert!(text.contains(&format!(
            "{S}parked_oldest_idle_seconds{{stream=\"odd \\\"name\\\"\\\\with\\nnewline\",group=\"g\",role=\"target\"}} 1234.567\n"
        )));
        assert!(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.contains("{stream=\"") && l.contains("\",group=\"")));
        assert_eq!(
            parse_values(&text).len(),
            text.lines().filter(|l| !l.starts_with('#')).count()
        );
        // promtool reads such names from a real run in tests/many_targets.rs.
    }
}
