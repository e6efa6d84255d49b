//! The planning core: given a slice of a group's Pending Entries List and its
//! consumers, decide which entries move to TO, which are parked in QUARANTINE and
//! which consumers are deleted. Pure data in, pure data out: no Redis here, so
//! every rule is unit- and property-tested without a server.
//!
//! What gets deleted, and why (nothing else is: no entry is ever acked or
//! removed from the stream, S1):
//! - a consumer idle longer than ZOMBIEIDLE with nothing pending, at most
//!   DELETELIMIT a call (`plan_deletions`): a dead process's name, which
//!   would otherwise pile up for ever; TO and QUARANTINE never are;
//! - a PEL entry whose stream entry is gone (XDEL, XTRIM): XCLAIM drops it
//!   instead of moving it, reported as `dropped` (`ClaimOutcome::from_plan`);
//!   there is nothing left to deliver;
//! - RETIRE's consumer, only by the call that empties it (`plan/retire.rs`);
//! - the oldest copies in the dead-letter stream, by the `MAXLEN ~
//!   quantum.dead-letter-maxlen` of each XADD that appends one
//!   (`plan/dead_letter.rs`): a record for people, kept bounded in memory.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

pub mod dead_letter;
pub mod retire;
pub mod states;

/// One PEL entry as XPENDING's extended form reports it. The owner is
/// shared: a page of the PEL is mostly one dead consumer's entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    pub id: String,
    pub owner: Rc<[u8]>,
    pub idle_ms: i64,
    pub deliveries: i64,
}

/// One consumer as XINFO CONSUMERS reports it (`idle`, never `inactive`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub name: Vec<u8>,
    pub pending: i64,
    pub idle_ms: i64,
}

/// The two consumers that hold recovered entries; neither is ever re-claimed from or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keepers {
    pub to: Vec<u8>,
    pub quarantine: Vec<u8>,
}

impl Keepers {
    fn holds(&self, name: &[u8]) -> bool {
        name == self.to.as_slice() || name == self.quarantine.as_slice()
    }
}

#[derive(Clone, Debug)]
pub struct ClaimRules {
    pub min_idle_ms: i64,
    pub count: usize,
    pub scan: usize,
    /// `None` when MAXDELIVERIES is 0 (off).
    pub max_deliveries: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    Target,
    Quarantine,
}

/// A planned move: which entry, from whom, to where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub id: String,
    pub owner: Rc<[u8]>,
    /// Its delivery count (unchanged by the move).
    pub deliveries: i64,
    pub destination: Destination,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimPlan {
    pub moves: Vec<Move>,
    /// PEL entries examined.
    pub scanned: usize,
    /// Where the next call continues; `None` when the end of the PEL was reached.
    pub cursor: Option<String>,
}

impl ClaimPlan {
    pub fn ids_to(&self, destination: Destination) -> Vec<&str> {
        self.moves
            .iter()
            .filter(|m| m.destination == destination)
            .map(|m| m.id.as_str())
            .collect()
    }
}

impl ClaimRules {
    /// Whether the claim step moves `entry`: idle enough (S8) and not already with a keeper.
    pub fn wants(&self, entry: &PendingEntry, keepers: &Keepers) -> bool {
        entry.idle_ms >= self.min_idle_ms && !keepers.holds(&entry.owner)
    }
}

/// Plans the claim step over `pel`, entries read in ID order after the cursor;
/// `pel_ended` says nothing follows them. Stops after COUNT moves or SCAN
/// examined entries. Takes the slice: each move keeps its entry's ID, and
/// shares its owner, rather than a copy (a drain plans a hundred moves a call).
pub fn plan_claims(
    mut pel: Vec<PendingEntry>,
    rules: &ClaimRules,
    keepers: &Keepers,
    pel_ended: bool,
) -> ClaimPlan {
    let mut plan = ClaimPlan::default();
    let mut last_moved = false;
    for entry in pel.iter_mut().take(rules.scan) {
        if plan.moves.len() == rules.count {
            break;
        }
        plan.scanned += 1;
        last_moved = rules.wants(entry, keepers);
        if !last_moved {
            continue;
        }
        let poisoned = rules
            .max_deliveries
            .is_some_and(|max| entry.deliveries >= max);
        plan.moves.push(Move {
            id: std::mem::take(&mut entry.id),
            owner: Rc::clone(&entry.owner),
            deliveries: entry.deliveries,
            destination: if poisoned {
                Destination::Quarantine
            } else {
                Destination::Target
            },
        });
    }
    let reached_end = pel_ended && plan.scanned == pel.len();
    if !reached_end {
        // The last examined entry: the last move, or an entry left where it is.
        plan.cursor = match (plan.scanned.checked_sub(1), last_moved) {
            (None, _) => None,
            (Some(_), true) => plan.moves.last().map(|m| m.id.clone()),
            (Some(last), false) => Some(std::mem::take(&mut pel[last].id)),
        };
    }
    plan
}

#[derive(Clone, Debug)]
pub struct DeleteRules {
    pub zombie_idle_ms: i64,
    pub delete_limit: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletionPlan {
    /// Consumers to delete: idle > ZOMBIEIDLE and nothing pending (S2).
    pub delete: Vec<Vec<u8>>,
    /// Consumers idle > ZOMBIEIDLE that still hold entries: the first `KEPT_LIMIT`.
    pub kept: Vec<Vec<u8>>,
    /// How many consumers `kept` would list without the limit.
    pub kept_total: usize,
}

/// Most names a reply lists under `kept`: a group of 100,000 stuck consumers
/// must not make a 100,000-name reply (S5); `kept-total` gives the count.
pub const KEPT_LIMIT: usize = 100;

/// Plans the delete step over the consumers as they are after the claim step.
/// TO and QUARANTINE are never deleted nor listed as kept: holding entries is their job.
pub fn plan_deletions(
    consumers: &[Consumer],
    rules: &DeleteRules,
    keepers: &Keepers,
) -> DeletionPlan {
    let mut plan = DeletionPlan::default();
    for consumer in consumers {
        if consumer.idle_ms <= rules.zombie_idle_ms || keepers.holds(&consumer.name) {
            continue;
        }
        if consumer.pending > 0 {
            plan.kept_total += 1;
            if plan.kept.len() < KEPT_LIMIT {
                plan.kept.push(consumer.name.clone());
            }
        } else if plan.delete.len() < rules.delete_limit {
            plan.delete.push(consumer.name.clone());
        }
    }
    plan
}

/// What happened, or would happen, to each planned move.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimOutcome {
    pub claimed: Vec<String>,
    pub quarantined: Vec<String>,
    /// Entries that left the PEL because their stream entry is gone.
    pub dropped: Vec<String>,
}

impl ClaimOutcome {
    /// Splits `plan`'s IDs given which of its entries no longer exist in the stream.
    pub fn from_plan(plan: ClaimPlan, is_gone: impl Fn(&str) -> bool) -> Self {
        let mut outcome = Self::default();
        for m in plan.moves {
            let list = match (is_gone(&m.id), m.destination) {
                (true, _) => &mut outcome.dropped,
                (false, Destination::Target) => &mut outcome.claimed,
                (false, Destination::Quarantine) => &mut outcome.quarantined,
            };
            list.push(m.id);
        }
        outcome
    }
}

/// The consumers as they will be once `plan` is carried out with `outcome`
/// (entries leave their owners; TO and QUARANTINE are created as soon as an
/// entry is planned for them, even one whose stream entry is gone, as the real
/// call does). DRYRUN uses it to predict the delete step exactly.
pub fn consumers_after_claims(
    mut consumers: Vec<Consumer>,
    plan: &ClaimPlan,
    outcome: &ClaimOutcome,
    keepers: &Keepers,
) -> Vec<Consumer> {
    let gone: HashSet<&str> = outcome.dropped.iter().map(String::as_str).collect();
    let mut index: HashMap<Vec<u8>, usize> = consumers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let mut add_pending = |name: &[u8], delta: i64| match index.get(name) {
        Some(&i) => consumers[i].pending += delta,
        None => {
            index.insert(name.to_vec(), consumers.len());
            consumers.push(Consumer {
                name: name.to_vec(),
                pending: delta,
                idle_ms: 0,
            });
        }
    };
    for m in &plan.moves {
        add_pending(&m.owner, -1);
        let keeper = match m.destination {
            Destination::Target => &keepers.to,
            Destination::Quarantine => &keepers.quarantine,
        };
        add_pending(keeper, i64::from(!gone.contains(m.id.as_str())));
    }
    consumers
}

#[cfg(test)]
mod tests;
