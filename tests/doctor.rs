//! `quantum-stream-recover doctor` against real servers: each Redis-side check
//! fails naming its fix and passes once fixed; an unreachable Redis is a FAIL
//! and exit 1. (The systemd-side checks run in tests/debian_install.rs.)

use quantum_integration::trigger::run_trigger;
use quantum_integration::{Options, Server, TempDir};

const S: &str = "quantum:stream:trade.intent";
const G: &str = "quantum:group:execution:trade.intent";

/// The README's least-privilege user, minus `+xgroup|delconsumer`.
fn least_privilege_user_without_delconsumer(server: &Server) {
    let mut con = server.connect();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("quantum-recover")
        .arg(
            "on >s3cret resetkeys ~quantum:stream:* %R~quantum:mode resetchannels -@all \
             +quantum.recover +quantum.status +quantum.retire +xpending +xclaim +xrange \
             +xinfo|consumers +xinfo|groups +xgroup|createconsumer +info +ping"
                .split(' ')
                .collect::<Vec<_>>(),
        )
        .query::<()>(&mut con)
        .unwrap();
}

fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| l[4..].trim_start().starts_with(&format!("{check}:")))
        .unwrap_or_else(|| panic!("no {check} line in:\n{report}"))
}

#[test]
fn doctor_names_each_fix_and_passes_once_fixed() {
    let server = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    let dir = TempDir::new("doctor");
    let password = dir.path().join("redis-password");
    std::fs::write(&password, "s3cret\n").unwrap();
    least_privilege_user_without_delconsumer(&server);
    let url = format!("redis://quantum-recover@127.0.0.1:{}", server.port.unwrap());
    let log = dir.path().join("stream_recover.log");
    let metrics = dir.path().join("quantum.prom");
    let args = [
        "doctor",
        "--url",
        &url,
        "--password-file",
        password.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
        // No such unit here: the module path check is the install test's.
        "--redis-unit",
        "quantum-test-no-such.service",
    ];
    let doctor = || {
        let run = run_trigger(&args, &[]);
        assert!(run.code == 0 || run.code == 1, "{run:?}", run = run.stderr);
        let report = run.stdout;
        assert_eq!(
            run.code,
            i32::from(report.lines().any(|l| l.starts_with("FAIL"))),
            "exit 0 exactly when nothing FAILs:\n{report}"
        );
        report
    };

    let report = doctor();
    assert!(line(&report, "redis").starts_with("ok "), "{report}");
    let module = line(&report, "module");
    assert!(
        module.starts_with("ok   module: loaded, build "),
        "{report}"
    );
    let mode = line(&report, "mode key");
    assert!(
        mode.starts_with("FAIL") && mode.contains("redis-cli SET quantum:mode TESTNET"),
        "{report}"
    );
    let acl = line(&report, "acl");
    assert!(
        acl.starts_with("FAIL")
            && acl.contains("user quantum-recover may not run: XGROUP DELCONSUMER")
            && acl.contains("+xgroup|delconsumer")
            && !acl.contains("XPENDING"),
        "{report}"
    );
    let stream = line(&report, "stream");
    assert!(
        stream.starts_with("FAIL") && stream.contains("does not exist yet"),
        "{report}"
    );

    let mut con = server.connect();
    redis::cmd("SET")
        .arg("quantum:mode")
        .arg("LIVE")
        .query::<()>(&mut con)
        .unwrap();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("quantum-recover")
        .arg("+xgroup|delconsumer")
        .query::<()>(&mut con)
        .unwrap();
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(S)
        .arg(G)
        .arg("$")
        .arg("MKSTREAM")
        .query::<()>(&mut con)
        .unwrap();
    let report = doctor();
    for check in [
        "redis",
        "module",
        "mode key",
        "acl",
        "stream",
        "log file",
        "metrics file",
    ] {
        assert!(line(&report, check).starts_with("ok "), "{report}");
    }
    assert!(
        line(&report, "mode key").contains("quantum:mode = LIVE: recovery refuses to act"),
        "{report}"
    );
}

#[test]
fn doctor_against_an_unreachable_redis_says_so_and_exits_1() {
    let run = run_trigger(
        &["doctor", "--url", "redis://127.0.0.1:1", "--deadline", "5s"],
        &[],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("FAIL redis: cannot use redis://127.0.0.1:1: Redis unreachable")),
        "{}",
        run.stdout
    );
}
