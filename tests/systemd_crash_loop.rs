//! The crash loop of tests/crash_loop.rs in a real systemd: a booted Debian
//! (an overlay of this machine's root in systemd-nspawn, src/nspawn.rs) with
//! its own redis-server.service, the packages of scripts/package.sh
//! installed, the module loaded, the timer enabled with a 1 s interval and the
//! packaged ExecStartPre (`10-zombiefix.conf`) and ExecStop (`20-retire.conf`)
//! drop-ins copied into place as the README says. `quantum-execution.service`
//! runs the reference consumer (examples/consumer) with `Restart=always`; a
//! producer writes `ENTRIES` at a steady rate; the script SIGKILLs the service's
//! main process (`systemctl kill --kill-whom=main -s SIGKILL`, systemd restarts
//! it) and stops and starts it (`systemctl stop`: ExecStop's retire, then
//! SIGTERM) in the seeded order of `crash_loop::plan`. MINIDLE 1 s and
//! ZOMBIEIDLE 2 s in the env file.
//!
//! The host then checks what tests/crash_loop.rs checks (src/crash_loop.rs),
//! with every ExecStartPre run's `elapsed_ms` from its log file and each
//! restart's time from the kill to the new main process.
//!
//! Needs root, systemd-nspawn and the packages (scripts/package.sh); where it
//! cannot run it fails and says why; QUANTUM_SKIP_NSPAWN=1 skips it out loud.
//! `QUANTUM_SEED=<seed>` replays a plan.

use quantum_integration::consumer_path;
use quantum_integration::crash_loop::{self, Crash, Record};
use quantum_integration::nspawn::{self, write, Machine};
use quantum_integration::TempDir;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const SEED: u64 = 20_261_128;
const ENTRIES: usize = 20_000;
const RATE_PER_S: usize = 625;
const KILLS: usize = 50;
const STOPS: usize = 10;
const LIFETIME_MS: (u64, u64) = (250, 800);
const ZOMBIE_IDLE_MS: u64 = 2_000;
const TICK_MS: u64 = 1_000;
/// The drop-in's `--deadline 5s`.
const PRE_START_DEADLINE_MS: u64 = 5_000;
const DEBS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/debian");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn deb(name: &str) -> PathBuf {
    let path = Path::new(DEBS).join(format!("{name}_{VERSION}-1_amd64.deb"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/package.sh first",
        path.display()
    );
    path
}

/// A tiny RESP client: the producer (steady rate) and the consumer-count sampler.
const LOAD_PY: &str = r#"
import socket, sys, threading, time, os
S = 'quantum:stream:trade.intent'
class R:
    def __init__(self):
        self.s = socket.create_connection(('127.0.0.1', 6379))
        self.f = self.s.makefile('rb')
    def send(self, *cmds):
        out = b''
        for c in cmds:
            out += b'*%d\r\n' % len(c)
            for a in c:
                a = str(a).encode()
                out += b'$%d\r\n%s\r\n' % (len(a), a)
        self.s.sendall(out)
        return [self.read() for _ in cmds]
    def read(self):
        line = self.f.readline()
        kind, body = line[:1], line[1:-2]
        if kind == b'-':
            raise RuntimeError(body)
        if kind in (b'+', b':'):
            return body.decode()
        if kind == b'$':
            n = int(body)
            return None if n < 0 else self.f.read(n + 2)[:-2].decode()
        n = int(body)
        return None if n < 0 else [self.read() for _ in range(n)]

def sample(stop):
    r, most, n = R(), 0, 0
    while not os.path.exists(stop):
        for g in r.send(('XINFO', 'GROUPS', S))[0]:
            most = max(most, int(g[g.index('consumers') + 1]))
        n += 1
        time.sleep(0.02)
    open('/results/consumers.txt', 'w').write('%d %d\n' % (most, n))

entries, rate, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
threading.Thread(target=sample, args=(stop,)).start()
r, ids, burst = R(), [], 5
start = time.time()
while len(ids) < entries:
    n = min(burst, entries - len(ids))
    ids += r.send(*[('XADD', S, '*', 'n', len(ids) + i) for i in range(n)])
    time.sleep(max(0, start + len(ids) / rate - time.time()))
open('/results/produced.tmp', 'w').write('\n'.join(ids) + '\n')
os.rename('/results/produced.tmp', '/results/produced.txt')
"#;

fn script(plan: &[(bool, u64)]) -> String {
    let steps: String = plan
        .iter()
        .map(|(kill, ms)| format!("{} {ms}\n", if *kill { "kill" } else { "stop" }))
        .collect();
    format!(
        r#"
exec > /results/trace.txt 2>&1
set -x
rm -f /usr/sbin/policy-rc.d
S=quantum:stream:trade.intent
G=quantum:group:execution:trade.intent
ENV=/etc/quantum/stream-recover.env
r() {{ redis-cli -p 6379 "$@"; }}
now() {{ date +%s%3N; }}
mainpid() {{ systemctl show -p MainPID --value quantum-execution.service; }}

dpkg -i /debs/quantum-redis-module.deb /debs/quantum-stream-recover.deb > /results/install.txt 2>&1
echo 'loadmodule /usr/lib/redis/modules/libquantum.so' >> /etc/redis/redis.conf
systemctl restart redis-server
printf 'QUANTUM_MIN_IDLE=1s\nQUANTUM_ZOMBIE_IDLE={ZOMBIE_IDLE_MS}ms\nQUANTUM_LOG_FILE=/var/log/quantum/execution.log\n' >> $ENV
mkdir -p /etc/systemd/system/quantum-execution.service.d
cp /usr/share/doc/quantum-stream-recover/examples/quantum-execution.service.d/*.conf /etc/systemd/system/quantum-execution.service.d/
systemctl daemon-reload
r SET quantum:mode TESTNET
r XGROUP CREATE $S $G '$' MKSTREAM
systemctl enable --now quantum-stream-recover.timer
systemctl start quantum-execution.service
python3 /opt/qtest/load.py {ENTRIES} {RATE_PER_S} /results/stop-sampler &

while read kind ms; do
    pid=$(mainpid)
    sleep $(echo "$ms" | awk '{{ printf "%.3f", $1 / 1000 }}')
    t=$(now)
    if [ $kind = kill ]; then
        systemctl kill --kill-whom=main -s SIGKILL quantum-execution.service
        while kill -0 $pid 2>/dev/null; do sleep 0.01; done
        at=$(now)
        echo "exec-$pid $at $(r XPENDING $S $G - + 100000 exec-$pid | awk 'NR % 4 == 1' | tr '\n' ' ')" >> /results/crashes.txt
        until [ "$(mainpid)" != 0 ] && [ "$(mainpid)" != $pid ]; do sleep 0.01; done
    else
        systemctl stop quantum-execution.service
        systemctl start quantum-execution.service
    fi
    echo "$kind $(( $(now) - t ))" >> /results/restarts.txt
done < /opt/qtest/plan.txt

# The producer is done when it wrote its IDs (its sampler runs on until told to stop).
i=0
until [ -e /results/produced.txt ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
i=0
until [ "$(r HLEN qtest:acked)" -ge {ENTRIES} ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
systemctl stop quantum-execution.service
systemctl status --no-pager quantum-stream-recover.timer quantum-stream-recover.service > /results/timer-status.txt 2>&1
systemctl stop quantum-stream-recover.timer
touch /results/stop-sampler
sleep 0.2
r LRANGE qtest:processed 0 -1 > /results/processed.txt
r HGETALL qtest:acked > /results/acked.txt
{{ r XPENDING $S $G | head -1; r GET qtest:xacks; r INFO commandstats | grep '^cmdstat_xack:'; r INFO quantum; }} > /results/counters.txt
r XINFO CONSUMERS $S $G > /results/consumers-left.txt
cp /var/log/redis/redis-server.log /results/redis.log
cp /var/log/quantum/execution.log /results/execution.log
cp /var/log/quantum/stream_recover.log /results/timer.log
journalctl --no-pager -u quantum-execution.service -u quantum-stream-recover.service > /results/journal.txt
echo done > /results/done
systemctl --no-block poweroff
"#
    ) + &format!("#PLAN\n{steps}")
}

/// The `run` lines of a trigger log (the others, with `consumer=`, are retires).
fn run_lines(log: &str) -> impl Iterator<Item = &str> {
    log.lines()
        .filter(|l| l.contains(" stream=") && !l.contains(" consumer="))
}

/// `elapsed_ms=` of every `run` line of a trigger log.
fn run_times_ms(log: &str) -> Vec<u64> {
    run_lines(log)
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("elapsed_ms="))?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn the_reference_consumer_survives_a_crash_loop_in_systemd() {
    if !nspawn::can_run("the systemd crash-loop test") {
        return;
    }
    let seed = crash_loop::seed(SEED);
    eprintln!("systemd_crash_loop seed {seed} (QUANTUM_SEED={seed} replays it)");
    let plan = crash_loop::plan(seed, KILLS, STOPS, LIFETIME_MS);
    let debs = TempDir::new("crash-debs");
    for name in ["quantum-redis-module", "quantum-stream-recover"] {
        std::fs::copy(deb(name), debs.path().join(format!("{name}.deb"))).unwrap();
    }
    let full = script(&plan);
    let (shell, steps) = full.split_once("#PLAN\n").unwrap();
    let machine = Machine::new("crash-loop", shell);
    write(&machine.path("/opt/qtest/plan.txt"), steps);
    write(&machine.path("/opt/qtest/load.py"), LOAD_PY);
    let consumer = machine.path("/usr/local/bin/quantum-consumer");
    std::fs::copy(consumer_path(), &consumer).unwrap();
    let etc = machine.path("/etc/systemd/system");
    write(
        &etc.join("quantum-execution.service"),
        "[Unit]\nDescription=the reference consumer as the trading service\n\
         After=redis-server.service\n# Restarted 60 times in a minute on purpose.\nStartLimitIntervalSec=0\n\n\
         [Service]\nExecStart=/usr/local/bin/quantum-consumer\nRestart=always\n\
         Environment=QUANTUM_REDIS_URL=redis://127.0.0.1:6379\nEnvironment=CONSUMER_RECORD=qtest\n\
         Environment=CONSUMER_WORK_MS=1\nEnvironment=CONSUMER_ADOPT_MS=500\n",
    );
    // The timer every second instead of every 2 minutes, its first run a
    // second after the script enables it (OnBootSec has passed by then). An
    // empty assignment resets every monotonic trigger of the timer, so only one.
    write(
        &etc.join("quantum-stream-recover.timer.d/test.conf"),
        "[Timer]\nOnBootSec=\nOnActiveSec=1s\nOnUnitActiveSec=1s\nAccuracySec=100ms\n",
    );
    let started = std::time::Instant::now();
    let console = machine.boot(&[format!("--bind-ro={}:/debs", debs.path().display())], 360);
    let wall = started.elapsed();
    let read = |name: &str| machine.result(name);
    let context = || {
        let trace = read("trace.txt");
        let tail: Vec<&str> = trace.lines().rev().take(60).collect();
        format!(
            "\n--- trace (tail) ---\n{}\n--- console ---\n{console}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    };
    assert_eq!(
        read("done"),
        "done\n",
        "the script did not finish{}",
        context()
    );

    let lines = |name: &str| -> Vec<String> { read(name).lines().map(String::from).collect() };
    let acked_lines = lines("acked.txt");
    let acked: HashMap<String, u64> = acked_lines
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].parse().unwrap()))
        .collect();
    let crashes: Vec<Crash> = lines("crashes.txt")
        .iter()
        .map(|l| {
            let mut words = l.split_whitespace();
            Crash {
                consumer: words.next().unwrap().to_string(),
                at_ms: words.next().unwrap().parse().unwrap(),
                held: words.map(String::from).collect(),
            }
        })
        .collect();
    assert_eq!(crashes.len(), KILLS, "{}", context());
    let produced = lines("produced.txt");
    assert_eq!(produced.len(), ENTRIES);
    let figures = crash_loop::check(&Record {
        produced,
        processed: crash_loop::processed_lines(&lines("processed.txt")),
        acked,
        crashes,
    });

    // PEL empty; every XACK the server ran was a consumer's; nothing dropped.
    let counters = read("counters.txt");
    let mut rows = counters.lines();
    assert_eq!(rows.next(), Some("0"), "the PEL is not empty:\n{counters}");
    let consumer_acks = rows.next().unwrap_or_default();
    assert!(
        counters.contains(&format!("cmdstat_xack:calls={consumer_acks},")),
        "an XACK the consumers did not send:\n{counters}"
    );
    assert!(counters.contains("quantum_dropped:0"), "{counters}");
    let warnings = read("redis.log");
    let warnings = crash_loop::deletion_warnings(&warnings);
    assert!(warnings.is_empty(), "{warnings:?}");

    let bound = crash_loop::consumer_bound(ZOMBIE_IDLE_MS, TICK_MS, 500, LIFETIME_MS.0);
    let (most, samples) = read("consumers.txt")
        .split_once(' ')
        .map(|(a, b)| {
            (
                a.parse::<usize>().unwrap(),
                b.trim().parse::<usize>().unwrap(),
            )
        })
        .expect("the sampler's figures");
    assert!(
        most <= bound,
        "{most} consumers at once, over the bound {bound}"
    );

    // Every ExecStartPre ran to its end within the deadline, and so did the timer's runs.
    let execution_log = read("execution.log");
    let pre_starts = run_times_ms(&execution_log);
    assert!(pre_starts.len() > KILLS + STOPS, "{execution_log}");
    let timer_runs = run_times_ms(&read("timer.log"));
    let timer_log = read("timer.log");
    for line in run_lines(&execution_log).chain(run_lines(&timer_log)) {
        assert!(
            line.contains(" [INFO] "),
            "a run that did not succeed: {line}"
        );
    }
    // systemd runs ExecStop for a stop, not after a crash (a main process
    // killed by a signal goes straight to the restart).
    let retires = execution_log
        .lines()
        .filter(|l| l.contains(" consumer="))
        .count();
    assert_eq!(
        retires,
        STOPS + 1,
        "one retire per stop and the last:\n{execution_log}"
    );
    assert!(
        timer_runs.len() > 10,
        "the timer ran {} times:\n{}",
        timer_runs.len(),
        read("timer-status.txt")
    );
    let longest_pre_start = pre_starts.iter().max().copied().unwrap_or(0);
    assert!(longest_pre_start <= PRE_START_DEADLINE_MS);
    let restarts: Vec<u64> = lines("restarts.txt")
        .iter()
        .filter_map(|l| l.split_once(' ')?.1.parse().ok())
        .collect();
    let longest_restart = restarts.iter().max().copied().unwrap_or(0);
    eprintln!(
        "systemd_crash_loop: seed {seed}, {ENTRIES} entries at {RATE_PER_S}/s, {KILLS} SIGKILLs ({} \
         holding entries), {STOPS} graceful stops, boot to poweroff {:.0} s; {} processings, {} \
         duplicates, each an entry processed and not yet acked by a killed instance; crash -> \
         processed again: median {} ms, max {} ms; consumers at most {most} in {samples} samples \
         (bound {bound}); ExecStartPre runs {} (longest {longest_pre_start} ms), timer runs {} \
         (longest {} ms); kill or stop -> running again: longest {longest_restart} ms; ExecStop \
         retires {retires} (stops only)",
        figures.crashes_holding_entries,
        wall.as_secs_f64(),
        figures.processings,
        figures.duplicates,
        figures.median_ms(),
        figures.max_ms(),
        pre_starts.len(),
        timer_runs.len(),
        timer_runs.iter().max().copied().unwrap_or(0),
    );
}
