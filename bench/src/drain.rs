//! A big PEL under one dead consumer, drained by the trigger at default
//! settings while another client PINGs, against a plain XAUTOCLAIM JUSTID loop.

use crate::scenario::{restore, restore_for_measuring, Scenario, MIN_IDLE};
use quantum_integration::reply::{run, text};
use quantum_integration::scenario::{GROUP, STREAM};
use quantum_integration::trigger::{run_trigger, url_of};
use quantum_integration::Server;
use redis::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Drain {
    pub entries: usize,
    pub trigger: Duration,
    pub xautoclaim: Duration,
    /// Slowest single QUANTUM.RECOVER (from SLOWLOG), µs; None when none took over 500 µs.
    pub longest_call_us: Option<i64>,
    pub mean_call_us: f64,
    /// The concurrent PING client's latencies, µs: p50, p99, p99.9, max.
    pub ping_us: [u64; 4],
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn drain(server: &Server, scenario: &Scenario) -> Drain {
    let mut con = server.connect();
    restore_for_measuring(&mut con, scenario, "500", "100000");

    let stop = AtomicBool::new(false);
    let (trigger, mut pings) = std::thread::scope(|scope| {
        let pinger = scope.spawn(|| {
            let mut ping = server.connect();
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                run(&mut ping, &["PING"]).unwrap();
                latencies.push(started.elapsed().as_micros() as u64);
            }
            latencies
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
        (took, pinger.join().unwrap())
    });
    pings.sort_unstable();
    let longest_call_us = match run(&mut con, &["SLOWLOG", "GET", "-1"]).unwrap() {
        Value::Array(entries) => entries
            .iter()
            .filter_map(|e| match e {
                Value::Array(f)
                    if format!("{:?}", f[3])
                        .to_lowercase()
                        .contains("quantum.recover") =>
                {
                    Some(quantum_integration::reply::int(&f[2]))
                }
                _ => None,
            })
            .max(),
        _ => None,
    };
    let stats = text(&run(&mut con, &["INFO", "commandstats"]).unwrap());
    let mean_call_us = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_quantum.recover:"))
        .and_then(|f| {
            f.split(',')
                .find_map(|kv| kv.strip_prefix("usec_per_call=")?.parse().ok())
        })
        .unwrap_or(0.0);

    restore(&mut con, scenario);
    let started = Instant::now();
    let mut cursor = "0-0".to_string();
    loop {
        let reply = run(
            &mut con,
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
    let xautoclaim = started.elapsed();
    Drain {
        entries: scenario.pending,
        trigger,
        xautoclaim,
        longest_call_us,
        mean_call_us,
        ping_us: [0.5, 0.99, 0.999, 1.0].map(|p| percentile(&pings, p)),
    }
}
