//! How the config file's values are read: durations in the command line's
//! syntax (a TOML string like "60s", or an integer of milliseconds), numbers
//! within the module's ranges. Each error names the key, since toml reports
//! only where the value is.

use crate::cli::{parse_deadline, parse_duration_ms};
use quantum_protocol::{range, Range};
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A duration as TOML writes it: `"250ms"`, `"60s"`, `"1h"`, or an integer of ms.
struct DurationText(&'static str);

impl Visitor<'_> for DurationText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: a duration like \"250ms\", \"60s\", \"1h\" or an integer of milliseconds",
            self.0
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
}

fn duration_text<'de, D: Deserializer<'de>>(d: D, key: &'static str) -> Result<String, D::Error> {
    d.deserialize_any(DurationText(key))
}

/// A duration the module takes in milliseconds (MINIDLE, ZOMBIEIDLE).
fn duration_ms<'de, D: Deserializer<'de>>(
    d: D,
    key: &'static str,
) -> Result<Option<u64>, D::Error> {
    let text = duration_text(d, key)?;
    parse_duration_ms(&text)
        .map(Some)
        .map_err(|e| de::Error::custom(format!("{key}: {e}")))
}

pub fn min_idle<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    duration_ms(d, "min-idle")
}

pub fn zombie_idle<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    duration_ms(d, "zombie-idle")
}

pub fn deadline<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = duration_text(d, "deadline")?;
    parse_deadline(&text)
        .map(Some)
        .map_err(|e| de::Error::custom(format!("deadline: {e}")))
}

/// `dead-letter`: a key name; empty is refused here, where the line is known,
/// rather than by the module at run time.
pub fn dead_letter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let key: String = serde::Deserialize::deserialize(d)
        .map_err(|e: D::Error| de::Error::custom(format!("dead-letter: {e}")))?;
    match key.is_empty() {
        true => Err(de::Error::custom(
            "dead-letter: must not be empty (leave it out for no dead-letter stream)",
        )),
        false => Ok(Some(key)),
    }
}

/// An integer within `range`, named `key` in the error.
fn ranged<'de, D: Deserializer<'de>>(
    d: D,
    key: &'static str,
    range: Range,
) -> Result<Option<u64>, D::Error> {
    let n: i64 = serde::Deserialize::deserialize(d)
        .map_err(|e: D::Error| de::Error::custom(format!("{key}: {e}")))?;
    match range.contains(n) {
        true => Ok(Some(n as u64)),
        false => Err(de::Error::custom(format!(
            "{key} must be from {} to {}, not {n}",
            range.min, range.max
        ))),
    }
}

/// Readers of the numeric options, one per key, each with the module's range.
macro_rules! ranged_readers {
    ($($reader:ident: $key:literal in $range:expr;)*) => {$(
        pub fn $reader<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            ranged(d, $key, $range)
        }
    )*};
}

ranged_readers! {
    count: "count" in range::COUNT;
    scan: "scan" in range::SCAN;
    delete_limit: "delete-limit" in range::DELETE_LIMIT;
    max_deliveries: "max-deliveries" in range::MAX_DELIVERIES;
    retire_count: "retire-count" in range::RETIRE_COUNT;
    limit: "limit" in range::STATUS_LIMIT;
    max_batches: "max-batches" in MAX_BATCHES;
    max_targets: "max-targets" in MAX_TARGETS;
}

/// `--max-batches`: at least one, as on the command line.
const MAX_BATCHES: Range = Range {
    min: 1,
    max: i64::MAX,
};

/// `max-targets`: a run's targets share one deadline, and a discovery past
/// this many is more likely a pattern too wide than a real install.
pub const MAX_TARGETS: Range = Range {
    min: 1,
    max: 100_000,
};
