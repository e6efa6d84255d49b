//! A big PEL under one dead consumer, drained by the trigger at default
//! settings, with and without another client PINGing, against a plain
//! XAUTOCLAIM JUSTID loop. Mean server time per call from INFO commandstats;
//! calls over 1 ms from SLOWLOG (`slowlog-log-slower-than 1000`): logging
//! every call would log the module's internal calls too (five more entries
//! per batch, each copying its arguments) and measure that as well.

use crate::scenario::{restore_for_measuring, Scenario, MIN_IDLE};
use crate::servertime::calls_and_usec;
use quantum_integration::reply::{run, text};
use quantum_integration::scenario::{GROUP, STREAM};
use quantum_integration::trigger::{run_trigger, url_of};
use quantum_integration::Server;
use redis::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// SLOWLOG logs the calls slower than this; the faster ones count only in the mean.
const LOGGED_OVER_US: &str = "1000";

pub struct Drain {
    pub entries: usize,
    pub trigger: Duration,
    /// None when the drain ran without the comparison: its total and its calls' server times.
    pub xautoclaim: Option<(Duration, Calls)>,
    /// The batches that skipped the consumer step (DELETELIMIT 0) ...
    pub intermediate: Calls,
    /// ... and the calls that ran it (the first and the closing one).
    pub consumer_steps: Calls,
    /// The concurrent PING client's latencies, µs: p50, p99, p99.9, max; None without one.
    pub ping_us: Option<[u64; 4]>,
}

/// Server times of some calls.
#[derive(Default)]
pub struct Calls {
    pub count: u64,
    /// None when some of the calls were under 1 ms and not logged, and so
    /// counted with the intermediate batches (consumer-step calls).
    pub mean_us: Option<f64>,
    /// Calls over 1 ms and over 2 ms (the drain's target is that none is).
    pub over_1ms: usize,
    pub over_2ms: usize,
    /// None when no call took over 1 ms.
    pub longest_us: Option<u64>,
}

impl Calls {
    /// `count` calls of `usec` in all, of which `logged` (µs each) took over 1 ms.
    fn of(count: u64, usec: f64, logged: &[u64]) -> Calls {
        Calls {
            count,
            mean_us: Some(usec / count.max(1) as f64),
            over_1ms: logged.len(),
            over_2ms: logged.iter().filter(|&&us| us > 2000).count(),
            longest_us: logged.iter().copied().max(),
        }
    }
}

/// How the drain runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Another client sends PING in a loop, sharing the cores with Redis and the trigger.
    WithPing,
    Alone,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Drains `scenario` through the trigger; `compare` also times an XAUTOCLAIM loop on the same state.
pub fn drain(server: &Server, scenario: &Scenario, load: Load, compare: bool) -> Drain {
    let mut con = server.connect();
    restore_for_measuring(&mut con, scenario, LOGGED_OVER_US, "100000");

    let stop = AtomicBool::new(false);
    let (trigger, pings) = std::thread::scope(|scope| {
        let pinger = (load == Load::WithPing).then(|| {
            scope.spawn(|| {
                let mut ping = server.connect();
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    run(&mut ping, &["PING"]).unwrap();
                    latencies.push(started.elapsed().as_micros() as u64);
                }
                latencies
            })
        });
        let started = Instant::now();
        let url = url_of(&server.socket());
        let out = run_trigger(
            &[
                "--url",
                &url,
                "--max-batches",
                "10000000",
                "--deadline",
                "1h",
            ],
            &[],
        );
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(out.code, 0, "{}", out.stderr);
        (took, pinger.map(|p| p.join().unwrap()))
    });
    let (intermediate, consumer_steps) = recover_calls(&mut con);
    run(
        &mut con,
        &["CONFIG", "SET", "slowlog-log-slower-than", "10000"],
    )
    .unwrap();
    Drain {
        entries: scenario.pending,
        trigger,
        xautoclaim: compare.then(|| xautoclaim_loop(&mut con, scenario)),
        intermediate,
        consumer_steps,
        ping_us: pings.map(|mut pings| {
            pings.sort_unstable();
            [0.5, 0.99, 0.999, 1.0].map(|p| percentile(&pings, p))
        }),
    }
}

/// The drain's QUANTUM.RECOVER calls: (those sent with DELETELIMIT 0, the
/// others). Each of the first runs XINFO GROUPS once, each of the others
/// XINFO CONSUMERS: that counts them. A consumer-step call under 1 ms is not
/// in SLOWLOG, so its time counts with the intermediate batches (2 calls in
/// 10,000 for a drain of 1,000,000 entries).
fn recover_calls(con: &mut redis::Connection) -> (Calls, Calls) {
    let (calls, usec) = calls_and_usec(con, "quantum.recover");
    let (steps, _) = calls_and_usec(con, "xinfo|consumers");
    let (skipped, stepped): (Vec<_>, Vec<_>) = logged_calls(con, "quantum.recover")
        .into_iter()
        .partition(|(words, _)| {
            words
                .windows(2)
                .any(|w| w[0] == "DELETELIMIT" && w[1] == "0")
        });
    let micros =
        |calls: Vec<(Vec<String>, u64)>| calls.into_iter().map(|(_, us)| us).collect::<Vec<_>>();
    let (skipped, stepped) = (micros(skipped), micros(stepped));
    let stepped_usec = stepped.iter().sum::<u64>() as f64;
    (
        Calls::of(calls - steps, usec - stepped_usec, &skipped),
        Calls {
            mean_us: (stepped.len() as u64 == steps).then(|| stepped_usec / steps.max(1) as f64),
            ..Calls::of(steps, stepped_usec, &stepped)
        },
    )
}

/// SLOWLOG's calls of `command`: their words and server time in µs.
fn logged_calls(con: &mut redis::Connection, command: &str) -> Vec<(Vec<String>, u64)> {
    let mut calls = Vec::new();
    let Value::Array(entries) = run(con, &["SLOWLOG", "GET", "-1"]).unwrap() else {
        panic!("SLOWLOG GET")
    };
    for entry in &entries {
        let Value::Array(fields) = entry else {
            continue;
        };
        let Some(Value::Array(args)) = fields.get(3) else {
            continue;
        };
        let words: Vec<String> = args.iter().map(text).collect();
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case(command))
        {
            continue;
        }
        let micros = quantum_integration::reply::int(&fields[2]);
        calls.push((words, micros.max(0) as u64));
    }
    calls
}

/// The same state drained by `XAUTOCLAIM … COUNT 100 JUSTID` from the client:
/// its total time and its calls' server times.
fn xautoclaim_loop(con: &mut redis::Connection, scenario: &Scenario) -> (Duration, Calls) {
    restore_for_measuring(con, scenario, LOGGED_OVER_US, "100000");
    let started = Instant::now();
    let mut cursor = "0-0".to_string();
    loop {
        let reply = run(
            con,
            &[
                "XAUTOCLAIM",
                STREAM,
                GROUP,
                "recovery",
                MIN_IDLE,
                &cursor,
                "COUNT",
                "100",
                "JUSTID",
            ],
        )
        .unwrap();
        let Value::Array(parts) = reply else {
            panic!("XAUTOCLAIM")
        };
        cursor = text(&parts[0]);
        if cursor == "0-0" {
            break;
        }
    }
    let took = started.elapsed();
    let logged: Vec<u64> = logged_calls(con, "xautoclaim")
        .into_iter()
        .map(|(_, us)| us)
        .collect();
    let (calls, usec) = calls_and_usec(con, "xautoclaim");
    (took, Calls::of(calls, usec, &logged))
}
