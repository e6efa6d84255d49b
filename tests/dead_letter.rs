//! DEADLETTER: every entry moved to QUARANTINE is copied, in the same atomic
//! call, to the dead-letter stream with why and from whom; the original stays
//! pending (S1); copies reach replicas and the AOF (S4); Cluster and ACL see
//! the key (S7); a copy never pushes Redis past maxmemory.

use quantum_integration::cluster::Cluster;
use quantum_integration::reply::{group_state, info_counter, pel, recover, run, texts};
use quantum_integration::scenario::*;
use quantum_integration::{primary_and_replica, Options, Server};
use redis::{Connection, Value};
use std::time::{Duration, Instant};

const DEAD: &str = "quantum:dead-letter:trade.intent";
/// RECOVER options that quarantine what `poison` left, copying to `DEAD`.
const QUARANTINING: [&str; 6] = ["MINIDLE", "100", "MAXDELIVERIES", "2", "DEADLETTER", DEAD];

/// The five fields of a trade intent; values include bytes a text round trip would break.
fn intent(i: usize) -> Vec<(String, Vec<u8>)> {
    vec![
        ("symbol".into(), format!("BTC-{i}").into_bytes()),
        ("side".into(), b"buy".to_vec()),
        ("qty".into(), format!("{}.5", i + 1).into_bytes()),
        ("blob".into(), vec![0, 0xff, b'\n', b'%', i as u8]),
        ("empty".into(), Vec::new()),
    ]
}

fn xadd(con: &mut Connection, key: &str, fields: &[(String, Vec<u8>)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    for (field, value) in fields {
        cmd.arg(field).arg(value.as_slice());
    }
    cmd.query(con).expect("XADD")
}

/// `n` intents read by `consumer` twice (2 deliveries each) and left idle:
/// poison under MAXDELIVERIES 2. Returns their IDs.
fn poison(con: &mut Connection, consumer: &str, n: usize) -> Vec<String> {
    for i in 0..n {
        xadd(con, STREAM, &intent(i));
    }
    let ids = read_as(con, consumer, n);
    reread_history(con, consumer);
    sleep_ms(150);
    ids
}

/// One copy: its ID in the dead-letter stream and its field/value pairs.
type Copy = (String, Vec<(String, Vec<u8>)>);

fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::BulkString(b) => b.clone(),
        other => panic!("expected bytes, got {other:?}"),
    }
}

fn entries(con: &mut Connection, key: &str) -> Vec<Copy> {
    let Value::Array(rows) = run(con, &["XRANGE", key, "-", "+"]).unwrap() else {
        panic!("XRANGE")
    };
    rows.iter()
        .map(|row| match row {
            Value::Array(parts) => {
                let Value::Array(fields) = &parts[1] else {
                    panic!("fields {parts:?}")
                };
                let pairs = fields
                    .chunks(2)
                    .map(|kv| (String::from_utf8(bytes(&kv[0])).unwrap(), bytes(&kv[1])))
                    .collect();
                (String::from_utf8(bytes(&parts[0])).unwrap(), pairs)
            }
            other => panic!("entry {other:?}"),
        })
        .collect()
}

/// What a copy of `id` must hold: the header, then the entry's own fields.
fn expected_copy(
    id: &str,
    owner: &str,
    deliveries: i64,
    own: &[(String, Vec<u8>)],
) -> Vec<(String, Vec<u8>)> {
    let header = [
        ("quantum-stream", STREAM.as_bytes().to_vec()),
        ("quantum-group", GROUP.as_bytes().to_vec()),
        ("quantum-id", id.as_bytes().to_vec()),
        ("quantum-consumer", owner.as_bytes().to_vec()),
        ("quantum-deliveries", deliveries.to_string().into_bytes()),
        ("quantum-reason", b"max-deliveries".to_vec()),
    ];
    header
        .into_iter()
        .map(|(f, v)| (f.to_string(), v))
        .chain(own.iter().cloned())
        .collect()
}

fn field<'a>(copy: &'a Copy, name: &str) -> &'a [u8] {
    &copy.1.iter().find(|(f, _)| f == name).unwrap().1
}

fn exists(con: &mut Connection, key: &str) -> bool {
    run(con, &["EXISTS", key]).unwrap() == Value::Int(1)
}

#[test]
fn copies_carry_every_field_and_the_payload_while_the_original_stays_in_quarantine() {
    let (_server, mut con) = testnet_group();
    let ids = poison(&mut con, "exec-41", 3);
    let healthy = idle_reads(&mut con, "exec-42", 1);
    let stream_before = entries(&mut con, STREAM);
    let r = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(r.quarantined, ids);
    assert_eq!(r.dead_lettered, Some(ids.clone()));
    assert_eq!(r.dead_letter_deferred, Some(vec![]));
    assert_eq!(r.claimed, healthy, "a healthy entry is not copied");
    assert_eq!(&r.keys[12..], ["dead-lettered", "dead-letter-deferred"]);

    let copies = entries(&mut con, DEAD);
    assert_eq!(copies.len(), 3);
    for (i, (copy, id)) in copies.iter().zip(&ids).enumerate() {
        assert_eq!(copy.1, expected_copy(id, "exec-41", 2, &intent(i)), "{id}");
    }
    // S1: the originals are still in the stream and pending under QUARANTINE, counts unchanged.
    assert_eq!(entries(&mut con, STREAM), stream_before);
    let pending = pel(&mut con, STREAM, GROUP);
    for id in &ids {
        assert!(
            pending.contains(&(id.clone(), "quarantine".into(), 2)),
            "{pending:?}"
        );
    }
    assert_eq!(info_counter(&mut con, "dead_lettered"), 3);
    assert_eq!(info_counter(&mut con, "dead_letter_deferred"), 0);
    // S1: the copies are XADDs; nothing acks, deletes or trims the stream.
    let stats =
        quantum_integration::reply::text(&run(&mut con, &["INFO", "commandstats"]).unwrap());
    for command in ["xack", "xdel", "xtrim", "xautoclaim"] {
        assert!(
            !stats.contains(&format!("cmdstat_{command}:")),
            "{command} ran: {stats}"
        );
    }
    // A second run finds nothing new to copy: QUARANTINE is never re-claimed from.
    let again = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert!(again.quarantined.is_empty());
    assert_eq!(entries(&mut con, DEAD).len(), 3);
}

#[test]
fn an_owner_blind_claim_back_leads_to_a_second_copy_with_the_higher_count() {
    let (_server, mut con) = testnet_group();
    let ids = poison(&mut con, "exec-41", 1);
    recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    // The old script's loop: XAUTOCLAIM takes whatever is idle, whoever holds
    // it, and counts a delivery.
    let claimed = run(
        &mut con,
        &[
            "XAUTOCLAIM",
            STREAM,
            GROUP,
            "exec-43",
            "0",
            "0-0",
            "COUNT",
            "10",
        ],
    )
    .unwrap();
    let Value::Array(parts) = claimed else {
        panic!("{claimed:?}")
    };
    assert_eq!(
        parts[1].clone(),
        run(&mut con, &["XRANGE", STREAM, &ids[0], &ids[0]]).unwrap()
    );
    assert_eq!(
        pel(&mut con, STREAM, GROUP),
        [(ids[0].clone(), "exec-43".into(), 3)]
    );
    sleep_ms(150);

    let r = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(r.quarantined, ids);
    let copies = entries(&mut con, DEAD);
    assert_eq!(copies.len(), 2, "the copies tell the story");
    assert_eq!(
        copies[0].1,
        expected_copy(&ids[0], "exec-41", 2, &intent(0))
    );
    assert_eq!(
        copies[1].1,
        expected_copy(&ids[0], "exec-43", 3, &intent(0))
    );
    assert_eq!(
        pel(&mut con, STREAM, GROUP),
        [(ids[0].clone(), "quarantine".into(), 3)]
    );
}

#[test]
fn dryrun_copies_nothing_and_says_what_it_would_copy() {
    let (_server, mut con) = testnet_group();
    let ids = poison(&mut con, "exec-41", 2);
    let before = group_state(&mut con, STREAM);
    let mut dry_options = QUARANTINING.to_vec();
    dry_options.push("DRYRUN");
    let dry = recover(&mut con, STREAM, GROUP, &dry_options).unwrap();
    assert!(
        !exists(&mut con, DEAD),
        "DRYRUN created the dead-letter stream"
    );
    assert_eq!(group_state(&mut con, STREAM), before);
    assert_eq!(info_counter(&mut con, "dead_lettered"), 0);

    let real = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(dry.effects(), real.effects());
    assert_eq!(
        dry.dead_lettered,
        Some(ids.clone()),
        "DRYRUN says what it would copy"
    );
    let after = recover(&mut con, STREAM, GROUP, &dry_options).unwrap();
    assert_eq!(after.dead_lettered, Some(vec![]), "nothing left to copy");
    let copied: Vec<String> = entries(&mut con, DEAD)
        .iter()
        .map(|c| String::from_utf8(field(c, "quantum-id").to_vec()).unwrap())
        .collect();
    assert_eq!(copied, ids);
}

#[test]
fn entries_gone_from_the_stream_are_dropped_not_copied() {
    let (_server, mut con) = testnet_group();
    let ids = poison(&mut con, "exec-41", 3);
    run(&mut con, &["XDEL", STREAM, &ids[1]]).unwrap();
    let mut dry_options = QUARANTINING.to_vec();
    dry_options.push("DRYRUN");
    let dry = recover(&mut con, STREAM, GROUP, &dry_options).unwrap();
    let r = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(dry.effects(), r.effects());
    assert_eq!(r.dropped, [ids[1].clone()]);
    assert_eq!(r.quarantined, [ids[0].clone(), ids[2].clone()]);
    let copied: Vec<Vec<u8>> = entries(&mut con, DEAD)
        .iter()
        .map(|c| field(c, "quantum-id").to_vec())
        .collect();
    assert_eq!(copied, [ids[0].as_bytes(), ids[2].as_bytes()]);
}

#[test]
fn the_configured_dead_letter_stream_applies_without_the_option_and_maxlen_holds() {
    let server = Server::with(Options {
        // Small stream nodes, so approximate trimming can trim this few entries.
        config: vec![("stream-node-max-entries".into(), "10".into())],
        ..Options::default()
    });
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    run(&mut con, &["CONFIG", "SET", "quantum.dead-letter", DEAD]).unwrap();
    run(
        &mut con,
        &["CONFIG", "SET", "quantum.dead-letter-maxlen", "20"],
    )
    .unwrap();
    let mut last = Vec::new();
    for round in 0..6 {
        last = poison(&mut con, &format!("exec-{round}"), 25);
        let r = recover(
            &mut con,
            STREAM,
            GROUP,
            &["MINIDLE", "100", "MAXDELIVERIES", "2"],
        )
        .unwrap();
        assert_eq!(r.quarantined, last);
        let len = quantum_integration::reply::int(&run(&mut con, &["XLEN", DEAD]).unwrap());
        // Approximate MAXLEN: whole nodes of 10 go, so at most 20 + 10 stay.
        assert!((20..=30).contains(&len), "round {round}: {len} copies");
    }
    assert_eq!(info_counter(&mut con, "dead_lettered"), 150);
    let copies = entries(&mut con, DEAD);
    assert_eq!(
        field(copies.last().unwrap(), "quantum-id"),
        last[24].as_bytes(),
        "the newest copies stay"
    );
    // Empty turns it off: no copy, no dead-letter keys in the reply.
    run(&mut con, &["CONFIG", "SET", "quantum.dead-letter", ""]).unwrap();
    poison(&mut con, "exec-9", 1);
    let r = recover(
        &mut con,
        STREAM,
        GROUP,
        &["MINIDLE", "100", "MAXDELIVERIES", "2"],
    )
    .unwrap();
    assert_eq!(r.quarantined.len(), 1);
    assert_eq!(r.keys.last().unwrap(), "kept-total");
    assert_eq!(info_counter(&mut con, "dead_lettered"), 150);
}

#[test]
fn over_maxmemory_poison_entries_wait_with_their_owner_until_the_copy_fits() {
    let (_server, mut con) = testnet_group();
    let ids = poison(&mut con, "exec-41", 2);
    let healthy = idle_reads(&mut con, "exec-42", 1);
    run(&mut con, &["CONFIG", "SET", "maxmemory", "1"]).unwrap();
    let before = pel(&mut con, STREAM, GROUP);
    let r = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    run(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    assert!(r.quarantined.is_empty(), "{r:?}");
    assert_eq!(r.claimed, healthy, "claims add nothing: they go on");
    assert_eq!(
        r.dead_letter_deferred,
        Some(ids.clone()),
        "the reply says so"
    );
    assert_eq!(r.dead_lettered, Some(vec![]));
    assert!(!exists(&mut con, DEAD));
    for id in &ids {
        assert!(before.contains(&(id.clone(), "exec-41".into(), 2)));
        assert!(
            pel(&mut con, STREAM, GROUP).contains(&(id.clone(), "exec-41".into(), 2)),
            "{id} moved"
        );
    }
    assert_eq!(info_counter(&mut con, "dead_letter_deferred"), 2);

    // The next call, with room again, copies and moves them.
    let next = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(next.quarantined, ids);
    assert_eq!(next.dead_lettered, Some(ids.clone()));
    assert_eq!(entries(&mut con, DEAD).len(), 2);
}

#[test]
fn bad_dead_letter_input_is_refused_and_changes_nothing() {
    let (_server, mut con) = testnet_group();
    poison(&mut con, "exec-41", 2);
    run(&mut con, &["SET", "a-string", "x"]).unwrap();
    let before = (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP));
    for (dead, expected) in [
        ("", "ERR DEADLETTER must not be empty"),
        (STREAM, "is the stream itself"),
        ("quantum:mode", "is the mode key"),
        ("a-string", "WRONGTYPE the dead-letter key 'a-string'"),
    ] {
        let options = ["MINIDLE", "100", "MAXDELIVERIES", "2", "DEADLETTER", dead];
        let err = recover(&mut con, STREAM, GROUP, &options).unwrap_err();
        assert!(err.contains(expected), "{dead}: {err}");
        let mut dry = options.to_vec();
        dry.push("DRYRUN");
        let err = recover(&mut con, STREAM, GROUP, &dry).unwrap_err();
        assert!(err.contains(expected), "{dead} DRYRUN: {err}");
    }
    for (name, value) in [
        ("quantum.dead-letter-maxlen", "0"),
        ("quantum.dead-letter-maxlen", "1000000001"),
        ("quantum.dead-letter-maxlen", "x"),
        ("quantum.dead-letter", "a\0b"),
    ] {
        let err = run(&mut con, &["CONFIG", "SET", name, value]).unwrap_err();
        assert!(
            err.contains(name) || err.contains("argument"),
            "{name} {value}: {err}"
        );
    }
    let maxlen = run(&mut con, &["CONFIG", "GET", "quantum.dead-letter-maxlen"]).unwrap();
    assert_eq!(texts(&maxlen)[1], "100000");
    run(&mut con, &["CONFIG", "SET", "quantum.dead-letter", STREAM]).unwrap();
    let err = recover(
        &mut con,
        STREAM,
        GROUP,
        &["MINIDLE", "100", "MAXDELIVERIES", "2"],
    )
    .unwrap_err();
    assert!(
        err.contains("quantum.dead-letter 'quantum:stream:trade.intent' is the stream itself"),
        "{err}"
    );
    assert_eq!(
        (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP)),
        before
    );
    assert_eq!(
        run(&mut con, &["GET", "a-string"]).unwrap(),
        Value::BulkString(b"x".to_vec())
    );
}

fn acl_user(con: &mut Connection, name: &str, rules: &[&str]) {
    let mut words = vec!["ACL", "SETUSER", name, "reset", "on", ">pw"];
    words.extend_from_slice(rules);
    run(con, &words).unwrap();
}

#[test]
fn users_who_may_not_copy_are_refused_before_any_change() {
    let server = Server::start();
    let mut admin = server.connect();
    group_with_mode(&mut admin, "TESTNET");
    poison(&mut admin, "exec-41", 2);
    let cases: [(&str, &[&str], bool); 5] = [
        ("no-xadd", &["+@all", "-xadd", "~*"], false),
        ("no-xrange", &["+@all", "-xrange", "~*"], false),
        (
            "no-dead-letter-key",
            &["+@all", "~quantum:stream:*", "~quantum:mode"],
            false,
        ),
        (
            "read-only-dead-letter",
            &[
                "+@all",
                "~quantum:stream:*",
                "~quantum:mode",
                "%R~quantum:dead-letter:*",
            ],
            false,
        ),
        // The configured key is checked as if the call named it.
        (
            "no-configured-key",
            &["+@all", "~quantum:stream:*", "~quantum:mode"],
            true,
        ),
    ];
    for (user, rules, configured) in cases {
        acl_user(&mut admin, user, rules);
        let mut con = server.connect_as(user, "pw");
        let options: &[&str] = if configured {
            run(&mut admin, &["CONFIG", "SET", "quantum.dead-letter", DEAD]).unwrap();
            &["MINIDLE", "100", "MAXDELIVERIES", "2"]
        } else {
            &QUARANTINING
        };
        let before = (
            group_state(&mut admin, STREAM),
            pel(&mut admin, STREAM, GROUP),
        );
        let err = recover(&mut con, STREAM, GROUP, options).unwrap_err();
        assert!(err.starts_with("NOPERM"), "{user}: {err}");
        assert_eq!(
            (
                group_state(&mut admin, STREAM),
                pel(&mut admin, STREAM, GROUP)
            ),
            before,
            "{user} changed state"
        );
        assert!(!exists(&mut admin, DEAD), "{user}: a copy was made");
    }
    // Write-only access to the dead-letter stream is enough: copies are never read back.
    acl_user(
        &mut admin,
        "ops",
        &[
            "+@all",
            "~quantum:stream:*",
            "~quantum:mode",
            "%W~quantum:dead-letter:*",
        ],
    );
    let mut ops = server.connect_as("ops", "pw");
    let r = recover(&mut ops, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(r.quarantined.len(), 2);
    assert_eq!(entries(&mut admin, DEAD).len(), 2);
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Quarantines with copies, twice (the second after an owner-blind claim back).
fn copy_twice(con: &mut Connection) {
    group_with_mode(con, "TESTNET");
    poison(con, "exec-41", 3);
    recover(con, STREAM, GROUP, &QUARANTINING).unwrap();
    run(con, &["XAUTOCLAIM", STREAM, GROUP, "exec-43", "0", "0-0"]).unwrap();
    sleep_ms(150);
    let r = recover(con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(r.quarantined.len(), 3);
    assert_eq!(entries(con, DEAD).len(), 6);
}

#[test]
fn a_replica_and_an_aof_restart_hold_the_same_dead_letter_stream() {
    let (primary, replica) = primary_and_replica();
    let (mut p, mut r) = (primary.connect(), replica.connect());
    copy_twice(&mut p);
    let expected = (entries(&mut p, DEAD), pel(&mut p, STREAM, GROUP));
    run(&mut p, &["WAIT", "1", "5000"]).unwrap();
    wait_for(|| (entries(&mut r, DEAD), pel(&mut r, STREAM, GROUP)) == expected);

    let server = Server::with(Options {
        config: vec![
            ("appendonly".into(), "yes".into()),
            ("appendfsync".into(), "always".into()),
        ],
        ..Options::default()
    });
    let mut con = server.connect();
    copy_twice(&mut con);
    let expected = (entries(&mut con, DEAD), pel(&mut con, STREAM, GROUP));
    drop(con);
    let server = server.restart();
    let mut con = server.connect();
    assert_eq!(
        (entries(&mut con, DEAD), pel(&mut con, STREAM, GROUP)),
        expected
    );
}

#[test]
fn a_cluster_refuses_a_dead_letter_stream_in_another_slot_and_changes_nothing() {
    let cluster = Cluster::start();
    let (stream, mode, dead) = ("{alpha}:stream", "{alpha}:mode", "{alpha}:dead-letter");
    let mut con = cluster.owner_of(stream).connect();
    run(&mut con, &["SET", mode, "TESTNET"]).unwrap();
    run(
        &mut con,
        &["XGROUP", "CREATE", stream, GROUP, "$", "MKSTREAM"],
    )
    .unwrap();
    for i in 0..2 {
        xadd(&mut con, stream, &intent(i));
    }
    let read = ["XREADGROUP", "GROUP", GROUP, "exec-1", "STREAMS", stream];
    run(&mut con, &[&read[..], &[">"]].concat()).unwrap();
    run(&mut con, &[&read[..], &["0"]].concat()).unwrap();
    sleep_ms(150);
    let before = pel(&mut con, stream, GROUP);
    let call = |dead: &str| {
        vec![
            "QUANTUM.RECOVER",
            stream,
            GROUP,
            "MODEKEY",
            mode,
            "MINIDLE",
            "100",
            "MAXDELIVERIES",
            "2",
            "DEADLETTER",
            dead,
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    fn words(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let err = run(&mut con, &words(&call("{beta}:dead-letter"))).unwrap_err();
    assert!(err.starts_with("CROSSSLOT"), "{err}");
    // A configured dead-letter stream is not in argv: a cluster needs DEADLETTER.
    run(&mut con, &["CONFIG", "SET", "quantum.dead-letter", dead]).unwrap();
    let configured = [
        "QUANTUM.RECOVER",
        stream,
        GROUP,
        "MODEKEY",
        mode,
        "MINIDLE",
        "100",
        "MAXDELIVERIES",
        "2",
    ];
    let err = run(&mut con, &configured).unwrap_err();
    assert!(err.contains("in a Redis Cluster pass DEADLETTER"), "{err}");
    run(&mut con, &["CONFIG", "SET", "quantum.dead-letter", ""]).unwrap();
    assert_eq!(pel(&mut con, stream, GROUP), before);
    for node in &cluster.nodes {
        let mut c = node.connect();
        assert_eq!(
            run(&mut c, &["DBSIZE"]).unwrap(),
            Value::Int(if node.port == cluster.owner_of(stream).port {
                2
            } else {
                0
            })
        );
    }
    // In the stream's slot it works.
    let reply = run(&mut con, &words(&call(dead))).unwrap();
    let r = quantum_integration::Recovery::from_value(&reply);
    assert_eq!(r.dead_lettered.map(|ids| ids.len()), Some(2));
    assert_eq!(entries(&mut con, dead).len(), 2);
}

#[test]
fn entries_far_apart_in_the_stream_are_each_copied_once() {
    let (_server, mut con) = testnet_group();
    // Poison entries 150 stream entries apart (more than one node, more than
    // the reader's forward walk), one of them deleted.
    let mut poisoned = Vec::new();
    for round in 0..4 {
        add_entries(&mut con, 150);
        let done = read_as(&mut con, "exec-live", 150);
        let mut ack = vec!["XACK", STREAM, GROUP];
        ack.extend(done.iter().map(String::as_str));
        run(&mut con, &ack).unwrap();
        let fields = intent(round);
        poisoned.push(xadd(&mut con, STREAM, &fields));
        read_as(&mut con, "exec-41", 1);
    }
    run(&mut con, &["XDEL", STREAM, &poisoned[2]]).unwrap();
    reread_history(&mut con, "exec-41");
    sleep_ms(150);
    let r = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(r.dropped, [poisoned[2].clone()]);
    let copied: Vec<Copy> = entries(&mut con, DEAD);
    let expected: Vec<Vec<(String, Vec<u8>)>> = [0, 1, 3]
        .iter()
        .map(|&i| expected_copy(&poisoned[i], "exec-41", 2, &intent(i)))
        .collect();
    assert_eq!(
        copied.into_iter().map(|c| c.1).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn the_trigger_passes_dead_letter_through_and_reports_the_copies() {
    use quantum_integration::trigger::{run_trigger, url_of};
    let (server, mut con) = testnet_group();
    let ids = poison(&mut con, "exec-1", 3);
    let url = url_of(&server.socket());
    let dir = quantum_integration::TempDir::new("dead-letter-log");
    let log = dir.path().join("recover.log");
    let args = [
        "--url",
        &url,
        "--min-idle",
        "100ms",
        "--max-deliveries",
        "2",
        "--json",
        "--log-file",
        log.to_str().unwrap(),
    ];
    let out = run_trigger(&[&args[..], &["--dead-letter", DEAD]].concat(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let listed = |name: &str| -> Vec<String> {
        json[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} in {json}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed("quarantined"), ids);
    assert_eq!(listed("dead_lettered"), ids);
    assert!(listed("dead_letter_deferred").is_empty());
    let copied: Vec<String> = entries(&mut con, DEAD)
        .into_iter()
        .map(|(_, fields)| {
            let id = fields.iter().find(|(k, _)| k == "quantum-id").unwrap();
            String::from_utf8(id.1.clone()).unwrap()
        })
        .collect();
    assert_eq!(copied, ids, "one copy per quarantined entry");
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(
        line.contains("claimed=0 quarantined=3 dead_lettered=3 dead_letter_deferred=0 dropped=0"),
        "{line}"
    );

    // Without a dead-letter stream the JSON and the line say nothing of one.
    poison(&mut con, "exec-2", 1);
    let out = run_trigger(&args, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.json().get("dead_lettered").is_none(), "{}", out.json());
    let last = std::fs::read_to_string(&log).unwrap();
    let last = last.lines().last().unwrap();
    assert!(
        last.contains("quarantined=1 dropped=0") && !last.contains("dead_lettered"),
        "{last}"
    );
    assert_eq!(
        entries(&mut con, DEAD).len(),
        3,
        "no copy without the option"
    );

    // It is run's option: refused on status's command line, ignored from the environment.
    let out = run_trigger(&["status", "--url", &url, "--dead-letter", DEAD], &[]);
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert!(out.stderr.contains("--dead-letter"), "{}", out.stderr);
    let out = run_trigger(&["status", "--url", &url], &[("QUANTUM_DEAD_LETTER", DEAD)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// The INFO quantum counters a RECOVER call moves.
fn counters(con: &mut Connection) -> Vec<i64> {
    [
        "claimed",
        "quarantined",
        "dropped",
        "dead_lettered",
        "dead_letter_deferred",
    ]
    .map(|name| info_counter(con, name))
    .to_vec()
}

/// Everything a refused call must leave as it was: the group, its PEL (owners,
/// delivery counts), the dead-letter stream (entries, last ID) and the counters.
#[derive(Debug, PartialEq)]
struct CallState(String, Vec<(String, String, i64)>, String, Vec<i64>);

fn call_state(con: &mut Connection) -> CallState {
    CallState(
        group_state(con, STREAM),
        pel(con, STREAM, GROUP),
        group_state(con, DEAD),
        counters(con),
    )
}

const MAX_ID_PART: &str = "18446744073709551615";

/// A dead-letter stream whose IDs run out cannot take the copies: XADD would
/// fail after the claims, leaving quarantined entries without copies. The call
/// is refused before its first change, naming the key, DRYRUN too.
#[test]
fn a_dead_letter_stream_out_of_ids_is_refused_before_any_change() {
    let (_server, mut con) = testnet_group();
    let ids = poison(&mut con, "exec-41", 2);
    let one_left = format!("{MAX_ID_PART}-18446744073709551614");
    let none_left = format!("{MAX_ID_PART}-{MAX_ID_PART}");
    // Room for one copy of two; none; none after the planted entry was deleted
    // (the stream remembers its last ID).
    for (planted, deleted) in [(&one_left, false), (&none_left, false), (&none_left, true)] {
        run(&mut con, &["DEL", DEAD]).unwrap();
        run(&mut con, &["XADD", DEAD, planted, "f", "v"]).unwrap();
        if deleted {
            run(&mut con, &["XDEL", DEAD, planted]).unwrap();
        }
        let before = call_state(&mut con);
        for dry_run in [false, true] {
            let mut options = QUARANTINING.to_vec();
            if dry_run {
                options.push("DRYRUN");
            }
            let err = recover(&mut con, STREAM, GROUP, &options).unwrap_err();
            assert!(
                err.starts_with("ERR dead-letter stream")
                    && err.contains(&format!("'{DEAD}'"))
                    && err.contains(planted.as_str()),
                "{planted} deleted={deleted} dry_run={dry_run}: {err}"
            );
            assert_eq!(call_state(&mut con), before, "{planted} deleted={deleted}");
        }
    }
    // Exactly enough IDs left: both are copied, the last with the last ID.
    run(&mut con, &["DEL", DEAD]).unwrap();
    let two_left = format!("{MAX_ID_PART}-18446744073709551613");
    run(&mut con, &["XADD", DEAD, &two_left, "f", "v"]).unwrap();
    let r = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(r.quarantined, ids);
    assert_eq!(r.dead_lettered, Some(ids.clone()));
    let copies = entries(&mut con, DEAD);
    assert_eq!(copies.len(), 3);
    assert_eq!(copies[2].0, none_left);
    assert_eq!(info_counter(&mut con, "dead_lettered"), 2);
}

/// A refusal the server makes at run time (here: the dead-letter stream is out
/// of IDs) is no usage error: the trigger exits 76 and names the key.
#[test]
fn the_trigger_exits_76_when_the_dead_letter_stream_refuses_the_copies() {
    use quantum_integration::trigger::{run_trigger, url_of};
    let (server, mut con) = testnet_group();
    poison(&mut con, "exec-1", 1);
    run(
        &mut con,
        &[
            "XADD",
            DEAD,
            &format!("{MAX_ID_PART}-{MAX_ID_PART}"),
            "f",
            "v",
        ],
    )
    .unwrap();
    let before = call_state(&mut con);
    let url = url_of(&server.socket());
    let out = run_trigger(
        &[
            "--url",
            &url,
            "--min-idle",
            "100ms",
            "--max-deliveries",
            "2",
            "--dead-letter",
            DEAD,
        ],
        &[],
    );
    assert_eq!(out.code, 76, "{}", out.stderr);
    assert!(out.stderr.contains(DEAD), "{}", out.stderr);
    assert_eq!(call_state(&mut con), before);
}

/// An empty `QUANTUM_DEAD_LETTER=` in the environment (an env file leaving
/// the setting to its default) is as if unset: `quantum.dead-letter` applies,
/// instead of the module refusing an empty key on every run (review r15 F2).
#[test]
fn an_empty_dead_letter_in_the_environment_leaves_the_module_config_in_charge() {
    use quantum_integration::trigger::{run_trigger, url_of};
    let (server, mut con) = testnet_group();
    let ids = poison(&mut con, "exec-1", 1);
    run(&mut con, &["CONFIG", "SET", "quantum.dead-letter", DEAD]).unwrap();
    let url = url_of(&server.socket());
    let args = [
        "--url",
        &url,
        "--min-idle",
        "100ms",
        "--max-deliveries",
        "2",
    ];
    let out = run_trigger(&args, &[("QUANTUM_DEAD_LETTER", "")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(copied_ids(&mut con, DEAD), ids);
}

/// The `quantum-id` of each copy in `key`, in order.
fn copied_ids(con: &mut Connection, key: &str) -> Vec<String> {
    entries(con, key)
        .iter()
        .map(|copy| String::from_utf8(field(copy, "quantum-id").to_vec()).unwrap())
        .collect()
}

/// `--config`: `dead-letter` is a call option like the others, per
/// `[[target]]` over the top level's; each target's copies go to its own key.
/// A bad value is a usage error naming file, line and key before any command.
#[test]
fn each_config_file_target_copies_to_its_own_dead_letter_stream() {
    use quantum_integration::trigger::{run_trigger, url_of};
    const FILLS: &str = "quantum:stream:fills";
    const FILLS_GROUP: &str = "quantum:group:fills";
    let (server, mut con) = testnet_group();
    let intents = poison(&mut con, "exec-1", 2);
    run(
        &mut con,
        &["XGROUP", "CREATE", FILLS, FILLS_GROUP, "$", "MKSTREAM"],
    )
    .unwrap();
    let fill = xadd(&mut con, FILLS, &intent(7));
    for from in [">", "0"] {
        let words = [
            "XREADGROUP",
            "GROUP",
            FILLS_GROUP,
            "exec-2",
            "STREAMS",
            FILLS,
            from,
        ];
        run(&mut con, &words).unwrap();
    }
    sleep_ms(150);
    let dir = quantum_integration::TempDir::new("dead-letter-config");
    let config = dir.path().join("stream-recover.toml");
    let url = url_of(&server.socket());
    let run_with = |text: &str| {
        std::fs::write(&config, text).unwrap();
        run_trigger(&["--url", &url, "--config", config.to_str().unwrap()], &[])
    };

    let bad =
        format!("max-deliveries = 2\n\n[[target]]\nstream = \"{FILLS}\"\ndead-letter = \"\"\n");
    let before = (group_state(&mut con, STREAM), group_state(&mut con, FILLS));
    let out = run_with(&bad);
    assert_eq!(out.code, 64, "{}", out.stderr);
    let place = format!("{}:5: dead-letter", config.display());
    assert!(out.stderr.contains(&place), "{}", out.stderr);
    assert_eq!(
        (group_state(&mut con, STREAM), group_state(&mut con, FILLS)),
        before
    );

    let out = run_with(&format!(
        "min-idle = \"100ms\"\nmax-deliveries = 2\ndead-letter = \"dl:fallback\"\n\n\
         [[target]]\nstream = \"{STREAM}\"\ngroup = \"{GROUP}\"\ndead-letter = \"dl:intents\"\n\n\
         [[target]]\nstream = \"{FILLS}\"\ngroup = \"{FILLS_GROUP}\"\n"
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(copied_ids(&mut con, "dl:intents"), intents);
    assert_eq!(copied_ids(&mut con, "dl:fallback"), [fill]);
}

/// INFO memory's `used_memory`.
fn used_memory(con: &mut Connection) -> u64 {
    let info = bytes(&run(con, &["INFO", "memory"]).unwrap());
    String::from_utf8(info)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:")?.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

/// Review r15 F1: big entries. jemalloc rounds a large allocation up to its
/// size class (a 131,000-byte listpack takes 160 KiB), so copies the estimate
/// said fit pushed Redis 212 KB past maxmemory on Redis 7.0 and 8.2.
#[test]
fn big_copies_stay_under_maxmemory_whatever_the_allocator_rounds() {
    const BLOB: usize = 131_000;
    let (_server, mut con) = testnet_group();
    run(&mut con, &["CONFIG", "SET", "latency-tracking", "no"]).unwrap();
    for i in 0..8 {
        let fields = [
            ("blob".to_string(), vec![b'v'; BLOB]),
            ("n".to_string(), i.to_string().into_bytes()),
        ];
        xadd(&mut con, STREAM, &fields);
    }
    read_as(&mut con, "exec-42", 8);
    reread_history(&mut con, "exec-42");
    sleep_ms(150);
    // A first call makes the server's own first-use allocations.
    let mut dry = QUARANTINING.to_vec();
    dry.push("DRYRUN");
    recover(&mut con, STREAM, GROUP, &dry).unwrap();
    let max = used_memory(&mut con) + 1_100_000;
    run(&mut con, &["CONFIG", "SET", "maxmemory", &max.to_string()]).unwrap();
    let r = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    let used = used_memory(&mut con);
    run(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    assert!(used <= max, "{} bytes past maxmemory: {r:?}", used - max);
    let copied = r.dead_lettered.as_ref().map_or(0, Vec::len);
    let deferred = r.dead_letter_deferred.as_ref().map_or(0, Vec::len);
    assert_eq!(copied + deferred, 8, "{r:?}");
    assert!(
        copied > 0 && deferred > 0,
        "{copied} copied, {deferred} deferred"
    );
}

/// Near `maxmemory` the call keeps back one stream node (8 KiB) plus each
/// copy's estimate (one and a half times its stored size), and no more: with
/// room for one and a half large copies the oldest is copied and the others
/// wait with their owner; with room for both, they follow. No copy ever lands
/// past the limit.
#[test]
fn near_maxmemory_copies_fill_the_room_left_after_the_node_reserve() {
    const NODE_RESERVE: u64 = 8 * 1024;
    const BLOB: usize = 20_000;
    let (_server, mut con) = testnet_group();
    // Redis keeps a ~24 KB latency histogram per command, made when the
    // command first runs: that growth is the server's, not a copy's.
    run(&mut con, &["CONFIG", "SET", "latency-tracking", "no"]).unwrap();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let fields = [
                ("blob".to_string(), vec![b'x'; BLOB]),
                ("n".to_string(), i.to_string().into_bytes()),
            ];
            xadd(&mut con, STREAM, &fields)
        })
        .collect();
    read_as(&mut con, "exec-41", 3);
    reread_history(&mut con, "exec-41");
    sleep_ms(150);
    let limit = |con: &mut Connection, room: u64| {
        let max = used_memory(con) + room;
        run(con, &["CONFIG", "SET", "maxmemory", &max.to_string()]).unwrap();
        max
    };

    let max = limit(&mut con, NODE_RESERVE + 45_000);
    let r = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(r.dead_lettered, Some(ids[..1].to_vec()), "{r:?}");
    assert_eq!(r.dead_letter_deferred, Some(ids[1..].to_vec()));
    assert_eq!(r.quarantined, ids[..1]);
    assert!(used_memory(&mut con) < max, "the copy passed maxmemory");
    assert_eq!(
        pel(&mut con, STREAM, GROUP)
            .iter()
            .filter(|(_, owner, _)| owner == "exec-41")
            .count(),
        2,
        "the deferred stay with their owner"
    );

    let max = limit(&mut con, NODE_RESERVE + 75_000);
    let r = recover(&mut con, STREAM, GROUP, &QUARANTINING).unwrap();
    assert_eq!(r.dead_lettered, Some(ids[1..].to_vec()), "{r:?}");
    assert_eq!(r.dead_letter_deferred, Some(vec![]));
    assert!(used_memory(&mut con) < max, "the copies passed maxmemory");
    run(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    assert_eq!(copied_ids(&mut con, DEAD), ids);
    assert_eq!(info_counter(&mut con, "dead_letter_deferred"), 2);
}
