//! From a parsed config file and what Redis said (the groups of group-less
//! targets' streams, the streams each discover pattern matched) to the list of
//! targets one run handles: each (stream, group) once, sorted, with its options
//! merged (the target's over the file's top level), at most `max-targets`.
//!
//! When two entries name the same (stream, group), the more specific one
//! wins: a `[[target]]` with that group, then a group-less `[[target]]` of the
//! stream, then the first `[[discover]]` (file order) that matched it. Two
//! explicit targets naming the same pair are refused earlier, by the parser.

use super::{CallOptions, ConfigFile};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

pub use crate::discover::StreamGroups;

/// What Redis said about the file's group-less targets and discover tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The groups of each stream a group-less target names (no entry, or an
    /// empty list: the stream is missing or has no group).
    pub groups: BTreeMap<String, Vec<String>>,
    /// Per `[[discover]]` table, in file order: the streams its pattern matched.
    pub discovered: Vec<Vec<StreamGroups>>,
}

/// One (stream, group) a run handles and the options of its calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub stream: String,
    pub group: String,
    /// The target's own options over the file's top level; still `None` where
    /// neither sets one (the command line, environment or module decides).
    pub options: CallOptions,
    /// What its own table says of its guard, which nothing overrides.
    pub pinned: Pinned,
}

/// A `[[target]]` or `[[discover]]` table's own `mode-key` and `dry-run =
/// true`: they win over the command line and the environment, so a stream the
/// file guards with its own mode key is never recovered under another (an env
/// file's `QUANTUM_MODE_KEY` or `QUANTUM_DRY_RUN=false` overrode them: review
/// r15 F3). The file's top level ranks below them, like every other option.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pinned {
    pub mode_key: Option<String>,
    pub dry_run: bool,
}

impl Pinned {
    /// What a table's own options (not merged with the top level) pin.
    pub fn of(own: &CallOptions) -> Pinned {
        Pinned {
            mode_key: own.mode_key.clone(),
            dry_run: own.dry_run == Some(true),
        }
    }
}

/// The expanded list and what the operator should hear about.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expansion {
    /// Sorted by stream, then group.
    pub targets: Vec<Target>,
    /// Streams of group-less targets for which no group was found (the stream
    /// is missing, or has no consumer group yet): nothing to recover there.
    pub without_groups: Vec<String>,
}

/// How specific the entry that produced a target was: a lower rank wins.
type Rank = (u8, usize);

impl ConfigFile {
    /// The streams whose groups `expand` needs (XINFO GROUPS): those of the
    /// group-less targets, sorted, each once.
    pub fn groupless_streams(&self) -> Vec<String> {
        let mut streams: Vec<String> = self
            .explicit()
            .into_iter()
            .filter(|(_, group, _)| group.is_none())
            .map(|(stream, _, _)| stream.get_ref().clone())
            .collect();
        streams.sort();
        streams.dedup();
        streams
    }

    /// The `[[discover]]` patterns, in file order (`Found::discovered` follows it).
    pub fn discover_patterns(&self) -> Vec<&str> {
        self.discovers
            .iter()
            .map(|d| d.pattern.get_ref().as_str())
            .collect()
    }
}

/// The run's targets; more than the file's `max-targets` is an error saying
/// how many were found and what to change.
pub fn expand(file: &ConfigFile, found: &Found) -> Result<Expansion, String> {
    let base = file.call_options();
    let mut chosen: BTreeMap<(String, String), (Rank, (CallOptions, Pinned))> = BTreeMap::new();
    let mut offer =
        |stream: &str, group: &str, rank: Rank, options: (CallOptions, Pinned)| match chosen
            .entry((stream.to_string(), group.to_string()))
        {
            Entry::Vacant(slot) => {
                slot.insert((rank, options));
            }
            Entry::Occupied(mut slot) if rank < slot.get().0 => {
                slot.insert((rank, options));
            }
            Entry::Occupied(_) => {}
        };
    let mut without_groups = Vec::new();
    for (index, (stream, group, options)) in file.explicit().into_iter().enumerate() {
        let stream = stream.get_ref();
        let options = (options.over(&base), Pinned::of(&options));
        match group {
            Some(group) => offer(stream, group, (0, index), options),
            None => {
                let groups = found.groups.get(stream).map_or(&[][..], Vec::as_slice);
                if groups.is_empty() {
                    without_groups.push(stream.clone());
                }
                for group in groups {
                    offer(stream, group, (1, index), options.clone());
                }
            }
        }
    }
    for (index, table) in file.discovers.iter().enumerate() {
        let own = table.call_options();
        let options = (own.over(&base), Pinned::of(&own));
        let matched = found.discovered.get(index).map_or(&[][..], Vec::as_slice);
        for found_stream in matched {
            for group in &found_stream.groups {
                if table.group.as_ref().is_none_or(|wanted| wanted == group) {
                    offer(&found_stream.stream, group, (2, index), options.clone());
                }
            }
        }
    }
    let max = file.max_targets();
    if chosen.len() > max {
        return Err(format!(
            "{} targets, more than max-targets = {max}: narrow the [[discover]] patterns \
             or raise max-targets",
            chosen.len()
        ));
    }
    without_groups.sort();
    without_groups.dedup();
    let targets = chosen
        .into_iter()
        .map(|((stream, group), (_, (options, pinned)))| Target {
            stream,
            group,
            options,
            pinned,
        })
        .collect();
    Ok(Expansion {
        targets,
        without_groups,
    })
}
