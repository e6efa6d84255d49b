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
/// RETIRE's COUNT: a call at the top of the range holds Redis for about 100 ms (BENCHMARKS.md).
pub const RETIRE_COUNT_RANGE: (i64, i64) = (1, 100_000);
/// STATUS's LIMIT: consumers listed; the state counts always cover them all.
pub const LIMIT_RANGE: (i64, i64) = (1, 10_000);
pub const DEFAULT_LIMIT: i64 = 100;

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
    pub retire_count: i64,
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
pub enum ArgError {
    WrongArity,
    Invalid(String),
}

fn invalid(message: String) -> ArgError {
    ArgError::Invalid(format!("ERR {message}"))
}

/// The options after a command's fixed arguments, checked for unknown,
/// repeated and missing values; typed accessors check each value.
struct Options<'a> {
    /// `(KEYWORD, index of its value in argv)`; flags have no value.
    given: Vec<(String, Option<usize>)>,
    argv: &'a [&'a [u8]],
}

impl<'a> Options<'a> {
    fn collect(
        argv: &'a [&'a [u8]],
        first: usize,
        command: &str,
        valued: &[&str],
        flags: &[&str],
    ) -> Result<Self, ArgError> {
        let mut given: Vec<(String, Option<usize>)> = Vec::new();
        let mut i = first;
        while i < argv.len() {
            let keyword = String::from_utf8_lossy(argv[i]).to_ascii_uppercase();
            if given.iter().any(|(k, _)| *k == keyword) {
                return Err(invalid(format!("{keyword} given more than once")));
            }
            if flags.contains(&keyword.as_str()) {
                given.push((keyword, None));
                i += 1;
            } else if valued.contains(&keyword.as_str()) {
                if i + 1 >= argv.len() {
                    return Err(invalid(format!("{keyword} needs a value")));
                }
                given.push((keyword, Some(i + 1)));
                i += 2;
            } else {
                return Err(invalid(format!(
                    "unknown option {} for {command}",
                    quote(argv[i])
                )));
            }
        }
        Ok(Options { given, argv })
    }

    fn position(&self, keyword: &str) -> Option<usize> {
        self.given
            .iter()
            .find(|(k, _)| k == keyword)
            .and_then(|(_, pos)| *pos)
    }

    fn raw(&self, keyword: &str) -> Option<&'a [u8]> {
        self.position(keyword).map(|pos| self.argv[pos])
    }

    fn has(&self, keyword: &str) -> bool {
        self.given.iter().any(|(k, _)| k == keyword)
    }

    fn number(&self, keyword: &str, default: i64, (min, max): (i64, i64)) -> Result<i64, ArgError> {
        let Some(value) = self.raw(keyword) else {
            return Ok(default);
        };
        std::str::from_utf8(value)
            .ok()
            .and_then(parse_digits::<i64>)
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "{keyword} must be an integer from {min} to {max}, got {}",
                    quote(value)
                ))
            })
    }

    /// A consumer or key name: any bytes but empty.
    fn name(&self, keyword: &str, default: &[u8]) -> Result<Vec<u8>, ArgError> {
        match self.raw(keyword) {
            None => Ok(default.to_vec()),
            Some([]) => Err(invalid(format!("{keyword} must not be empty"))),
            Some(value) => Ok(value.to_vec()),
        }
    }

    fn stream_id(&self, keyword: &str) -> Result<Option<StreamId>, ArgError> {
        self.raw(keyword)
            .map(|value| {
                StreamId::parse(value).ok_or_else(|| {
                    invalid(format!(
                        "{keyword} must be a stream ID like 1700000000000-0 (the cursor an earlier call returned), got {}",
                        quote(value)
                    ))
                })
            })
            .transpose()
    }
}

/// The mode key: MODEKEY or the configured one, and where MODEKEY sits in argv (for getkeys-api).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeKey {
    pub name: Vec<u8>,
    pub argv_pos: Option<usize>,
}

impl ModeKey {
    fn from(options: &Options, defaults: &Defaults) -> Result<ModeKey, ArgError> {
        Ok(ModeKey {
            name: options.name("MODEKEY", &defaults.mode_key)?,
            argv_pos: options.position("MODEKEY"),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverRequest {
    pub key: Vec<u8>,
    pub group: Vec<u8>,
    pub to: Vec<u8>,
    pub quarantine: Vec<u8>,
    pub mode_key: ModeKey,
    pub min_idle: i64,
    pub count: i64,
    pub scan: i64,
    pub cursor: Option<StreamId>,
    pub zombie_idle: i64,
    pub delete_limit: i64,
    pub max_deliveries: i64,
    pub dry_run: bool,
}

/// Parses `QUANTUM.RECOVER key group [option ...]`; `argv[0]` is the command name.
pub fn parse_recover(argv: &[&[u8]], defaults: &Defaults) -> Result<RecoverRequest, ArgError> {
    if argv.len() < 3 {
        return Err(ArgError::WrongArity);
    }
    let options = Options::collect(
        argv,
        3,
        "QUANTUM.RECOVER",
        &[
            "TO",
            "MINIDLE",
            "COUNT",
            "SCAN",
            "CURSOR",
            "ZOMBIEIDLE",
            "DELETELIMIT",
            "MAXDELIVERIES",
            "QUARANTINE",
            "MODEKEY",
        ],
        &["DRYRUN"],
    )?;
    let request = RecoverRequest {
        key: argv[1].to_vec(),
        group: argv[2].to_vec(),
        to: options.name("TO", &defaults.to)?,
        quarantine: options.name("QUARANTINE", &defaults.quarantine)?,
        mode_key: ModeKey::from(&options, defaults)?,
        min_idle: options.number("MINIDLE", defaults.min_idle, MIN_IDLE_RANGE)?,
        count: options.number("COUNT", defaults.count, COUNT_RANGE)?,
        scan: options.number("SCAN", defaults.scan, SCAN_RANGE)?,
        cursor: options.stream_id("CURSOR")?,
        zombie_idle: options.number("ZOMBIEIDLE", defaults.zombie_idle, ZOMBIE_IDLE_RANGE)?,
        delete_limit: options.number("DELETELIMIT", defaults.delete_limit, DELETE_LIMIT_RANGE)?,
        max_deliveries: options.number(
            "MAXDELIVERIES",
            defaults.max_deliveries,
            MAX_DELIVERIES_RANGE,
        )?,
        dry_run: options.has("DRYRUN"),
    };
    if request.scan < request.count {
        let source = if options.has("SCAN") {
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRequest {
    pub key: Vec<u8>,
    pub group: Vec<u8>,
    pub zombie_idle: i64,
    pub mode_key: ModeKey,
    pub limit: i64,
}

/// Parses `QUANTUM.STATUS key group [ZOMBIEIDLE ms] [MODEKEY key] [LIMIT n]`.
pub fn parse_status(argv: &[&[u8]], defaults: &Defaults) -> Result<StatusRequest, ArgError> {
    if argv.len() < 3 {
        return Err(ArgError::WrongArity);
    }
    let options = Options::collect(
        argv,
        3,
        "QUANTUM.STATUS",
        &["ZOMBIEIDLE", "MODEKEY", "LIMIT"],
        &[],
    )?;
    Ok(StatusRequest {
        key: argv[1].to_vec(),
        group: argv[2].to_vec(),
        zombie_idle: options.number("ZOMBIEIDLE", defaults.zombie_idle, ZOMBIE_IDLE_RANGE)?,
        mode_key: ModeKey::from(&options, defaults)?,
        limit: options.number("LIMIT", DEFAULT_LIMIT, LIMIT_RANGE)?,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetireRequest {
    pub key: Vec<u8>,
    pub group: Vec<u8>,
    pub consumer: Vec<u8>,
    pub to: Vec<u8>,
    pub mode_key: ModeKey,
    pub count: i64,
}

/// Parses `QUANTUM.RETIRE key group consumer [TO consumer] [COUNT n] [MODEKEY key]`.
pub fn parse_retire(argv: &[&[u8]], defaults: &Defaults) -> Result<RetireRequest, ArgError> {
    if argv.len() < 4 {
        return Err(ArgError::WrongArity);
    }
    let options = Options::collect(argv, 4, "QUANTUM.RETIRE", &["TO", "COUNT", "MODEKEY"], &[])?;
    let request = RetireRequest {
        key: argv[1].to_vec(),
        group: argv[2].to_vec(),
        consumer: argv[3].to_vec(),
        to: options.name("TO", &defaults.to)?,
        mode_key: ModeKey::from(&options, defaults)?,
        count: options.number("COUNT", defaults.retire_count, RETIRE_COUNT_RANGE)?,
    };
    if request.consumer.is_empty() {
        return Err(invalid("consumer must not be empty".into()));
    }
    if request.consumer == request.to {
        return Err(invalid(format!(
            "the retiring consumer and TO must differ, both are {}",
            quote(&request.to)
        )));
    }
    Ok(request)
}

#[cfg(test)]
mod tests;
