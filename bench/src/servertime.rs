//! Server time per recovery (INFO commandstats), three ways on the same
//! scenario: QUANTUM.RECOVER, the native floor (the same commands sent one by
//! one by the client, only their server time counted) and a Lua function.

use crate::scenario::{restore, Scenario, MIN_IDLE};
use quantum_integration::reply::{int, run, text};
use quantum_integration::scenario::{GROUP, STREAM};
use redis::{Connection, Value};

const COUNT: usize = 100;
const SCAN: usize = 1000;
const DELETE_LIMIT: usize = 1000;

/// µs of server time per call: (module, native floor, Lua).
pub struct ServerTime {
    pub module: f64,
    pub native: f64,
    pub lua: f64,
}

/// Total `usec` of the commandstats entries named in `commands`.
fn usec_of(con: &mut Connection, commands: &[&str]) -> f64 {
    let stats = text(&run(con, &["INFO", "commandstats"]).unwrap());
    stats
        .lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            commands.contains(&name).then_some(fields)
        })
        .filter_map(|fields| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix("usec=")?.parse::<f64>().ok())
        })
        .sum()
}

/// INFO commandstats of `command` (`quantum.recover`, `xinfo|groups`): calls and total µs.
pub fn calls_and_usec(con: &mut Connection, command: &str) -> (u64, f64) {
    let stats = text(&run(con, &["INFO", "commandstats"]).unwrap());
    let Some(fields) = stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:")))
    else {
        return (0, 0.0);
    };
    let field = |name: &str| {
        fields
            .split(',')
            .find_map(|f| f.strip_prefix(name)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field("calls=") as u64, field("usec="))
}

/// Runs `call` `iterations` times on a freshly restored scenario; returns the
/// server µs per call of `commands`.
pub fn measure(
    con: &mut Connection,
    scenario: &Scenario,
    iterations: usize,
    commands: &[&str],
    mut call: impl FnMut(&mut Connection),
) -> f64 {
    restore(con, scenario);
    call(con); // warm up
    run(con, &["CONFIG", "RESETSTAT"]).unwrap();
    for _ in 0..iterations {
        restore(con, scenario);
        call(con);
    }
    usec_of(con, commands) / iterations as f64
}

pub fn module_call(con: &mut Connection, zombie_idle: &str) -> Value {
    run(
        con,
        &[
            "QUANTUM.RECOVER",
            STREAM,
            GROUP,
            "MINIDLE",
            MIN_IDLE,
            "ZOMBIEIDLE",
            zombie_idle,
        ],
    )
    .unwrap()
}

/// What the module does, as separate commands from the client.
fn native_call(con: &mut Connection, zombie_idle: &str) {
    let min_idle: i64 = MIN_IDLE.parse().unwrap();
    let zombie_idle: i64 = zombie_idle.parse().unwrap();
    assert_eq!(
        text(&run(con, &["GET", "quantum:mode"]).unwrap()),
        "TESTNET"
    );
    let Value::Array(rows) = run(
        con,
        &["XPENDING", STREAM, GROUP, "-", "+", &SCAN.to_string()],
    )
    .unwrap() else {
        panic!("XPENDING")
    };
    let keepers = ["recovery", "quarantine"];
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|row| match row {
            Value::Array(f)
                if int(&f[2]) >= min_idle && !keepers.contains(&text(&f[1]).as_str()) =>
            {
                Some(text(&f[0]))
            }
            _ => None,
        })
        .take(COUNT)
        .collect();
    if !ids.is_empty() {
        let mut words = vec!["XCLAIM", STREAM, GROUP, "recovery", MIN_IDLE];
        words.extend(ids.iter().map(String::as_str));
        words.push("JUSTID");
        run(con, &words).unwrap();
    }
    let mut deleted = 0;
    for (name, pending, idle) in quantum_integration::reply::consumers(con, STREAM, GROUP) {
        if deleted < DELETE_LIMIT
            && pending == 0
            && idle > zombie_idle
            && !keepers.contains(&name.as_str())
        {
            run(con, &["XGROUP", "DELCONSUMER", STREAM, GROUP, &name]).unwrap();
            deleted += 1;
        }
    }
}

pub fn load_lua(con: &mut Connection) {
    run(
        con,
        &["FUNCTION", "LOAD", "REPLACE", include_str!("recover.lua")],
    )
    .unwrap();
}

fn lua_call(con: &mut Connection, zombie_idle: &str) {
    let (count, scan, limit) = (
        COUNT.to_string(),
        SCAN.to_string(),
        DELETE_LIMIT.to_string(),
    );
    run(
        con,
        &[
            "FCALL",
            "quantum_recover_lua",
            "2",
            STREAM,
            "quantum:mode",
            GROUP,
            "recovery",
            MIN_IDLE,
            &count,
            &scan,
            zombie_idle,
            &limit,
        ],
    )
    .unwrap();
}

/// Server µs per QUANTUM.RECOVER call.
pub fn module_time(con: &mut Connection, scenario: &Scenario, iterations: usize) -> f64 {
    measure(con, scenario, iterations, &["quantum.recover"], |c| {
        module_call(c, scenario.zombie_idle);
    })
}

pub fn server_time(con: &mut Connection, scenario: &Scenario, iterations: usize) -> ServerTime {
    let z = scenario.zombie_idle;
    ServerTime {
        module: module_time(con, scenario, iterations),
        native: measure(
            con,
            scenario,
            iterations,
            &[
                "get",
                "xpending",
                "xclaim",
                "xinfo|consumers",
                "xgroup|delconsumer",
            ],
            |c| native_call(c, z),
        ),
        lua: measure(con, scenario, iterations, &["fcall"], |c| lua_call(c, z)),
    }
}
