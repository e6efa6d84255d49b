//! One bounded RETIRE step: which of the retiring consumer's entries move now,
//! whether this step leaves it empty (only then is it deleted), and what the
//! reply can truthfully say about what it still holds.
//!
//! A step claims its entries in chunks and may stop between two chunks when
//! its time budget is spent: XCLAIM's cost per entry grows with the size of
//! the stream's entries (it walks the entry's listpack node to check that it
//! still exists), so COUNT alone does not bound how long a call holds Redis.

/// Entries per XPENDING page and XCLAIM inside one step: the step's time is
/// checked between pages, and the first page always moves, so every call
/// makes progress.
pub const CLAIM_CHUNK: usize = 100;

use super::PendingEntry;
use std::collections::HashSet;

/// Entries to ask XPENDING for next, after `sent` of COUNT went to XCLAIM: a
/// page, or what is left of COUNT (0: the step is done).
pub fn page_size(count: i64, sent: usize) -> usize {
    usize::try_from(count)
        .unwrap_or(0)
        .saturating_sub(sent)
        .min(CLAIM_CHUNK)
}

/// What the consumer still holds after a step, as far as one call can see:
/// its PEL read at most one entry more than the step took, past the ones it
/// took (so the look-ahead costs a fraction of the claims). An exact count
/// would need XINFO CONSUMERS, a pass over every consumer of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remaining {
    /// Exact when `exact`; otherwise a lower bound (taken + 1: "more than this step took").
    pub entries: i64,
    pub exact: bool,
}

impl Remaining {
    /// From the look-ahead: `seen` entries found past the step's (at most `taken` + 1 read).
    pub fn from_look_ahead(seen: usize, taken: usize) -> Remaining {
        Remaining {
            entries: seen as i64,
            exact: seen <= taken,
        }
    }

    pub const NONE: Remaining = Remaining {
        entries: 0,
        exact: true,
    };

    /// Nothing stays behind: the step empties the consumer, which is then deleted.
    pub fn empties(self) -> bool {
        self.entries == 0
    }
}

/// Splits the step's entries into (moved, dropped): XCLAIM returns the IDs it
/// moved and silently removes from the PEL those whose stream entry is gone.
pub fn split_claimed(
    take: &[PendingEntry],
    claimed: &HashSet<String>,
) -> (Vec<String>, Vec<String>) {
    take.iter()
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
    fn remaining_is_exact_up_to_count_and_a_lower_bound_beyond() {
        assert_eq!(Remaining::from_look_ahead(0, 3), Remaining::NONE);
        assert!(Remaining::from_look_ahead(0, 3).empties());
        let some = Remaining::from_look_ahead(3, 3);
        assert_eq!((some.entries, some.exact, some.empties()), (3, true, false));
        // The look-ahead stops at taken + 1: "more than this step took", never a guess.
        let more = Remaining::from_look_ahead(4, 3);
        assert_eq!(
            (more.entries, more.exact, more.empties()),
            (4, false, false)
        );
    }

    #[test]
    fn pages_are_a_chunk_or_what_is_left_of_count() {
        assert_eq!(page_size(1000, 0), CLAIM_CHUNK);
        assert_eq!(page_size(1000, 950), 50);
        assert_eq!(page_size(1000, 1000), 0);
        assert_eq!(page_size(3, 0), 3);
        assert_eq!(page_size(3, 5), 0, "never negative");
    }

    #[test]
    fn unclaimed_entries_are_dropped() {
        let entries = page(3);
        let claimed: HashSet<String> = ["1-0".to_string(), "3-0".to_string()].into();
        assert_eq!(
            split_claimed(&entries, &claimed),
            (vec!["1-0".into(), "3-0".into()], vec!["2-0".into()])
        );
    }
}
