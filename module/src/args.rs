//! Argument parsing for QUANTUM.RECOVER. Pure: bytes and defaults in, a validated
//! request or an error naming the bad option out, so nothing runs on bad input.

use crate::text::quote;

/// Limits of the numeric options; the `quantum.*` configs use the same ranges.
pub const COUNT_RANGE: (i64, i64) = (1, 10_000);
pub const SCAN_RANGE: (i64, i64) = (1, 100_000);
pub const MIN_IDLE_RANGE: (i64, i64) = (1, i64::MAX);
pub const ZOMBIE_IDLE_RANGE: (i64, i64) = (1, i64::MAX);
pub const DELETE_LIMIT_RANGE: (i64, i64) = (0, 100_000);
pub const MAX_DELIVERIES_RANGE: (i64, i64) = (0, i64::MAX);

/// Defaults taken from the `quantum.*` configs at call time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub to: Vec<u8>,
    pub quarantine: Vec<u8>,
    pub mode_key: Vec<u8>,
    pub min_idle: i64,
    pub count: i64,
    pub scan: i64,
    pub zombie_idle: i64,
    pub delete_limit: i64,
    pub max_deliveries: i64,
}

/// A stream ID `ms-seq` (or `ms`, meaning `ms-0`), as CURSOR takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn parse(text: &[u8]) -> Option<StreamId> {
        let text = std::str::from_utf8(text).ok()?;
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        Some(StreamId {
            ms: parse_digits(ms)?,
            seq: parse_digits(seq)?,
        })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Plain decimal digits only: no sign, no spaces, no overflow.
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverRequest {
    pub key: Vec<u8>,
    pub group: Vec<u8>,
    pub to: Vec<u8>,
    pub quarantine: Vec<u8>,
    pub mode_key: Vec<u8>,
    /// Index in argv of the MODEKEY value, when given (for getkeys-api).
    pub mode_key_pos: Option<usize>,
    pub min_idle: i64,
    pub count: i64,
    pub scan: i64,
    pub cursor: Option<StreamId>,
    pub zombie_idle: i64,
    pub delete_limit: i64,
    pub max_deliveries: i64,
    pub dry_run: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    WrongArity,
    Invalid(String),
}

fn invalid(message: String) -> ArgError {
    ArgError::Invalid(format!("ERR {message}"))
}

fn parse_number(option: &str, value: &[u8], (min, max): (i64, i64)) -> Result<i64, ArgError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(parse_digits::<i64>)
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            invalid(format!(
                "{option} must be an integer from {min} to {max}, got {}",
                quote(value)
            ))
        })
}

fn non_empty(option: &str, value: &[u8]) -> Result<Vec<u8>, ArgError> {
    if value.is_empty() {
        return Err(invalid(format!("{option} must not be empty")));
    }
    Ok(value.to_vec())
}

/// Parses `QUANTUM.RECOVER key group [option ...]`; `argv[0]` is the command name.
pub fn parse_recover(argv: &[&[u8]], defaults: &Defaults) -> Result<RecoverRequest, ArgError> {
    if argv.len() < 3 {
        return Err(ArgError::WrongArity);
    }
    let mut request = RecoverRequest {
        key: argv[1].to_vec(),
        group: argv[2].to_vec(),
        to: defaults.to.clone(),
        quarantine: defaults.quarantine.clone(),
        mode_key: defaults.mode_key.clone(),
        mode_key_pos: None,
        min_idle: defaults.min_idle,
        count: defaults.count,
        scan: defaults.scan,
        cursor: None,
        zombie_idle: defaults.zombie_idle,
        delete_limit: defaults.delete_limit,
        max_deliveries: defaults.max_deliveries,
        dry_run: false,
    };
    let mut seen: Vec<String> = Vec::new();
    let mut explicit_scan = false;
    let mut i = 3;
    while i < argv.len() {
        let keyword = String::from_utf8_lossy(argv[i]).to_ascii_uppercase();
        if seen.contains(&keyword) {
            return Err(invalid(format!("{keyword} given more than once")));
        }
        let value = || {
            argv.get(i + 1)
                .copied()
                .ok_or_else(|| invalid(format!("{keyword} needs a value")))
        };
        match keyword.as_str() {
            "DRYRUN" => request.dry_run = true,
            "TO" => request.to = non_empty("TO", value()?)?,
            "QUARANTINE" => request.quarantine = non_empty("QUARANTINE", value()?)?,
            "MODEKEY" => {
                request.mode_key = non_empty("MODEKEY", value()?)?;
                request.mode_key_pos = Some(i + 1);
            }
            "MINIDLE" => request.min_idle = parse_number("MINIDLE", value()?, MIN_IDLE_RANGE)?,
            "COUNT" => request.count = parse_number("COUNT", value()?, COUNT_RANGE)?,
            "SCAN" => {
                request.scan = parse_number("SCAN", value()?, SCAN_RANGE)?;
                explicit_scan = true;
            }
            "ZOMBIEIDLE" => {
                request.zombie_idle = parse_number("ZOMBIEIDLE", value()?, ZOMBIE_IDLE_RANGE)?
            }
            "DELETELIMIT" => {
                request.delete_limit = parse_number("DELETELIMIT", value()?, DELETE_LIMIT_RANGE)?
            }
            "MAXDELIVERIES" => {
                request.max_deliveries =
                    parse_number("MAXDELIVERIES", value()?, MAX_DELIVERIES_RANGE)?
            }
            "CURSOR" => {
                let text = value()?;
                request.cursor = Some(StreamId::parse(text).ok_or_else(|| {
                    invalid(format!(
                        "CURSOR must be a stream ID like 1700000000000-0 (the cursor an earlier call returned), got {}",
                        quote(text)
                    ))
                })?);
            }
            _ => {
                return Err(invalid(format!(
                    "unknown option {} for QUANTUM.RECOVER",
                    quote(argv[i])
                )))
            }
        }
        i += if keyword == "DRYRUN" { 1 } else { 2 };
        seen.push(keyword);
    }
    if request.scan < request.count {
        let source = if explicit_scan {
            ""
        } else {
            " (from quantum.scan)"
        };
        return Err(invalid(format!(
            "SCAN {}{source} must be at least COUNT {}",
            request.scan, request.count
        )));
    }
    if request.to == request.quarantine {
        return Err(invalid(format!(
            "TO and QUARANTINE must name different consumers, both are {}",
            quote(&request.to)
        )));
    }
    Ok(request)
}

#[cfg(test)]
mod tests;
