//! End to end in a real systemd: boot this machine's OS tree (an overlay of
//! `/` in systemd-nspawn, see src/nspawn.rs) with Debian's own
//! redis-server.service loading the module from /usr/lib/redis/modules, the
//! repository's units installed where the package puts them, and a zombie
//! scenario; check that (a) the timer's run recovered the zombie and wrote the
//! log line and metrics, (b) starting the trading service ran the ExecStartPre
//! recovery first, (c) in LIVE mode the trading service still started and
//! nothing was claimed, and (d) with Redis answering one byte every half
//! second, the trading service still started within the drop-in's
//! `--deadline 5s` plus one second.
//!
//! Needs root and systemd-nspawn (Debian package systemd-container). Where it
//! cannot run, it fails and says why; QUANTUM_SKIP_NSPAWN=1 skips it out loud.

use quantum_integration::nspawn::{self, write, Machine};
use quantum_integration::{module_path, trigger_path};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");
const S: &str = "quantum:stream:trade.intent";
const G: &str = "quantum:group:execution:trade.intent";

fn install(from: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(Path::new(UNITS).join(from), to).unwrap();
}

fn enable(units: &Path, target: &str, unit: &str) {
    let wants = units.join(format!("{target}.wants"));
    std::fs::create_dir_all(&wants).unwrap();
    let _ = std::fs::remove_file(wants.join(unit));
    symlink(format!("/etc/systemd/system/{unit}"), wants.join(unit)).unwrap();
}

fn reporter() -> String {
    let redis = "redis-cli -p 6379";
    format!(
        "out=/results\n\
         i=0; until [ -s /var/log/quantum/stream_recover.log ] || [ $i -ge 120 ]; do sleep 0.5; i=$((i+1)); done\n\
         cp /var/log/quantum/stream_recover.log $out/timer-run.log\n\
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
         # (d) Redis as slow as it gets: the ExecStartPre must end at its deadline\n\
         python3 /opt/qtest/drip.py &\n\
         sleep 0.5\n\
         sed -i 's/^QUANTUM_REDIS_URL=.*/QUANTUM_REDIS_URL=redis:\\/\\/127.0.0.1:6390/' /etc/quantum/stream-recover.env\n\
         t0=$(date +%s%N)\n\
         systemctl restart quantum-execution.service\n\
         echo $(( ($(date +%s%N) - t0) / 1000000 )) > $out/slow-start-ms.txt\n\
         systemctl show -p ActiveState quantum-execution.service > $out/slow-exec-show.txt\n\
         journalctl --no-pager -u quantum-execution.service -u quantum-stream-recover.service > $out/journal.txt\n\
         echo done > $out/done\n\
         systemctl --no-block poweroff\n"
    )
}

/// The module, the trigger and the units where the packages put them, on the
/// overlay; Debian's redis.conf gains the loadmodule line.
fn lay_out(m: &Machine) {
    let lib = m.path("/usr/lib/systemd/system");
    for name in [
        "quantum-stream-recover.service",
        "quantum-stream-recover.timer",
    ] {
        install(name, &lib.join(name));
    }
    let etc = m.path("/etc/systemd/system");
    install(
        "quantum-execution.service.d/10-zombiefix.conf",
        &etc.join("quantum-execution.service.d/10-zombiefix.conf"),
    );
    // Only the first run comes sooner than the real OnBootSec=30s, to keep the test short.
    write(
        &etc.join("quantum-stream-recover.timer.d/test.conf"),
        "[Timer]\nOnBootSec=\nOnBootSec=6s\n",
    );
    let wants = etc.join("timers.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    symlink(
        "/usr/lib/systemd/system/quantum-stream-recover.timer",
        wants.join("quantum-stream-recover.timer"),
    )
    .unwrap();
    write(
        &etc.join("quantum-test-scenario.service"),
        "[Unit]\nDescription=zombie scenario\nRequires=redis-server.service\nAfter=redis-server.service\n\n\
         [Service]\nType=oneshot\nExecStart=/bin/sh /opt/qtest/scenario.sh\n",
    );
    write(
        &etc.join("quantum-execution.service"),
        "[Unit]\nDescription=stub trading execution service\nAfter=redis-server.service\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh /opt/qtest/stub-start.sh\n",
    );
    enable(&etc, "multi-user.target", "quantum-test-scenario.service");

    let module = m.path("/usr/lib/redis/modules/libquantum.so");
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::copy(module_path(), &module).unwrap();
    std::fs::copy(trigger_path(), m.path("/usr/bin/quantum-stream-recover")).unwrap();
    let conf = m.path("/etc/redis/redis.conf");
    let text = std::fs::read_to_string(&conf).unwrap()
        + "\nloadmodule /usr/lib/redis/modules/libquantum.so\n";
    std::fs::write(&conf, text).unwrap();

    let redis = "redis-cli -p 6379";
    write(
        &m.path("/opt/qtest/scenario.sh"),
        &format!(
            "until {redis} ping; do sleep 0.1; done\n\
             {redis} set quantum:mode TESTNET\n\
             {redis} xgroup create {S} {G} '$' mkstream\n\
             {redis} xgroup createconsumer {S} {G} exec-zombie\n\
             {redis} xadd {S} '*' order 1\n\
             {redis} xreadgroup group {G} exec-dead count 1 streams {S} '>'\n"
        ),
    );
    // A "Redis" that accepts and answers one byte of an endless reply every half
    // second: every read succeeds, so only an absolute deadline ends the wait.
    write(
        &m.path("/opt/qtest/drip.py"),
        "import socket, threading, time\n\
         def drip(c):\n\
         \x20   try:\n\
         \x20       c.sendall(b'$1000000\\r\\n')\n\
         \x20       while True:\n\
         \x20           c.sendall(b'x'); time.sleep(0.5)\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', 6390)); s.listen(16)\n\
         while True:\n\
         \x20   threading.Thread(target=drip, args=(s.accept()[0],), daemon=True).start()\n",
    );
    write(
        &m.path("/opt/qtest/stub-start.sh"),
        &format!(
            "echo \"== started, mode $({redis} get quantum:mode)\" >> /results/stub.txt\n\
             {redis} xpending {S} {G} - + 100 >> /results/stub.txt\n"
        ),
    );
    write(
        &m.path("/etc/quantum/stream-recover.env"),
        "QUANTUM_REDIS_URL=redis://127.0.0.1:6379\nQUANTUM_MIN_IDLE=1s\nQUANTUM_ZOMBIE_IDLE=1s\n",
    );
    // The user, the log folder and the metrics ACL, as the package's postinst makes them.
    let sysusers = m.path("/usr/lib/sysusers.d/quantum-stream-recover.conf");
    install("sysusers-quantum.conf", &sysusers);
    let tmpfiles = m.path("/usr/lib/tmpfiles.d/quantum-stream-recover.conf");
    install("tmpfiles-quantum.conf", &tmpfiles);
    for (tool, args) in [
        ("systemd-sysusers", &[][..]),
        ("systemd-tmpfiles", &["--create"][..]),
    ] {
        let file = if tool == "systemd-sysusers" {
            &sysusers
        } else {
            &tmpfiles
        };
        let out = Command::new(tool)
            .arg(format!("--root={}", m.path("/").display()))
            .args(args)
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The postinst's ACL entry on node_exporter's folder, by uid: the host has no user quantum.
    let passwd = std::fs::read_to_string(m.path("/etc/passwd")).unwrap();
    let uid = passwd
        .lines()
        .find_map(|l| l.strip_prefix("quantum:"))
        .and_then(|rest| rest.split(':').nth(1))
        .expect("sysusers made quantum");
    let metrics = m.path("/var/lib/prometheus/node-exporter");
    std::fs::create_dir_all(&metrics).unwrap();
    let out = Command::new("setfacl")
        .args(["-m", &format!("u:{uid}:rwx")])
        .arg(&metrics)
        .output()
        .expect("setfacl (package acl)");
    assert!(
        out.status.success(),
        "setfacl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn timer_and_execstartpre_recover_in_a_real_systemd() {
    if !nspawn::can_run("the systemd-nspawn end-to-end test") {
        return;
    }
    let machine = Machine::new("nspawn", &reporter());
    lay_out(&machine);
    let console = machine.boot(&[], 240);
    let read = |name: &str| machine.result(name);
    let context = || {
        format!(
            "\n--- journal ---\n{}\n--- console (tail) ---\n{}",
            read("journal.txt"),
            console
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
        metrics.contains("quantum_stream_recovery_claimed_total{stream=\"quantum:stream:trade.intent\",group=\"quantum:group:execution:trade.intent\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("quantum_stream_recovery_last_run_result{stream=\"quantum:stream:trade.intent\",group=\"quantum:group:execution:trade.intent\",result=\"success\"} 1"),
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
        3,
        "the trading service started three times ((b), (c), (d)):\n{stub}"
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

    // (d) the ExecStartPre's --deadline 5s holds against a Redis that drips its answer.
    let slow_ms: u64 = read("slow-start-ms.txt").trim().parse().unwrap_or(u64::MAX);
    assert!(
        slow_ms <= 6_000,
        "the trading service took {slow_ms} ms to start behind a dripping Redis{}",
        context()
    );
    assert!(
        read("slow-exec-show.txt").contains("ActiveState=active"),
        "the trading service runs after a recovery that hit its deadline{}",
        context()
    );
}
