//! Cumulative counters since the module loaded, reported by `INFO quantum`.
//! Redis runs module commands on its main thread; atomics just make the statics safe.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct Stats {
    /// Completed RECOVER calls that were allowed to change state.
    pub runs: AtomicU64,
    pub dry_runs: AtomicU64,
    /// Calls refused by the mode guard.
    pub refused: AtomicU64,
    pub claimed: AtomicU64,
    pub quarantined: AtomicU64,
    pub dropped: AtomicU64,
    pub deleted: AtomicU64,
    /// Calls that ended in any other error (bad input, ACL, missing group, internal).
    pub errors: AtomicU64,
    pub last_run_unix_ms: AtomicU64,
    pub last_run_duration_us: AtomicU64,
}

pub static STATS: Stats = Stats {
    runs: AtomicU64::new(0),
    dry_runs: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    claimed: AtomicU64::new(0),
    quarantined: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    deleted: AtomicU64::new(0),
    errors: AtomicU64::new(0),
    last_run_unix_ms: AtomicU64::new(0),
    last_run_duration_us: AtomicU64::new(0),
};

pub fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(by as u64, Relaxed);
}

impl Stats {
    /// `(name, value)` pairs in the order `INFO quantum` shows them.
    pub fn fields(&self) -> [(&'static str, u64); 10] {
        [
            ("runs", self.runs.load(Relaxed)),
            ("dry_runs", self.dry_runs.load(Relaxed)),
            ("refused", self.refused.load(Relaxed)),
            ("claimed", self.claimed.load(Relaxed)),
            ("quarantined", self.quarantined.load(Relaxed)),
            ("dropped", self.dropped.load(Relaxed)),
            ("deleted", self.deleted.load(Relaxed)),
            ("errors", self.errors.load(Relaxed)),
            ("last_run_unix_ms", self.last_run_unix_ms.load(Relaxed)),
            (
                "last_run_duration_us",
                self.last_run_duration_us.load(Relaxed),
            ),
        ]
    }
}
