//! S4: every change reaches replicas and the AOF.

use quantum_integration::reply::{consumer_names, consumers, pel, recover, run};
use quantum_integration::scenario::*;
use quantum_integration::{primary_and_replica, Options, Server};
use redis::Connection;
use std::time::{Duration, Instant};

/// A recovery that claims, quarantines, drops and deletes, then a RETIRE.
fn recover_everything(con: &mut Connection) {
    group_with_mode(con, "TESTNET");
    create_consumer(con, "exec-zombie");
    add_entries(con, 6);
    let poison = read_as(con, "exec-poison", 2);
    reread_history(con, "exec-poison");
    let dead = read_as(con, "exec-dead", 3);
    run(con, &["XDEL", STREAM, &dead[2]]).unwrap();
    read_as(con, "exec-gone", 1);
    sleep_ms(150);
    run(
        con,
        &["XGROUP", "CREATECONSUMER", STREAM, GROUP, "exec-new"],
    )
    .unwrap();
    let r = recover(
        con,
        STREAM,
        GROUP,
        &["MINIDLE", "100", "ZOMBIEIDLE", "100", "MAXDELIVERIES", "2"],
    )
    .unwrap();
    assert_eq!(r.quarantined, poison);
    assert_eq!(r.claimed.len(), 3, "{r:?}");
    assert_eq!(r.dropped.len(), 1);
    assert_eq!(r.deleted.len(), 4, "{r:?}");
    // A graceful hand-off replicates too.
    add_entries(con, 1);
    read_as(con, "exec-stopping", 1);
    run(
        con,
        &[
            "QUANTUM.RETIRE",
            STREAM,
            GROUP,
            "exec-stopping",
            "TO",
            "exec-next",
        ],
    )
    .unwrap();
    assert!(consumers(con, STREAM, GROUP)
        .iter()
        .any(|c| c.0 == "exec-next" && c.1 == 1));
}

/// Claims and a RETIRE whose every entry is already gone from the stream: on
/// Redis 7.2+ XCLAIM creates TO (and QUARANTINE) on the primary without
/// propagating anything that creates them, unless the module does.
fn claim_only_vanished_entries(con: &mut Connection) {
    group_with_mode(con, "TESTNET");
    add_entries(con, 5);
    let dead = read_as(con, "exec-dead", 2);
    let poison = read_as(con, "exec-poison", 2);
    reread_history(con, "exec-poison");
    for id in dead.iter().chain(&poison) {
        run(con, &["XDEL", STREAM, id]).unwrap();
    }
    sleep_ms(150);
    let r = recover(
        con,
        STREAM,
        GROUP,
        &["MINIDLE", "100", "MAXDELIVERIES", "2"],
    )
    .unwrap();
    assert_eq!(r.dropped.len(), 4, "{r:?}");
    assert!(r.claimed.is_empty() && r.quarantined.is_empty(), "{r:?}");
    let stopping = read_as(con, "exec-stopping", 1);
    run(con, &["XDEL", STREAM, &stopping[0]]).unwrap();
    run(
        con,
        &[
            "QUANTUM.RETIRE",
            STREAM,
            GROUP,
            "exec-stopping",
            "TO",
            "exec-next",
        ],
    )
    .unwrap();
    let names = consumer_names(con, STREAM, GROUP);
    for keeper in ["recovery", "quarantine", "exec-next"] {
        assert!(names.iter().any(|n| n == keeper), "{keeper}: {names:?}");
    }
    assert!(pel(con, STREAM, GROUP).is_empty());
}

/// PEL owners and delivery counts, and consumer names with their pending counts.
type GroupView = (Vec<(String, String, i64)>, Vec<(String, i64)>);

fn view(con: &mut Connection) -> GroupView {
    let names = consumers(con, STREAM, GROUP)
        .into_iter()
        .map(|(n, p, _)| (n, p))
        .collect();
    (pel(con, STREAM, GROUP), names)
}

/// After `change` on a primary, its replica holds the same group state.
fn replica_matches_after(change: fn(&mut Connection)) {
    let (primary, replica) = primary_and_replica();
    let mut p = primary.connect();
    let mut r = replica.connect();
    change(&mut p);
    let expected = view(&mut p);
    run(&mut p, &["WAIT", "1", "5000"]).unwrap();
    wait_for(|| view(&mut r) == expected);
    assert_eq!(view(&mut r), expected);
}

/// After `change`, a restart from the AOF holds the same group state.
fn aof_restart_matches_after(change: fn(&mut Connection)) {
    let server = Server::with(Options {
        config: vec![
            ("appendonly".into(), "yes".into()),
            ("appendfsync".into(), "always".into()),
        ],
        ..Options::default()
    });
    let mut con = server.connect();
    change(&mut con);
    let expected = view(&mut con);
    drop(con);
    let server = server.restart();
    assert_eq!(view(&mut server.connect()), expected);
}

#[test]
fn a_replica_holds_the_same_group_state() {
    replica_matches_after(recover_everything);
}

#[test]
fn a_restart_from_the_aof_holds_the_same_group_state() {
    aof_restart_matches_after(recover_everything);
}

#[test]
fn a_replica_gets_the_consumers_of_a_claim_of_vanished_entries() {
    replica_matches_after(claim_only_vanished_entries);
}

#[test]
fn an_aof_restart_keeps_the_consumers_of_a_claim_of_vanished_entries() {
    aof_restart_matches_after(claim_only_vanished_entries);
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}
