//! The trigger behind Redis Sentinel (one primary, one replica, three
//! sentinels on loopback): it finds the primary through the sentinels, follows
//! a failover mid-drain losing nothing, names a primary without the module,
//! and refuses bad Sentinel settings with the exit-code table's codes.

use quantum_integration::reply::{consumers, held_by, pel, run};
use quantum_integration::scenario::{GROUP, STREAM};
use quantum_integration::sentinel::{
    Passwords, SentinelOptions, SentinelProcess, SentinelSet, MASTER,
};
use quantum_integration::trigger::{
    run_trigger, spawn_trigger, spawn_trigger_with, trigger_command, TriggerRun,
};
use quantum_integration::{Options, Server, TempDir};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// `total` entries read by four consumers that then died: a big PEL.
fn backlog(con: &mut redis::Connection, total: usize) {
    backlog_of(con, total, &["exec-1", "exec-2", "exec-3", "exec-4"]);
}

/// `total` entries read in equal parts by `readers`, that then died.
fn backlog_of(con: &mut redis::Connection, total: usize, readers: &[&str]) {
    run(con, &["SET", "quantum:mode", "TESTNET"]).unwrap();
    run(con, &["XGROUP", "CREATE", STREAM, GROUP, "$", "MKSTREAM"]).unwrap();
    for chunk in 0..total / 10_000 {
        let mut pipe = redis::pipe();
        for n in 0..10_000 {
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("n")
                .arg(chunk * 10_000 + n)
                .ignore();
        }
        pipe.query::<()>(con).unwrap();
    }
    // In reads of at most 5,000: one long command could stall the primary
    // past the sentinels' down-after on a loaded machine.
    let share = total / readers.len();
    for consumer in readers {
        let mut left = share;
        while left > 0 {
            let take = left.min(5_000);
            left -= take;
            let count = take.to_string();
            let read = [
                "XREADGROUP",
                "GROUP",
                GROUP,
                consumer,
                "COUNT",
                &count,
                "STREAMS",
                STREAM,
                ">",
            ];
            run(con, &read).unwrap();
        }
    }
}

/// How the primary fails mid-drain.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Failure {
    /// SIGKILL, as a crash.
    Killed,
    /// SIGSTOP (a paused VM, a black-holed host): its calls time out.
    Hung,
}

/// The primary SIGKILLed while a drain of 200,000 entries runs in batches of
/// 50: Sentinel promotes the replica, the trigger asks the sentinels again,
/// finishes on the new primary (exit 0) and says it switched. Nothing is
/// lost: every entry pending before is pending on the new primary, all with
/// the target consumer (the run started again at the beginning of the PEL, so
/// claims the old primary made but never replicated were made again), and
/// each reported at most once; only a batch whose reply the kill cut off can
/// be missing from the report (it ran and replicated, its answer never came).
#[test]
fn a_failover_mid_drain_is_followed_to_the_promoted_replica() {
    drain_through_a_failover(Failure::Killed, 200_000);
}

/// The same with a hung primary (SIGSTOP): the batch waiting for it times
/// out (2 s), the sentinels promote the replica and the run goes on there.
#[test]
fn a_hung_primary_mid_drain_is_followed_to_the_promoted_replica() {
    drain_through_a_failover(Failure::Hung, 50_000);
}

/// SIGCONT for a SIGSTOPped node when dropped, even when an assertion failed.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        let signal = |s: &str| {
            std::process::Command::new("kill")
                .args([s, &pid.to_string()])
                .status()
        };
        assert!(signal("-STOP").unwrap().success());
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

fn drain_through_a_failover(failure: Failure, total: usize) {
    let mut set = SentinelSet::start(SentinelOptions::default());
    let count = 50;
    let mut con = set.nodes[0].connect();
    backlog(&mut con, total);
    let before: Vec<String> = pel(&mut con, STREAM, GROUP)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(before.len(), total);
    set.wait_synced();

    let dir = TempDir::new("sentinel-failover");
    let log = dir.path().join("run.log");
    let url = set.url();
    let args = [
        "--url",
        &url,
        "--min-idle",
        "1ms",
        "--count",
        &count.to_string(),
        "--max-batches",
        "1000000",
        "--deadline",
        "90s",
        "--log-file",
        log.to_str().unwrap(),
        "--json",
    ];
    let started = Instant::now();
    let child = spawn_trigger(&args);
    let held = |con: &mut redis::Connection| held_by(con, STREAM, GROUP, "recovery");
    while held(&mut con) < total as i64 / 20 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the drain never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let held_at_kill = held(&mut con);
    drop(con);
    let _stopped = match failure {
        Failure::Killed => {
            set.nodes[0].kill();
            None
        }
        Failure::Hung => Some(Stopped::stop(set.nodes[0].pid())),
    };
    let killed_at = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let out = TriggerRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    };
    eprintln!(
        "{failure:?} the primary at {killed_at:?} ({held_at_kill} of {total} entries moved); \
         the run ended after {:?}\n{}",
        out.elapsed, out.stderr
    );
    assert!(
        held_at_kill < total as i64,
        "the drain ended before the kill"
    );
    assert_eq!(out.code, 0, "{}", out.stderr);

    let new_port = set.nodes[1].port.unwrap();
    set.wait_until_named(new_port);
    let switched = format!("switched_primary=127.0.0.1:{new_port}");
    assert!(out.stderr.contains(&switched), "{}", out.stderr);
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(line.contains(&switched), "{line}");
    let json = out.json();
    assert_eq!(json["switched_primary"], format!("127.0.0.1:{new_port}"));
    assert_eq!(json["cursor"], "0-0", "the drain finished in the same run");

    let after = pel(&mut set.connect(1), STREAM, GROUP);
    let after_ids: Vec<&String> = after.iter().map(|e| &e.0).collect();
    assert_eq!(after_ids, before.iter().collect::<Vec<_>>(), "nothing lost");
    let elsewhere: Vec<_> = after.iter().filter(|e| e.1 != "recovery").collect();
    assert!(
        elsewhere.is_empty(),
        "{} entries not with the target, e.g. {:?}",
        elsewhere.len(),
        elsewhere.first()
    );
    // What the promoted replica answered, and apart what only the dead one did.
    let before_switch = json["claimed_before_switch"].as_array().cloned();
    let reported: Vec<&str> = json["claimed"]
        .as_array()
        .unwrap()
        .iter()
        .chain(before_switch.iter().flatten())
        .map(|id| id.as_str().unwrap())
        .collect();
    assert!(
        before_switch.is_some(),
        "a switch sets claimed_before_switch"
    );
    let unique: HashSet<&str> = reported.iter().copied().collect();
    assert_eq!(unique.len(), reported.len(), "an entry reported twice");
    let pending_before: HashSet<&str> = before.iter().map(String::as_str).collect();
    assert!(unique.is_subset(&pending_before));
    assert!(
        total - reported.len() <= count,
        "{} moved entries not reported: more than one batch",
        total - reported.len()
    );
}

/// Sentinel names a primary without the module: exit 69 naming that host;
/// `doctor` says so and that the replica has it.
#[test]
fn a_primary_without_the_module_is_named() {
    let set = SentinelSet::start(SentinelOptions {
        primary_without_module: true,
        ..SentinelOptions::default()
    });
    let primary = format!("127.0.0.1:{}", set.nodes[0].port.unwrap());
    let replica = format!("127.0.0.1:{}", set.nodes[1].port.unwrap());
    let url = set.url();
    let out = run_trigger(&["--url", &url, "--deadline", "10s"], &[]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("the quantum module is missing on {primary}")),
        "{}",
        out.stderr
    );

    let dir = TempDir::new("sentinel-doctor");
    let log = dir.path().join("log");
    let metrics = dir.path().join("m.prom");
    let doctor = run_trigger(
        &[
            "doctor",
            "--url",
            &url,
            "--deadline",
            "10s",
            "--log-file",
            log.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    let line = doctor
        .stdout
        .lines()
        .find(|l| l[4..].trim_start().starts_with("sentinel:"))
        .unwrap_or_else(|| panic!("no sentinel line:\n{}", doctor.stdout));
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(
        line.contains(&format!(
            "the sentinels name {primary} as the primary of \"{MASTER}\": the quantum module \
             is NOT loaded"
        )),
        "{line}"
    );
    assert!(
        line.contains(&format!("replica {replica}: module loaded, build ")),
        "{line}"
    );
}

/// A URL without a master name, a password in the URL, a master no sentinel
/// monitors, a data node named as a sentinel: 78 at once; sentinels that never
/// answer: 75 at the deadline. Each message says what was wrong. A sentinel
/// naming a dead primary is passed over for the next one.
#[test]
fn bad_sentinel_settings_follow_the_exit_code_table() {
    let refused =
        |url: &str, deadline: &str| run_trigger(&["--url", url, "--deadline", deadline], &[]);
    let out = refused("redis+sentinel://127.0.0.1:26379", "5s");
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(out.stderr.contains("no master name"), "{}", out.stderr);
    let out = refused("redis+sentinel://:S3cr3t@127.0.0.1:26379/m", "5s");
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(
        out.stderr.contains("holds a password") && !out.stderr.contains("S3cr3t"),
        "{}",
        out.stderr
    );
    let out = refused("redis+sentinel://127.0.0.1:1,127.0.0.1:x/m", "5s");
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(
        out.stderr.contains("\"127.0.0.1:x\" is not host:port"),
        "{}",
        out.stderr
    );

    // Nobody listens on these ports.
    let silent: Vec<String> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("127.0.0.1:{}", l.local_addr().unwrap().port())
        })
        .collect();
    let url = format!("redis+sentinel://{}/{MASTER}", silent.join(","));
    let out = refused(&url, "1500ms");
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("no sentinel of \"{MASTER}\" answered")),
        "{}",
        out.stderr
    );
    assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);

    let set = SentinelSet::start(SentinelOptions::default());
    let hosts: Vec<String> = set
        .sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let out = refused(
        &format!("redis+sentinel://{}/no-such-master", hosts.join(",")),
        "10s",
    );
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no sentinel knows a master named \"no-such-master\""),
        "{}",
        out.stderr
    );
    assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);

    // A stale sentinel first, naming a primary that is gone: the next
    // sentinel's answer is used, at once rather than at the deadline.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stale = SentinelProcess::start(gone, None);
    let url = format!(
        "redis+sentinel://127.0.0.1:{},{}/{MASTER}",
        stale.port,
        hosts.join(",")
    );
    let out = refused(&url, "10s");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("MODE refused"), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);

    let data_node = format!("127.0.0.1:{}", set.nodes[0].port.unwrap());
    let out = refused(&format!("redis+sentinel://{data_node}/{MASTER}"), "10s");
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("{data_node} is not a Redis Sentinel")),
        "{}",
        out.stderr
    );
}

/// The sentinels' password comes from --sentinel-password-file, the data
/// nodes' from the usual sources: either missing, or the two swapped, is 77
/// naming who refused. The README's least-privilege user (no ROLE: the
/// primary is checked with INFO replication) drains the backlog.
#[test]
fn the_sentinels_and_the_data_nodes_passwords_are_kept_apart() {
    let set = SentinelSet::start(SentinelOptions {
        passwords: Some(Passwords {
            sentinel: "sentinel-pw".into(),
            data: "data-pw".into(),
        }),
        ..SentinelOptions::default()
    });
    let mut con = set.connect(0);
    backlog(&mut con, 10_000);
    let words = quantum_integration::readme_acl_user();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    // ACL users are not replicated: every data node needs its own.
    run(&mut con, &words).unwrap();
    run(&mut set.connect(1), &words).unwrap();

    let dir = TempDir::new("sentinel-passwords");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (sentinel_file, data_file) = (file("s", "sentinel-pw"), file("d", "data-pw"));
    let url = set.url();
    let run_with = |url: &str, sentinel_file: Option<&str>, data: &str| {
        let mut args = vec!["--url", url, "--min-idle", "1ms", "--deadline", "10s"];
        args.extend(["--count", "1000", "--max-batches", "100", "--json"]);
        if let Some(file) = sentinel_file {
            args.extend(["--sentinel-password-file", file]);
        }
        run_trigger(&args, &[("REDISCLI_AUTH", data)])
    };
    let primary = format!("127.0.0.1:{}", set.nodes[0].port.unwrap());
    let first_sentinel = format!("sentinel 127.0.0.1:{}", set.sentinels[0].port);

    let out = run_with(&url, None, "data-pw");
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(
        out.stderr.contains(&first_sentinel) && out.stderr.contains("--sentinel-password-file"),
        "{}",
        out.stderr
    );
    let out = run_with(&url, Some(&data_file), "sentinel-pw");
    assert_eq!(out.code, 77, "swapped: {}", out.stderr);
    assert!(out.stderr.contains(&first_sentinel), "{}", out.stderr);
    let out = run_with(&url, Some(&sentinel_file), "sentinel-pw");
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(out.stderr.contains(&primary), "{}", out.stderr);
    assert!(!out.stderr.contains("sentinel-pw") && !out.stderr.contains("data-pw"));

    let user_url = url.replace("redis+sentinel://", "redis+sentinel://quantum-recover@");
    let out = run_with(&user_url, Some(&sentinel_file), "pw");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["claimed"].as_array().unwrap().len(), 10_000);

    // doctor checks the URL's user, through the admin connection to the same primary.
    let (log_file, metrics_file) = (file("log", ""), dir.path().join("m.prom"));
    let doctor_args = [
        "doctor",
        "--url",
        &user_url,
        "--sentinel-password-file",
        &sentinel_file,
        "--admin-password-file",
        &data_file,
        "--log-file",
        &log_file,
        "--metrics-file",
        metrics_file.to_str().unwrap(),
    ];
    let doctor = run_trigger(&doctor_args, &[("REDISCLI_AUTH", "pw")]);
    let line = |check: &str| {
        doctor
            .stdout
            .lines()
            .find(|l| l[4..].trim_start().starts_with(&format!("{check}:")))
            .unwrap_or_else(|| panic!("no {check} line:\n{}", doctor.stdout))
            .to_string()
    };
    let acl = line("acl");
    assert!(
        acl.starts_with("ok") && acl.contains("quantum-recover"),
        "{acl}"
    );
    let sentinel = line("sentinel");
    assert!(sentinel.starts_with("ok"), "{sentinel}");
    assert!(
        sentinel.contains(&format!(
            "replica 127.0.0.1:{}: module loaded",
            set.nodes[1].port.unwrap()
        )),
        "{sentinel}"
    );

    // Behind Sentinel the trigger WAITs before it reports: doctor asks for it.
    run(&mut con, &["ACL", "SETUSER", "quantum-recover", "-wait"]).unwrap();
    let doctor = run_trigger(&doctor_args, &[("REDISCLI_AUTH", "pw")]);
    let acl = doctor.stdout.lines().find(|l| l.contains("acl:")).unwrap();
    assert!(acl.starts_with("FAIL") && acl.contains("WAIT"), "{acl}");
}

/// Review r14 F1: SENTINEL FAILOVER (graceful) leaves the old primary
/// writable for seconds, answering neither READONLY nor with a lost
/// connection, and Sentinel then converts it, dropping what it was sent. A
/// drain of 30,000 entries in batches of 2 runs through it: the trigger
/// re-asks the sentinels every second and before reporting, so it says it
/// switched, and every ID it reports claimed is with the target on the
/// primary Sentinel names afterwards, reported once.
#[test]
fn a_graceful_failover_mid_drain_reports_only_what_the_named_primary_holds() {
    let (set, out) = through_a_graceful_failover(
        &[
            "--count",
            "5",
            "--scan",
            "5",
            "--min-idle",
            "1ms",
            "--max-batches",
            "1000000",
        ],
        "recovery",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let new_port = set.nodes[1].port.unwrap();
    assert_eq!(json["switched_primary"], format!("127.0.0.1:{new_port}"));
    assert_eq!(json["cursor"], "0-0", "the drain finished in the same run");
    let after = pel(&mut set.connect(1), STREAM, GROUP);
    assert_eq!(after.len(), 30_000, "nothing lost");
    let owner: std::collections::HashMap<&str, &str> = after
        .iter()
        .map(|(id, owner, _)| (id.as_str(), owner.as_str()))
        .collect();
    let claimed = ids(&json["claimed"]);
    let unique: HashSet<&str> = claimed.iter().copied().collect();
    assert_eq!(unique.len(), claimed.len(), "an entry reported twice");
    let not_there: Vec<_> = claimed
        .iter()
        .filter(|id| owner.get(**id) != Some(&"recovery"))
        .collect();
    assert!(
        not_there.is_empty(),
        "{} of {} reported claims are not with the target on the named primary, e.g. {:?}",
        not_there.len(),
        claimed.len(),
        not_there.first()
    );
    // Review r14b F5: `claimed` lists what the named primary answered; what
    // only the deposed one answered is listed apart, each ID once in all.
    let before = ids(&json["claimed_before_switch"]);
    let all: HashSet<&str> = claimed.iter().chain(&before).copied().collect();
    assert_eq!(all.len(), claimed.len() + before.len(), "listed twice");
    assert_eq!(
        all.len(),
        30_000,
        "every entry claimed once, on the named primary or before the switch"
    );
    assert!(
        out.stderr
            .contains(&format!("claimed_before_switch={}", before.len())),
        "{}",
        out.stderr
    );
}

/// The same for retire: it goes on with the named primary until the consumer
/// is empty there; what it reports moved is with the target there, and
/// `deleted` is true only if the consumer is gone from that primary.
#[test]
fn a_graceful_failover_mid_retire_reports_only_what_the_named_primary_holds() {
    let (set, out) = through_a_graceful_failover(
        &["retire", "--consumer", "exec-1", "--retire-count", "2"],
        "recovery",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let new_port = set.nodes[1].port.unwrap();
    assert_eq!(json["switched_primary"], format!("127.0.0.1:{new_port}"));
    let mut con = set.connect(1);
    let after = pel(&mut con, STREAM, GROUP);
    let owner: std::collections::HashMap<&str, &str> = after
        .iter()
        .map(|(id, owner, _)| (id.as_str(), owner.as_str()))
        .collect();
    let moved = ids(&json["moved"]);
    let unique: HashSet<&str> = moved.iter().copied().collect();
    assert_eq!(unique.len(), moved.len(), "an entry reported twice");
    assert!(moved.iter().all(|id| owner.get(*id) == Some(&"recovery")));
    let exec1 = consumers(&mut con, STREAM, GROUP)
        .iter()
        .any(|c| c.0 == "exec-1");
    assert_eq!(json["remaining"], 0);
    assert_eq!(
        json["deleted"], !exec1,
        "deleted={} but exec-1 exists: {exec1}",
        json["deleted"]
    );
    assert!(!after.iter().any(|e| e.1 == "exec-1"));
}

fn ids(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect()
}

/// 30,000 pending entries, the trigger started with `args`, SENTINEL
/// FAILOVER once it moved 500 to `target` (the rest takes thousands of
/// calls, seconds, and a failover about a second); returns when every sentinel names
/// the promoted replica.
fn through_a_graceful_failover(args: &[&str], target: &str) -> (SentinelSet, TriggerRun) {
    through_a_graceful_failover_as(args, target, None, |_| {})
}

/// The same with the data nodes' ACL user `user` (password `pw` on both
/// nodes) in the URL, and `before` run on the set just before SENTINEL FAILOVER.
fn through_a_graceful_failover_as(
    args: &[&str],
    target: &str,
    user: Option<&str>,
    before: impl FnOnce(&SentinelSet),
) -> (SentinelSet, TriggerRun) {
    let set = SentinelSet::start(SentinelOptions::default());
    let mut con = set.nodes[0].connect();
    // One reader: retire has all 30,000 to move, in thousands of calls.
    backlog_of(&mut con, 30_000, &["exec-1"]);
    set.wait_synced();
    let mut url = set.url();
    let mut env = Vec::new();
    if let Some(user) = user {
        // ACL users are not replicated: every data node needs its own.
        for node in 0..2 {
            let acl = ["ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all"];
            run(&mut set.connect(node), &acl).unwrap();
        }
        url = url.replace("redis+sentinel://", &format!("redis+sentinel://{user}@"));
        env.push(("REDISCLI_AUTH", "pw"));
    }
    let mut all = vec!["--url", &url, "--deadline", "60s", "--json"];
    all.extend(args);
    let started = Instant::now();
    let child = spawn_trigger_with(&all, &env);
    let held = |con: &mut redis::Connection| held_by(con, STREAM, GROUP, target);
    while held(&mut con) < 500 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "it never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    before(&set);
    let mut sentinel = set.sentinels[0].connect().unwrap();
    run(&mut sentinel, &["SENTINEL", "FAILOVER", MASTER]).unwrap();
    let asked_at = started.elapsed();
    let out = finished(child, started);
    eprintln!(
        "SENTINEL FAILOVER at {asked_at:?}; the trigger ended after {:?}\n{}",
        out.elapsed, out.stderr
    );
    // The run may end before the failover does (a refusal): wait for it.
    set.wait_until_named(set.nodes[1].port.unwrap());
    (set, out)
}

/// The trigger's output once it ended.
fn finished(child: std::process::Child, started: Instant) -> TriggerRun {
    let out = child.wait_with_output().unwrap();
    TriggerRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Review r14b F3: the switch found by the sentinels (the periodic check or
/// READONLY), then the new primary refuses the run's user (its password
/// differs there): 77, and the report still names the primary it switched to.
#[test]
fn a_refusal_after_a_switch_still_says_it_switched() {
    let (set, out) = through_a_graceful_failover_as(
        &[
            "--count",
            "5",
            "--scan",
            "5",
            "--min-idle",
            "1ms",
            "--max-batches",
            "1000000",
        ],
        "recovery",
        Some("quantum-recover"),
        |set| {
            let reset = ["ACL", "SETUSER", "quantum-recover", "resetpass", ">other"];
            run(&mut set.connect(1), &reset).unwrap();
        },
    );
    assert_eq!(out.code, 77, "{}", out.stderr);
    let new_port = set.nodes[1].port.unwrap();
    let json = out.json();
    // Review r15s F2: the new primary refused the first call sent there, so
    // it answered none: what the old one answered is listed apart.
    assert_eq!(ids(&json["claimed"]).len(), 0, "{}", out.stderr);
    assert!(
        ids(&json["claimed_before_switch"]).len() >= 500,
        "{}",
        out.stderr
    );
    assert_eq!(
        json["switched_primary"],
        format!("127.0.0.1:{new_port}"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("switched_primary=127.0.0.1:{new_port}")),
        "{}",
        out.stderr
    );
}

/// 10,000 pending entries taken by one reader; the trigger (`args`) started
/// on the set's sentinels (`url`); `during` runs once it moved 200 to
/// recovery. Returns the run.
fn during_a_drain(
    set: &SentinelSet,
    url: &str,
    args: &[&str],
    during: impl FnOnce(),
) -> TriggerRun {
    let mut con = set.nodes[0].connect();
    backlog_of(&mut con, 10_000, &["exec-1"]);
    set.wait_synced();
    let mut all = vec!["--url", url, "--json", "--min-idle", "1ms"];
    all.extend(args);
    let started = Instant::now();
    let child = trigger_command(&all, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while consumers(&mut con, STREAM, GROUP)
        .iter()
        .all(|c| c.0 != "recovery" || c.1 < 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "it never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    during();
    finished(child, started)
}

/// Review r14b F1: two sentinels in the URL; mid-drain one of them is made to
/// monitor another node under the same name (SENTINEL REMOVE + MONITOR), a
/// tie. The run must not go on and report success on a primary no majority
/// names: it stops sending, asks again until the deadline and exits 75
/// saying the outcome is unknown; the drain did not finish.
#[test]
fn a_tie_mid_drain_is_not_reported_as_success() {
    let set = SentinelSet::start(SentinelOptions::default());
    let unrelated = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    let url = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/{MASTER}",
        set.sentinels[0].port, set.sentinels[1].port
    );
    let args = ["--count", "1", "--scan", "1", "--max-batches", "1000000"];
    let out = during_a_drain(
        &set,
        &url,
        &[&args[..], &["--deadline", "6s"]].concat(),
        || {
            let mut s = set.sentinels[1].connect().unwrap();
            run(&mut s, &["SENTINEL", "REMOVE", MASTER]).unwrap();
            let port = unrelated.port.unwrap().to_string();
            let monitor = ["SENTINEL", "MONITOR", MASTER, "127.0.0.1", &port, "2"];
            run(&mut s, &monitor).unwrap();
        },
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    let json = out.json();
    let error = json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the sentinels disagree") && error.contains("the outcome is unknown"),
        "{}",
        out.stderr
    );
    let held = consumers(&mut set.connect(0), STREAM, GROUP)
        .iter()
        .find(|c| c.0 == "recovery")
        .map_or(0, |c| c.1);
    assert!(held < 10_000, "the drain went on to its end: {held}");
    assert_ne!(json["cursor"], "0-0");
}

/// Review r14b F2: the replica is promoted by hand (REPLICAOF NO ONE)
/// mid-drain while the sentinels still name the primary: the primary's last
/// writes never reach it, so the run must not report success. It WAITs for
/// its replica, finds it a primary, waits for the sentinels to name a
/// successor until the deadline and exits 75, the outcome unknown. A run with
/// a healthy replica reports how many replicas acknowledged its writes.
#[test]
fn a_promoted_replica_makes_the_outcome_unknown() {
    let set = SentinelSet::start(SentinelOptions::default());
    let url = set.url();
    let args = ["--count", "5", "--scan", "5", "--max-batches", "1000000"];
    let out = during_a_drain(
        &set,
        &url,
        &[&args[..], &["--deadline", "10s"]].concat(),
        || {
            run(&mut set.connect(1), &["REPLICAOF", "NO", "ONE"]).unwrap();
        },
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    let json = out.json();
    let error = json["error"].as_str().unwrap_or_default();
    let replica = format!("127.0.0.1:{}", set.nodes[1].port.unwrap());
    assert!(
        error.contains(&format!("its replica {replica} did not acknowledge"))
            && error.contains("the outcome is unknown"),
        "{}",
        out.stderr
    );
}

/// Review r14 F2: a sentinel naming another node than the others (stale after
/// a failover, or lying) is outvoted: the run drains the primary the majority
/// names, though the odd one is listed first and its node is a primary with
/// the module and the same backlog. Two sentinels that disagree, no majority:
/// 75 at the deadline, naming both sides, and nothing changes anywhere.
#[test]
fn the_primary_is_the_one_most_sentinels_name() {
    let set = SentinelSet::start(SentinelOptions::default());
    backlog(&mut set.connect(0), 10_000);
    let unrelated = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    let mut other = unrelated.connect();
    backlog(&mut other, 10_000);
    let odd = SentinelProcess::start(unrelated.port.unwrap(), None);
    let real: Vec<String> = set
        .sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let url = format!(
        "redis+sentinel://127.0.0.1:{},{}/{MASTER}",
        odd.port,
        real.join(",")
    );
    let args = [
        "--min-idle",
        "1ms",
        "--count",
        "1000",
        "--max-batches",
        "100",
    ];
    let run_at = |url: &str, deadline: &str| {
        let mut all = vec!["--url", url, "--deadline", deadline, "--json"];
        all.extend(args);
        run_trigger(&all, &[])
    };
    let held = |con: &mut redis::Connection| {
        pel(con, STREAM, GROUP)
            .iter()
            .filter(|e| e.1 == "recovery")
            .count()
    };
    let out = run_at(&url, "10s");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["claimed"].as_array().unwrap().len(), 10_000);
    assert_eq!(held(&mut set.connect(0)), 10_000);
    assert_eq!(held(&mut other), 0, "the odd sentinel's node was drained");
    // Review r14b F2: the report says how many replicas hold the writes.
    assert_eq!(json["replicas_acked"], 1, "{}", out.stderr);
    assert_eq!(json["replicas"], 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("replicas_acked=1 replicas=1"),
        "{}",
        out.stderr
    );

    // Review r14b F4: the odd sentinel listed twice (the second time as
    // `localhost`, another address for the same sentinel) still votes once:
    // one against one is a tie, not a majority for the odd node.
    for twice in [
        format!("127.0.0.1:{0},127.0.0.1:{0}", odd.port),
        format!("127.0.0.1:{0},localhost:{0}", odd.port),
    ] {
        let url = format!("redis+sentinel://{twice},{}/{MASTER}", real[0]);
        let out = run_at(&url, "1500ms");
        assert_eq!(out.code, 75, "{url}: {}", out.stderr);
        assert!(
            out.stderr.contains("the sentinels disagree"),
            "{}",
            out.stderr
        );
        assert_eq!(held(&mut other), 0, "the odd sentinel's node was drained");
    }

    let url = format!(
        "redis+sentinel://127.0.0.1:{},{}/{MASTER}",
        odd.port, real[0]
    );
    let out = run_at(&url, "2s");
    assert_eq!(out.code, 75, "{}", out.stderr);
    let sides = [unrelated.port.unwrap(), set.nodes[0].port.unwrap()]
        .map(|port| format!("127.0.0.1:{port} (by "));
    assert!(
        out.stderr.contains("the sentinels disagree")
            && sides.iter().all(|s| out.stderr.contains(s)),
        "{}",
        out.stderr
    );
    assert_eq!(held(&mut other), 0);
}

/// Review r14 F3: a sentinel that answers garbage (an HTTP server) or refuses
/// the password is passed over like an unreachable one; when no sentinel can
/// be used the exit code is 77 only if every one refused the password, else
/// 75, and the message gives each one's reason.
#[test]
fn a_sentinel_that_fails_is_passed_over() {
    let set = SentinelSet::start(SentinelOptions::default());
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_at = format!("127.0.0.1:{}", http.local_addr().unwrap().port());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut client in http.incoming().flatten() {
            let _ = client.read(&mut [0; 512]);
            let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let locked = Server::with(Options {
        tcp: true,
        without_module: true,
        config: vec![("requirepass".into(), "pw".into())],
        ..Options::default()
    });
    let locked_at = format!("127.0.0.1:{}", locked.port.unwrap());
    let real = set.url().replace("redis+sentinel://", "");
    let at = |hosts: &str, deadline: &str| {
        run_trigger(
            &[
                "--url",
                &format!("redis+sentinel://{hosts}"),
                "--deadline",
                deadline,
            ],
            &[],
        )
    };
    let out = at(&format!("{http_at},{locked_at},{real}"), "10s");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("MODE refused"), "{}", out.stderr);

    let out = at(&format!("{http_at},{locked_at}/{MASTER}"), "2s");
    assert_eq!(out.code, 75, "{}", out.stderr);
    for reason in [
        // Review r14b F6: named, and said plainly what is wrong with it.
        format!("sentinel {http_at}: it did not answer as a Redis Sentinel does"),
        format!("sentinel {locked_at}"),
    ] {
        assert!(out.stderr.contains(&reason), "{reason}: {}", out.stderr);
    }
    let out = at(&format!("{locked_at}/{MASTER}"), "10s");
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);
}

/// Review r14 F4-F7: a database the primary lacks is 78 as with a plain URL;
/// an unknown query key is 78 without its value shown (Sentinel and plain
/// URLs); `[v6]` without a port takes the sentinel port; a sentinel password
/// file with a plain URL is 64 from the command line, a WARN from the environment.
#[test]
fn sentinel_url_settings_are_checked() {
    let set = SentinelSet::start(SentinelOptions::default());
    let url = set.url();
    let refused = |url: &str| run_trigger(&["--url", url, "--deadline", "5s"], &[]);
    let out = refused(&format!("{url}?db=99"));
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(out.stderr.contains("no such database"), "{}", out.stderr);
    // Review r14b F6: `db` twice or empty is refused, naming the key.
    let plain = format!("redis://127.0.0.1:{}/", set.nodes[0].port.unwrap());
    for (query, why) in [("?db=0&db=1", "is given twice"), ("?db=", "is empty")] {
        let out = refused(&format!("{plain}{query}"));
        assert_eq!(out.code, 78, "{query}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("query parameter \"db\" {why}")),
            "{query}: {}",
            out.stderr
        );
        let out = refused(&format!("{url}{query}"));
        assert_eq!(out.code, 78, "{query}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("query parameter \"db\" {why}")),
            "{query}: {}",
            out.stderr
        );
    }
    for url in [
        format!("{url}?sentinel_password=S3cr3t"),
        format!("{url}?db=0&%70assword=S3cr3t"),
        "redis://127.0.0.1:1/?auth=S3cr3t".to_string(),
    ] {
        let out = refused(&url);
        assert_eq!(out.code, 78, "{url}: {}", out.stderr);
        let named = ["unknown query parameter", "holds a password"];
        assert!(
            named.iter().any(|n| out.stderr.contains(n)),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("S3cr3t"), "{}", out.stderr);
    }
    let out = run_trigger(
        &["--url", "redis+sentinel://[::1]/m", "--deadline", "1s"],
        &[],
    );
    assert!(!out.stderr.contains("is not host:port"), "{}", out.stderr);
    assert!(out.stderr.contains("::1:26379"), "{}", out.stderr);

    let dir = TempDir::new("sentinel-pw-plain");
    let file = dir.path().join("pw");
    std::fs::write(&file, "pw\n").unwrap();
    let file = file.to_str().unwrap();
    let plain = format!("redis://127.0.0.1:{}", set.nodes[0].port.unwrap());
    let out = run_trigger(&["--url", &plain, "--sentinel-password-file", file], &[]);
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert!(out
        .stderr
        .contains("--sentinel-password-file applies to redis+sentinel://"));
    let out = run_trigger(
        &["--url", &plain],
        &[("QUANTUM_SENTINEL_PASSWORD_FILE", file)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("WARN") && out.stderr.contains("the file is not used"),
        "{}",
        out.stderr
    );
}

/// Review r14 F8: the primary SIGKILLed mid-drain and the promoted replica
/// set to LIVE before the run reaches it: its first answer is the refusal,
/// and the report still says the run switched to it.
#[test]
fn a_refusal_from_the_new_primary_says_it_switched() {
    let mut set = SentinelSet::start(SentinelOptions::default());
    let mut con = set.nodes[0].connect();
    backlog(&mut con, 50_000);
    set.wait_synced();
    let url = set.url();
    let args = ["--url", &url, "--min-idle", "1ms", "--count", "50"];
    let mut all = args.to_vec();
    all.extend(["--max-batches", "1000000", "--deadline", "60s", "--json"]);
    let child = trigger_command(&all, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while consumers(&mut con, STREAM, GROUP)
        .iter()
        .all(|c| c.0 != "recovery" || c.1 < 1000)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "it never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(con);
    set.nodes[0].kill();
    // Sentinel closes the promoted node's client connections: a fresh one each try.
    let promoted_to_live = || {
        let mut replica = set.nodes[1].try_connect().ok()?;
        let role = run(&mut replica, &["ROLE"]).ok()?;
        let redis::Value::Array(items) = role else {
            return None;
        };
        (quantum_integration::reply::text(&items[0]) == "master").then_some(())?;
        run(&mut replica, &["SET", "quantum:mode", "LIVE"]).ok()
    };
    while promoted_to_live().is_none() {
        assert!(started.elapsed() < Duration::from_secs(40), "no promotion");
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"], "refused", "{stderr}");
    let new_port = set.nodes[1].port.unwrap();
    assert_eq!(
        json["switched_primary"],
        format!("127.0.0.1:{new_port}"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("switched_primary=127.0.0.1:{new_port}")),
        "{stderr}"
    );
}

/// Review r15s F1: the README's ACL user exists on the primary only (ACL users
/// are not replicated, a common slip), so the replica cannot be asked its
/// role. SENTINEL FAILOVER promotes it, and the trigger starts while the
/// sentinels still name the old primary (still writable): its short drain
/// ends there, the promoted replica does not acknowledge the WAIT, and the
/// sentinels switch during or just after it. Whatever the exit code, the
/// report's `claimed` (`moved`) lists only what is with the target on the
/// primary the sentinels name afterwards; with exit 0 it is every entry.
fn while_a_promotion_is_announced(args: &[&str], listed: &str) {
    let set = SentinelSet::start(SentinelOptions::default());
    let mut con = set.nodes[0].connect();
    backlog_of(&mut con, 10_000, &["exec-1"]);
    let words = quantum_integration::readme_acl_user();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    run(&mut con, &words).unwrap();
    set.wait_synced();
    let url = set
        .url()
        .replace("redis+sentinel://", "redis+sentinel://quantum-recover@");
    let mut sentinel = set.sentinels[0].connect().unwrap();
    run(&mut sentinel, &["SENTINEL", "FAILOVER", MASTER]).unwrap();
    let promoted_by = Instant::now() + Duration::from_secs(10);
    // Sentinel kills the replica's clients as it promotes it: a new connection each time.
    // A connection can be reset as it opens, too: a failed try is "not yet".
    let role = || {
        let mut replica = set.nodes[1].try_connect().ok()?;
        run(&mut replica, &["ROLE"]).ok().map(|v| text_of(&v))
    };
    while !role().is_some_and(|r| r.starts_with("master")) {
        assert!(
            Instant::now() < promoted_by,
            "the replica was never promoted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut all = vec!["--url", &url, "--deadline", "20s", "--json"];
    all.extend(args);
    let started = Instant::now();
    let out = finished(
        spawn_trigger_with(&all, &[("REDISCLI_AUTH", "pw")]),
        started,
    );
    eprintln!("the trigger ended after {:?}\n{}", out.elapsed, out.stderr);
    let new_port = set.nodes[1].port.unwrap();
    set.wait_until_named(new_port);
    let after = pel(&mut set.connect(1), STREAM, GROUP);
    assert_eq!(after.len(), 10_000, "nothing lost");
    let owner: std::collections::HashMap<&str, &str> = after
        .iter()
        .map(|(id, owner, _)| (id.as_str(), owner.as_str()))
        .collect();
    let json = out.json();
    // retire's `moved` spans the primaries by design (README): checked on exit 0.
    if listed == "moved" && out.code != 0 {
        return;
    }
    let reported = ids(&json[listed]);
    let not_there: Vec<_> = reported
        .iter()
        .filter(|id| owner.get(**id) != Some(&"recovery"))
        .collect();
    assert!(
        not_there.is_empty(),
        "exit {}: {} of {} reported as {listed} are not with the target on the primary the \
         sentinels name (127.0.0.1:{new_port}), e.g. {:?}\n{}",
        out.code,
        not_there.len(),
        reported.len(),
        not_there.first(),
        out.stderr
    );
    if out.code == 0 {
        assert_eq!(reported.len(), 10_000, "{}", out.stderr);
    }
}

fn text_of(value: &redis::Value) -> String {
    match value {
        redis::Value::Array(items) => items.first().map(text_of).unwrap_or_default(),
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => format!("{other:?}"),
    }
}

#[test]
fn a_run_does_not_vouch_for_a_primary_deposed_during_its_wait() {
    let args = ["--count", "1000", "--scan", "1000", "--min-idle", "1ms"];
    while_a_promotion_is_announced(&args, "claimed");
}

#[test]
fn a_retire_does_not_vouch_for_a_primary_deposed_during_its_wait() {
    let args = ["retire", "--consumer", "exec-1", "--retire-count", "1000"];
    while_a_promotion_is_announced(&args, "moved");
}

/// A TCP proxy to `upstream` on loopback that passes what the client sends
/// at once and the answers one byte every 300 ms (a sentinel on a congested
/// link: every read gets a byte well within any per-read timeout). Its port.
fn trickling_proxy(upstream: u16) -> u16 {
    use std::io::{Read, Write};
    quantum_integration::serve_on_loopback(move |mut client| {
        let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        let (mut to_server, mut from_client) =
            (server.try_clone().unwrap(), client.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut from_client, &mut to_server));
        let mut byte = [0u8; 1];
        while server.read_exact(&mut byte).is_ok() {
            std::thread::sleep(Duration::from_millis(300));
            if client.write_all(&byte).is_err() {
                return;
            }
        }
    })
}

/// Review r15s F3: one sentinel of three answers correctly but slowly (a
/// byte every 300 ms): it is passed over like one that fails (each exchange
/// is bounded as a whole), so the drain finishes within its 8 s deadline on
/// the two others instead of spending it waiting for that sentinel.
#[test]
fn a_trickling_sentinel_is_passed_over() {
    let set = SentinelSet::start(SentinelOptions::default());
    let mut con = set.nodes[0].connect();
    backlog_of(&mut con, 10_000, &["exec-1"]);
    let slow = trickling_proxy(set.sentinels[2].port);
    let url = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{slow}/{MASTER}",
        set.sentinels[0].port, set.sentinels[1].port
    );
    let args = [
        "--url",
        &url,
        "--min-idle",
        "1ms",
        "--json",
        "--deadline",
        "8s",
    ];
    let args = [&args[..], &["--count", "100", "--scan", "100"]].concat();
    let out = run_trigger(&args, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(ids(&json["claimed"]).len(), 10_000, "{}", out.stderr);
    assert_eq!(json["last_call_unknown"], false, "{}", out.stderr);
}

/// A fake sentinel on loopback speaking RESP: SENTINEL MYID gives its own ID,
/// SENTINEL GET-MASTER-ADDR-BY-NAME names port `first` for the first `flip_after`
/// asks and port `then` after; anything else is +OK. Its port.
fn flipping_sentinel(first: u16, then: u16, flip_after: usize) -> u16 {
    naming_sentinel("127.0.0.1", first, then, flip_after)
}

/// The same, naming `host` (`localhost`, `127.0.0.1`) with the ports.
fn naming_sentinel(host: &'static str, first: u16, then: u16, flip_after: usize) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    quantum_integration::serve_on_loopback(move |client| {
        let mut out = client.try_clone().unwrap();
        let mut lines = BufReader::new(client).lines();
        while let Some(Ok(head)) = lines.next() {
            let n: usize = head.trim_start_matches('*').parse().unwrap_or(0);
            let words: Vec<String> = (0..n)
                .filter_map(|_| {
                    lines.next()?.ok()?;
                    lines.next()?.ok()
                })
                .map(|w| w.to_ascii_uppercase())
                .collect();
            let reply = match words.get(1).map(String::as_str) {
                Some("MYID") => "$13\r\nfake-sentinel\r\n".to_string(),
                Some("GET-MASTER-ADDR-BY-NAME") => {
                    let at = asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let port = if at < flip_after { first } else { then }.to_string();
                    let (h, p) = (host.len(), port.len());
                    format!("*2\r\n${h}\r\n{host}\r\n${p}\r\n{port}\r\n")
                }
                _ => "+OK\r\n".to_string(),
            };
            if out.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// Review r15s F4: the sentinels start to disagree between the drain and its
/// report (a fake sentinel names another primary after its first answer):
/// at the deadline the message says they disagree and names both sides,
/// for a tie (run, two sentinels) and a majority not yet unanimous (retire,
/// three sentinels, a deadline shorter than the 3 s they are given to
/// agree), and retire does not say the consumer's entries stay pending
/// when the last call left it none.
#[test]
fn sentinels_that_disagree_before_the_report_are_named() {
    let set = SentinelSet::start(SentinelOptions::default());
    let mut con = set.nodes[0].connect();
    backlog_of(&mut con, 10_000, &["exec-1", "exec-2"]);
    let primary = set.nodes[0].port.unwrap();
    let (s0, s1) = (set.sentinels[0].port, set.sentinels[1].port);
    let side = |port: u16, by: &str| format!("127.0.0.1:{port} (by {by})");

    let fake = flipping_sentinel(primary, 1, 1);
    let url = format!("redis+sentinel://127.0.0.1:{s0},127.0.0.1:{fake}/{MASTER}");
    let args = ["retire", "--consumer", "exec-1", "--retire-count", "10000"];
    let out = run_trigger(
        &[&["--url", &url, "--deadline", "2s"], &args[..]].concat(),
        &[],
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    let sides = format!(
        "{} vs {}",
        side(1, &format!("127.0.0.1:{fake}")),
        side(primary, &format!("127.0.0.1:{s0}"))
    );
    assert!(
        out.stderr.contains("agreed on the primary"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&sides), "{}", out.stderr);
    assert!(!out.stderr.contains("no sentinel"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("stay pending under its name"),
        "{}",
        out.stderr
    );

    let fake = flipping_sentinel(primary, 1, 1);
    let url = format!("redis+sentinel://127.0.0.1:{s0},127.0.0.1:{s1},127.0.0.1:{fake}/{MASTER}");
    let args = ["--url", &url, "--deadline", "2s", "--min-idle", "1ms"];
    let out = run_trigger(&args, &[]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    let sides = format!(
        "{} vs {}",
        side(1, &format!("127.0.0.1:{fake}")),
        side(primary, &format!("127.0.0.1:{s0}, 127.0.0.1:{s1}"))
    );
    assert!(out.stderr.contains(&sides), "{}", out.stderr);
    assert!(!out.stderr.contains("no sentinel"), "{}", out.stderr);
}

/// A listener on loopback that accepts connections and never answers (a hung
/// sentinel). Its port and how many connections it accepted.
fn hung_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let port = quantum_integration::serve_on_loopback(move |client| {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Held open, never answered.
        let _held = client;
        loop {
            std::thread::park();
        }
    });
    (port, accepted)
}

/// Review r15s F5: one hung sentinel of three (accepts, never answers) held
/// every periodic check for its 1 s bound, throttling the drain to half. A
/// sentinel that failed a periodic check is left out of them for 10 s: in an
/// 8 s drain it is asked at connect and at most once more, not every second.
#[test]
fn a_hung_sentinel_is_left_out_of_the_periodic_checks() {
    let set = SentinelSet::start(SentinelOptions::default());
    let mut con = set.nodes[0].connect();
    backlog_of(&mut con, 30_000, &["exec-1"]);
    let (hung, accepted) = hung_listener();
    let url = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{hung}/{MASTER}",
        set.sentinels[0].port, set.sentinels[1].port
    );
    let args = [
        "--url",
        &url,
        "--min-idle",
        "1ms",
        "--json",
        "--deadline",
        "8s",
    ];
    let args = [&args[..], &["--count", "1", "--scan", "1"]].concat();
    let args = [&args[..], &["--max-batches", "1000000"]].concat();
    let out = run_trigger(&args, &[]);
    let asked = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(out.stderr.contains("deadline reached"), "{}", out.stderr);
    assert!(
        asked <= 2,
        "the hung sentinel was asked {asked} times in 8 s\n{}",
        out.stderr
    );
}

/// Review r15s F6: two sentinels name the same primary, one as `localhost`
/// and one as `127.0.0.1`: one node, not a tie (which ended every run at
/// the deadline with 75).
#[test]
fn the_same_primary_under_two_names_is_one_vote() {
    let set = SentinelSet::start(SentinelOptions::default());
    let mut con = set.nodes[0].connect();
    backlog_of(&mut con, 10_000, &["exec-1"]);
    let primary = set.nodes[0].port.unwrap();
    let by_name = naming_sentinel("localhost", primary, primary, usize::MAX);
    let url = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{by_name}/{MASTER}",
        set.sentinels[0].port
    );
    let args = [
        "--url",
        &url,
        "--min-idle",
        "1ms",
        "--json",
        "--deadline",
        "3s",
    ];
    let out = run_trigger(&args, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(ids(&out.json()["claimed"]).len(), 10_000, "{}", out.stderr);
}
