//! QUANTUM.RETIRE in bounded steps (issue 13): at most COUNT entries per call,
//! lowest IDs first; the consumer keeps its name and the rest of its entries
//! between calls and is deleted only by the call that leaves it empty. The
//! trigger's `retire` repeats the call until `remaining` is 0 or its deadline.

use quantum_integration::reply::{
    consumer_names, consumers, group_state, info_counter, int, pairs, pel, run, text, texts,
};
use quantum_integration::scenario::*;
use quantum_integration::trigger::{run_trigger, url_of};
use quantum_integration::{primary_and_replica, Options, Server, TempDir};
use redis::{Connection, Value};
use std::time::{Duration, Instant};

/// QUANTUM.RETIRE's reply: moved, dropped, remaining, remaining-exact, deleted (keys checked in order).
fn retire(con: &mut Connection, consumer: &str, options: &[&str]) -> Result<Retired, String> {
    let mut words = vec!["QUANTUM.RETIRE", STREAM, GROUP, consumer];
    words.extend_from_slice(options);
    run(con, &words).map(|v| Retired::from(&v))
}

#[derive(Debug, PartialEq, Eq)]
struct Retired {
    moved: Vec<String>,
    dropped: Vec<String>,
    remaining: i64,
    /// false: `remaining` is a lower bound (COUNT + 1, "more than COUNT").
    exact: bool,
    deleted: bool,
}

impl Retired {
    fn from(value: &Value) -> Retired {
        let fields = pairs(value);
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "moved",
                "dropped",
                "remaining",
                "remaining-exact",
                "deleted"
            ]
        );
        Retired {
            moved: texts(&fields[0].1),
            dropped: texts(&fields[1].1),
            remaining: int(&fields[2].1),
            exact: int(&fields[3].1) == 1,
            deleted: int(&fields[4].1) == 1,
        }
    }
}

fn pending_of(con: &mut Connection, consumer: &str) -> Option<i64> {
    consumers(con, STREAM, GROUP)
        .into_iter()
        .find(|c| c.0 == consumer)
        .map(|c| c.1)
}

fn ids_of(con: &mut Connection, owner: &str) -> Vec<String> {
    pel(con, STREAM, GROUP)
        .into_iter()
        .filter(|e| e.1 == owner)
        .map(|e| e.0)
        .collect()
}

/// The group as the replica must see it too: XINFO STREAM FULL without times, and the whole PEL.
fn snapshot(con: &mut Connection) -> (String, Vec<(String, String, i64)>) {
    (group_state(con, STREAM), pel(con, STREAM, GROUP))
}

/// PEL owners and delivery counts, and consumer names with their pending counts
/// (XINFO STREAM FULL's `entries-read` differs on a replica whatever the module does).
type GroupView = (Vec<(String, String, i64)>, Vec<(String, i64)>);

fn view(con: &mut Connection) -> GroupView {
    let names = consumers(con, STREAM, GROUP)
        .into_iter()
        .map(|(n, p, _)| (n, p))
        .collect();
    (pel(con, STREAM, GROUP), names)
}

fn replica_matches(primary: &mut Connection, replica: &mut Connection, step: &str) {
    run(primary, &["WAIT", "1", "5000"]).unwrap();
    let expected = view(primary);
    let deadline = Instant::now() + Duration::from_secs(10);
    while view(replica) != expected {
        assert!(
            Instant::now() < deadline,
            "{step}: the replica differs from the primary:\n{:?}\n{expected:?}",
            view(replica)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In LIVE the call is refused and nothing at all changes; then TESTNET again.
fn refused_in_live(con: &mut Connection, consumer: &str, step: &str) {
    run(con, &["SET", "quantum:mode", "LIVE"]).unwrap();
    let before = snapshot(con);
    let err = retire(con, consumer, &["TO", "exec-9", "COUNT", "10"]).unwrap_err();
    assert!(err.starts_with("MODE refused"), "{step}: {err}");
    assert_eq!(
        snapshot(con),
        before,
        "{step}: RETIRE in LIVE changed state"
    );
    run(con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
}

#[test]
fn a_backlog_retires_over_several_calls_and_a_late_entry_is_not_lost() {
    let (primary, replica) = primary_and_replica();
    let (mut con, mut rep) = (primary.connect(), replica.connect());
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 20);
    let held = read_as(&mut con, "exec-7", 20);
    let deliveries_before = pel(&mut con, STREAM, GROUP);

    refused_in_live(&mut con, "exec-7", "before the first call");
    let first = retire(&mut con, "exec-7", &["TO", "exec-9", "COUNT", "10"]).unwrap();
    assert_eq!(first.moved, held[..10], "lowest IDs first, fresh or not");
    assert_eq!((first.remaining, first.deleted), (10, false));
    assert_eq!(pending_of(&mut con, "exec-7"), Some(10), "keeps its name");
    assert_eq!(ids_of(&mut con, "exec-7"), held[10..], "and the rest");
    replica_matches(&mut con, &mut rep, "after the first call");

    // A new entry delivered between two calls goes to the end of its PEL.
    add_entries(&mut con, 1);
    let late = read_as(&mut con, "exec-7", 1);
    refused_in_live(&mut con, "exec-7", "between the calls");
    let second = retire(&mut con, "exec-7", &["TO", "exec-9", "COUNT", "10"]).unwrap();
    assert_eq!(second.moved, held[10..]);
    assert_eq!(
        (second.remaining, second.deleted),
        (1, false),
        "all its original entries moved, but it still holds the late one: not deleted"
    );
    assert_eq!(ids_of(&mut con, "exec-7"), late);
    replica_matches(&mut con, &mut rep, "after the second call");

    refused_in_live(&mut con, "exec-7", "before the last call");
    let last = retire(&mut con, "exec-7", &["TO", "exec-9", "COUNT", "10"]).unwrap();
    assert_eq!(last.moved, late, "the late entry moves, it is not lost");
    assert_eq!((last.remaining, last.deleted), (0, true));
    assert_eq!(pending_of(&mut con, "exec-7"), None, "deleted once empty");
    replica_matches(&mut con, &mut rep, "after the last call");

    let mut all = held.clone();
    all.extend(late);
    assert_eq!(ids_of(&mut con, "exec-9"), all, "every entry with TO");
    let after = pel(&mut con, STREAM, GROUP);
    for (id, _, deliveries) in &deliveries_before {
        assert!(
            after.contains(&(id.clone(), "exec-9".into(), *deliveries)),
            "{id}: a move is not a delivery"
        );
    }

    let gone = retire(&mut con, "exec-7", &["TO", "exec-9"]).unwrap();
    assert_eq!(
        gone,
        Retired {
            moved: vec![],
            dropped: vec![],
            remaining: 0,
            exact: true,
            deleted: false
        },
        "a consumer that does not exist"
    );
    assert_eq!(info_counter(&mut con, "retires"), 4);
    let log = primary.log();
    assert!(log.contains("retiring consumer 'exec-7'") && log.contains("remaining=10"));
    assert!(log.contains("retired consumer 'exec-7'"));
}

#[test]
fn entries_gone_from_the_stream_are_dropped_within_count() {
    let (_server, mut con) = testnet_group();
    add_entries(&mut con, 5);
    let held = read_as(&mut con, "exec-7", 5);
    run(&mut con, &["XDEL", STREAM, &held[0], &held[3]]).unwrap();
    let step = retire(&mut con, "exec-7", &["COUNT", "2"]).unwrap();
    assert_eq!(
        (step.moved, step.dropped),
        (vec![held[1].clone()], vec![held[0].clone()])
    );
    assert_eq!((step.remaining, step.deleted), (3, false));
    let step = retire(&mut con, "exec-7", &["COUNT", "3"]).unwrap();
    assert_eq!(step.moved, [held[2].clone(), held[4].clone()]);
    assert_eq!(step.dropped, [held[3].clone()]);
    assert_eq!((step.remaining, step.deleted), (0, true));
    assert_eq!(
        ids_of(&mut con, "recovery"),
        [held[1].clone(), held[2].clone(), held[4].clone()]
    );
}

#[test]
fn the_default_count_comes_from_quantum_retire_count() {
    let server = Server::with(Options {
        module_args: vec!["retire-count".into(), "3".into()],
        ..Options::default()
    });
    let mut con = server.connect();
    let got = texts(&run(&mut con, &["CONFIG", "GET", "quantum.retire-count"]).unwrap());
    assert_eq!(got, ["quantum.retire-count", "3"]);
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 7);
    read_as(&mut con, "exec-7", 7);
    let step = retire(&mut con, "exec-7", &[]).unwrap();
    assert_eq!((step.moved.len(), step.remaining), (3, 4));
    run(&mut con, &["CONFIG", "SET", "quantum.retire-count", "4"]).unwrap();
    let step = retire(&mut con, "exec-7", &[]).unwrap();
    assert_eq!(
        (step.moved.len(), step.remaining, step.deleted),
        (4, 0, true)
    );

    let fresh = Server::start();
    let got = texts(
        &run(
            &mut fresh.connect(),
            &["CONFIG", "GET", "quantum.retire-count"],
        )
        .unwrap(),
    );
    assert_eq!(got, ["quantum.retire-count", "1000"]);
}

#[test]
fn bad_count_values_are_refused_and_change_nothing() {
    let (_server, mut con) = testnet_group();
    add_entries(&mut con, 3);
    read_as(&mut con, "exec-7", 3);
    let before = snapshot(&mut con);
    for (count, expected) in [
        (
            vec!["COUNT", "0"],
            "COUNT must be an integer from 1 to 100000, got '0'",
        ),
        (
            vec!["COUNT", "100001"],
            "COUNT must be an integer from 1 to 100000, got '100001'",
        ),
        (vec!["COUNT", "-1"], "got '-1'"),
        (vec!["COUNT", "1e3"], "got '1e3'"),
        (
            vec!["COUNT", "99999999999999999999"],
            "COUNT must be an integer",
        ),
        (vec!["COUNT"], "COUNT needs a value"),
        (
            vec!["COUNT", "1", "count", "2"],
            "COUNT given more than once",
        ),
        (
            vec!["LIMIT", "1"],
            "unknown option 'LIMIT' for QUANTUM.RETIRE",
        ),
    ] {
        let err = retire(&mut con, "exec-7", &count).unwrap_err();
        assert!(
            err.starts_with("ERR ") && err.contains(expected),
            "{count:?}: {err}"
        );
    }
    for bad in ["0", "100001", "x"] {
        let err = run(&mut con, &["CONFIG", "SET", "quantum.retire-count", bad]).unwrap_err();
        assert!(
            err.contains("quantum.retire-count") || err.contains("argument"),
            "{bad}: {err}"
        );
    }
    let err = Server::try_with(Options {
        module_args: vec!["retire-count".into(), "0".into()],
        ..Options::default()
    })
    .err()
    .expect("a bad loadmodule retire-count fails the load");
    assert!(err.contains("retire-count"), "{err}");
    assert_eq!(snapshot(&mut con), before, "a refused call changed state");
}

#[test]
fn a_call_stops_claiming_when_its_time_budget_is_spent_and_loses_nothing() {
    let server = Server::with(Options {
        module_args: vec!["retire-budget".into(), "1".into()],
        ..Options::default()
    });
    let mut con = server.connect();
    let got = texts(&run(&mut con, &["CONFIG", "GET", "quantum.retire-budget"]).unwrap());
    assert_eq!(got, ["quantum.retire-budget", "1"]);
    // 20,000 claims take far longer than 1 ms on any machine.
    let total = 20_000;
    let held = holding(&server, "exec-7", total);
    let first = retire(&mut con, "exec-7", &["TO", "exec-9", "COUNT", "20000"]).unwrap();
    let moved = first.moved.len();
    assert!(
        (1..total).contains(&moved),
        "at least one, not all: {moved}"
    );
    assert_eq!(first.moved, held[..moved], "lowest IDs first");
    // It looked one entry further than it took: exact if no more than that stays.
    let left = total - moved;
    assert_eq!(
        (first.remaining, first.exact, first.deleted),
        (left.min(moved + 1) as i64, left <= moved, false),
        "what the budget left behind is still the consumer's"
    );
    assert_eq!(ids_of(&mut con, "exec-7"), held[moved..]);
    assert_eq!(ids_of(&mut con, "exec-9"), held[..moved]);

    let mut calls = 1;
    let mut step = first;
    while !step.deleted {
        step = retire(&mut con, "exec-7", &["TO", "exec-9", "COUNT", "20000"]).unwrap();
        assert!(!step.moved.is_empty(), "every call makes progress");
        calls += 1;
    }
    assert!(calls > 1);
    assert_eq!(
        ids_of(&mut con, "exec-9"),
        held,
        "nothing lost, nothing left"
    );
    assert_eq!(pending_of(&mut con, "exec-7"), None);

    for bad in ["0", "10001", "x"] {
        let err = run(&mut con, &["CONFIG", "SET", "quantum.retire-budget", bad]).unwrap_err();
        assert!(
            err.contains("quantum.retire-budget") || err.contains("argument"),
            "{bad}: {err}"
        );
    }
    let fresh = Server::with(Options {
        retire_budget_ms: None,
        ..Options::default()
    });
    let got = texts(
        &run(
            &mut fresh.connect(),
            &["CONFIG", "GET", "quantum.retire-budget"],
        )
        .unwrap(),
    );
    assert_eq!(got, ["quantum.retire-budget", "5"]);
}

#[test]
fn dear_claims_shrink_the_pages_so_the_budget_holds() {
    // One stream node for every entry: XCLAIM then walks tens of thousands of
    // entries to find each one, milliseconds an entry, far above a 1 ms budget.
    let server = Server::with(Options {
        module_args: vec!["retire-budget".into(), "1".into()],
        ..Options::default()
    });
    let mut con = server.connect();
    for (name, value) in [
        ("stream-node-max-entries", "0"),
        ("stream-node-max-bytes", "0"),
    ] {
        run(&mut con, &["CONFIG", "SET", name, value]).unwrap();
    }
    group_with_mode(&mut con, "TESTNET");
    let mut pipe = redis::pipe();
    for i in 0..50_000 {
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("f0")
            .arg(i)
            .arg("f1")
            .arg("v")
            .arg("f2")
            .arg("v")
            .arg("f3")
            .arg("v")
            .arg("f4")
            .arg("v")
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    read_as(&mut con, "exec-old", 49_700);
    let held = read_as(&mut con, "exec-7", 300);
    let step = retire(&mut con, "exec-7", &["TO", "exec-9"]).unwrap();
    assert!(
        !step.moved.is_empty() && step.moved.len() < 100,
        "a page sized by the cost so far, not a fixed 100: {}",
        step.moved.len()
    );
    assert_eq!(step.moved, held[..step.moved.len()]);
    assert_eq!(ids_of(&mut con, "exec-7"), held[step.moved.len()..]);
}

fn holding(server: &Server, consumer: &str, n: usize) -> Vec<String> {
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    let mut held = Vec::new();
    while held.len() < n {
        let chunk = (n - held.len()).min(10_000);
        add_entries(&mut con, chunk);
        held.extend(read_as(&mut con, consumer, chunk));
    }
    held
}

#[test]
fn the_trigger_repeats_retire_until_the_consumer_is_empty_and_sums_the_calls() {
    // COUNT alone decides the calls (test servers raise the time budget to its maximum).
    let server = Server::start();
    let held = holding(&server, "exec-7", 2_500);
    let dir = TempDir::new("retire-log");
    let log = dir.path().join("retire.log");
    let url = url_of(&server.socket());
    let out = run_trigger(
        &[
            "retire",
            "--url",
            &url,
            "--consumer",
            "exec-7",
            "--to",
            "exec-9",
            "--retire-count",
            "1000",
            "--json",
            "--log-file",
            log.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["moved"].as_array().unwrap().len(), 2_500);
    assert_eq!(
        (
            json["remaining"].as_i64(),
            json["calls"].as_u64(),
            json["deleted"].as_bool()
        ),
        (Some(0), Some(3), Some(true))
    );
    assert!(
        out.stderr
            .contains("moved=2500 dropped=0 remaining=0 deleted=1 calls=3"),
        "{}",
        out.stderr
    );
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(
        line.contains("[INFO]")
            && line
                .contains("consumer=\"exec-7\" moved=2500 dropped=0 remaining=0 deleted=1 calls=3"),
        "{line}"
    );
    let mut con = server.connect();
    assert_eq!(ids_of(&mut con, "exec-9"), held);
    assert_eq!(pending_of(&mut con, "exec-7"), None);
}

#[test]
fn a_deadline_with_entries_left_is_exit_75_and_the_consumer_keeps_them() {
    let server = Server::start();
    // More than the trigger can retire one entry per call within the deadline.
    let total = 100_000;
    let held = holding(&server, "exec-7", total);
    let url = url_of(&server.socket());
    let out = run_trigger(
        &[
            "retire",
            "--url",
            &url,
            "--consumer",
            "exec-7",
            "--retire-count",
            "1",
            "--deadline",
            "1s",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    let json = out.json();
    let (moved, remaining, calls) = (
        json["moved"].as_array().unwrap().len() as i64,
        json["remaining"].as_i64().unwrap(),
        json["calls"].as_u64().unwrap(),
    );
    assert!(calls >= 1 && moved == calls as i64, "{json}");
    // One entry per call: the module looked one entry further, so "at least 2".
    assert_eq!(
        (remaining, json["remaining_exact"].as_bool()),
        (2, Some(false))
    );
    assert_eq!(
        (json["result"].as_str(), json["deleted"].as_bool()),
        (Some("error"), Some(false))
    );
    // The deadline may strike between two calls or while one is in flight.
    let unknown = json["last_call_unknown"].as_bool().unwrap();
    let expected = match unknown {
        false => "still holds at least 2 entries",
        true => "the outcome of the last call is unknown",
    };
    for expected in [expected, "nothing is lost", "the next retire continues"] {
        assert!(
            out.stderr.contains(expected),
            "{expected:?} in {}",
            out.stderr
        );
    }
    let mut con = server.connect();
    let now = pending_of(&mut con, "exec-7").expect("the consumer keeps its name");
    let lost_call = i64::from(unknown);
    assert_eq!(now, total as i64 - moved - lost_call, "{json}");
    assert_eq!(
        pel(&mut con, STREAM, GROUP).len(),
        total,
        "nothing left the PEL"
    );

    let out = run_trigger(
        &[
            "retire",
            "--url",
            &url,
            "--consumer",
            "exec-7",
            "--retire-count",
            "10000",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["remaining"], 0);
    assert_eq!(
        ids_of(&mut con, "recovery"),
        held,
        "the next retire finished it"
    );
    assert_eq!(pending_of(&mut con, "exec-7"), None);
}

/// `cmdstat_<name>` lines of INFO commandstats (internal calls count there too).
fn commands_run(con: &mut Connection) -> Vec<String> {
    text(&run(con, &["INFO", "commandstats"]).unwrap())
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .map(|l| l.split(':').next().unwrap_or_default().to_string())
        .collect()
}

/// `n` consumers holding nothing, as dead PID-named consumers pile up.
fn empty_consumers(con: &mut Connection, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(STREAM)
            .arg(GROUP)
            .arg(format!("dead-{i}"))
            .ignore();
    }
    pipe.query::<()>(con).unwrap();
}

#[test]
fn a_call_reads_only_the_consumers_own_pel_never_the_consumer_list() {
    let (_server, mut con) = testnet_group();
    empty_consumers(&mut con, 2_000);
    add_entries(&mut con, 5);
    let held = read_as(&mut con, "exec-7", 5);
    run(&mut con, &["CONFIG", "RESETSTAT"]).unwrap();

    let step = |con: &mut Connection, consumer| retire(con, consumer, &["COUNT", "2"]).unwrap();
    let first = step(&mut con, "exec-7");
    assert_eq!(first.moved, held[..2]);
    assert_eq!(
        (first.remaining, first.exact, first.deleted),
        (3, false, false),
        "it looked at most COUNT + 1 further: more than COUNT remain"
    );
    let second = step(&mut con, "exec-7");
    assert_eq!(second.moved, held[2..4]);
    assert_eq!(
        (second.remaining, second.exact, second.deleted),
        (1, true, false),
        "at most COUNT remain: exact"
    );
    let last = step(&mut con, "exec-7");
    assert_eq!(
        (last.moved, last.remaining, last.exact, last.deleted),
        (held[4..].to_vec(), 0, true, true)
    );
    let empty = step(&mut con, "dead-7");
    assert_eq!(
        (empty.remaining, empty.deleted),
        (0, true),
        "an empty consumer is deleted"
    );
    let missing = step(&mut con, "nobody");
    assert_eq!(
        (missing.remaining, missing.deleted),
        (0, false),
        "no such consumer"
    );

    let commands = commands_run(&mut con);
    assert!(
        commands.iter().any(|c| c == "xpending")
            && !commands.iter().any(|c| c.starts_with("xinfo")),
        "RETIRE must not read the group's consumer list (O(consumers)): {commands:?}"
    );
    let names = consumer_names(&mut con, STREAM, GROUP);
    assert!(!names
        .iter()
        .any(|n| n == "exec-7" || n == "dead-7" || n == "nobody"));
    assert_eq!(names.len(), 2_000, "1,999 dead ones and recovery");
}

/// A primary with an AOF written on every change, and a replica of it.
fn primary_with_aof_and_replica() -> (Server, Server) {
    let primary = Server::with(Options {
        tcp: true,
        config: vec![
            ("appendonly".into(), "yes".into()),
            ("appendfsync".into(), "always".into()),
        ],
        ..Options::default()
    });
    let replica = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    let mut r = replica.connect();
    let port = primary.port.unwrap().to_string();
    run(&mut r, &["REPLICAOF", "127.0.0.1", &port]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run(&mut r, &["INFO", "replication"])
        .is_ok_and(|v| text(&v).contains("master_link_status:up"))
    {
        assert!(Instant::now() < deadline, "the replica never linked up");
        std::thread::sleep(Duration::from_millis(20));
    }
    (primary, replica)
}

#[test]
fn an_empty_and_a_missing_consumer_are_told_apart_and_replica_and_aof_agree() {
    let (primary, replica) = primary_with_aof_and_replica();
    let (mut con, mut rep) = (primary.connect(), replica.connect());
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 3);
    read_as(&mut con, "exec-7", 3);
    empty_consumers(&mut con, 3);
    replica_matches(&mut con, &mut rep, "before");

    let empty = retire(&mut con, "dead-1", &[]).unwrap();
    assert_eq!(
        (empty.moved.len(), empty.remaining, empty.deleted),
        (0, 0, true)
    );
    replica_matches(&mut con, &mut rep, "after retiring an empty consumer");

    // XGROUP CREATECONSUMER tells a missing consumer from an empty one; the
    // consumer it creates is deleted in the same call, on the replica too.
    let missing = retire(&mut con, "ghost", &[]).unwrap();
    assert_eq!((missing.remaining, missing.deleted), (0, false));
    replica_matches(&mut con, &mut rep, "after retiring a missing consumer");

    let held = retire(&mut con, "exec-7", &["COUNT", "2"]).unwrap();
    assert_eq!((held.moved.len(), held.remaining, held.exact), (2, 1, true));
    replica_matches(&mut con, &mut rep, "after a step");
    let last = retire(&mut con, "exec-7", &["COUNT", "2"]).unwrap();
    assert_eq!((last.moved.len(), last.deleted), (1, true));
    replica_matches(&mut con, &mut rep, "after the last step");

    let names = consumer_names(&mut con, STREAM, GROUP);
    assert_eq!(
        names,
        ["dead-0", "dead-2", "recovery"],
        "no ghost left behind"
    );
    let expected = view(&mut con);
    drop((con, rep));
    let primary = primary.restart();
    assert_eq!(
        view(&mut primary.connect()),
        expected,
        "the AOF holds the same group"
    );
}

#[test]
fn retire_needs_no_xinfo_and_an_acl_refusal_names_the_command() {
    let (server, mut con) = testnet_group();
    add_entries(&mut con, 2);
    let held = read_as(&mut con, "exec-7", 2);
    for (user, denied) in [("no-xinfo", "-xinfo"), ("no-xpending", "-xpending")] {
        let words = ["ACL", "SETUSER", user, "on", ">pw", "+@all", denied, "~*"];
        run(&mut con, &words).unwrap();
    }
    let mut no_xpending = server.connect_as("no-xpending", "pw");
    let err = run(
        &mut no_xpending,
        &["QUANTUM.RETIRE", STREAM, GROUP, "exec-7"],
    )
    .unwrap_err();
    assert!(
        err.starts_with("NOPERM") && err.contains("run the 'xpending' command"),
        "{err}"
    );
    let mut no_xinfo = server.connect_as("no-xinfo", "pw");
    let step = run(&mut no_xinfo, &["QUANTUM.RETIRE", STREAM, GROUP, "exec-7"]).unwrap();
    let step = Retired::from(&step);
    assert_eq!((step.moved, step.deleted), (held, true));
}

#[test]
fn the_quarantine_consumer_is_neither_retired_nor_a_target() {
    let (_server, mut con) = testnet_group();
    add_entries(&mut con, 2);
    read_as(&mut con, "quarantine", 1);
    read_as(&mut con, "exec-7", 1);
    run(&mut con, &["CONFIG", "SET", "quantum.quarantine", "parked"]).unwrap();
    let before = snapshot(&mut con);
    for (consumer, options, expected) in [
        ("parked", vec![], "'parked' is the quarantine consumer"),
        (
            "exec-7",
            vec!["TO", "parked"],
            "TO 'parked' is the quarantine consumer",
        ),
    ] {
        let err = retire(&mut con, consumer, &options).unwrap_err();
        assert!(err.starts_with("ERR ") && err.contains(expected), "{err}");
    }
    assert_eq!(snapshot(&mut con), before, "a refused call changed state");
    // Only the configured name is special: the old default is an ordinary consumer now.
    let step = retire(&mut con, "quarantine", &[]).unwrap();
    assert_eq!((step.moved.len(), step.deleted), (1, true));
}

#[test]
fn a_reply_lost_at_the_deadline_is_reported_as_unknown_not_as_entries_left() {
    let server = Server::start();
    let total = 100_000;
    let held = holding(&server, "exec-7", total);
    let url = url_of(&server.socket());
    // One call moves everything (100,000 claims: several hundred ms on any
    // server here), far longer than the deadline: its reply is lost.
    let out = run_trigger(
        &[
            "retire",
            "--url",
            &url,
            "--consumer",
            "exec-7",
            "--retire-count",
            "100000",
            "--deadline",
            "100ms",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    let json = out.json();
    // Whether the worker answered or the main thread reported at the deadline
    // (a starved worker), the report is retire's.
    assert_eq!(
        (
            json["consumer"].as_str(),
            json["last_call_unknown"].as_bool(),
            json["calls"].as_u64(),
            json["result"].as_str()
        ),
        (Some("exec-7"), Some(true), Some(0), Some("error")),
        "{json}"
    );
    assert!(json["remaining"].is_null(), "no call answered: {json}");
    for expected in [
        "the outcome of the last call is unknown",
        "it may have moved up to 100000 more entries",
        "deleted it",
        "no call was answered",
    ] {
        assert!(
            out.stderr.contains(expected) && json["message"].as_str().unwrap().contains(expected),
            "{expected:?} in {}",
            out.stderr
        );
    }
    // What really happened: the call ran in full once Redis got to it.
    let mut con = server.connect();
    assert_eq!(ids_of(&mut con, "recovery"), held);
    assert_eq!(
        pending_of(&mut con, "exec-7"),
        None,
        "deleted, as the message allows"
    );
}

#[test]
fn the_mode_flipping_to_live_mid_retire_says_what_stays_and_the_next_retire_continues() {
    let server = Server::start();
    let total = 20_000;
    let held = holding(&server, "exec-7", total);
    let url = url_of(&server.socket());
    let flipper = {
        let mut con = server.connect();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            run(&mut con, &["SET", "quantum:mode", "LIVE"]).unwrap();
        })
    };
    let args = ["retire", "--url", &url, "--consumer", "exec-7", "--json"];
    let out = run_trigger(
        &[&args[..], &["--retire-count", "1", "--deadline", "60s"]].concat(),
        &[],
    );
    flipper.join().unwrap();
    assert_eq!(out.code, 0, "a refusal exits 0: {}", out.stderr);
    let json = out.json();
    let moved = json["moved"].as_array().unwrap().len();
    assert!(moved >= 1 && moved < total, "{json}");
    assert_eq!(
        (
            json["result"].as_str(),
            json["remaining"].as_i64(),
            json["remaining_exact"].as_bool()
        ),
        (Some("refused"), Some(2), Some(false))
    );
    let message = json["message"].as_str().unwrap();
    for expected in [
        "MODE refused",
        "it still holds at least 2 entries",
        "stay pending under its name",
        "the next retire continues",
    ] {
        assert!(
            message.contains(expected) && out.stderr.contains(expected),
            "{expected:?}: {message}"
        );
    }
    let mut con = server.connect();
    assert_eq!(pending_of(&mut con, "exec-7"), Some((total - moved) as i64));

    run(&mut con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
    let out = run_trigger(&[&args[..], &["--retire-count", "10000"]].concat(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["moved"].as_array().unwrap().len(), total - moved);
    assert_eq!(
        ids_of(&mut con, "recovery"),
        held,
        "the next retire finished it"
    );
}
