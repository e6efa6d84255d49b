use super::*;
use std::collections::BTreeMap;

fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
    ConfigFile::parse(Path::new("/etc/quantum/stream-recover.toml"), text)
}

/// The error's `file:line: message` and a check that it names `key`.
fn error(text: &str, line: usize, key: &str) -> String {
    let e = parse(text).expect_err("the config must be refused");
    let shown = e.to_string();
    assert_eq!(e.line, line, "{shown}");
    let place = match line {
        0 => "/etc/quantum/stream-recover.toml: ".to_string(),
        n => format!("/etc/quantum/stream-recover.toml:{n}: "),
    };
    assert!(shown.starts_with(&place), "{shown}");
    assert!(shown.contains(key), "{shown} should name {key}");
    shown
}

const FULL: &str = r#"
url = "redis+cluster://10.0.0.1:6379"
password-file = "/etc/quantum/redis-password"
deadline = "90s"
min-idle = "2m"
zombie-idle = 3600000
count = 200
scan = 2000
delete-limit = 0
max-deliveries = 5
to = "recovery"
max-targets = 50
log-file = "/var/log/quantum/stream-recover.log"
metrics-file = "/var/lib/prometheus/node-exporter/quantum.prom"

[[target]]
stream = "quantum:stream:trade.intent"
group = "quantum:group:execution:trade.intent"
count = 500
scan = 5000

[[target]]
stream = "quantum:stream:fills"
min-idle = "30s"

[[discover]]
match = "quantum:stream:orders.*"
dry-run = true
"#;

#[test]
fn a_full_file_reads_into_typed_values() {
    let file = parse(FULL).unwrap();
    assert_eq!(file.url.as_deref(), Some("redis+cluster://10.0.0.1:6379"));
    assert_eq!(file.deadline, Some(Duration::from_secs(90)));
    assert_eq!(file.min_idle, Some(120_000));
    assert_eq!(file.zombie_idle, Some(3_600_000));
    assert_eq!((file.count, file.scan), (Some(200), Some(2000)));
    assert_eq!((file.delete_limit, file.max_deliveries), (Some(0), Some(5)));
    assert_eq!(file.max_targets(), 50);
    assert_eq!(file.targets.len(), 2);
    assert_eq!(file.targets[0].count, Some(500));
    assert_eq!(file.targets[1].group, None);
    assert_eq!(file.targets[1].min_idle, Some(30_000));
    assert_eq!(file.discover_patterns(), vec!["quantum:stream:orders.*"]);
    assert_eq!(file.discovers[0].dry_run, Some(true));
    assert_eq!(file.groupless_streams(), vec!["quantum:stream:fills"]);
    assert!(file.has_targets());
}

#[test]
fn an_empty_file_names_no_target_and_keeps_the_default_cap() {
    let file = parse("").unwrap();
    assert!(!file.has_targets());
    assert_eq!(file.max_targets(), DEFAULT_MAX_TARGETS);
    assert_eq!(file.call_options(), CallOptions::default());
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let shown = error("url = \"redis://x\"\n\ncoutn = 5\n", 3, "coutn");
    assert!(shown.contains("unknown field"), "{shown}");
    error(
        "[[target]]\nstream = \"s\"\nurl = \"redis://x\"\n",
        3,
        "url",
    );
    error(
        "[[discover]]\nmatch = \"s*\"\nstream = \"s\"\n",
        3,
        "stream",
    );
    // `consumer` is one retire call's, not the file's.
    error("consumer = \"exec-1\"\n", 1, "consumer");
}

#[test]
fn a_target_without_stream_is_refused() {
    let shown = error("count = 5\n\n[[target]]\ngroup = \"g\"\n", 3, "stream");
    assert!(shown.contains("[[target]]: missing field"), "{shown}");
    error("[[discover]]\ngroup = \"g\"\n", 1, "match");
}

#[test]
fn bad_durations_are_named() {
    let shown = error("\nmin-idle = \"soon\"\n", 2, "min-idle");
    assert!(shown.contains("250ms"), "{shown}");
    error(
        "[[target]]\nstream = \"s\"\nzombie-idle = \"0s\"\n",
        3,
        "zombie-idle",
    );
    error("deadline = \"2d\"\n", 1, "deadline");
    error("deadline = 0\n", 1, "deadline");
    error("min-idle = true\n", 1, "min-idle");
}

#[test]
fn values_out_of_range_are_named_with_the_range() {
    let shown = error("count = 0\n", 1, "count");
    assert!(shown.contains("from 1 to 10000"), "{shown}");
    error("scan = 100001\n", 1, "scan");
    error("delete-limit = -1\n", 1, "delete-limit");
    error("retire-count = 100001\n", 1, "retire-count");
    error("limit = 0\n", 1, "limit");
    error("max-batches = 0\n", 1, "max-batches");
    error("max-targets = 0\n", 1, "max-targets");
    error("[[target]]\nstream = \"s\"\ncount = \"many\"\n", 3, "count");
    error("dry-run = \"maybe\"\n", 1, "dry-run");
}

#[test]
fn dead_letter_is_a_call_option_per_target_and_discover_table() {
    let file = parse(
        "dead-letter = \"dl:all\"\n\n[[target]]\nstream = \"a\"\ndead-letter = \"dl:a\"\n\n\
         [[target]]\nstream = \"b\"\n\n[[discover]]\nmatch = \"c*\"\ndead-letter = \"dl:c\"\n",
    )
    .unwrap();
    let base = file.call_options();
    assert_eq!(base.dead_letter.as_deref(), Some("dl:all"));
    let of = |o: CallOptions| o.over(&base).dead_letter;
    assert_eq!(of(file.targets[0].call_options()).as_deref(), Some("dl:a"));
    assert_eq!(
        of(file.targets[1].call_options()).as_deref(),
        Some("dl:all")
    );
    assert_eq!(
        of(file.discovers[0].call_options()).as_deref(),
        Some("dl:c")
    );
}

#[test]
fn a_bad_dead_letter_is_named_with_its_line() {
    let shown = error(
        "[[target]]\nstream = \"s\"\ndead-letter = \"\"\n",
        3,
        "dead-letter",
    );
    assert!(shown.contains("must not be empty"), "{shown}");
    error("\ndead-letter = 5\n", 2, "dead-letter");
    error(
        "[[discover]]\nmatch = \"s*\"\ndead-letter = []\n",
        3,
        "dead-letter",
    );
}

#[test]
fn scan_below_count_is_refused_where_the_merge_makes_it() {
    // At the top level, the line of `scan` (review r10: it had none).
    error("count = 50\nscan = 10\n", 2, "scan");
    let shown = error(
        "scan = 100\n\n[[target]]\nstream = \"s\"\ncount = 500\n",
        4,
        "scan",
    );
    assert!(shown.contains("below count 500"), "{shown}");
    // Written in the table: that line.
    error(
        "count = 500\n\n[[target]]\nstream = \"s\"\ngroup = \"g\"\nscan = 100\n",
        6,
        "scan",
    );
}

#[test]
fn duplicate_targets_name_both_lines() {
    let text =
        "[[target]]\nstream = \"s\"\ngroup = \"g\"\n\n[[target]]\nstream = \"s\"\ngroup = \"g\"\n";
    let shown = error(text, 6, "stream");
    assert!(shown.contains("already a target on line 2"), "{shown}");
    let text = "stream = \"s\"\n[[target]]\nstream = \"s\"\n";
    let shown = error(text, 3, "every group");
    assert!(shown.contains("line 1"), "{shown}");
    // A group-less target and one of its groups: the explicit group refines it.
    parse("[[target]]\nstream = \"s\"\n[[target]]\nstream = \"s\"\ngroup = \"g\"\n").unwrap();
}

#[test]
fn empty_names_and_a_lone_group_are_refused() {
    error("[[target]]\nstream = \"\"\n", 2, "stream");
    error("[[target]]\nstream = \"s\"\ngroup = \"\"\n", 2, "group");
    error("[[discover]]\nmatch = \"\"\n", 2, "match");
    error("\ngroup = \"g\"\n", 2, "group");
}

#[test]
fn broken_toml_is_named_with_its_line() {
    error("url = \"redis://x\"\ncount = \n", 2, "count");
    error("[[target]\nstream = \"s\"\n", 1, "");
}

fn groups(pairs: &[(&str, &[&str])]) -> Vec<StreamGroups> {
    pairs
        .iter()
        .map(|(stream, groups)| StreamGroups {
            stream: stream.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(s, g)| (s.to_string(), g.to_string()))
        .collect()
}

fn pairs(expansion: &Expansion) -> Vec<(String, String)> {
    expansion
        .targets
        .iter()
        .map(|t| (t.stream.clone(), t.group.clone()))
        .collect()
}

#[test]
fn expansion_merges_dedups_sorts_and_prefers_the_most_specific_entry() {
    let text = r#"
count = 100
min-idle = "1m"
[[target]]
stream = "b"
group = "g1"
count = 7
[[target]]
stream = "b"
min-idle = "5s"
[[target]]
stream = "gone"
[[discover]]
match = "*"
dry-run = true
[[discover]]
match = "a*"
group = "g2"
count = 9
"#;
    let file = parse(text).unwrap();
    assert_eq!(file.groupless_streams(), vec!["b", "gone"]);
    let found = Found {
        groups: BTreeMap::from([("b".to_string(), vec!["g1".into(), "g2".into()])]),
        discovered: vec![
            groups(&[("b", &["g1", "g2", "g3"]), ("a", &["g2", "g1"])]),
            groups(&[("a", &["g1", "g2"]), ("ab", &["g2", "g5"])]),
        ],
    };
    let expansion = expand(&file, &found).unwrap();
    assert_eq!(
        pairs(&expansion),
        owned(&[
            ("a", "g1"),
            ("a", "g2"),
            ("ab", "g2"),
            ("b", "g1"),
            ("b", "g2"),
            ("b", "g3")
        ])
    );
    let of = |s: &str, g: &str| {
        let t = expansion
            .targets
            .iter()
            .find(|t| t.stream == s && t.group == g);
        t.unwrap().options.clone()
    };
    // The explicit group's own count, over the top level; min-idle from the top.
    assert_eq!(
        (of("b", "g1").count, of("b", "g1").min_idle),
        (Some(7), Some(60_000))
    );
    // The group-less target's min-idle wins over discover's for its groups.
    assert_eq!(
        (of("b", "g2").min_idle, of("b", "g2").dry_run),
        (Some(5_000), None)
    );
    // Only discovery found g3: the first pattern's options.
    assert_eq!(of("b", "g3").dry_run, Some(true));
    // The first matching discover table wins: "*" over "a*" for (a, g2).
    assert_eq!(
        (of("a", "g2").count, of("a", "g2").dry_run),
        (Some(100), Some(true))
    );
    // "a*" with group g2 found "ab" g2 only, with its own count.
    assert_eq!(of("ab", "g2").count, Some(9));
    assert_eq!(expansion.without_groups, vec!["gone"]);
}

#[test]
fn expansion_past_max_targets_is_an_error_naming_the_cap() {
    let file = parse("max-targets = 2\n[[discover]]\nmatch = \"s*\"\n").unwrap();
    let two = Found {
        groups: BTreeMap::new(),
        discovered: vec![groups(&[("s1", &["g"]), ("s2", &["g"])])],
    };
    assert_eq!(expand(&file, &two).unwrap().targets.len(), 2);
    let three = Found {
        groups: BTreeMap::new(),
        discovered: vec![groups(&[("s1", &["g", "h"]), ("s2", &["g"])])],
    };
    let e = expand(&file, &three).unwrap_err();
    assert!(e.contains("3 targets, more than max-targets = 2"), "{e}");
}

#[test]
fn a_top_level_stream_is_one_target_like_the_env_file() {
    let file = parse("stream = \"s\"\ngroup = \"g\"\ncount = 3\n").unwrap();
    let expansion = expand(&file, &Found::default()).unwrap();
    assert_eq!(pairs(&expansion), owned(&[("s", "g")]));
    assert_eq!(expansion.targets[0].options.count, Some(3));
}

#[test]
fn the_shipped_example_and_the_documented_one_parse() {
    let example = include_str!("../../../systemd/stream-recover.toml.example");
    let file = parse(example).unwrap();
    assert_eq!(file.targets.len(), 2);
    assert_eq!(file.min_idle, Some(60_000));
    // Its commented-out [[discover]] is valid too once enabled.
    let enabled = example
        .replace("#[[discover]]", "[[discover]]")
        .replace("#match", "match");
    let enabled = enabled.replace("#count", "count").replace("#scan", "scan");
    assert_eq!(parse(&enabled).unwrap().discovers[0].count, Some(500));
    let doc = include_str!("../../../README.md");
    let blocks: Vec<&str> = doc.split("```toml\n").skip(1).collect();
    assert!(
        !blocks.is_empty(),
        "README.md has a toml example (Many streams)"
    );
    for block in blocks {
        let text = block.split("```").next().unwrap();
        parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}

#[test]
fn bytes_that_are_not_utf8_are_refused_whole() {
    let path = Path::new("/etc/quantum/stream-recover.toml");
    let e = ConfigFile::from_bytes(path, b"url = \"\xff\"\n".to_vec()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/quantum/stream-recover.toml: not UTF-8 text (TOML files are UTF-8)"
    );
    let file = ConfigFile::from_bytes(path, b"count = 7\n".to_vec()).unwrap();
    assert_eq!(file.count, Some(7));
}

#[test]
fn no_prefix_of_a_real_file_panics_and_errors_name_a_line_inside_it() {
    for end in (0..=FULL.len()).filter(|&end| FULL.is_char_boundary(end)) {
        let text = &FULL[..end];
        if let Err(e) = parse(text) {
            assert!(e.line <= text.lines().count() + 1, "{e} for {text:?}");
        }
    }
}

#[test]
fn empty_consumers_and_mode_key_and_to_equal_to_quarantine_are_refused() {
    error("to = \"\"\n", 1, "to: must not be empty");
    error(
        "count = 5\nmode-key = \"\"\n",
        2,
        "mode-key: must not be empty",
    );
    error("quarantine = \"\"\n", 1, "quarantine: must not be empty");
    // In a table: the key's own line when the table writes it.
    error(
        "[[target]]\nstream = \"s\"\nto = \"\"\n",
        3,
        "to: must not be empty",
    );
    error(
        "[[discover]]\nmatch = \"s*\"\nmode-key = \"\"\n",
        3,
        "mode-key: must not be empty",
    );
    error("to = \"p\"\nquarantine = \"p\"\n", 1, "also quarantine");
    // Merged: the target's `to` meets the top level's `quarantine` (the line of `to`).
    error(
        "quarantine = \"p\"\n\n[[target]]\nstream = \"s\"\nto = \"p\"\n",
        5,
        "also quarantine",
    );
    parse("to = \"r\"\nquarantine = \"p\"\nmode-key = \"{stream-tag}:mode\"\n").unwrap();
}

#[test]
fn more_explicit_targets_than_max_targets_is_refused_by_the_file_check() {
    let text = "max-targets = 2\n[[target]]\nstream = \"a\"\ngroup = \"g\"\n\
                [[target]]\nstream = \"b\"\ngroup = \"g\"\n[[target]]\nstream = \"c\"\ngroup = \"g\"\n";
    let shown = error(text, 9, "max-targets = 2");
    assert!(shown.contains("[[target]]"), "{shown}");
    // Group-less targets and discover tables are counted once Redis answers.
    parse("max-targets = 1\n[[target]]\nstream = \"a\"\n[[target]]\nstream = \"b\"\n").unwrap();
}
