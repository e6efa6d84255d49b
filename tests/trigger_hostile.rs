//! The trigger under a hostile review (after issues 16 and 17): options one
//! verb ignored, write errors, paths that hang, leaked passwords, a cursor that
//! never moved on, failures that wrote no metrics, dry runs that looked real,
//! and a missing mode key nobody saw.

use quantum_integration::reply::{assert_same_ids, consumer_names, consumers_and_pel, held_by};
use quantum_integration::scenario::*;
use quantum_integration::trigger::{
    read_metrics, run_trigger, run_trigger_within, spawn_trigger, trigger_command, url_of,
    zombie_server, SHORT_IDLE_OPTIONS,
};
use quantum_integration::{Server, TempDir};
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A dead consumer holding 3 idle entries and a zombie, in TESTNET.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn path_str(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_string()
}

fn mkfifo(path: &str) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn dry_run_is_refused_by_retire_and_explicitly_by_status() {
    let (server, url) = zombie_server();
    let mut con = server.connect();
    let before = consumers_and_pel(&mut con);
    let retire = ["retire", "--url", &url, "--consumer", "exec-4242", "--json"];
    for (extra, env) in [
        (&["--dry-run"][..], &[][..]),
        (&[], &[("QUANTUM_DRY_RUN", "1")][..]),
    ] {
        let mut argv = vec!["--url", &url];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&retire);
        let out = run_trigger(&argv, env);
        assert_eq!(out.code, 64, "{extra:?} {env:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("retire has no dry run"),
            "{}",
            out.stderr
        );
        assert_eq!(out.json()["exit_code"], 64);
        let after = consumers_and_pel(&mut con);
        assert_eq!(after, before, "{extra:?} {env:?} changed the group");
    }
    let out = run_trigger(&["status", "--url", &url, "--dry-run"], &[]);
    assert_eq!(out.code, 64, "{}", out.stderr);
    // QUANTUM_DRY_RUN from a shared env file: status changes nothing anyway.
    let out = run_trigger(&["status", "--url", &url], &[("QUANTUM_DRY_RUN", "1")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // And run still takes it.
    let out = run_trigger(&["--url", &url, "--dry-run", "--json"], &[]);
    assert_eq!((out.code, out.json()["dry_run"].as_bool()), (0, Some(true)));
}

#[test]
fn an_option_of_another_verb_is_refused_on_the_command_line_and_ignored_in_the_environment() {
    let (server, url) = zombie_server();
    let mut con = server.connect();
    let before = consumers_and_pel(&mut con);
    for (argv, said) in [
        (
            vec!["status", "--url", &url, "--to", "exec-5000", "--json"],
            "--to applies to run and retire only, not to status",
        ),
        (
            vec!["--url", &url, "--consumer", "exec-4242", "--json"],
            "--consumer applies to retire only, not to run",
        ),
        (
            [
                &["--url", url.as_str(), "--json", "--limit", "5"][..],
                &SHORT_IDLE_OPTIONS,
            ]
            .concat(),
            "--limit applies to status only, not to run",
        ),
    ] {
        let out = run_trigger(&argv, &[]);
        assert_eq!(out.code, 64, "{argv:?}: {}", out.stderr);
        assert!(out.stderr.contains(said), "{argv:?}: {}", out.stderr);
        assert_eq!(out.json()["exit_code"], 64);
        let after = consumers_and_pel(&mut con);
        assert_eq!(after, before, "{argv:?} changed the group");
    }
    // One env file serves every verb: another verb's settings there are no error.
    let env = [
        ("QUANTUM_CONSUMER", "exec-4242"),
        ("QUANTUM_QUARANTINE", "parked"),
        ("QUANTUM_LIMIT", "5"),
        ("QUANTUM_MIN_IDLE", "100ms"),
        ("QUANTUM_ZOMBIE_IDLE", "100ms"),
    ];
    let out = run_trigger(&["status", "--url", &url, "--json"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Even a value the verb that takes it would refuse (out of range, not a number).
    let out = run_trigger(
        &["status", "--url", &url, "--json"],
        &[
            ("QUANTUM_RETIRE_COUNT", "200000"),
            ("QUANTUM_COUNT", "abc"),
            ("QUANTUM_MAX_BATCHES", "0"),
        ],
    );
    assert_eq!(out.code, 0, "status: {}", out.stderr);
    let out = run_trigger(
        &["retire", "--url", &url, "--consumer", "exec-none", "--json"],
        &[
            ("QUANTUM_LIMIT", "20000"),
            ("QUANTUM_MIN_IDLE", "0"),
            ("QUANTUM_COUNT", "abc"),
        ],
    );
    assert_eq!(out.code, 0, "retire: {}", out.stderr);
    let bad_for_others = [
        ("QUANTUM_RETIRE_COUNT", "200000"),
        ("QUANTUM_LIMIT", "20000"),
    ];
    let out = run_trigger(
        &["--url", &url, "--json"],
        &[&env[..], &bad_for_others].concat(),
    );
    assert_eq!(
        (out.code, out.json()["claimed"].as_array().map(Vec::len)),
        (0, Some(3)),
        "{}",
        out.stderr
    );
}

#[test]
fn write_errors_on_stdout_or_stderr_never_panic() {
    let (_server, url) = zombie_server();
    let full = || File::options().write(true).open("/dev/full").unwrap();
    let code = |mut cmd: Command| cmd.status().unwrap().code();
    // SHORT_IDLE_OPTIONS holds run's options, which status refuses (64).
    for (verb, options) in [(&["run"][..], &SHORT_IDLE_OPTIONS[..]), (&["status"], &[])] {
        let mut argv = verb.to_vec();
        argv.extend(["--url", &url, "--json"]);
        argv.extend_from_slice(options);
        // stdout at a full disk, stderr at a full disk.
        let mut cmd = trigger_command(&argv, &[]);
        cmd.stdout(full()).stderr(Stdio::null());
        assert_eq!(code(cmd), Some(0), "{verb:?} >/dev/full");
        let mut cmd = trigger_command(&argv, &[]);
        cmd.stdout(Stdio::null()).stderr(full());
        assert_eq!(code(cmd), Some(0), "{verb:?} 2>/dev/full");
        // stdout a pipe whose reader is gone (`| true`).
        let mut child = trigger_command(&argv, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        assert_eq!(child.wait().unwrap().code(), Some(0), "{verb:?} | true");
    }
    // A usage error keeps its own code.
    let mut cmd = trigger_command(&["--bogus", "--json"], &[]);
    cmd.stdout(full()).stderr(full());
    assert_eq!(code(cmd), Some(64));
}

#[test]
fn fifos_and_devices_at_file_paths_fail_fast() {
    let (_server, url) = zombie_server();
    let dir = TempDir::new("fifo");
    let fifo = path_str(&dir, "fifo");
    mkfifo(&fifo);
    let within = Duration::from_secs(10);
    for (option, path, code) in [
        ("--metrics-file", fifo.as_str(), 73),
        ("--metrics-file", "/dev/zero", 73),
        ("--log-file", fifo.as_str(), 73),
        ("--log-file", "/dev/null", 73),
        ("--password-file", fifo.as_str(), 78),
        ("--password-file", "/dev/zero", 78),
        ("--env-file", fifo.as_str(), 78),
    ] {
        let out = run_trigger_within(
            &["--url", &url, "--deadline", "2s", option, path],
            &[],
            within,
        );
        assert_eq!(out.code, code, "{option} {path}: {}", out.stderr);
        assert!(
            out.stderr.contains("not a regular file") || out.stderr.contains("os error"),
            "{option} {path}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_password_in_the_url_is_never_shown() {
    let dir = TempDir::new("url-secret");
    let log = path_str(&dir, "l.log");
    for url in [
        "redis://quantum-recover:S3cr3t@127.0.0.1:badport",
        "redis://quantum-recover:S3cr3t@127.0.0.1:6379/x",
        "redis://:S3cr3t@[::1",
        "redis://127.0.0.1:1/?password=S3cr3t",
        "unix:///nonexistent.sock?pass=S3cr3t",
    ] {
        let out = run_trigger(&["--url", url, "--json", "--log-file", &log], &[]);
        assert_eq!(out.code, 78, "{url}: {}", out.stderr);
        assert!(
            !out.stderr.contains("S3cr3t") && !out.stdout.contains("S3cr3t"),
            "{url} leaked: {}{}",
            out.stderr,
            out.stdout
        );
    }
    // The same from the environment (the env file's QUANTUM_REDIS_URL).
    let out = run_trigger(
        &["--log-file", &log],
        &[("QUANTUM_REDIS_URL", "redis://u:S3cr3t@h:99999")],
    );
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(!out.stderr.contains("S3cr3t"), "{}", out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(!text.contains("S3cr3t") && text.contains("****"), "{text}");
    // A URL where an option was expected: a usage error that quotes it.
    let out = run_trigger(&["redis://u:S3cr3t@h", "--log-file", &log, "--json"], &[]);
    assert_eq!(out.code, 64, "{}", out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !format!("{}{}{text}", out.stderr, out.stdout).contains("S3cr3t"),
        "{}{}{text}",
        out.stderr,
        out.stdout
    );
}

/// 40 entries parked in TO at the front of the PEL, 20 stuck with a dead
/// consumer behind them; a run examines at most 2 batches of 5.
#[test]
fn a_backlog_behind_parked_entries_drains_over_runs_with_the_state_dir() {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 40);
    let parked = read_as(&mut con, "recovery", 40);
    age_entries(&mut con, "recovery", &parked, 120_000);
    let stuck_ids = add_entries(&mut con, 20);
    let stuck = read_as(&mut con, "exec-1", 20);
    age_entries(&mut con, "exec-1", &stuck, 120_000);
    let url = url_of(&server.socket());
    let state = TempDir::new("state");
    let state_dir = state.path().to_str().unwrap();
    let base = [
        "--url",
        &url,
        "--min-idle",
        "60s",
        "--count",
        "5",
        "--scan",
        "5",
        "--max-batches",
        "2",
        "--to",
        "recovery",
        "--json",
    ];
    let claimed_by = |extra: &[&str]| {
        let mut argv = base.to_vec();
        argv.extend_from_slice(extra);
        let out = run_trigger(&argv, &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let ids: Vec<String> = out.json()["claimed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        (ids, out)
    };
    // Without a state dir every run sees the same 10 parked entries, and says so.
    for _ in 0..3 {
        let (ids, out) = claimed_by(&[]);
        assert!(ids.is_empty());
        assert!(
            out.stderr
                .contains("starts again at the beginning of the PEL"),
            "{}",
            out.stderr
        );
    }
    // With one, each run continues where the last stopped.
    let mut claimed = Vec::new();
    let mut runs = 0;
    while claimed.len() < stuck.len() {
        runs += 1;
        assert!(runs <= 10, "not drained after 10 runs: {claimed:?}");
        let (ids, out) = claimed_by(&["--state-dir", state_dir]);
        if runs > 1 {
            assert!(!out.json()["resumed_from"].is_null(), "{}", out.stdout);
        }
        claimed.extend(ids);
    }
    assert_same_ids(
        &claimed,
        &stuck_ids,
        "each stuck entry moved once, in order",
    );
    // The end of the PEL was reached: the file is gone, the next run starts over.
    let (ids, out) = claimed_by(&["--state-dir", state_dir]);
    if out.json()["cursor"] == "0-0" {
        assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
    }
    assert!(ids.is_empty());

    // A corrupt state file: a WARN, and the run starts at the beginning.
    let (_, _) = claimed_by(&["--state-dir", state_dir]);
    for entry in std::fs::read_dir(state.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), "garbage").unwrap();
    }
    let (_, out) = claimed_by(&["--state-dir", state_dir]);
    assert!(out.json()["resumed_from"].is_null(), "{}", out.stdout);
    assert!(
        out.stderr.contains("WARN") && out.stderr.contains("starting at the beginning"),
        "{}",
        out.stderr
    );
}

#[test]
fn usage_and_env_file_errors_write_metrics_and_a_log_line() {
    let (_server, url) = zombie_server();
    let dir = TempDir::new("early");
    let metrics = path_str(&dir, "m.prom");
    let log = path_str(&dir, "l.log");
    let env = [
        ("QUANTUM_REDIS_URL", url.as_str()),
        ("QUANTUM_METRICS_FILE", metrics.as_str()),
        ("QUANTUM_LOG_FILE", log.as_str()),
        ("QUANTUM_MIN_IDLE", "100ms"),
    ];
    let out = run_trigger(&[], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let success = "quantum_stream_recovery_last_run_result{result=\"success\"}";
    let error = "quantum_stream_recovery_last_run_result{result=\"error\"}";
    let text = read_metrics(&metrics);
    assert_eq!(metric(&text, success), Some(1.0));
    let claimed = metric(&text, "quantum_stream_recovery_claimed_total");

    let typo = [env.as_slice(), &[("QUANTUM_COUNT", "1O")]].concat();
    let out = run_trigger(&[], &typo);
    assert_eq!(out.code, 64, "{}", out.stderr);
    let text = read_metrics(&metrics);
    assert_eq!(
        (metric(&text, error), metric(&text, success)),
        (Some(1.0), Some(0.0))
    );
    assert_eq!(
        metric(&text, "quantum_stream_recovery_claimed_total"),
        claimed
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.lines().last().unwrap().contains("[ERROR]"), "{lines}");

    // An env file systemd would refuse (a NUL byte), paths from the command line.
    let env_file = path_str(&dir, "bad.env");
    std::fs::write(&env_file, b"QUANTUM_COUNT=5\0\n").unwrap();
    let metrics2 = path_str(&dir, "m2.prom");
    let out = run_trigger(
        &[
            "--env-file",
            &env_file,
            "--metrics-file",
            &metrics2,
            "--log-file",
            &log,
        ],
        &[],
    );
    assert_eq!(out.code, 78, "{}", out.stderr);
    let text = read_metrics(&metrics2);
    assert_eq!(metric(&text, error), Some(1.0), "{text}");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
}

#[test]
fn a_dry_run_says_so_in_the_log_the_metrics_and_the_json() {
    let (server, url) = zombie_server();
    let dir = TempDir::new("dry");
    let metrics = path_str(&dir, "m.prom");
    let log = path_str(&dir, "l.log");
    let mut argv = vec!["--url", &url, "--dry-run", "--json"];
    argv.extend_from_slice(&SHORT_IDLE_OPTIONS);
    argv.extend(["--metrics-file", &metrics, "--log-file", &log]);
    let out = run_trigger(&argv, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["result"], "dry-run");
    assert!(
        out.stderr.contains("dry run, nothing changed")
            && out.stderr.contains("would delete consumer \"exec-1111\"")
            && !out.stderr.contains(" deleted consumer"),
        "{}",
        out.stderr
    );
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(line.contains(" dry_run=1 claimed=3 "), "{line}");
    let text = read_metrics(&metrics);
    assert_eq!(
        metric(
            &text,
            "quantum_stream_recovery_last_run_result{result=\"dry-run\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "quantum_stream_recovery_last_run_result{result=\"success\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            "quantum_stream_recovery_last_success_timestamp_seconds"
        ),
        None
    );
    assert_eq!(
        metric(&text, "quantum_stream_recovery_claimed_total"),
        Some(0.0)
    );
    let mut con = server.connect();
    assert_eq!(
        consumer_names(&mut con, STREAM, GROUP),
        ["exec-1111", "exec-4242"]
    );
}

#[test]
fn whether_the_mode_key_holds_a_mode_is_exported() {
    let (server, url) = zombie_server();
    let dir = TempDir::new("mode");
    let metrics = path_str(&dir, "m.prom");
    let known = "quantum_stream_recovery_mode_known";
    let mut con = server.connect();
    for (mode_key, value, expected) in [
        ("quantum:mdoe", None, 0.0),
        ("quantum:mode", Some("LIVE"), 1.0),
        ("quantum:hash", None, 0.0),
        ("quantum:mode", Some("TESTNET"), 1.0),
    ] {
        if let Some(value) = value {
            quantum_integration::reply::run(&mut con, &["SET", "quantum:mode", value]).unwrap();
        }
        quantum_integration::reply::run(&mut con, &["HSET", "quantum:hash", "a", "b"]).unwrap();
        let mut argv = vec!["--url", &url, "--mode-key", mode_key, "--json"];
        argv.extend(["--metrics-file", &metrics]);
        argv.extend_from_slice(&SHORT_IDLE_OPTIONS);
        let out = run_trigger(&argv, &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let text = read_metrics(&metrics);
        assert_eq!(metric(&text, known), Some(expected), "{mode_key} {value:?}");
    }
}

#[test]
fn retiring_a_consumer_that_does_not_exist_is_absent() {
    let (_server, url) = zombie_server();
    let out = run_trigger(
        &["retire", "--url", &url, "--consumer", "exec-9999", "--json"],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["result"], "absent", "{}", out.stdout);
    assert!(out.stderr.contains("WARN"), "{}", out.stderr);
}

#[test]
fn bidi_controls_in_names_are_escaped_in_the_log() {
    let (_server, url) = zombie_server();
    let dir = TempDir::new("bidi");
    let log = path_str(&dir, "l.log");
    let group = "g\u{202E}txt.exe";
    let out = run_trigger(&["--url", &url, "--group", group, "--log-file", &log], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains('\u{202E}') && text.contains("\\u{202e}"),
        "{text}"
    );
    assert!(!out.stderr.contains('\u{202E}'), "{}", out.stderr);
}

#[test]
fn a_log_file_is_0640_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let (_server, url) = zombie_server();
    let dir = TempDir::new("umask");
    let log = path_str(&dir, "l.log");
    let script = format!("umask 077; exec \"$0\" --url '{url}' --log-file '{log}'",);
    let trigger = quantum_integration::trigger_path();
    let status = Command::new("sh")
        .args(["-c", &script, trigger.to_str().unwrap()])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "{mode:o}");
}

#[test]
fn rediss_insecure_is_a_bad_url() {
    let out = run_trigger(
        &[
            "--url",
            "rediss://127.0.0.1:1/#insecure",
            "--deadline",
            "2s",
        ],
        &[],
    );
    assert_eq!(out.code, 78, "{}", out.stderr);
}

/// The `_total` counters come from the run's own replies: a user without
/// `+info` still gets all four after a successful run.
#[test]
fn the_counters_need_no_info_permission() {
    let server = Server::start();
    zombie_scenario(&server);
    let mut con = server.connect();
    quantum_integration::reply::run(
        &mut con,
        &[
            "ACL",
            "SETUSER",
            "qr",
            "on",
            ">pw",
            "resetkeys",
            "~quantum:stream:*",
            "%R~quantum:mode",
            "resetchannels",
            "-@all",
            "+quantum.recover",
            "+xpending",
            "+xclaim",
            "+xrange",
            "+xinfo|consumers",
            "+xinfo|groups",
            "+xgroup|createconsumer",
            "+xgroup|delconsumer",
            "+ping",
        ],
    )
    .unwrap();
    let url = format!("unix://{}?user=qr", server.socket().display());
    let dir = TempDir::new("no-info");
    let metrics = path_str(&dir, "m.prom");
    let mut argv = vec!["--url", &url, "--metrics-file", &metrics];
    argv.extend_from_slice(&SHORT_IDLE_OPTIONS);
    let out = run_trigger(&argv, &[("REDISCLI_AUTH", "pw")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = read_metrics(&metrics);
    for (counter, value) in [
        ("claimed", 3.0),
        ("quarantined", 0.0),
        ("dropped", 0.0),
        ("deleted", 2.0),
    ] {
        let series = format!("quantum_stream_recovery_{counter}_total");
        assert_eq!(metric(&text, &series), Some(value), "{text}");
    }
}

/// A fake Redis that accepts every connection and answers whatever it is sent
/// with a reply that never ends, one byte every 500 ms: each byte restarts a
/// socket read timeout, so only an absolute deadline ends the run.
fn dripping_server() -> u16 {
    use std::io::{Read, Write};
    quantum_integration::serve_on_loopback(|mut con| {
        let mut buf = [0u8; 4096];
        if con.read(&mut buf).unwrap_or(0) == 0 {
            return;
        }
        let reply = b"*100000\r\n".iter().chain(b":1\r\n".iter().cycle());
        for byte in reply {
            if con.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

/// The ExecStartPre's command line (`run --env-file … --deadline`) ends
/// within deadline + 1 s whatever the node does: it drips its replies one
/// byte at a time (single server and cluster seed), or it is hung (SIGSTOP).
#[test]
fn the_deadline_holds_against_a_dripping_or_hung_server() {
    let dir = TempDir::new("drip");
    let port = dripping_server();
    let server = Server::start();
    zombie_scenario(&server);
    let stopped = server.pid();
    let urls = [
        format!("redis://127.0.0.1:{port}"),
        format!("redis+cluster://127.0.0.1:{port}"),
        url_of(&server.socket()),
    ];
    let _stopped = Stopped::stop(stopped);
    for url in urls {
        let env_file = path_str(&dir, "recover.env");
        std::fs::write(&env_file, format!("QUANTUM_REDIS_URL={url}\n")).unwrap();
        let metrics = path_str(&dir, "m.prom");
        let args = [
            "run",
            "--env-file",
            &env_file,
            "--deadline",
            "2s",
            "--json",
            "--metrics-file",
            &metrics,
        ];
        let out = run_trigger_within(&args, &[], Duration::from_secs(15));
        eprintln!("{url}: {:?}", out.elapsed);
        assert!(
            out.elapsed <= Duration::from_secs(3),
            "{url}: took {:?} (exit {}): {}",
            out.elapsed,
            out.code,
            out.stderr
        );
        assert_eq!(out.code, 75, "{url}: {}", out.stderr);
        assert_eq!(out.json()["result"], "error", "{url}");
        assert!(
            out.stderr.contains("deadline") || out.stderr.contains("did not answer"),
            "{url}: {}",
            out.stderr
        );
        let text = read_metrics(&metrics);
        let series = "quantum_stream_recovery_last_run_result{result=\"error\"}";
        assert_eq!(metric(&text, series), Some(1.0), "{url}: {text}");
    }
}

/// SIGCONT for a SIGSTOPped server when dropped, even when an assertion failed.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        let status = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// A backlog of `n` idle entries held by `exec-1`, drained one entry per batch
/// by a trigger started in the background (with `extra` options); `interrupt`
/// runs once `recovery` holds 50 of them. Returns the run's exit code, JSON
/// and stderr, and how many entries `recovery` holds then.
fn drain_interrupted(
    extra: &[&str],
    interrupt: impl FnOnce(&mut redis::Connection),
) -> (i32, serde_json::Value, String, usize) {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 3000);
    read_as(&mut con, "exec-1", 3000);
    sleep_ms(20);
    let url = url_of(&server.socket());
    let args = [
        "--url",
        &url,
        "--min-idle",
        "1ms",
        "--count",
        "1",
        "--scan",
        "1",
        "--max-batches",
        "1000000",
        "--json",
    ];
    let child = spawn_trigger(&[&args[..], extra].concat());
    let held = |con: &mut redis::Connection| held_by(con, STREAM, GROUP, "recovery");
    while held(&mut con) < 50 {
        std::thread::sleep(Duration::from_millis(1));
    }
    interrupt(&mut con);
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap();
    let moved = match quantum_integration::reply::run(&mut con, &["EXISTS", STREAM]) {
        Ok(redis::Value::Int(1)) => held(&mut con) as usize,
        _ => usize::MAX,
    };
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        moved,
    )
}

/// The mode switched to LIVE, or the stream deleted, in the middle of a drain:
/// the run says so (refused / absent, at WARN, the mode the refusal named),
/// counts what earlier batches moved, and does not blame --max-batches.
#[test]
fn a_refusal_or_a_vanished_stream_mid_drain_is_reported_as_such() {
    let (code, json, stderr, moved) = drain_interrupted(&[], |con| {
        quantum_integration::reply::run(con, &["SET", "quantum:mode", "LIVE"]).unwrap();
    });
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["result"], "refused", "{json}\n{stderr}");
    assert_eq!(json["mode"], "LIVE", "{json}");
    assert_eq!(json["claimed"].as_array().unwrap().len(), moved, "{json}");
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains("--max-batches"), "{stderr}");

    let (code, json, stderr, _) = drain_interrupted(&[], |con| {
        quantum_integration::reply::run(con, &["DEL", STREAM]).unwrap();
    });
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["result"], "absent", "{json}\n{stderr}");
    assert!(json["claimed"].as_array().unwrap().len() >= 50, "{json}");
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains("--max-batches"), "{stderr}");
}

/// A drain whose call is still unanswered at the deadline (writes paused)
/// reports what the answered batches moved and says the last call's outcome
/// is unknown (review r9 F5).
#[test]
fn a_drain_cut_at_the_deadline_says_the_last_call_is_unknown() {
    let (code, json, stderr, moved) = drain_interrupted(&["--deadline", "2s"], |con| {
        quantum_integration::reply::run(con, &["CLIENT", "PAUSE", "4000", "WRITE"]).unwrap();
    });
    assert_eq!(code, 75, "{stderr}");
    assert_eq!(json["result"], "error", "{json}");
    assert_eq!(json["last_call_unknown"], true, "{json}");
    assert_eq!(json["claimed"].as_array().unwrap().len(), moved, "{json}");
    let error = json["error"].as_str().unwrap();
    for said in [
        "the outcome of the last call is unknown",
        "it may have moved up to 1 more entries to TO (quantum.target)",
    ] {
        assert!(error.contains(said), "{said:?} in {error}");
        assert!(stderr.contains(said), "{said:?} in {stderr}");
    }
}

/// A TCP proxy to `server` that answers the `nth` QUANTUM.RECOVER (and every
/// later one) with `+OK` instead of passing it on.
fn garbling_proxy(server: &Server, nth: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let socket = server.socket();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            let (mut from_client, mut to_client) = (client.try_clone().unwrap(), client);
            let (mut from_server, mut to_server) = (upstream.try_clone().unwrap(), upstream);
            let mut replies = to_client.try_clone().unwrap();
            std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = from_client.read(&mut buf) {
                    let chunk = &buf[..n];
                    if chunk.windows(15).any(|w| w == b"QUANTUM.RECOVER") {
                        seen += 1;
                        if seen >= nth {
                            let _ = replies.write_all(b"+OK\r\n");
                            continue;
                        }
                    }
                    if to_server.write_all(chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// An unexpected reply to a later batch: what the earlier batches moved
/// happened and is reported, with the failure (review r9 F6).
#[test]
fn an_unexpected_reply_on_a_later_batch_keeps_the_earlier_batches() {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 10);
    read_as(&mut con, "exec-1", 10);
    sleep_ms(20);
    let port = garbling_proxy(&server, 3);
    let url = format!("redis://127.0.0.1:{port}");
    let args = [
        "--url",
        &url,
        "--min-idle",
        "1ms",
        "--count",
        "1",
        "--scan",
        "1",
    ];
    let out = run_trigger(&[&args[..], &["--json"]].concat(), &[]);
    let json = out.json();
    assert_eq!(out.code, 76, "{}", out.stderr);
    assert_eq!(json["result"], "error", "{json}");
    assert_eq!(json["batches"], 2, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("unexpected reply"),
        "{json}"
    );
    let held = held_by(&mut con, STREAM, GROUP, "recovery");
    assert_eq!(
        (json["claimed"].as_array().unwrap().len(), held),
        (2, 2),
        "{json}"
    );
}

/// Eight runs at once share one metrics file: no run's claims are lost from
/// `claimed_total`. A garbled file is said (WARN) and what parses is kept.
#[test]
fn concurrent_runs_add_up_in_the_metrics_file_and_garbage_is_said() {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 400);
    read_as(&mut con, "exec-1", 400);
    sleep_ms(20);
    let dir = TempDir::new("metrics-race");
    let metrics = path_str(&dir, "m.prom");
    let url = url_of(&server.socket());
    let args = [
        "--url",
        &url,
        "--min-idle",
        "1ms",
        "--count",
        "5",
        "--scan",
        "400",
        "--max-batches",
        "1",
        "--metrics-file",
        &metrics,
        "--json",
    ];
    let children: Vec<_> = (0..40)
        .map(|_| {
            trigger_command(&args, &[])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reported = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        reported += json["claimed"].as_array().map_or(0, Vec::len);
    }
    let text = read_metrics(&metrics);
    let total = "quantum_stream_recovery_claimed_total";
    assert_eq!(metric(&text, total), Some(reported as f64), "{text}");
    assert_eq!(reported, 200);

    let written = std::fs::read_to_string(&metrics).unwrap();
    std::fs::write(&metrics, format!("{written}garbage{{\n")).unwrap();
    let out = run_trigger(&args, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("WARN"), "{}", out.stderr);
    assert!(out.stderr.contains("garbage"), "{}", out.stderr);
    let text = read_metrics(&metrics);
    assert_eq!(metric(&text, total), Some(205.0), "{text}");
}

/// Consumer names that are not UTF-8 come out with their bytes escaped
/// (`\xNN`), not as U+FFFD: two different names never print alike (review r9 F9).
#[test]
fn names_that_are_not_utf8_are_escaped_not_replaced() {
    let (server, url) = zombie_server();
    let mut con = server.connect();
    for name in [&b"z\xff"[..], "z\u{fffd}".as_bytes(), b"z\\xff"] {
        redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(STREAM)
            .arg(GROUP)
            .arg(name)
            .exec(&mut con)
            .unwrap();
    }
    sleep_ms(150);
    let out = run_trigger(
        &[&["--url", &url, "--json"][..], &SHORT_IDLE_OPTIONS].concat(),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let deleted: Vec<&str> = json["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in ["z\\xff", "z\u{fffd}", "z\\\\xff"] {
        assert!(deleted.contains(&name), "{name:?} in {deleted:?}");
    }
    // stderr then quotes that text as a Rust string, which doubles each `\`
    // once more (README, review r16 F1): still one spelling per name.
    for line in [
        r#"deleted consumer "z\\xff""#,
        r#"deleted consumer "z\\\\xff""#,
    ] {
        assert!(out.stderr.contains(line), "{line} in {}", out.stderr);
    }
}

/// A first call whose reply never comes (writes paused past the deadline):
/// the run says its outcome is unknown and saves no cursor (review r9 F5).
#[test]
fn a_first_call_lost_at_the_deadline_is_unknown_and_saves_no_cursor() {
    let (server, url) = zombie_server();
    let mut con = server.connect();
    let dir = TempDir::new("lost-first");
    let state = path_str(&dir, "state");
    std::fs::create_dir(&state).unwrap();
    quantum_integration::reply::run(&mut con, &["CLIENT", "PAUSE", "2500", "WRITE"]).unwrap();
    let args = [
        "--url",
        &url,
        "--deadline",
        "1s",
        "--state-dir",
        &state,
        "--json",
    ];
    let out = run_trigger(&[&args[..], &SHORT_IDLE_OPTIONS].concat(), &[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    let error = out.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("the outcome of the last call is unknown"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        0,
        "a cursor was saved"
    );
}
