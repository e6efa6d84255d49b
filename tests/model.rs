//! Model-based randomized test against a real server. Seeded sequences of
//! XADD, XREADGROUP by consumers that die and are replaced under new PID-style
//! names, XACK, XDEL (of pending entries too), XTRIM, waits, mode flips,
//! QUANTUM.RECOVER with random
//! options (DRYRUN, CURSOR, MAXDELIVERIES, DEADLETTER …), RETIRE and STATUS. After every
//! step the PEL is checked against the model: every delivered, unacked entry is
//! still pending unless its stream entry was deleted; around every QUANTUM.*
//! call: a refused, failed or DRYRUN call changed nothing; an accepted one moved
//! only what it reported, within COUNT, SCAN and DELETELIMIT, deleted only
//! consumers whose every entry it had just moved, and acked nothing; with
//! DEADLETTER it appended exactly one copy per quarantined entry (its ID, last
//! owner and delivery count), and no other call appended any. Every
//! sequence runs on a primary with a replica; in every fourth sequence (and in a
//! replay), after every step, the replica's PEL and consumers (names and
//! pending counts) and dead-letter stream must equal the primary's (S4).
//!
//! 1,000 sequences of 200 steps (QUANTUM_MODEL_SEQUENCES changes the number);
//! a failure prints the sequence's seed, and QUANTUM_SEED=<seed> replays it.

use quantum_integration::reply::{pairs, run, texts, Recovery};
use quantum_integration::rng::{seed_from_env, Rng};
use quantum_integration::scenario::*;
use quantum_integration::{primary_and_replica, Server};
use redis::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const STEPS: usize = 200;
/// Every how many sequences the replica is compared after each step: the
/// comparison triples a sequence's time, so a quarter of them keep the test near 3 minutes
/// (2 minutes without it).
const REPLICA_EVERY: u64 = 4;

/// What the sequences exercised, so the test cannot pass by doing nothing.
struct Exercised {
    recoveries: AtomicUsize,
    claimed: AtomicUsize,
    dropped: AtomicUsize,
    deleted: AtomicUsize,
    retires: AtomicUsize,
    dead_lettered: AtomicUsize,
    refused_or_failed: AtomicUsize,
}

static SEEN: Exercised = Exercised {
    recoveries: AtomicUsize::new(0),
    claimed: AtomicUsize::new(0),
    dropped: AtomicUsize::new(0),
    deleted: AtomicUsize::new(0),
    retires: AtomicUsize::new(0),
    dead_lettered: AtomicUsize::new(0),
    refused_or_failed: AtomicUsize::new(0),
};

fn seen(counter: &AtomicUsize, n: usize) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// One PEL entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pending {
    owner: String,
    deliveries: i64,
    idle: i64,
}

/// id -> its PEL entry
type Pel = BTreeMap<String, Pending>;

fn pel_now(con: &mut Connection) -> Pel {
    quantum_integration::reply::pel_with_idle(con, STREAM, GROUP)
        .into_iter()
        .map(|(id, owner, deliveries, idle)| {
            let entry = Pending {
                owner,
                deliveries,
                idle,
            };
            (id, entry)
        })
        .collect()
}

/// Owners and delivery counts: what must not change when nothing is done.
fn shape(pel: &Pel) -> BTreeMap<String, (String, i64)> {
    pel.iter()
        .map(|(id, e)| (id.clone(), (e.owner.clone(), e.deliveries)))
        .collect()
}

fn consumer_pending(con: &mut Connection) -> BTreeMap<String, i64> {
    quantum_integration::reply::consumers(con, STREAM, GROUP)
        .into_iter()
        .map(|(name, pending, _)| (name, pending))
        .collect()
}

/// Where RECOVER copies quarantined entries when a call passes DEADLETTER.
const DEAD: &str = "quantum:dead-letter";

/// The dead-letter stream's entries: ID and fields.
fn dead_letters(con: &mut Connection) -> Vec<(String, Vec<String>)> {
    match run(con, &["XRANGE", DEAD, "-", "+"]).unwrap() {
        redis::Value::Array(rows) => rows
            .iter()
            .map(|row| match row {
                redis::Value::Array(parts) => (
                    quantum_integration::reply::text(&parts[0]),
                    texts(&parts[1]),
                ),
                other => panic!("XRANGE row {other:?}"),
            })
            .collect(),
        other => panic!("XRANGE {other:?}"),
    }
}

fn dead_letter_len(con: &mut Connection) -> i64 {
    quantum_integration::reply::int(&run(con, &["XLEN", DEAD]).unwrap())
}

/// The group as a replica must see it too: PEL owners and delivery counts,
/// consumer names and pending counts (idle times differ between servers), and
/// the dead-letter stream.
type ReplicatedView = (
    BTreeMap<String, (String, i64)>,
    BTreeMap<String, i64>,
    Vec<(String, Vec<String>)>,
);

fn replicated_view(con: &mut Connection) -> ReplicatedView {
    (
        shape(&pel_now(con)),
        consumer_pending(con),
        dead_letters(con),
    )
}

/// Waits until the replica has applied everything the primary sent, then compares.
fn check_replica(primary: &mut Connection, replica: &mut Connection, seed: u64, step: usize) {
    let acked = quantum_integration::reply::int(&run(primary, &["WAIT", "1", "5000"]).unwrap());
    assert_eq!(acked, 1, "seed {seed} step {step}: the replica did not ack");
    assert_eq!(
        replicated_view(replica),
        replicated_view(primary),
        "seed {seed} step {step}: the replica differs from the primary"
    );
}

struct Model {
    rng: Rng,
    /// Stream entries not deleted by XDEL or XTRIM, oldest first.
    existing: Vec<String>,
    delivered: BTreeSet<String>,
    acked: BTreeSet<String>,
    live: Vec<String>,
    next_pid: u64,
    cursor: Option<String>,
    mode: &'static str,
}

impl Model {
    fn check_no_loss(&self, pel: &Pel, seed: u64, step: usize) {
        for id in self.delivered.difference(&self.acked) {
            let gone = !self.existing.contains(id);
            assert!(
                pel.contains_key(id) || gone,
                "seed {seed} step {step}: {id} left the PEL without an ack"
            );
        }
        for id in pel.keys() {
            assert!(
                self.delivered.contains(id) && !self.acked.contains(id),
                "seed {seed} step {step}: {id} pending unexpectedly"
            );
        }
    }
}

fn quantum_options(rng: &mut Rng, cursor: Option<&String>) -> Vec<String> {
    let count = 1 + rng.below(5);
    let mut options: Vec<String> = vec![
        "MINIDLE".into(),
        rng.pick(&[1, 5, 10, 20]).to_string(),
        "ZOMBIEIDLE".into(),
        rng.pick(&[1, 5, 10, 30]).to_string(),
        "COUNT".into(),
        count.to_string(),
        "SCAN".into(),
        (count + rng.below(6)).to_string(),
        "DELETELIMIT".into(),
        rng.below(4).to_string(),
        "MAXDELIVERIES".into(),
        rng.below(4).to_string(),
    ];
    if rng.chance(50) {
        if let Some(cursor) = cursor {
            options.extend(["CURSOR".into(), cursor.clone()]);
        }
    }
    if rng.chance(50) {
        options.extend(["DEADLETTER".into(), DEAD.into()]);
    }
    if rng.chance(20) {
        options.push("DRYRUN".into());
    }
    options
}

/// One RECOVER, RETIRE or STATUS with every check around it.
fn quantum_step(con: &mut Connection, model: &mut Model, seed: u64, step: usize) {
    // Timed from before the snapshot: an entry's idle can grow by this much before the call.
    let started = Instant::now();
    let pre = pel_now(con);
    let pre_consumers = consumer_pending(con);
    let pre_dead_letters = dead_letter_len(con);
    let kind = model.rng.below(10);
    let (words, options): (Vec<String>, Vec<String>) = match kind {
        0..=6 => {
            let options = quantum_options(&mut model.rng, model.cursor.as_ref());
            (
                vec!["QUANTUM.RECOVER".into(), STREAM.into(), GROUP.into()],
                options,
            )
        }
        7 | 8 => {
            let names: Vec<String> = pre_consumers.keys().cloned().collect();
            let consumer = if names.is_empty() {
                "exec-0".to_string()
            } else {
                model.rng.pick(&names).clone()
            };
            let mut options = Vec::new();
            if model.rng.chance(50) {
                options.extend([
                    "TO".to_string(),
                    format!("exec-{}", model.rng.below(model.next_pid + 1)),
                ]);
            }
            // Small COUNTs: a consumer's entries often take several calls.
            if model.rng.chance(70) {
                options.extend(["COUNT".to_string(), (1 + model.rng.below(3)).to_string()]);
            }
            (
                vec![
                    "QUANTUM.RETIRE".into(),
                    STREAM.into(),
                    GROUP.into(),
                    consumer,
                ],
                options,
            )
        }
        _ => (
            vec!["QUANTUM.STATUS".into(), STREAM.into(), GROUP.into()],
            Vec::new(),
        ),
    };
    let all: Vec<&str> = words.iter().chain(&options).map(String::as_str).collect();
    let result = run(con, &all);
    let elapsed_ms = started.elapsed().as_millis() as i64 + 1;
    let post = pel_now(con);
    let post_consumers = consumer_pending(con);
    let copies_made = dead_letter_len(con) - pre_dead_letters;
    let what = format!("seed {seed} step {step}: {all:?}");
    let dry = options.iter().any(|o| o == "DRYRUN");
    let unchanged = |why: &str| {
        assert_eq!(shape(&post), shape(&pre), "{what}: {why} changed the PEL");
        assert_eq!(
            post_consumers, pre_consumers,
            "{what}: {why} changed the consumers"
        );
        assert_eq!(copies_made, 0, "{what}: {why} made dead-letter copies");
    };
    let reply = match result {
        Err(e) => {
            if model.mode == "TESTNET" && words[0] != "QUANTUM.STATUS" {
                assert!(!e.starts_with("ERR internal"), "{what}: {e}");
            }
            seen(&SEEN.refused_or_failed, 1);
            return unchanged(&format!("the failed call ({e})"));
        }
        Ok(reply) => reply,
    };
    if words[0] == "QUANTUM.STATUS" {
        return unchanged("STATUS");
    }
    if dry {
        Recovery::from_value(&reply);
        return unchanged("DRYRUN");
    }
    if words[0] == "QUANTUM.RETIRE" {
        assert_eq!(copies_made, 0, "{what}: RETIRE made dead-letter copies");
    }
    assert_eq!(model.mode, "TESTNET", "{what}: accepted in {}", model.mode);
    // Nothing is acked: only dropped entries (gone from the stream) leave the PEL.
    let left: BTreeSet<&String> = pre.keys().filter(|id| !post.contains_key(*id)).collect();

    if words[0] == "QUANTUM.RETIRE" {
        let fields = pairs(&reply);
        let get = |k: &str| {
            let value = fields.iter().find(|(key, _)| key == k).map(|(_, v)| v);
            value
                .unwrap_or_else(|| panic!("{what}: no '{k}' in {reply:?}"))
                .clone()
        };
        let (moved, dropped) = (texts(&get("moved")), texts(&get("dropped")));
        let remaining = quantum_integration::reply::int(&get("remaining"));
        let deleted = quantum_integration::reply::int(&get("deleted")) == 1;
        let to = match options.iter().position(|o| o == "TO") {
            Some(i) => options[i + 1].clone(),
            None => "recovery".into(),
        };
        let count = match options.iter().position(|o| o == "COUNT") {
            Some(i) => options[i + 1].parse::<usize>().unwrap(),
            None => 1_000,
        };
        let retired = &words[3];
        for id in &moved {
            assert_eq!(post[id].owner, to, "{what}: {id} not with TO");
            assert_eq!(
                post[id].deliveries, pre[id].deliveries,
                "{what}: a move is not a delivery"
            );
        }
        assert_eq!(
            left,
            dropped.iter().collect(),
            "{what}: PEL lost other entries"
        );
        assert!(
            dropped.iter().all(|id| !model.existing.contains(id)),
            "{what}: dropped an existing entry"
        );
        // Its lowest IDs (in stream order, not text order), at most COUNT; the rest stay with it.
        let mut owned: Vec<&String> = pre
            .iter()
            .filter(|(_, e)| &e.owner == retired)
            .map(|(id, _)| id)
            .collect();
        owned.sort_by_key(|id| {
            let (ms, seq) = id.split_once('-').unwrap();
            (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
        });
        // Its lowest IDs: COUNT of them, or fewer (at least one) when the
        // time budget (quantum.retire-budget) stopped the call first.
        let handled: BTreeSet<&String> = moved.iter().chain(&dropped).collect();
        let taken = handled.len();
        assert!(
            taken <= count && (taken > 0 || owned.is_empty()),
            "{what}: took {taken} of COUNT {count}"
        );
        let first: BTreeSet<&String> = owned.iter().take(taken).copied().collect();
        assert_eq!(handled, first, "{what}: not its first entries");
        // Exact up to what it took; beyond that taken + 1, "more than it took"
        // (the call looks no further than that into the consumer's PEL).
        let left_with_it = (owned.len() - taken) as i64;
        let exact = quantum_integration::reply::int(&get("remaining-exact")) == 1;
        let taken = taken as i64;
        match exact {
            true => assert!(left_with_it <= taken, "{what}: exact beyond what it took"),
            false => assert!(
                left_with_it > taken,
                "{what}: a lower bound within what it took"
            ),
        }
        assert_eq!(remaining, left_with_it.min(taken + 1), "{what}: remaining");
        assert_eq!(
            post_consumers.get(retired),
            (left_with_it > 0).then_some(&left_with_it),
            "{what}: deleted only by the call that empties it, and not before"
        );
        assert_eq!(
            deleted,
            remaining == 0 && pre_consumers.contains_key(retired),
            "{what}: deleted"
        );
        if deleted {
            model.live.retain(|c| c != retired);
        }
        seen(&SEEN.retires, 1);
        return;
    }

    let r = Recovery::from_value(&reply);
    let number = |name: &str| {
        options
            .iter()
            .position(|o| o == name)
            .map(|i| options[i + 1].parse::<i64>().unwrap())
            .unwrap()
    };
    let moved = r.claimed.len() + r.quarantined.len() + r.dropped.len();
    assert!(
        moved as i64 <= number("COUNT"),
        "{what}: COUNT exceeded: {r:?}"
    );
    assert!(r.scanned <= number("SCAN"), "{what}: SCAN exceeded: {r:?}");
    assert!(
        r.deleted.len() as i64 <= number("DELETELIMIT"),
        "{what}: DELETELIMIT exceeded: {r:?}"
    );
    for (ids, keeper) in [(&r.claimed, "recovery"), (&r.quarantined, "quarantine")] {
        for id in ids {
            let before = &pre[id];
            let old_owner = &before.owner;
            assert!(
                old_owner != "recovery" && old_owner != "quarantine",
                "{what}: re-claimed {id} from {old_owner}"
            );
            assert!(
                before.idle + elapsed_ms >= number("MINIDLE"),
                "{what}: {id} idle {} < MINIDLE",
                before.idle
            );
            assert_eq!(
                (&post[id].owner, post[id].deliveries),
                (&keeper.to_string(), before.deliveries),
                "{what}: {id}"
            );
        }
    }
    assert_eq!(
        left,
        r.dropped.iter().collect(),
        "{what}: the PEL lost entries it did not report as dropped"
    );
    assert!(
        r.dropped.iter().all(|id| !model.existing.contains(id)),
        "{what}: dropped an existing entry"
    );
    let touched: BTreeSet<&String> = r
        .claimed
        .iter()
        .chain(&r.quarantined)
        .chain(&r.dropped)
        .collect();
    for (id, entry) in &post {
        if !touched.contains(id) {
            assert_eq!(
                (&entry.owner, entry.deliveries),
                (&pre[id].owner, pre[id].deliveries),
                "{what}: {id} changed without being reported"
            );
        }
    }
    for name in &r.deleted {
        assert!(
            name != "recovery" && name != "quarantine",
            "{what}: deleted a keeper"
        );
        let held: Vec<&String> = pre
            .iter()
            .filter(|(_, e)| &e.owner == name)
            .map(|(id, _)| id)
            .collect();
        assert!(
            held.iter().all(|id| touched.contains(id)),
            "{what}: deleted {name} while it held {held:?}"
        );
        assert!(
            !post_consumers.contains_key(name),
            "{what}: {name} still there"
        );
    }
    check_copies(
        con,
        &r,
        &pre,
        copies_made,
        options.contains(&"DEADLETTER".to_string()),
        &what,
    );
    model.cursor = (r.cursor != "0-0").then(|| r.cursor.clone());
    seen(&SEEN.recoveries, 1);
    seen(&SEEN.claimed, r.claimed.len() + r.quarantined.len());
    seen(&SEEN.dropped, r.dropped.len());
    seen(&SEEN.deleted, r.deleted.len());
}

/// With DEADLETTER, an accepted RECOVER appended one copy per quarantined
/// entry, in order, naming it, its owner before the move and its delivery
/// count; without it, none.
fn check_copies(
    con: &mut Connection,
    r: &Recovery,
    pre: &Pel,
    copies_made: i64,
    dead_letter: bool,
    what: &str,
) {
    if !dead_letter {
        assert_eq!(copies_made, 0, "{what}: copies without DEADLETTER");
        assert_eq!(r.dead_lettered, None, "{what}");
        return;
    }
    assert_eq!(r.dead_lettered.as_ref(), Some(&r.quarantined), "{what}");
    assert_eq!(r.dead_letter_deferred, Some(vec![]), "{what}: no maxmemory");
    assert_eq!(copies_made, r.quarantined.len() as i64, "{what}: copies");
    let all = dead_letters(con);
    let new = &all[all.len() - r.quarantined.len()..];
    for ((_, fields), id) in new.iter().zip(&r.quarantined) {
        let expected = [
            "quantum-stream".to_string(),
            STREAM.into(),
            "quantum-group".into(),
            GROUP.into(),
            "quantum-id".into(),
            id.clone(),
            "quantum-consumer".into(),
            pre[id].owner.clone(),
            "quantum-deliveries".into(),
            pre[id].deliveries.to_string(),
            "quantum-reason".into(),
            "max-deliveries".into(),
        ];
        assert_eq!(fields[..12], expected, "{what}: copy of {id}");
        assert_eq!(fields[12], "n", "{what}: the entry's own field");
    }
    seen(&SEEN.dead_lettered, r.quarantined.len());
}

/// Runs one sequence; with `replica`, compares it with the primary after every step.
fn run_sequence(con: &mut Connection, mut replica: Option<&mut Connection>, seed: u64) {
    run(con, &["FLUSHALL"]).unwrap();
    group_with_mode(con, "TESTNET");
    let mut model = Model {
        rng: Rng::new(seed),
        existing: Vec::new(),
        delivered: BTreeSet::new(),
        acked: BTreeSet::new(),
        live: vec!["exec-1".into(), "exec-2".into()],
        next_pid: 3,
        cursor: None,
        mode: "TESTNET",
    };
    for step in 0..STEPS {
        let op = model.rng.below(100);
        match op {
            0..=19 => {
                let n = 1 + model.rng.below(3) as usize;
                model.existing.extend(add_entries(con, n));
            }
            20..=34 if !model.live.is_empty() => {
                let consumer = model.rng.pick(&model.live).clone();
                // XREADGROUP that returns nothing creates its consumer on Redis
                // 7.2+ / Valkey without propagating it (a server quirk, not the
                // module's): create it explicitly so the replica can be compared.
                create_consumer(con, &consumer);
                let got = read_as(con, &consumer, 1 + model.rng.below(3) as usize);
                model.delivered.extend(got);
            }
            35..=41 if !model.live.is_empty() => {
                let consumer = model.rng.pick(&model.live).clone();
                let owned: Vec<String> = pel_now(con)
                    .into_iter()
                    .filter(|(_, e)| e.owner == consumer)
                    .map(|(id, _)| id)
                    .collect();
                if let Some(id) = owned.first() {
                    run(con, &["XACK", STREAM, GROUP, id]).unwrap();
                    model.acked.insert(id.clone());
                }
            }
            42..=45 if !model.live.is_empty() => {
                // A consumer dies for good; a new process takes a new PID-style name.
                let i = model.rng.below(model.live.len() as u64) as usize;
                model.live.remove(i);
                model.live.push(format!("exec-{}", model.next_pid));
                model.next_pid += 1;
            }
            46..=48 if !model.existing.is_empty() => {
                // Half the time an entry somebody holds: RECOVER and RETIRE must drop it.
                let pending: Vec<String> = pel_now(con)
                    .into_keys()
                    .filter(|id| model.existing.contains(id))
                    .collect();
                let id = if !pending.is_empty() && model.rng.chance(50) {
                    model.rng.pick(&pending).clone()
                } else {
                    let i = model.rng.below(model.existing.len() as u64) as usize;
                    model.existing[i].clone()
                };
                model.existing.retain(|e| *e != id);
                run(con, &["XDEL", STREAM, &id]).unwrap();
            }
            49..=50 if model.existing.len() > 2 => {
                let keep = model.existing.len() - 1 - model.rng.below(2) as usize;
                run(con, &["XTRIM", STREAM, "MAXLEN", &keep.to_string()]).unwrap();
                let cut = model.existing.len() - keep;
                model.existing.drain(..cut);
            }
            51..=56 => sleep_ms(2 + model.rng.below(12)),
            57..=59 => {
                model.mode = if model.mode == "TESTNET" {
                    "LIVE"
                } else {
                    "TESTNET"
                };
                run(con, &["SET", "quantum:mode", model.mode]).unwrap();
            }
            60..=99 => quantum_step(con, &mut model, seed, step),
            _ => {}
        }
        model.check_no_loss(&pel_now(con), seed, step);
        if let Some(replica) = replica.as_deref_mut() {
            check_replica(con, replica, seed, step);
        }
    }
}

#[test]
fn a_thousand_random_sequences_lose_nothing() {
    let sequences: u64 = std::env::var("QUANTUM_MODEL_SEQUENCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let replay = std::env::var("QUANTUM_SEED").is_ok();
    let base = seed_from_env();
    eprintln!("model test: {sequences} sequences of {STEPS} steps from base seed {base}");
    let workers = 2;
    std::thread::scope(|scope| {
        for worker in 0..workers {
            scope.spawn(move || {
                // A server of its own for the sequences without the comparison:
                // a replica attached slows every write.
                let plain = Server::start();
                let (primary, replica) = primary_and_replica();
                let mut alone = plain.connect();
                let (mut con, mut r) = (primary.connect(), replica.connect());
                let mine = (0..sequences).filter(|i| i % workers == worker);
                for i in mine {
                    let seed = if replay { base } else { base.wrapping_add(i) };
                    if replay || i % REPLICA_EVERY == 0 {
                        run_sequence(&mut con, Some(&mut r), seed);
                    } else {
                        run_sequence(&mut alone, None, seed);
                    }
                    if replay {
                        return;
                    }
                }
            });
        }
    });
    let count = |counter: &AtomicUsize| counter.load(Ordering::Relaxed);
    let seen = [
        ("accepted recoveries", count(&SEEN.recoveries)),
        ("entries moved", count(&SEEN.claimed)),
        ("dropped", count(&SEEN.dropped)),
        ("consumers deleted", count(&SEEN.deleted)),
        ("retires", count(&SEEN.retires)),
        ("dead-letter copies", count(&SEEN.dead_lettered)),
        ("refused or failed calls", count(&SEEN.refused_or_failed)),
    ];
    eprintln!("exercised: {seen:?}");
    if !replay {
        assert!(
            seen.iter().all(|&(_, n)| n > 0),
            "some behaviour was never exercised: {seen:?}"
        );
    }
}
