//! The `--metrics-file` textfile for node_exporter: this run's values added
//! to the previous file's, written atomically under a lock.

use crate::files::{self, Symlink};
use crate::report::RunResult;
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

const PREFIX: &str = "quantum_stream_recovery_";

/// What this run measured. Whatever it could not measure (counters when the
/// run did not reach the module on a primary, the last success after a
/// failure) is carried over from the previous file, so a failed run never
/// resets a series.
pub struct Metrics {
    pub result: RunResult,
    pub started_unix_s: f64,
    pub duration_s: f64,
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

/// `(name, help, type)` of every metric, in file order.
const SERIES: [(&str, &str, &str); 11] = [
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
];

/// A textfile's values: `series (name and labels) -> value`, only this
/// trigger's own series with a finite number: a corrupt line must not be
/// carried into every later file (node_exporter drops a file it cannot parse).
fn parse_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, value)| {
            known_series(series) && value.parse::<f64>().is_ok_and(f64::is_finite)
        })
        .map(|(series, value)| (series.to_string(), value.to_string()))
        .collect()
}

fn known_series(series: &str) -> bool {
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
    let mut set = |name: &str, value: String| {
        values.insert(format!("{PREFIX}{name}"), value);
    };
    if let Some(counters) = metrics.counters {
        for (name, added) in counters.by_series() {
            let before = previous
                .get(&format!("{PREFIX}{name}"))
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map_or(0, |v| v as u64);
            set(name, before.saturating_add(added).to_string());
        }
    }
    set(
        "last_run_timestamp_seconds",
        format!("{:.3}", metrics.started_unix_s),
    );
    if metrics.result == RunResult::Success {
        set(
            "last_success_timestamp_seconds",
            format!("{:.3}", metrics.started_unix_s),
        );
    }
    set(
        "last_run_duration_seconds",
        format!("{:.6}", metrics.duration_s),
    );
    for result in RunResult::ALL {
        let flag = u8::from(result == metrics.result);
        set(
            &format!("last_run_result{{result=\"{}\"}}", result.as_str()),
            flag.to_string(),
        );
    }
    if let Some(gauges) = metrics.gauges {
        set("pending", gauges.pending.to_string());
        set("consumers", gauges.consumers.to_string());
    }
    if let Some(known) = metrics.mode_known {
        set("mode_known", u8::from(known).to_string());
    }

    let mut out = String::new();
    for (name, help, kind) in SERIES {
        let full = format!("{PREFIX}{name}");
        let lines: Vec<String> = values
            .iter()
            .filter(|(series, _)| *series == &full || series.starts_with(&format!("{full}{{")))
            .map(|(series, value)| format!("{series} {value}\n"))
            .collect();
        if !lines.is_empty() {
            out.push_str(&format!("# HELP {full} {help}\n# TYPE {full} {kind}\n"));
            out.extend(lines);
        }
    }
    out
}

/// The most of a previous metrics file read: it is about 2 KiB.
const MAX_METRICS_FILE: u64 = 1 << 20;

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
        // A FIFO, a device or a huge file where the metrics go: refused (73).
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::InvalidData) => {
            return Err(e)
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

    fn counts(claimed: u64, quarantined: u64, dropped: u64, deleted: u64) -> Option<Counts> {
        Some(Counts {
            claimed,
            quarantined,
            dropped,
            deleted,
        })
    }

    fn metrics(result: RunResult, counters: Option<Counts>) -> Metrics {
        Metrics {
            result,
            started_unix_s: 1_700_000_000.5,
            duration_s: 0.002,
            counters,
            gauges: counters.map(|_| Gauges {
                pending: 3,
                consumers: 2,
            }),
            mode_known: None,
        }
    }

    #[test]
    fn counters_add_each_run_and_a_failed_run_keeps_them_and_the_last_success() {
        let first = render_metrics(
            &metrics(RunResult::Success, counts(1, 2, 3, 4)),
            &BTreeMap::new(),
        );
        assert!(first.contains("quantum_stream_recovery_claimed_total 1\n"));
        assert!(first
            .contains("quantum_stream_recovery_last_success_timestamp_seconds 1700000000.500\n"));
        assert!(first.contains("quantum_stream_recovery_last_run_result{result=\"success\"} 1\n"));
        assert!(first.contains("# TYPE quantum_stream_recovery_deleted_total counter\n"));

        let previous = parse_values(&first);
        let added = render_metrics(&metrics(RunResult::Success, counts(10, 0, 0, 1)), &previous);
        assert!(added.contains("quantum_stream_recovery_claimed_total 11\n"));
        assert!(added.contains("quantum_stream_recovery_deleted_total 5\n"));
        let mut failed = metrics(RunResult::Error, None);
        failed.started_unix_s = 1_700_000_100.0;
        let second = render_metrics(&failed, &previous);
        assert!(second.contains("quantum_stream_recovery_claimed_total 1\n"));
        assert!(second
            .contains("quantum_stream_recovery_last_success_timestamp_seconds 1700000000.500\n"));
        assert!(
            second.contains("quantum_stream_recovery_last_run_timestamp_seconds 1700000100.000\n")
        );
        assert!(second.contains("quantum_stream_recovery_last_run_result{result=\"error\"} 1\n"));
        assert!(second.contains("quantum_stream_recovery_last_run_result{result=\"success\"} 0\n"));
    }

    #[test]
    fn only_well_formed_series_of_this_trigger_are_carried_over() {
        let previous = parse_values(
            "quantum_stream_recovery_claimed_total abc\n\
             quantum_stream_recovery_deleted_total{evil=\"x\"} 7\n\
             quantum_stream_recovery_dropped_total NaN\n\
             quantum_stream_recovery_quarantined_total 4\n\
             other_metric 1\n",
        );
        assert_eq!(
            previous.keys().collect::<Vec<_>>(),
            ["quantum_stream_recovery_quarantined_total"]
        );
        let text = render_metrics(&metrics(RunResult::Error, None), &previous);
        assert!(!text.contains("abc") && !text.contains("evil") && !text.contains("NaN"));
        assert!(text.contains("quantum_stream_recovery_quarantined_total 4\n"));
    }
}
