//! Many targets: a `[[discover]]` run over N streams, each with one group and
//! a dead consumer holding a few entries, through the trigger at its default
//! deadline (30 s), on a fresh server.

use quantum_integration::reply::run;
use quantum_integration::trigger::{metric_sum, run_trigger, url_of};
use quantum_integration::{Server, TempDir};
use std::time::Duration;

/// Entries each stream's dead consumer holds.
const ENTRIES: usize = 3;

pub struct Discovered {
    pub targets: usize,
    pub elapsed: Duration,
    pub exit: i32,
    pub claimed: f64,
}

pub fn discovery_run(targets: usize) -> Discovered {
    let server = Server::start();
    let mut con = server.connect();
    run(&mut con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..targets {
        let stream = format!("bench:orders:{i}");
        pipe.cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg("g")
            .arg("$")
            .arg("MKSTREAM")
            .ignore();
        for n in 0..ENTRIES {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("n")
                .arg(n)
                .ignore();
        }
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("exec-dead")
            .arg("COUNT")
            .arg(ENTRIES)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let dir = TempDir::new("bench-targets");
    let config = dir.path().join("stream-recover.toml");
    std::fs::write(
        &config,
        "min-idle = \"100ms\"\n\n[[discover]]\nmatch = \"bench:orders:*\"\n",
    )
    .unwrap();
    let metrics = dir.path().join("m.prom");
    let url = url_of(&server.socket());
    let out = run_trigger(
        &[
            "--url",
            &url,
            "--config",
            config.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
        &[],
    );
    let text = std::fs::read_to_string(&metrics).unwrap_or_default();
    Discovered {
        targets,
        elapsed: out.elapsed,
        exit: out.code,
        claimed: metric_sum(&text, "quantum_stream_recovery_claimed_total"),
    }
}

/// How long the trigger takes to read and check a `--config` of `targets`
/// explicit targets: the file ends with a duplicate of its first target, so
/// the whole file is checked and the run ends there (exit 64, no connection).
pub fn config_check(targets: usize) -> (Duration, i32) {
    use std::fmt::Write;
    let dir = TempDir::new("bench-config");
    let config = dir.path().join("stream-recover.toml");
    let mut text = format!("max-targets = {}\n", targets.max(1));
    for i in 0..targets {
        let _ = write!(text, "[[target]]\nstream = \"t{i}\"\ngroup = \"g\"\n");
    }
    text.push_str("[[target]]\nstream = \"t0\"\ngroup = \"g\"\n");
    std::fs::write(&config, text).unwrap();
    let missing = dir.path().join("no-server.sock");
    let out = run_trigger(
        &[
            "status",
            "--url",
            &url_of(&missing),
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    (out.elapsed, out.code)
}
