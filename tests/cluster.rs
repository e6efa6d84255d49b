//! Redis Cluster: three masters on loopback (one replica each where a test
//! needs failover), the module on every node, streams in different slots
//! recovered through the trigger's cluster connection, and a cluster under
//! change: a held slot migration, CLUSTERDOWN, a silent node, a killed primary.

use quantum_integration::cluster::{Cluster, ClusterOptions};
use quantum_integration::reply::{held_by, int, pel, run};
use quantum_integration::trigger::{metric_sum, run_trigger, spawn_trigger, TriggerRun};
use quantum_integration::TempDir;
use std::time::{Duration, Instant};

const GROUP: &str = "execution";

/// On the node owning `tag`: mode TESTNET at `{tag}:mode`, a group on
/// `{tag}:stream` and a dead consumer holding 2 idle entries.
fn scenario(cluster: &Cluster, tag: &str) -> (String, String) {
    let (stream, mode) = (format!("{{{tag}}}:stream"), format!("{{{tag}}}:mode"));
    let mut con = cluster.owner_of(&stream).connect();
    run(&mut con, &["SET", &mode, "TESTNET"]).unwrap();
    run(
        &mut con,
        &["XGROUP", "CREATE", &stream, GROUP, "$", "MKSTREAM"],
    )
    .unwrap();
    run(&mut con, &["XADD", &stream, "*", "n", "1"]).unwrap();
    run(&mut con, &["XADD", &stream, "*", "n", "2"]).unwrap();
    run(
        &mut con,
        &[
            "XREADGROUP",
            "GROUP",
            GROUP,
            "exec-1",
            "COUNT",
            "2",
            "STREAMS",
            &stream,
            ">",
        ],
    )
    .unwrap();
    (stream, mode)
}

#[test]
fn streams_on_different_nodes_are_recovered_through_the_cluster() {
    let cluster = Cluster::start();
    let tags = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let scenarios: Vec<(String, String)> = tags.iter().map(|t| scenario(&cluster, t)).collect();
    let owners: std::collections::BTreeSet<u16> = scenarios
        .iter()
        .map(|(stream, _)| cluster.owner_of(stream).port.unwrap())
        .collect();
    assert!(
        owners.len() >= 2,
        "the streams should spread over nodes: {owners:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(150));

    let dir = TempDir::new("cluster-metrics");
    let metrics = dir.path().join("m.prom");
    let seed = cluster.seed_url();
    for (stream, mode) in &scenarios {
        let args = [
            "--url",
            &seed,
            "--stream",
            stream,
            "--group",
            GROUP,
            "--mode-key",
            mode,
            "--min-idle",
            "100ms",
            "--zombie-idle",
            "100ms",
            "--metrics-file",
            metrics.to_str().unwrap(),
            "--json",
        ];
        let out = run_trigger(&args, &[]);
        assert_eq!(out.code, 0, "{stream}: {}", out.stderr);
        assert_eq!(
            out.json()["claimed"].as_array().unwrap().len(),
            2,
            "{stream}"
        );
        let owner = cluster.owner_of(stream);
        assert!(pel(&mut owner.connect(), stream, GROUP)
            .iter()
            .all(|e| e.1 == "recovery"));
    }
    // INFO quantum of every node, summed.
    // Per stream (labelled), 10 over the five.
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric_sum(&text, "quantum_stream_recovery_claimed_total"),
        10.0,
        "{text}"
    );

    // --cluster works like the URL scheme, for status too.
    let plain = seed.replace("redis+cluster://", "redis://");
    let (stream, mode) = &scenarios[1];
    let out = run_trigger(
        &[
            "status",
            "--cluster",
            "--url",
            &plain,
            "--stream",
            stream,
            "--group",
            GROUP,
            "--mode-key",
            mode,
            "--json",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["pending"], 2);
}

#[test]
fn the_mode_key_must_share_the_streams_slot() {
    let cluster = Cluster::start();
    let (stream, _) = scenario(&cluster, "alpha");
    let (_, other_mode) = scenario(&cluster, "beta");
    let mut con = cluster.owner_of(&stream).connect();

    let err = run(
        &mut con,
        &["QUANTUM.RECOVER", &stream, GROUP, "MODEKEY", &other_mode],
    )
    .unwrap_err();
    assert!(err.starts_with("CROSSSLOT"), "{err}");
    // Without MODEKEY this node would read the configured mode key as missing
    // (it may live on another node): every call is refused, reads included.
    for call in [
        &["QUANTUM.RECOVER", &stream, GROUP][..],
        &["QUANTUM.RECOVER", &stream, GROUP, "DRYRUN"],
        &["QUANTUM.STATUS", &stream, GROUP],
        &["QUANTUM.RETIRE", &stream, GROUP, "exec-1"],
    ] {
        let err = run(&mut con, call).unwrap_err();
        assert!(
            err.contains("in a Redis Cluster pass MODEKEY"),
            "{call:?}: {err}"
        );
    }
    assert!(
        pel(&mut con, &stream, GROUP)
            .iter()
            .all(|e| e.1 == "exec-1"),
        "nothing moved"
    );

    let seed = cluster.seed_url();
    let target = [
        "--url",
        seed.as_str(),
        "--stream",
        stream.as_str(),
        "--group",
        GROUP,
    ];
    // --min-idle is run's: status refuses it (64).
    let common = [&target[..], &["--min-idle", "1ms"]].concat();
    let out = run_trigger(&[&common[..], &["--mode-key", &other_mode]].concat(), &[]);
    assert_eq!(
        out.code, 64,
        "a mode key in another slot is a usage error: {}",
        out.stderr
    );
    assert!(out.stderr.contains("CROSSSLOT"), "{}", out.stderr);
    for (verb, options) in [("run", &common[..]), ("status", &target[..])] {
        let out = run_trigger(&[&[verb][..], options].concat(), &[]);
        assert_eq!(out.code, 64, "{verb}: no MODEKEY in a cluster");
        assert!(out.stderr.contains("pass MODEKEY"), "{}", out.stderr);
    }
}

/// Asserts a run ended at its deadline (±1 s) with exit 75 and said why.
fn ended_at_the_deadline(out: &TriggerRun, deadline: Duration, why: &str) {
    eprintln!(
        "{why}: ended after {:?} with a {deadline:?} deadline",
        out.elapsed
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(
        out.elapsed + Duration::from_secs(1) >= deadline
            && out.elapsed <= deadline + Duration::from_secs(1),
        "took {:?} with a {deadline:?} deadline: {}",
        out.elapsed,
        out.stderr
    );
    assert!(out.stderr.contains(why), "{}", out.stderr);
}

/// `{u}:stream` moved to the importing node while `{u}:mode` stays on the
/// migrating one: every call answers TRYAGAIN for as long as the migration is
/// held. The run, and the ExecStartPre's exact command line, end at the deadline.
#[test]
fn a_held_slot_migration_ends_at_the_deadline() {
    let cluster = Cluster::start();
    let (stream, mode) = scenario(&cluster, "u");
    let source = cluster.owner_index(&stream);
    let target = (source + 1) % cluster.nodes.len();
    let mut src = cluster.nodes[source].connect();
    let slot = int(&run(&mut src, &["CLUSTER", "KEYSLOT", &stream]).unwrap()).to_string();
    let (source_id, target_id) = (cluster.id_of(source), cluster.id_of(target));
    let mut dst = cluster.nodes[target].connect();
    run(
        &mut dst,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
    )
    .unwrap();
    run(
        &mut src,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
    )
    .unwrap();
    let port = cluster.nodes[target].port.unwrap().to_string();
    let moved = [
        "MIGRATE",
        "127.0.0.1",
        &port,
        "",
        "0",
        "5000",
        "KEYS",
        &stream,
    ];
    run(&mut src, &moved).unwrap();
    let err = run(
        &mut src,
        &["QUANTUM.RECOVER", &stream, GROUP, "MODEKEY", &mode],
    )
    .unwrap_err();
    assert!(err.starts_with("TRYAGAIN"), "{err}");

    let seed = cluster.seed_url();
    let out = run_trigger(
        &[
            "--url",
            &seed,
            "--stream",
            &stream,
            "--group",
            GROUP,
            "--mode-key",
            &mode,
            "--min-idle",
            "1ms",
            "--deadline",
            "3s",
            "--json",
        ],
        &[],
    );
    ended_at_the_deadline(&out, Duration::from_secs(3), "TRYAGAIN");
    assert_eq!(out.json()["exit_code"], 75);

    // The drop-in's `run --env-file FILE --deadline 5s`: the trading service
    // starts within 6 s whatever the cluster does.
    let dir = TempDir::new("execstartpre");
    let env = dir.path().join("stream-recover.env");
    std::fs::write(
        &env,
        format!(
            "QUANTUM_REDIS_URL={seed}\nQUANTUM_STREAM={stream}\nQUANTUM_GROUP={GROUP}\n\
             QUANTUM_MODE_KEY={mode}\nQUANTUM_MIN_IDLE=1ms\n"
        ),
    )
    .unwrap();
    let env = env.to_str().unwrap();
    let out = run_trigger(&["run", "--env-file", env, "--deadline", "5s"], &[]);
    ended_at_the_deadline(&out, Duration::from_secs(5), "TRYAGAIN");
    run(&mut dst, &["ASKING"]).unwrap();
    assert!(
        pel(&mut dst, &stream, GROUP)
            .iter()
            .all(|e| e.1 == "exec-1"),
        "nothing moved"
    );
}

/// A node without the module is named by exit 69; a primary without replica
/// killed makes the cluster answer CLUSTERDOWN, and a server that accepts and
/// never answers holds the connection: both end at the deadline.
#[test]
fn clusterdown_and_a_silent_server_end_at_the_deadline() {
    let bare = 2;
    let cluster = Cluster::with(ClusterOptions {
        node_timeout_ms: 1000,
        without_module: Some(bare),
        ..ClusterOptions::default()
    });
    let tags = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let on = |bare_node: bool| {
        let tag = tags
            .iter()
            .find(|t| (cluster.owner_index(&format!("{{{t}}}:stream")) == bare) == bare_node)
            .expect("ten tags cover three nodes");
        scenario(&cluster, tag)
    };
    let ((stream, mode), (bare_stream, bare_mode)) = (on(false), on(true));
    let seed = cluster.seed_url();
    let run_on = |stream: &str, mode: &str, deadline: &str| {
        let args = [
            "--url",
            &seed,
            "--stream",
            stream,
            "--group",
            GROUP,
            "--mode-key",
            mode,
            "--min-idle",
            "1ms",
            "--deadline",
            deadline,
        ];
        run_trigger(&args, &[])
    };
    let out = run_on(&bare_stream, &bare_mode, "10s");
    assert_eq!(out.code, 69, "{}", out.stderr);
    let node = format!("127.0.0.1:{}", cluster.nodes[bare].port.unwrap());
    assert!(
        out.stderr.contains(&format!("missing on {node}")),
        "{}",
        out.stderr
    );

    let mut cluster = cluster;
    cluster.nodes[bare].kill();
    cluster.wait_for_state("fail", Duration::from_secs(15));
    let out = run_on(&stream, &mode, "3s");
    ended_at_the_deadline(&out, Duration::from_secs(3), "CLUSTERDOWN");

    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    for url in [
        format!("redis+cluster://127.0.0.1:{port}"),
        format!("redis://127.0.0.1:{port}"),
    ] {
        let out = run_trigger(&["--url", &url, "--deadline", "3s"], &[]);
        ended_at_the_deadline(&out, Duration::from_secs(3), "did not answer");
    }
}

/// `count` entries read by `exec-1` on the node owning `{tag}:stream`.
fn backlog(cluster: &Cluster, tag: &str, count: usize) -> (String, String) {
    let (stream, mode) = scenario(cluster, tag);
    let mut con = cluster.owner_of(&stream).connect();
    let mut pipe = redis::pipe();
    for n in 0..count - 2 {
        pipe.cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("n")
            .arg(n)
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    let count = count.to_string();
    let read = [
        "XREADGROUP",
        "GROUP",
        GROUP,
        "exec-1",
        "COUNT",
        &count,
        "STREAMS",
        &stream,
        ">",
    ];
    run(&mut con, &read).unwrap();
    (stream, mode)
}

fn claimed_total(metrics: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(metrics).unwrap();
    assert!(
        text.contains("quantum_stream_recovery_claimed_total{"),
        "{text}"
    );
    metric_sum(&text, "quantum_stream_recovery_claimed_total") as u64
}

/// The stream's primary SIGKILLed mid-drain: the run waits for the cluster to
/// promote the replica, continues from its last cursor and finishes (exit 0),
/// nothing lost; the counters in the metrics file never go down.
#[test]
fn a_killed_primary_is_followed_to_its_promoted_replica() {
    let mut cluster = Cluster::with(ClusterOptions {
        replicas: 1,
        node_timeout_ms: 1000,
        ..ClusterOptions::default()
    });
    let total = 10_000;
    let (stream, mode) = backlog(&cluster, "drain", total);
    let owner = cluster.owner_index(&stream);
    let before: Vec<String> = pel(&mut cluster.nodes[owner].connect(), &stream, GROUP)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(before.len(), total);
    std::thread::sleep(Duration::from_millis(5));

    let dir = TempDir::new("failover");
    let metrics = dir.path().join("m.prom");
    let seed = cluster.seed_url();
    let common = [
        "--url",
        &seed,
        "--stream",
        &stream,
        "--group",
        GROUP,
        "--mode-key",
        &mode,
        "--min-idle",
        "1ms",
        "--metrics-file",
        metrics.to_str().unwrap(),
        "--json",
    ];
    let first = run_trigger(
        &[
            &common[..],
            &["--count", "20", "--scan", "20", "--max-batches", "1"],
        ]
        .concat(),
        &[],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    let mut totals = vec![claimed_total(&metrics)];
    assert_eq!(totals[0], 20);

    let drain = [
        &common[..],
        &[
            "--count",
            "2",
            "--scan",
            "2",
            "--max-batches",
            "1000000",
            "--deadline",
            "30s",
        ],
    ]
    .concat();
    let started = Instant::now();
    let child = spawn_trigger(&drain);
    let mut con = cluster.nodes[owner].connect();
    while held_by(&mut con, &stream, GROUP, "recovery") < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the drain never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(con);
    cluster.nodes[owner].kill();
    let out = child.wait_with_output().unwrap();
    let out = TriggerRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    };
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("now served by"), "{}", out.stderr);
    eprintln!("drain with a failover: {:?}\n{}", out.elapsed, out.stderr);
    let json = out.json();
    assert_eq!(json["cursor"], "0-0", "the drain finished in the same run");
    let claimed = json["claimed"].as_array().unwrap().len();
    // A batch whose reply the kill cut off moved up to 2 more than reported.
    assert!(
        (total - 20 - 2..=total - 20).contains(&claimed),
        "{claimed} reported"
    );

    let promoted = cluster.owner_index(&stream);
    assert_ne!(promoted, owner);
    let after = pel(&mut cluster.nodes[promoted].connect(), &stream, GROUP);
    let ids: Vec<&String> = after.iter().map(|e| &e.0).collect();
    assert_eq!(ids, before.iter().collect::<Vec<_>>(), "nothing lost");
    // Replication is asynchronous: a batch the old primary answered just
    // before the kill may not have reached the replica. Its entries are still
    // pending (under exec-1 again) and the run reported them.
    let reported: std::collections::HashSet<&str> = json["claimed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|id| id.as_str())
        .collect();
    let reverted: Vec<_> = after.iter().filter(|e| e.1 != "recovery").collect();
    assert!(
        reverted.len() <= 10 && reverted.iter().all(|e| reported.contains(e.0.as_str())),
        "not under TO and not reported: {reverted:?}"
    );

    totals.push(claimed_total(&metrics));
    assert_eq!(totals[1], 20 + claimed as u64);
    // After the failover: nothing left to move, and the counter does not fall
    // to the promoted replica's INFO quantum (0).
    let again = run_trigger(&common, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    totals.push(claimed_total(&metrics));
    assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{totals:?}");
    assert_eq!(totals[2], totals[1]);
}

/// SIGCONT for a SIGSTOPped node when dropped, even when an assertion failed.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        let status = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// A hung node (SIGSTOP: a paused VM, a black-holed host) that does not own
/// the stream: a run through the owner is not held by it, and a run whose only
/// seed is the hung node ends at the deadline.
#[test]
fn a_hung_node_that_does_not_own_the_stream_keeps_the_deadline() {
    let cluster = Cluster::start();
    let (stream, mode) = scenario(&cluster, "hung");
    let owner = cluster.owner_index(&stream);
    let victim = (0..3).find(|i| *i != owner).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let url_of = |i: usize| {
        format!(
            "redis+cluster://127.0.0.1:{}",
            cluster.nodes[i].port.unwrap()
        )
    };
    let run_with = |url: &str| {
        let args = [
            "--url",
            url,
            "--stream",
            &stream,
            "--group",
            GROUP,
            "--mode-key",
            &mode,
            "--min-idle",
            "100ms",
            "--deadline",
            "2s",
            "--json",
        ];
        run_trigger(&args, &[])
    };
    let _stopped = Stopped::stop(cluster.nodes[victim].pid());
    let out = run_with(&url_of(owner));
    eprintln!("through the owner: {:?}", out.elapsed);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["claimed"].as_array().unwrap().len(), 2);
    assert!(out.elapsed <= Duration::from_secs(3), "{:?}", out.elapsed);
    let out = run_with(&url_of(victim));
    ended_at_the_deadline(&out, Duration::from_secs(2), "did not answer");
    let victim_node = format!("127.0.0.1:{}", cluster.nodes[victim].port.unwrap());
    assert!(out.stderr.contains(&victim_node), "{}", out.stderr);
    assert!(!out.stderr.contains("rediss"), "{}", out.stderr);

    // A seed list: the hung first seed costs at most its connect bound.
    let seeds = format!(
        "{},127.0.0.1:{}",
        url_of(victim),
        cluster.nodes[owner].port.unwrap()
    );
    let out = run_with(&seeds);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.elapsed <= Duration::from_secs(2), "{:?}", out.elapsed);

    // A cluster node named without --cluster: MOVED means the URL is wrong.
    let other = (0..3).find(|i| *i != owner && *i != victim).unwrap();
    let plain = format!("redis://127.0.0.1:{}", cluster.nodes[other].port.unwrap());
    let out = run_with(&plain);
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("this is a Redis Cluster node: use --cluster or a redis+cluster:// URL"),
        "{}",
        out.stderr
    );
}

/// The stream's primary hung (SIGSTOP) mid-drain: each call's wait is
/// bounded, so the run notices, reads the slot map again, follows the promoted
/// replica and finishes in the same run. Claims the replica never received are
/// recovered too: after the switch the drain starts again at the PEL's start.
#[test]
fn a_hung_primary_mid_drain_is_followed_to_its_promoted_replica() {
    let cluster = Cluster::with(ClusterOptions {
        replicas: 1,
        node_timeout_ms: 1000,
        ..ClusterOptions::default()
    });
    let total = 4000;
    let (stream, mode) = backlog(&cluster, "hungdrain", total);
    let owner = cluster.owner_index(&stream);
    std::thread::sleep(Duration::from_millis(5));
    let seed = cluster.seed_url();
    let drain = [
        "--url",
        &seed,
        "--stream",
        &stream,
        "--group",
        GROUP,
        "--mode-key",
        &mode,
        "--min-idle",
        "1ms",
        "--count",
        "2",
        "--scan",
        "2",
        "--max-batches",
        "1000000",
        "--deadline",
        "25s",
        "--json",
    ];
    let started = Instant::now();
    let child = spawn_trigger(&drain);
    let mut con = cluster.nodes[owner].connect();
    while held_by(&mut con, &stream, GROUP, "recovery") < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the drain never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(con);
    let _stopped = Stopped::stop(cluster.nodes[owner].pid());
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("drain with a hung primary: {elapsed:?}\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("now served by"), "{stderr}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cursor"], "0-0", "the drain finished in the same run");
    // Each entry reported once, even one claimed again after the restart; a
    // call that timed out at the hang may have moved 2 unreported.
    let claimed: Vec<&str> = json["claimed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|id| id.as_str())
        .collect();
    let unique: std::collections::HashSet<&&str> = claimed.iter().collect();
    assert_eq!(unique.len(), claimed.len(), "an entry reported twice");
    assert!(
        (total - 2..=total).contains(&claimed.len()),
        "{}",
        claimed.len()
    );
    let promoted = (0..cluster.nodes.len())
        .find(|i| {
            *i != owner
                && cluster.nodes[*i]
                    .try_connect()
                    .is_ok_and(|mut c| run(&mut c, &["EXISTS", &stream]).is_ok())
        })
        .expect("a promoted replica");
    let after = pel(&mut cluster.nodes[promoted].connect(), &stream, GROUP);
    assert_eq!(after.len(), total, "nothing lost");
    let left: Vec<_> = after.iter().filter(|e| e.1 != "recovery").collect();
    assert!(left.is_empty(), "left behind the cursor: {left:?}");
}
