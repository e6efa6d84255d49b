//! Argument parsing for QUANTUM.RECOVER, STATUS and RETIRE. Pure: bytes and
//! defaults in, a validated request or an error naming the bad option out, so
//! nothing runs on bad input.

use crate::text::quote;
use quantum_protocol::{command, config, error, keyword as kw, range, Range};

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
    /// Empty: no dead-letter stream.
    pub dead_letter: Vec<u8>,
    pub dead_letter_maxlen: i64,
}

/// A stream ID `ms-seq` (or `ms`, meaning `ms-0`), as CURSOR takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    ArgError::Invalid(format!("{} {message}", error::ERR))
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

    fn number(&self, keyword: &str, default: i64, range: Range) -> Result<i64, ArgError> {
        let Some(value) = self.raw(keyword) else {
            return Ok(default);
        };
        std::str::from_utf8(value)
            .ok()
            .and_then(parse_digits::<i64>)
            .filter(|&n| range.contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "{keyword} must be an integer from {} to {}, got {}",
                    range.min,
                    range.max,
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
    /// MODEKEY if given, else `configured` (`quantum.mode-key`).
    fn parse(options: &Options, configured: &[u8]) -> Result<ModeKey, ArgError> {
        Ok(ModeKey {
            name: options.name(kw::MODEKEY, configured)?,
            argv_pos: options.position(kw::MODEKEY),
        })
    }
}

/// The dead-letter stream: DEADLETTER or the configured one, where DEADLETTER
/// sits in argv (for getkeys-api), and the approximate MAXLEN kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub name: Vec<u8>,
    pub argv_pos: Option<usize>,
    pub maxlen: i64,
}

impl DeadLetter {
    /// DEADLETTER if given, else `quantum.dead-letter` unless it is empty (off).
    fn parse(options: &Options, defaults: &Defaults) -> Result<Option<DeadLetter>, ArgError> {
        let name = options.name(kw::DEADLETTER, &defaults.dead_letter)?;
        Ok((!name.is_empty()).then(|| DeadLetter {
            name,
            argv_pos: options.position(kw::DEADLETTER),
            maxlen: defaults.dead_letter_maxlen,
        }))
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
    /// `None`: quarantined entries are not copied anywhere.
    pub dead_letter: Option<DeadLetter>,
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
        command::RECOVER,
        &[
            kw::TO,
            kw::MINIDLE,
            kw::COUNT,
            kw::SCAN,
            kw::CURSOR,
            kw::ZOMBIEIDLE,
            kw::DELETELIMIT,
            kw::MAXDELIVERIES,
            kw::QUARANTINE,
            kw::MODEKEY,
            kw::DEADLETTER,
        ],
        &[kw::DRYRUN],
    )?;
    let request = RecoverRequest {
        key: argv[1].to_vec(),
        group: argv[2].to_vec(),
        to: options.name(kw::TO, &defaults.to)?,
        quarantine: options.name(kw::QUARANTINE, &defaults.quarantine)?,
        mode_key: ModeKey::parse(&options, &defaults.mode_key)?,
        min_idle: options.number(kw::MINIDLE, defaults.min_idle, range::MIN_IDLE)?,
        count: options.number(kw::COUNT, defaults.count, range::COUNT)?,
        scan: options.number(kw::SCAN, defaults.scan, range::SCAN)?,
        cursor: options.stream_id(kw::CURSOR)?,
        zombie_idle: options.number(kw::ZOMBIEIDLE, defaults.zombie_idle, range::ZOMBIE_IDLE)?,
        delete_limit: options.number(
            kw::DELETELIMIT,
            defaults.delete_limit,
            range::DELETE_LIMIT,
        )?,
        max_deliveries: options.number(
            kw::MAXDELIVERIES,
            defaults.max_deliveries,
            range::MAX_DELIVERIES,
        )?,
        dead_letter: DeadLetter::parse(&options, defaults)?,
        dry_run: options.has(kw::DRYRUN),
    };
    if request.scan < request.count {
        let source = if options.has(kw::SCAN) {
            String::new()
        } else {
            format!(" (from {}{})", config::PREFIX, config::SCAN)
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
    if let Some(dead_letter) = &request.dead_letter {
        let source = match dead_letter.argv_pos {
            Some(_) => "DEADLETTER".to_string(),
            None => format!("{}{}", config::PREFIX, config::DEAD_LETTER),
        };
        if dead_letter.name == request.key {
            return Err(invalid(format!(
                "{source} {} is the stream itself: copies of its entries must go to another stream",
                quote(&dead_letter.name)
            )));
        }
        if dead_letter.name == request.mode_key.name {
            return Err(invalid(format!(
                "{source} {} is the mode key",
                quote(&dead_letter.name)
            )));
        }
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
        command::STATUS,
        &[kw::ZOMBIEIDLE, kw::MODEKEY, kw::LIMIT],
        &[],
    )?;
    Ok(StatusRequest {
        key: argv[1].to_vec(),
        group: argv[2].to_vec(),
        zombie_idle: options.number(kw::ZOMBIEIDLE, defaults.zombie_idle, range::ZOMBIE_IDLE)?,
        mode_key: ModeKey::parse(&options, &defaults.mode_key)?,
        limit: options.number(kw::LIMIT, config::DEFAULT_STATUS_LIMIT, range::STATUS_LIMIT)?,
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
    let options = Options::collect(
        argv,
        4,
        command::RETIRE,
        &[kw::TO, kw::COUNT, kw::MODEKEY],
        &[],
    )?;
    let request = RetireRequest {
        key: argv[1].to_vec(),
        group: argv[2].to_vec(),
        consumer: argv[3].to_vec(),
        to: options.name(kw::TO, &defaults.to)?,
        mode_key: ModeKey::parse(&options, &defaults.mode_key)?,
        count: options.number(kw::COUNT, defaults.retire_count, range::RETIRE_COUNT)?,
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
    // Poison entries stay parked until an operator decides (README: Retiring a
    // consumer): retiring QUARANTINE would hand them on, TO QUARANTINE would
    // park healthy ones.
    if request.consumer == defaults.quarantine {
        return Err(invalid(format!(
            "{} is the quarantine consumer (quantum.quarantine): its poison entries \
             are not retired",
            quote(&request.consumer)
        )));
    }
    if request.to == defaults.quarantine {
        return Err(invalid(format!(
            "TO {} is the quarantine consumer (quantum.quarantine): retired entries \
             are not poison",
            quote(&request.to)
        )));
    }
    Ok(request)
}

#[cfg(test)]
mod tests;
