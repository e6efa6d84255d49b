//! The mode guard (S3), DRYRUN, and ACL (S7): refused calls change nothing.

use quantum_integration::reply::{group_state, info_counter, pel, recover, run, Recovery};
use quantum_integration::scenario::*;
use quantum_integration::Server;
use redis::Connection;

/// A group where a permitted call would claim, drop, quarantine, delete and keep.
fn busy_group(con: &mut Connection, mode: &str) {
    group_with_mode(con, mode);
    create_consumer(con, "exec-zombie");
    add_entries(con, 5);
    let poison = read_as(con, "exec-poison", 3);
    reread_history(con, "exec-poison"); // deliveries: 2 each
    age_entries(con, "exec-poison", &poison, 120_000);
    run(con, &["XDEL", STREAM, &poison[1]]).unwrap();
    let dead = read_as(con, "exec-dead", 1);
    age_entries(con, "exec-dead", &dead, 120_000);
    read_as(con, "exec-stuck", 1);
    sleep_ms(250);
}

const OPTIONS: [&str; 6] = [
    "MINIDLE",
    "60000",
    "ZOMBIEIDLE",
    "200",
    "MAXDELIVERIES",
    "2",
];

fn assert_refused_without_change(con: &mut Connection, options: &[&str]) -> String {
    let before = (group_state(con, STREAM), pel(con, STREAM, GROUP));
    let err = recover(con, STREAM, GROUP, options).unwrap_err();
    assert_eq!(
        (group_state(con, STREAM), pel(con, STREAM, GROUP)),
        before,
        "state changed after: {err}"
    );
    err
}

#[test]
fn anything_but_an_allowed_mode_is_refused_and_changes_nothing() {
    let server = Server::start();
    let mut con = server.connect();
    busy_group(&mut con, "LIVE");
    for setup in [
        vec!["SET", "quantum:mode", "LIVE"],
        vec!["DEL", "quantum:mode"],
        vec!["RPUSH", "quantum:mode", "TESTNET"],
        vec!["SET", "quantum:mode", "testnet"],
        vec!["SET", "quantum:mode", "TESTNET "],
        vec!["SET", "quantum:mode", " TESTNET"],
        vec!["SET", "quantum:mode", ""],
    ] {
        run(&mut con, &["DEL", "quantum:mode"]).unwrap();
        run(&mut con, &setup).unwrap();
        let err = assert_refused_without_change(&mut con, &OPTIONS);
        assert!(err.starts_with("MODE"), "{setup:?}: {err}");
    }
    assert_eq!(info_counter(&mut con, "refused"), 7);
    assert_eq!(info_counter(&mut con, "runs"), 0);

    run(&mut con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
    let r = recover(&mut con, STREAM, GROUP, &OPTIONS).unwrap();
    assert_eq!(r.mode.as_deref(), Some("TESTNET"));
    assert!(!r.quarantined.is_empty() && !r.deleted.is_empty());
}

#[test]
fn allowed_modes_and_modekey_change_what_is_allowed_and_where() {
    let server = Server::start();
    let mut con = server.connect();
    busy_group(&mut con, "STAGING");
    let err = assert_refused_without_change(&mut con, &OPTIONS);
    assert!(err.contains("'STAGING'; allowed modes: TESTNET"), "{err}");

    run(
        &mut con,
        &["CONFIG", "SET", "quantum.allowed-modes", "PAPER, STAGING"],
    )
    .unwrap();
    run(&mut con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
    let err = assert_refused_without_change(&mut con, &OPTIONS);
    assert!(err.contains("allowed modes: PAPER,STAGING"), "{err}");

    // Another mode key, named per call or by config.
    run(&mut con, &["SET", "desk:{a}:mode", "PAPER"]).unwrap();
    let mut with_key = OPTIONS.to_vec();
    with_key.extend(["MODEKEY", "desk:{a}:mode"]);
    let r = recover(&mut con, STREAM, GROUP, &with_key).unwrap();
    assert_eq!(r.mode.as_deref(), Some("PAPER"));
    assert!(!r.claimed.is_empty());

    run(
        &mut con,
        &["CONFIG", "SET", "quantum.mode-key", "desk:{b}:mode"],
    )
    .unwrap();
    let err = assert_refused_without_change(&mut con, &OPTIONS);
    assert!(err.contains("mode key 'desk:{b}:mode' is missing"), "{err}");
}

/// Fuzz seed 1795902954408818669: after `CONFIG SET quantum.allowed-modes`
/// to a non-ASCII name, every refusal carried that name as raw bytes and
/// clients could not parse the error line. It is escaped; the name still
/// allows exactly its own bytes.
#[test]
fn non_ascii_allowed_modes_are_escaped_in_the_refusal_and_still_match() {
    let server = Server::start();
    let mut con = server.connect();
    busy_group(&mut con, "LIVE");
    run(
        &mut con,
        &["CONFIG", "SET", "quantum.allowed-modes", "\u{fe}, ÉTUDE"],
    )
    .unwrap();
    let err = assert_refused_without_change(&mut con, &OPTIONS);
    assert!(
        err.ends_with("allowed modes: \\xc3\\xbe,\\xc3\\x89TUDE"),
        "{err}"
    );
    let retire = ["QUANTUM.RETIRE", STREAM, GROUP, "exec-stuck"];
    let err = run(&mut con, &retire).unwrap_err().to_string();
    assert!(err.contains("allowed modes: \\xc3\\xbe,"), "{err}");
    run(&mut con, &["SET", "quantum:mode", "ÉTUDE"]).unwrap();
    let r = recover(&mut con, STREAM, GROUP, &OPTIONS).unwrap();
    assert_eq!(r.mode.as_deref(), Some("ÉTUDE"));
    assert!(!r.claimed.is_empty(), "{r:?}");
}

#[test]
fn dryrun_reports_exactly_what_the_real_call_does_and_works_in_live() {
    let server = Server::start();
    let mut con = server.connect();
    busy_group(&mut con, "LIVE");
    let before = (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP));
    let mut dry_options = OPTIONS.to_vec();
    dry_options.push("DRYRUN");

    let dry: Recovery = recover(&mut con, STREAM, GROUP, &dry_options).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.mode.as_deref(), Some("LIVE"));
    assert_eq!(
        (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP)),
        before,
        "DRYRUN changed state"
    );
    assert!(!dry.claimed.is_empty() && !dry.quarantined.is_empty() && !dry.dropped.is_empty());
    assert!(!dry.deleted.is_empty() && !dry.kept.is_empty());

    run(&mut con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
    let real = recover(&mut con, STREAM, GROUP, &OPTIONS).unwrap();
    assert!(!real.dry_run);
    assert_eq!(dry.effects(), real.effects());
    assert_eq!((dry.scanned, &dry.cursor), (real.scanned, &real.cursor));
    assert_eq!(info_counter(&mut con, "dry_runs"), 1);
}

#[test]
fn dryrun_with_a_missing_mode_key_reports_nil_mode() {
    let server = Server::start();
    let mut con = server.connect();
    busy_group(&mut con, "LIVE");
    run(&mut con, &["DEL", "quantum:mode"]).unwrap();
    let dry = recover(&mut con, STREAM, GROUP, &["DRYRUN"]).unwrap();
    assert_eq!(dry.mode, None);
}

fn acl_user(con: &mut Connection, name: &str, rules: &[&str]) {
    let mut words = vec!["ACL", "SETUSER", name, "reset", "on", ">pw"];
    words.extend_from_slice(rules);
    run(con, &words).unwrap();
}

#[test]
fn acl_denials_are_errors_and_change_nothing() {
    let server = Server::start();
    let mut admin = server.connect();
    busy_group(&mut admin, "TESTNET");
    let cases: [(&str, &[&str], &[&str]); 5] = [
        ("no-xclaim", &["+@all", "-xclaim", "~*"], &[]),
        (
            "no-delconsumer",
            &["+@all", "-xgroup|delconsumer", "~*"],
            &[],
        ),
        ("no-stream", &["+@all", "~quantum:mode"], &[]),
        ("no-mode-read", &["+@all", "~quantum:stream:*"], &[]),
        (
            "no-modekey",
            &["+@all", "~quantum:*"],
            &["MODEKEY", "desk:mode"],
        ),
    ];
    run(&mut admin, &["SET", "desk:mode", "TESTNET"]).unwrap();
    for (user, rules, extra) in cases {
        acl_user(&mut admin, user, rules);
        let mut con = server.connect_as(user, "pw");
        let mut options = OPTIONS.to_vec();
        options.extend_from_slice(extra);
        let before = (
            group_state(&mut admin, STREAM),
            pel(&mut admin, STREAM, GROUP),
        );
        let err = recover(&mut con, STREAM, GROUP, &options).unwrap_err();
        assert!(err.starts_with("NOPERM"), "{user}: {err}");
        assert_eq!(
            (
                group_state(&mut admin, STREAM),
                pel(&mut admin, STREAM, GROUP)
            ),
            before,
            "{user} changed state"
        );
    }
    // The same call by a permitted user goes through.
    acl_user(&mut admin, "ops", &["+@all", "~*"]);
    let mut ops = server.connect_as("ops", "pw");
    assert!(!recover(&mut ops, STREAM, GROUP, &OPTIONS)
        .unwrap()
        .claimed
        .is_empty());
}
