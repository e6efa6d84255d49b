//! One bounded RETIRE step: which of the retiring consumer's entries move now,
//! whether this step leaves it empty (only then is it deleted), and how many it
//! still holds afterwards.

use super::PendingEntry;
use std::collections::HashSet;

/// What one step does with the consumer's PEL, read lowest IDs first.
#[derive(Debug, PartialEq, Eq)]
pub struct RetireStep<'a> {
    /// At most COUNT entries, lowest IDs first, whatever their idle time.
    pub take: &'a [PendingEntry],
    /// The page held nothing beyond `take`: once it moves, the consumer is empty.
    pub empties: bool,
}

/// Plans a step over `page`, the consumer's first COUNT + 1 PEL entries: the
/// one past COUNT only tells whether anything stays behind, so the decision to
/// delete rests on the PEL itself, not on arithmetic.
pub fn plan_step(page: &[PendingEntry], count: usize) -> RetireStep<'_> {
    let take = &page[..page.len().min(count)];
    RetireStep {
        take,
        empties: page.len() <= count,
    }
}

/// Entries the consumer holds after the step: its pending count before, less
/// those that left it. Never 0 while the page showed more, never negative.
pub fn remaining_after(pending_before: i64, left: usize, empties: bool) -> i64 {
    if empties {
        0
    } else {
        (pending_before - left as i64).max(1)
    }
}

/// Splits the step's entries into (moved, dropped): XCLAIM returns the IDs it
/// moved and silently removes from the PEL those whose stream entry is gone.
pub fn split_claimed(step: &RetireStep, claimed: &HashSet<String>) -> (Vec<String>, Vec<String>) {
    step.take
        .iter()
        .map(|e| e.id.clone())
        .partition(|id| claimed.contains(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: u64) -> Vec<PendingEntry> {
        (1..=n)
            .map(|i| PendingEntry {
                id: format!("{i}-0"),
                owner: b"exec-1".to_vec(),
                idle_ms: 0,
                deliveries: 1,
            })
            .collect()
    }

    #[test]
    fn a_step_takes_at_most_count_lowest_ids_first() {
        let entries = page(4);
        let step = plan_step(&entries, 3);
        assert_eq!(step.take, &entries[..3]);
        assert!(!step.empties, "a fourth entry stays behind");
        let step = plan_step(&entries[..3], 3);
        assert_eq!((step.take.len(), step.empties), (3, true));
        let step = plan_step(&[], 3);
        assert_eq!((step.take.len(), step.empties), (0, true));
    }

    #[test]
    fn remaining_never_claims_empty_while_entries_stay() {
        assert_eq!(remaining_after(10, 3, false), 7);
        assert_eq!(remaining_after(3, 3, true), 0);
        // A count read a moment ago that disagrees with the PEL: the PEL wins.
        assert_eq!(remaining_after(3, 3, false), 1);
        assert_eq!(remaining_after(9, 3, true), 0);
    }

    #[test]
    fn unclaimed_entries_are_dropped() {
        let entries = page(3);
        let step = plan_step(&entries, 5);
        let claimed: HashSet<String> = ["1-0".to_string(), "3-0".to_string()].into();
        assert_eq!(
            split_claimed(&step, &claimed),
            (vec!["1-0".into(), "3-0".into()], vec!["2-0".into()])
        );
    }
}
