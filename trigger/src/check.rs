//! `quantum-stream-recover check`: one status line in the monitoring-plugins
//! format (Nagios, Icinga, Consul, systemd-based checks) over every target,
//! `QUANTUM-STREAM-RECOVER <STATE> - <summary> | <perfdata>`, and its exit code:
//! 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
//!
//! Per target: Redis unreachable or the module missing is UNKNOWN; the stream
//! or group missing is WARNING (the GroupMissing alert's severity); anything in
//! QUARANTINE is at least WARNING; the first entry TO holds idle longer than
//! `--parked-critical` is CRITICAL, longer than `--parked-warning` WARNING.
//! The worst target decides, in monitoring-plugins' `max_state_alt` order
//! (CRITICAL > WARNING > UNKNOWN > OK): a target that could not be asked does
//! not hide one known to be critical. No target at all is UNKNOWN: a check
//! that looked at nothing must not be green.

use std::time::Duration;

/// A check's result, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Warning => "WARNING",
            Health::Critical => "CRITICAL",
            Health::Unknown => "UNKNOWN",
        }
    }

    /// Rank in monitoring-plugins' `max_state_alt`: the higher is reported.
    fn rank(self) -> u8 {
        match self {
            Health::Ok => 0,
            Health::Unknown => 1,
            Health::Warning => 2,
            Health::Critical => 3,
        }
    }

    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

/// What the check found out about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Redis could not be asked (connection, credentials, timeout): why.
    Unreachable(String),
    /// The node serving the stream has no `quantum` module loaded.
    ModuleMissing,
    /// The stream or the group does not exist.
    Absent,
    Seen(Seen),
}

/// A group the check could read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub pending: u64,
    /// Entries TO (the recovery consumer) holds, and its first one's idle (ms).
    pub recovered: u64,
    pub recovered_oldest_idle_ms: u64,
    /// Entries QUARANTINE holds.
    pub quarantined: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFinding {
    pub stream: String,
    pub group: String,
    /// What a failure finding the targets concerns, as its log line says it
    /// (`discover="…" node=…`): such an entry is no target.
    pub scope: Option<String>,
    pub finding: Finding,
}

/// `--parked-warning` / `--parked-critical`: how long TO's first entry may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    warning: Duration,
    critical: Duration,
}

pub const DEFAULT_PARKED_WARNING: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_PARKED_CRITICAL: Duration = Duration::from_secs(60 * 60);

impl Thresholds {
    /// The warning must not be above the critical threshold.
    pub fn new(warning: Duration, critical: Duration) -> Result<Thresholds, String> {
        if warning > critical {
            return Err(format!(
                "--parked-warning ({}) is above --parked-critical ({})",
                humantime::format_duration(warning),
                humantime::format_duration(critical)
            ));
        }
        Ok(Thresholds { warning, critical })
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warning: DEFAULT_PARKED_WARNING,
            critical: DEFAULT_PARKED_CRITICAL,
        }
    }
}

/// The check's outcome: the exit code and the one line to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub health: Health,
    pub line: String,
}

/// Most problem targets the summary names; the perfdata has them all.
const NAMED_IN_SUMMARY: usize = 5;

/// One target's state and, if not OK, why.
fn judge(finding: &Finding, limits: &Thresholds) -> (Health, Option<String>) {
    let seen = match finding {
        Finding::Unreachable(why) => return (Health::Unknown, Some(text(why))),
        Finding::ModuleMissing => {
            return (Health::Unknown, Some("module quantum not loaded".into()))
        }
        Finding::Absent => return (Health::Warning, Some("stream or group missing".into())),
        Finding::Seen(seen) => seen,
    };
    let waited = Duration::from_millis(seen.recovered_oldest_idle_ms);
    let mut health = Health::Ok;
    let mut why = Vec::new();
    if seen.recovered > 0 && waited > limits.warning {
        health = match waited > limits.critical {
            true => Health::Critical,
            false => Health::Warning,
        };
        why.push(format!(
            "{} recovered entries not adopted for {}",
            seen.recovered,
            humantime::format_duration(Duration::from_secs(waited.as_secs()))
        ));
    }
    if seen.quarantined > 0 {
        if health == Health::Ok {
            health = Health::Warning;
        }
        why.push(format!("{} entries in quarantine", seen.quarantined));
    }
    (health, (!why.is_empty()).then(|| why.join(", ")))
}

/// Text for the summary: one line, no `|` (it starts the perfdata), and no
/// bidirectional or invisible format character (escaped as in the log).
fn text(s: &str) -> String {
    s.escape_debug()
        .to_string()
        .chars()
        .map(|c| match crate::report::is_format_char(c) {
            true => format!("\\u{{{:x}}}", u32::from(c)),
            false => c.to_string(),
        })
        .collect::<String>()
        .replace('|', "\\x7c")
}

/// A name inside a perfdata label: `=` and `'` (which monitoring-plugins'
/// labels cannot hold), `|` (it starts the perfdata), `/` (it separates stream
/// from group), `\\` and control characters become `\\xNN`, so the label stays
/// valid and two targets never share one.
fn label_part(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '=' | '\'' | '|' | '/' | '\\' => format!("\\x{:02x}", u32::from(c)),
            // Cc: U+0000-U+001F and U+007F-U+009F, two hex digits each.
            c if c.is_control() => format!("\\x{:02x}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// `'label'=value[UOM];warn;crit;min;max` for one target's readable group:
/// labels `'stream/group what'`; the parked age and its thresholds in whole
/// milliseconds (`ms`), as the thresholds were given, with no rounding.
fn perfdata(target: &TargetFinding, seen: &Seen, limits: &Thresholds) -> String {
    let stream_group = format!(
        "{}/{}",
        label_part(&target.stream),
        label_part(&target.group)
    );
    let name = |what: &str| format!("'{stream_group} {what}'");
    format!(
        "{}={};;;0 {}={};;;0 {}={}ms;{};{};0 {}={};0;;0",
        name("pending"),
        seen.pending,
        name("recovered"),
        seen.recovered,
        name("recovered_oldest"),
        seen.recovered_oldest_idle_ms,
        limits.warning.as_millis(),
        limits.critical.as_millis(),
        name("quarantined"),
        seen.quarantined,
    )
}

/// The check over every target.
pub fn evaluate(targets: &[TargetFinding], limits: &Thresholds) -> CheckResult {
    let line = |health: Health, summary: String, perf: Vec<String>| CheckResult {
        health,
        line: match perf.is_empty() {
            true => format!("QUANTUM-STREAM-RECOVER {} - {summary}", health.name()),
            false => format!(
                "QUANTUM-STREAM-RECOVER {} - {summary} | {}",
                health.name(),
                perf.join(" ")
            ),
        },
    };
    if targets.is_empty() {
        return line(Health::Unknown, "no target to check".into(), vec![]);
    }
    let mut worst = Health::Ok;
    let mut problems: Vec<(Health, String)> = Vec::new();
    let mut perf = Vec::new();
    for target in targets {
        let (health, why) = judge(&target.finding, limits);
        if health.rank() > worst.rank() {
            worst = health;
        }
        if let Some(why) = why {
            // A failure finding targets: its scope is escaped already.
            let who = match &target.scope {
                Some(scope) => scope.replace('|', "\\x7c"),
                None => format!("{}/{}", text(&target.stream), text(&target.group)),
            };
            problems.push((health, format!("{who}: {why}")));
        }
        if let Finding::Seen(seen) = &target.finding {
            perf.push(perfdata(target, seen, limits));
        }
    }
    let finding_failed = targets.iter().filter(|t| t.scope.is_some()).count();
    let real = targets.len() - finding_failed;
    let summary = match problems.is_empty() {
        true => format!("{real} targets, nothing parked too long, nothing in quarantine"),
        false => {
            // The worst first; the order within a state is the targets' (sorted).
            problems.sort_by_key(|(health, _)| std::cmp::Reverse(health.rank()));
            let shown: Vec<&str> = problems
                .iter()
                .take(NAMED_IN_SUMMARY)
                .map(|(_, p)| p.as_str())
                .collect();
            let more = match problems.len().saturating_sub(NAMED_IN_SUMMARY) {
                0 => String::new(),
                n => format!("; and {n} more"),
            };
            let finding = match finding_failed {
                0 => String::new(),
                n => format!(", {n} failure finding targets"),
            };
            format!(
                "{} of {real} targets{finding}: {}{more}",
                problems.len() - finding_failed,
                shown.join("; ")
            )
        }
    };
    line(worst, summary, perf)
}

#[cfg(test)]
mod tests;
