//! `quantum-consumer`: a reference consumer of the trading stream, written the
//! way a service should be to cooperate with quantum-stream-recover (README,
//! "Writing a consumer that cooperates"). Documented, tested, never packaged.
//!
//! - **Name** `exec-<pid>`: every start is a new consumer; the ExecStop drop-in
//!   (`retire --consumer exec-${MAINPID}`) and the recovery deal with the old one.
//! - **Adopting what recovery parked**, at start and every `CONSUMER_ADOPT_MS`:
//!   XPENDING … `QUANTUM_TO` lists the entries parked under the recovery
//!   consumer (default `recovery`), XCLAIM … 0 … JUSTID moves them to this
//!   consumer. Claiming them whatever their idle time is safe because only
//!   QUANTUM.RECOVER and QUANTUM.RETIRE put entries there, and they take only
//!   entries of owners that are dead (idle ≥ MINIDLE) or stopping: nobody is
//!   working on them. Adopting again while running matters: a crashed
//!   instance's entries that were not idle enough when this one started are
//!   parked later by the timer and would otherwise wait for the next restart.
//!   Two instances adopting at once may both take an entry (the later XCLAIM
//!   wins the PEL, both may process it): at least once, never lost.
//! - **History before new entries**: `XREADGROUP … 0` returns what this
//!   consumer holds (what it adopted); only when that is empty does it read `>`.
//! - **Ack after processing**: a crash between the two leaves the entry pending
//!   under this name; recovery parks it, an instance adopts it and processes
//!   it again. That is the only source of duplicates.
//! - **New entries one at a time** (`COUNT 1`): what it has read is what it has
//!   in hand, so a crash or a stop leaves at most one entry behind besides the
//!   history it was working through.
//! - **SIGTERM**: finishes the entry in hand, acks it and exits 0. systemd runs
//!   ExecStop (the retire, which hands over what this consumer holds) *before*
//!   it sends SIGTERM; an entry the retire moved to `recovery` while this
//!   consumer was processing it is still acked by its XACK (acks go by ID).
//!   After a crash systemd runs no ExecStop: what the dead instance held waits
//!   until it is idle ≥ MINIDLE, then the ExecStartPre or the timer parks it.
//!
//! Processing stands in for real work and leaves a record the tests read:
//! `RPUSH <record>:processed "<id> <consumer>"`, then the ack in one
//! MULTI with `HSETNX <record>:acked <id> <unix ms>` and `INCR <record>:xacks`
//! (every XACK the server ran came from a consumer when INFO commandstats'
//! XACK calls equal that counter).
//!
//! Environment: `QUANTUM_REDIS_URL`, `QUANTUM_STREAM`, `QUANTUM_GROUP`,
//! `QUANTUM_TO` (the trigger's names and defaults), `CONSUMER_RECORD` (key
//! prefix, default `quantum:consumer`), `CONSUMER_WORK_MS` (time one entry
//! takes, default 0), `CONSUMER_ADOPT_MS` (default 1000).

use redis::{Connection, RedisResult, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Config {
    url: String,
    stream: String,
    group: String,
    parked: String,
    record: String,
    work: Duration,
    adopt_every: Duration,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn millis(name: &str, default: u64) -> Duration {
    let ms = std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Duration::from_millis(ms)
}

impl Config {
    fn from_env() -> Config {
        Config {
            url: env_or("QUANTUM_REDIS_URL", "redis://127.0.0.1:6379"),
            stream: env_or("QUANTUM_STREAM", "quantum:stream:trade.intent"),
            group: env_or("QUANTUM_GROUP", "quantum:group:execution:trade.intent"),
            parked: env_or("QUANTUM_TO", "recovery"),
            record: env_or("CONSUMER_RECORD", "quantum:consumer"),
            work: millis("CONSUMER_WORK_MS", 0),
            adopt_every: millis("CONSUMER_ADOPT_MS", 1000),
        }
    }
}

struct Consumer {
    con: Connection,
    config: Config,
    name: String,
}

impl Consumer {
    /// Moves every entry parked under the recovery consumer to this one; how many.
    fn adopt(&mut self) -> RedisResult<usize> {
        let mut adopted = 0;
        loop {
            let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg("-")
                .arg("+")
                .arg(100)
                .arg(&self.config.parked)
                .query(&mut self.con)?;
            if rows.is_empty() {
                return Ok(adopted);
            }
            let ids: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
            // JUSTID: the move is not a delivery; the history read below is.
            let _: Value = redis::cmd("XCLAIM")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.name)
                .arg(0)
                .arg(&ids)
                .arg("JUSTID")
                .query(&mut self.con)?;
            adopted += ids.len();
        }
    }

    /// XREADGROUP from `from` (`0`-style history cursor or `>`): `(id, deleted)` pairs.
    fn read(&mut self, from: &str, count: usize) -> RedisResult<Vec<(String, bool)>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(count);
        if from == ">" {
            // Short, so a SIGTERM is noticed soon and the name never looks idle.
            cmd.arg("BLOCK").arg(200);
        }
        let reply: Value = cmd
            .arg("STREAMS")
            .arg(&self.config.stream)
            .arg(from)
            .query(&mut self.con)?;
        Ok(entries(&reply))
    }

    /// The work, then the ack. A history entry whose stream entry was deleted
    /// (no fields) has nothing to process and is only acked.
    fn handle(&mut self, id: &str, deleted: bool) -> RedisResult<()> {
        if !deleted {
            std::thread::sleep(self.config.work);
            let _: i64 = redis::cmd("RPUSH")
                .arg(format!("{}:processed", self.config.record))
                .arg(format!("{id} {}", self.name))
                .query(&mut self.con)?;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let _: Value = redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(id)
            .cmd("HSETNX")
            .arg(format!("{}:acked", self.config.record))
            .arg(id)
            .arg(now_ms)
            .cmd("INCR")
            .arg(format!("{}:xacks", self.config.record))
            .query(&mut self.con)?;
        Ok(())
    }

    fn run(&mut self) -> RedisResult<()> {
        let mut next_adopt = Instant::now();
        // Where the history read continues; None: read new entries.
        let mut history: Option<String> = Some("0".into());
        while !STOP.load(Ordering::SeqCst) {
            if Instant::now() >= next_adopt {
                if self.adopt()? > 0 {
                    history = Some("0".into());
                }
                next_adopt = Instant::now() + self.config.adopt_every;
            }
            let batch = match &history {
                Some(from) => self.read(&from.clone(), 100)?,
                None => self.read(">", 1)?,
            };
            if history.is_some() && batch.is_empty() {
                history = None;
                continue;
            }
            for (id, deleted) in &batch {
                if STOP.load(Ordering::SeqCst) {
                    break;
                }
                self.handle(id, *deleted)?;
                if history.is_some() {
                    history = Some(id.clone());
                }
            }
        }
        Ok(())
    }
}

/// The `(id, deleted)` entries of an XREADGROUP reply over one stream (RESP2).
fn entries(reply: &Value) -> Vec<(String, bool)> {
    let Value::Array(streams) = reply else {
        return Vec::new(); // Nil: BLOCK timed out
    };
    let Some(Value::Array(stream)) = streams.first() else {
        return Vec::new();
    };
    let Some(Value::Array(rows)) = stream.get(1) else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|row| match row {
            Value::Array(pair) => match pair.as_slice() {
                [Value::BulkString(id), fields] => Some((
                    String::from_utf8_lossy(id).into_owned(),
                    matches!(fields, Value::Nil),
                )),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn main() -> ExitCode {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe;
    // glibc's signal() installs it with SA_RESTART, so reads are not cut short.
    unsafe {
        libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t);
    }
    let config = Config::from_env();
    let name = format!("exec-{}", std::process::id());
    let connected = redis::Client::open(config.url.as_str()).and_then(|c| c.get_connection());
    let outcome = connected.and_then(|con| Consumer { con, config, name }.run());
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // systemd restarts it (Restart=always); what it held stays pending.
            eprintln!("quantum-consumer: {e}");
            ExitCode::FAILURE
        }
    }
}
