//! The whole story under fire, in process: the test plays systemd for the
//! reference consumer (examples/consumer) while a producer writes at a steady
//! rate. Before each start it runs the ExecStartPre's command (`run …
//! --deadline 5s`); a timer thread runs the trigger every second; the consumer
//! is SIGKILLed at random moments (`KILLS` times) and stopped gracefully
//! (`STOPS` times) as systemd stops a unit: the ExecStop's `retire --consumer
//! exec-<pid>` first, then SIGTERM. MINIDLE and ZOMBIEIDLE are scaled down
//! from 60 s / 1 h to 1 s / 2 s to match the one-second tick.
//!
//! At the end every produced entry was processed and acked by a consumer, the
//! PEL is empty, every XACK the server ran was a consumer's (INFO
//! commandstats against the consumers' own count) and recovery dropped
//! nothing, each duplicate is explained by a SIGKILL between processing and
//! ack, no consumer was deleted or retired holding entries (the module's
//! warning is not in the log), the consumer count stayed within
//! `consumer_bound()`, and every ExecStartPre run ended within its deadline.
//! Printed: the seed, the kill counts, the duplicates, the crash → processed
//! again times (median, max).
//!
//! Fixed seed, so a failure replays: `QUANTUM_SEED=<seed> cargo test --test crash_loop`.

use quantum_integration::crash_loop::{self, Crash, Record};
use quantum_integration::reply::{command_calls, consumers, info_counter, int, run, text};
use quantum_integration::scenario::{group_with_mode, GROUP, STREAM};
use quantum_integration::trigger::{run_trigger_within, url_of};
use quantum_integration::{consumer_path, Server};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SEED: u64 = 20_261_128;
const ENTRIES: usize = 20_000;
/// Entries per producer tick, and the tick: 625 entries a second, 32 s in all.
const BURST: usize = 5;
const BURST_EVERY: Duration = Duration::from_millis(8);
const KILLS: usize = 50;
const STOPS: usize = 10;
/// How long an instance runs before it is killed or stopped, in ms.
const LIFETIME_MS: (u64, u64) = (250, 800);
const MIN_IDLE: &str = "1s";
const ZOMBIE_IDLE_MS: u64 = 2_000;
const TICK: Duration = Duration::from_secs(1);
/// The drop-in's `--deadline 5s`.
const PRE_START_DEADLINE: Duration = Duration::from_secs(5);
const RECORD: &str = "qtest";

/// See `crash_loop::consumer_bound`; a run takes at most 0.5 s here.
fn consumer_bound() -> usize {
    let tick = TICK.as_millis() as u64;
    crash_loop::consumer_bound(ZOMBIE_IDLE_MS, tick, 500, LIFETIME_MS.0)
}

/// The drop-in's command line; its duration and exit code.
fn pre_start(url: &str) -> (Duration, i32) {
    let zombie_idle = format!("{ZOMBIE_IDLE_MS}ms");
    let args = [
        "run",
        "--url",
        url,
        "--min-idle",
        MIN_IDLE,
        "--zombie-idle",
        &zombie_idle,
        "--deadline",
        "5s",
    ];
    let out = run_trigger_within(&args, &[], PRE_START_DEADLINE + Duration::from_secs(5));
    (out.elapsed, out.code)
}

fn start_consumer(url: &str) -> Child {
    Command::new(consumer_path())
        .env_clear()
        .env("QUANTUM_REDIS_URL", url)
        .env("CONSUMER_RECORD", RECORD)
        .env("CONSUMER_WORK_MS", "1")
        .env("CONSUMER_ADOPT_MS", "500")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start quantum-consumer (cargo build first)")
}

fn name_of(child: &Child) -> String {
    format!("exec-{}", child.id())
}

/// systemctl stop: the ExecStop's retire, then SIGTERM; the consumer must exit 0.
fn stop_gracefully(url: &str, mut child: Child) {
    let name = name_of(&child);
    let out = run_trigger_within(
        &[
            "retire",
            "--url",
            url,
            "--consumer",
            &name,
            "--deadline",
            "5s",
        ],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(out.code, 0, "the ExecStop's retire: {}", out.stderr);
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{name} after SIGTERM: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "{name} ignored SIGTERM");
        thread::sleep(Duration::from_millis(5));
    }
}

/// The IDs `consumer` holds.
fn held_by(con: &mut redis::Connection, consumer: &str) -> Vec<String> {
    let rows = run(
        con,
        &["XPENDING", STREAM, GROUP, "-", "+", "100000", consumer],
    )
    .unwrap();
    match rows {
        redis::Value::Array(rows) => rows
            .iter()
            .map(|row| match row {
                redis::Value::Array(f) => text(&f[0]),
                other => panic!("XPENDING row {other:?}"),
            })
            .collect(),
        other => panic!("XPENDING {other:?}"),
    }
}

fn pel_size(con: &mut redis::Connection) -> i64 {
    match run(con, &["XPENDING", STREAM, GROUP]).unwrap() {
        redis::Value::Array(summary) => int(&summary[0]),
        other => panic!("XPENDING {other:?}"),
    }
}

#[test]
fn the_reference_consumer_survives_a_crash_loop() {
    let seed = crash_loop::seed(SEED);
    eprintln!("crash_loop seed {seed} (QUANTUM_SEED={seed} replays it)");
    let server = Server::start();
    let url = url_of(&server.socket());
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    run(&mut con, &["CONFIG", "RESETSTAT"]).unwrap();
    let started = Instant::now();

    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let mut con = server.connect();
        thread::spawn(move || {
            let mut ids = Vec::with_capacity(ENTRIES);
            let start = Instant::now();
            while ids.len() < ENTRIES {
                let mut pipe = redis::pipe();
                for i in ids.len()..(ids.len() + BURST).min(ENTRIES) {
                    pipe.cmd("XADD").arg(STREAM).arg("*").arg("n").arg(i);
                }
                let added: Vec<String> = pipe.query(&mut con).expect("XADD");
                ids.extend(added);
                let due = start + BURST_EVERY * (ids.len() / BURST) as u32;
                thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            ids
        })
    };
    // The timer, and a sampler of the consumer count.
    let timer_runs = Arc::new(Mutex::new(Vec::<(Duration, i32)>::new()));
    let timer = {
        let (done, runs, url) = (done.clone(), timer_runs.clone(), url.clone());
        thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let next = Instant::now() + TICK;
                runs.lock().unwrap().push(pre_start(&url));
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    let most_consumers = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, most) = (done.clone(), most_consumers.clone());
        let mut con = server.connect();
        thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(consumers(&mut con, STREAM, GROUP).len(), Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // The supervisor: KILLS + STOPS ends in a seeded order, each after a seeded lifetime.
    let mut pre_starts = Vec::new();
    let mut crashes = Vec::new();
    for (kill, lifetime) in crash_loop::plan(seed, KILLS, STOPS, LIFETIME_MS) {
        pre_starts.push(pre_start(&url));
        let mut child = start_consumer(&url);
        thread::sleep(Duration::from_millis(lifetime));
        assert!(
            child.try_wait().unwrap().is_none(),
            "{} exited by itself",
            name_of(&child)
        );
        if kill {
            child.kill().unwrap();
            child.wait().unwrap();
            let at_ms = crash_loop::now_ms();
            let consumer = name_of(&child);
            let held = held_by(&mut con, &consumer);
            crashes.push(Crash {
                consumer,
                at_ms,
                held,
            });
        } else {
            stop_gracefully(&url, child);
        }
    }

    // The last instance runs until everything produced is acked.
    pre_starts.push(pre_start(&url));
    let last = start_consumer(&url);
    let produced = producer.join().unwrap();
    let acked_key = format!("{RECORD}:acked");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let acked: usize = redis::cmd("HLEN").arg(&acked_key).query(&mut con).unwrap();
        if acked >= ENTRIES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after the last crash, {acked} of {ENTRIES} entries are acked; consumers (name, pending, idle) {:?}",
            consumers(&mut con, STREAM, GROUP)
        );
        thread::sleep(Duration::from_millis(50));
    }
    stop_gracefully(&url, last);
    done.store(true, Ordering::SeqCst);
    timer.join().unwrap();
    sampler.join().unwrap();
    let elapsed = started.elapsed();

    // Every entry processed and acked, by a consumer; duplicates explained.
    let processed: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{RECORD}:processed"))
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    let acked: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(&acked_key)
        .query(&mut con)
        .unwrap();
    let figures = crash_loop::check(&Record {
        produced,
        processed: crash_loop::processed_lines(&processed),
        acked,
        crashes: crashes.clone(),
    });
    assert_eq!(pel_size(&mut con), 0, "the PEL is not empty");
    let consumer_acks: i64 = redis::cmd("GET")
        .arg(format!("{RECORD}:xacks"))
        .query(&mut con)
        .unwrap();
    assert_eq!(
        command_calls(&mut con, "xack"),
        consumer_acks,
        "an XACK the consumers did not send"
    );
    assert_eq!(
        info_counter(&mut con, "dropped"),
        0,
        "recovery dropped entries"
    );
    let warnings = crash_loop::deletion_warnings(&server.log()).join("\n");
    assert!(warnings.is_empty(), "{warnings}");
    let most = most_consumers.load(Ordering::SeqCst);
    assert!(
        most <= consumer_bound(),
        "{most} consumers at once, over the bound {}",
        consumer_bound()
    );
    let timer_runs = timer_runs.lock().unwrap().clone();
    for (what, runs) in [("ExecStartPre", &pre_starts), ("timer", &timer_runs)] {
        for (took, code) in runs {
            assert!(
                *code == 0 && *took <= PRE_START_DEADLINE,
                "a {what} run: exit {code} after {took:?}"
            );
        }
    }
    let longest = |runs: &[(Duration, i32)]| runs.iter().map(|r| r.0).max().unwrap_or_default();
    let left = consumers(&mut con, STREAM, GROUP).len();
    let info = text(&run(&mut con, &["INFO", "server"]).unwrap());
    let version = ["valkey_version:", "redis_version:"]
        .iter()
        .find_map(|field| info.lines().find(|l| l.starts_with(field)))
        .unwrap_or("?");
    eprintln!(
        "crash_loop on {}: seed {seed}, {ENTRIES} entries in {:.1} s, {KILLS} SIGKILLs ({} holding \
         entries), {STOPS} graceful stops; {} processings, {} duplicates, each an entry processed \
         and not yet acked by a killed instance; crash -> processed again: median {} ms, max {} ms; \
         consumers at most {most} (bound {}); ExecStartPre runs {} (longest {:?}), timer runs {} \
         (longest {:?}); recovery claimed {}, deleted {} consumers; {} consumer rows at the end",
        version,
        elapsed.as_secs_f64(),
        figures.crashes_holding_entries,
        figures.processings,
        figures.duplicates,
        figures.median_ms(),
        figures.max_ms(),
        consumer_bound(),
        pre_starts.len(),
        longest(&pre_starts),
        timer_runs.len(),
        longest(&timer_runs),
        info_counter(&mut con, "claimed"),
        info_counter(&mut con, "deleted"),
        left,
    );
}
