//! Benchmarks QUANTUM.RECOVER (and RETIRE) on servers it starts itself, side
//! by side in one run (these machines are noisy, so ratios matter more than
//! absolutes), and writes BENCHMARKS.md with a plot of server time per call
//! against PEL size and consumer count.
//!
//!   cargo build --release && cargo run --release -p quantum-bench
//!   cargo run -p quantum-bench -- --smoke --out /tmp/x   (tiny sizes; part of the tests)
//!   cargo run --release -p quantum-bench -- --only retire --out /tmp/x   (one part)

mod dead_letter;
mod drain;
mod report;
mod retire;
mod scenario;
mod servertime;
mod startup;
mod targets;

use clap::{Parser, ValueEnum};
use drain::Load;
use quantum_integration::reply::run;
use quantum_integration::{Options, Server};
use redis::Connection;
use scenario::{build, Scenario};
use std::fmt::Write;
use std::path::{Path, PathBuf};

struct Sizes {
    /// (name, dead entries, zombies, live consumers, iterations)
    server_time: Vec<(&'static str, usize, usize, usize, usize)>,
    drain: usize,
    /// Alone drains, each followed by an XAUTOCLAIM loop on the same state:
    /// the ratio is their median, so one slow moment of a shared VM does not decide it.
    drain_pairs: usize,
    /// Entries, and the empty consumers beside them, for the drains that compare
    /// intermediate batches in a small and a crowded group.
    crowded_drain: (usize, Vec<usize>),
    scaling_consumers: Vec<usize>,
    scaling_pel: Vec<usize>,
    startup_runs: usize,
    /// Entries the retiring consumer holds, and (COUNT, iterations) per-call measurements.
    retire_per_call: (usize, Vec<(usize, usize)>),
    /// Entries retired through the trigger.
    retire_total: usize,
    /// Empty consumers beside the retiring one, and iterations, for RETIRE COUNT 1.
    retire_crowded: (usize, usize),
    /// (poison entries quarantined per call, iterations) with and without DEADLETTER.
    dead_letter: Vec<(usize, usize)>,
    /// Streams (one group each) a `[[discover]]` run finds.
    discovered_targets: usize,
    /// Explicit targets in the config files whose check is timed.
    config_targets: Vec<usize>,
}

fn sizes(smoke: bool) -> Sizes {
    if smoke {
        return Sizes {
            server_time: vec![
                ("small", 1, 1, 0, 20),
                ("backlog", 1_000, 0, 0, 5),
                ("crowded 100", 1, 0, 100, 5),
            ],
            drain: 2_000,
            drain_pairs: 1,
            crowded_drain: (2_000, vec![10, 200]),
            scaling_consumers: vec![10, 100],
            scaling_pel: vec![1_000, 2_000],
            startup_runs: 3,
            retire_per_call: (2_000, vec![(100, 5), (1_000, 3)]),
            retire_total: 3_000,
            retire_crowded: (200, 3),
            dead_letter: vec![(1, 5), (10, 3)],
            discovered_targets: 20,
            config_targets: vec![100],
        };
    }
    Sizes {
        server_time: vec![
            ("small: 1 dead with 1 pending, 1 zombie", 1, 1, 0, 2_000),
            ("backlog: 1,000 pending, COUNT 100", 1_000, 0, 0, 500),
            ("crowded: 1,000 consumers", 1, 0, 1_000, 200),
            ("crowded: 100,000 consumers", 1, 0, 100_000, 10),
        ],
        drain: 1_000_000,
        drain_pairs: 5,
        crowded_drain: (300_000, vec![10, 100_000]),
        scaling_consumers: vec![10, 100, 1_000, 10_000, 100_000],
        scaling_pel: vec![1_000, 10_000, 100_000, 1_000_000],
        startup_runs: 31,
        retire_per_call: (
            200_000,
            vec![(100, 200), (1_000, 100), (10_000, 20), (100_000, 5)],
        ),
        retire_total: 1_000_000,
        retire_crowded: (100_000, 20),
        dead_letter: vec![(1, 2_000), (10, 1_000), (100, 300), (1_000, 30)],
        discovered_targets: 1_000,
        config_targets: vec![20_000, 100_000],
    }
}

#[derive(Parser)]
#[command(
    about = "Benchmarks QUANTUM.RECOVER and RETIRE; writes BENCHMARKS.md and benchmarks/scaling.svg"
)]
struct Args {
    /// Tiny sizes: checks that every part still runs (scripts/test.sh)
    #[arg(long)]
    smoke: bool,
    /// Folder for BENCHMARKS.md and benchmarks/ [default: the repository]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only this part
    #[arg(long)]
    only: Option<Part>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Servertime,
    Drain,
    Startup,
    Scaling,
    Retire,
    /// RETIRE COUNT 1 in a group with many empty consumers (also part of `retire`).
    RetireCrowded,
    /// A quarantining RECOVER with and without DEADLETTER.
    DeadLetter,
    /// One `[[discover]]` run over many streams through the trigger.
    Targets,
}

fn main() {
    let args = Args::parse();
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    let part = |part: Part| args.only.is_none_or(|only| only == part);
    let sizes = sizes(args.smoke);
    // The module's own defaults (test servers raise RETIRE's time budget).
    let server = Server::with(Options {
        retire_budget_ms: None,
        ..Options::default()
    });
    let mut con = server.connect();
    run(&mut con, &["CONFIG", "SET", "save", ""]).unwrap();
    servertime::load_lua(&mut con);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmarks\n\nWritten by `cargo build --release && cargo run --release -p quantum-bench` (about ten \
         minutes on this machine). Machine: {}.\n",
        report::machine()
    );

    if part(Part::Servertime) {
        server_time_section(&mut md, &mut con, &sizes);
    }
    let drained = part(Part::Drain).then(|| drain_section(&mut md, &server, &mut con, &sizes));
    if part(Part::Startup) {
        startup_section(&mut md, &server, &mut con, &sizes);
    }
    if part(Part::Scaling) {
        scaling_section(&mut md, &mut con, &sizes, drained.as_ref(), &out);
    }
    if part(Part::Retire) {
        retire_section(&mut md, &server, &mut con, &sizes);
    }
    if part(Part::Retire) || part(Part::RetireCrowded) {
        retire_crowded_section(&mut md, &mut con, &sizes);
    }
    if part(Part::DeadLetter) {
        dead_letter_section(&mut md, &mut con, &sizes);
    }
    if part(Part::Targets) {
        targets_section(&mut md, &sizes);
    }

    // The tables as the report has them are the printed table too.
    print!("{md}");
    md.push_str(include_str!("../findings.md"));
    // A benchmark may panic: it is a tool run by hand, not code inside Redis.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("BENCHMARKS.md"), md).unwrap();
    println!("wrote {}", out.join("BENCHMARKS.md").display());
}

/// Part 1, server time per call.
fn server_time_section(md: &mut String, con: &mut Connection, sizes: &Sizes) {
    let _ = writeln!(
        md,
        "## Server time per recovery\n\nINFO commandstats `usec` per call, each call on the same state (RESTORE of a DUMP \
         before every call, not counted). Native floor: the same commands the module runs (GET mode, XPENDING, XCLAIM JUSTID, \
         XINFO CONSUMERS, XGROUP DELCONSUMER) sent one by one by the client, only their server time counted. Lua: a Redis \
         Function doing the same guard, claim and safe delete (`bench/src/recover.lua`).\n\n\
         | scenario | calls | module µs | native floor µs | Lua µs | module / native | module / Lua |\n|---|---|---|---|---|---|---|"
    );
    for (name, dead, zombies, live, iterations) in &sizes.server_time {
        let scenario = build(con, *dead, *zombies, *live);
        let t = servertime::server_time(con, &scenario, *iterations);
        let _ = writeln!(
            md,
            "| {name} | {iterations} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            t.module,
            t.native,
            t.lua,
            t.module / t.native,
            t.module / t.lua
        );
    }
}

/// Part 2, blocking: a big PEL drained by the trigger while a client PINGs.
/// Returns the drained scenario, which the scaling part reuses.
fn drain_section(
    md: &mut String,
    server: &Server,
    con: &mut Connection,
    sizes: &Sizes,
) -> Scenario {
    let big = build(con, sizes.drain, 0, 0);
    let with_ping = drain::drain(server, &big, Load::WithPing, true);
    let mut pairs: Vec<_> = (0..sizes.drain_pairs)
        .map(|_| drain::drain(server, &big, Load::Alone, true))
        .collect();
    let ratio = |d: &drain::Drain| {
        let (xautoclaim, _) = d.xautoclaim.as_ref().expect("compared");
        d.trigger.as_secs_f64() / xautoclaim.as_secs_f64()
    };
    let xautoclaim_of = |d: &drain::Drain| d.xautoclaim.as_ref().expect("compared").0.as_secs_f64();
    let all_ratios: Vec<String> = pairs
        .iter()
        .map(|d| {
            let trigger = d.trigger.as_secs_f64();
            format!("{:.2} ({trigger:.2} / {:.2} s)", ratio(d), xautoclaim_of(d))
        })
        .collect();
    // Noise on a shared VM only adds time: the fastest of each is the other robust view.
    let fastest = |times: Vec<f64>| times.into_iter().fold(f64::INFINITY, f64::min);
    let fastest_ratio = fastest(pairs.iter().map(|d| d.trigger.as_secs_f64()).collect())
        / fastest(pairs.iter().map(xautoclaim_of).collect());
    let longest: Vec<String> = pairs
        .iter()
        .map(|d| {
            let c = &d.intermediate;
            let us = c
                .longest_us
                .map_or("under 1 ms".into(), |us| format!("{us} µs"));
            format!("{} over 2 ms, longest {us}", c.over_2ms)
        })
        .collect();
    pairs.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let alone = &pairs[pairs.len() / 2];
    let (_, xautoclaim_calls) = alone.xautoclaim.as_ref().expect("compared");
    let _ = writeln!(
        md,
        "\n## Draining {} pending entries\n\nOne dead consumer holds them all; the trigger drains them at default settings \
         (COUNT 100, SCAN 1000, one atomic call per batch), once while another client sends PING in a loop (three \
         processes on two cores: Redis, the trigger and the PING client compete for CPU) and alone ({} drains); \
         each drain is followed by a plain `XAUTOCLAIM … COUNT 100 JUSTID` loop on the same state, and the alone column \
         is the pair with the median ratio (every pair's ratio, trigger / XAUTOCLAIM, in the order run: {}; \
         the fastest drain over the fastest loop: {fastest_ratio:.2}; their intermediate batches, in the same \
         order: {}). Server times of every \
         call: the mean from INFO commandstats, the calls over 1 ms from SLOWLOG (`slowlog-log-slower-than 1000`; \
         logging every call would log the module's internal calls too, five entries more per batch than \
         XAUTOCLAIM's one, and time that as well). Intermediate batches send `DELETELIMIT 0` and skip the \
         consumer step, which the first and the closing call run.\n\n\
         | | with PING client | alone (median pair) |\n|---|---|---|\n\
         | trigger, total | {:.2} s | {:.2} s |\n\
         | XAUTOCLAIM loop, total | {:.2} s | {:.2} s |\n\
         | trigger / XAUTOCLAIM loop | {:.2} | {:.2} |\n\
         | intermediate batches: {CALLS} | {} | {} |\n\
         | consumer-step calls: {CALLS} | {} | {} |\n\n\
         The XAUTOCLAIM loop's own calls (median pair): {}. A call's SLOWLOG time is wall time inside Redis, so \
         it also counts the moments the kernel runs another process on Redis's core: the loop's longest call is that \
         floor for a drain on this machine.",
        with_ping.entries,
        sizes.drain_pairs,
        all_ratios.join(", "),
        longest.join("; "),
        with_ping.trigger.as_secs_f64(),
        alone.trigger.as_secs_f64(),
        xautoclaim_of(&with_ping),
        xautoclaim_of(alone),
        ratio(&with_ping),
        ratio(alone),
        calls(&with_ping.intermediate),
        calls(&alone.intermediate),
        calls(&with_ping.consumer_steps),
        calls(&alone.consumer_steps),
        calls(xautoclaim_calls),
    );
    if let Some(p) = with_ping.ping_us {
        let _ = writeln!(
            md,
            "\nPING during the drain: p50 / p99 / p99.9 / max {} / {} / {} / {} µs.",
            p[0], p[1], p[2], p[3]
        );
    }
    let (entries, crowds) = &sizes.crowded_drain;
    let _ = writeln!(
        md,
        "\nThe same drain of {entries} entries, alone, beside empty consumers (idle, not yet zombies at the trigger's \
         default ZOMBIEIDLE of an hour):\n\n| consumers | trigger, total | intermediate batches: {CALLS} \
         | consumer-step calls: {CALLS} |\n|---|---|---|---|"
    );
    for &zombies in crowds {
        let scenario = build(con, *entries, zombies, 0);
        let d = drain::drain(server, &scenario, Load::Alone, false);
        let _ = writeln!(
            md,
            "| {zombies} | {:.2} s | {} | {} |",
            d.trigger.as_secs_f64(),
            calls(&d.intermediate),
            calls(&d.consumer_steps)
        );
    }
    big
}

/// What `calls` shows of some calls.
const CALLS: &str = "calls, mean µs, calls over 1 ms / over 2 ms, longest";

/// Some calls' server times, as `CALLS` names them.
fn calls(c: &drain::Calls) -> String {
    let longest = c
        .longest_us
        .map_or("under 1 ms".to_string(), |us| format!("{us} µs"));
    // Unknown when some of the calls were too quick for SLOWLOG (see `drain::Calls`).
    let mean = c
        .mean_us
        .map_or("–".to_string(), |us| format!("{us:.0} µs"));
    format!(
        "{}, {mean}, {} / {}, {longest}",
        c.count, c.over_1ms, c.over_2ms
    )
}

/// Part 3, the trigger from start to exit.
fn startup_section(md: &mut String, server: &Server, con: &mut Connection, sizes: &Sizes) {
    let empty = build(con, 0, 0, 0);
    let one = build(con, 1, 0, 0);
    let s = startup::startup(server, &empty, &one, sizes.startup_runs);
    let _ = writeln!(
        md,
        "\n## The trigger, start to exit\n\nMedian of {} runs each, same server, unix socket.\n\n\
         | | ms | ratio |\n|---|---|---|\n| `redis-cli PING` | {:.2} | 1.00 |\n| trigger, nothing to do | {:.2} | {:.2} × PING |\n\
         | trigger, one dead consumer's entry | {:.2} | {:.2} × PING |\n| old shell script (GET, XAUTOCLAIM, XINFO CONSUMERS, DELCONSUMER) | {:.2} | {:.1} × the trigger |\n\
         | trigger peak memory (GNU time %M) | {} KiB | |",
        sizes.startup_runs,
        s.ping,
        s.idle,
        s.idle / s.ping,
        s.zombie,
        s.zombie / s.ping,
        s.script,
        s.script / s.zombie,
        s.peak_rss_kb
    );
}

/// Part 4, scaling, and its plot.
fn scaling_section(
    md: &mut String,
    con: &mut Connection,
    sizes: &Sizes,
    drained: Option<&Scenario>,
    out: &Path,
) {
    let by_consumers: report::Series = sizes
        .scaling_consumers
        .iter()
        .map(|&n| {
            let scenario = build(con, 1, 0, n);
            (
                n as f64,
                servertime::module_time(con, &scenario, (20_000 / n).clamp(5, 200)),
            )
        })
        .collect();
    let by_pel: report::Series = sizes
        .scaling_pel
        .iter()
        .map(|&n| {
            // The drain's PEL is reused for the largest size rather than built twice.
            let built;
            let scenario = match drained {
                Some(big) if big.pending == n => big,
                _ => {
                    built = build(con, n, 0, 10);
                    &built
                }
            };
            (
                n as f64,
                servertime::module_time(con, scenario, (200_000 / n).clamp(5, 200)),
            )
        })
        .collect();
    let _ = writeln!(
        md,
        "\n## Scaling\n\nServer time per QUANTUM.RECOVER call (defaults: COUNT 100, SCAN 1000). Against the consumer count \
         (one dead consumer with one entry, the others live with one entry each) it grows with XINFO CONSUMERS; against the \
         PEL size (one dead consumer holding it all, 10 live) it stays flat: a call costs O(SCAN + COUNT + consumers), \
         not O(PEL).\n\n![scaling](benchmarks/scaling.svg)\n\n| consumers | µs per call |\n|---|---|"
    );
    for (n, us) in &by_consumers {
        let _ = writeln!(md, "| {n} | {us:.1} |");
    }
    let _ = writeln!(md, "\n| PEL size | µs per call |\n|---|---|");
    for (n, us) in &by_pel {
        let _ = writeln!(md, "| {n} | {us:.1} |");
    }

    std::fs::create_dir_all(out.join("benchmarks")).unwrap();
    report::plot(&out.join("benchmarks/scaling.svg"), &by_consumers, &by_pel).unwrap();
}

/// Part 6, many targets: one `[[discover]]` run through the trigger.
fn targets_section(md: &mut String, sizes: &Sizes) {
    let run = targets::discovery_run(sizes.discovered_targets);
    let _ = writeln!(
        md,
        "\n## Many targets\n\nOne trigger run with `--config` whose `[[discover]]` matches {} streams (one group \
         each, a dead consumer holding 3 entries), fresh server, unix socket, default `--deadline 30s`, \
         `--metrics-file` (one QUANTUM.STATUS per target after its drain): {:.2} s, exit {}, {} entries \
         claimed (metrics, summed over the targets).",
        run.targets,
        run.elapsed.as_secs_f64(),
        run.exit,
        run.claimed
    );
    for &n in &sizes.config_targets {
        let (elapsed, exit) = targets::config_check(n);
        let _ = writeln!(
            md,
            "\nReading and checking a `--config` of {n} explicit targets (ending with a duplicate, so \
             the run stops there, exit {exit}, before connecting): {:.2} s.",
            elapsed.as_secs_f64()
        );
    }
}

/// RETIRE COUNT 1 in a zombie-heavy group: its time must not grow with the consumer count.
fn retire_crowded_section(md: &mut String, con: &mut Connection, sizes: &Sizes) {
    let (zombies, iterations) = sizes.retire_crowded;
    let scenario = build(con, 10, zombies, 0);
    let (held, missing) = retire::crowded(con, &scenario, iterations);
    let _ = writeln!(
        md,
        "\nQUANTUM.RETIRE COUNT 1 in a group crowded with {zombies} empty consumers (the retiring one holds 10 \
         entries; INFO commandstats, RESTOREd before each of {iterations} calls): {held:.0} µs per call for the \
         consumer, {missing:.0} µs for a consumer that does not exist."
    );
}

/// Part 6, the price of the dead-letter copies.
fn dead_letter_section(md: &mut String, con: &mut Connection, sizes: &Sizes) {
    let _ = writeln!(
        md,
        "\n## Dead-letter copies\n\nServer time per QUANTUM.RECOVER call that moves a dead consumer's poison entries \
         (five fields each, two deliveries, MAXDELIVERIES 2, COUNT = the entries) to QUARANTINE, without and with \
         DEADLETTER (per call one XINFO STREAM of the dead-letter stream for its last ID; each copy: the entry read \
         with the key API's stream iterator, then an XADD … MAXLEN ~ through RM_Call of its six header fields and its \
         own five, the arguments all copies share made once per call). INFO commandstats, every call on the same \
         RESTOREd state, the dead-letter stream made anew with one entry before each call (not counted). Target: \
         with ≤ 1.5× without.\n\n\
         | entries per call | calls | without µs | with µs | with / without | µs per copy |\n|---|---|---|---|---|---|"
    );
    for &(entries, iterations) in &sizes.dead_letter {
        let c = dead_letter::cost(con, entries, iterations);
        let _ = writeln!(
            md,
            "| {entries} | {iterations} | {:.1} | {:.1} | {:.2} | {:.2} |",
            c.without,
            c.with,
            c.with / c.without,
            (c.with - c.without) / entries as f64
        );
    }
}

/// Part 5, RETIRE in bounded steps: server time per call against COUNT, and a big
/// retire through the trigger at the default COUNT with its longest call.
fn retire_section(md: &mut String, server: &Server, con: &mut Connection, sizes: &Sizes) {
    let (held, counts) = &sizes.retire_per_call;
    let scenario = build(con, *held, 0, 0);
    let _ = writeln!(
        md,
        "\n## Retiring a consumer in bounded steps\n\nServer time per QUANTUM.RETIRE call (INFO commandstats, each call on \
         the same state: one consumer holding {held} entries, RESTOREd before every call) against COUNT; the default, \
         `quantum.retire-count`, is 1000. Before issue 13 one call moved the whole PEL: 200,000 entries held Redis for \
         1.86 s. \"COUNT only\": `quantum.retire-budget` at its 10 s maximum, so every call moves COUNT entries; native \
         floor: the XPENDING and XCLAIM JUSTID of the same entries sent by the client, only their server time counted; \
         \"default budget\": `quantum.retire-budget` 5 ms, the call stops claiming once it has run that long.\n\n\
         | COUNT | calls | COUNT only, µs per call | µs per entry | native floor µs | COUNT only / native \
         | default budget, µs per call | entries moved per call |\n|---|---|---|---|---|---|---|---|"
    );
    for &(count, iterations) in counts {
        let c = retire::per_call(con, &scenario, count, iterations);
        let _ = writeln!(
            md,
            "| {count} | {iterations} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} | {:.0} |",
            c.count_only_us,
            c.count_only_us / count as f64,
            c.native_us,
            c.count_only_us / c.native_us,
            c.budgeted_us,
            c.budgeted_moved
        );
    }
    drop(scenario);
    let big = build(con, sizes.retire_total, 0, 0);
    let r = retire::through_trigger(server, &big);
    let cpu = retire::cpu_per_call(server, &big);
    let _ = writeln!(
        md,
        "\n`quantum-stream-recover retire` of a consumer holding {} entries at the default COUNT and budget, every call's \
         duration from SLOWLOG (`slowlog-log-slower-than 0`):\n\n| | value |\n|---|---|\n| trigger, total | {:.2} s |\n\
         | QUANTUM.RETIRE calls | {} |\n| mean server time per call | {:.0} µs |\n| longest call | {} µs |\n\
         | calls over 10 ms | {} |",
        r.entries,
        r.took.as_secs_f64(),
        r.calls,
        r.mean_call_us,
        r.longest_call_us,
        r.calls_over_10ms
    );
    let _ = writeln!(
        md,
        "\nThe same retire call by call from the bench's client, with Redis's own CPU time per call (its main thread's \
         run time from `/proc/<pid>/task/<pid>/schedstat` around each call: what the call cost, without the time Redis \
         waited for a core other processes held): {} calls, mean {:.0} µs, longest {} µs, {} over 10 ms.",
        cpu.calls, cpu.mean_us, cpu.longest_us, cpu.over_10ms
    );
}
