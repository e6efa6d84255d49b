//! QUANTUM.STATUS bounded (issue 13): at most LIMIT consumers listed, the
//! longest idle first, with counts per state over all of them; the trigger's
//! `status` shows the counts and says when the list was cut.

use quantum_integration::reply::{consumers, field, group_state, int, pairs, run, status, text};
use quantum_integration::scenario::*;
use quantum_integration::trigger::{run_trigger, url_of};
use quantum_integration::Server;
use redis::{Connection, Value};

/// `(name, idle)` of the listed consumers, in reply order.
fn listed(fields: &[(String, Value)]) -> Vec<(String, i64)> {
    match field(fields, "consumers") {
        Value::Array(rows) => rows
            .iter()
            .map(|row| {
                let row = pairs(row);
                (text(&field(&row, "name")), int(&field(&row, "idle")))
            })
            .collect(),
        other => panic!("consumers {other:?}"),
    }
}

fn state_counts(fields: &[(String, Value)]) -> Vec<(String, i64)> {
    pairs(&field(fields, "states"))
        .iter()
        .map(|(k, v)| (k.clone(), int(v)))
        .collect()
}

fn create_consumers(con: &mut Connection, prefix: &str, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(STREAM)
            .arg(GROUP)
            .arg(format!("{prefix}-{i}"))
            .ignore();
    }
    pipe.query::<()>(con).unwrap();
}

/// 4,000 zombies, 10 stuck, 988 live, the target and the quarantine: 5,000 consumers.
fn crowded_group(con: &mut Connection) {
    group_with_mode(con, "LIVE");
    create_consumer(con, "recovery");
    create_consumer(con, "quarantine");
    add_entries(con, 10);
    for i in 0..10 {
        read_as(con, &format!("exec-stuck-{i}"), 1);
    }
    create_consumers(con, "exec-zombie", 4_000);
    sleep_ms(1_200);
    create_consumers(con, "exec-live", 988);
}

#[test]
fn a_crowded_group_lists_at_most_limit_rows_and_counts_every_state() {
    let server = Server::start();
    let mut con = server.connect();
    crowded_group(&mut con);
    let before = group_state(&mut con, STREAM);

    let fields = status(&mut con, &["ZOMBIEIDLE", "1000", "LIMIT", "50"]).unwrap();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "mode",
            "allowed",
            "pending",
            "lag",
            "oldest-idle",
            "states",
            "consumers",
            "last-run",
            "parked"
        ]
    );
    assert_eq!(
        state_counts(&fields),
        [
            ("live".to_string(), 988),
            ("zombie".to_string(), 4_000),
            ("stuck".to_string(), 10),
            ("target".to_string(), 1),
            ("quarantine".to_string(), 1),
        ]
    );
    // The 50 longest idle, by XINFO CONSUMERS read right after: idle times all
    // grow alike, so the order by idle (then name) is the same.
    let rows = listed(&fields);
    let mut all: Vec<(String, i64)> = consumers(&mut con, STREAM, GROUP)
        .into_iter()
        .map(|(name, _, idle)| (name, idle))
        .collect();
    assert_eq!(all.len(), 5_000);
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let names = |rows: &[(String, i64)]| rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&rows), names(&all[..50]));
    assert!(rows.windows(2).all(|w| w[0].1 >= w[1].1), "{rows:?}");

    assert_eq!(
        listed(&status(&mut con, &[]).unwrap()).len(),
        100,
        "LIMIT defaults to 100"
    );
    assert_eq!(
        listed(&status(&mut con, &["limit", "10000"]).unwrap()).len(),
        5_000
    );
    assert_eq!(
        group_state(&mut con, STREAM),
        before,
        "STATUS changed state"
    );
}

/// `(name, pending, oldest-idle)` of `parked`'s `role` (target or quarantine).
fn parked(fields: &[(String, Value)], role: &str) -> (String, i64, Value) {
    let by = pairs(&field(&pairs(&field(fields, "parked")), role));
    let oldest = field(&by, "oldest-idle");
    (
        text(&field(&by, "name")),
        int(&field(&by, "pending")),
        oldest,
    )
}

/// `parked` names what TO and QUARANTINE hold even when LIMIT leaves them
/// out of the list (issue 10: the parked gauges and `check` read it).
#[test]
fn parked_entries_show_when_the_list_leaves_their_consumers_out() {
    let (_server, mut con) = testnet_group();
    create_consumers(&mut con, "exec-live", 20);
    add_entries(&mut con, 2);
    read_as(&mut con, "recovery", 2);
    sleep_ms(300);
    // A read that finds nothing new: `recovery` is seen now, its entries stay idle.
    assert!(read_as(&mut con, "recovery", 1).is_empty());
    let fields = status(&mut con, &["LIMIT", "1"]).unwrap();
    let names: Vec<String> = listed(&fields).into_iter().map(|r| r.0).collect();
    assert!(!names.contains(&"recovery".to_string()), "{names:?}");
    let (name, pending, oldest) = parked(&fields, "target");
    assert_eq!((name.as_str(), pending), ("recovery", 2));
    assert!(int(&oldest) >= 300, "{oldest:?}");
    let (name, pending, oldest) = parked(&fields, "quarantine");
    assert_eq!(
        (name.as_str(), pending, oldest),
        ("quarantine", 0, Value::Nil)
    );
}

#[test]
fn bad_limit_values_are_refused() {
    let (_server, mut con) = testnet_group();
    for (options, expected) in [
        (
            vec!["LIMIT", "0"],
            "LIMIT must be an integer from 1 to 10000, got '0'",
        ),
        (
            vec!["LIMIT", "10001"],
            "LIMIT must be an integer from 1 to 10000, got '10001'",
        ),
        (vec!["LIMIT", "-5"], "got '-5'"),
        (vec!["LIMIT", "many"], "got 'many'"),
        (vec!["LIMIT"], "LIMIT needs a value"),
        (
            vec!["LIMIT", "1", "LIMIT", "2"],
            "LIMIT given more than once",
        ),
        (
            vec!["COUNT", "5"],
            "unknown option 'COUNT' for QUANTUM.STATUS",
        ),
    ] {
        let err = status(&mut con, &options).unwrap_err();
        assert!(
            err.starts_with("ERR ") && err.contains(expected),
            "{options:?}: {err}"
        );
    }
}

#[test]
fn the_trigger_shows_the_states_and_says_when_the_list_was_cut() {
    let (server, mut con) = testnet_group();
    create_consumers(&mut con, "exec-old", 5);
    sleep_ms(300);
    add_entries(&mut con, 1);
    read_as(&mut con, "exec-new", 1);
    let url = url_of(&server.socket());

    let out = run_trigger(
        &[
            "status",
            "--url",
            &url,
            "--zombie-idle",
            "200ms",
            "--limit",
            "2",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for expected in [
        "consumers    6: live 1, zombie 5, stuck 0, target 0, quarantine 0",
        "exec-old-0  zombie",
        "exec-old-1  zombie",
        "… and 4 more",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} in:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("exec-new"), "{}", out.stdout);

    let out = run_trigger(
        &["status", "--url", &url, "--zombie-idle", "200ms", "--json"],
        &[],
    );
    let json = out.json();
    assert_eq!(json["states"]["zombie"], 5);
    assert_eq!(json["states"]["live"], 1);
    assert_eq!(
        (
            json["consumers"].as_array().unwrap().len(),
            json["unlisted"].as_i64()
        ),
        (6, Some(0))
    );
    assert!(!out.stdout.contains("more"));
    let out = run_trigger(&["status", "--url", &url, "--limit", "1", "--json"], &[]);
    assert_eq!(out.json()["unlisted"], 5);
    assert_eq!(
        run_trigger(&["status", "--url", &url, "--limit", "10001"], &[]).code,
        64
    );
}

#[test]
fn the_status_table_escapes_names_chosen_by_clients() {
    let (server, mut con) = testnet_group();
    let forger = "evil\nrecovery    live               0  1s";
    for name in [forger, "esc\u{1b}[2Jgone", "tab\tname"] {
        create_consumer(&mut con, name);
    }
    run(&mut con, &["SET", "quantum:mode", "TEST\u{1b}[31mNET"]).unwrap();
    let url = url_of(&server.socket());
    let out = run_trigger(&["status", "--url", &url], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stdout.contains('\u{1b}') && !out.stdout.contains('\t'),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("recovery")),
        "a name forged a row:\n{}",
        out.stdout
    );
    for shown in [
        r#""evil\nrecovery    live               0  1s""#,
        r#""esc\u{1b}[2Jgone""#,
        r#""tab\tname""#,
        r#""TEST\u{1b}[31mNET""#,
    ] {
        assert!(out.stdout.contains(shown), "{shown} in\n{}", out.stdout);
    }
}
