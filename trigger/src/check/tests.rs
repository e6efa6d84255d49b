use super::*;

fn seen(stream: &str, recovered: u64, idle_s: u64, quarantined: u64) -> TargetFinding {
    TargetFinding {
        stream: stream.into(),
        group: "exec".into(),
        scope: None,
        finding: Finding::Seen(Seen {
            pending: recovered + quarantined + 1,
            recovered,
            recovered_oldest_idle_ms: idle_s * 1000,
            quarantined,
        }),
    }
}

fn other(stream: &str, finding: Finding) -> TargetFinding {
    TargetFinding {
        stream: stream.into(),
        group: "exec".into(),
        scope: None,
        finding,
    }
}

fn check(targets: &[TargetFinding]) -> CheckResult {
    evaluate(targets, &Thresholds::default())
}

#[test]
fn ok_when_nothing_waits_too_long_and_nothing_is_in_quarantine() {
    let result = check(&[seen("fills", 0, 0, 0), seen("orders", 2, 60, 0)]);
    assert_eq!(result.health, Health::Ok);
    assert_eq!(result.health.exit_code(), 0);
    assert_eq!(
        result.line,
        "QUANTUM-STREAM-RECOVER OK - 2 targets, nothing parked too long, nothing in quarantine \
         | 'fills/exec pending'=1;;;0 'fills/exec recovered'=0;;;0 \
         'fills/exec recovered_oldest'=0ms;900000;3600000;0 'fills/exec quarantined'=0;0;;0 \
         'orders/exec pending'=3;;;0 'orders/exec recovered'=2;;;0 \
         'orders/exec recovered_oldest'=60000ms;900000;3600000;0 \
         'orders/exec quarantined'=0;0;;0"
    );
}

#[test]
fn recovered_entries_waiting_past_the_thresholds_warn_then_go_critical() {
    let at_limit = check(&[seen("orders", 2, 900, 0)]);
    assert_eq!(at_limit.health, Health::Ok, "{}", at_limit.line);
    let warning = check(&[seen("orders", 2, 20 * 60, 0)]);
    assert_eq!(warning.health.exit_code(), 1);
    assert!(
        warning.line.starts_with(
            "QUANTUM-STREAM-RECOVER WARNING - 1 of 1 targets: orders/exec: \
             2 recovered entries not adopted for 20m |"
        ),
        "{}",
        warning.line
    );
    let critical = check(&[seen("orders", 2, 2 * 3600, 0)]);
    assert_eq!(critical.health.exit_code(), 2);
    assert!(
        critical.line.starts_with(
            "QUANTUM-STREAM-RECOVER CRITICAL - 1 of 1 targets: orders/exec: \
             2 recovered entries not adopted for 2h |"
        ),
        "{}",
        critical.line
    );
    let tight = Thresholds::new(Duration::from_secs(30), Duration::from_secs(50)).unwrap();
    let result = evaluate(&[seen("orders", 1, 40, 0)], &tight);
    assert_eq!(result.health, Health::Warning);
    assert!(result
        .line
        .contains("'orders/exec recovered_oldest'=40000ms;30000;50000;0"));
}

#[test]
fn anything_in_quarantine_is_at_least_a_warning() {
    let result = check(&[seen("fills", 0, 0, 1)]);
    assert_eq!(result.health, Health::Warning);
    assert!(
        result
            .line
            .contains("fills/exec: 1 entries in quarantine |"),
        "{}",
        result.line
    );
    let both = check(&[seen("fills", 3, 2 * 3600, 4)]);
    assert_eq!(both.health, Health::Critical);
    assert!(
        both.line.contains(
            "fills/exec: 3 recovered entries not adopted for 2h, 4 entries in quarantine"
        ),
        "{}",
        both.line
    );
}

#[test]
fn unreachable_or_without_the_module_is_unknown() {
    let result = check(&[other(
        "fills",
        Finding::Unreachable("connection refused".into()),
    )]);
    assert_eq!(result.health.exit_code(), 3);
    assert_eq!(
        result.line,
        "QUANTUM-STREAM-RECOVER UNKNOWN - 1 of 1 targets: fills/exec: connection refused"
    );
    let result = check(&[other("fills", Finding::ModuleMissing), seen("ok", 0, 0, 0)]);
    assert_eq!(result.health, Health::Unknown);
    assert!(
        result
            .line
            .contains("fills/exec: module quantum not loaded |"),
        "{}",
        result.line
    );
    let result = check(&[]);
    assert_eq!(
        (result.health, result.line.as_str()),
        (
            Health::Unknown,
            "QUANTUM-STREAM-RECOVER UNKNOWN - no target to check"
        )
    );
}

#[test]
fn a_missing_stream_or_group_warns() {
    let result = check(&[other("gone", Finding::Absent)]);
    assert_eq!(result.health, Health::Warning);
    assert!(
        result.line.ends_with("gone/exec: stream or group missing"),
        "{}",
        result.line
    );
}

#[test]
fn the_worst_target_decides_critical_over_warning_over_unknown() {
    let unknown = other("down", Finding::Unreachable("timeout".into()));
    let warning = seen("quarantined", 0, 0, 1);
    let critical = seen("late", 1, 3 * 3600, 0);
    let ok = seen("fine", 0, 0, 0);
    assert_eq!(
        check(&[unknown.clone(), ok.clone()]).health,
        Health::Unknown
    );
    assert_eq!(
        check(&[unknown.clone(), warning.clone()]).health,
        Health::Warning
    );
    let all = check(&[ok, unknown, warning, critical]);
    assert_eq!(all.health, Health::Critical);
    // The worst first in the summary, every problem named.
    assert!(
        all.line.starts_with(
            "QUANTUM-STREAM-RECOVER CRITICAL - 3 of 4 targets: late/exec: 1 recovered entries \
             not adopted for 3h; quarantined/exec: 1 entries in quarantine; down/exec: timeout |"
        ),
        "{}",
        all.line
    );
}

#[test]
fn many_problems_are_counted_not_all_named() {
    let targets: Vec<TargetFinding> = (0..8).map(|i| seen(&format!("s{i}"), 0, 0, 1)).collect();
    let result = check(&targets);
    assert!(
        result.line.contains("8 of 8 targets: s0/exec"),
        "{}",
        result.line
    );
    assert!(
        result
            .line
            .contains("s4/exec: 1 entries in quarantine; and 3 more |"),
        "{}",
        result.line
    );
    assert!(!result.line.contains("s5/exec:"), "{}", result.line);
    assert_eq!(result.line.matches("quarantined'=1;0;;0").count(), 8);
}

#[test]
fn hostile_names_keep_one_line_and_one_perfdata_separator() {
    let nasty = "a|b\nc'd=e";
    let result = check(&[seen(nasty, 0, 0, 2)]);
    assert!(!result.line.contains('\n'), "{}", result.line);
    assert_eq!(result.line.matches('|').count(), 1, "{}", result.line);
    assert!(
        result
            .line
            .contains("a\\x7cb\\nc\\'d=e/exec: 2 entries in quarantine"),
        "{}",
        result.line
    );
    assert!(
        result
            .line
            .contains("'a\\x7cb\\x0ac\\x27d\\x3de/exec quarantined'=2;0;;0"),
        "{}",
        result.line
    );
}

/// Targets whose names differ only in where the space or the `/` falls, or
/// in a character a label cannot hold, get different labels; thresholds below
/// a second are written as given (review r10 11).
#[test]
fn perfdata_labels_are_unique_and_thresholds_exact() {
    let target = |stream: &str, group: &str| TargetFinding {
        stream: stream.into(),
        group: group.into(),
        scope: None,
        finding: Finding::Seen(Seen::default()),
    };
    let targets = [
        target("a b", "c"),
        target("a", "b c"),
        target("a/b", "c"),
        target("a", "b/c"),
        target("x=y", "g"),
        target("x_y", "g"),
        target("q'r", "g"),
        target("q''r", "g"),
    ];
    let limits = Thresholds::new(Duration::from_millis(1500), Duration::from_millis(2250)).unwrap();
    let result = evaluate(&targets, &limits);
    let perf = result.line.split_once(" | ").unwrap().1;
    let mut labels = Vec::new();
    let mut rest = perf;
    while let Some(open) = rest.find('\'') {
        let close = open + 1 + rest[open + 1..].find("'=").unwrap();
        let label = &rest[open + 1..close];
        assert!(!label.contains('=') && !label.contains('\''), "{label}");
        labels.push(label.to_string());
        rest = &rest[close + 1..];
    }
    assert_eq!(labels.len(), targets.len() * 4, "{perf}");
    let unique: std::collections::HashSet<&String> = labels.iter().collect();
    assert_eq!(unique.len(), labels.len(), "{labels:?}");
    assert!(perf.contains("recovered_oldest'=0ms;1500;2250;0"), "{perf}");
}

#[test]
fn a_warning_above_the_critical_threshold_is_refused() {
    let e = Thresholds::new(Duration::from_secs(3600), Duration::from_secs(60)).unwrap_err();
    assert_eq!(e, "--parked-warning (1h) is above --parked-critical (1m)");
    assert!(Thresholds::new(Duration::from_secs(60), Duration::from_secs(60)).is_ok());
}

/// A failure finding the targets is shown by its log scope as it is (no
/// re-escaped quotes, no stray `/`), is not counted as a target, and a
/// bidirectional format character in a name is escaped (review r15t).
#[test]
fn a_discovery_failure_is_named_by_its_scope_and_not_counted_as_a_target() {
    let failed = TargetFinding {
        stream: String::new(),
        group: String::new(),
        scope: Some("discover=\"*:s\" node=127.0.0.1:7202".into()),
        finding: Finding::Unreachable("timed out".into()),
    };
    let result = check(&[
        failed,
        seen("fills\u{202E}x", 0, 0, 0),
        seen("orders", 0, 0, 1),
    ]);
    assert_eq!(result.health, Health::Warning);
    let summary = result.line.split(" | ").next().unwrap();
    assert_eq!(
        summary,
        "QUANTUM-STREAM-RECOVER WARNING - 1 of 2 targets, 1 failure finding targets: \
         orders/exec: 1 entries in quarantine; discover=\"*:s\" node=127.0.0.1:7202: timed out"
    );
    let escaped = check(&[seen("fills\u{202E}x", 0, 0, 1)]).line;
    assert!(
        escaped.contains("fills\\u{202e}x/exec: 1 entries"),
        "{escaped}"
    );
}
