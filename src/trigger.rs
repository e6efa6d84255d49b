//! Running the built `quantum-stream-recover` binary as systemd would.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `run`'s options under which what `scenario::idle_reads` left is idle enough
/// to move, and a consumer idle as long is a zombie (the trigger's `SHORT_IDLE`).
pub const SHORT_IDLE_OPTIONS: [&str; 4] = ["--min-idle", "100ms", "--zombie-idle", "100ms"];

/// A server holding `scenario::zombie_scenario`, and its URL for the trigger.
pub fn zombie_server() -> (crate::Server, String) {
    let server = crate::Server::start();
    crate::scenario::zombie_scenario(&server);
    let url = url_of(&server.socket());
    (server, url)
}

pub struct TriggerRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl TriggerRun {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// The trigger with `args` and only `env` (plus PATH) in its environment.
pub fn trigger_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(crate::trigger_path());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied());
    command
}

/// The trigger started in the background with only `args`, its stdout and
/// stderr captured (`wait_with_output`).
pub fn spawn_trigger(args: &[&str]) -> std::process::Child {
    spawn_trigger_with(args, &[])
}

/// The same with `env` added to the trigger's environment.
pub fn spawn_trigger_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    trigger_command(args, env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the trigger starts")
}

/// Runs the trigger to its end.
pub fn run_trigger(args: &[&str], env: &[(&str, &str)]) -> TriggerRun {
    let started = Instant::now();
    let out = trigger_command(args, env)
        .output()
        .expect("run quantum-stream-recover");
    TriggerRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// `unix://` URL of a test server's socket.
pub fn url_of(socket: &Path) -> String {
    format!("unix://{}", socket.display())
}

/// Runs the trigger, killing it if it is still running after `within` (then
/// `code` is -1): for cases that used to hang.
pub fn run_trigger_within(args: &[&str], env: &[(&str, &str)], within: Duration) -> TriggerRun {
    use std::io::Read;
    let started = Instant::now();
    let mut child = trigger_command(args, env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run quantum-stream-recover");
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    TriggerRun {
        code,
        stdout,
        stderr,
        elapsed,
    }
}

/// A metrics file as the trigger wrote it for the default target
/// (scenario's STREAM and GROUP), that target's `stream`/`group` labels
/// taken out, so its series read as they did with one target per install.
pub fn read_metrics(path: impl AsRef<Path>) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let labels = format!(
        "stream=\"{}\",group=\"{}\"",
        crate::scenario::STREAM,
        crate::scenario::GROUP
    );
    text.replace(&format!("{{{labels}}}"), "")
        .replace(&format!("{{{labels},"), "{")
}

/// The sum of every series of metric `name` (`quantum_stream_recovery_…`),
/// whatever its labels: a counter over every target.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Asserts that `promtool check metrics` (Debian package prometheus) accepts
/// `text` without a word: what node_exporter's textfile collector would read.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
