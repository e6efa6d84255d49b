//! QUANTUM.RETIRE in bounded steps: server time per call against COUNT, and a
//! big backlog retired through the trigger, with the longest single call.

use crate::scenario::{restore_for_measuring, Scenario};
use crate::servertime::measure;
use quantum_integration::reply::{int, run, text};
use quantum_integration::scenario::{GROUP, STREAM};
use quantum_integration::trigger::{run_trigger, url_of};
use quantum_integration::Server;
use redis::{Connection, Value};
use std::time::{Duration, Instant};

/// The scenario's dead consumer, which retires.
const CONSUMER: &str = "exec-dead";

/// One QUANTUM.RETIRE call at `count` on `scenario`, at the server's time budget.
pub struct PerCall {
    /// Server µs per call, with `quantum.retire-budget` at its 10 s maximum: COUNT alone decides.
    pub count_only_us: f64,
    /// The native floor: the XPENDING and XCLAIM JUSTID of the same entries sent by the client.
    pub native_us: f64,
    /// Server µs per call at the default budget (5 ms) ...
    pub budgeted_us: f64,
    /// ... and the entries each of those calls moved.
    pub budgeted_moved: f64,
}

fn retire_call(con: &mut Connection, count: &str) -> usize {
    let words = [
        "QUANTUM.RETIRE",
        STREAM,
        GROUP,
        CONSUMER,
        "TO",
        "exec-new",
        "COUNT",
        count,
    ];
    moved_of(&run(con, &words).unwrap())
}

/// The length of a RETIRE reply's `moved`.
fn moved_of(reply: &Value) -> usize {
    match reply {
        Value::Array(fields) => match fields.get(1) {
            Some(Value::Array(ids)) => ids.len(),
            other => panic!("RETIRE moved {other:?}"),
        },
        Value::Map(fields) => match fields.first() {
            Some((_, Value::Array(ids))) => ids.len(),
            other => panic!("RETIRE moved {other:?}"),
        },
        other => panic!("RETIRE {other:?}"),
    }
}

fn set_budget(con: &mut Connection, ms: &str) {
    run(con, &["CONFIG", "SET", "quantum.retire-budget", ms]).unwrap();
}

/// QUANTUM.RETIRE moving up to `count` of `scenario`'s entries per call,
/// without and with the time budget, against the native floor.
pub fn per_call(
    con: &mut Connection,
    scenario: &Scenario,
    count: usize,
    iterations: usize,
) -> PerCall {
    let count = count.to_string();
    set_budget(con, "10000");
    let count_only_us = measure(con, scenario, iterations, &["quantum.retire"], |c| {
        retire_call(c, &count);
    });
    set_budget(con, "5");
    let mut moved = 0;
    let budgeted_us = measure(con, scenario, iterations, &["quantum.retire"], |c| {
        moved += retire_call(c, &count);
    });
    // The warm-up call counted too.
    let budgeted_moved = moved as f64 / (iterations + 1) as f64;
    let native_us = measure(con, scenario, iterations, &["xpending", "xclaim"], |c| {
        let page = run(c, &["XPENDING", STREAM, GROUP, "-", "+", &count, CONSUMER]).unwrap();
        let Value::Array(rows) = page else {
            panic!("XPENDING {page:?}")
        };
        let mut words = vec![
            "XCLAIM".to_string(),
            STREAM.into(),
            GROUP.into(),
            "exec-new".into(),
            "0".into(),
        ];
        words.extend(rows.iter().map(|row| match row {
            Value::Array(f) => text(&f[0]),
            other => panic!("XPENDING row {other:?}"),
        }));
        words.push("JUSTID".into());
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        run(c, &words).unwrap();
    });
    PerCall {
        count_only_us,
        native_us,
        budgeted_us,
        budgeted_moved,
    }
}

/// Server µs per `QUANTUM.RETIRE … COUNT 1` in `scenario`, a group crowded with
/// empty consumers: (of the consumer holding entries, of a consumer that does not exist).
pub fn crowded(con: &mut Connection, scenario: &Scenario, iterations: usize) -> (f64, f64) {
    let one = |consumer: &'static str| {
        move |c: &mut Connection| {
            let words = [
                "QUANTUM.RETIRE",
                STREAM,
                GROUP,
                consumer,
                "TO",
                "exec-new",
                "COUNT",
                "1",
            ];
            run(c, &words).unwrap();
        }
    };
    let held = measure(
        con,
        scenario,
        iterations,
        &["quantum.retire"],
        one(CONSUMER),
    );
    let missing = measure(
        con,
        scenario,
        iterations,
        &["quantum.retire"],
        one("exec-missing"),
    );
    (held, missing)
}

pub struct Retire {
    pub entries: usize,
    pub took: Duration,
    pub calls: i64,
    pub mean_call_us: f64,
    /// From SLOWLOG, which logs every call during the run.
    pub longest_call_us: i64,
    pub calls_over_10ms: usize,
}

/// Retires every entry of `scenario`'s dead consumer through the trigger at the default COUNT.
pub fn through_trigger(server: &Server, scenario: &Scenario) -> Retire {
    let mut con = server.connect();
    restore_for_measuring(&mut con, scenario, "0", "1000000");
    let started = Instant::now();
    let url = url_of(&server.socket());
    let out = run_trigger(
        &[
            "retire",
            "--url",
            &url,
            "--consumer",
            CONSUMER,
            "--to",
            "exec-new",
            "--deadline",
            "1h",
            "--json",
        ],
        &[],
    );
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["remaining"], 0, "{}", out.stderr);
    assert_eq!(
        json["moved"].as_array().map(Vec::len),
        Some(scenario.pending)
    );

    let durations: Vec<i64> = match run(&mut con, &["SLOWLOG", "GET", "-1"]).unwrap() {
        Value::Array(entries) => entries
            .iter()
            .filter_map(|e| match e {
                Value::Array(f)
                    if format!("{:?}", f[3])
                        .to_lowercase()
                        .contains("quantum.retire") =>
                {
                    Some(int(&f[2]))
                }
                _ => None,
            })
            .collect(),
        other => panic!("SLOWLOG {other:?}"),
    };
    run(
        &mut con,
        &["CONFIG", "SET", "slowlog-log-slower-than", "10000"],
    )
    .unwrap();
    let stats = text(&run(&mut con, &["INFO", "commandstats"]).unwrap());
    let mean_call_us = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_quantum.retire:"))
        .and_then(|f| {
            f.split(',')
                .find_map(|kv| kv.strip_prefix("usec_per_call=")?.parse().ok())
        })
        .unwrap_or(0.0);
    assert_eq!(
        durations.len() as u64,
        json["calls"].as_u64().unwrap(),
        "SLOWLOG kept every call"
    );
    Retire {
        entries: scenario.pending,
        took,
        calls: durations.len() as i64,
        mean_call_us,
        longest_call_us: durations.iter().copied().max().unwrap_or(0),
        calls_over_10ms: durations.iter().filter(|&&us| us > 10_000).count(),
    }
}

/// Redis's own CPU time per QUANTUM.RETIRE call while the bench client retires
/// every entry of `scenario` at the default COUNT, call by call: the main
/// thread's run time from /proc (schedstat) around each call. Unlike SLOWLOG's
/// wall time it leaves out the time Redis waited for a CPU that other
/// processes held, so it tells the module's cost from the machine's load.
pub struct CpuPerCall {
    pub calls: usize,
    pub mean_us: f64,
    pub longest_us: u64,
    pub over_10ms: usize,
}

pub fn cpu_per_call(server: &Server, scenario: &Scenario) -> CpuPerCall {
    let mut con = server.connect();
    restore_for_measuring(&mut con, scenario, "10000", "128");
    let pid = server.pid();
    let schedstat = format!("/proc/{pid}/task/{pid}/schedstat");
    let on_cpu_ns = || -> u64 {
        let text = std::fs::read_to_string(&schedstat).expect("schedstat");
        text.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("schedstat run time")
    };
    let words = ["QUANTUM.RETIRE", STREAM, GROUP, CONSUMER, "TO", "exec-new"];
    let mut micros = Vec::new();
    loop {
        let before = on_cpu_ns();
        let reply = run(&mut con, &words).unwrap();
        micros.push((on_cpu_ns() - before) / 1_000);
        let fields = quantum_integration::reply::pairs(&reply);
        let remaining = quantum_integration::reply::field(&fields, "remaining");
        if int(&remaining) == 0 {
            break;
        }
    }
    CpuPerCall {
        calls: micros.len(),
        mean_us: micros.iter().sum::<u64>() as f64 / micros.len() as f64,
        longest_us: micros.iter().copied().max().unwrap_or(0),
        over_10ms: micros.iter().filter(|&&us| us > 10_000).count(),
    }
}
