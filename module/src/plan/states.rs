//! QUANTUM.STATUS's view of the consumers: each one's state, the counts per
//! state over all of them, and which few are listed (the longest idle first).

use super::Consumer;
use quantum_protocol::state;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Live,
    /// Idle > ZOMBIEIDLE with nothing pending: RECOVER deletes it.
    Zombie,
    /// Idle > ZOMBIEIDLE holding entries: RECOVER moves them once idle enough.
    Stuck,
    Target,
    Quarantine,
}

impl State {
    /// In the order STATUS's `states` lists them.
    pub const ALL: [State; 5] = [
        State::Live,
        State::Zombie,
        State::Stuck,
        State::Target,
        State::Quarantine,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Live => state::LIVE,
            State::Zombie => state::ZOMBIE,
            State::Stuck => state::STUCK,
            State::Target => state::TARGET,
            State::Quarantine => state::QUARANTINE,
        }
    }
}

/// The names RECOVER uses as TO and QUARANTINE, and its zombie threshold.
pub struct StateRules<'a> {
    pub zombie_idle_ms: i64,
    pub to: &'a [u8],
    pub quarantine: &'a [u8],
}

impl StateRules<'_> {
    pub fn state(&self, consumer: &Consumer) -> State {
        let idle_too_long = consumer.idle_ms > self.zombie_idle_ms;
        match () {
            _ if consumer.name == self.to => State::Target,
            _ if consumer.name == self.quarantine => State::Quarantine,
            _ if idle_too_long && consumer.pending == 0 => State::Zombie,
            _ if idle_too_long => State::Stuck,
            _ => State::Live,
        }
    }

    /// How many consumers are in each state, in `State::ALL` order.
    pub fn counts(&self, consumers: &[Consumer]) -> [(State, usize); 5] {
        let mut counts = State::ALL.map(|s| (s, 0));
        for c in consumers {
            let state = self.state(c);
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 += 1;
            }
        }
        counts
    }
}

/// At most `limit` consumers, the longest idle first (equal idle: by name), in
/// O(n + limit log limit): a group can have 100,000 consumers.
pub fn longest_idle_first(consumers: &[Consumer], limit: usize) -> Vec<&Consumer> {
    let order = |a: &&Consumer, b: &&Consumer| b.idle_ms.cmp(&a.idle_ms).then(a.name.cmp(&b.name));
    let mut all: Vec<&Consumer> = consumers.iter().collect();
    if limit == 0 {
        return Vec::new();
    }
    if all.len() > limit {
        all.select_nth_unstable_by(limit - 1, order);
        all.truncate(limit);
    }
    all.sort_unstable_by(order);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn consumer(name: &str, pending: i64, idle_ms: i64) -> Consumer {
        Consumer {
            name: name.as_bytes().to_vec(),
            pending,
            idle_ms,
        }
    }

    const RULES: StateRules = StateRules {
        zombie_idle_ms: 100,
        to: b"recovery",
        quarantine: b"quarantine",
    };

    #[test]
    fn every_state() {
        for (c, expected) in [
            (consumer("recovery", 5, 1_000), State::Target),
            (consumer("quarantine", 0, 1_000), State::Quarantine),
            (consumer("exec-1", 0, 101), State::Zombie),
            (consumer("exec-2", 3, 101), State::Stuck),
            (consumer("exec-3", 0, 100), State::Live),
        ] {
            assert_eq!(RULES.state(&c), expected, "{c:?}");
        }
    }

    #[test]
    fn the_longest_idle_are_listed_first_and_ties_go_by_name() {
        let all = [
            consumer("b", 0, 5),
            consumer("a", 0, 5),
            consumer("c", 0, 9),
            consumer("d", 0, 1),
        ];
        let names = |list: Vec<&Consumer>| -> Vec<String> {
            list.iter()
                .map(|c| String::from_utf8_lossy(&c.name).into_owned())
                .collect()
        };
        assert_eq!(names(longest_idle_first(&all, 3)), ["c", "a", "b"]);
        assert_eq!(names(longest_idle_first(&all, 10)), ["c", "a", "b", "d"]);
        assert!(longest_idle_first(&all, 0).is_empty());
    }

    proptest! {
        /// The listed ones are the top `limit` of a full sort, and the counts cover everyone.
        #[test]
        fn listing_matches_a_full_sort(
            idles in prop::collection::vec((0i64..50, 0i64..3), 0..60),
            limit in 1usize..70,
        ) {
            let all: Vec<Consumer> = idles
                .iter()
                .enumerate()
                .map(|(i, &(idle, pending))| consumer(&format!("exec-{i}"), pending, idle))
                .collect();
            let mut sorted: Vec<&Consumer> = all.iter().collect();
            sorted.sort_by(|a, b| b.idle_ms.cmp(&a.idle_ms).then(a.name.cmp(&b.name)));
            sorted.truncate(limit);
            prop_assert_eq!(longest_idle_first(&all, limit), sorted);
            let total: usize = RULES.counts(&all).iter().map(|(_, n)| n).sum();
            prop_assert_eq!(total, all.len());
        }
    }
}
