//! Redis Cluster: three masters on loopback, the module on every node, streams
//! in different slots recovered through the trigger's cluster connection.

use quantum_integration::cluster::Cluster;
use quantum_integration::reply::{pel, run};
use quantum_integration::trigger::run_trigger;
use quantum_integration::TempDir;

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
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("quantum_stream_recovery_claimed_total 10\n"),
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
    let err = run(&mut con, &["QUANTUM.RECOVER", &stream, GROUP]).unwrap_err();
    assert!(err.contains("in a Redis Cluster pass MODEKEY"), "{err}");
    assert!(
        pel(&mut con, &stream, GROUP)
            .iter()
            .all(|e| e.1 == "exec-1"),
        "nothing moved"
    );

    let seed = cluster.seed_url();
    let common = [
        "--url",
        seed.as_str(),
        "--stream",
        stream.as_str(),
        "--group",
        GROUP,
        "--min-idle",
        "1ms",
    ];
    let out = run_trigger(&[&common[..], &["--mode-key", &other_mode]].concat(), &[]);
    assert_eq!(
        out.code, 64,
        "a mode key in another slot is a usage error: {}",
        out.stderr
    );
    assert!(out.stderr.contains("CROSSSLOT"), "{}", out.stderr);
    assert_eq!(
        run_trigger(&common, &[]).code,
        64,
        "no MODEKEY in a cluster"
    );
}
