//! One bounded RETIRE step: which of the retiring consumer's entries move now,
//! whether this step leaves it empty (only then is it deleted), and what the
//! reply can truthfully say about what it still holds.
//!
//! A step claims its entries a page at a time and stops when its time budget
//! is spent: XCLAIM's cost per entry grows with the size of the stream's
//! entries and nodes (it walks the entry's listpack node to check that it
//! still exists), so COUNT alone does not bound how long a call holds Redis.
//! Pages are sized from the cost per entry measured so far, starting with
//! one entry, so a stream whose entries are dear to claim shows it before a
//! big page is sent.

use super::PendingEntry;
use std::time::Duration;

/// The most entries per page (XPENDING, then XCLAIM): the budget is checked
/// at least this often.
pub const MAX_PAGE: usize = 100;

/// Entries the step's first page asks for: one (or none for COUNT 0). The
/// first page always moves, so every call makes progress.
pub fn first_page_size(count: i64) -> usize {
    left_of_count(count, 0).min(1)
}

/// Entries the next page asks for after `sent` entries went to XCLAIM in
/// `spent`, with `left` of the budget still to go: as many as fit in `left`
/// at the cost per entry so far, at most MAX_PAGE and what is left of COUNT.
/// 0: the step is done (COUNT reached, or the budget would not fit one more).
pub fn next_page_size(count: i64, sent: usize, spent: Duration, left: Duration) -> usize {
    let per_entry = spent.as_nanos() / (sent.max(1) as u128);
    let fit = left.as_nanos() / per_entry.max(1);
    left_of_count(count, sent)
        .min(MAX_PAGE)
        .min(usize::try_from(fit).unwrap_or(usize::MAX))
}

fn left_of_count(count: i64, sent: usize) -> usize {
    usize::try_from(count).unwrap_or(0).saturating_sub(sent)
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
/// `claimed` says, for each entry of `take`, whether XCLAIM moved it.
pub fn split_claimed(take: &[PendingEntry], claimed: &[bool]) -> (Vec<String>, Vec<String>) {
    let (mut moved, mut dropped) = (Vec::new(), Vec::new());
    for (entry, &claimed) in take.iter().zip(claimed) {
        match claimed {
            true => moved.push(entry.id.clone()),
            false => dropped.push(entry.id.clone()),
        }
    }
    (moved, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: u64) -> Vec<PendingEntry> {
        (1..=n)
            .map(|i| PendingEntry {
                id: format!("{i}-0"),
                owner: b"exec-1"[..].into(),
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
    fn the_first_page_is_one_entry_and_later_ones_fit_the_budget_left() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        assert_eq!((first_page_size(1000), first_page_size(0)), (1, 0));
        // 6 µs an entry, 4 ms left: a full page.
        assert_eq!(next_page_size(1000, 100, us(600), ms(4)), MAX_PAGE);
        // 1 ms an entry (a huge stream node), 4 ms left: four.
        assert_eq!(next_page_size(1000, 1, ms(1), ms(4)), 4);
        // Dearer than what is left, or nothing left: the step is done.
        assert_eq!(next_page_size(1000, 1, ms(11), ms(4)), 0);
        assert_eq!(next_page_size(1000, 100, us(600), Duration::ZERO), 0);
        // Never past COUNT; a cost too small to measure is no division by zero.
        assert_eq!(next_page_size(1000, 950, us(1), ms(4)), 50);
        assert_eq!(next_page_size(3, 3, us(10), ms(4)), 0);
        assert_eq!(next_page_size(1000, 10, Duration::ZERO, ms(4)), MAX_PAGE);
    }

    #[test]
    fn unclaimed_entries_are_dropped() {
        let entries = page(3);
        assert_eq!(
            split_claimed(&entries, &[true, false, true]),
            (vec!["1-0".into(), "3-0".into()], vec!["2-0".into()])
        );
    }
}
