//! `quantum-stream-recover doctor` against real servers: each Redis-side check
//! fails naming its fix and passes once fixed; an unreachable Redis is a FAIL
//! and exit 1. (The systemd-side checks run in tests/debian_install.rs.)

use quantum_integration::trigger::run_trigger;
use quantum_integration::{module_path, Options, Server, TempDir};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
        run.stdout.lines().any(
            |l| l.starts_with("FAIL redis: cannot use redis://127.0.0.1:1:")
                && l.contains("Redis unreachable")
        ),
        "{}",
        run.stdout
    );
}

/// `doctor` against `server` with a redis.conf (`--redis-conf`) and log and
/// metrics paths of the caller's choosing; returns the report.
fn doctor_with(server: &Server, url_user: &str, conf: &Path, log: &Path, metrics: &Path) -> String {
    doctor_with_env(server, url_user, conf, log, metrics, &[])
}

/// `doctor_with`, the settings in `env` added to the trigger's environment.
fn doctor_with_env(
    server: &Server,
    url_user: &str,
    conf: &Path,
    log: &Path,
    metrics: &Path,
    env: &[(&str, &str)],
) -> String {
    let password = conf.with_file_name("password");
    std::fs::write(&password, "pw\n").unwrap();
    let url = format!("redis://{url_user}127.0.0.1:{}", server.port.unwrap());
    let mut args = vec![
        "doctor",
        "--url",
        &url,
        "--redis-conf",
        conf.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
        "--redis-unit",
        "quantum-test-no-such.service",
    ];
    if !url_user.is_empty() {
        args.extend(["--password-file", password.to_str().unwrap()]);
    }
    let env = [&[("REDISCLI_AUTH", "")], env].concat();
    let run = run_trigger(&args, &env);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    run.stdout
}

/// With a dead-letter stream set (as the env file sets it for the service),
/// the acl check asks whether the URL's user may XADD to it: the copies are
/// written with the caller's ACL.
#[test]
fn doctor_checks_the_dead_letter_stream_may_be_written() {
    let server = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    let dir = TempDir::new("doctor-dl");
    let (log, metrics) = (dir.path().join("log"), dir.path().join("m.prom"));
    let conf = dir.path().join("redis.conf");
    std::fs::write(&conf, format!("loadmodule {}\n", module_path().display())).unwrap();
    let mut con = server.connect();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("nodl")
        .arg(&["on", ">pw", "~quantum:*", "+@all"])
        .query::<()>(&mut con)
        .unwrap();
    let setting = [("QUANTUM_DEAD_LETTER", "dead:letters")];
    let report = doctor_with_env(&server, "nodl@", &conf, &log, &metrics, &setting);
    let acl = line(&report, "acl");
    assert!(
        acl.starts_with("FAIL") && acl.contains("XADD dead:letters"),
        "{report}"
    );
    // Without the setting there is nothing to check.
    let report = doctor_with(&server, "nodl@", &conf, &log, &metrics);
    assert!(line(&report, "acl").starts_with("ok"), "{report}");
}

#[test]
fn doctor_checks_the_module_path_the_next_restart_loads() {
    let server = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    let dir = TempDir::new("doctor-conf");
    let (log, metrics) = (dir.path().join("log"), dir.path().join("m.prom"));
    let conf = dir.path().join("redis.conf");
    let sub = dir.path().join("conf.d");
    std::fs::create_dir(&sub).unwrap();
    let built = module_path();
    let at = |text: &str| {
        std::fs::write(
            &conf,
            format!("bind 127.0.0.1\ninclude {}/*.conf\n", sub.display()),
        )
        .unwrap();
        std::fs::write(sub.join("quantum.conf"), text).unwrap();
        let report = doctor_with(&server, "", &conf, &log, &metrics);
        line(&report, "module path").to_string()
    };

    // Redis's parsing: any case, quoted, in an include, a non-normalised path.
    let loaded = format!(
        "LOADMODULE \"{}//{}\"\n",
        built.parent().unwrap().display(),
        built.file_name().unwrap().to_str().unwrap()
    );
    let check = at(&loaded);
    assert!(
        check.starts_with("ok   module path: ") && check.contains("quantum.conf:1 "),
        "{check}"
    );

    // Any name, when it resolves to the file Redis runs.
    let renamed = dir.path().join("mod.so");
    std::os::unix::fs::symlink(&built, &renamed).unwrap();
    let check = at(&format!("loadmodule {}\n", renamed.display()));
    assert!(
        check.starts_with("ok   module path: ") && check.contains("mod.so"),
        "{check}"
    );

    let missing = dir.path().join("libquantum-missing.so");
    let check = at(&format!("loadmodule {}\n", missing.display()));
    assert!(
        check.starts_with("FAIL") && check.contains("No such file"),
        "{check}"
    );

    let copy = dir.path().join("quantum-copy.so");
    std::fs::copy(&built, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = at(&format!("loadmodule {}\n", copy.display()));
    assert!(
        check.starts_with("FAIL") && check.contains("not an executable file"),
        "{check}"
    );

    // Another file than the running one: a restart changes what runs.
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = dir.path().join("libquantum.so");
    std::os::unix::fs::symlink(&copy, &link).unwrap();
    let check = at(&format!("loadmodule {}\n", link.display()));
    assert!(
        check.starts_with("FAIL")
            && check.contains("but its next restart loads")
            && check.contains(copy.to_str().unwrap()),
        "{check}"
    );

    let check = at("# loadmodule /usr/lib/redis/modules/libquantum.so\n");
    assert!(
        check.starts_with("FAIL module path: no loadmodule line"),
        "{check}"
    );
    let check = at(&format!("{loaded}{loaded}"));
    assert!(
        check.starts_with("FAIL") && check.contains("2 times"),
        "{check}"
    );
}

#[test]
fn doctor_tells_a_missing_permission_from_a_missing_module() {
    let server = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    let dir = TempDir::new("doctor-perm");
    let (log, metrics) = (dir.path().join("log"), dir.path().join("m.prom"));
    let conf = dir.path().join("redis.conf");
    std::fs::write(&conf, format!("loadmodule {}\n", module_path().display())).unwrap();
    let mut con = server.connect();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("noinfo")
        .arg(&["on", ">pw", "~*", "+@all", "-info"])
        .query::<()>(&mut con)
        .unwrap();
    let report = doctor_with(&server, "noinfo@", &conf, &log, &metrics);
    let module = line(&report, "module");
    assert!(
        module.starts_with("FAIL")
            && module.contains("user noinfo may not run INFO")
            && module.contains("ACL SETUSER noinfo +info")
            && module.contains("the module is loaded")
            && !module.contains("add `loadmodule"),
        "{report}"
    );
    let acl = line(&report, "acl");
    assert!(
        acl.contains("INFO quantum") && acl.contains("ACL SETUSER noinfo +info)"),
        "{report}"
    );

    // No user in the URL: the default user was checked; never advise changing it.
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-xgroup|delconsumer")
        .query::<()>(&mut con)
        .unwrap();
    let report = doctor_with(&server, "", &conf, &log, &metrics);
    let acl = line(&report, "acl");
    assert!(
        acl.starts_with(
            "FAIL acl: user default (the URL names no user) may not run: XGROUP DELCONSUMER"
        ) && acl.contains("put a least-privilege user in the URL")
            && !acl.contains("SETUSER default"),
        "{report}"
    );

    // A hash where the mode key should be: the wrong type, not a permission.
    redis::cmd("HSET")
        .arg("quantum:mode")
        .arg("f")
        .arg("v")
        .query::<()>(&mut con)
        .unwrap();
    let report = doctor_with(&server, "", &conf, &log, &metrics);
    assert!(
        line(&report, "mode key").contains("quantum:mode is not a string (wrong type)"),
        "{report}"
    );
}

#[test]
fn doctor_without_the_module_says_not_loaded_not_no_user() {
    let server = Server::with(Options {
        tcp: true,
        without_module: true,
        ..Options::default()
    });
    let dir = TempDir::new("doctor-nomodule");
    let conf = dir.path().join("redis.conf");
    std::fs::write(&conf, "bind 127.0.0.1\n").unwrap();
    let report = doctor_with(
        &server,
        "",
        &conf,
        &dir.path().join("log"),
        &dir.path().join("m.prom"),
    );
    assert!(
        line(&report, "module").starts_with("FAIL module: not loaded: add `loadmodule"),
        "{report}"
    );
    let acl = line(&report, "acl");
    assert!(
        !acl.contains("does not exist") && acl.contains("QUANTUM.* not checked"),
        "{report}"
    );
}

#[test]
fn doctor_checks_the_log_and_metrics_paths_as_the_service_writes_them() {
    let server = Server::with(Options {
        tcp: true,
        ..Options::default()
    });
    let dir = TempDir::new("doctor-files");
    let conf = dir.path().join("redis.conf");
    let link = dir.path().join("log-link");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
    let report = doctor_with(
        &server,
        "",
        &conf,
        &link,
        &dir.path().join("no-such-folder/m.prom"),
    );
    assert!(
        line(&report, "log file").starts_with("FAIL")
            && line(&report, "log file").contains("is a symlink"),
        "{report}"
    );
    let metrics = line(&report, "metrics file");
    assert!(
        metrics.starts_with("FAIL") && metrics.contains("setfacl -m u:quantum:rwx"),
        "{report}"
    );
    let report = doctor_with(
        &server,
        "",
        &conf,
        Path::new("/dev/null"),
        &dir.path().join("m.prom"),
    );
    assert!(
        line(&report, "log file").contains("/dev/null is not a regular file"),
        "{report}"
    );
    assert!(line(&report, "metrics file").starts_with("ok "), "{report}");
}
