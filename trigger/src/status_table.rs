//! `status`: QUANTUM.STATUS as a table a person can scan, or as JSON.

use crate::commands::{field, int, pairs, text};
use crate::failure::{self, Failure};
use crate::report;
use quantum_protocol::key;
use redis::Value;
use serde_json::json;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

pub struct ConsumerRow {
    pub name: String,
    pub pending: i64,
    pub idle_ms: i64,
    pub state: String,
}

pub struct Status {
    pub mode: Option<String>,
    pub allowed: bool,
    pub pending: i64,
    pub lag: Option<i64>,
    pub oldest_idle_ms: Option<i64>,
    /// Consumers per state, over all of them: (state, count) as the module lists them.
    pub states: Vec<(String, i64)>,
    /// At most STATUS's LIMIT, the longest idle first.
    pub consumers: Vec<ConsumerRow>,
    /// unix ms, claimed, quarantined, dropped, deleted
    pub last_run: Option<[i64; 5]>,
}

fn optional<T>(
    value: &Value,
    read: impl Fn(&Value) -> Result<T, Failure>,
) -> Result<Option<T>, Failure> {
    match value {
        Value::Nil => Ok(None),
        v => read(v).map(Some),
    }
}

impl Status {
    pub fn from_reply(fields: &[(String, Value)]) -> Result<Status, Failure> {
        let Value::Array(rows) = field(fields, key::CONSUMERS)? else {
            return Err(failure::unexpected("consumers"));
        };
        let consumers = rows
            .iter()
            .map(|row| {
                let c = pairs(row.clone())?;
                Ok(ConsumerRow {
                    name: text(field(&c, key::NAME)?)?,
                    pending: int(field(&c, key::PENDING)?)?,
                    idle_ms: int(field(&c, key::IDLE)?)?,
                    state: text(field(&c, key::STATE)?)?,
                })
            })
            .collect::<Result<_, Failure>>()?;
        let last_run = optional(field(fields, key::LAST_RUN)?, |v| {
            let run = pairs(v.clone())?;
            let mut values = [0; 5];
            for (slot, name) in values.iter_mut().zip([
                key::UNIX_MS,
                key::CLAIMED,
                key::QUARANTINED,
                key::DROPPED,
                key::DELETED,
            ]) {
                *slot = int(field(&run, name)?)?;
            }
            Ok(values)
        })?;
        let states = pairs(field(fields, key::STATES)?.clone())?
            .iter()
            .map(|(state, n)| Ok((state.clone(), int(n)?)))
            .collect::<Result<_, Failure>>()?;
        Ok(Status {
            mode: optional(field(fields, key::MODE)?, text)?,
            allowed: int(field(fields, key::ALLOWED)?)? == 1,
            pending: int(field(fields, key::PENDING)?)?,
            lag: optional(field(fields, key::LAG)?, int)?,
            oldest_idle_ms: optional(field(fields, key::OLDEST_IDLE)?, int)?,
            states,
            consumers,
            last_run,
        })
    }

    /// Every consumer of the group, listed or not.
    pub fn total(&self) -> i64 {
        self.states.iter().map(|(_, n)| n).sum()
    }

    /// Consumers left out of the list by LIMIT.
    pub fn unlisted(&self) -> i64 {
        (self.total() - self.consumers.len() as i64).max(0)
    }

    pub fn table(&self, stream: &str, group: &str) -> String {
        let ms = |ms: i64| {
            humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
        };
        let mut out = String::new();
        // Names and the mode come from Redis (a client chose them): escaped as
        // in the log line, so a newline cannot forge a row nor ESC reach the terminal.
        let shown = report::field_value;
        let mode = self.mode.as_deref().map_or("(missing)".into(), shown);
        let allowed = if self.allowed {
            "recovery allowed"
        } else {
            "recovery refused"
        };
        let _ = writeln!(out, "stream       {}", shown(stream));
        let _ = writeln!(out, "group        {}", shown(group));
        let _ = writeln!(out, "mode         {mode} ({allowed})");
        let _ = writeln!(
            out,
            "pending      {}   lag {}   oldest pending idle {}",
            self.pending,
            self.lag.map_or("unknown".into(), |l| l.to_string()),
            self.oldest_idle_ms.map_or("-".into(), ms)
        );
        let last = match self.last_run {
            None => "none since the module loaded".to_string(),
            Some([at, claimed, quarantined, dropped, deleted]) => format!(
                "{} claimed={claimed} quarantined={quarantined} dropped={dropped} deleted={deleted}",
                humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at.max(0) as u64))
            ),
        };
        let _ = writeln!(out, "last run     {last}");
        let states: Vec<String> = self
            .states
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        let _ = writeln!(out, "consumers    {}: {}", self.total(), states.join(", "));
        let names: Vec<String> = self.consumers.iter().map(|c| shown(&c.name)).collect();
        let width = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max("CONSUMER".len());
        let _ = writeln!(
            out,
            "\n{:<width$}  {:<10}  {:>8}  IDLE",
            "CONSUMER", "STATE", "PENDING"
        );
        for (c, name) in self.consumers.iter().zip(&names) {
            let _ = writeln!(
                out,
                "{:<width$}  {:<10}  {:>8}  {}",
                name,
                c.state,
                c.pending,
                ms(c.idle_ms)
            );
        }
        if self.unlisted() > 0 {
            let _ = writeln!(
                out,
                "… and {} more, less idle (--limit lists more)",
                self.unlisted()
            );
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let consumers: Vec<_> = self
            .consumers
            .iter()
            .map(|c| json!({"name": c.name, "pending": c.pending, "idle_ms": c.idle_ms, "state": c.state}))
            .collect();
        let last_run = self.last_run.map(|[at, claimed, quarantined, dropped, deleted]| {
            json!({"unix_ms": at, "claimed": claimed, "quarantined": quarantined, "dropped": dropped, "deleted": deleted})
        });
        json!({
            "result": "success",
            "mode": self.mode,
            "allowed": self.allowed,
            "pending": self.pending,
            "lag": self.lag,
            "oldest_idle_ms": self.oldest_idle_ms,
            "states": self.states.iter().map(|(state, n)| (state.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "consumers": consumers,
            "unlisted": self.unlisted(),
            "last_run": last_run,
            "exit_code": 0,
        })
    }
}
