//! QUANTUM.RECOVER's delete step (S2) and hostile consumer names (S6).

use quantum_integration::reply::{consumer_names, consumers, pel, recover, run};
use quantum_integration::scenario::*;

#[test]
fn zombies_are_deleted_stuck_consumers_kept_and_young_ones_left() {
    let (_server, mut con) = testnet_group();
    // zombie: read nothing, then went quiet. stuck: holds fresh entries, then went quiet.
    create_consumer(&mut con, "exec-zombie");
    add_entries(&mut con, 2);
    let stuck = read_as(&mut con, "exec-stuck", 2);
    sleep_ms(300);
    create_consumer(&mut con, "exec-young");

    let r = recover(
        &mut con,
        STREAM,
        GROUP,
        &["MINIDLE", "60000", "ZOMBIEIDLE", "200"],
    )
    .unwrap();
    assert_eq!(r.deleted, ["exec-zombie"]);
    assert_eq!(r.kept, ["exec-stuck"]);
    assert!(
        r.claimed.is_empty(),
        "the stuck consumer's entries are too fresh to move"
    );
    assert_eq!(
        consumer_names(&mut con, STREAM, GROUP),
        ["exec-stuck", "exec-young"]
    );
    assert_eq!(pel(&mut con, STREAM, GROUP).len(), stuck.len());
    assert_eq!((r.pending, r.consumers), (2, 2));
}

#[test]
fn delete_limit_bounds_deletions_per_call() {
    let (_server, mut con) = testnet_group();
    for i in 0..5 {
        create_consumer(&mut con, &format!("exec-{i}"));
    }
    sleep_ms(150);
    let opts = ["ZOMBIEIDLE", "100", "DELETELIMIT", "2"];
    assert_eq!(
        recover(&mut con, STREAM, GROUP, &opts)
            .unwrap()
            .deleted
            .len(),
        2
    );
    assert_eq!(consumers(&mut con, STREAM, GROUP).len(), 3);
    let none = recover(
        &mut con,
        STREAM,
        GROUP,
        &["ZOMBIEIDLE", "100", "DELETELIMIT", "0"],
    )
    .unwrap();
    assert!(none.deleted.is_empty(), "DELETELIMIT 0 turns deletion off");
    assert_eq!(none.consumers, 3);
}

#[test]
fn target_and_quarantine_are_never_deleted() {
    let (_server, mut con) = testnet_group();
    create_consumer(&mut con, "recovery");
    create_consumer(&mut con, "quarantine");
    sleep_ms(150);
    let r = recover(&mut con, STREAM, GROUP, &["ZOMBIEIDLE", "100"]).unwrap();
    assert!(r.deleted.is_empty());
    assert_eq!(
        consumer_names(&mut con, STREAM, GROUP),
        ["quarantine", "recovery"]
    );
}

#[test]
fn printf_like_consumer_names_are_recovered_and_logged_verbatim() {
    let name = "exec-%s%n%x%%";
    let (server, mut con) = testnet_group();
    let ids = idle_reads(&mut con, name, 1);

    let r = recover(&mut con, STREAM, GROUP, &SHORT_IDLE).unwrap();
    assert_eq!(r.claimed, ids);
    assert_eq!(r.deleted, [name]);
    assert_eq!(
        run(&mut con, &["PING"]).unwrap(),
        redis::Value::SimpleString("PONG".into())
    );
    let log = server.log();
    assert!(
        log.contains("deleted_consumers=['exec-%s%n%x%%']"),
        "log:\n{log}"
    );
}

#[test]
fn binary_consumer_names_survive_the_round_trip() {
    let (server, mut con) = testnet_group();
    let name = "exec-\u{0}\n\r'é";
    create_consumer(&mut con, name);
    sleep_ms(150);
    let r = recover(&mut con, STREAM, GROUP, &["ZOMBIEIDLE", "100"]).unwrap();
    assert_eq!(r.deleted, [name]);
    assert!(server
        .log()
        .contains(r"deleted_consumers=['exec-\x00\x0a\x0d\'\xc3\xa9']"));
}
