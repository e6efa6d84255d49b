//! The per-target gauges of the metrics file (node_exporter textfile format):
//! every series carries `stream` and `group` labels, so one file serves every
//! target of a run and the alert rules fire per target.
//!
//! - `pending`, `consumers`: the group after the run.
//! - `consumers_by_state{state="live|zombie|stuck"}`: QUANTUM.STATUS `states`.
//! - `parked_entries{role="target|quarantine"}`: entries held by TO (recovered,
//!   waiting for a live consumer to adopt them) and by QUARANTINE (poison).
//! - `parked_oldest_idle_seconds{role=...}`: idle of the first (lowest ID)
//!   entry each holds, from XPENDING; 0 when it holds none.
//!
//! Label values are escaped as the text format says (`\\`, `\"`, `\n`):
//! stream and group names are the client's and may hold any byte.

use quantum_protocol::state;
use std::fmt::Write;

const PREFIX: &str = "quantum_stream_recovery_";

/// Entries one parking consumer (TO or QUARANTINE) holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parked {
    pub entries: u64,
    /// Idle of its first pending entry, in ms; 0 when it holds none.
    pub oldest_idle_ms: u64,
}

/// One target's gauges after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGauges {
    pub stream: String,
    pub group: String,
    pub pending: u64,
    pub consumers: u64,
    pub live: u64,
    pub zombie: u64,
    pub stuck: u64,
    /// Held by TO (the recovery consumer).
    pub recovered: Parked,
    /// Held by QUARANTINE.
    pub quarantined: Parked,
}

/// `(name, help)` of every per-target gauge, in file order.
const GAUGES: [(&str, &str); 5] = [
    ("pending", "The group's pending entries after the last run."),
    ("consumers", "The group's consumers after the last run."),
    (
        "consumers_by_state",
        "The group's consumers per state (live, zombie: idle with nothing pending, stuck: idle holding entries) after the last run.",
    ),
    (
        "parked_entries",
        "Entries held by the recovery consumer (role=target: recovered, not yet adopted) or the quarantine consumer (role=quarantine: poison entries).",
    ),
    (
        "parked_oldest_idle_seconds",
        "Idle time of the first entry the recovery (role=target) or quarantine (role=quarantine) consumer holds; 0 when it holds none.",
    ),
];

/// A label value in the text format: backslash, double quote and line feed escaped.
pub fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `stream="…",group="…"`, escaped: the labels every per-target series carries
/// (report.rs puts them on the per-target counters and results too).
pub fn target_labels(stream: &str, group: &str) -> String {
    format!(
        "stream=\"{}\",group=\"{}\"",
        label_value(stream),
        label_value(group)
    )
}

/// One gauge's series for one target: `(extra labels, value)`.
fn series(name: &str, target: &TargetGauges) -> Vec<(String, String)> {
    let seconds = |ms: u64| format!("{:.3}", ms as f64 / 1000.0);
    let role = |role: &str| format!(",role=\"{role}\"");
    match name {
        "pending" => vec![(String::new(), target.pending.to_string())],
        "consumers" => vec![(String::new(), target.consumers.to_string())],
        "consumers_by_state" => [
            (state::LIVE, target.live),
            (state::ZOMBIE, target.zombie),
            (state::STUCK, target.stuck),
        ]
        .iter()
        .map(|(state, n)| (format!(",state=\"{state}\""), n.to_string()))
        .collect(),
        "parked_entries" => vec![
            (role(state::TARGET), target.recovered.entries.to_string()),
            (
                role(state::QUARANTINE),
                target.quarantined.entries.to_string(),
            ),
        ],
        "parked_oldest_idle_seconds" => vec![
            (
                role(state::TARGET),
                seconds(target.recovered.oldest_idle_ms),
            ),
            (
                role(state::QUARANTINE),
                seconds(target.quarantined.oldest_idle_ms),
            ),
        ],
        _ => unreachable!("every gauge in GAUGES has its series"),
    }
}

/// The per-target gauges of every target, each family's HELP and TYPE once;
/// nothing for no target.
pub fn render_target_gauges(targets: &[TargetGauges]) -> String {
    let mut out = String::new();
    if targets.is_empty() {
        return out;
    }
    for (name, help) in GAUGES {
        let full = format!("{PREFIX}{name}");
        let _ = write!(out, "# HELP {full} {help}\n# TYPE {full} gauge\n");
        for target in targets {
            let labels = target_labels(&target.stream, &target.group);
            for (extra, value) in series(name, target) {
                let _ = writeln!(out, "{full}{{{labels}{extra}}} {value}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<TargetGauges> {
        vec![
            TargetGauges {
                stream: "quantum:stream:trade.intent".into(),
                group: "quantum:group:execution".into(),
                pending: 12,
                consumers: 4,
                live: 2,
                zombie: 1,
                stuck: 1,
                recovered: Parked {
                    entries: 3,
                    oldest_idle_ms: 1_234_567,
                },
                quarantined: Parked::default(),
            },
            TargetGauges {
                stream: "odd \"name\"\\with\nnewline".into(),
                group: "g".into(),
                quarantined: Parked {
                    entries: 1,
                    oldest_idle_ms: 5,
                },
                ..TargetGauges::default()
            },
        ]
    }

    #[test]
    fn label_values_escape_what_the_format_escapes() {
        assert_eq!(label_value("plain:name.1"), "plain:name.1");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(
            target_labels("s\"", "g\\"),
            "stream=\"s\\\"\",group=\"g\\\\\""
        );
    }

    #[test]
    fn every_series_carries_stream_and_group() {
        let text = render_target_gauges(&sample());
        let first = "stream=\"quantum:stream:trade.intent\",group=\"quantum:group:execution\"";
        for line in [
            format!("quantum_stream_recovery_pending{{{first}}} 12"),
            format!("quantum_stream_recovery_consumers{{{first}}} 4"),
            format!("quantum_stream_recovery_consumers_by_state{{{first},state=\"live\"}} 2"),
            format!("quantum_stream_recovery_consumers_by_state{{{first},state=\"zombie\"}} 1"),
            format!("quantum_stream_recovery_consumers_by_state{{{first},state=\"stuck\"}} 1"),
            format!("quantum_stream_recovery_parked_entries{{{first},role=\"target\"}} 3"),
            format!("quantum_stream_recovery_parked_entries{{{first},role=\"quarantine\"}} 0"),
            format!(
                "quantum_stream_recovery_parked_oldest_idle_seconds{{{first},role=\"target\"}} 1234.567"
            ),
            "quantum_stream_recovery_parked_entries{stream=\"odd \\\"name\\\"\\\\with\\nnewline\",group=\"g\",role=\"quarantine\"} 1".into(),
            "quantum_stream_recovery_parked_oldest_idle_seconds{stream=\"odd \\\"name\\\"\\\\with\\nnewline\",group=\"g\",role=\"quarantine\"} 0.005".into(),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} missing in\n{text}");
        }
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 2 * 9);
        assert!(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.contains("{stream=\"") && l.contains("\",group=\"")));
        assert_eq!(text.matches("# TYPE ").count(), GAUGES.len());
        assert_eq!(render_target_gauges(&[]), "");
    }

    /// promtool (package prometheus, as the integration tests) parses and lints the file.
    #[test]
    fn promtool_accepts_the_file() {
        let text = render_target_gauges(&sample());
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics:\n{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
