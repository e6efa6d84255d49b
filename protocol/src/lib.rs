//! The vocabulary of the `quantum` module's commands, in one place for the two
//! sides that speak it: the module (which parses and answers it) and the
//! trigger (which sends it and reads the answers). The integration tests spell
//! these strings out themselves instead: they check both sides against SPEC.md.

/// The command names, as error messages and the trigger write them.
pub mod command {
    pub const RECOVER: &str = "QUANTUM.RECOVER";
    pub const STATUS: &str = "QUANTUM.STATUS";
    pub const RETIRE: &str = "QUANTUM.RETIRE";
}

/// Option keywords (matched case-insensitively, written in upper case).
pub mod keyword {
    pub const TO: &str = "TO";
    pub const MINIDLE: &str = "MINIDLE";
    pub const COUNT: &str = "COUNT";
    pub const SCAN: &str = "SCAN";
    pub const CURSOR: &str = "CURSOR";
    pub const ZOMBIEIDLE: &str = "ZOMBIEIDLE";
    pub const DELETELIMIT: &str = "DELETELIMIT";
    pub const MAXDELIVERIES: &str = "MAXDELIVERIES";
    pub const QUARANTINE: &str = "QUARANTINE";
    pub const MODEKEY: &str = "MODEKEY";
    pub const DRYRUN: &str = "DRYRUN";
    /// RECOVER: the dead-letter stream quarantined entries are copied to.
    pub const DEADLETTER: &str = "DEADLETTER";
    /// STATUS only.
    pub const LIMIT: &str = "LIMIT";
}

/// The inclusive range a numeric option accepts; its `quantum.*` config has the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub min: i64,
    pub max: i64,
}

impl Range {
    pub const fn contains(self, n: i64) -> bool {
        self.min <= n && n <= self.max
    }

    /// For an unsigned command-line option. Every range here starts at 0 or above.
    pub const fn as_u64(self) -> std::ops::RangeInclusive<u64> {
        self.min as u64..=self.max as u64
    }
}

/// The ranges of the numeric options.
pub mod range {
    use super::Range;

    /// RECOVER's COUNT: entries moved per call.
    pub const COUNT: Range = Range {
        min: 1,
        max: 10_000,
    };
    /// RECOVER's SCAN: PEL entries examined per call (also at least COUNT).
    pub const SCAN: Range = Range {
        min: 1,
        max: 100_000,
    };
    /// MINIDLE 0 would steal entries a live consumer is working on (S8).
    pub const MIN_IDLE: Range = Range {
        min: 1,
        max: i64::MAX,
    };
    pub const ZOMBIE_IDLE: Range = Range {
        min: 1,
        max: i64::MAX,
    };
    /// 0 deletes nothing (and lets a call skip the pass over every consumer).
    pub const DELETE_LIMIT: Range = Range {
        min: 0,
        max: 100_000,
    };
    /// 0 is off.
    pub const MAX_DELIVERIES: Range = Range {
        min: 0,
        max: i64::MAX,
    };
    /// RETIRE's COUNT: a call at the top of the range holds Redis for about 100 ms (BENCHMARKS.md).
    pub const RETIRE_COUNT: Range = Range {
        min: 1,
        max: 100_000,
    };
    /// RETIRE's time budget (ms): a call stops claiming once it has run this long.
    pub const RETIRE_BUDGET: Range = Range {
        min: 1,
        max: 10_000,
    };
    /// `quantum.dead-letter-maxlen`: the approximate MAXLEN of every XADD to the
    /// dead-letter stream. Approximate trimming removes whole stream nodes
    /// (`stream-node-max-entries`, 100 by default), so the stream may hold up to
    /// about that many entries more; a billion entries is far beyond any sane record.
    pub const DEAD_LETTER_MAXLEN: Range = Range {
        min: 1,
        max: 1_000_000_000,
    };
    /// STATUS's LIMIT: consumers listed; the state counts always cover them all.
    pub const STATUS_LIMIT: Range = Range {
        min: 1,
        max: 10_000,
    };
}

/// The `quantum.*` configs: names (after the prefix) and defaults.
pub mod config {
    /// Every config's name starts with this (`loadmodule` arguments may leave it out).
    pub const PREFIX: &str = "quantum.";

    pub const TARGET: &str = "target";
    pub const QUARANTINE: &str = "quarantine";
    pub const MODE_KEY: &str = "mode-key";
    pub const ALLOWED_MODES: &str = "allowed-modes";
    pub const MIN_IDLE: &str = "min-idle";
    pub const COUNT: &str = "count";
    pub const SCAN: &str = "scan";
    pub const ZOMBIE_IDLE: &str = "zombie-idle";
    pub const DELETE_LIMIT: &str = "delete-limit";
    pub const MAX_DELIVERIES: &str = "max-deliveries";
    pub const RETIRE_COUNT: &str = "retire-count";
    pub const RETIRE_BUDGET: &str = "retire-budget";
    pub const DEAD_LETTER: &str = "dead-letter";
    pub const DEAD_LETTER_MAXLEN: &str = "dead-letter-maxlen";

    pub const DEFAULT_TARGET: &str = "recovery";
    pub const DEFAULT_QUARANTINE: &str = "quarantine";
    pub const DEFAULT_MODE_KEY: &str = "quantum:mode";
    pub const DEFAULT_ALLOWED_MODES: &str = "TESTNET";
    pub const DEFAULT_MIN_IDLE: i64 = 60_000;
    pub const DEFAULT_COUNT: i64 = 100;
    pub const DEFAULT_SCAN: i64 = 1_000;
    pub const DEFAULT_ZOMBIE_IDLE: i64 = 3_600_000;
    pub const DEFAULT_DELETE_LIMIT: i64 = 1_000;
    pub const DEFAULT_MAX_DELIVERIES: i64 = 0;
    pub const DEFAULT_RETIRE_COUNT: i64 = 1_000;
    /// Milliseconds; half of the 10 ms a RETIRE call may hold Redis (BENCHMARKS.md).
    pub const DEFAULT_RETIRE_BUDGET: i64 = 5;
    /// Empty: no dead-letter stream.
    pub const DEFAULT_DEAD_LETTER: &str = "";
    pub const DEFAULT_DEAD_LETTER_MAXLEN: i64 = 100_000;
    /// STATUS's LIMIT has no config.
    pub const DEFAULT_STATUS_LIMIT: i64 = 100;
}

/// The keys of the commands' reply maps.
pub mod key {
    // RECOVER, in reply order.
    pub const MODE: &str = "mode";
    pub const DRY_RUN: &str = "dry-run";
    pub const CLAIMED: &str = "claimed";
    pub const QUARANTINED: &str = "quarantined";
    pub const DROPPED: &str = "dropped";
    pub const DELETED: &str = "deleted";
    pub const KEPT: &str = "kept";
    pub const SCANNED: &str = "scanned";
    pub const CURSOR: &str = "cursor";
    pub const PENDING: &str = "pending";
    pub const CONSUMERS: &str = "consumers";
    pub const KEPT_TOTAL: &str = "kept-total";
    /// Only when a dead-letter stream is in use: IDs copied to it (DRYRUN:
    /// would be), and IDs left with their owner because a copy would pass maxmemory.
    pub const DEAD_LETTERED: &str = "dead-lettered";
    pub const DEAD_LETTER_DEFERRED: &str = "dead-letter-deferred";

    // STATUS (with `mode`, `pending` and `consumers` above).
    pub const ALLOWED: &str = "allowed";
    pub const LAG: &str = "lag";
    pub const OLDEST_IDLE: &str = "oldest-idle";
    pub const STATES: &str = "states";
    pub const LAST_RUN: &str = "last-run";
    /// Each listed consumer: `name`, `pending`, `idle`, `state`.
    pub const NAME: &str = "name";
    pub const IDLE: &str = "idle";
    pub const STATE: &str = "state";
    /// `last-run`: `unix-ms` and the counts under RECOVER's keys.
    pub const UNIX_MS: &str = "unix-ms";
    /// `parked`: `target` and `quarantine`, each `name`, `pending`, `oldest-idle`.
    pub const PARKED: &str = "parked";
    pub const TARGET: &str = "target";
    pub const QUARANTINE: &str = "quarantine";

    // RETIRE (with `dropped` and `deleted` above).
    pub const MOVED: &str = "moved";
    pub const REMAINING: &str = "remaining";
    /// 1: `remaining` is exact; 0: a lower bound (the consumer holds more than COUNT).
    pub const REMAINING_EXACT: &str = "remaining-exact";
}

/// The fields each dead-letter copy starts with, in this order, before the
/// entry's own field/value pairs.
pub mod dead_letter {
    pub const STREAM: &str = "quantum-stream";
    pub const GROUP: &str = "quantum-group";
    pub const ID: &str = "quantum-id";
    /// The entry's owner before the move to QUARANTINE.
    pub const CONSUMER: &str = "quantum-consumer";
    pub const DELIVERIES: &str = "quantum-deliveries";
    pub const REASON: &str = "quantum-reason";
    /// The only reason there is: delivered at least MAXDELIVERIES times.
    pub const REASON_MAX_DELIVERIES: &str = "max-deliveries";
}

/// The states STATUS gives a consumer, in the order its `states` lists them.
pub mod state {
    pub const LIVE: &str = "live";
    /// Idle > ZOMBIEIDLE with nothing pending: RECOVER deletes it.
    pub const ZOMBIE: &str = "zombie";
    /// Idle > ZOMBIEIDLE holding entries: RECOVER moves them once idle enough.
    pub const STUCK: &str = "stuck";
    pub const TARGET: &str = "target";
    pub const QUARANTINE: &str = "quarantine";
}

/// The `cursor` that says the end of the PEL was reached.
pub const CURSOR_END: &str = "0-0";

/// A CURSOR after every stream ID: a RECOVER call given it examines no PEL
/// entry and runs only its consumer step (what the trigger sends to finish a
/// drain whose batches skipped that step).
pub const CURSOR_AFTER_ALL: &str = "18446744073709551615-18446744073709551615";

/// Error replies: the code (first word) and the fixed texts a caller acts on.
pub mod error {
    pub const ERR: &str = "ERR";
    /// The mode guard refused a mutating call (S3): nothing changed.
    pub const MODE: &str = "MODE";
    pub const NOPERM: &str = "NOPERM";
    /// Redis's own, passed through: the group does not exist.
    pub const NOGROUP: &str = "NOGROUP";
    /// The key does not exist.
    pub const NO_SUCH_KEY: &str = "ERR no such key";
    /// A panic caught inside a command (S6).
    pub const INTERNAL: &str = "ERR internal error";
    /// Redis answered an internal call with something the module cannot read.
    pub const UNEXPECTED_REPLY: &str = "ERR unexpected reply from";
    /// The dead-letter stream cannot take this call's copies (its IDs ran
    /// out): refused before the first change.
    pub const DEAD_LETTER_FULL: &str = "ERR dead-letter stream";

    /// Whether error `line` carries `code` as its first word.
    pub fn has_code(line: &str, code: &str) -> bool {
        line.strip_prefix(code)
            .is_some_and(|rest| rest.starts_with(' '))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_whole_words() {
        assert!(error::has_code("MODE refused: ...", error::MODE));
        assert!(!error::has_code("MODEKEY ...", error::MODE));
        assert!(!error::has_code("ERR MODE", error::MODE));
    }

    #[test]
    fn ranges_are_inclusive() {
        assert!(range::COUNT.contains(1) && range::COUNT.contains(10_000));
        assert!(!range::COUNT.contains(0) && !range::COUNT.contains(10_001));
        assert_eq!(range::DELETE_LIMIT.as_u64(), 0..=100_000);
    }
}
