//! What DEADLETTER costs: server time of a call that quarantines a dead
//! consumer's poison entries (five fields each), with and without the copies.

use crate::scenario::{Scenario, MIN_IDLE};
use crate::servertime::measure;
use quantum_integration::reply::run;
use quantum_integration::scenario::{
    age_entries, create_consumer, group_with_mode, read_as, reread_history, GROUP, STREAM,
};
use redis::Connection;

const DEAD: &str = "quantum:dead-letter:bench";

/// µs of server time per call, without and with DEADLETTER.
pub struct Cost {
    pub without: f64,
    pub with: f64,
}

/// One dead consumer holding `entries` poison entries (two deliveries each,
/// idle an hour), each with five fields like a trade intent.
fn poisoned(con: &mut Connection, entries: usize) -> Scenario {
    run(con, &["FLUSHALL"]).unwrap();
    group_with_mode(con, "TESTNET");
    create_consumer(con, "quarantine");
    let mut pipe = redis::pipe();
    for i in 0..entries {
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("symbol")
            .arg(format!("BTC-USD-{i}"))
            .arg("side")
            .arg("buy")
            .arg("qty")
            .arg("0.25")
            .arg("price")
            .arg(format!("{}.5", 60_000 + i))
            .arg("client-order-id")
            .arg(format!("c0ffee-{i:08}"))
            .ignore();
    }
    pipe.query::<()>(con).unwrap();
    let ids = read_as(con, "exec-dead", entries);
    reread_history(con, "exec-dead");
    age_entries(con, "exec-dead", &ids, 3_600_000);
    let dump: Vec<u8> = redis::cmd("DUMP").arg(STREAM).query(con).unwrap();
    Scenario {
        pending: entries,
        zombie_idle: "3600000",
        dump,
    }
}

fn quarantining_call(con: &mut Connection, count: &str, dead_letter: bool) {
    let mut words = vec![
        "QUANTUM.RECOVER",
        STREAM,
        GROUP,
        "MINIDLE",
        MIN_IDLE,
        "COUNT",
        count,
        "MAXDELIVERIES",
        "2",
    ];
    if dead_letter {
        words.extend(["DEADLETTER", DEAD]);
    }
    let reply = quantum_integration::Recovery::from_value(&run(con, &words).unwrap());
    assert_eq!(reply.quarantined.len().to_string(), count, "{reply:?}");
}

/// Server µs per call quarantining `entries` entries (COUNT = `entries`), each
/// call on the same restored state; before each call (not counted) the
/// dead-letter stream is made anew holding one entry, so every call checks an
/// existing stream's last ID, appends to it and trims nothing.
pub fn cost(con: &mut Connection, entries: usize, iterations: usize) -> Cost {
    let scenario = poisoned(con, entries);
    let count = entries.to_string();
    let mut time = |dead_letter: bool| {
        measure(con, &scenario, iterations, &["quantum.recover"], |c| {
            run(c, &["DEL", DEAD]).unwrap();
            run(c, &["XADD", DEAD, "*", "earlier", "copy"]).unwrap();
            quarantining_call(c, &count, dead_letter);
        })
    };
    let without = time(false);
    let with = time(true);
    Cost { without, with }
}
