//! Regression tests of issue 15 (a hostile review): NUL bytes in configs, ACL
//! refusals that must come before any change, read-only STATUS under ACL, the
//! mode key's encoding, and a bounded reply on a group of many consumers.

use quantum_integration::reply::{
    group_state, info_counter, pairs, pel, recover, run, text, texts,
};
use quantum_integration::scenario::*;
use quantum_integration::{module_path, Options, Server};
use redis::{Connection, Value};
use std::time::Instant;

const TEXT_CONFIGS: [&str; 5] = [
    "quantum.target",
    "quantum.quarantine",
    "quantum.mode-key",
    "quantum.allowed-modes",
    "quantum.dead-letter",
];

fn config_set_bytes(con: &mut Connection, name: &str, value: &[u8]) -> Result<Value, String> {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query::<Value>(con)
        .map_err(|e| quantum_integration::reply::error_line(&e))
}

fn config_get(con: &mut Connection, pattern: &str) -> Vec<(String, Value)> {
    pairs(&run(con, &["CONFIG", "GET", pattern]).expect("CONFIG GET"))
}

/// A server started from a redis.conf, so CONFIG REWRITE has a file to write.
fn server_with_config_file() -> Server {
    Server::with(Options {
        config_file: Some(String::new()),
        ..Options::default()
    })
}

#[test]
fn a_nul_byte_in_a_string_config_is_refused_and_the_server_lives() {
    let mut server = server_with_config_file();
    let mut con = server.connect();
    for name in TEXT_CONFIGS {
        let before = config_get(&mut con, name);
        for value in [&b"a\0b"[..], b"TESTNET\0", b"\0"] {
            let err = config_set_bytes(&mut con, name, value).unwrap_err();
            assert!(err.contains("NUL"), "{name}: {err}");
        }
        assert_eq!(config_get(&mut con, name), before, "{name} changed");
    }
    let all = config_get(&mut con, "*");
    assert!(all.iter().any(|(k, _)| k == "quantum.allowed-modes"));
    assert_eq!(config_get(&mut con, "quantum.*").len(), 14);
    run(&mut con, &["CONFIG", "REWRITE"]).expect("CONFIG REWRITE");
    assert!(server.is_alive());
    let written = std::fs::read_to_string(server.dir().join("redis.conf")).unwrap();
    assert!(!written.contains('\0'));
}

#[test]
fn a_nul_byte_in_a_redis_conf_line_or_loadmodule_argument_fails_the_start() {
    let module = module_path();
    for (lines, without_module) in [
        (
            "quantum.allowed-modes \"TESTNET\\x00\"\n".to_string(),
            false,
        ),
        ("quantum.target \"a\\x00b\"\n".to_string(), false),
        (
            format!(
                "loadmodule {} allowed-modes \"TESTNET\\x00\"\n",
                module.display()
            ),
            true,
        ),
    ] {
        let started = Server::try_with(Options {
            config_file: Some(lines.clone()),
            without_module,
            ..Options::default()
        });
        match started {
            Err(log) => assert!(log.contains("NUL"), "{lines}: {log}"),
            Ok(_) => panic!("started with a NUL config: {lines}"),
        }
    }
}

/// Entries a permitted call would claim and consumers it would delete.
fn recoverable_group(con: &mut Connection) {
    group_with_mode(con, "TESTNET");
    create_consumer(con, "exec-zombie");
    add_entries(con, 4);
    read_as(con, "exec-dead", 4);
    sleep_ms(20);
}

fn acl_user(con: &mut Connection, name: &str, rules: &[&str]) {
    let mut words = vec!["ACL", "SETUSER", name, "reset", "on", ">pw"];
    words.extend_from_slice(rules);
    run(con, &words).unwrap();
}

/// The counters a refused call must leave alone.
fn work_counters(con: &mut Connection) -> Vec<i64> {
    [
        "runs",
        "claimed",
        "quarantined",
        "dropped",
        "deleted",
        "retires",
    ]
    .iter()
    .map(|name| info_counter(con, name))
    .collect()
}

#[test]
fn a_user_missing_any_command_a_call_may_run_is_refused_before_any_change() {
    let server = Server::start();
    let mut admin = server.connect();
    recoverable_group(&mut admin);
    let cases: [(&str, &[&str]); 9] = [
        (
            "-xinfo",
            &[
                "QUANTUM.RECOVER",
                STREAM,
                GROUP,
                "MINIDLE",
                "1",
                "ZOMBIEIDLE",
                "1",
            ],
        ),
        (
            "-xinfo|consumers",
            &[
                "QUANTUM.RECOVER",
                STREAM,
                GROUP,
                "MINIDLE",
                "1",
                "ZOMBIEIDLE",
                "1",
            ],
        ),
        // With DELETELIMIT 0 the call reads XINFO GROUPS instead.
        (
            "-xinfo|groups",
            &[
                "QUANTUM.RECOVER",
                STREAM,
                GROUP,
                "MINIDLE",
                "1",
                "DELETELIMIT",
                "0",
            ],
        ),
        (
            "-xgroup|createconsumer",
            &["QUANTUM.RECOVER", STREAM, GROUP, "MINIDLE", "1"],
        ),
        (
            "-xrange",
            &["QUANTUM.RECOVER", STREAM, GROUP, "MINIDLE", "1", "DRYRUN"],
        ),
        // RETIRE never reads the consumer list (XINFO): retire_bounded checks it runs without.
        ("-xclaim", &["QUANTUM.RETIRE", STREAM, GROUP, "exec-dead"]),
        ("-xpending", &["QUANTUM.RETIRE", STREAM, GROUP, "exec-dead"]),
        (
            "-xgroup|delconsumer",
            &["QUANTUM.RETIRE", STREAM, GROUP, "exec-dead"],
        ),
        (
            "-xgroup|createconsumer",
            &["QUANTUM.RETIRE", STREAM, GROUP, "exec-dead"],
        ),
    ];
    for (i, (denied, words)) in cases.iter().enumerate() {
        let user = format!("user{i}");
        acl_user(&mut admin, &user, &["+@all", denied, "~*"]);
        let mut con = server.connect_as(&user, "pw");
        let before = (
            group_state(&mut admin, STREAM),
            pel(&mut admin, STREAM, GROUP),
            work_counters(&mut admin),
        );
        let err = run(&mut con, words).unwrap_err();
        assert!(err.starts_with("NOPERM"), "{denied} {words:?}: {err}");
        let after = (
            group_state(&mut admin, STREAM),
            pel(&mut admin, STREAM, GROUP),
            work_counters(&mut admin),
        );
        assert_eq!(after, before, "{denied} {words:?} changed state: {err}");
    }
    // The same call by a permitted user goes through.
    let r = recover(
        &mut admin,
        STREAM,
        GROUP,
        &["MINIDLE", "1", "ZOMBIEIDLE", "1"],
    )
    .unwrap();
    assert_eq!((r.claimed.len(), r.deleted.len()), (4, 2), "{r:?}");
}

#[test]
fn a_read_only_user_may_run_status_but_not_recover() {
    let server = Server::start();
    let mut admin = server.connect();
    recoverable_group(&mut admin);
    run(&mut admin, &["SET", "desk:mode", "TESTNET"]).unwrap();
    acl_user(
        &mut admin,
        "watcher",
        &[
            "%R~quantum:stream:*",
            "%R~quantum:mode",
            "%R~desk:mode",
            "+quantum.status",
            "+quantum.recover",
            "+xinfo",
            "+xpending",
        ],
    );
    let mut watcher = server.connect_as("watcher", "pw");
    for extra in [&[][..], &["MODEKEY", "desk:mode"]] {
        let mut words = vec!["QUANTUM.STATUS", STREAM, GROUP];
        words.extend_from_slice(extra);
        let status = pairs(&run(&mut watcher, &words).expect("read-only STATUS"));
        assert_eq!(text(&status[0].1), "TESTNET");
    }
    let before = pel(&mut admin, STREAM, GROUP);
    let err = recover(&mut watcher, STREAM, GROUP, &["MINIDLE", "1"]).unwrap_err();
    assert!(err.starts_with("NOPERM"), "{err}");
    assert_eq!(pel(&mut admin, STREAM, GROUP), before);
    // COMMAND GETKEYSANDFLAGS (7.0+) shows the declared access.
    let flags = run(
        &mut admin,
        &[
            "COMMAND",
            "GETKEYSANDFLAGS",
            "QUANTUM.STATUS",
            STREAM,
            GROUP,
            "MODEKEY",
            "m",
        ],
    )
    .unwrap();
    let Value::Array(keys) = flags else {
        panic!("{flags:?}")
    };
    for key in keys {
        let Value::Array(parts) = key else { panic!() };
        let key_flags = texts(&parts[1]);
        assert!(key_flags.iter().any(|f| f == "RO"), "{key_flags:?}");
    }
}

fn encoding(con: &mut Connection, key: &str) -> String {
    text(&run(con, &["OBJECT", "ENCODING", key]).unwrap())
}

#[test]
fn reading_the_mode_key_leaves_its_encoding_alone() {
    let server = Server::start();
    let mut con = server.connect();
    recoverable_group(&mut con);
    run(
        &mut con,
        &["CONFIG", "SET", "quantum.allowed-modes", "TESTNET,7"],
    )
    .unwrap();
    let calls: [&[&str]; 4] = [
        &["QUANTUM.STATUS", STREAM, GROUP],
        &["QUANTUM.RECOVER", STREAM, GROUP, "MINIDLE", "1", "DRYRUN"],
        &["QUANTUM.RECOVER", STREAM, GROUP, "MINIDLE", "1"],
        &["QUANTUM.RETIRE", STREAM, GROUP, "nobody"],
    ];
    // embstr (short text), int (a number), and a refused mode.
    for (value, expected) in [("TESTNET", "embstr"), ("7", "int"), ("LIVE", "embstr")] {
        run(&mut con, &["SET", "quantum:mode", value]).unwrap();
        assert_eq!(encoding(&mut con, "quantum:mode"), expected);
        for words in calls {
            let _ = run(&mut con, words);
            assert_eq!(
                encoding(&mut con, "quantum:mode"),
                expected,
                "{value}: {words:?}"
            );
        }
    }
}

/// `consumers` consumers, each holding one entry, built with pipelines.
fn many_stuck_consumers(con: &mut Connection, consumers: usize) {
    group_with_mode(con, "TESTNET");
    for chunk in (0..consumers).collect::<Vec<_>>().chunks(2_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("n")
                .arg(i)
                .ignore();
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(format!("exec-{i}"))
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(STREAM)
                .arg(">")
                .ignore();
        }
        pipe.query::<()>(con).expect("pipeline");
    }
    sleep_ms(5);
}

fn slowest_recover_us(con: &mut Connection) -> i64 {
    let Value::Array(entries) = run(con, &["SLOWLOG", "GET", "10"]).unwrap() else {
        panic!()
    };
    entries
        .iter()
        .filter_map(|e| match e {
            Value::Array(f) if format!("{:?}", f[3]).contains("QUANTUM.RECOVER") => {
                Some(quantum_integration::reply::int(&f[2]))
            }
            _ => None,
        })
        .max()
        .unwrap_or(-1)
}

#[test]
fn kept_is_capped_and_delete_limit_0_skips_the_consumer_pass() {
    const CONSUMERS: usize = 20_000;
    let server = Server::start();
    let mut con = server.connect();
    many_stuck_consumers(&mut con, CONSUMERS);
    run(&mut con, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]).unwrap();
    let options = [
        "COUNT",
        "1",
        "SCAN",
        "1",
        "MINIDLE",
        "100000000",
        "ZOMBIEIDLE",
        "1",
    ];

    let mut with_limit = options.to_vec();
    with_limit.extend(["DELETELIMIT", "1"]);
    let started = Instant::now();
    let value = run(
        &mut con,
        &[&["QUANTUM.RECOVER", STREAM, GROUP][..], &with_limit].concat(),
    )
    .unwrap();
    let full_pass = (started.elapsed(), slowest_recover_us(&mut con));
    let reply = pairs(&value);
    let keys: Vec<&str> = reply.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.last(), Some(&"kept-total"), "{keys:?}");
    let r = quantum_integration::Recovery::from_value(&value);
    assert_eq!(r.kept.len(), 100);
    assert_eq!(r.kept_total, Some(CONSUMERS as i64));
    assert_eq!(
        (r.pending, r.consumers),
        (CONSUMERS as i64, CONSUMERS as i64)
    );

    run(&mut con, &["SLOWLOG", "RESET"]).unwrap();
    let mut skipping = options.to_vec();
    skipping.extend(["DELETELIMIT", "0"]);
    let started = Instant::now();
    let r = recover(&mut con, STREAM, GROUP, &skipping).unwrap();
    let skipped = (started.elapsed(), slowest_recover_us(&mut con));
    assert!(r.kept.is_empty() && r.kept_total.is_none(), "{r:?}");
    assert_eq!(
        (r.pending, r.consumers),
        (CONSUMERS as i64, CONSUMERS as i64)
    );
    assert_eq!(r.scanned, 1);
    println!(
        "{CONSUMERS} consumers: consumer pass {:?} elapsed, {} us in SLOWLOG; \
         DELETELIMIT 0 {:?} elapsed, {} us in SLOWLOG",
        full_pass.0, full_pass.1, skipped.0, skipped.1
    );
}

/// Starts a server from exactly `lines` (its own loadmodule line included).
fn try_start_from(lines: &str) -> Result<Server, String> {
    Server::try_with(Options {
        config_file: Some(lines.to_string()),
        without_module: true,
        ..Options::default()
    })
}

/// CONFIG REWRITE, then a new server started from the rewritten file (the
/// harness's own command-line settings still apply on top of it). The old
/// server's directory, named in the file, must exist while the new one starts.
fn restart_from_rewrite(server: Server) -> Result<Server, String> {
    let mut con = server.connect();
    run(&mut con, &["CONFIG", "REWRITE"]).expect("CONFIG REWRITE");
    let written = std::fs::read_to_string(server.dir().join("redis.conf")).unwrap();
    try_start_from(&written)
}

fn config_value(con: &mut Connection, name: &str) -> String {
    text(&config_get(con, name)[0].1)
}

#[test]
fn a_loadmodule_argument_config_rewrite_cannot_write_back_fails_the_load() {
    let module = module_path();
    for (arg, value) in [
        ("target", "\"exec 1\""),
        ("allowed-modes", "\"\""),
        ("target", "'a\"b'"),
        ("quantum.quarantine", "\"a\\\\b\""),
        ("mode-key", "\"a\\tb\""),
        ("mode-key", "\"caf\\xc3\\xa9\""),
        ("target", "\"it's\""),
    ] {
        let lines = format!("loadmodule {} {arg} {value}\n", module.display());
        let log = match try_start_from(&lines) {
            Ok(_) => panic!("loaded with {lines}"),
            Err(log) => log,
        };
        let short = arg.trim_start_matches("quantum.");
        assert!(
            log.contains("not loaded")
                && log.contains(&format!("loadmodule argument '{short}'"))
                && log.contains(&format!("quantum.{short}")),
            "{lines}:\n{log}"
        );
    }
    // Plain values survive CONFIG REWRITE of the loadmodule line and a restart.
    let lines = format!(
        "loadmodule {} target exec-1 quantum.allowed-modes TESTNET,PAPER count 7\n",
        module.display()
    );
    let server = try_start_from(&lines).expect("plain arguments load");
    let server = restart_from_rewrite(server).expect("restart from the rewritten file");
    let mut con = server.connect();
    assert_eq!(config_value(&mut con, "quantum.target"), "exec-1");
    assert_eq!(
        config_value(&mut con, "quantum.allowed-modes"),
        "TESTNET,PAPER"
    );
    assert_eq!(config_value(&mut con, "quantum.count"), "7");
}

#[test]
fn redis_conf_lines_and_config_rewrite_win_over_loadmodule_arguments() {
    let module = module_path();
    let lines = format!(
        "loadmodule {} allowed-modes TESTNET,LIVE count 7 quantum.scan 50\n",
        module.display()
    );
    let server = try_start_from(&lines).expect("start");
    let mut con = server.connect();
    assert_eq!(
        config_value(&mut con, "quantum.allowed-modes"),
        "TESTNET,LIVE"
    );
    assert_eq!(config_value(&mut con, "quantum.scan"), "50");
    for (name, value) in [
        ("quantum.allowed-modes", "TESTNET"),
        ("quantum.count", "9"),
        ("quantum.scan", "1000"),
    ] {
        run(&mut con, &["CONFIG", "SET", name, value]).unwrap();
    }
    drop(con);
    let server = restart_from_rewrite(server).expect("restart from the rewritten file");
    let mut con = server.connect();
    assert_eq!(config_value(&mut con, "quantum.allowed-modes"), "TESTNET");
    assert_eq!(config_value(&mut con, "quantum.count"), "9");
    assert_eq!(config_value(&mut con, "quantum.scan"), "1000");
    recoverable_group(&mut con);
    run(&mut con, &["SET", "quantum:mode", "LIVE"]).unwrap();
    let before = pel(&mut con, STREAM, GROUP);
    let err = recover(&mut con, STREAM, GROUP, &["MINIDLE", "1"]).unwrap_err();
    assert!(err.contains("LIVE"), "{err}");
    assert_eq!(pel(&mut con, STREAM, GROUP), before);

    // A quantum.* line wins over the argument, in either spelling of its name.
    for arg in ["allowed-modes", "quantum.allowed-modes"] {
        let lines = format!(
            "loadmodule {} {arg} TESTNET,LIVE\nquantum.allowed-modes TESTNET\n",
            module.display()
        );
        let server = try_start_from(&lines).expect("start");
        let mut con = server.connect();
        assert_eq!(config_value(&mut con, "quantum.allowed-modes"), "TESTNET");
    }
}

#[test]
fn an_empty_name_in_a_redis_conf_line_fails_the_start() {
    for name in ["target", "quarantine", "mode-key"] {
        let lines = format!("quantum.{name} \"\"\n");
        let started = Server::try_with(Options {
            config_file: Some(lines.clone()),
            ..Options::default()
        });
        match started {
            Err(log) => assert!(
                log.contains(&format!("quantum.{name}")) && log.contains("must not be empty"),
                "{lines}:\n{log}"
            ),
            Ok(server) => {
                let mut con = server.connect();
                panic!(
                    "started with {lines}: {:?}",
                    config_get(&mut con, &format!("quantum.{name}"))
                );
            }
        }
    }
    // An empty allowed-modes list is allowed and allows nothing.
    let server = Server::with(Options {
        config_file: Some("quantum.allowed-modes \"\"\n".into()),
        ..Options::default()
    });
    let mut con = server.connect();
    assert_eq!(config_value(&mut con, "quantum.allowed-modes"), "");
    recoverable_group(&mut con);
    let err = recover(&mut con, STREAM, GROUP, &["MINIDLE", "1"]).unwrap_err();
    assert!(err.contains("TESTNET"), "{err}");
}

#[test]
fn the_configured_mode_key_needs_the_command_and_the_key_in_one_selector() {
    let server = Server::start();
    let mut admin = server.connect();
    recoverable_group(&mut admin);
    run(&mut admin, &["SET", "quantum:mode", "SECRET-VALUE"]).unwrap();
    let commands = [
        "+quantum.status",
        "+quantum.recover",
        "+xinfo",
        "+xpending",
        "+xclaim",
        "+xautoclaim",
        "+xgroup",
        "+get",
    ];
    let mut rules = vec!["~quantum:stream:*", "(~quantum:mode %R~nothing)"];
    rules.extend_from_slice(&commands);
    acl_user(&mut admin, "selector", &rules);
    let mut user = server.connect_as("selector", "pw");
    let err = run(&mut user, &["GET", "quantum:mode"]).unwrap_err();
    assert!(err.starts_with("NOPERM"), "{err}");
    let before = pel(&mut admin, STREAM, GROUP);
    for extra in [&[][..], &["MODEKEY", "quantum:mode"]] {
        let mut words = vec!["QUANTUM.STATUS", STREAM, GROUP];
        words.extend_from_slice(extra);
        let err = run(&mut user, &words).unwrap_err();
        assert!(
            err.starts_with("NOPERM") && !err.contains("SECRET"),
            "{words:?}: {err}"
        );
        let err = recover(
            &mut user,
            STREAM,
            GROUP,
            &[&["MINIDLE", "1"], extra].concat(),
        )
        .unwrap_err();
        assert!(
            err.starts_with("NOPERM") && !err.contains("SECRET"),
            "{extra:?}: {err}"
        );
    }
    assert_eq!(pel(&mut admin, STREAM, GROUP), before);

    // With the key in the command's own selector the same calls read it.
    rules[0] = "~quantum:*";
    acl_user(&mut admin, "selector", &rules);
    let status = pairs(&run(&mut user, &["QUANTUM.STATUS", STREAM, GROUP]).unwrap());
    assert_eq!(text(&status[0].1), "SECRET-VALUE");
}
