//! Bad input gets a clear error and changes nothing (item 12); configs and
//! INFO counters (item 14); the module's load-time arguments.

use quantum_integration::reply::{
    group_state, info_counter, info_quantum, pel, recover, run, text,
};
use quantum_integration::scenario::*;
use quantum_integration::{Options, Server, BUILD};
use redis::Connection;

/// A group where any accepted call would change something.
fn ready_group(con: &mut Connection) {
    group_with_mode(con, "TESTNET");
    create_consumer(con, "exec-zombie");
    add_entries(con, 3);
    read_as(con, "exec-dead", 3);
    sleep_ms(30);
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let mut server = Server::start();
    let mut con = server.connect();
    ready_group(&mut con);
    run(&mut con, &["SET", "a-string", "x"]).unwrap();
    let before = (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP));
    let ok = ["MINIDLE", "1", "ZOMBIEIDLE", "1"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["QUANTUM.RECOVER"], "wrong number of arguments"),
        (vec!["QUANTUM.RECOVER", STREAM], "wrong number of arguments"),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "BOGUS", "1"],
            "unknown option 'BOGUS'",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "COUNT", "5", "count", "5"],
            "COUNT given more than once",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "MINIDLE"],
            "MINIDLE needs a value",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "MINIDLE", "soon"],
            "MINIDLE must be an integer",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "MINIDLE", "-5"],
            "got '-5'",
        ),
        (
            vec![
                "QUANTUM.RECOVER",
                STREAM,
                GROUP,
                "MINIDLE",
                "9223372036854775808",
            ],
            "MINIDLE must be an integer",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "COUNT", "0"],
            "COUNT must be an integer from 1 to 10000",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "COUNT", "10001"],
            "COUNT must be an integer from 1 to 10000",
        ),
        (
            vec![
                "QUANTUM.RECOVER",
                STREAM,
                GROUP,
                "COUNT",
                "50",
                "SCAN",
                "10",
            ],
            "SCAN 10 must be at least COUNT 50",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "CURSOR", "yesterday"],
            "CURSOR must be a stream ID",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "DELETELIMIT", "-1"],
            "DELETELIMIT must be an integer from 0",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, GROUP, "TO", "quarantine"],
            "TO and QUARANTINE must name different",
        ),
        (
            vec!["QUANTUM.RECOVER", "no-such-stream", GROUP, "MINIDLE", "1"],
            "ERR no such key",
        ),
        (
            vec!["QUANTUM.RECOVER", "a-string", GROUP, "MINIDLE", "1"],
            "WRONGTYPE",
        ),
        (
            vec!["QUANTUM.RECOVER", STREAM, "no-such-group", "MINIDLE", "1"],
            "NOGROUP",
        ),
    ];
    for (words, expected) in cases {
        let mut words = words;
        if words.len() >= 3 && !words.contains(&"MINIDLE") {
            words.extend_from_slice(&ok);
        }
        let err = run(&mut con, &words).unwrap_err();
        assert!(err.contains(expected), "{words:?}: {err}");
        assert_eq!(
            (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP)),
            before,
            "{words:?} changed state"
        );
    }
    assert_eq!(text(&run(&mut con, &["PING"]).unwrap()), "PONG");
    assert!(server.is_alive());
    assert_eq!(info_counter(&mut con, "errors"), 17);
    assert_eq!(info_counter(&mut con, "runs"), 0);
}

#[test]
fn the_largest_cursor_is_the_end_of_the_pel() {
    let server = Server::start();
    let mut con = server.connect();
    ready_group(&mut con);
    let end = "18446744073709551615-18446744073709551615";
    let r = recover(&mut con, STREAM, GROUP, &["MINIDLE", "1", "CURSOR", end]).unwrap();
    assert_eq!((r.scanned, r.cursor.as_str()), (0, "0-0"));
}

#[test]
fn resp3_gets_a_map_and_resp2_a_flat_array_in_spec_order() {
    let server = Server::start();
    let mut con = server.connect();
    ready_group(&mut con);
    let order = [
        "mode",
        "dry-run",
        "claimed",
        "quarantined",
        "dropped",
        "deleted",
        "kept",
        "scanned",
        "cursor",
        "pending",
        "consumers",
        "kept-total",
    ];
    let resp2 = run(&mut con, &["QUANTUM.RECOVER", STREAM, GROUP, "DRYRUN"]).unwrap();
    assert!(
        matches!(resp2, redis::Value::Array(ref a) if a.len() == 24),
        "{resp2:?}"
    );
    let mut con3 = server.connect_resp3();
    let resp3 = run(&mut con3, &["QUANTUM.RECOVER", STREAM, GROUP, "DRYRUN"]).unwrap();
    assert!(matches!(resp3, redis::Value::Map(_)), "{resp3:?}");
    for reply in [resp2, resp3] {
        assert_eq!(
            quantum_integration::Recovery::from_value(&reply).keys,
            order
        );
    }
}

#[test]
fn configs_change_the_defaults_and_bad_values_are_refused() {
    let server = Server::start();
    let mut con = server.connect();
    ready_group(&mut con);
    for (name, value) in [
        ("count", "100"),
        ("scan", "1000"),
        ("min-idle", "60000"),
        ("zombie-idle", "3600000"),
        ("delete-limit", "1000"),
        ("max-deliveries", "0"),
        ("target", "recovery"),
        ("quarantine", "quarantine"),
        ("mode-key", "quantum:mode"),
        ("allowed-modes", "TESTNET"),
    ] {
        let got = run(&mut con, &["CONFIG", "GET", &format!("quantum.{name}")]).unwrap();
        assert_eq!(
            quantum_integration::reply::texts(&got)[1],
            value,
            "default of quantum.{name}"
        );
    }
    // The defaults leave everything alone: entries and consumers are too fresh.
    let r = recover(&mut con, STREAM, GROUP, &[]).unwrap();
    assert!(r.claimed.is_empty() && r.deleted.is_empty());

    for (name, value) in [
        ("min-idle", "10"),
        ("zombie-idle", "10"),
        ("target", "adopter"),
        ("count", "2"),
    ] {
        run(
            &mut con,
            &["CONFIG", "SET", &format!("quantum.{name}"), value],
        )
        .unwrap();
    }
    let r = recover(&mut con, STREAM, GROUP, &[]).unwrap();
    assert_eq!(r.claimed.len(), 2, "COUNT from quantum.count");
    assert_eq!(r.deleted, ["exec-zombie"]);
    assert_eq!(pel(&mut con, STREAM, GROUP)[0].1, "adopter");

    for (name, value, expected) in [
        ("count", "0", "between 1 and 10000"),
        ("count", "lots", "argument couldn't be parsed"),
        ("min-idle", "0", "between 1 and"),
        ("scan", "100001", "between 1 and 100000"),
        ("target", "", "must not be empty"),
        ("mode-key", "", "must not be empty"),
    ] {
        let err = run(
            &mut con,
            &["CONFIG", "SET", &format!("quantum.{name}"), value],
        )
        .unwrap_err();
        assert!(err.contains(expected), "quantum.{name}={value}: {err}");
    }
    assert_eq!(
        quantum_integration::reply::texts(
            &run(&mut con, &["CONFIG", "GET", "quantum.count"]).unwrap()
        )[1],
        "2"
    );

    // SCAN below COUNT through the configs is named as such at call time.
    run(&mut con, &["CONFIG", "SET", "quantum.scan", "1"]).unwrap();
    let err = recover(&mut con, STREAM, GROUP, &[]).unwrap_err();
    assert!(
        err.contains("SCAN 1 (from quantum.scan) must be at least COUNT 2"),
        "{err}"
    );
}

#[test]
fn info_counters_are_the_sums_of_the_replies() {
    let (_server, mut con) = testnet_group();
    let mut sums = [0usize; 4];
    for round in 0..3 {
        create_consumer(&mut con, &format!("zombie-{round}"));
        add_entries(&mut con, 4);
        let dead = format!("dead-{round}");
        let ids = read_as(&mut con, &dead, 2);
        reread_history(&mut con, &dead);
        read_as(&mut con, &dead, 2);
        run(&mut con, &["XDEL", STREAM, &ids[0]]).unwrap();
        sleep_ms(30);
        let r = recover(
            &mut con,
            STREAM,
            GROUP,
            &["MINIDLE", "10", "ZOMBIEIDLE", "10", "MAXDELIVERIES", "2"],
        )
        .unwrap();
        recover(&mut con, STREAM, GROUP, &["DRYRUN", "MINIDLE", "1"]).unwrap();
        for (sum, list) in sums
            .iter_mut()
            .zip([&r.claimed, &r.quarantined, &r.dropped, &r.deleted])
        {
            *sum += list.len();
        }
    }
    assert!(
        sums.iter().all(|&s| s > 0),
        "every counter is exercised: {sums:?}"
    );
    for (name, sum) in ["claimed", "quarantined", "dropped", "deleted"]
        .iter()
        .zip(sums)
    {
        assert_eq!(info_counter(&mut con, name), sum as i64, "{name}");
    }
    assert_eq!(info_counter(&mut con, "runs"), 3);
    assert_eq!(info_counter(&mut con, "dry_runs"), 3);
    assert!(info_counter(&mut con, "last_run_unix_ms") > 1_700_000_000_000);
    let info = info_quantum(&mut con);
    assert!(
        info.iter().any(|(k, v)| k == "build" && v == BUILD),
        "the loaded module is not from this build ({BUILD}); run `cargo build` first: {info:?}"
    );
}

#[test]
fn loadmodule_arguments_set_configs_and_a_bad_one_fails_the_load() {
    let server = Server::with(Options {
        module_args: ["count", "7", "quantum.allowed-modes", "TESTNET,PAPER"]
            .map(String::from)
            .to_vec(),
        ..Options::default()
    });
    let mut con = server.connect();
    let count = run(&mut con, &["CONFIG", "GET", "quantum.count"]).unwrap();
    assert_eq!(quantum_integration::reply::texts(&count)[1], "7");
    let modes = run(&mut con, &["CONFIG", "GET", "quantum.allowed-modes"]).unwrap();
    assert_eq!(
        quantum_integration::reply::texts(&modes)[1],
        "TESTNET,PAPER"
    );

    for (args, expected) in [
        (vec!["count", "0"], "loadmodule argument 'count' '0'"),
        (vec!["bogus", "1"], "'quantum.bogus'"),
        (vec!["count"], "name value pairs"),
    ] {
        let options = Options {
            module_args: args.iter().map(|a| a.to_string()).collect(),
            ..Options::default()
        };
        let log = match Server::try_with(options) {
            Ok(_) => panic!("{args:?} loaded"),
            Err(log) => log,
        };
        assert!(
            log.contains("not loaded") && log.contains(expected),
            "{args:?}:\n{log}"
        );
    }
}
