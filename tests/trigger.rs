//! The built `quantum-stream-recover` binary against real redis-server
//! processes: every exit code, the log line, metrics, JSON, TLS, the drain.

use quantum_integration::reply::{consumer_names, pel, run};
use quantum_integration::scenario::*;
use quantum_integration::trigger::{run_trigger, url_of};
use quantum_integration::{Options, Server, TempDir};
use std::process::Command;
use std::time::Duration;

/// A dead consumer with 3 idle entries and a zombie, in TESTNET.
fn zombie_scenario(server: &Server) {
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    create_consumer(&mut con, "exec-1111");
    add_entries(&mut con, 3);
    read_as(&mut con, "exec-4242", 3);
    sleep_ms(150);
}

const FAST: [&str; 4] = ["--min-idle", "100ms", "--zombie-idle", "100ms"];

fn args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--url", url];
    args.extend_from_slice(&FAST);
    args.extend_from_slice(extra);
    args
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn promtool(args: &[&str], input: &str) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed for this test");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} refused:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_run_recovers_logs_a_line_writes_metrics_and_prints_json() {
    let server = Server::start();
    zombie_scenario(&server);
    let dir = TempDir::new("trigger");
    let log = dir.path().join("recover.log");
    let metrics = dir.path().join("quantum.prom");
    let url = url_of(&server.socket());
    let (log_s, metrics_s) = (log.to_str().unwrap(), metrics.to_str().unwrap());

    let out = run_trigger(
        &args(
            &url,
            &["--log-file", log_s, "--metrics-file", metrics_s, "--json"],
        ),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    for (key, expected) in [
        ("result", "success"),
        ("command", "run"),
        ("mode", "TESTNET"),
        ("cursor", "0-0"),
    ] {
        assert_eq!(json[key], expected, "{key} in {json}");
    }
    assert_eq!(json["claimed"].as_array().unwrap().len(), 3);
    assert_eq!(
        json["deleted"],
        serde_json::json!(["exec-1111", "exec-4242"])
    );
    assert_eq!(
        (
            json["batches"].as_u64(),
            json["pending"].as_i64(),
            json["consumers"].as_i64()
        ),
        (Some(1), Some(3), Some(1))
    );
    assert_eq!(json["stream"], STREAM);
    assert!(json["elapsed_ms"].is_u64() && json["exit_code"] == 0 && json["dry_run"] == false);
    assert!(
        out.stderr.contains("recovered stream=") && out.stderr.contains("claimed=3"),
        "{}",
        out.stderr
    );

    let line = std::fs::read_to_string(&log).unwrap();
    let line = line.trim_end();
    let (stamp, rest) = line.split_once(' ').unwrap();
    assert_eq!(stamp.len(), "2026-01-17T10:09:52.123Z".len(), "{line}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T' && stamp.as_bytes()[19] == b'.',
        "{line}"
    );
    let expected = format!(
        "[INFO] stream={STREAM} group={GROUP} claimed=3 quarantined=0 dropped=0 deleted=2 kept=0 batches=1 elapsed_ms="
    );
    assert!(rest.starts_with(&expected), "{line}");

    let text = std::fs::read_to_string(&metrics).unwrap();
    let mode = std::fs::metadata(&metrics).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o644
    );
    assert_eq!(metric(&text, "quantum_stream_recovery_claimed_total"), 3.0);
    assert_eq!(metric(&text, "quantum_stream_recovery_deleted_total"), 2.0);
    assert_eq!(metric(&text, "quantum_stream_recovery_pending"), 3.0);
    assert_eq!(
        metric(
            &text,
            "quantum_stream_recovery_last_run_result{result=\"success\"}"
        ),
        1.0
    );
    let success = metric(
        &text,
        "quantum_stream_recovery_last_success_timestamp_seconds",
    );
    assert!(success > 1.7e9);
    promtool(&["check", "metrics"], &text);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temp file left behind"
    );

    // LIVE: refused, exit 0, WARN; the metrics keep the counters and the last success.
    run(&mut server.connect(), &["SET", "quantum:mode", "LIVE"]).unwrap();
    sleep_ms(20);
    let out = run_trigger(
        &args(&url, &["--log-file", log_s, "--metrics-file", metrics_s]),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("WARN") && out.stderr.contains("MODE refused"),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(
            &text,
            "quantum_stream_recovery_last_run_result{result=\"refused\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "quantum_stream_recovery_last_success_timestamp_seconds"
        ),
        success
    );
    assert_eq!(metric(&text, "quantum_stream_recovery_claimed_total"), 3.0);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .contains(" [WARN] "));
    promtool(&["check", "metrics"], &text);
}

#[test]
fn exit_codes_follow_the_table() {
    let bare = Server::with(Options {
        without_module: true,
        ..Options::default()
    });
    let out = run_trigger(&["--url", &url_of(&bare.socket())], &[]);
    assert_eq!(out.code, 69, "module not loaded: {}", out.stderr);
    assert!(out.stderr.contains("module loaded"), "{}", out.stderr);

    let gone = TempDir::new("gone");
    let nowhere = url_of(&gone.path().join("none.sock"));
    let out = run_trigger(&["--url", &nowhere, "--deadline", "2s"], &[]);
    assert_eq!(out.code, 75, "no server: {}", out.stderr);
    assert!(
        out.elapsed < Duration::from_secs(3),
        "took {:?}",
        out.elapsed
    );

    let options = Options {
        config: vec![("requirepass".into(), "s3cret".into())],
        ..Options::default()
    };
    let locked = Server::with(options);
    let url = url_of(&locked.socket());
    assert_eq!(
        run_trigger(&["--url", &url], &[("REDISCLI_AUTH", "wrong")]).code,
        77,
        "wrong password"
    );
    assert_eq!(run_trigger(&["--url", &url], &[]).code, 77, "no password");

    let dir = TempDir::new("secrets");
    std::fs::write(dir.path().join("redis-password"), "s3cret\n").unwrap();
    let creds = dir.path().to_str().unwrap();
    let out = run_trigger(&["--url", &url], &[("CREDENTIALS_DIRECTORY", creds)]);
    assert_eq!(
        out.code, 0,
        "password from $CREDENTIALS_DIRECTORY: {}",
        out.stderr
    );
    let file = dir.path().join("redis-password");
    assert_eq!(
        run_trigger(
            &["--url", &url, "--password-file", file.to_str().unwrap()],
            &[]
        )
        .code,
        0
    );
    assert_eq!(
        run_trigger(&["--url", &url], &[("REDISCLI_AUTH", "s3cret")]).code,
        0
    );

    assert_eq!(
        run_trigger(&["--url", &url, "--password-file", "/nonexistent/pw"], &[]).code,
        78,
        "unreadable password file"
    );
    assert_eq!(
        run_trigger(&["--url", "nonsense://x"], &[]).code,
        78,
        "bad URL"
    );
    assert_eq!(
        run_trigger(&["--url", "redis://:pw@127.0.0.1:1"], &[]).code,
        78,
        "password in the URL"
    );

    for bad in [
        vec!["--count", "0"],
        vec!["--deadline", "soon"],
        vec!["--bogus"],
        vec!["frobnicate"],
        vec!["retire"],
    ] {
        let mut argv = vec!["--url", url.as_str()];
        argv.extend(bad.iter());
        let out = run_trigger(&argv, &[("REDISCLI_AUTH", "s3cret")]);
        assert_eq!(out.code, 64, "{bad:?}: {}", out.stderr);
    }
    assert_eq!(run_trigger(&["--help"], &[]).code, 0);

    // A reply the trigger cannot use: the stream key holds a string (WRONGTYPE).
    let odd = Server::start();
    let mut con = odd.connect();
    run(&mut con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
    run(&mut con, &["SET", STREAM, "not a stream"]).unwrap();
    let out = run_trigger(&["--url", &url_of(&odd.socket())], &[]);
    assert_eq!(out.code, 76, "{}", out.stderr);
    assert!(out.stderr.contains("WRONGTYPE"), "{}", out.stderr);
}

#[test]
fn nopermission_is_77_and_says_so() {
    let server = Server::start();
    zombie_scenario(&server);
    run(
        &mut server.connect(),
        &[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">pw",
            "+@read",
            "+quantum.recover",
            "~*",
        ],
    )
    .unwrap();
    let url = format!("unix://{}?user=reader", server.socket().display());
    let out = run_trigger(&args(&url, &[]), &[("REDISCLI_AUTH", "pw")]);
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(out.stderr.contains("NOPERM"), "{}", out.stderr);
}

#[test]
fn settings_come_from_the_environment_and_the_env_file_below_it() {
    let server = Server::start();
    zombie_scenario(&server);
    let dir = TempDir::new("env");
    let env_file = dir.path().join("stream-recover.env");
    let url = url_of(&server.socket());
    std::fs::write(
        &env_file,
        format!("# settings\nQUANTUM_REDIS_URL={url}\nexport QUANTUM_MIN_IDLE=100ms\nQUANTUM_ZOMBIE_IDLE=\"100ms\"\nQUANTUM_TO=from-file\n"),
    )
    .unwrap();
    let out = run_trigger(
        &["run", "--env-file", env_file.to_str().unwrap(), "--json"],
        &[("QUANTUM_TO", "from-env")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["claimed"].as_array().unwrap().len(), 3);
    let owners: Vec<String> = pel(&mut server.connect(), STREAM, GROUP)
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(
        owners, ["from-env"; 3],
        "the real environment wins over the env file"
    );
    assert_eq!(
        run_trigger(&["--env-file", "/nonexistent.env"], &[]).code,
        78
    );
}

#[test]
fn dry_run_changes_nothing_and_status_and_retire_work() {
    let server = Server::start();
    zombie_scenario(&server);
    let url = url_of(&server.socket());
    let out = run_trigger(&args(&url, &["--dry-run", "--json"]), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["dry_run"], true);
    assert_eq!(out.json()["claimed"].as_array().unwrap().len(), 3);
    let mut con = server.connect();
    assert_eq!(
        consumer_names(&mut con, STREAM, GROUP),
        ["exec-1111", "exec-4242"]
    );

    let out = run_trigger(&["status", "--url", &url, "--zombie-idle", "100ms"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for expected in [
        "mode         TESTNET (recovery allowed)",
        "CONSUMER",
        "exec-1111  zombie",
        "exec-4242  stuck",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} in:\n{}",
            out.stdout
        );
    }
    let out = run_trigger(&["status", "--url", &url, "--json"], &[]);
    let json = out.json();
    assert_eq!(
        (json["pending"].as_i64(), json["allowed"].as_bool()),
        (Some(3), Some(true))
    );
    assert_eq!(json["consumers"][1]["name"], "exec-4242");

    let out = run_trigger(
        &[
            "retire",
            "--url",
            &url,
            "--consumer",
            "exec-4242",
            "--to",
            "exec-5000",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["moved"].as_array().unwrap().len(), 3);
    assert_eq!(
        consumer_names(&mut con, STREAM, GROUP),
        ["exec-1111", "exec-5000"]
    );
}

#[test]
fn a_ten_thousand_entry_backlog_drains_over_many_batches() {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    let ids = add_entries(&mut con, 10_000);
    for chunk in 0..10 {
        let name = format!("exec-{chunk}");
        let held = read_as(&mut con, &name, 1_000);
        age_entries(&mut con, &name, &held, 120_000);
    }
    let url = url_of(&server.socket());
    let out = run_trigger(
        &[
            "--url",
            &url,
            "--min-idle",
            "60s",
            "--count",
            "700",
            "--scan",
            "700",
            "--json",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["batches"], 15);
    assert_eq!(json["cursor"], "0-0");
    let claimed: Vec<String> = json["claimed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    quantum_integration::reply::assert_same_ids(&claimed, &ids, "drained once each, in order");

    // --max-batches stops early; the next run continues where the PEL still holds work.
    run(
        &mut con,
        &["XGROUP", "DELCONSUMER", STREAM, GROUP, "recovery"],
    )
    .unwrap();
    add_entries(&mut con, 10);
    let held = read_as(&mut con, "exec-x", 10);
    age_entries(&mut con, "exec-x", &held, 120_000);
    let out = run_trigger(
        &[
            "--url",
            &url,
            "--min-idle",
            "60s",
            "--count",
            "3",
            "--scan",
            "3",
            "--max-batches",
            "2",
            "--json",
        ],
        &[],
    );
    assert_eq!(
        (
            out.json()["batches"].as_u64(),
            out.json()["claimed"].as_array().unwrap().len()
        ),
        (Some(2), 6)
    );
    assert!(
        out.stderr.contains("the next run continues"),
        "{}",
        out.stderr
    );
}

#[test]
fn tls_urls_work_with_the_ca_from_ssl_cert_file() {
    let dir = TempDir::new("tls");
    let d = dir.path();
    let sh = |script: &str| {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(d)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null");
    sh("openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null");
    sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null");
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = |f: &str| d.join(f).to_str().unwrap().to_string();
    let started = Server::try_with(Options {
        config: vec![
            ("tls-port".into(), tls_port.to_string()),
            ("tls-cert-file".into(), path("srv.pem")),
            ("tls-key-file".into(), path("srv.key")),
            ("tls-ca-cert-file".into(), path("ca.pem")),
            ("tls-auth-clients".into(), "no".into()),
        ],
        ..Options::default()
    });
    let server = match started {
        Ok(server) => server,
        // A server binary built without TLS (the Redis 8 of the version matrix):
        // TLS is covered by the run against Debian's build.
        Err(log) if log.contains("Failed finding TLS support") => {
            eprintln!(
                "\n!!!!!!!! SKIPPED the TLS test: {} has no TLS support !!!!!!!!\n",
                quantum_integration::redis_server_binary()
            );
            return;
        }
        Err(log) => panic!("{log}"),
    };
    zombie_scenario(&server);
    let url = format!("rediss://localhost:{tls_port}");
    let out = run_trigger(
        &args(&url, &["--json"]),
        &[("SSL_CERT_FILE", &path("ca.pem"))],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["claimed"].as_array().unwrap().len(), 3);
    let out = run_trigger(&args(&url, &[]), &[]);
    assert_eq!(out.code, 75, "an unknown CA is refused: {}", out.stderr);
}

/// The README's least-privilege ACL user can do everything the trigger does.
#[test]
fn the_readme_acl_user_is_enough_for_every_verb() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rule = readme
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with("ACL SETUSER quantum-recover "))
        .expect("README shows the ACL SETUSER line");
    let server = Server::start();
    zombie_scenario(&server);
    let mut con = server.connect();
    let words: Vec<&str> = rule
        .split_whitespace()
        .map(|w| if w == ">CHANGE-ME" { ">pw" } else { w })
        .collect();
    run(&mut con, &words).unwrap();
    let url = format!("unix://{}?user=quantum-recover", server.socket().display());
    let dir = TempDir::new("acl-metrics");
    let metrics = dir.path().join("m.prom");
    let env = [("REDISCLI_AUTH", "pw")];
    for verb in [
        &["status"][..],
        &["run", "--dry-run"],
        &["run", "--metrics-file", metrics.to_str().unwrap()],
        &["retire", "--consumer", "exec-4242"],
    ] {
        let mut argv = args(&url, verb);
        argv.push("--json");
        let out = run_trigger(&argv, &env);
        assert_eq!(out.code, 0, "{verb:?}: {}", out.stderr);
        assert_eq!(out.json()["result"], "success", "{verb:?}: {}", out.stdout);
    }
    assert!(std::fs::read_to_string(&metrics)
        .unwrap()
        .contains("quantum_stream_recovery_claimed_total 3"));
    // ... and no more: it cannot touch other keys or ack.
    let mut limited = server.connect_as("quantum-recover", "pw");
    assert!(run(&mut limited, &["XACK", STREAM, GROUP, "0-1"])
        .unwrap_err()
        .starts_with("NOPERM"));
    assert!(run(&mut limited, &["SET", "quantum:mode", "TESTNET"])
        .unwrap_err()
        .starts_with("NOPERM"));
}
