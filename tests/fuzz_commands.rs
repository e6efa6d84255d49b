//! Random argument vectors to every QUANTUM.* command over a real connection:
//! every call gets a reply or a clean error, the server stays up, and the group
//! changes only through accepted calls. The vocabulary includes NUL bytes and
//! CONFIG SET/GET/REWRITE of the `quantum.*` configs with random values. The
//! seed is printed; QUANTUM_SEED replays it.

use quantum_integration::reply::{consumers, group_state, pairs, pel, run};
use quantum_integration::rng::{seed_from_env, Rng};
use quantum_integration::scenario::*;
use quantum_integration::{Options, Server};
use redis::{Connection, Value};

const KEYWORDS: [&str; 15] = [
    "TO",
    "MINIDLE",
    "COUNT",
    "SCAN",
    "CURSOR",
    "ZOMBIEIDLE",
    "DELETELIMIT",
    "MAXDELIVERIES",
    "QUARANTINE",
    "MODEKEY",
    "DRYRUN",
    "DEADLETTER",
    "LIMIT",
    "BOGUS",
    "",
];
const NUMBERS: [&str; 14] = [
    "0",
    "1",
    "-1",
    "2",
    "100",
    "10000",
    "10001",
    "100000",
    "100001",
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999",
    "-9223372036854775808",
    "1e3",
];

fn random_case(rng: &mut Rng, word: &str) -> Vec<u8> {
    word.bytes()
        .map(|b| {
            if rng.chance(50) {
                b.to_ascii_lowercase()
            } else {
                b
            }
        })
        .collect()
}

const CONFIG_NAMES: [&str; 15] = [
    "quantum.target",
    "quantum.quarantine",
    "quantum.mode-key",
    "quantum.allowed-modes",
    "quantum.min-idle",
    "quantum.count",
    "quantum.scan",
    "quantum.zombie-idle",
    "quantum.delete-limit",
    "quantum.max-deliveries",
    "quantum.retire-count",
    "quantum.retire-budget",
    "quantum.dead-letter",
    "quantum.dead-letter-maxlen",
    "quantum.nope",
];

/// Names and values with NUL bytes in them.
const WITH_NUL: [&[u8]; 4] = [b"\0", b"exec-1\0", b"a\0b", b"TESTNET\0"];

/// One argument: a keyword, a number, an ID, a name that exists, or junk.
fn atom(rng: &mut Rng) -> Vec<u8> {
    match rng.below(13) {
        12 => rng.pick(&WITH_NUL).to_vec(),
        0 | 1 => {
            let word = *rng.pick(&KEYWORDS);
            random_case(rng, word)
        }
        2 => rng.pick(&NUMBERS).as_bytes().to_vec(),
        3 => rng.below(u64::MAX).to_string().into_bytes(),
        4 => {
            let ids = [
                "0-0",
                "1-",
                "-1",
                "18446744073709551615-18446744073709551615",
                "5-5-5",
                "(1-0",
            ];
            let id = if rng.chance(50) {
                rng.pick(&ids).to_string()
            } else {
                format!("{}-{}", rng.below(1 << 45), rng.below(10))
            };
            id.into_bytes()
        }
        5 => (0..rng.below(24)).map(|_| rng.below(256) as u8).collect(),
        6 => Vec::new(),
        7 => STREAM.as_bytes().to_vec(),
        8 => GROUP.as_bytes().to_vec(),
        9 => rng
            .pick(&["exec-1", "exec-2", "recovery", "quarantine", "exec-%s%n"])
            .as_bytes()
            .to_vec(),
        10 => rng
            .pick(&["quantum:mode", "quantum:dead-letter"])
            .as_bytes()
            .to_vec(),
        _ => vec![b'x'; rng.below(20_000) as usize],
    }
}

/// CONFIG SET of a `quantum.*` config to a random value, CONFIG GET, or CONFIG REWRITE.
fn config_argv(rng: &mut Rng) -> Vec<Vec<u8>> {
    let words: Vec<Vec<u8>> = match rng.below(20) {
        0 => vec![b"REWRITE".to_vec()],
        1 => vec![b"GET".to_vec(), b"*".to_vec()],
        2..=4 => vec![b"GET".to_vec(), b"quantum.*".to_vec()],
        _ => vec![
            b"SET".to_vec(),
            rng.pick(&CONFIG_NAMES).as_bytes().to_vec(),
            atom(rng),
        ],
    };
    [vec![b"CONFIG".to_vec()], words].concat()
}

fn argv(rng: &mut Rng) -> Vec<Vec<u8>> {
    if rng.chance(5) {
        return config_argv(rng);
    }
    let command = *rng.pick(&[
        "QUANTUM.RECOVER",
        "QUANTUM.STATUS",
        "QUANTUM.RETIRE",
        "quantum.recover",
    ]);
    let mut argv = vec![command.as_bytes().to_vec()];
    // Mostly well-formed heads, so the options behind them get exercised too.
    if rng.chance(85) {
        argv.push(STREAM.as_bytes().to_vec());
        argv.push(GROUP.as_bytes().to_vec());
        if command == "QUANTUM.RETIRE" && rng.chance(80) {
            argv.push(b"exec-1".to_vec());
        }
    }
    for _ in 0..rng.below(12) {
        argv.push(atom(rng));
    }
    argv
}

/// A group with work for every command: dead consumers with idle entries, a zombie.
fn busy_group(con: &mut Connection, mode: &str) {
    group_with_mode(con, mode);
    create_consumer(con, "exec-zombie");
    add_entries(con, 200);
    for name in ["exec-1", "exec-2"] {
        let ids = read_as(con, name, 80);
        age_entries(con, name, &ids, 120_000);
    }
}

/// A server started from a (empty) redis.conf, so CONFIG REWRITE has a file to write.
fn start_server() -> Server {
    Server::with(Options {
        config_file: Some(String::new()),
        ..Options::default()
    })
}

/// The server answers CONFIG GET * and CONFIG REWRITE, and no config holds a NUL.
fn assert_configs_readable(con: &mut Connection, seed: u64) {
    let all = run(con, &["CONFIG", "GET", "*"]).expect("CONFIG GET *");
    for (name, value) in pairs(&all) {
        if let Value::BulkString(bytes) = value {
            assert!(!bytes.contains(&0), "seed {seed}: {name} holds a NUL");
        }
    }
    run(con, &["CONFIG", "REWRITE"]).expect("CONFIG REWRITE");
}

/// Sends `calls` argument vectors pipelined; returns how many were accepted.
fn send_all(con: &mut Connection, calls: &[Vec<Vec<u8>>]) -> usize {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for argv in calls {
        let mut cmd = redis::cmd(std::str::from_utf8(&argv[0]).unwrap());
        for arg in &argv[1..] {
            cmd.arg(arg.as_slice());
        }
        pipe.add_command(cmd);
    }
    let replies: Vec<Value> = pipe.query(con).expect("every call gets a reply");
    assert_eq!(replies.len(), calls.len());
    replies
        .iter()
        .filter(|r| !matches!(r, Value::ServerError(_)))
        .count()
}

#[test]
fn a_hundred_thousand_random_calls_in_live_change_nothing_and_crash_nothing() {
    let seed = seed_from_env();
    eprintln!("fuzz seed {seed} (QUANTUM_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let mut server = start_server();
    let mut con = server.connect();
    busy_group(&mut con, "LIVE");
    let before = (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP));
    let keys_before = run(&mut con, &["DBSIZE"]).unwrap();

    let mut accepted = 0;
    for _ in 0..200 {
        let calls: Vec<_> = (0..500).map(|_| argv(&mut rng)).collect();
        accepted += send_all(&mut con, &calls);
    }
    assert!(server.is_alive(), "seed {seed}: redis-server died");
    assert_configs_readable(&mut con, seed);
    assert_eq!(
        run(&mut con, &["PING"]).unwrap(),
        Value::SimpleString("PONG".into())
    );
    assert_eq!(
        (group_state(&mut con, STREAM), pel(&mut con, STREAM, GROUP)),
        before,
        "seed {seed}: in LIVE only DRYRUN and STATUS are accepted, and they change nothing"
    );
    assert_eq!(
        run(&mut con, &["DBSIZE"]).unwrap(),
        keys_before,
        "seed {seed}: a key (a dead-letter stream?) was written in LIVE"
    );
    eprintln!("100000 calls, {accepted} accepted (DRYRUN, STATUS and CONFIG)");
    assert!(
        accepted > 1_000,
        "seed {seed}: the generator hardly reaches the commands ({accepted} accepted)"
    );
    assert!(
        !server.log().contains("internal error"),
        "seed {seed}: a panic was caught"
    );
}

#[test]
fn random_calls_in_testnet_change_the_group_only_when_accepted() {
    let seed = seed_from_env() ^ 0x5eed;
    eprintln!(
        "fuzz seed {seed} (QUANTUM_SEED={} replays it)",
        seed ^ 0x5eed
    );
    let mut rng = Rng::new(seed);
    let mut server = start_server();
    let mut con = server.connect();
    busy_group(&mut con, "TESTNET");
    let total_before = pel(&mut con, STREAM, GROUP).len();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..5_000 {
        let call = argv(&mut rng);
        let before = (
            pel(&mut con, STREAM, GROUP),
            consumers(&mut con, STREAM, GROUP).len(),
        );
        if send_all(&mut con, std::slice::from_ref(&call)) == 1 {
            accepted += 1;
            continue;
        }
        refused += 1;
        let after = (
            pel(&mut con, STREAM, GROUP),
            consumers(&mut con, STREAM, GROUP).len(),
        );
        assert_eq!(
            after,
            before,
            "seed {seed}: a refused call changed the group: {:?}",
            String::from_utf8_lossy(&call.concat())
        );
    }
    assert!(server.is_alive());
    assert_configs_readable(&mut con, seed);
    assert_eq!(
        pel(&mut con, STREAM, GROUP).len(),
        total_before,
        "seed {seed}: nothing is ever acked or lost"
    );
    eprintln!("5000 calls: {accepted} accepted, {refused} refused");
    assert!(
        accepted > 100 && refused > 100,
        "seed {seed}: {accepted} accepted, {refused} refused"
    );
}
