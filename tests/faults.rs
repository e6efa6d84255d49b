//! Faults: the trigger or Redis killed in the middle of a drain, a promoted
//! replica, a server out of memory, a replica that refuses writes.

use quantum_integration::reply::{pel, run};
use quantum_integration::scenario::*;
use quantum_integration::trigger::{run_trigger, trigger_command, url_of};
use quantum_integration::{primary_and_replica, Options, Server};
use redis::Connection;
use std::process::Stdio;
use std::time::{Duration, Instant};

const ENTRIES: usize = 50_000;

/// `ENTRIES` idle entries held by ten dead consumers.
fn backlog(con: &mut Connection) -> Vec<String> {
    group_with_mode(con, "TESTNET");
    let ids = add_entries(con, ENTRIES);
    for i in 0..10 {
        let name = format!("exec-{i}");
        let held = read_as(con, &name, ENTRIES / 10);
        age_entries(con, &name, &held, 120_000);
    }
    ids
}

fn owner_counts(con: &mut Connection) -> (usize, usize) {
    let owners = pel(con, STREAM, GROUP);
    let recovered = owners.iter().filter(|e| e.1 == "recovery").count();
    (owners.len(), recovered)
}

/// Starts a slow drain (5 entries a batch) and waits until it has moved some.
fn start_slow_drain(url: &str, con: &mut Connection) -> std::process::Child {
    let args = [
        "--url",
        url,
        "--min-idle",
        "60s",
        "--count",
        "5",
        "--scan",
        "5",
        "--max-batches",
        "1000000",
        "--deadline",
        "60s",
    ];
    let child = trigger_command(&args, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while owner_counts(con).1 < 500 {
        assert!(Instant::now() < deadline, "the drain did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[test]
fn a_killed_trigger_leaves_whole_batches_and_the_next_run_finishes() {
    let server = Server::start();
    let mut con = server.connect();
    let ids = backlog(&mut con);
    let url = url_of(&server.socket());
    let mut child = start_slow_drain(&url, &mut con);
    child.kill().unwrap();
    child.wait().unwrap();

    let (total, recovered) = owner_counts(&mut con);
    assert_eq!(total, ENTRIES, "no entry lost");
    assert!(
        recovered < ENTRIES,
        "killed before the end ({recovered} moved)"
    );
    assert_eq!(
        recovered % 5,
        0,
        "only whole batches of 5 moved ({recovered})"
    );
    for (id, owner, deliveries) in pel(&mut con, STREAM, GROUP) {
        assert!(
            owner == "recovery" || owner.starts_with("exec-"),
            "{id} owned by {owner}"
        );
        assert_eq!(deliveries, 1, "{id}: a move is not a delivery");
    }

    // The default 100 batches of 100 move 10,000 a run; let this one take the rest.
    let out = run_trigger(
        &["--url", &url, "--min-idle", "60s", "--max-batches", "1000"],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(owner_counts(&mut con), (ENTRIES, ENTRIES));
    assert_eq!(
        pel(&mut con, STREAM, GROUP)
            .into_iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        ids
    );
}

#[test]
fn redis_killed_mid_run_is_exit_75_and_the_aof_restart_finishes_the_job() {
    let options = Options {
        config: vec![
            ("appendonly".into(), "yes".into()),
            ("appendfsync".into(), "always".into()),
        ],
        ..Options::default()
    };
    let mut server = Server::with(options);
    let mut con = server.connect();
    backlog(&mut con);
    let url = url_of(&server.socket());
    let child = start_slow_drain(&url, &mut con);
    let killed_at = Instant::now();
    server.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(10),
        "the trigger noticed within its deadline"
    );

    let server = server.restart();
    let mut con = server.connect();
    let (total, moved_before) = owner_counts(&mut con);
    assert_eq!(total, ENTRIES, "the AOF kept every pending entry");
    let out = run_trigger(
        &[
            "--url",
            &url_of(&server.socket()),
            "--min-idle",
            "60s",
            "--max-batches",
            "1000",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        owner_counts(&mut con),
        (ENTRIES, ENTRIES),
        "{moved_before} were moved before the crash"
    );
}

#[test]
fn a_promoted_replica_holds_the_recovery_and_a_replica_refuses_with_75() {
    let (primary, replica) = primary_and_replica();
    let (mut p, mut r) = (primary.connect(), replica.connect());
    group_with_mode(&mut p, "TESTNET");
    add_entries(&mut p, 3);
    read_as(&mut p, "exec-1", 3);
    sleep_ms(150);
    run(&mut p, &["WAIT", "1", "5000"]).unwrap();

    let out = run_trigger(
        &["--url", &url_of(&replica.socket()), "--min-idle", "100ms"],
        &[],
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(
        out.stderr.contains("READONLY") && out.stderr.contains("replica"),
        "{}",
        out.stderr
    );

    let out = run_trigger(
        &[
            "--url",
            &url_of(&primary.socket()),
            "--min-idle",
            "100ms",
            "--zombie-idle",
            "100ms",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    run(&mut p, &["WAIT", "1", "5000"]).unwrap();
    let expected = pel(&mut p, STREAM, GROUP);
    run(&mut r, &["REPLICAOF", "NO", "ONE"]).unwrap();
    assert_eq!(
        pel(&mut r, STREAM, GROUP),
        expected,
        "the promoted replica has the recovery"
    );
    assert!(expected.iter().all(|e| e.1 == "recovery"));
    let out = run_trigger(
        &[
            "--url",
            &url_of(&replica.socket()),
            "--min-idle",
            "100ms",
            "--json",
        ],
        &[],
    );
    assert_eq!(
        out.code, 0,
        "the promoted replica takes over: {}",
        out.stderr
    );
}

#[test]
fn out_of_memory_is_a_recovery_or_a_clear_error_never_a_crash() {
    let mut server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 100);
    read_as(&mut con, "exec-1", 100);
    sleep_ms(150);
    run(
        &mut con,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    )
    .unwrap();
    run(&mut con, &["CONFIG", "SET", "maxmemory", "1"]).unwrap();
    assert!(
        run(&mut con, &["SET", "x", "y"])
            .unwrap_err()
            .starts_with("OOM"),
        "the server is out of memory"
    );

    let out = run_trigger(
        &[
            "--url",
            &url_of(&server.socket()),
            "--min-idle",
            "100ms",
            "--json",
        ],
        &[],
    );
    assert!(
        out.code == 0 || out.stderr.contains("OOM"),
        "exit {}: {}",
        out.code,
        out.stderr
    );
    assert!(server.is_alive());
    assert_eq!(
        run(&mut con, &["PING"]).unwrap(),
        redis::Value::SimpleString("PONG".into())
    );
    assert_eq!(pel(&mut con, STREAM, GROUP).len(), 100, "nothing lost");
    eprintln!(
        "under maxmemory 1: exit {}, result {}",
        out.code,
        out.json()["result"]
    );
}
