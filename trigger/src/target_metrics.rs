//! The per-target labels of the metrics file (node_exporter textfile format)
//! and the gauges read from QUANTUM.STATUS after a run (metrics.rs writes
//! them with the rest): every series carries `stream` and `group` labels, so
//! one file serves every target of a run and the alert rules fire per target.
//!
//! - `consumers_by_state{state="live|zombie|stuck"}`: QUANTUM.STATUS `states`.
//! - `parked_entries{role="target|quarantine"}`: entries held by TO (recovered,
//!   waiting for a live consumer to adopt them) and by QUARANTINE (poison).
//! - `parked_oldest_idle_seconds{role=...}`: idle of the first (lowest ID)
//!   entry each holds (STATUS's `parked`, from XPENDING); 0 when it holds none.
//!
//! Label values are escaped as the text format says (`\\`, `\"`, `\n`):
//! stream and group names are the client's and may hold any byte.

use crate::reply::StatusReport;
use quantum_protocol::state;

/// Entries one parking consumer (TO or QUARANTINE) holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parked {
    pub entries: u64,
    /// Idle of its first pending entry, in ms; 0 when it holds none.
    pub oldest_idle_ms: u64,
}

/// One target's gauges from QUANTUM.STATUS after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGauges {
    pub live: u64,
    pub zombie: u64,
    pub stuck: u64,
    /// Held by TO (the recovery consumer).
    pub recovered: Parked,
    /// Held by QUARANTINE.
    pub quarantined: Parked,
}

impl TargetGauges {
    /// From a STATUS reply; none from a module whose STATUS has no `parked`.
    pub fn from_status(report: &StatusReport) -> Option<TargetGauges> {
        let parked = report.parked.as_ref()?;
        let count = |name: &str| {
            report
                .states
                .iter()
                .find(|s| s.state == name)
                .map_or(0, |s| s.count.max(0) as u64)
        };
        let held = |by: &crate::reply::ParkedBy| Parked {
            entries: by.pending.max(0) as u64,
            oldest_idle_ms: by.oldest_idle_ms.unwrap_or(0).max(0) as u64,
        };
        Some(TargetGauges {
            live: count(state::LIVE),
            zombie: count(state::ZOMBIE),
            stuck: count(state::STUCK),
            recovered: held(&parked.target),
            quarantined: held(&parked.quarantine),
        })
    }
}

pub const BY_STATE: &str = "consumers_by_state";
pub const BY_STATE_HELP: &str = "The group's consumers per state (live, zombie: idle with nothing pending, stuck: idle holding entries) after the last run.";
pub const PARKED_ENTRIES: &str = "parked_entries";
pub const PARKED_ENTRIES_HELP: &str = "Entries held by the recovery consumer (role=target: recovered, not yet adopted) or the quarantine consumer (role=quarantine: poison entries).";
pub const PARKED_OLDEST: &str = "parked_oldest_idle_seconds";
pub const PARKED_OLDEST_HELP: &str = "Idle time of the first entry the recovery (role=target) or quarantine (role=quarantine) consumer holds; 0 when it holds none.";

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

/// `stream="…",group="…"`, escaped: the labels every per-target series carries.
pub fn target_labels(stream: &str, group: &str) -> String {
    format!(
        "stream=\"{}\",group=\"{}\"",
        label_value(stream),
        label_value(group)
    )
}

/// The gauges' series for one target: `(name, extra labels, value)`.
pub fn series(target: &TargetGauges) -> Vec<(&'static str, String, String)> {
    let seconds = |ms: u64| format!("{:.3}", ms as f64 / 1000.0);
    let role = |role: &str| format!(",role=\"{role}\"");
    let by_state = [
        (state::LIVE, target.live),
        (state::ZOMBIE, target.zombie),
        (state::STUCK, target.stuck),
    ]
    .map(|(state, n)| (BY_STATE, format!(",state=\"{state}\""), n.to_string()));
    let parked = [
        (state::TARGET, &target.recovered),
        (state::QUARANTINE, &target.quarantined),
    ]
    .into_iter()
    .flat_map(|(name, held)| {
        [
            (PARKED_ENTRIES, role(name), held.entries.to_string()),
            (PARKED_OLDEST, role(name), seconds(held.oldest_idle_ms)),
        ]
    });
    by_state.into_iter().chain(parked).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn every_state_and_role_has_its_series() {
        let gauges = TargetGauges {
            live: 2,
            zombie: 1,
            stuck: 1,
            recovered: Parked {
                entries: 3,
                oldest_idle_ms: 1_234_567,
            },
            quarantined: Parked::default(),
        };
        let series = series(&gauges);
        let has = |name: &str, extra: &str, value: &str| {
            series
                .iter()
                .any(|(n, e, v)| (*n, e.as_str(), v.as_str()) == (name, extra, value))
        };
        assert!(has(BY_STATE, ",state=\"live\"", "2"));
        assert!(has(BY_STATE, ",state=\"zombie\"", "1"));
        assert!(has(BY_STATE, ",state=\"stuck\"", "1"));
        assert!(has(PARKED_ENTRIES, ",role=\"target\"", "3"));
        assert!(has(PARKED_OLDEST, ",role=\"target\"", "1234.567"));
        assert!(has(PARKED_ENTRIES, ",role=\"quarantine\"", "0"));
        assert!(has(PARKED_OLDEST, ",role=\"quarantine\"", "0.000"));
        assert_eq!(series.len(), 7);
    }
}
