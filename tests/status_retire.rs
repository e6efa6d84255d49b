//! QUANTUM.STATUS (read-only, any mode) and QUANTUM.RETIRE (mode-guarded hand-off).

use quantum_integration::reply::{
    consumer_names, field, group_state, info_counter, int, pairs, pel, recover, run, status, text,
    texts,
};
use quantum_integration::scenario::*;
use quantum_integration::Server;
use redis::Value;

fn idle_times(fields: &[(String, Value)]) -> Vec<i64> {
    match field(fields, "consumers") {
        Value::Array(items) => items
            .iter()
            .map(|c| int(&field(&pairs(c), "idle")))
            .collect(),
        other => panic!("consumers {other:?}"),
    }
}

fn states(fields: &[(String, Value)]) -> Vec<(String, i64, String)> {
    match field(fields, "consumers") {
        Value::Array(items) => items
            .iter()
            .map(|c| {
                let c = pairs(c);
                (
                    text(&field(&c, "name")),
                    int(&field(&c, "pending")),
                    text(&field(&c, "state")),
                )
            })
            .collect(),
        other => panic!("consumers {other:?}"),
    }
}

#[test]
fn status_reports_every_state_in_live_mode_and_changes_nothing() {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "LIVE");
    create_consumer(&mut con, "exec-zombie");
    add_entries(&mut con, 4);
    let stuck = read_as(&mut con, "exec-stuck", 2);
    hand_to(&mut con, "quarantine", &[&stuck[0]]);
    create_consumer(&mut con, "recovery");
    sleep_ms(250);
    read_as(&mut con, "exec-live", 1);
    let before = group_state(&mut con, STREAM);

    let fields = status(&mut con, &["ZOMBIEIDLE", "200"]).unwrap();
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
    assert_eq!(text(&field(&fields, "mode")), "LIVE");
    assert_eq!(int(&field(&fields, "allowed")), 0);
    assert_eq!(int(&field(&fields, "pending")), 3);
    assert_eq!(int(&field(&fields, "lag")), 1, "one entry never delivered");
    assert!(int(&field(&fields, "oldest-idle")) >= 250);
    assert_eq!(field(&fields, "last-run"), Value::Nil);
    // Listed the longest idle first; equal idle times (same ms) make the order
    // of these five vary, so the rows are compared by name.
    let idles = idle_times(&fields);
    assert!(idles.windows(2).all(|w| w[0] >= w[1]), "{idles:?}");
    let mut rows = states(&fields);
    rows.sort();
    assert_eq!(
        rows,
        [
            ("exec-live".into(), 1, "live".into()),
            ("exec-stuck".into(), 1, "stuck".into()),
            ("exec-zombie".into(), 0, "zombie".into()),
            ("quarantine".into(), 1, "quarantine".into()),
            ("recovery".into(), 0, "target".into()),
        ]
    );
    assert_eq!(
        group_state(&mut con, STREAM),
        before,
        "STATUS changed state"
    );

    run(&mut con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
    let r = recover(
        &mut con,
        STREAM,
        GROUP,
        &["MINIDLE", "200", "ZOMBIEIDLE", "200"],
    )
    .unwrap();
    let fields = status(&mut con, &[]).unwrap();
    assert_eq!(int(&field(&fields, "allowed")), 1);
    let last = pairs(&field(&fields, "last-run"));
    assert_eq!(int(&field(&last, "claimed")), r.claimed.len() as i64);
    assert_eq!(int(&field(&last, "deleted")), r.deleted.len() as i64);
    assert!(int(&field(&last, "unix-ms")) > 1_700_000_000_000);
}

#[test]
fn status_bad_input_and_acl() {
    let (server, mut con) = testnet_group();
    run(&mut con, &["SET", "a-string", "x"]).unwrap();
    for (words, expected) in [
        (vec!["QUANTUM.STATUS", STREAM], "wrong number of arguments"),
        (
            vec!["QUANTUM.STATUS", STREAM, GROUP, "ZOMBIEIDLE", "0"],
            "ZOMBIEIDLE must be an integer from 1",
        ),
        (
            vec!["QUANTUM.STATUS", STREAM, GROUP, "COUNT", "1"],
            "unknown option 'COUNT' for QUANTUM.STATUS",
        ),
        (vec!["QUANTUM.STATUS", "nope", GROUP], "ERR no such key"),
        (vec!["QUANTUM.STATUS", "a-string", GROUP], "WRONGTYPE"),
        (vec!["QUANTUM.STATUS", STREAM, "nope"], "NOGROUP"),
    ] {
        let err = run(&mut con, &words).unwrap_err();
        assert!(err.contains(expected), "{words:?}: {err}");
    }
    run(
        &mut con,
        &[
            "ACL",
            "SETUSER",
            "watcher",
            "on",
            ">pw",
            "+@all",
            "~quantum:stream:*",
        ],
    )
    .unwrap();
    let mut watcher = server.connect_as("watcher", "pw");
    let err = status(&mut watcher, &[]).unwrap_err();
    assert!(
        err.starts_with("NOPERM") && err.contains("mode key"),
        "{err}"
    );
    run(
        &mut con,
        &["ACL", "SETUSER", "watcher", "resetkeys", "~quantum:mode"],
    )
    .unwrap();
    let err = status(&mut watcher, &[]).unwrap_err();
    assert!(err.starts_with("NOPERM"), "{err}");
}

#[test]
fn retire_hands_every_entry_to_to_and_deletes_the_consumer() {
    let (server, mut con) = testnet_group();
    add_entries(&mut con, 4);
    let ids = read_as(&mut con, "exec-7", 3);
    reread_history(&mut con, "exec-7");
    run(&mut con, &["XDEL", STREAM, &ids[1]]).unwrap();
    read_as(&mut con, "exec-8", 1);

    let reply = pairs(
        &run(
            &mut con,
            &["QUANTUM.RETIRE", STREAM, GROUP, "exec-7", "TO", "exec-9"],
        )
        .unwrap(),
    );
    assert_eq!(
        texts(&field(&reply, "moved")),
        [ids[0].clone(), ids[2].clone()],
        "fresh entries move too"
    );
    assert_eq!(texts(&field(&reply, "dropped")), [ids[1].clone()]);
    assert_eq!(int(&field(&reply, "remaining")), 0);
    assert_eq!(int(&field(&reply, "deleted")), 1);
    assert_eq!(
        consumer_names(&mut con, STREAM, GROUP),
        ["exec-8", "exec-9"]
    );
    let owners = pel(&mut con, STREAM, GROUP);
    assert_eq!(
        owners[0],
        (ids[0].clone(), "exec-9".into(), 2),
        "a move is not a delivery"
    );
    assert!(server.log().contains("retired consumer 'exec-7'"));

    let again = pairs(&run(&mut con, &["QUANTUM.RETIRE", STREAM, GROUP, "exec-7"]).unwrap());
    assert_eq!(
        (
            texts(&field(&again, "moved")).len(),
            int(&field(&again, "deleted"))
        ),
        (0, 0)
    );
    assert_eq!(info_counter(&mut con, "retires"), 2);
    assert_eq!(info_counter(&mut con, "claimed"), 2);
}

#[test]
fn retire_is_mode_guarded_checks_its_input_and_acl_and_changes_nothing_when_refused() {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "LIVE");
    add_entries(&mut con, 2);
    read_as(&mut con, "exec-7", 2);
    run(
        &mut con,
        &[
            "ACL",
            "SETUSER",
            "stopper",
            "on",
            ">pw",
            "+@all",
            "-xgroup|delconsumer",
            "~*",
        ],
    )
    .unwrap();
    let before = (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP));
    for (words, expected) in [
        (
            vec!["QUANTUM.RETIRE", STREAM, GROUP, "exec-7"],
            "MODE refused",
        ),
        (
            vec!["QUANTUM.RETIRE", STREAM, GROUP],
            "wrong number of arguments",
        ),
        (
            vec!["QUANTUM.RETIRE", STREAM, GROUP, "recovery"],
            "must differ",
        ),
        (
            vec!["QUANTUM.RETIRE", STREAM, GROUP, "exec-7", "DRYRUN"],
            "unknown option 'DRYRUN'",
        ),
        (
            vec!["QUANTUM.RETIRE", STREAM, GROUP, "exec-7", "TO", ""],
            "TO must not be empty",
        ),
    ] {
        let err = run(&mut con, &words).unwrap_err();
        assert!(err.contains(expected), "{words:?}: {err}");
    }
    run(&mut con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
    let before_acl = (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP));
    let mut stopper = server.connect_as("stopper", "pw");
    let err = run(&mut stopper, &["QUANTUM.RETIRE", STREAM, GROUP, "exec-7"]).unwrap_err();
    assert!(err.starts_with("NOPERM"), "{err}");
    assert_eq!(
        (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP)),
        before_acl
    );
    assert_eq!(before, before_acl, "the refused calls changed state");
}
