//! Which (stream, group) targets a run handles and with which options.
//!
//! Precedence, per option: the command line, then the environment (the
//! `--env-file` included), then the config file (a target's own value over
//! the file's top level), then the built-in default. `--stream`/`--group` on
//! the command line select exactly that one target; otherwise a config file
//! naming targets or `[[discover]]` tables gives them (group-less targets and
//! discover patterns are asked of Redis at the start of the run); otherwise
//! the one target of the environment and defaults, as before `--config`.

use crate::cli::Cli;
use crate::cluster::Cluster;
use crate::config_file::{self, CallOptions, ConfigFile, Found, Target};
use crate::connect::{self, Link};
use crate::discover::{self, DiscoverError, Discovery};
use crate::failure::{self, ExitCode, Failure};
use clap::parser::ValueSource;
use clap::ArgMatches;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// The clap ids whose value came from the command line or the environment:
/// a config file's value applies to every other option.
#[derive(Debug, Clone, Default)]
pub struct Explicit(BTreeSet<String>);

impl Explicit {
    pub fn of(matches: &ArgMatches) -> Explicit {
        let sub = matches.subcommand().map(|(_, sub)| sub);
        let ids = matches
            .ids()
            .chain(sub.into_iter().flat_map(ArgMatches::ids));
        let given = |id: &str| {
            let source = sub
                .and_then(|sub| sub.value_source(id))
                .or_else(|| matches.value_source(id));
            matches!(
                source,
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        Explicit(
            ids.map(|id| id.as_str().to_string())
                .filter(|id| given(id))
                .collect(),
        )
    }

    fn has(&self, id: &str) -> bool {
        self.0.contains(id)
    }
}

/// Where the targets come from.
#[derive(Debug, Clone)]
pub enum Selection {
    /// `--stream`/`--group` (command line, environment or default): one target.
    One,
    /// The config file's targets and discover tables.
    File(Box<ConfigFile>, PathBuf),
}

impl Selection {
    /// Whether the run reports as a list (JSON array): its targets come from a file.
    pub fn is_file(&self) -> bool {
        matches!(self, Selection::File(..))
    }
}

/// Sets `slot` to the file's value unless the option was given explicitly.
fn take<T: Clone>(explicit: &Explicit, id: &str, slot: &mut T, value: Option<T>) {
    if let Some(value) = value.filter(|_| !explicit.has(id)) {
        *slot = value;
    }
}

/// The same, for the options that are `None` until set.
fn take_opt<T: Clone>(explicit: &Explicit, id: &str, slot: &mut Option<T>, value: &Option<T>) {
    if let (false, Some(value)) = (explicit.has(id), value) {
        *slot = Some(value.clone());
    }
}

/// Applies a file's top level (run-wide and call options) to `cli`.
pub fn apply_top_level(cli: &mut Cli, file: &ConfigFile, explicit: &Explicit) {
    let e = explicit;
    take(e, "url", &mut cli.url, file.url.clone());
    take(e, "cluster", &mut cli.cluster, file.cluster);
    take_opt(
        e,
        "password_file",
        &mut cli.password_file,
        &file.password_file,
    );
    take(e, "deadline", &mut cli.deadline, file.deadline);
    take_opt(e, "log_file", &mut cli.log_file, &file.log_file);
    take_opt(e, "metrics_file", &mut cli.metrics_file, &file.metrics_file);
    take_opt(e, "state_dir", &mut cli.state_dir, &file.state_dir);
    take(e, "json", &mut cli.json, file.json);
    let d = &mut cli.doctor;
    take_opt(e, "admin_url", &mut d.admin_url, &file.admin_url);
    take_opt(
        e,
        "admin_password_file",
        &mut d.admin_password_file,
        &file.admin_password_file,
    );
    take_opt(e, "trading_user", &mut d.trading_user, &file.trading_user);
    take(e, "redis_unit", &mut d.redis_unit, file.redis_unit.clone());
    take(e, "redis_conf", &mut d.redis_conf, file.redis_conf.clone());
    apply_call_options(cli, &file.call_options(), explicit);
}

/// Applies one call's options (a target's, merged over the top level) to `cli`.
pub fn apply_call_options(cli: &mut Cli, o: &CallOptions, explicit: &Explicit) {
    let e = explicit;
    take_opt(e, "to", &mut cli.to, &o.to);
    take_opt(e, "quarantine", &mut cli.quarantine, &o.quarantine);
    take_opt(e, "dead_letter", &mut cli.dead_letter, &o.dead_letter);
    take_opt(e, "mode_key", &mut cli.mode_key, &o.mode_key);
    take_opt(e, "min_idle", &mut cli.min_idle, &o.min_idle);
    take_opt(e, "zombie_idle", &mut cli.zombie_idle, &o.zombie_idle);
    take_opt(e, "count", &mut cli.count, &o.count);
    take_opt(e, "scan", &mut cli.scan, &o.scan);
    take_opt(e, "delete_limit", &mut cli.delete_limit, &o.delete_limit);
    take_opt(
        e,
        "max_deliveries",
        &mut cli.max_deliveries,
        &o.max_deliveries,
    );
    take_opt(e, "retire_count", &mut cli.retire_count, &o.retire_count);
    take_opt(e, "limit", &mut cli.limit, &o.limit);
    take(e, "max_batches", &mut cli.max_batches, o.max_batches);
    take(e, "dry_run", &mut cli.dry_run, o.dry_run);
}

/// The options of one target's calls: `base` with the target's name and its
/// own options where the command line and the environment left them open.
pub fn for_target(base: &Cli, target: &Target, explicit: &Explicit) -> Cli {
    let mut cli = base.clone();
    cli.stream = target.stream.clone();
    cli.group = target.group.clone();
    apply_call_options(&mut cli, &target.options, explicit);
    if let Some(key) = &target.pinned.mode_key {
        cli.mode_key = Some(key.clone());
    }
    cli.dry_run |= target.pinned.dry_run;
    // Both keys must share the stream's slot in a cluster.
    cli.mode_key = cli
        .mode_key
        .map(|key| with_stream_tag(&key, &target.stream));
    cli.dead_letter = cli
        .dead_letter
        .map(|key| with_stream_tag(&key, &target.stream));
    cli
}

/// In a mode key or a dead-letter key, what `{stream-tag}` stands for.
pub const STREAM_TAG: &str = "{stream-tag}";

/// `key` with `{stream-tag}` replaced by the stream's hash tag in braces (its
/// whole name when it has none): in a cluster the mode key must share the
/// stream's slot, so one `[[discover]]` over streams in many slots can name
/// each one's mode key, e.g. `{stream-tag}:mode`.
pub fn with_stream_tag(key: &str, stream: &str) -> String {
    if !key.contains(STREAM_TAG) {
        return key.to_string();
    }
    let tag = stream
        .find('{')
        .and_then(|open| {
            let rest = &stream[open + 1..];
            let close = rest.find('}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(stream);
    key.replace(STREAM_TAG, &format!("{{{tag}}}"))
}

/// Something that went wrong while finding the targets, without stopping the
/// targets that were found: a discover pattern or a group-less stream Redis
/// could not be asked about.
pub struct Problem {
    /// `discover="pattern"` or `stream=… group=*`, for the log line.
    pub scope: String,
    pub failure: Failure,
}

/// The run's targets as far as Redis could say.
pub struct Resolved {
    pub targets: Vec<Target>,
    pub problems: Vec<Problem>,
}

/// Asks Redis for what the file leaves open (the groups of group-less
/// targets, the streams of discover patterns) and expands the file into its
/// targets. More than `max-targets` is a failure (64): nothing runs.
pub fn resolve(con: &mut Link, file: &ConfigFile, deadline: Instant) -> Result<Resolved, Failure> {
    let mut found = Found::default();
    let mut problems = Vec::new();
    let groupless = file.groupless_streams();
    // Streams whose XINFO GROUPS failed: their error says it, not a WARN.
    let mut unanswered = std::collections::HashSet::new();
    for (i, stream) in groupless.iter().enumerate() {
        // Each within its share of the time left, one share kept for the
        // rest: a stream on a hung node (which a cluster waits out as a
        // failover) must not hold the whole run.
        let left = deadline.saturating_duration_since(Instant::now());
        let mine = Instant::now() + left / (groupless.len() - i + 1) as u32;
        match groups_of(con, stream, mine) {
            Ok((groups, not_utf8)) => {
                found.groups.insert(stream.clone(), groups);
                for group in not_utf8 {
                    problems.push(not_utf8_problem(stream, &group));
                }
            }
            Err(failure) => {
                unanswered.insert(stream.clone());
                problems.push(Problem {
                    scope: format!("stream={} group=*", crate::report::field_value(stream)),
                    failure,
                });
            }
        }
    }
    let limit = file.max_targets();
    let mut hung = HungPrimaries::new();
    for pattern in file.discover_patterns() {
        match discover_all(con, pattern, limit, deadline, &mut hung) {
            Ok((discovery, failed_nodes)) => {
                for skipped in &discovery.skipped {
                    tracing::info!("discover {pattern:?}: skipped {skipped}");
                }
                if discovery.truncated {
                    return Err(too_many(pattern, limit));
                }
                found.discovered.push(discovery.streams);
                for (stream, group) in &discovery.not_utf8 {
                    problems.push(not_utf8_problem(stream, group));
                }
                // A primary that failed is its own entry; what the others found still runs.
                for (node, failure) in failed_nodes {
                    problems.push(Problem {
                        scope: format!(
                            "discover={} node={}",
                            crate::report::quoted(pattern),
                            crate::report::field_value(&node)
                        ),
                        failure,
                    });
                }
            }
            Err(failure) => {
                found.discovered.push(Vec::new());
                problems.push(Problem {
                    scope: format!("discover={}", crate::report::quoted(pattern)),
                    failure,
                });
            }
        }
    }
    let expansion =
        config_file::expand(file, &found).map_err(|m| Failure::new(ExitCode::Usage, m))?;
    for stream in expansion
        .without_groups
        .iter()
        .filter(|s| !unanswered.contains(*s))
    {
        tracing::warn!(
            "stream {} has no consumer group (or does not exist): nothing to recover there",
            crate::report::quoted(stream)
        );
    }
    Ok(Resolved {
        targets: expansion.targets,
        problems,
    })
}

fn too_many(pattern: &str, limit: usize) -> Failure {
    Failure::new(
        ExitCode::Usage,
        format!(
            "[[discover]] {pattern:?} found more than max-targets = {limit} (stream, group) \
             pairs: nothing was recovered; narrow the pattern or raise max-targets"
        ),
    )
}

/// The groups of `stream`, which the file names, and (escaped) those whose
/// names are not UTF-8: a key that is missing or not a stream is that
/// target's failure (a typo must show), not an empty list.
fn groups_of(
    con: &mut Link,
    stream: &str,
    deadline: Instant,
) -> Result<(Vec<String>, Vec<String>), Failure> {
    let cmd = redis::cmd("XINFO").arg("GROUPS").arg(stream).clone();
    con.query(&cmd, deadline).map(|reply| {
        (
            discover::group_names(&reply),
            discover::non_utf8_group_names(&reply),
        )
    })
}

/// A stream or group (`*`: the stream's own name) whose name is not UTF-8,
/// already escaped: the trigger names them as text, so it cannot recover
/// there; a failed entry (76) rather than a silent gap.
fn not_utf8_problem(stream: &str, group: &str) -> Problem {
    Problem {
        scope: format!(
            "stream={} group={}",
            crate::report::field_value(stream),
            crate::report::field_value(group)
        ),
        failure: Failure::new(
            ExitCode::Protocol,
            "the name is not UTF-8 (shown with \\x escapes): the trigger names streams and \
             groups as text, so this group is not recovered; rename it to recover it",
        ),
    }
}

/// The primaries whose discovery failed this run, and how: a later pattern
/// does not wait for them again.
type HungPrimaries = std::collections::BTreeMap<crate::cluster::Addr, (String, Failure)>;

/// What one pattern found, and the primaries (by name) that could not say.
type Discovered = (Discovery, Vec<(String, Failure)>);

/// `[[discover]]` on the server, or on every primary of a cluster.
fn discover_all(
    con: &mut Link,
    pattern: &str,
    limit: usize,
    deadline: Instant,
    hung: &mut HungPrimaries,
) -> Result<Discovered, Failure> {
    match con {
        Link::Single(c, name) => {
            // Half the time left, the other half kept for running the
            // targets (as a cluster keeps one share): a SCAN over a huge
            // keyspace must not take the whole run and what it found.
            let left = connect::remaining(deadline)?;
            let mine = Instant::now() + left / 2;
            c.set_read_timeout(Some(left / 2))
                .and_then(|_| c.set_write_timeout(Some(left / 2)))
                .map_err(|e| failure::from_redis(&e))?;
            match discover::discover(c, pattern, limit, mine) {
                Ok(found) => Ok((found, Vec::new())),
                // What it found by then still runs; the node's entry says the rest is unknown.
                Err(DiscoverError::Deadline(partial)) => {
                    let f = failed(DiscoverError::Deadline(Box::default()), name);
                    Ok((*partial, vec![(name.clone(), f)]))
                }
                Err(e) => Err(failed(e, name)),
            }
        }
        Link::Cluster(cluster) => Ok(on_every_primary(cluster, pattern, limit, deadline, hung)),
        // The primary the sentinels name now, on a connection of its own.
        Link::Sentinel(sentinel) => {
            let primary = sentinel.named_primary(deadline)?;
            let mut node = sentinel.node(&primary, deadline)?;
            let name = format!("{}:{}", primary.0, primary.1);
            let found = discover::discover(&mut node, pattern, limit, deadline);
            Ok((found.map_err(|e| failed(e, &name))?, Vec::new()))
        }
    }
}

/// A discovery that failed on `node`, named in the message.
fn failed(e: DiscoverError, node: &str) -> Failure {
    match e {
        DiscoverError::Redis(e) => {
            let f = failure::from_redis(&e);
            let message = format!("{node}: {}", f.message);
            f.reworded(message)
        }
        DiscoverError::Deadline(_) => Failure::new(
            ExitCode::Unavailable,
            format!("{node}: {e} (its share of --deadline)"),
        ),
    }
}

/// SCAN on each primary in turn, each within its share of the time left (an
/// equal part, one part kept for running the targets) and each call within
/// the node's call timeout: a hung primary costs its share, not the run, and
/// what the others found still runs.
fn on_every_primary(
    cluster: &mut Cluster,
    pattern: &str,
    limit: usize,
    deadline: Instant,
    hung: &mut HungPrimaries,
) -> Discovered {
    let mut all = Discovery::default();
    let mut failures = Vec::new();
    let primaries = cluster.primaries();
    for (i, addr) in primaries.iter().enumerate() {
        if let Some((name, earlier)) = hung.get(addr) {
            let message = format!("{} (an earlier [[discover]] of this run)", earlier.message);
            failures.push((name.clone(), earlier.clone().reworded(message)));
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / (primaries.len() - i + 1) as u32;
        let mine = Instant::now() + share;
        let result = cluster.node(addr, mine).and_then(|(node, name)| {
            let left = limit.saturating_sub(all.pairs());
            discover::discover(node, pattern, left, mine).map_err(|e| failed(e, &name))
        });
        match result {
            Ok(found) => all.merge(found),
            Err(f) => {
                cluster.drop_node(addr);
                let name = format!("{}:{}", addr.0, addr.1);
                let f = match f.message.starts_with(&name) {
                    true => f,
                    false => {
                        let message = format!("{name}: {}", f.message);
                        f.reworded(message)
                    }
                };
                hung.insert(addr.clone(), (name.clone(), f.clone()));
                failures.push((name, f));
            }
        }
        if all.truncated {
            break;
        }
    }
    (all, failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::key_slot;
    use clap::{CommandFactory, FromArgMatches};
    use std::path::Path;

    /// The options after `argv` and a config file with `toml`.
    fn with_file(argv: &[&str], toml: &str) -> Cli {
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let mut cli = Cli::from_arg_matches(&matches).unwrap();
        let file = ConfigFile::parse(Path::new("c.toml"), toml).unwrap();
        apply_top_level(&mut cli, &file, &Explicit::of(&matches));
        cli
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_the_file_over_defaults() {
        let toml = "count = 7\nmax-batches = 3\ndeadline = \"9s\"\nurl = \"redis://f:1\"\n";
        let cli = with_file(&["q"], toml);
        assert_eq!(cli.count, Some(7));
        assert_eq!(cli.max_batches, 3);
        assert_eq!(cli.deadline, std::time::Duration::from_secs(9));
        assert_eq!(cli.url, "redis://f:1");
        // Before or after the verb, and for options with a default too.
        let cli = with_file(&["q", "--count", "5", "run", "--max-batches", "100"], toml);
        assert_eq!((cli.count, cli.max_batches), (Some(5), 100));
        assert_eq!(cli.url, "redis://f:1");
        let target = Target {
            stream: "s".into(),
            group: "g".into(),
            options: CallOptions {
                count: Some(9),
                min_idle: Some(1),
                ..Default::default()
            },
            pinned: Default::default(),
        };
        let matches = Cli::command()
            .try_get_matches_from(["q", "--count", "5"])
            .unwrap();
        let base = Cli::from_arg_matches(&matches).unwrap();
        let one = for_target(&base, &target, &Explicit::of(&matches));
        assert_eq!((one.count, one.min_idle), (Some(5), Some(1)));
        assert_eq!((one.stream.as_str(), one.group.as_str()), ("s", "g"));
    }

    #[test]
    fn a_stream_tag_in_the_mode_key_puts_it_in_the_streams_slot() {
        // (A name with braces but no hash tag, e.g. "a{}{b}", has no such key: Redis
        // answers CROSSSLOT, exit 64 for that target.)
        for stream in ["{alpha}:orders", "plain:stream", "x{y}z{w}"] {
            let key = with_stream_tag("{stream-tag}:mode", stream);
            assert_eq!(
                key_slot(key.as_bytes()),
                key_slot(stream.as_bytes()),
                "{stream} {key}"
            );
        }
        assert_eq!(with_stream_tag("{alpha}:mode", "{beta}:s"), "{alpha}:mode");
        assert_eq!(
            with_stream_tag("{stream-tag}:mode", "{beta}:s"),
            "{beta}:mode"
        );
    }

    /// One `[[discover]]` over a cluster names each stream's own dead-letter
    /// stream in its slot, as it does the mode key (review of issue 11).
    #[test]
    fn a_stream_tag_in_the_dead_letter_key_follows_each_target() {
        let matches = Cli::command()
            .try_get_matches_from(["q", "--dead-letter", "{stream-tag}:dead"])
            .unwrap();
        let base = Cli::from_arg_matches(&matches).unwrap();
        let explicit = Explicit::of(&matches);
        let target = Target {
            stream: "{alpha}:orders".into(),
            group: "g".into(),
            options: Default::default(),
            pinned: Default::default(),
        };
        let cli = for_target(&base, &target, &explicit);
        assert_eq!(cli.dead_letter.as_deref(), Some("{alpha}:dead"));
    }
}
