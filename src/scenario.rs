//! Building consumer-group scenarios with plain stream commands.

use crate::reply::{run, texts};
use crate::Server;
use redis::{Connection, Value};

pub const STREAM: &str = "quantum:stream:trade.intent";
pub const GROUP: &str = "quantum:group:execution:trade.intent";

/// RECOVER options under which what `idle_reads` left is idle enough to move,
/// and a consumer idle as long is a zombie.
pub const SHORT_IDLE: [&str; 4] = ["MINIDLE", "100", "ZOMBIEIDLE", "100"];

/// A fresh server in TESTNET mode with an empty stream and the group: where most tests start.
pub fn testnet_group() -> (Server, Connection) {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    (server, con)
}

/// A fresh server whose mode key says TESTNET and holds nothing else: where
/// tests that build their own streams and groups (many targets) start.
pub fn testnet_server() -> (Server, Connection) {
    let server = Server::start();
    let mut con = server.connect();
    run(&mut con, &["SET", "quantum:mode", "TESTNET"]).expect("SET quantum:mode");
    (server, con)
}

/// Appends `n` entries, `consumer` reads them, and both stay untouched long
/// enough for `SHORT_IDLE`: a consumer that died holding them. Returns their IDs.
pub fn idle_reads(con: &mut Connection, consumer: &str, n: usize) -> Vec<String> {
    add_entries(con, n);
    let ids = read_as(con, consumer, n);
    sleep_ms(150);
    ids
}

/// A dead consumer (`exec-4242`) holding 3 idle entries and a zombie
/// (`exec-1111`), in TESTNET: what the trigger's tests start from.
pub fn zombie_scenario(server: &Server) {
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    create_consumer(&mut con, "exec-1111");
    idle_reads(&mut con, "exec-4242", 3);
}

/// The mode key set to `mode` and an empty stream with the group.
pub fn group_with_mode(con: &mut Connection, mode: &str) {
    run(con, &["SET", "quantum:mode", mode]).unwrap();
    run(con, &["XGROUP", "CREATE", STREAM, GROUP, "$", "MKSTREAM"]).unwrap();
}

/// Appends `n` entries (pipelined) and returns their IDs.
pub fn add_entries(con: &mut Connection, n: usize) -> Vec<String> {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("XADD").arg(STREAM).arg("*").arg("n").arg(i);
    }
    let ids: Vec<String> = pipe.query(con).expect("XADD");
    ids
}

fn xreadgroup(con: &mut Connection, consumer: &str, count: usize, from: &str) -> Value {
    let count = count.to_string();
    let words = [
        "XREADGROUP",
        "GROUP",
        GROUP,
        consumer,
        "COUNT",
        &count,
        "STREAMS",
        STREAM,
        from,
    ];
    run(con, &words).expect("XREADGROUP")
}

/// `consumer` reads up to `count` new entries; returns the IDs it now holds.
pub fn read_as(con: &mut Connection, consumer: &str, count: usize) -> Vec<String> {
    let entries = match xreadgroup(con, consumer, count, ">") {
        Value::Nil => return Vec::new(),
        Value::Array(streams) => match &streams[..] {
            [Value::Array(stream)] => stream[1].clone(),
            other => panic!("XREADGROUP streams {other:?}"),
        },
        other => panic!("XREADGROUP {other:?}"),
    };
    match entries {
        Value::Array(entries) => entries
            .iter()
            .map(|e| match e {
                Value::Array(parts) => crate::reply::text(&parts[0]),
                other => panic!("entry {other:?}"),
            })
            .collect(),
        other => panic!("entries {other:?}"),
    }
}

/// Re-reads `consumer`'s own pending entries (history read, ID 0): counts a delivery each.
pub fn reread_history(con: &mut Connection, consumer: &str) {
    xreadgroup(con, consumer, 100_000, "0");
}

/// Hands `ids` to `consumer` without a delivery (as an earlier recovery would have).
pub fn hand_to(con: &mut Connection, consumer: &str, ids: &[&str]) {
    let mut words = vec!["XCLAIM", STREAM, GROUP, consumer, "0"];
    words.extend_from_slice(ids);
    words.push("JUSTID");
    run(con, &words).expect("XCLAIM JUSTID");
}

/// Makes `ids` (owned by `owner`) look idle for `idle_ms` without a delivery.
/// This refreshes `owner`'s own idle time, as any claim by it would.
pub fn age_entries(con: &mut Connection, owner: &str, ids: &[String], idle_ms: u64) {
    if ids.is_empty() {
        return;
    }
    let idle = idle_ms.to_string();
    let mut words = vec!["XCLAIM", STREAM, GROUP, owner, "0"];
    words.extend(ids.iter().map(String::as_str));
    words.extend(["IDLE", idle.as_str(), "JUSTID"]);
    let moved = texts(&run(con, &words).expect("XCLAIM IDLE"));
    assert_eq!(moved.len(), ids.len(), "aging must keep every entry");
}

pub fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// A consumer that has read nothing (XREADGROUP on an empty stream does not create one).
pub fn create_consumer(con: &mut Connection, name: &str) {
    run(con, &["XGROUP", "CREATECONSUMER", STREAM, GROUP, name]).expect("XGROUP CREATECONSUMER");
}
