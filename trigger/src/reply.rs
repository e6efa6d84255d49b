//! The module's replies as typed values (`redis::FromRedisValue`): one
//! QUANTUM.RECOVER batch, QUANTUM.STATUS's report and one QUANTUM.RETIRE call.
//! Names are read without losing a byte (`lossless_text`: a client may have
//! chosen any bytes, and a report must still name each apart); a missing key
//! or a value of another type is an unexpected reply (exit 76).

use crate::failure::{self, Failure};
use quantum_protocol::key;
use redis::{FromRedisValue, ParsingError, Value};
use serde::Serialize;

/// `value` as `T`, or an unexpected reply.
pub fn parse<T: FromRedisValue>(value: Value) -> Result<T, Failure> {
    T::from_redis_value(value).map_err(|e| failure::unexpected(&e.to_string()))
}

/// One QUANTUM.RECOVER batch, or a drain's batches summed (`RunSummary`);
/// its JSON is the reply's keys in the reply's order, `kept_total` null when
/// no call looked at the consumers.
#[derive(Debug, Default, Clone)]
pub struct RecoverBatch {
    pub mode: Option<String>,
    pub dry_run: bool,
    pub claimed: Vec<String>,
    pub quarantined: Vec<String>,
    pub dropped: Vec<String>,
    pub deleted: Vec<String>,
    /// The consumer pass's idle consumers still holding fresh entries; none
    /// when the batch skipped that pass (DELETELIMIT 0).
    pub kept: Option<Kept>,
    pub scanned: i64,
    pub cursor: String,
    pub pending: i64,
    pub consumers: i64,
    /// With a dead-letter stream (the fields are absent without one): the
    /// quarantined IDs copied to it, and those left with their owner because
    /// the copies would pass `maxmemory`.
    pub dead_letter: Option<DeadLetter>,
}

/// What one batch did with its dead-letter stream.
#[derive(Debug, Default, Clone)]
pub struct DeadLetter {
    pub copied: Vec<String>,
    pub deferred: Vec<String>,
}

/// Idle consumers kept because their entries are too fresh to move.
#[derive(Debug, Clone)]
pub struct Kept {
    /// At most 100 names (the module's cap) ...
    pub names: Vec<String>,
    /// ... and how many there were.
    pub total: i64,
}

impl Serialize for RecoverBatch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("mode", &self.mode)?;
        map.serialize_entry("dry_run", &self.dry_run)?;
        map.serialize_entry("claimed", &self.claimed)?;
        map.serialize_entry("quarantined", &self.quarantined)?;
        map.serialize_entry("dropped", &self.dropped)?;
        map.serialize_entry("deleted", &self.deleted)?;
        let no_names: &[String] = &[];
        let kept = self.kept.as_ref();
        map.serialize_entry("kept", kept.map_or(no_names, |k| &k.names))?;
        map.serialize_entry("kept_total", &kept.map(|k| k.total))?;
        map.serialize_entry("scanned", &self.scanned)?;
        map.serialize_entry("cursor", &self.cursor)?;
        map.serialize_entry("pending", &self.pending)?;
        map.serialize_entry("consumers", &self.consumers)?;
        if let Some(dead_letter) = &self.dead_letter {
            map.serialize_entry("dead_lettered", &dead_letter.copied)?;
            map.serialize_entry("dead_letter_deferred", &dead_letter.deferred)?;
        }
        map.end()
    }
}

impl FromRedisValue for RecoverBatch {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut fields = Fields::of(value)?;
        let kept = match fields.find(key::KEPT_TOTAL) {
            Some(Value::Nil) => None,
            Some(total) => {
                let total = int(total)?;
                Some(Kept {
                    names: fields.texts(key::KEPT)?,
                    total,
                })
            }
            // A module from before `kept-total`: its `kept` is the whole list.
            None => {
                let names = fields.texts(key::KEPT)?;
                let total = names.len() as i64;
                Some(Kept { names, total })
            }
        };
        Ok(RecoverBatch {
            mode: fields.optional(key::MODE, text)?,
            dry_run: fields.flag(key::DRY_RUN)?,
            claimed: fields.texts(key::CLAIMED)?,
            quarantined: fields.texts(key::QUARANTINED)?,
            dropped: fields.texts(key::DROPPED)?,
            deleted: fields.texts(key::DELETED)?,
            kept,
            scanned: fields.int(key::SCANNED)?,
            cursor: fields.text(key::CURSOR)?,
            pending: fields.int(key::PENDING)?,
            consumers: fields.int(key::CONSUMERS)?,
            dead_letter: match fields.find(key::DEAD_LETTERED).is_some() {
                false => None,
                true => Some(DeadLetter {
                    copied: fields.texts(key::DEAD_LETTERED)?,
                    deferred: fields.texts(key::DEAD_LETTER_DEFERRED)?,
                }),
            },
        })
    }
}

/// One QUANTUM.RETIRE call.
#[derive(Debug)]
pub struct RetireStep {
    pub moved: Vec<String>,
    pub dropped: Vec<String>,
    pub remaining: i64,
    /// Exactly `remaining`, or at least that many (the module looks one
    /// entry further than it moved).
    pub remaining_exact: bool,
    pub deleted: bool,
}

impl FromRedisValue for RetireStep {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut fields = Fields::of(value)?;
        Ok(RetireStep {
            moved: fields.texts(key::MOVED)?,
            dropped: fields.texts(key::DROPPED)?,
            remaining: fields.int(key::REMAINING)?,
            // A module from before `remaining-exact` counted exactly.
            remaining_exact: match fields.find(key::REMAINING_EXACT) {
                Some(exact) => int(exact)? == 1,
                None => true,
            },
            deleted: fields.flag(key::DELETED)?,
        })
    }
}

/// QUANTUM.STATUS's report; its JSON is the `--json` output of `status`.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub mode: Option<String>,
    pub allowed: bool,
    pub pending: i64,
    pub lag: Option<i64>,
    pub oldest_idle_ms: Option<i64>,
    /// Consumers per state, over all of them, as the module lists them.
    #[serde(serialize_with = "states_as_map")]
    pub states: Vec<StateCount>,
    /// At most STATUS's LIMIT, the longest idle first.
    pub consumers: Vec<ConsumerRow>,
    /// What the last RECOVER on this server did; none since the module loaded.
    pub last_run: Option<LastRun>,
    /// What the module's configured target and quarantine consumers hold,
    /// listed or not (absent from a module before issue 10).
    pub parked: Option<ParkedPair>,
}

/// STATUS's `parked`: the recovery (target) and the quarantine consumer.
#[derive(Debug, Clone, Serialize)]
pub struct ParkedPair {
    pub target: ParkedBy,
    pub quarantine: ParkedBy,
}

/// Entries one parking consumer holds and its first one's idle (ms).
#[derive(Debug, Clone, Serialize)]
pub struct ParkedBy {
    pub name: String,
    pub pending: i64,
    pub oldest_idle_ms: Option<i64>,
}

fn parked_by(value: &Value) -> Result<ParkedBy, ParsingError> {
    let f = Fields::of(value.clone())?;
    Ok(ParkedBy {
        name: f.text(key::NAME)?,
        pending: f.int(key::PENDING)?,
        oldest_idle_ms: f.optional(key::OLDEST_IDLE, int)?,
    })
}

#[derive(Debug)]
pub struct StateCount {
    pub state: String,
    pub count: i64,
}

fn states_as_map<S: serde::Serializer>(states: &[StateCount], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(states.iter().map(|c| (&c.state, c.count)))
}

#[derive(Debug, Serialize)]
pub struct ConsumerRow {
    pub name: String,
    pub pending: i64,
    pub idle_ms: i64,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct LastRun {
    pub unix_ms: i64,
    pub claimed: i64,
    pub quarantined: i64,
    pub dropped: i64,
    pub deleted: i64,
}

impl FromRedisValue for StatusReport {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let fields = Fields::of(value)?;
        let Value::Array(rows) = fields.value(key::CONSUMERS)? else {
            return Err("consumers".into());
        };
        let consumers = rows
            .iter()
            .map(|row| {
                let c = Fields::of(row.clone())?;
                Ok(ConsumerRow {
                    name: c.text(key::NAME)?,
                    pending: c.int(key::PENDING)?,
                    idle_ms: c.int(key::IDLE)?,
                    state: c.text(key::STATE)?,
                })
            })
            .collect::<Result<_, ParsingError>>()?;
        let last_run = fields.optional(key::LAST_RUN, |v| {
            let run = Fields::of(v.clone())?;
            Ok(LastRun {
                unix_ms: run.int(key::UNIX_MS)?,
                claimed: run.int(key::CLAIMED)?,
                quarantined: run.int(key::QUARANTINED)?,
                dropped: run.int(key::DROPPED)?,
                deleted: run.int(key::DELETED)?,
            })
        })?;
        let states = Fields::of(fields.value(key::STATES)?.clone())?
            .0
            .iter()
            .map(|(state, n)| {
                Ok(StateCount {
                    state: state.clone(),
                    count: int(n)?,
                })
            })
            .collect::<Result<_, ParsingError>>()?;
        Ok(StatusReport {
            mode: fields.optional(key::MODE, text)?,
            allowed: fields.flag(key::ALLOWED)?,
            pending: fields.int(key::PENDING)?,
            lag: fields.optional(key::LAG, int)?,
            oldest_idle_ms: fields.optional(key::OLDEST_IDLE, int)?,
            states,
            consumers,
            last_run,
            parked: match fields.find(key::PARKED) {
                None => None,
                Some(value) => {
                    let pair = Fields::of(value.clone())?;
                    Some(ParkedPair {
                        target: parked_by(pair.value(key::TARGET)?)?,
                        quarantine: parked_by(pair.value(key::QUARANTINE)?)?,
                    })
                }
            },
        })
    }
}

/// A reply's map (a RESP2 flat array of keys and values) by key.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn of(value: Value) -> Result<Fields, ParsingError> {
        let Value::Array(items) = value else {
            return Err("expected a map".into());
        };
        if !items.len().is_multiple_of(2) {
            return Err("odd map length".into());
        }
        let mut items = items.into_iter();
        let mut out = Vec::new();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            out.push((text(&key)?, value));
        }
        Ok(Fields(out))
    }

    fn find(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn value(&self, name: &str) -> Result<&Value, ParsingError> {
        self.find(name).ok_or_else(|| missing(name))
    }

    fn text(&self, name: &str) -> Result<String, ParsingError> {
        text(self.value(name)?)
    }

    fn int(&self, name: &str) -> Result<i64, ParsingError> {
        int(self.value(name)?)
    }

    /// A 0/1 integer.
    fn flag(&self, name: &str) -> Result<bool, ParsingError> {
        Ok(self.int(name)? == 1)
    }

    /// The strings of array `name`, taken out of the reply rather than
    /// copied (a drain's batches bring a hundred IDs each): each is read once.
    fn texts(&mut self, name: &str) -> Result<Vec<String>, ParsingError> {
        let at = self
            .0
            .iter()
            .position(|(k, _)| k == name)
            .ok_or_else(|| missing(name))?;
        match std::mem::replace(&mut self.0[at].1, Value::Nil) {
            Value::Array(items) => items.into_iter().map(owned_text).collect(),
            _ => Err(format!("'{name}' is not an array").into()),
        }
    }

    /// A value that may be nil.
    fn optional<T>(
        &self,
        name: &str,
        read: impl Fn(&Value) -> Result<T, ParsingError>,
    ) -> Result<Option<T>, ParsingError> {
        match self.value(name)? {
            Value::Nil => Ok(None),
            v => read(v).map(Some),
        }
    }
}

fn missing(name: &str) -> ParsingError {
    format!("no '{name}' in the reply").into()
}

/// `text` of a value the caller gives up: a plain UTF-8 string keeps its bytes.
fn owned_text(value: Value) -> Result<String, ParsingError> {
    match value {
        Value::BulkString(b) => Ok(match String::from_utf8(b) {
            Ok(text) if !text.contains('\\') => text,
            Ok(text) => escaped(text.as_bytes()),
            Err(e) => escaped(e.as_bytes()),
        }),
        other => text(&other),
    }
}

fn text(value: &Value) -> Result<String, ParsingError> {
    match value {
        Value::BulkString(b) => Ok(lossless_text(b)),
        Value::SimpleString(s) => Ok(s.clone()),
        _ => Err("expected a string".into()),
    }
}

/// A name (Redis names are bytes) as text without losing a byte: each `\` is
/// doubled and each byte that is not part of valid UTF-8 is `\xNN`, so two
/// names never print alike (U+FFFD would merge them) and the bytes can be
/// typed back (`printf 'z\xff'`); a plain UTF-8 name is unchanged.
pub fn lossless_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        // Nearly every name and every ID: valid UTF-8 without a backslash, itself.
        Ok(text) if !text.contains('\\') => text.to_owned(),
        _ => escaped(bytes),
    }
}

/// `lossless_text` of bytes that are not plain: backslashes doubled, invalid bytes as `\xNN`.
fn escaped(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

fn int(value: &Value) -> Result<i64, ParsingError> {
    match value {
        Value::Int(n) => Ok(*n),
        _ => Err("expected an integer".into()),
    }
}
