//! End to end in a real systemd: boot the host's OS tree in systemd-nspawn
//! (`-D / --volatile=yes`) with the units bound into /run/systemd/system, a
//! redis-server carrying the module and a zombie scenario, and check that
//! (a) the timer's run recovered the zombie and wrote the log line and metrics,
//! (b) starting the trading service ran the ExecStartPre recovery first, and
//! (c) in LIVE mode the trading service still started and nothing was claimed.
//!
//! Needs root and systemd-nspawn (Debian package systemd-container). Where it
//! cannot run, it fails and says why; QUANTUM_SKIP_NSPAWN=1 skips it out loud.

use quantum_integration::{module_path, trigger_path, TempDir};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");
const S: &str = "quantum:stream:trade.intent";
const G: &str = "quantum:group:execution:trade.intent";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn copy_unit(name: &str, to: &Path) {
    std::fs::create_dir_all(to.join(name).parent().unwrap()).unwrap();
    std::fs::copy(Path::new(UNITS).join(name), to.join(name)).unwrap();
}

fn enable(units: &Path, target: &str, unit: &str) {
    let wants = units.join(format!("{target}.wants"));
    std::fs::create_dir_all(&wants).unwrap();
    symlink(format!("../{unit}"), wants.join(unit)).unwrap();
}

/// Everything the container gets, laid out under `dir`.
fn lay_out(dir: &Path) {
    let units = dir.join("units");
    // The real units, unchanged.
    for name in [
        "quantum-stream-recover.service",
        "quantum-stream-recover.timer",
        "quantum-execution.service.d/10-zombiefix.conf",
    ] {
        copy_unit(name, &units);
    }
    // Only the first run comes sooner than the real OnBootSec=30s, to keep the test short.
    write(
        &units.join("quantum-stream-recover.timer.d/test.conf"),
        "[Timer]\nOnBootSec=\nOnBootSec=6s\n",
    );
    enable(&units, "timers.target", "quantum-stream-recover.timer");

    write(
        &units.join("quantum-test-redis.service"),
        "[Unit]\nDescription=redis-server with the quantum module\n\n[Service]\n\
         ExecStart=/usr/bin/redis-server --port 6379 --bind 127.0.0.1 --save \"\" --appendonly no \
         --logfile /results/redis.log --loadmodule /opt/qtest/libquantum.so\n",
    );
    write(
        &units.join("quantum-test-scenario.service"),
        "[Unit]\nDescription=zombie scenario\nRequires=quantum-test-redis.service\nAfter=quantum-test-redis.service\n\n\
         [Service]\nType=oneshot\nExecStart=/bin/sh /opt/qtest/scenario.sh\n",
    );
    write(
        &units.join("quantum-execution.service"),
        "[Unit]\nDescription=stub trading execution service\nAfter=quantum-test-redis.service\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh /opt/qtest/stub-start.sh\n",
    );
    write(
        &units.join("quantum-test-reporter.service"),
        "[Unit]\nDescription=checks and reports\nAfter=multi-user.target quantum-test-scenario.service\n\n\
         [Service]\nType=oneshot\nExecStart=/bin/sh /opt/qtest/reporter.sh\n",
    );
    for unit in [
        "quantum-test-redis.service",
        "quantum-test-scenario.service",
        "quantum-test-reporter.service",
    ] {
        enable(&units, "multi-user.target", unit);
    }
    // The host's own services and the first-boot prompt have no business here;
    // with only a loopback, waiting for the network to be "online" would hold
    // network-online.target (which the service is ordered after) for minutes.
    for unit in [
        "systemd-firstboot.service",
        "systemd-networkd-wait-online.service",
        "redis-server.service",
        "prometheus.service",
        "prometheus-node-exporter.service",
    ] {
        symlink("/dev/null", units.join(unit)).unwrap();
    }

    let opt = dir.join("opt");
    std::fs::create_dir_all(&opt).unwrap();
    std::fs::copy(module_path(), opt.join("libquantum.so")).unwrap();
    let redis = "redis-cli -p 6379";
    write(
        &opt.join("scenario.sh"),
        &format!(
            "until {redis} ping; do sleep 0.1; done\n\
             {redis} set quantum:mode TESTNET\n\
             {redis} xgroup create {S} {G} '$' mkstream\n\
             {redis} xgroup createconsumer {S} {G} exec-zombie\n\
             {redis} xadd {S} '*' order 1\n\
             {redis} xreadgroup group {G} exec-dead count 1 streams {S} '>'\n"
        ),
    );
    write(
        &opt.join("stub-start.sh"),
        &format!(
            "echo \"== started, mode $({redis} get quantum:mode)\" >> /results/stub.txt\n\
             {redis} xpending {S} {G} - + 100 >> /results/stub.txt\n"
        ),
    );
    write(
        &opt.join("reporter.sh"),
        &format!(
            "out=/results\n\
             i=0; until [ -s /var/log/quantum/stream-recover.log ] || [ $i -ge 120 ]; do sleep 0.5; i=$((i+1)); done\n\
             cp /var/log/quantum/stream-recover.log $out/timer-run.log\n\
             cp /var/lib/prometheus/node-exporter/quantum_stream_recover.prom $out/metrics.prom\n\
             systemctl show -p Result -p ExecMainStatus quantum-stream-recover.service > $out/service-show.txt\n\
             {redis} xinfo consumers {S} {G} > $out/after-timer.txt\n\
             # (b) a new dead instance, then the trading service starts\n\
             {redis} xadd {S} '*' order 2 >/dev/null\n\
             {redis} xreadgroup group {G} exec-b count 1 streams {S} '>' >/dev/null\n\
             sleep 1.5\n\
             systemctl start quantum-execution.service\n\
             # (c) the same in LIVE mode\n\
             {redis} set quantum:mode LIVE\n\
             {redis} xadd {S} '*' order 3 >/dev/null\n\
             {redis} xreadgroup group {G} exec-c count 1 streams {S} '>' >/dev/null\n\
             sleep 1.5\n\
             systemctl restart quantum-execution.service\n\
             systemctl show -p ActiveState quantum-execution.service > $out/exec-show.txt\n\
             journalctl --no-pager -u quantum-execution.service -u quantum-stream-recover.service > $out/journal.txt\n\
             echo done > $out/done\n\
             systemctl --no-block poweroff\n"
        ),
    );
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(trigger_path(), bin.join("quantum-stream-recover")).unwrap();
    write(
        &dir.join("etc-quantum/stream-recover.env"),
        "QUANTUM_REDIS_URL=redis://127.0.0.1:6379\nQUANTUM_MIN_IDLE=1s\nQUANTUM_ZOMBIE_IDLE=1s\n\
         QUANTUM_LOG_FILE=/var/log/quantum/stream-recover.log\n",
    );
    copy_unit("sysusers-quantum.conf", dir);
    copy_unit("tmpfiles-quantum.conf", dir);
    // node_exporter's textfile folder, which the package would own.
    write(
        &dir.join("tmpfiles-test.conf"),
        "d /var/lib/prometheus/node-exporter 0755 quantum quantum -\n",
    );
    std::fs::create_dir_all(dir.join("results")).unwrap();
    std::fs::set_permissions(
        dir.join("results"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
}

fn cannot_run() -> Option<String> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !is_root {
        return Some("systemd-nspawn needs root".into());
    }
    match Command::new("systemd-nspawn").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("systemd-nspawn is missing: apt-get install systemd-container".into()),
    }
}

#[test]
fn timer_and_execstartpre_recover_in_a_real_systemd() {
    if let Some(why) = cannot_run() {
        if std::env::var("QUANTUM_SKIP_NSPAWN").as_deref() == Ok("1") {
            eprintln!("\n!!!!!!!! SKIPPED the systemd-nspawn end-to-end test: {why} !!!!!!!!\n");
            return;
        }
        panic!("the systemd-nspawn end-to-end test cannot run here: {why} (QUANTUM_SKIP_NSPAWN=1 skips it)");
    }
    let dir = TempDir::new("nspawn");
    let d = dir.path();
    lay_out(d);
    let bind =
        |flag: &str, from: &str, to: &str| format!("--{flag}={}:{to}", d.join(from).display());
    let machine = format!("qsr-test-{}", std::process::id());
    let uuid = format!(
        "{:032x}",
        std::process::id() as u128 * 0x9e37_79b9_7f4a_7c15 + 1
    );
    let out = Command::new("timeout")
        .args([
            "--kill-after=10",
            "240",
            "systemd-nspawn",
            "--quiet",
            "-D",
            "/",
            "--volatile=yes",
            "--boot",
        ])
        .args([
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--machine",
            &machine,
            "--uuid",
            &uuid,
        ])
        .arg(bind("bind-ro", "units", "/run/systemd/system"))
        .arg(bind("bind-ro", "opt", "/opt/qtest"))
        .arg(bind("bind-ro", "bin", "/usr/local/bin"))
        .arg(bind("bind-ro", "etc-quantum", "/etc/quantum"))
        .arg(bind(
            "bind-ro",
            "sysusers-quantum.conf",
            "/run/sysusers.d/quantum.conf",
        ))
        .arg(bind(
            "bind-ro",
            "tmpfiles-quantum.conf",
            "/run/tmpfiles.d/quantum.conf",
        ))
        .arg(bind(
            "bind-ro",
            "tmpfiles-test.conf",
            "/run/tmpfiles.d/quantum-test.conf",
        ))
        .arg(bind("bind", "results", "/results"))
        .args(["--", "systemd.firstboot=off"])
        .output()
        .expect("run systemd-nspawn");
    let console = String::from_utf8_lossy(&out.stdout);
    let results = d.join("results");
    let read = |name: &str| std::fs::read_to_string(results.join(name)).unwrap_or_default();
    let context = || {
        format!(
            "\n--- journal ---\n{}\n--- console (tail) ---\n{}",
            read("journal.txt"),
            {
                let lines: Vec<&str> = console.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            }
        )
    };
    assert_eq!(
        read("done"),
        "done\n",
        "the container did not finish its checks{}",
        context()
    );

    // (a) the timer's run: the zombie and the dead consumer are gone, the entry is with `recovery`.
    let show = read("service-show.txt");
    assert!(
        show.contains("Result=success") && show.contains("ExecMainStatus=0"),
        "{show}{}",
        context()
    );
    let log = read("timer-run.log");
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.contains(" [INFO] stream=quantum:stream:trade.intent"),
        "{log}"
    );
    assert!(
        first.contains("claimed=1") && first.contains("deleted=2"),
        "{log}"
    );
    let metrics = read("metrics.prom");
    assert!(
        metrics.contains("quantum_stream_recovery_claimed_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("quantum_stream_recovery_last_run_result{result=\"success\"} 1"),
        "{metrics}"
    );
    let after_timer = read("after-timer.txt");
    assert!(
        after_timer.contains("recovery") && !after_timer.contains("exec-zombie"),
        "{after_timer}"
    );

    // (b) and (c): what the trading service saw when it started.
    let stub = read("stub.txt");
    let starts: Vec<&str> = stub
        .split("== started, mode ")
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        starts.len(),
        2,
        "the trading service started twice:\n{stub}"
    );
    assert!(starts[0].starts_with("TESTNET"), "{stub}");
    assert!(
        !starts[0].contains("exec-b"),
        "ExecStartPre recovered exec-b before the start:\n{stub}"
    );
    assert!(starts[1].starts_with("LIVE"), "{stub}");
    assert!(
        starts[1].contains("exec-c"),
        "in LIVE nothing was claimed:\n{stub}"
    );
    assert!(
        read("exec-show.txt").contains("ActiveState=active"),
        "the trading service runs in LIVE too"
    );
    assert!(
        read("journal.txt").contains("MODE refused"),
        "the LIVE refusal is logged{}",
        context()
    );
}
