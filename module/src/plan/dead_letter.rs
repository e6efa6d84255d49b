//! The dead-letter copies of one RECOVER call: which quarantine moves are
//! copied, which wait because a copy could push Redis past `maxmemory`, and
//! what each copy holds. Claims free nothing but add nothing, so RECOVER is not
//! `deny-oom`; a copy adds an entry, so it must fit in the room left.

use super::{ClaimPlan, Destination, Move};
use quantum_protocol::dead_letter as field;
use std::collections::HashSet;
use std::ops::Deref;

/// The memory a call may still use before Redis reaches `maxmemory`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Room {
    /// No `maxmemory` set.
    Unlimited,
    Bytes(u64),
}

impl Room {
    /// From `maxmemory` (0: none) and the used/maxmemory ratio Redis reports.
    pub fn from_usage(maxmemory: u64, used_ratio: f64) -> Room {
        if maxmemory == 0 {
            return Room::Unlimited;
        }
        let free = maxmemory as f64 * (1.0 - used_ratio);
        Room::Bytes(if free > 0.0 { free as u64 } else { 0 })
    }
}

/// Reserved once per call for a new stream node: a copy may open one
/// (a listpack of up to `stream-node-max-bytes`, 4 KiB by default, and its
/// radix-tree node).
pub const NODE_RESERVE: u64 = 8 * 1024;
/// Estimated bytes of bookkeeping per field or value in a stream entry, on top
/// of its bytes (listpack headers, allocator rounding), with a margin.
pub const PER_ITEM_OVERHEAD: u64 = 16;
/// Estimated bytes per entry on top of its fields (ID, flags, counts).
pub const PER_ENTRY_OVERHEAD: u64 = 64;

/// The estimated memory one copy takes: its header fields and the entry's own
/// `payload` (field, value, field, value …), times one and a half. jemalloc
/// rounds an allocation up to its size class, up to a quarter more (a
/// 131,000-byte listpack takes 160 KiB; review r15 measured copies the plain
/// sum let through ending 212 KB past maxmemory); the rest is margin for the
/// listpack growing in place.
pub fn copy_cost(header: &Header, payload: &[impl Deref<Target = [u8]>]) -> u64 {
    let items = header.fields().iter().map(|(f, v)| f.len() + v.len());
    let bytes: usize = items.sum::<usize>() + payload.iter().map(|p| p.len()).sum::<usize>();
    let count = (2 * header.fields().len() + payload.len()) as u64;
    let stored = bytes as u64 + count * PER_ITEM_OVERHEAD + PER_ENTRY_OVERHEAD;
    stored + stored / 2
}

/// How many more IDs XADD `*` can give a stream whose last generated ID is
/// `last_ms-last_seq`: it moves on to the next millisecond when the sequence
/// is used up, and fails only once both parts are `u64::MAX`.
pub fn ids_left(last_ms: u64, last_seq: u64) -> u64 {
    if last_ms == u64::MAX {
        u64::MAX - last_seq
    } else {
        u64::MAX
    }
}

/// A quarantine move whose stream entry still exists: a copy wants to be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// `copy_cost` of its copy.
    pub cost: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyPlan {
    /// IDs copied (and moved to QUARANTINE), in PEL order.
    pub copy: Vec<String>,
    /// IDs left with their owner for this call: their copies do not fit.
    pub deferred: Vec<String>,
}

/// Copies the candidates in PEL order while they fit in `room`; from the first
/// that does not, every later one waits too, so the oldest go first next time.
pub fn plan_copies(candidates: &[Candidate], room: Room) -> CopyPlan {
    let mut plan = CopyPlan::default();
    let mut left = match room {
        Room::Unlimited => None,
        Room::Bytes(free) => Some(free.saturating_sub(NODE_RESERVE)),
    };
    for candidate in candidates {
        let fits = plan.deferred.is_empty() && left.is_none_or(|free| candidate.cost <= free);
        if fits {
            left = left.map(|free| free - candidate.cost);
            plan.copy.push(candidate.id.clone());
        } else {
            plan.deferred.push(candidate.id.clone());
        }
    }
    plan
}

impl ClaimPlan {
    /// The quarantine moves, the ones a dead-letter stream copies.
    pub fn quarantine_moves(&self) -> impl Iterator<Item = &Move> {
        self.moves
            .iter()
            .filter(|m| m.destination == Destination::Quarantine)
    }

    /// Leaves out the moves of `ids`: those entries stay with their owners.
    pub fn without(mut self, ids: &[String]) -> ClaimPlan {
        let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
        self.moves.retain(|m| !ids.contains(m.id.as_str()));
        self
    }
}

/// The fields a copy starts with, before the entry's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    fields: [(&'static str, Vec<u8>); 6],
}

impl Header {
    pub fn new(stream: &[u8], group: &[u8], moved: &Move) -> Header {
        Header {
            fields: [
                (field::STREAM, stream.to_vec()),
                (field::GROUP, group.to_vec()),
                (field::ID, moved.id.as_bytes().to_vec()),
                (field::CONSUMER, moved.owner.to_vec()),
                (field::DELIVERIES, moved.deliveries.to_string().into_bytes()),
                (
                    field::REASON,
                    field::REASON_MAX_DELIVERIES.as_bytes().to_vec(),
                ),
            ],
        }
    }

    pub fn fields(&self) -> &[(&'static str, Vec<u8>)] {
        &self.fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every candidate is copied or deferred, in order; the copies are the
        /// oldest ones and fit in the room left after the node reserve.
        #[test]
        fn copies_are_an_order_kept_prefix_that_fits(
            costs in proptest::collection::vec(1u64..5_000, 0..40),
            free in proptest::option::of(0u64..60_000),
        ) {
            let room = free.map_or(Room::Unlimited, Room::Bytes);
            let all = candidates(&costs);
            let plan = plan_copies(&all, room);
            let ids: Vec<String> = all.iter().map(|c| c.id.clone()).collect();
            prop_assert_eq!([plan.copy.clone(), plan.deferred.clone()].concat(), ids);
            let used: u64 = costs[..plan.copy.len()].iter().sum();
            if let Some(free) = free {
                prop_assert!(used <= free.saturating_sub(NODE_RESERVE));
                if let Some(next) = costs.get(plan.copy.len()) {
                    prop_assert!(used + next > free.saturating_sub(NODE_RESERVE), "one more would fit");
                }
            } else {
                prop_assert!(plan.deferred.is_empty());
            }
        }
    }

    fn candidates(costs: &[u64]) -> Vec<Candidate> {
        costs
            .iter()
            .enumerate()
            .map(|(i, &cost)| Candidate {
                id: format!("{i}-0"),
                cost,
            })
            .collect()
    }

    #[test]
    fn ids_run_out_only_in_the_last_millisecond() {
        assert_eq!(ids_left(u64::MAX, u64::MAX), 0);
        assert_eq!(ids_left(u64::MAX, u64::MAX - 2), 2);
        assert_eq!(ids_left(u64::MAX, 0), u64::MAX);
        // The sequence rolls over into the next millisecond.
        assert_eq!(ids_left(u64::MAX - 1, u64::MAX), u64::MAX);
        assert_eq!(ids_left(0, 0), u64::MAX);
    }

    #[test]
    fn without_maxmemory_everything_is_copied() {
        let plan = plan_copies(&candidates(&[10, 1 << 40]), Room::Unlimited);
        assert_eq!(plan.copy, ["0-0", "1-0"]);
        assert!(plan.deferred.is_empty());
    }

    #[test]
    fn copies_stop_at_the_room_left_after_the_node_reserve() {
        let room = Room::Bytes(NODE_RESERVE + 250);
        let plan = plan_copies(&candidates(&[100, 100, 100, 10]), room);
        assert_eq!(plan.copy, ["0-0", "1-0"]);
        // The small last one would fit, but older entries go first.
        assert_eq!(plan.deferred, ["2-0", "3-0"]);
    }

    #[test]
    fn over_maxmemory_nothing_is_copied() {
        assert_eq!(Room::from_usage(1000, 1.2), Room::Bytes(0));
        assert_eq!(Room::from_usage(0, 0.0), Room::Unlimited);
        assert_eq!(Room::from_usage(1000, 0.5), Room::Bytes(500));
        let plan = plan_copies(&candidates(&[1]), Room::Bytes(NODE_RESERVE));
        assert_eq!((plan.copy.len(), plan.deferred.len()), (0, 1));
    }

    #[test]
    fn the_header_names_stream_group_id_owner_deliveries_and_reason() {
        let moved = Move {
            id: "7-1".into(),
            owner: b"exec-9"[..].into(),
            deliveries: 4,
            destination: Destination::Quarantine,
        };
        let header = Header::new(b"s", b"g", &moved);
        let shown: Vec<(&str, &[u8])> = header
            .fields()
            .iter()
            .map(|(f, v)| (*f, v.as_slice()))
            .collect();
        assert_eq!(
            shown,
            [
                ("quantum-stream", &b"s"[..]),
                ("quantum-group", b"g"),
                ("quantum-id", b"7-1"),
                ("quantum-consumer", b"exec-9"),
                ("quantum-deliveries", b"4"),
                ("quantum-reason", b"max-deliveries"),
            ]
        );
        // Header bytes (s g 7-1 exec-9 4 max-deliveries + names) plus the payload, plus overheads.
        let payload = [b"f".to_vec(), b"vv".to_vec()];
        let names: usize = header.fields().iter().map(|(f, _)| f.len()).sum();
        let bytes = names + 1 + 1 + 3 + 6 + 1 + 14 + 3;
        let stored = bytes as u64 + 14 * PER_ITEM_OVERHEAD + PER_ENTRY_OVERHEAD;
        assert_eq!(copy_cost(&header, &payload), stored * 3 / 2);
    }

    #[test]
    fn deferred_moves_leave_the_claim_plan() {
        let moves = ["1-0", "2-0", "3-0"].map(|id| Move {
            id: id.into(),
            owner: b"dead"[..].into(),
            deliveries: 5,
            destination: if id == "1-0" {
                Destination::Target
            } else {
                Destination::Quarantine
            },
        });
        let plan = ClaimPlan {
            moves: moves.to_vec(),
            scanned: 3,
            cursor: None,
        };
        let quarantined: Vec<&str> = plan.quarantine_moves().map(|m| m.id.as_str()).collect();
        assert_eq!(quarantined, ["2-0", "3-0"]);
        let kept = plan.without(&["3-0".to_string()]);
        assert_eq!(kept.ids_to(Destination::Quarantine), ["2-0"]);
        assert_eq!(kept.ids_to(Destination::Target), ["1-0"]);
        assert_eq!(kept.scanned, 3, "the cursor and scan count stay");
    }
}
