//! `--config FILE`: a TOML file naming many targets (stream and group) and the
//! options for them. Top-level keys are the long options' names; `[[target]]`
//! names a stream and, optionally, one group (without: every group of that
//! stream); `[[discover]]` names a SCAN MATCH pattern whose every stream and
//! group become targets. Targets and discover tables may override the options
//! of a call (`min-idle`, `count`, `to`, ...); run-wide ones (`url`,
//! `deadline`, files) are top level only.
//!
//! Every error names the file, the line and the key, and is found before
//! anything is sent to Redis. `expand.rs` turns the parsed file plus what
//! discovery found into the final list of targets.

mod expand;
mod fields;

pub use expand::{expand, Found, Pinned, Target};
#[cfg(test)]
pub use expand::{Expansion, StreamGroups};

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The longest config file read: a thousand targets take about 40 KiB, so
/// the most a run may have (`max-targets` 100,000) fits in about 4 MiB.
pub const MAX_CONFIG_FILE: u64 = 8 << 20;

/// The default `max-targets`.
pub const DEFAULT_MAX_TARGETS: usize = 1000;

/// Declares a table that also takes the options of one call, and a method
/// that lifts those out as `CallOptions`.
macro_rules! with_call_options {
    ($(#[$attr:meta])* pub struct $name:ident { $($extra:tt)* }) => {
        $(#[$attr])*
        #[derive(Deserialize, Debug, Clone, PartialEq)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct $name {
            $($extra)*
            /// Consumer that receives recovered entries.
            #[serde(default)]
            pub to: Option<String>,
            /// Consumer that parks poison entries.
            #[serde(default)]
            pub quarantine: Option<String>,
            /// Stream that gets a copy of every entry moved to quarantine.
            #[serde(default, deserialize_with = "fields::dead_letter")]
            pub dead_letter: Option<String>,
            #[serde(default)]
            pub mode_key: Option<String>,
            /// Milliseconds.
            #[serde(default, deserialize_with = "fields::min_idle")]
            pub min_idle: Option<u64>,
            /// Milliseconds.
            #[serde(default, deserialize_with = "fields::zombie_idle")]
            pub zombie_idle: Option<u64>,
            #[serde(default, deserialize_with = "fields::count")]
            pub count: Option<u64>,
            #[serde(default, deserialize_with = "fields::scan")]
            pub scan: Option<u64>,
            #[serde(default, deserialize_with = "fields::delete_limit")]
            pub delete_limit: Option<u64>,
            #[serde(default, deserialize_with = "fields::max_deliveries")]
            pub max_deliveries: Option<u64>,
            #[serde(default, deserialize_with = "fields::retire_count")]
            pub retire_count: Option<u64>,
            #[serde(default, deserialize_with = "fields::limit")]
            pub limit: Option<u64>,
            #[serde(default, deserialize_with = "fields::max_batches")]
            pub max_batches: Option<u64>,
            #[serde(default)]
            pub dry_run: Option<bool>,
        }

        impl $name {
            /// The call options this table sets (unset ones stay `None`).
            // Every table gets it; `CallOptions`'s own copy is never called.
            #[allow(dead_code)]
            pub fn call_options(&self) -> CallOptions {
                CallOptions {
                    to: self.to.clone(),
                    quarantine: self.quarantine.clone(),
                    dead_letter: self.dead_letter.clone(),
                    mode_key: self.mode_key.clone(),
                    min_idle: self.min_idle,
                    zombie_idle: self.zombie_idle,
                    count: self.count,
                    scan: self.scan,
                    delete_limit: self.delete_limit,
                    max_deliveries: self.max_deliveries,
                    retire_count: self.retire_count,
                    limit: self.limit,
                    max_batches: self.max_batches,
                    dry_run: self.dry_run,
                }
            }
        }
    };
}

with_call_options! {
    /// The options of one call that a target may set for itself; `None` is
    /// "not set here" (a target's falls back to the top level's, the top
    /// level's to the command line / environment / module default).
    #[derive(Default)]
    pub struct CallOptions {}
}

impl CallOptions {
    /// These options, each unset one taken from `base`.
    pub fn over(&self, base: &CallOptions) -> CallOptions {
        fn pick<T: Clone>(mine: &Option<T>, base: &Option<T>) -> Option<T> {
            mine.clone().or_else(|| base.clone())
        }
        CallOptions {
            to: pick(&self.to, &base.to),
            quarantine: pick(&self.quarantine, &base.quarantine),
            dead_letter: pick(&self.dead_letter, &base.dead_letter),
            mode_key: pick(&self.mode_key, &base.mode_key),
            min_idle: pick(&self.min_idle, &base.min_idle),
            zombie_idle: pick(&self.zombie_idle, &base.zombie_idle),
            count: pick(&self.count, &base.count),
            scan: pick(&self.scan, &base.scan),
            delete_limit: pick(&self.delete_limit, &base.delete_limit),
            max_deliveries: pick(&self.max_deliveries, &base.max_deliveries),
            retire_count: pick(&self.retire_count, &base.retire_count),
            limit: pick(&self.limit, &base.limit),
            max_batches: pick(&self.max_batches, &base.max_batches),
            dry_run: pick(&self.dry_run, &base.dry_run),
        }
    }
}

with_call_options! {
    /// A `[[target]]` table: one stream, one group or (without) all of them.
    pub struct TargetTable {
        pub stream: Spanned<String>,
        #[serde(default)]
        pub group: Option<String>,
    }
}

with_call_options! {
    /// A `[[discover]]` table: every stream matching `match` (SCAN's glob
    /// syntax), every group of each, or only `group` where a stream has it.
    pub struct DiscoverTable {
        #[serde(rename = "match")]
        pub pattern: Spanned<String>,
        #[serde(default)]
        pub group: Option<String>,
    }
}

with_call_options! {
    /// The whole file: run-wide options, the call options every target starts
    /// from, and the target and discover tables.
    #[derive(Default)]
    pub struct ConfigFile {
        #[serde(default)]
        pub url: Option<String>,
        #[serde(default)]
        pub cluster: Option<bool>,
        #[serde(default)]
        pub password_file: Option<PathBuf>,
        #[serde(default, deserialize_with = "fields::deadline")]
        pub deadline: Option<Duration>,
        #[serde(default)]
        pub log_file: Option<PathBuf>,
        #[serde(default)]
        pub metrics_file: Option<PathBuf>,
        #[serde(default)]
        pub state_dir: Option<PathBuf>,
        #[serde(default)]
        pub json: Option<bool>,
        #[serde(default)]
        pub admin_url: Option<String>,
        #[serde(default)]
        pub admin_password_file: Option<PathBuf>,
        #[serde(default)]
        pub trading_user: Option<String>,
        #[serde(default)]
        pub redis_unit: Option<String>,
        #[serde(default)]
        pub redis_conf: Option<PathBuf>,
        /// Most targets one run handles; more is an error, not a silent cut.
        #[serde(default, deserialize_with = "fields::max_targets")]
        pub max_targets: Option<u64>,
        /// A top-level `stream` (and `group`) is one more target, so a file
        /// written like the env file works.
        #[serde(default)]
        pub stream: Option<Spanned<String>>,
        #[serde(default)]
        pub group: Option<Spanned<String>>,
        #[serde(default, rename = "target")]
        pub targets: Vec<TargetTable>,
        #[serde(default, rename = "discover")]
        pub discovers: Vec<DiscoverTable>,
    }
}

/// A config file that cannot be used: `path:line: key: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based; 0 when the whole file is at fault.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.path.display(), self.message),
            n => write!(f, "{}:{n}: {}", self.path.display(), self.message),
        }
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// The key written on the line at `offset` (`key = value`), or the table
/// header there (`[[target]]`), if there is one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?.trim();
    if line.starts_with('[') {
        return Some(line.to_string());
    }
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty()).then(|| key.to_string())
}

impl ConfigFile {
    /// Parses and checks a config file's text; `path` is for messages.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        // No offset: the top level's options together are at fault.
        let error = |offset: Option<usize>, message: String| ConfigError {
            path: path.to_path_buf(),
            line: offset.map_or(0, |offset| line_of(text, offset)),
            message,
        };
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let message = e.message().trim().to_string();
            let key = offset.and_then(|offset| key_at(text, offset));
            let message = match key {
                Some(key)
                    if !message.starts_with(&format!("{key}:"))
                        && !message.starts_with(&format!("{key} ")) =>
                {
                    format!("{key}: {message}")
                }
                _ => message,
            };
            error(offset, message)
        })?;
        file.check(text)
            .map_err(|(offset, message)| error(offset, message))?;
        Ok(file)
    }

    /// Parses a config file's bytes as read (at most `MAX_CONFIG_FILE`, with
    /// `files::read_regular`); `path` is for messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<ConfigFile, ConfigError> {
        let text = String::from_utf8(bytes).map_err(|_| ConfigError {
            path: path.to_path_buf(),
            line: 0,
            message: "not UTF-8 text (TOML files are UTF-8)".into(),
        })?;
        ConfigFile::parse(path, &text)
    }

    /// The most targets a run may have.
    pub fn max_targets(&self) -> usize {
        self.max_targets.map_or(DEFAULT_MAX_TARGETS, |n| n as usize)
    }

    /// Whether the file names any target (else `--stream`/`--group` decide).
    pub fn has_targets(&self) -> bool {
        self.stream.is_some() || !self.targets.is_empty() || !self.discovers.is_empty()
    }

    /// The explicit targets, the top-level `stream` first: (stream with its
    /// place in the file, group, the options it sets).
    fn explicit(&self) -> Vec<(&Spanned<String>, Option<&str>, CallOptions)> {
        let top = self.stream.iter().map(|stream| {
            let group = self.group.as_ref().map(|g| g.get_ref().as_str());
            (stream, group, CallOptions::default())
        });
        let tables = self
            .targets
            .iter()
            .map(|t| (&t.stream, t.group.as_deref(), t.call_options()));
        top.chain(tables).collect()
    }

    /// What serde cannot say: empty names, a group without a stream, the same
    /// target twice, SCAN below COUNT once a target's options are merged.
    fn check(&self, text: &str) -> Result<(), (Option<usize>, String)> {
        if let (None, Some(group)) = (&self.stream, &self.group) {
            return Err((
                Some(group.span().start),
                "group: a top-level group needs a top-level stream (or use [[target]])".into(),
            ));
        }
        let base = self.call_options();
        check_options(&base).map_err(|(key, m)| (top_level_key(text, key), m))?;
        self.check_explicit_count()?;
        // Where each explicit target was first named: a map, so a file of many
        // targets is checked in linear time (the line is counted only for an error).
        let mut seen: HashMap<(&str, Option<&str>), usize> = HashMap::new();
        for (stream, group, options) in self.explicit() {
            let at = Some(stream.span().start);
            if stream.get_ref().is_empty() {
                return Err((at, "stream: must not be empty".into()));
            }
            if group == Some("") {
                return Err((
                    at,
                    "group: must not be empty (leave it out for every group)".into(),
                ));
            }
            check_options(&options.over(&base))
                .map_err(|(key, m)| (key_in_table(text, stream.span().start, key).or(at), m))?;
            let key = (stream.get_ref().as_str(), group);
            if let Some(&first) = seen.get(&key) {
                let what = match group {
                    Some(group) => format!("stream {:?} group {group:?}", key.0),
                    None => format!("stream {:?} (every group)", key.0),
                };
                let first = line_of(text, first);
                return Err((
                    at,
                    format!("stream: duplicate target: {what} is already a target on line {first}"),
                ));
            }
            seen.insert(key, stream.span().start);
        }
        for table in &self.discovers {
            let at = Some(table.pattern.span().start);
            if table.pattern.get_ref().is_empty() {
                return Err((at, "match: must not be empty".into()));
            }
            if table.group.as_deref() == Some("") {
                return Err((
                    at,
                    "group: must not be empty (leave it out for every group)".into(),
                ));
            }
            check_options(&table.call_options().over(&base)).map_err(|(key, m)| {
                let line = key_in_table(text, table.pattern.span().start, key);
                (line.or(at), m)
            })?;
        }
        Ok(())
    }
}

impl ConfigFile {
    /// More `[[target]]`s with a group than `max-targets` is known from the
    /// file alone: refused here, before any connection, at the first one past it.
    fn check_explicit_count(&self) -> Result<(), (Option<usize>, String)> {
        let max = self.max_targets();
        let mut pairs = std::collections::HashSet::new();
        for (stream, group, _) in self.explicit() {
            let Some(group) = group else { continue };
            if pairs.insert((stream.get_ref().as_str(), group)) && pairs.len() > max {
                return Err((
                    Some(stream.span().start),
                    format!(
                        "[[target]]: more than max-targets = {max} targets named with their \
                         group: remove targets or raise max-targets"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What RECOVER would refuse in one call's options (merged over the top
/// level): said here, where the line is known, before anything is sent. The
/// key at fault comes first.
fn check_options(options: &CallOptions) -> Result<(), (&'static str, String)> {
    for (key, value) in [
        ("to", &options.to),
        ("quarantine", &options.quarantine),
        ("mode-key", &options.mode_key),
    ] {
        if value.as_deref() == Some("") {
            return Err((key, format!("{key}: must not be empty")));
        }
    }
    if let (Some(to), Some(quarantine)) = (&options.to, &options.quarantine) {
        if to == quarantine {
            return Err((
                "to",
                format!("to: {to:?} is also quarantine: TO and QUARANTINE must name different consumers"),
            ));
        }
    }
    match (options.scan, options.count) {
        (Some(scan), Some(count)) if scan < count => Err((
            "scan",
            format!(
                "scan: {scan} is below count {count}: every call examines at least as many \
                 entries as it may move"
            ),
        )),
        _ => Ok(()),
    }
}

/// Where `key` is written in the table around byte `anchor` (between the
/// headers before and after it), if it is there rather than inherited.
fn key_in_table(text: &str, anchor: usize, key: &str) -> Option<usize> {
    let start = text.get(..anchor)?.rfind("\n[").map_or(0, |i| i + 1);
    let end = text[anchor..]
        .find("\n[")
        .map_or(text.len(), |i| anchor + i);
    key_line_in(text, start..end, key)
}

/// Where top-level `key` is written (the start of its line), if it is: the
/// lines before the first table header.
fn top_level_key(text: &str, key: &str) -> Option<usize> {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('[') {
            break;
        }
        end += line.len();
    }
    key_line_in(text, 0..end, key)
}

/// The start of the line in `text[range]` that sets `key` (`key = …`), if one does.
fn key_line_in(text: &str, range: std::ops::Range<usize>, key: &str) -> Option<usize> {
    let mut offset = range.start;
    for line in text[range].split_inclusive('\n') {
        let trimmed = line.trim_start();
        let name = trimmed
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if trimmed.contains('=') && name == key {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests;
