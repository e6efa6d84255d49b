//! `status`: QUANTUM.STATUS's report as a table a person can scan (its JSON
//! is the report's derived `Serialize`, reply.rs).

use crate::reply::{LastRun, StatusReport};
use crate::report;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

impl StatusReport {
    /// Every consumer of the group, listed or not.
    pub fn total(&self) -> i64 {
        self.states.iter().map(|s| s.count).sum()
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
        let last = match &self.last_run {
            None => "none since the module loaded".to_string(),
            Some(LastRun {
                unix_ms,
                claimed,
                quarantined,
                dropped,
                deleted,
            }) => format!(
                "{} claimed={claimed} quarantined={quarantined} dropped={dropped} deleted={deleted}",
                humantime::format_rfc3339_millis(
                    UNIX_EPOCH + Duration::from_millis((*unix_ms).max(0) as u64)
                )
            ),
        };
        let _ = writeln!(out, "last run     {last}");
        let states: Vec<String> = self
            .states
            .iter()
            .map(|s| format!("{} {}", s.state, s.count))
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
}
