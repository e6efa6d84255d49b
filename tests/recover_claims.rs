//! QUANTUM.RECOVER's claim step against a real redis-server: only idle entries of other
//! consumers move (S8), never twice, poison entries to QUARANTINE, vanished entries
//! dropped, big backlogs in bounded calls (S5), and nothing acked or deleted (S1).

use quantum_integration::reply::{assert_same_ids, consumer_names, pel, recover, run};
use quantum_integration::scenario::*;

#[test]
fn dead_consumers_idle_entries_move_and_fresh_ones_stay() {
    let (_server, mut con) = testnet_group();
    add_entries(&mut con, 3);
    let dead = read_as(&mut con, "exec-101", 2);
    age_entries(&mut con, "exec-101", &dead, 120_000);
    add_entries(&mut con, 2);
    let live = read_as(&mut con, "exec-202", 2);

    let r = recover(&mut con, STREAM, GROUP, &["MINIDLE", "60000"]).unwrap();
    assert_eq!(r.claimed, dead);
    assert_eq!(r.scanned, 4);
    assert_eq!(r.cursor, "0-0");
    assert_eq!(r.pending, 4);
    let owners = pel(&mut con, STREAM, GROUP);
    for (id, owner, _) in &owners {
        let expected = if live.contains(id) {
            "exec-202"
        } else {
            "recovery"
        };
        assert_eq!(owner, expected, "{id}");
    }

    // MINIDLE 0 would steal a live consumer's work (S8): refused, nothing moves.
    let err = recover(&mut con, STREAM, GROUP, &["MINIDLE", "0"]).unwrap_err();
    assert!(err.contains("MINIDLE must be an integer from 1"), "{err}");
    assert_eq!(pel(&mut con, STREAM, GROUP), owners);
}

#[test]
fn a_zombie_emptied_by_the_claim_is_deleted_by_the_same_call() {
    let (_server, mut con) = testnet_group();
    let ids = idle_reads(&mut con, "exec-1", 2);

    let r = recover(&mut con, STREAM, GROUP, &SHORT_IDLE).unwrap();
    assert_eq!(r.claimed, ids);
    assert_eq!(r.deleted, ["exec-1"]);
    assert!(r.kept.is_empty());
    assert_eq!(consumer_names(&mut con, STREAM, GROUP), ["recovery"]);
    assert_eq!((r.pending, r.consumers), (2, 1));
}

#[test]
fn entries_held_by_to_or_quarantine_are_never_claimed_again() {
    let (_server, mut con) = testnet_group();
    add_entries(&mut con, 3);
    let ids = read_as(&mut con, "exec-1", 3);
    // One entry already parked in quarantine by an earlier run.
    hand_to(&mut con, "quarantine", &[&ids[2]]);
    sleep_ms(30);

    let first = recover(&mut con, STREAM, GROUP, &["MINIDLE", "10"]).unwrap();
    assert_eq!(first.claimed, ids[..2]);
    sleep_ms(30);
    let second = recover(&mut con, STREAM, GROUP, &["MINIDLE", "10"]).unwrap();
    assert!(
        second.claimed.is_empty(),
        "the old script re-claimed every run: {second:?}"
    );
    assert!(second.quarantined.is_empty());
    assert_eq!(second.scanned, 3);
}

#[test]
fn poison_entries_go_to_quarantine_and_moves_do_not_count_as_deliveries() {
    let (_server, mut con) = testnet_group();
    add_entries(&mut con, 2);
    let ids = read_as(&mut con, "exec-1", 2);
    // Deliver the first entry twice more (3 in all); the second stays at 1.
    hand_to(&mut con, "exec-1", &[&ids[1]]);
    run(&mut con, &["XACK", STREAM, GROUP, &ids[1]]).unwrap();
    reread_history(&mut con, "exec-1");
    reread_history(&mut con, "exec-1");
    let ids_after_ack: Vec<_> = pel(&mut con, STREAM, GROUP);
    assert_eq!(ids_after_ack, [(ids[0].clone(), "exec-1".into(), 3)]);
    add_entries(&mut con, 1);
    let fresh = read_as(&mut con, "exec-1", 1);
    sleep_ms(30);

    let r = recover(
        &mut con,
        STREAM,
        GROUP,
        &["MINIDLE", "10", "MAXDELIVERIES", "3"],
    )
    .unwrap();
    assert_eq!(r.quarantined, [ids[0].clone()]);
    assert_eq!(r.claimed, fresh);
    assert_eq!(
        pel(&mut con, STREAM, GROUP),
        [
            (ids[0].clone(), "quarantine".into(), 3),
            (fresh[0].clone(), "recovery".into(), 1)
        ],
        "a move leaves the delivery counter as it was"
    );
    reread_history(&mut con, "recovery");
    assert_eq!(
        pel(&mut con, STREAM, GROUP)[1],
        (fresh[0].clone(), "recovery".into(), 2),
        "the new owner's read counts"
    );
}

#[test]
fn entries_deleted_from_the_stream_are_dropped_from_the_pel() {
    let (_server, mut con) = testnet_group();
    add_entries(&mut con, 3);
    let ids = read_as(&mut con, "exec-1", 3);
    run(&mut con, &["XDEL", STREAM, &ids[1]]).unwrap();
    sleep_ms(30);

    let r = recover(&mut con, STREAM, GROUP, &["MINIDLE", "10"]).unwrap();
    assert_eq!(r.claimed, [ids[0].clone(), ids[2].clone()]);
    assert_eq!(r.dropped, [ids[1].clone()]);
    assert_eq!(r.pending, 2);
    let left: Vec<String> = pel(&mut con, STREAM, GROUP)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(left, [ids[0].clone(), ids[2].clone()]);
}

#[test]
fn a_big_backlog_drains_in_bounded_calls_moving_each_entry_once() {
    let (_server, mut con) = testnet_group();
    let ids = add_entries(&mut con, 10_000);
    let mut held = Vec::new();
    for i in 0..10 {
        let consumer = format!("exec-{i}");
        let ids = read_as(&mut con, &consumer, 1_000);
        age_entries(&mut con, &consumer, &ids, 120_000);
        held.extend(ids);
    }
    assert_same_ids(&held, &ids, "the dead consumers hold every entry");
    // A live consumer's fresh entries sit at the end of the PEL and must be skipped.
    add_entries(&mut con, 500);
    let live = read_as(&mut con, "exec-live", 500);

    let mut moved: Vec<String> = Vec::new();
    let mut cursor = "0-0".to_string();
    let mut calls = 0;
    loop {
        let r = recover(
            &mut con,
            STREAM,
            GROUP,
            &[
                "MINIDLE", "60000", "COUNT", "700", "SCAN", "900", "CURSOR", &cursor,
            ],
        )
        .unwrap();
        calls += 1;
        assert!(
            r.claimed.len() <= 700,
            "COUNT exceeded: {}",
            r.claimed.len()
        );
        assert!(r.scanned <= 900, "SCAN exceeded: {}", r.scanned);
        moved.extend(r.claimed);
        cursor = r.cursor;
        if cursor == "0-0" {
            break;
        }
        assert!(calls < 100, "the cursor never reached the end");
    }
    assert_same_ids(
        &moved,
        &ids,
        "every idle entry moved exactly once, in order",
    );
    assert!(
        calls >= 15,
        "10,000 entries at COUNT 700 need at least 15 calls, took {calls}"
    );
    let owners = pel(&mut con, STREAM, GROUP);
    assert_eq!(owners.iter().filter(|e| e.1 == "recovery").count(), 10_000);
    assert!(owners
        .iter()
        .filter(|e| e.1 == "exec-live")
        .map(|e| &e.0)
        .eq(live.iter()));
}

/// S1: a recovery only ever runs these commands, so it cannot ack, delete or
/// trim entries, nor touch another key.
#[test]
fn a_recovery_never_acks_deletes_or_trims() {
    let (_server, mut con) = testnet_group();
    run(&mut con, &["SET", "unrelated", "v"]).unwrap();
    add_entries(&mut con, 5);
    let ids = read_as(&mut con, "exec-1", 5);
    reread_history(&mut con, "exec-1");
    run(&mut con, &["XDEL", STREAM, &ids[4]]).unwrap();
    create_consumer(&mut con, "exec-zombie");
    sleep_ms(150);
    let entries_before = run(&mut con, &["XRANGE", STREAM, "-", "+"]).unwrap();
    run(&mut con, &["CONFIG", "RESETSTAT"]).unwrap();

    let opts = [
        "MINIDLE",
        "100",
        "ZOMBIEIDLE",
        "100",
        "MAXDELIVERIES",
        "2",
        "COUNT",
        "2",
        "SCAN",
        "2",
    ];
    recover(&mut con, STREAM, GROUP, &opts).unwrap();
    let r = recover(
        &mut con,
        STREAM,
        GROUP,
        &["MINIDLE", "100", "ZOMBIEIDLE", "100", "DRYRUN"],
    )
    .unwrap();
    assert!(
        !r.claimed.is_empty() && !r.dropped.is_empty(),
        "the dry run checks existence: {r:?}"
    );
    recover(&mut con, STREAM, GROUP, &SHORT_IDLE).unwrap();

    let stats =
        quantum_integration::reply::text(&run(&mut con, &["INFO", "commandstats"]).unwrap());
    let mut called: Vec<&str> = stats
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_")?.split(':').next())
        .filter(|c| *c != "config|resetstat")
        .collect();
    called.sort();
    assert_eq!(
        called,
        [
            // GET reads the mode key; CREATECONSUMER makes TO exist before the claim.
            "get",
            "quantum.recover",
            "xclaim",
            "xgroup|createconsumer",
            "xgroup|delconsumer",
            "xinfo|consumers",
            "xpending",
            "xrange"
        ]
    );
    assert_eq!(
        run(&mut con, &["XRANGE", STREAM, "-", "+"]).unwrap(),
        entries_before,
        "stream entries changed"
    );
    assert_eq!(
        pel(&mut con, STREAM, GROUP).len(),
        4,
        "only the deleted entry left the PEL"
    );
    assert_eq!(
        quantum_integration::reply::text(&run(&mut con, &["GET", "unrelated"]).unwrap()),
        "v"
    );
}

#[test]
fn claim_only_calls_without_the_consumer_step_log_below_notice() {
    let (server, mut con) = testnet_group();
    let logged = |server: &quantum_integration::Server, claimed: usize| {
        server
            .log()
            .lines()
            .any(|l| l.contains("recovered stream=") && l.contains(&format!(" claimed={claimed} ")))
    };
    // A drain's intermediate batch: DELETELIMIT 0, claims only. At Redis's
    // default `loglevel notice` (test servers log at verbose) no line ...
    run(&mut con, &["CONFIG", "SET", "loglevel", "notice"]).unwrap();
    idle_reads(&mut con, "exec-1", 2);
    let skip_step = ["MINIDLE", "100", "DELETELIMIT", "0"];
    assert_eq!(
        recover(&mut con, STREAM, GROUP, &skip_step)
            .unwrap()
            .claimed
            .len(),
        2
    );
    assert!(!logged(&server, 2), "log:\n{}", server.log());
    // ... and one at `verbose`.
    run(&mut con, &["CONFIG", "SET", "loglevel", "verbose"]).unwrap();
    idle_reads(&mut con, "exec-2", 3);
    assert_eq!(
        recover(&mut con, STREAM, GROUP, &skip_step)
            .unwrap()
            .claimed
            .len(),
        3
    );
    assert!(logged(&server, 3), "log:\n{}", server.log());
    // A call with the consumer step says what it claimed at `notice`.
    run(&mut con, &["CONFIG", "SET", "loglevel", "notice"]).unwrap();
    idle_reads(&mut con, "exec-3", 4);
    let r = recover(&mut con, STREAM, GROUP, &["MINIDLE", "100"]).unwrap();
    assert_eq!(r.claimed.len(), 4);
    assert!(logged(&server, 4), "log:\n{}", server.log());
}
