use super::*;

fn defaults() -> Defaults {
    Defaults {
        to: b"recovery".to_vec(),
        quarantine: b"quarantine".to_vec(),
        mode_key: b"quantum:mode".to_vec(),
        min_idle: 60_000,
        count: 100,
        scan: 1_000,
        zombie_idle: 3_600_000,
        delete_limit: 1_000,
        max_deliveries: 0,
        retire_count: 1_000,
        dead_letter: Vec::new(),
        dead_letter_maxlen: 100_000,
    }
}

fn parse(line: &str) -> Result<RecoverRequest, ArgError> {
    let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    parse_recover(&argv, &defaults())
}

fn error(line: &str) -> String {
    match parse(line) {
        Err(ArgError::Invalid(message)) => message,
        other => panic!("{line}: expected an error, got {other:?}"),
    }
}

#[test]
fn defaults_apply_when_no_option_is_given() {
    let request = parse("QUANTUM.RECOVER s g").unwrap();
    assert_eq!(request.to, b"recovery");
    assert_eq!(
        (request.min_idle, request.count, request.scan),
        (60_000, 100, 1_000)
    );
    assert_eq!(request.cursor, None);
    assert!(!request.dry_run);
}

#[test]
fn every_option_in_any_order_and_case() {
    let request = parse(
        "x s g dryrun Modekey m:{s} quarantine q maxdeliveries 5 deletelimit 0 zombieidle 9 cursor 17-3 scan 50 count 50 minidle 1 to r",
    )
    .unwrap();
    assert_eq!(request.to, b"r");
    assert_eq!(request.quarantine, b"q");
    assert_eq!(request.mode_key.name, b"m:{s}");
    assert_eq!(request.mode_key.argv_pos, Some(5));
    assert_eq!((request.min_idle, request.count, request.scan), (1, 50, 50));
    assert_eq!(request.cursor, Some(StreamId { ms: 17, seq: 3 }));
    assert_eq!(
        (
            request.zombie_idle,
            request.delete_limit,
            request.max_deliveries
        ),
        (9, 0, 5)
    );
    assert!(request.dry_run);
}

#[test]
fn arity() {
    assert_eq!(parse("x s"), Err(ArgError::WrongArity));
}

#[test]
fn bad_input_names_the_option() {
    for (line, expected) in [
        ("x s g MINIDLE 0", "MINIDLE must be an integer from 1 to"),
        (
            "x s g COUNT 0",
            "COUNT must be an integer from 1 to 10000, got '0'",
        ),
        (
            "x s g COUNT 10001",
            "COUNT must be an integer from 1 to 10000",
        ),
        ("x s g COUNT -5", "got '-5'"),
        ("x s g COUNT +5", "got '+5'"),
        ("x s g COUNT 5x", "got '5x'"),
        (
            "x s g MINIDLE 99999999999999999999",
            "MINIDLE must be an integer",
        ),
        (
            "x s g COUNT 200 SCAN 100",
            "SCAN 100 must be at least COUNT 200",
        ),
        (
            "x s g COUNT 2000",
            "SCAN 1000 (from quantum.scan) must be at least COUNT 2000",
        ),
        ("x s g CURSOR abc", "CURSOR must be a stream ID"),
        ("x s g CURSOR 1-2-3", "CURSOR must be a stream ID"),
        ("x s g FOO 1", "unknown option 'FOO'"),
        ("x s g COUNT 5 count 6", "COUNT given more than once"),
        ("x s g DRYRUN DRYRUN", "DRYRUN given more than once"),
        ("x s g COUNT", "COUNT needs a value"),
        ("x s g TO ", "TO must not be empty"),
        (
            "x s g TO quarantine",
            "TO and QUARANTINE must name different consumers",
        ),
    ] {
        let message = error(line);
        assert!(message.starts_with("ERR "), "{line}: {message}");
        assert!(message.contains(expected), "{line}: {message}");
    }
}

#[test]
fn stream_ids() {
    assert_eq!(StreamId::parse(b"5"), Some(StreamId { ms: 5, seq: 0 }));
    assert_eq!(
        StreamId::parse(b"18446744073709551615-18446744073709551615"),
        Some(StreamId::MAX)
    );
    assert_eq!(StreamId::parse(b"18446744073709551616-0"), None);
    assert_eq!(StreamId::parse(b"-1"), None);
    assert_eq!(StreamId::parse(b""), None);
    assert_eq!(StreamId { ms: 5, seq: 1 }.to_string(), "5-1");
}

#[test]
fn status_and_retire_arguments() {
    let argv: Vec<&[u8]> = vec![b"x", b"s", b"g", b"zombieidle", b"5", b"MODEKEY", b"m"];
    let status = parse_status(&argv, &defaults()).unwrap();
    assert_eq!((status.zombie_idle, status.mode_key.argv_pos), (5, Some(6)));
    assert!(matches!(
        parse_status(&argv[..2], &defaults()),
        Err(ArgError::WrongArity)
    ));
    assert!(
        matches!(parse_status(&[b"x", b"s", b"g", b"TO", b"r"], &defaults()), Err(ArgError::Invalid(m)) if m.contains("unknown option 'TO' for QUANTUM.STATUS"))
    );

    let retire = parse_retire(
        &[b"x", b"s", b"g", b"exec-1", b"to", b"adopter"],
        &defaults(),
    )
    .unwrap();
    assert_eq!(
        (retire.consumer.as_slice(), retire.to.as_slice()),
        (&b"exec-1"[..], &b"adopter"[..])
    );
    assert_eq!(
        parse_retire(&[b"x", b"s", b"g", b"c"], &defaults())
            .unwrap()
            .to,
        b"recovery"
    );
    assert!(matches!(
        parse_retire(&[b"x", b"s", b"g"], &defaults()),
        Err(ArgError::WrongArity)
    ));
    assert!(
        matches!(parse_retire(&[b"x", b"s", b"g", b"recovery"], &defaults()), Err(ArgError::Invalid(m)) if m.contains("must differ"))
    );
    assert!(
        matches!(parse_retire(&[b"x", b"s", b"g", b""], &defaults()), Err(ArgError::Invalid(m)) if m.contains("consumer must not be empty"))
    );
}

#[test]
fn retire_leaves_the_quarantine_consumer_alone() {
    let retire = |argv: &[&[u8]]| parse_retire(argv, &defaults());
    assert!(
        matches!(retire(&[b"x", b"s", b"g", b"quarantine"]), Err(ArgError::Invalid(m)) if m.contains("'quarantine' is the quarantine consumer"))
    );
    assert!(
        matches!(retire(&[b"x", b"s", b"g", b"exec-1", b"TO", b"quarantine"]), Err(ArgError::Invalid(m)) if m.contains("TO 'quarantine' is the quarantine consumer"))
    );
    // Adopting what recovery parked is what RETIRE is for.
    assert!(retire(&[b"x", b"s", b"g", b"recovery", b"TO", b"exec-1"]).is_ok());
}

#[test]
fn retire_count_and_status_limit() {
    let retire = |extra: &[&[u8]]| {
        let mut argv: Vec<&[u8]> = vec![b"x", b"s", b"g", b"exec-1"];
        argv.extend_from_slice(extra);
        parse_retire(&argv, &defaults())
    };
    assert_eq!(
        retire(&[]).unwrap().count,
        1_000,
        "from quantum.retire-count"
    );
    assert_eq!(retire(&[b"count", b"100000"]).unwrap().count, 100_000);
    assert!(
        matches!(retire(&[b"COUNT", b"100001"]), Err(ArgError::Invalid(m)) if m == "ERR COUNT must be an integer from 1 to 100000, got '100001'")
    );
    assert!(matches!(
        retire(&[b"COUNT", b"0"]),
        Err(ArgError::Invalid(_))
    ));

    let status = |extra: &[&[u8]]| {
        let mut argv: Vec<&[u8]> = vec![b"x", b"s", b"g"];
        argv.extend_from_slice(extra);
        parse_status(&argv, &defaults())
    };
    assert_eq!(status(&[]).unwrap().limit, 100);
    assert_eq!(status(&[b"Limit", b"10000"]).unwrap().limit, 10_000);
    assert!(
        matches!(status(&[b"LIMIT", b"0"]), Err(ArgError::Invalid(m)) if m == "ERR LIMIT must be an integer from 1 to 10000, got '0'")
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn arg() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::sample::select(vec![
                "TO",
                "to",
                "MINIDLE",
                "COUNT",
                "count",
                "SCAN",
                "CURSOR",
                "ZOMBIEIDLE",
                "DELETELIMIT",
                "MAXDELIVERIES",
                "QUARANTINE",
                "MODEKEY",
                "DRYRUN",
                "LIMIT",
                "0",
                "1",
                "-1",
                "10000",
                "10001",
                "100000",
                "100001",
                "99999999999999999999",
                "1-1",
                "",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..12),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// Any argv: no panic, and whatever parses keeps every documented limit.
        #[test]
        fn parsers_never_panic_and_accept_only_valid_requests(argv in prop::collection::vec(arg(), 0..16)) {
            let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            if let Ok(r) = parse_recover(&argv, &defaults()) {
                prop_assert!((1..=10_000).contains(&r.count) && r.scan >= r.count && r.scan <= 100_000);
                prop_assert!(r.min_idle >= 1 && r.zombie_idle >= 1 && (0..=100_000).contains(&r.delete_limit));
                prop_assert!(r.to != r.quarantine && !r.to.is_empty() && !r.mode_key.name.is_empty());
                if let Some(pos) = r.mode_key.argv_pos {
                    prop_assert_eq!(argv[pos], r.mode_key.name.as_slice());
                }
            }
            if let Ok(r) = parse_status(&argv, &defaults()) {
                prop_assert!(r.zombie_idle >= 1 && (1..=10_000).contains(&r.limit));
            }
            if let Ok(r) = parse_retire(&argv, &defaults()) {
                prop_assert!(!r.consumer.is_empty() && r.consumer != r.to);
                prop_assert!(r.consumer != b"quarantine" && r.to != b"quarantine");
                prop_assert!((1..=100_000).contains(&r.count));
            }
        }
    }
}

#[test]
fn deadletter_names_the_copy_stream_or_the_config_does() {
    assert_eq!(parse("x s g").unwrap().dead_letter, None, "off by default");
    let given = parse("x s g deadletter dl:{s} COUNT 5").unwrap();
    assert_eq!(
        given.dead_letter,
        Some(DeadLetter {
            name: b"dl:{s}".to_vec(),
            argv_pos: Some(4),
            maxlen: 100_000,
        })
    );
    let configured = Defaults {
        dead_letter: b"dl".to_vec(),
        dead_letter_maxlen: 7,
        ..defaults()
    };
    let argv: Vec<&[u8]> = vec![b"x", b"s", b"g"];
    let request = parse_recover(&argv, &configured).unwrap();
    assert_eq!(
        request.dead_letter,
        Some(DeadLetter {
            name: b"dl".to_vec(),
            argv_pos: None,
            maxlen: 7,
        })
    );
}

#[test]
fn a_bad_deadletter_is_refused_by_name() {
    for (line, expected) in [
        ("x s g DEADLETTER", "DEADLETTER needs a value"),
        ("x s g DEADLETTER s", "DEADLETTER 's' is the stream itself"),
        (
            "x s g DEADLETTER quantum:mode",
            "DEADLETTER 'quantum:mode' is the mode key",
        ),
        (
            "x s g DEADLETTER a DEADLETTER b",
            "DEADLETTER given more than once",
        ),
    ] {
        let message = error(line);
        assert!(message.contains(expected), "{line}: {message}");
    }
    let empty: Vec<&[u8]> = vec![b"x", b"s", b"g", b"DEADLETTER", b""];
    match parse_recover(&empty, &defaults()) {
        Err(ArgError::Invalid(m)) => assert!(m.contains("DEADLETTER must not be empty"), "{m}"),
        other => panic!("{other:?}"),
    }
    let configured = Defaults {
        dead_letter: b"s".to_vec(),
        ..defaults()
    };
    let argv: Vec<&[u8]> = vec![b"x", b"s", b"g"];
    match parse_recover(&argv, &configured) {
        Err(ArgError::Invalid(m)) => {
            assert!(
                m.contains("quantum.dead-letter 's' is the stream itself"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}
