//! The built `quantum-stream-recover` binary against real redis-server
//! processes: every exit code, the log line, metrics, JSON, TLS, the drain.

use quantum_integration::reply::{command_calls, consumer_names, pel, run};
use quantum_integration::scenario::*;
use quantum_integration::trigger::{
    read_metrics, run_trigger, url_of, zombie_server, SHORT_IDLE_OPTIONS,
};
use quantum_integration::{Options, Server, TempDir};
use std::process::Command;
use std::time::Duration;

fn args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--url", url];
    args.extend_from_slice(&SHORT_IDLE_OPTIONS);
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
    let (server, url) = zombie_server();
    let dir = TempDir::new("trigger");
    let log = dir.path().join("recover.log");
    let metrics = dir.path().join("quantum.prom");
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

    let text = read_metrics(&metrics);
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
    // The log, the metrics and the metrics' lock file (node_exporter reads only *.prom).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "no temp file left behind: {names:?}");
    assert!(
        names[0].starts_with('.') && names[0].ends_with(".lock"),
        "{names:?}"
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
    let text = read_metrics(&metrics);
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
    let named = format!("missing on {}", bare.socket().display());
    assert!(
        out.stderr.contains(&named),
        "names the server: {}",
        out.stderr
    );

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
    let (server, url) = zombie_server();
    let dir = TempDir::new("env");
    let env_file = dir.path().join("stream-recover.env");
    std::fs::write(
        &env_file,
        format!("# settings\nQUANTUM_REDIS_URL={url}\nQUANTUM_MIN_IDLE=100ms\nQUANTUM_ZOMBIE_IDLE=\"100ms\"\nQUANTUM_TO=from-file\n"),
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
    let (server, url) = zombie_server();
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
    // 15 batches reach the end of the PEL; one more runs the consumer step alone.
    assert_eq!(json["batches"], 16);
    assert_eq!(json["cursor"], "0-0");
    let claimed: Vec<String> = json["claimed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    quantum_integration::reply::assert_same_ids(&claimed, &ids, "drained once each, in order");

    // --max-batches stops early; without --state-dir the next run starts over
    // (trigger_hostile.rs drains with one).
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
        out.stderr
            .contains("starts again at the beginning of the PEL"),
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
    let server = Server::start();
    zombie_scenario(&server);
    let mut con = server.connect();
    let words = quantum_integration::readme_acl_user();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    run(&mut con, &words).unwrap();
    let url = format!("unix://{}?user=quantum-recover", server.socket().display());
    let dir = TempDir::new("acl-metrics");
    let metrics = dir.path().join("m.prom");
    let env = [("REDISCLI_AUTH", "pw")];
    // SHORT_IDLE_OPTIONS holds run's options: status and retire refuse them (64).
    for (verb, fast) in [
        (&["status"][..], false),
        (&["run", "--dry-run"], true),
        (&["run", "--metrics-file", metrics.to_str().unwrap()], true),
        // The run deleted exec-4242; the entries it held are now with recovery.
        (
            &["retire", "--consumer", "recovery", "--to", "exec-5000"],
            false,
        ),
    ] {
        let mut argv = match fast {
            true => args(&url, verb),
            false => [&["--url", url.as_str()][..], verb].concat(),
        };
        argv.push("--json");
        let out = run_trigger(&argv, &env);
        assert_eq!(out.code, 0, "{verb:?}: {}", out.stderr);
        let expected = match verb.contains(&"--dry-run") {
            true => "dry-run",
            false => "success",
        };
        assert_eq!(out.json()["result"], expected, "{verb:?}: {}", out.stdout);
    }
    assert!(read_metrics(&metrics).contains("quantum_stream_recovery_claimed_total 3"));
    // ... and no more: it cannot touch other keys or ack.
    let mut limited = server.connect_as("quantum-recover", "pw");
    assert!(run(&mut limited, &["XACK", STREAM, GROUP, "0-1"])
        .unwrap_err()
        .starts_with("NOPERM"));
    assert!(run(&mut limited, &["SET", "quantum:mode", "TESTNET"])
        .unwrap_err()
        .starts_with("NOPERM"));
}

/// Writes `text` to a new file in `dir` and returns its path as a string.
fn file_in(dir: &TempDir, name: &str, text: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The same file systemd reads through EnvironmentFile= (tests/env_file.rs
/// compares the rules with systemd itself): the last duplicate wins, `;`
/// comments, `\` continuation, a BOM line ignored, no panic on odd lines.
#[test]
fn the_env_file_means_what_it_means_to_systemd() {
    let (server, url) = zombie_server();
    let dir = TempDir::new("env-systemd");
    let env_file = file_in(
        &dir,
        "stream-recover.env",
        format!(
            "\u{feff}QUANTUM_TO=bom-line\n; a comment systemd allows\n=no key\nQUANTUM_STREAM=wrong\n\
             QUANTUM_STREAM={STREAM}\nQUANTUM_REDIS_URL={url}\nQUANTUM_MIN_IDLE=100\\\nms\n\
             QUANTUM_ZOMBIE_IDLE=100ms\n"
        )
        .as_bytes(),
    );
    let out = run_trigger(&["--env-file", &env_file, "--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["stream"], STREAM, "the last of two duplicates wins");
    assert_eq!(json["claimed"].as_array().unwrap().len(), 3, "{json}");
    let owners: Vec<String> = pel(&mut server.connect(), STREAM, GROUP)
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(
        owners, ["recovery"; 3],
        "the BOM line is ignored, as systemd ignores it"
    );
    assert!(out.stderr.contains("line 1"), "{}", out.stderr);

    let nul = file_in(&dir, "nul.env", b"QUANTUM_STREAM=a\0b\n");
    let out = run_trigger(&["--env-file", &nul, "--json"], &[]);
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(out.json()["error"].as_str().unwrap().contains("NUL"));
}

/// Every bad input has its documented exit code, a message saying what is
/// wrong, and with --json an object whose exit_code is the process's; no input
/// ends in 101 (a panic).
#[test]
fn every_bad_input_has_its_exit_code_and_json() {
    let server = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    zombie_scenario(&server);
    let url = url_of(&server.socket());
    let tcp = format!("127.0.0.1:{}", server.port.unwrap());
    let dir = TempDir::new("inputs");
    let empty_pw = file_in(&dir, "empty-password", b"\n");
    let not_a_dir = file_in(&dir, "plain-file", b"");
    let unwritable = format!("{not_a_dir}/quantum.prom");
    let cluster_url = format!("redis+cluster://{tcp}");
    let db_url = format!("redis://{tcp}/99");
    let user_url = format!("redis://rec@{tcp}");
    let bad_env = file_in(&dir, "bad.env", b"A=\xff\n");
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--deadline", "0"], vec![], 64, "from 1ms to 24h"),
        (
            vec!["--deadline", "10000000000000000000s"],
            vec![],
            64,
            "from 1ms to 24h",
        ),
        (
            vec!["--min-idle", "10000000000000000000s"],
            vec![],
            64,
            "9223372036854775807ms",
        ),
        (vec!["--bogus"], vec![], 64, "unexpected argument"),
        (
            vec![],
            vec![("QUANTUM_DRY_RUN", "maybe")],
            64,
            "expected a boolean",
        ),
        (vec!["--password-file", &empty_pw], vec![], 78, "is empty"),
        (
            vec!["--url", &cluster_url],
            vec![],
            78,
            "cluster support disabled",
        ),
        (vec!["--url", &db_url], vec![], 78, "no such database"),
        (
            vec!["--url", &user_url],
            vec![],
            78,
            "REDISCLI_AUTH is not set",
        ),
        (
            vec!["--env-file", "/nonexistent.env"],
            vec![],
            78,
            "cannot read --env-file",
        ),
        (vec!["--env-file", &bad_env], vec![], 78, "UTF-8"),
        (
            vec!["--metrics-file", &unwritable],
            vec![],
            73,
            "cannot write metrics",
        ),
        (vec!["--log-file", &unwritable], vec![], 73, "cannot append"),
    ];
    for (extra, env, code, says) in cases {
        let mut argv = vec!["--json"];
        argv.extend(extra.iter());
        let mut env = env.clone();
        env.push(("QUANTUM_REDIS_URL", &url));
        let out = run_trigger(&argv, &env);
        assert_eq!(out.code, code, "{extra:?} {env:?}: {}", out.stderr);
        let json = out.json();
        assert_eq!(json["exit_code"], code, "{extra:?}: {json}");
        let said = format!("{}{}", json["error"], json["output_error"]);
        assert!(
            said.contains(says) && out.stderr.contains(says),
            "{extra:?}: {json} {}",
            out.stderr
        );
    }
    // An argument that is not UTF-8 (std::env::args() would panic: 101).
    let out = quantum_integration::trigger::trigger_command(
        &["--json", "--stream"],
        &[("QUANTUM_REDIS_URL", &url)],
    )
    .arg(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff"))
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["exit_code"], 64);

    // Booleans as systemd users write them (empty is off).
    for (value, on) in [
        ("1", true),
        ("yes", true),
        ("true", true),
        ("on", true),
        ("0", false),
        ("no", false),
        ("false", false),
        ("off", false),
        ("", false),
    ] {
        let out = run_trigger(
            &["--url", &url, "--json"],
            &[("QUANTUM_DRY_RUN", value), ("QUANTUM_MIN_IDLE", "100ms")],
        );
        assert_eq!(out.code, 0, "QUANTUM_DRY_RUN={value:?}: {}", out.stderr);
        assert_eq!(out.json()["dry_run"], on, "QUANTUM_DRY_RUN={value:?}");
        if !on {
            break; // the first real run moved the entries
        }
    }
}

/// A URL naming a user with no password found must not connect as `default`.
#[test]
fn a_user_without_a_password_is_78_and_says_where_it_looked() {
    let server = Server::start();
    zombie_scenario(&server);
    let url = format!("unix://{}?user=quantum-recover", server.socket().display());
    let creds = TempDir::new("no-creds");
    let out = run_trigger(
        &["--url", &url, "--json"],
        &[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())],
    );
    assert_eq!(out.code, 78, "{}", out.stderr);
    let error = out.json()["error"].as_str().unwrap().to_string();
    for source in [
        "--password-file",
        "redis-password does not exist",
        "REDISCLI_AUTH",
    ] {
        assert!(error.contains(source), "{source} in {error}");
    }
    assert_eq!(
        pel(&mut server.connect(), STREAM, GROUP)[0].1,
        "exec-4242",
        "nothing moved"
    );
}

#[test]
fn wrongpass_says_the_acl_user_may_not_exist() {
    let server = Server::start();
    let url = format!("unix://{}?user=quantum-recover", server.socket().display());
    let out = run_trigger(&["--url", &url], &[("REDISCLI_AUTH", "pw")]);
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(
        out.stderr.contains("may not exist") && out.stderr.contains("CONFIG REWRITE"),
        "{}",
        out.stderr
    );
}

/// Only a run that reached the module on a primary feeds the `_total`
/// counters: a replica (READONLY, 75) and a server without the module (69)
/// answer INFO with zeros, which Prometheus would read as a reset and then a
/// phantom increase.
#[test]
fn failed_runs_keep_the_counters_of_the_previous_file() {
    let (primary, replica) = quantum_integration::primary_and_replica();
    zombie_scenario(&primary);
    let bare = Server::with(Options {
        without_module: true,
        ..Options::default()
    });
    let dir = TempDir::new("counters");
    let metrics = dir.path().join("quantum.prom");
    let m = metrics.to_str().unwrap();
    let mut claimed = Vec::new();
    for (server, code) in [(&primary, 0), (&replica, 75), (&bare, 69), (&primary, 0)] {
        let url = url_of(&server.socket());
        let out = run_trigger(&args(&url, &["--metrics-file", m]), &[]);
        assert_eq!(out.code, code, "{}", out.stderr);
        let text = read_metrics(&metrics);
        claimed.push(metric(&text, "quantum_stream_recovery_claimed_total"));
        let result = if code == 0 { "success" } else { "error" };
        let series = format!("quantum_stream_recovery_last_run_result{{result=\"{result}\"}}");
        assert_eq!(metric(&text, &series), 1.0, "{text}");
    }
    assert_eq!(claimed, [3.0, 3.0, 3.0, 3.0], "never reset by a failed run");

    // What Prometheus makes of these files, one run every 2 minutes: no reset,
    // so no phantom increase and no ClaimedHigh.
    let values: Vec<String> = claimed.iter().map(|v| v.to_string()).collect();
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/monitoring/quantum-stream-recover.rules.yml"
    );
    let test = dir.path().join("counters.test.yml");
    std::fs::write(
        &test,
        format!(
            "rule_files: [{rules}]\nevaluation_interval: 1m\ntests:\n  - interval: 2m\n    input_series:\n\
             \x20     - series: quantum_stream_recovery_claimed_total\n        values: \"{} 3x20\"\n\
             \x20   promql_expr_test:\n      - expr: resets(quantum_stream_recovery_claimed_total[1h])\n\
             \x20       eval_time: 20m\n        exp_samples: [{{labels: '{{}}', value: 0}}]\n\
             \x20   alert_rule_test: [{{eval_time: 20m, alertname: QuantumStreamRecoverClaimedHigh, exp_alerts: []}}]\n",
            values.join(" ")
        ),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", test.to_str().unwrap()])
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stream or group that does not exist is result `absent` (exit 0, WARN),
/// which QuantumStreamRecoverGroupMissing watches: a misspelled name shows.
#[test]
fn a_missing_stream_is_result_absent() {
    let (_server, url) = zombie_server();
    let dir = TempDir::new("absent");
    let metrics = dir.path().join("quantum.prom");
    let out = run_trigger(
        &args(
            &url,
            &[
                "--stream",
                "quantum:stream:trade.intnet",
                "--metrics-file",
                metrics.to_str().unwrap(),
                "--json",
            ],
        ),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["result"], "absent");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let series = |result: &str| {
        format!(
            "quantum_stream_recovery_last_run_result{{stream=\"quantum:stream:trade.intnet\",\
             group=\"{GROUP}\",result=\"{result}\"}}"
        )
    };
    assert_eq!(metric(&text, &series("absent")), 1.0);
    assert_eq!(metric(&text, &series("success")), 0.0);
}

/// The metrics writer follows no symlink: not at the old predictable temp
/// name `.NAME.PID.tmp` (planted for the next few thousand PIDs), not at the
/// final path (rename replaces the link).
#[test]
fn the_metrics_writer_follows_no_planted_symlink() {
    let server = Server::start();
    zombie_scenario(&server);
    let dir = TempDir::new("symlinks");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "secret\n").unwrap();
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let metrics = dir.path().join("quantum.prom");
    let last_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for pid in last_pid + 1..last_pid + 3000 {
        std::os::unix::fs::symlink(&victim, dir.path().join(format!(".quantum.prom.{pid}.tmp")))
            .unwrap();
    }
    std::os::unix::fs::symlink(&victim, &metrics).unwrap();
    let out = run_trigger(
        &args(
            &url_of(&server.socket()),
            &["--metrics-file", metrics.to_str().unwrap()],
        ),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
    assert_eq!(mode(&victim), 0o600);
    let meta = std::fs::symlink_metadata(&metrics).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by the file"
    );
    assert_eq!(mode(&metrics), 0o644);
    let text = read_metrics(&metrics);
    assert_eq!(metric(&text, "quantum_stream_recovery_claimed_total"), 3.0);

    // Nor at the log file: appending through a link is refused (exit 73).
    let log = dir.path().join("recover.log");
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let out = run_trigger(
        &args(
            &url_of(&server.socket()),
            &["--log-file", log.to_str().unwrap()],
        ),
        &[],
    );
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
}

/// A deadline reached mid-drain reports what moved: log line, JSON, exit 75.
#[test]
fn a_deadline_mid_drain_reports_what_moved() {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 20_000);
    let held = read_as(&mut con, "exec-1", 20_000);
    age_entries(&mut con, "exec-1", &held, 120_000);
    let dir = TempDir::new("deadline");
    let log = dir.path().join("recover.log");
    let url = url_of(&server.socket());
    let out = run_trigger(
        &[
            "--url",
            &url,
            "--min-idle",
            "60s",
            "--count",
            "1",
            "--scan",
            "1",
            "--max-batches",
            "1000000",
            "--deadline",
            "400ms",
            "--json",
            "--log-file",
            log.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    let json = out.json();
    let moved = json["claimed"].as_array().unwrap().len();
    let with_recovery = pel(&mut con, STREAM, GROUP)
        .iter()
        .filter(|e| e.1 == "recovery")
        .count();
    assert!(moved > 0 && moved < 20_000, "{moved}");
    // A batch whose reply the deadline cut off may have moved one more.
    assert!(
        (moved..=moved + 1).contains(&with_recovery),
        "{moved} reported, {with_recovery} moved"
    );
    assert_eq!(
        (json["result"].as_str(), json["exit_code"].as_u64()),
        (Some("error"), Some(75))
    );
    assert_eq!(json["batches"].as_u64(), Some(moved as u64));
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(
        line.contains(" [ERROR] ")
            && line.contains(&format!("claimed={moved} "))
            && line.contains("error="),
        "{line}"
    );
    assert!(
        out.stderr.contains(&format!("claimed={moved} ")),
        "{}",
        out.stderr
    );
}

/// A newline in a stream or group name cannot forge a log line; the log file
/// is created 0640, as logrotate's `create 0640 quantum quantum`.
#[test]
fn names_are_escaped_in_the_log_and_the_log_file_is_0640() {
    let server = Server::start();
    zombie_scenario(&server);
    let dir = TempDir::new("forge");
    let log = dir.path().join("recover.log");
    let forged = "s\n2026-01-01T00:00:00.000Z [INFO] stream=forged";
    let out = run_trigger(
        &args(
            &url_of(&server.socket()),
            &[
                "--stream",
                forged,
                "--group",
                "g\nx",
                "--log-file",
                log.to_str().unwrap(),
            ],
        ),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(r#"stream="s\n2026-01-01T00:00:00.000Z [INFO] stream=forged" group="g\nx""#),
        "{text}"
    );
    assert!(
        !out.stderr.lines().any(|l| l.starts_with("2026-01-01")),
        "{}",
        out.stderr
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640);
}

/// rediss:// at a plaintext server or at one that never answers fails within
/// the 5 s connect bound, not at the 30 s deadline.
#[test]
fn rediss_to_a_plaintext_or_silent_server_fails_within_the_connect_bound() {
    let plain = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    // Accept and hold every connection, answering nothing.
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    for port in [plain.port.unwrap(), silent_port] {
        let url = format!("rediss://127.0.0.1:{port}");
        let out = run_trigger(&["--url", &url, "--deadline", "30s", "--json"], &[]);
        assert_eq!(out.code, 75, "{url}: {}", out.stderr);
        assert!(
            out.elapsed < Duration::from_secs(7),
            "{url}: took {:?}",
            out.elapsed
        );
        assert_eq!(out.json()["exit_code"], 75);
    }
}

#[test]
fn a_drain_reads_the_consumer_list_on_its_first_and_last_call_only() {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 600);
    let dead: Vec<String> = (0..6).map(|i| format!("exec-{i}")).collect();
    for name in &dead {
        read_as(&mut con, name, 100);
    }
    sleep_ms(150);
    run(&mut con, &["CONFIG", "RESETSTAT"]).unwrap();
    let url = url_of(&server.socket());
    let args = [
        &["--url", &url, "--count", "50", "--scan", "50", "--json"][..],
        &SHORT_IDLE_OPTIONS,
    ]
    .concat();
    let out = run_trigger(&args, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    // 12 batches of 50, one that finds the end of the PEL, then one call that
    // runs only the consumer step.
    assert_eq!(json["batches"], 14, "{}", out.stderr);
    assert_eq!(json["claimed"].as_array().unwrap().len(), 600);
    assert_eq!(
        command_calls(&mut con, "xinfo|consumers"),
        2,
        "the consumer list is read by the first call and the last, not by every batch"
    );
    // The consumers the drain emptied were deleted by that last call.
    let mut deleted: Vec<String> = json["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    deleted.sort();
    assert_eq!(deleted, dead);
    assert_eq!(consumer_names(&mut con, STREAM, GROUP), ["recovery"]);

    // With deletion off no call reads the consumer list after the first.
    add_entries(&mut con, 100);
    read_as(&mut con, "exec-9", 100);
    sleep_ms(150);
    run(&mut con, &["CONFIG", "RESETSTAT"]).unwrap();
    let out = run_trigger(&[&args[..], &["--delete-limit", "0"]].concat(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // 700 PEL entries (600 already with recovery) at SCAN 50, then the end.
    let json = out.json();
    assert_eq!(json["batches"], 15);
    assert_eq!(command_calls(&mut con, "xinfo|consumers"), 0);
    // No call judged the consumers: how many were kept is unknown, not 0.
    assert!(json["kept_total"].is_null(), "{json}");
    assert!(out.stderr.contains(" kept=unknown "), "{}", out.stderr);
}

#[test]
fn a_drain_that_ends_on_its_last_allowed_batch_still_deletes_the_zombies_it_emptied() {
    let server = Server::start();
    let mut con = server.connect();
    group_with_mode(&mut con, "TESTNET");
    add_entries(&mut con, 6);
    for name in ["z1", "z2", "z3"] {
        read_as(&mut con, name, 2);
    }
    create_consumer(&mut con, "empty1");
    sleep_ms(150);
    let url = url_of(&server.socket());
    let run_with = |max_batches: &str| {
        let args = [
            &["--url", &url, "--count", "2", "--scan", "2", "--json"][..],
            &SHORT_IDLE_OPTIONS,
            &["--max-batches", max_batches],
        ]
        .concat();
        run_trigger(&args, &[])
    };
    // Three batches of two, a fourth that finds the end: the closing consumer
    // step runs although --max-batches allowed only four.
    let out = run_with("4");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(
        (json["batches"].as_u64(), json["cursor"].as_str()),
        (Some(5), Some("0-0")),
        "{}",
        out.stderr
    );
    let mut deleted: Vec<&str> = json["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, ["empty1", "z1", "z2", "z3"]);
    assert_eq!(consumer_names(&mut con, STREAM, GROUP), ["recovery"]);
    assert!(!out.stderr.contains("too fresh"), "{}", out.stderr);

    // Stopped by --max-batches before the end: who holds what is not known, so no "too fresh" warning.
    add_entries(&mut con, 6);
    for name in ["y1", "y2", "y3"] {
        read_as(&mut con, name, 2);
    }
    sleep_ms(150);
    let out = run_with("2");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_ne!(out.json()["cursor"], "0-0");
    assert!(!out.stderr.contains("too fresh"), "{}", out.stderr);
}
