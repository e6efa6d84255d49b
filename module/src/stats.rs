//! Cumulative counters since the module loaded, reported by `INFO quantum`.
//! Redis runs module commands on its main thread; atomics just make the statics safe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
    /// Quarantined entries copied to a dead-letter stream.
    pub dead_lettered: AtomicU64,
    /// Quarantine moves left with their owner: their copies would pass maxmemory.
    pub dead_letter_deferred: AtomicU64,
    /// Completed RETIRE calls.
    pub retires: AtomicU64,
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
    dead_lettered: AtomicU64::new(0),
    dead_letter_deferred: AtomicU64::new(0),
    retires: AtomicU64::new(0),
    errors: AtomicU64::new(0),
    last_run_unix_ms: AtomicU64::new(0),
    last_run_duration_us: AtomicU64::new(0),
};

pub fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(by as u64, Relaxed);
}

impl Stats {
    /// `(name, value)` pairs in the order `INFO quantum` shows them.
    pub fn fields(&self) -> [(&'static str, u64); 13] {
        [
            ("runs", self.runs.load(Relaxed)),
            ("dry_runs", self.dry_runs.load(Relaxed)),
            ("refused", self.refused.load(Relaxed)),
            ("claimed", self.claimed.load(Relaxed)),
            ("quarantined", self.quarantined.load(Relaxed)),
            ("dropped", self.dropped.load(Relaxed)),
            ("deleted", self.deleted.load(Relaxed)),
            ("dead_lettered", self.dead_lettered.load(Relaxed)),
            (
                "dead_letter_deferred",
                self.dead_letter_deferred.load(Relaxed),
            ),
            ("retires", self.retires.load(Relaxed)),
            ("errors", self.errors.load(Relaxed)),
            ("last_run_unix_ms", self.last_run_unix_ms.load(Relaxed)),
            (
                "last_run_duration_us",
                self.last_run_duration_us.load(Relaxed),
            ),
        ]
    }
}

/// The last real RECOVER of one stream and group, for QUANTUM.STATUS.
#[derive(Clone, Copy, Debug)]
pub struct LastRun {
    pub unix_ms: u64,
    pub claimed: usize,
    pub quarantined: usize,
    pub dropped: usize,
    pub deleted: usize,
}

/// A stream and one of its groups.
#[derive(Clone, PartialEq, Eq, Hash)]
struct GroupName {
    key: Vec<u8>,
    group: Vec<u8>,
}

impl GroupName {
    fn of(key: &[u8], group: &[u8]) -> Self {
        GroupName {
            key: key.to_vec(),
            group: group.to_vec(),
        }
    }
}

/// Bounded so that calls on ever new groups cannot grow it without end.
const MAX_GROUPS_REMEMBERED: usize = 10_000;
static LAST_RUNS: Mutex<Option<HashMap<GroupName, LastRun>>> = Mutex::new(None);

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn record_run(key: &[u8], group: &[u8], last: LastRun, started: Instant) {
    STATS.last_run_unix_ms.store(last.unix_ms, Relaxed);
    STATS
        .last_run_duration_us
        .store(started.elapsed().as_micros() as u64, Relaxed);
    let mut runs = LAST_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let runs = runs.get_or_insert_with(HashMap::new);
    let name = GroupName::of(key, group);
    if runs.len() >= MAX_GROUPS_REMEMBERED && !runs.contains_key(&name) {
        let oldest = runs
            .iter()
            .min_by_key(|(_, run)| run.unix_ms)
            .map(|(name, _)| name.clone());
        oldest.map(|name| runs.remove(&name));
    }
    runs.insert(name, last);
}

pub fn last_run(key: &[u8], group: &[u8]) -> Option<LastRun> {
    let runs = LAST_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    runs.as_ref()?.get(&GroupName::of(key, group)).copied()
}
