//! What a crash loop of the reference consumer (examples/consumer) must end
//! with, checked the same way whoever played the supervisor: the in-process
//! test (tests/crash_loop.rs) or systemd in a booted container
//! (tests/systemd_crash_loop.rs). Panics naming what broke; returns the figures.

use std::collections::{HashMap, HashSet};

/// One SIGKILL: the instance, when (unix ms) and the entries it held then.
#[derive(Clone, Debug)]
pub struct Crash {
    pub consumer: String,
    pub at_ms: u64,
    pub held: Vec<String>,
}

/// What the run left to read.
pub struct Record {
    pub produced: Vec<String>,
    /// `(id, consumer)` per processing, in order (the consumer's `:processed` list).
    pub processed: Vec<(String, String)>,
    /// id → unix ms of its (first) ack (the consumer's `:acked` hash).
    pub acked: HashMap<String, u64>,
    pub crashes: Vec<Crash>,
}

pub struct Figures {
    pub processings: usize,
    pub duplicates: usize,
    pub crashes_holding_entries: usize,
    /// Crash → the last entry it held acked again, sorted (ms).
    pub recovery_ms: Vec<u64>,
}

impl Figures {
    pub fn median_ms(&self) -> u64 {
        self.recovery_ms
            .get(self.recovery_ms.len() / 2)
            .copied()
            .unwrap_or(0)
    }

    pub fn max_ms(&self) -> u64 {
        self.recovery_ms.last().copied().unwrap_or(0)
    }
}

/// Parses the `:processed` list's `"<id> <consumer>"` lines.
pub fn processed_lines(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let (id, consumer) = l.split_once(' ').expect("\"<id> <consumer>\"");
            (id.to_string(), consumer.to_string())
        })
        .collect()
}

/// Every produced entry processed and acked; each duplicate explained by a
/// SIGKILL between the processing and the ack (its earlier processings were
/// all by killed instances, at most one such entry per killed instance).
pub fn check(record: &Record) -> Figures {
    let mut by_id: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, consumer) in &record.processed {
        by_id.entry(id).or_default().push(consumer);
    }
    let missing: Vec<&String> = record
        .produced
        .iter()
        .filter(|id| !by_id.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} produced entries were never processed, first {:?}",
        missing.len(),
        record.produced.len(),
        &missing[..missing.len().min(5)]
    );
    let unacked: Vec<&String> = record
        .produced
        .iter()
        .filter(|id| !record.acked.contains_key(id.as_str()))
        .collect();
    assert!(
        unacked.is_empty(),
        "{} produced entries were never acked by a consumer, first {:?}",
        unacked.len(),
        &unacked[..unacked.len().min(5)]
    );
    let produced: HashSet<&str> = record.produced.iter().map(String::as_str).collect();
    let strangers: Vec<&&str> = by_id.keys().filter(|id| !produced.contains(**id)).collect();
    assert!(strangers.is_empty(), "processed unknown IDs {strangers:?}");

    let killed: HashSet<&str> = record.crashes.iter().map(|c| c.consumer.as_str()).collect();
    let mut duplicates = 0;
    let mut per_killed: HashMap<&str, usize> = HashMap::new();
    for (id, consumers) in &by_id {
        if consumers.len() < 2 {
            continue;
        }
        duplicates += consumers.len() - 1;
        for earlier in &consumers[..consumers.len() - 1] {
            assert!(
                killed.contains(earlier),
                "entry {id} was processed by {consumers:?}: {earlier} was not killed, so \
                 nothing explains its redelivery"
            );
            *per_killed.entry(earlier).or_default() += 1;
        }
    }
    for (consumer, n) in &per_killed {
        assert!(
            *n <= 1,
            "{n} entries processed by the killed {consumer} were processed again: \
             it can die between processing and ack of one entry only"
        );
    }

    let mut recovery_ms: Vec<u64> = record
        .crashes
        .iter()
        .filter(|c| !c.held.is_empty())
        .map(|c| {
            let last_ack = c
                .held
                .iter()
                .map(|id| {
                    *record
                        .acked
                        .get(id)
                        .unwrap_or_else(|| panic!("{id}, held by {}, never acked", c.consumer))
                })
                .max()
                .unwrap();
            last_ack.saturating_sub(c.at_ms)
        })
        .collect();
    recovery_ms.sort_unstable();
    Figures {
        processings: record.processed.len(),
        duplicates,
        crashes_holding_entries: recovery_ms.len(),
        recovery_ms,
    }
}

/// A module warning about a consumer deleted or retired while it held entries.
pub fn deletion_warnings(server_log: &str) -> Vec<&str> {
    server_log
        .lines()
        .filter(|l| {
            l.contains("pending entries when deleted") || l.contains("pending entries when retired")
        })
        .collect()
}

/// The supervisor's seeded plan: `kills` SIGKILLs and `stops` graceful stops in
/// a shuffled order, each after a lifetime in `lifetime_ms` (inclusive):
/// `(kill, lifetime ms)`.
pub fn plan(seed: u64, kills: usize, stops: usize, lifetime_ms: (u64, u64)) -> Vec<(bool, u64)> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut ends = vec![true; kills];
    ends.extend(vec![false; stops]);
    for i in (1..ends.len()).rev() {
        ends.swap(i, rng.below(i as u64 + 1) as usize);
    }
    ends.into_iter()
        .map(|kill| {
            (
                kill,
                lifetime_ms.0 + rng.below(lifetime_ms.1 - lifetime_ms.0 + 1),
            )
        })
        .collect()
}

/// The most consumers the group may hold at once: `recovery`, the live
/// instance, and the dead names not deleted yet. A dead instance's entries
/// move once idle ≥ MINIDLE (< ZOMBIEIDLE), and its name goes at the first
/// recovery after it is idle > ZOMBIEIDLE and empty: within ZOMBIEIDLE + one
/// tick + `slack_ms` (a run's own time) of its death, whether it was killed or
/// stopped (after the retire a stop leaves at most an empty name). Deaths are
/// at least the shortest lifetime apart, so at most
/// ceil((ZOMBIEIDLE + tick + slack) / shortest lifetime) dead names exist at once.
pub fn consumer_bound(
    zombie_idle_ms: u64,
    tick_ms: u64,
    slack_ms: u64,
    shortest_lifetime_ms: u64,
) -> usize {
    2 + (zombie_idle_ms + tick_ms + slack_ms).div_ceil(shortest_lifetime_ms) as usize
}

/// The seed of a crash-loop test: `QUANTUM_SEED`, else `fixed`.
pub fn seed(fixed: u64) -> u64 {
    std::env::var("QUANTUM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(fixed)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
