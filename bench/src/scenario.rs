//! Scenarios built once with plain stream commands, then saved with DUMP so
//! every measured call starts from the same state (RESTORE … REPLACE keeps the
//! group, its PEL and the delivery times).

use quantum_integration::reply::run;
use quantum_integration::scenario::{
    add_entries, age_entries, create_consumer, group_with_mode, read_as, GROUP, STREAM,
};
use redis::Connection;

/// Only entries aged by the scenario (an hour) are idle enough to move.
pub const MIN_IDLE: &str = "60000";

pub struct Scenario {
    pub pending: usize,
    /// ZOMBIEIDLE for the measured calls: below the dead consumers' idle time,
    /// above the live ones' for the length of a run.
    pub zombie_idle: &'static str,
    pub dump: Vec<u8>,
}

/// One dead consumer holding `dead_entries` idle entries, `zombies` empty dead
/// consumers, and `live` consumers each holding one fresh entry.
pub fn build(con: &mut Connection, dead_entries: usize, zombies: usize, live: usize) -> Scenario {
    run(con, &["FLUSHALL"]).unwrap();
    group_with_mode(con, "TESTNET");
    create_consumer(con, "recovery");
    for i in 0..zombies {
        create_consumer(con, &format!("exec-zombie-{i}"));
    }
    let mut left = dead_entries;
    while left > 0 {
        let n = left.min(10_000);
        add_entries(con, n);
        let ids = read_as(con, "exec-dead", n);
        age_entries(con, "exec-dead", &ids, 3_600_000);
        left -= n;
    }
    // Dead consumers get older than ZOMBIEIDLE (500 ms) where there are no live
    // ones to keep young; with live consumers ZOMBIEIDLE is an hour instead.
    let zombie_idle = if live == 0 {
        std::thread::sleep(std::time::Duration::from_millis(600));
        "500"
    } else {
        "3600000"
    };
    let mut pipe = redis::pipe();
    if live > 0 {
        add_entries(con, live);
    }
    for i in 0..live {
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(format!("exec-live-{i}"))
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">")
            .ignore();
        if pipe.len() >= 10_000 || i + 1 == live {
            pipe.query::<()>(con).unwrap();
            pipe = redis::pipe();
        }
    }
    let dump: Vec<u8> = redis::cmd("DUMP").arg(STREAM).query(con).unwrap();
    Scenario {
        pending: dead_entries + live,
        zombie_idle,
        dump,
    }
}

/// `scenario` restored, SLOWLOG logging calls over `slower_than_us` (up to
/// `max_len` of them) and the command stats reset: a clean start for one measurement.
pub fn restore_for_measuring(
    con: &mut Connection,
    scenario: &Scenario,
    slower_than_us: &str,
    max_len: &str,
) {
    restore(con, scenario);
    for (name, value) in [
        ("slowlog-log-slower-than", slower_than_us),
        ("slowlog-max-len", max_len),
    ] {
        run(con, &["CONFIG", "SET", name, value]).unwrap();
    }
    run(con, &["SLOWLOG", "RESET"]).unwrap();
    run(con, &["CONFIG", "RESETSTAT"]).unwrap();
}

pub fn restore(con: &mut Connection, scenario: &Scenario) {
    redis::cmd("RESTORE")
        .arg(STREAM)
        .arg(0)
        .arg(scenario.dump.as_slice())
        .arg("REPLACE")
        .query::<()>(con)
        .unwrap();
}
