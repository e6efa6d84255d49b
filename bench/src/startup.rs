//! The trigger from start to exit, against `redis-cli PING` and against the
//! old shell script's redis-cli sequence, on the same server; and its peak memory.

use crate::scenario::{restore, Scenario};
use quantum_integration::trigger::url_of;
use quantum_integration::Server;
use std::process::Command;
use std::time::Instant;

/// The first deployment's script: GET mode, XAUTOCLAIM, XINFO CONSUMERS, then
/// XGROUP DELCONSUMER for consumers idle > 1 h with nothing pending.
const OLD_SCRIPT: &str = r#"
R="redis-cli -s $SOCK"
S=quantum:stream:trade.intent
G=quantum:group:execution:trade.intent
[ "$($R GET quantum:mode)" = TESTNET ] || exit 0
$R XAUTOCLAIM $S $G recovery 60000 0-0 COUNT 100 JUSTID >/dev/null
$R XINFO CONSUMERS $S $G | paste - - - - - - | while read -r _ name _ pending _ idle; do
  if [ "$pending" = 0 ] && [ "$idle" -gt 3600000 ]; then $R XGROUP DELCONSUMER $S $G "$name" >/dev/null; fi
done
"#;

pub struct Startup {
    /// Median ms: redis-cli PING, trigger with nothing to do, trigger with one zombie, old script with one zombie.
    pub ping: f64,
    pub idle: f64,
    pub zombie: f64,
    pub script: f64,
    pub peak_rss_kb: u64,
}

fn median_ms(runs: usize, mut once: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            once();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn ok(command: &mut Command) {
    let status = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{command:?}");
}

pub fn startup(server: &Server, empty: &Scenario, one_zombie: &Scenario, runs: usize) -> Startup {
    let mut con = server.connect();
    let socket = server.socket();
    let url = url_of(&socket);
    let trigger = quantum_integration::trigger_path();
    let ping = median_ms(runs, || {
        ok(Command::new("redis-cli").arg("-s").arg(&socket).arg("PING"))
    });
    restore(&mut con, empty);
    let idle = median_ms(runs, || ok(Command::new(&trigger).args(["--url", &url])));
    let zombie = median_ms(runs, || {
        restore(&mut con, one_zombie);
        ok(Command::new(&trigger).args(["--url", &url]));
    });
    let script = median_ms(runs, || {
        restore(&mut con, one_zombie);
        ok(Command::new("sh")
            .arg("-c")
            .arg(OLD_SCRIPT)
            .env("SOCK", &socket));
    });
    // GNU time (package time) reports the peak resident set; 0 when it is missing.
    let peak_rss_kb = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(&trigger)
        .args(["--url", &url])
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0);
    Startup {
        ping,
        idle,
        zombie,
        script,
        peak_rss_kb,
    }
}
