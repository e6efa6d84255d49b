//! The Debian packages in a booted Debian with its own redis-server.service
//! (an overlay of this machine's root in systemd-nspawn, see src/nspawn.rs):
//! dpkg -i both, load the module, recover a zombie through the packaged
//! service, `doctor` passing and failing with the fix, the password layout
//! the timer and the trading user's ExecStartPre share, an upgrade keeping an
//! edited conffile, refused module removal, purge, and the documented removal
//! path leaving a Redis that restarts.
//!
//! The module's removal guard (check-redis-config) and the README's rollback
//! with an aclfile run on this host too, against config folders and a real
//! redis-server.
//!
//! Uses the packages `scripts/package.sh` put in target/debian/ (scripts/test.sh
//! builds them first).

use quantum_integration::nspawn::{self, Machine};
use quantum_integration::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEBS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/debian");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn deb(name: &str) -> PathBuf {
    let path = Path::new(DEBS).join(format!("{name}_{VERSION}-1_amd64.deb"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/package.sh first",
        path.display()
    );
    path
}

/// The trigger package again as version -2, as a rebuild would make it.
fn bumped_trigger(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("dpkg-deb")
        .arg("-R")
        .arg(deb("quantum-stream-recover"))
        .arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap().replace(
        &format!("Version: {VERSION}-1\n"),
        &format!("Version: {VERSION}-2\n"),
    );
    std::fs::write(&control, text).unwrap();
    let out = dir.join(format!("quantum-stream-recover_{VERSION}-2_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out));
    out
}

const SCRIPT: &str = r#"
exec > /results/trace.txt 2>&1
set -x
# This machine's image forbids maintainer scripts to start or stop services
# (policy-rc.d exits 101, as in build containers); a Debian host has none.
rm -f /usr/sbin/policy-rc.d
S=quantum:stream:trade.intent
G=quantum:group:execution:trade.intent
ENV=/etc/quantum/stream-recover.env
CONF=/etc/redis/redis.conf
r() { redis-cli -p 6379 "$@"; }
doctor() { quantum-stream-recover doctor --env-file $ENV > /results/doctor-$1.txt 2>&1; echo "rc=$?" >> /results/doctor-$1.txt; }

dpkg -i /debs/quantum-redis-module.deb /debs/quantum-stream-recover.deb > /results/install.txt 2>&1
echo "rc=$?" >> /results/install.txt
{ stat -c '%a %U:%G' $ENV; systemctl is-enabled quantum-stream-recover.timer; systemctl is-active quantum-stream-recover.timer; } > /results/after-install.txt

# The operator's steps (README, Installing).
useradd --system trader && usermod -aG quantum trader
install -m 0640 -o root -g quantum /dev/null /etc/quantum/redis-password
printf 's3cret\n' > /etc/quantum/redis-password
sed -i 's|^QUANTUM_REDIS_URL=.*|QUANTUM_REDIS_URL=redis://quantum-recover@127.0.0.1:6379|' $ENV
printf 'QUANTUM_PASSWORD_FILE=/etc/quantum/redis-password\nQUANTUM_MIN_IDLE=1s\nQUANTUM_ZOMBIE_IDLE=1s\nQUANTUM_TRADING_USER=trader\n' >> $ENV

# A module under /usr/local/lib: doctor says so before any restart.
mkdir -p /usr/local/lib/redis && cp /usr/lib/redis/modules/libquantum.so /usr/local/lib/redis/
echo 'loadmodule /usr/local/lib/redis/libquantum.so' >> $CONF
doctor usrlocal
sed -i 's|^loadmodule /usr/local/lib/redis/libquantum.so$|loadmodule /usr/lib/redis/modules/libquantum.so|' $CONF
systemctl restart redis-server
r MODULE LIST > /results/module-list.txt
r ACL SETUSER quantum-recover on '>s3cret' resetkeys '~quantum:stream:*' '%R~quantum:mode' resetchannels -@all +quantum.recover +quantum.status +quantum.retire +xpending +xclaim +xrange '+xinfo|consumers' '+xinfo|groups' '+xgroup|createconsumer' '+xgroup|delconsumer' +info +ping
r CONFIG REWRITE

# A zombie scenario, first without the mode key.
r xgroup create $S $G '$' mkstream
r xgroup createconsumer $S $G exec-zombie
r xadd $S '*' order 1
r xreadgroup group $G exec-dead count 1 streams $S '>'
doctor nomode
r SET quantum:mode TESTNET
r ACL SETUSER quantum-recover '-xgroup|delconsumer'
doctor noacl
r ACL SETUSER quantum-recover '+xgroup|delconsumer'
r CONFIG REWRITE
sleep 1.5
systemctl start quantum-stream-recover.service
systemctl show -p Result -p ExecMainStatus quantum-stream-recover.service > /results/service.txt
journalctl --no-pager -u quantum-stream-recover.service > /results/journal.txt
cp /var/log/quantum/stream_recover.log /results/log.txt
stat -c '%a %U' /var/log/quantum/stream_recover.log > /results/log-stat.txt
cp /var/lib/prometheus/node-exporter/quantum_stream_recover.prom /results/metrics.prom
r xinfo consumers $S $G > /results/after-run.txt
# The ExecStartPre's command as the trading user: the same env and password files.
r xadd $S '*' order 2
r xreadgroup group $G exec-b count 1 streams $S '>'
sleep 1.5
runuser -u trader -- quantum-stream-recover run --env-file $ENV --deadline 5s > /results/trader.txt 2>&1
echo "rc=$?" >> /results/trader.txt

systemctl enable --now quantum-stream-recover.timer
# The ACL user survives a restart (CONFIG REWRITE); doctor passes.
systemctl restart redis-server
doctor ok
systemctl stop quantum-stream-recover.timer
doctor stopped
systemctl start quantum-stream-recover.timer

# Upgrade with an edited conffile and the timer running.
sed -i 's|^QUANTUM_DEADLINE=.*|QUANTUM_DEADLINE=29s|' $ENV
# The textfile folder a dangling symlink: the upgrade warns, never fails.
MD=/var/lib/prometheus/node-exporter
mv $MD $MD.real && ln -s /nonexistent/node-exporter $MD
dpkg -i /debs/quantum-stream-recover-2.deb > /results/upgrade.txt 2>&1
echo "rc=$?" >> /results/upgrade.txt
rm $MD && mv $MD.real $MD
{ dpkg-query -W -f '${Version}\n' quantum-stream-recover; grep '^QUANTUM_DEADLINE=' $ENV; stat -c '%a %U:%G' $ENV; systemctl is-active quantum-stream-recover.timer; } > /results/after-upgrade.txt

# The module package refuses to go while redis.conf loads it.
dpkg -r quantum-redis-module > /results/module-refused.txt 2>&1
echo "rc=$?" >> /results/module-refused.txt
ls /usr/lib/redis/modules/libquantum.so >> /results/module-refused.txt 2>&1

# Purge the trigger, with a policy-rc.d that forbids actions (as in
# containers): the timer still stops rather than outliving its unit.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
dpkg --purge quantum-stream-recover > /results/purge.txt 2>&1
echo "rc=$?" >> /results/purge.txt
rm -f /usr/sbin/policy-rc.d
getfacl -cp $MD | grep -E '^(user:quantum|mask)' >> /results/after-purge.txt
for p in /etc/quantum /var/log/quantum /var/lib/quantum /var/lib/prometheus/node-exporter/quantum_stream_recover.prom /usr/bin/quantum-stream-recover /usr/lib/systemd/system/quantum-stream-recover.timer /etc/systemd/system/timers.target.wants/quantum-stream-recover.timer; do
    [ -e $p ] && echo "left: $p"
done > /results/after-purge.txt
systemctl is-active quantum-stream-recover.timer >> /results/after-purge.txt

# README, Rolling back: the ACL user, then the module's lines, then a restart.
r ACL DELUSER quantum-recover
r CONFIG REWRITE
sed -i -e '/^[[:space:]]*loadmodule .*libquantum\.so/Id' -e '/^[[:space:]]*quantum\./Id' $CONF
/usr/libexec/quantum-redis-module/check-redis-config > /results/check-config.txt 2>&1
echo "rc=$?" >> /results/check-config.txt
systemctl restart redis-server
dpkg --purge quantum-redis-module > /results/module-purge.txt 2>&1
echo "rc=$?" >> /results/module-purge.txt
systemctl restart redis-server
sleep 0.5
{ systemctl is-active redis-server; r ping; } > /results/after-removal.txt

echo done > /results/done
systemctl --no-block poweroff
"#;

#[test]
fn packages_install_recover_upgrade_and_go_in_a_booted_debian() {
    if !nspawn::can_run("the Debian package install test") {
        return;
    }
    let debs = TempDir::new("debs");
    std::fs::copy(
        deb("quantum-redis-module"),
        debs.path().join("quantum-redis-module.deb"),
    )
    .unwrap();
    std::fs::copy(
        deb("quantum-stream-recover"),
        debs.path().join("quantum-stream-recover.deb"),
    )
    .unwrap();
    let bumped = bumped_trigger(debs.path());
    std::fs::rename(bumped, debs.path().join("quantum-stream-recover-2.deb")).unwrap();

    let machine = Machine::new("debian-install", SCRIPT);
    let console = machine.boot(&[format!("--bind-ro={}:/debs", debs.path().display())], 300);
    let read = |name: &str| machine.result(name);
    let context = || {
        format!(
            "\n--- trace ---\n{}\n--- journal ---\n{}\n--- console ---\n{console}",
            read("trace.txt"),
            read("journal.txt")
        )
    };
    assert_eq!(
        read("done"),
        "done\n",
        "the script did not finish{}",
        context()
    );

    // Installed, nothing enabled, the env file 0640 root:quantum.
    assert!(
        read("install.txt").ends_with("rc=0\n"),
        "{}",
        read("install.txt")
    );
    assert!(
        read("install.txt").contains("nothing is enabled or started")
            && read("install.txt").contains("SET quantum:mode TESTNET"),
        "{}",
        read("install.txt")
    );
    assert_eq!(
        read("after-install.txt"),
        "640 root:quantum\ndisabled\ninactive\n"
    );

    // doctor names the fix for each broken piece.
    let usrlocal = read("doctor-usrlocal.txt");
    assert!(
        usrlocal.contains("FAIL module path: redis-server.service forbids executing /usr/local/lib/redis/libquantum.so")
            && usrlocal.contains("move the module to /usr/lib/redis/modules/libquantum.so")
            && usrlocal.ends_with("rc=1\n"),
        "{usrlocal}"
    );
    assert!(
        read("module-list.txt").contains("/usr/lib/redis/modules/libquantum.so"),
        "Debian's redis-server.service did not load the module{}",
        context()
    );
    let nomode = read("doctor-nomode.txt");
    assert!(
        nomode.contains("FAIL mode key: quantum:mode is missing")
            && nomode.contains("redis-cli SET quantum:mode TESTNET")
            && nomode.ends_with("rc=1\n"),
        "{nomode}"
    );
    let noacl = read("doctor-noacl.txt");
    assert!(
        noacl.contains("FAIL acl: user quantum-recover may not run: XGROUP DELCONSUMER")
            && noacl.contains("+xgroup|delconsumer")
            && noacl.ends_with("rc=1\n"),
        "{noacl}"
    );

    // The packaged service recovered the zombie and wrote the seed's log path.
    let service = read("service.txt");
    assert!(
        service.contains("Result=success") && service.contains("ExecMainStatus=0"),
        "{service}{}",
        context()
    );
    let log = read("log.txt");
    assert!(
        log.contains(" [INFO] stream=quantum:stream:trade.intent")
            && log.contains("claimed=1")
            && log.contains("deleted=2"),
        "{log}"
    );
    assert_eq!(read("log-stat.txt"), "640 quantum\n");
    assert!(
        read("metrics.prom")
            .contains("quantum_stream_recovery_last_run_result{stream=\"quantum:stream:trade.intent\",group=\"quantum:group:execution:trade.intent\",result=\"success\"} 1"),
        "the metrics file:\n{}{}",
        read("metrics.prom"),
        context()
    );
    let after = read("after-run.txt");
    assert!(
        after.contains("recovery") && !after.contains("exec-zombie"),
        "{after}"
    );
    // The trading user's ExecStartPre command reads the same env and password files.
    let trader = read("trader.txt");
    assert!(
        trader.contains("claimed=1") && trader.ends_with("rc=0\n"),
        "{trader}"
    );

    // Timer enabled, the ACL user persisted across a restart: doctor passes.
    let ok = read("doctor-ok.txt");
    assert!(ok.ends_with("rc=0\n") && !ok.contains("FAIL"), "{ok}");
    assert!(
        ok.contains("ok   timer: quantum-stream-recover.timer enabled"),
        "{ok}"
    );
    assert!(
        ok.contains("ok   trading user: trader is in group quantum"),
        "{ok}"
    );
    let stopped = read("doctor-stopped.txt");
    assert!(
        stopped.contains("FAIL timer: quantum-stream-recover.timer is enabled but inactive")
            && stopped.ends_with("rc=1\n"),
        "{stopped}"
    );

    // Upgrade: the edited conffile, its mode and the running timer stay.
    assert!(
        read("upgrade.txt").ends_with("rc=0\n")
            && read("upgrade.txt").contains("warning: could not allow user quantum to write"),
        "{}",
        read("upgrade.txt")
    );
    assert_eq!(
        read("after-upgrade.txt"),
        format!("{VERSION}-2\nQUANTUM_DEADLINE=29s\n640 root:quantum\nactive\n")
    );

    // The module stays while redis.conf loads it, saying what to do.
    let refused = read("module-refused.txt");
    assert!(
        refused.contains("rc=1\n")
            && refused.contains("loadmodule /usr/lib/redis/modules/libquantum.so")
            && refused.contains("Unknown command or category name in ACL")
            && refused.ends_with(
                "/usr/lib/redis/modules/libquantum.sh\n"
                    .replace(".sh", ".so")
                    .as_str()
            ),
        "{refused}"
    );

    // Purge leaves nothing behind that runs or alerts.
    assert!(
        read("purge.txt").ends_with("rc=0\n"),
        "{}",
        read("purge.txt")
    );
    assert_eq!(
        read("after-purge.txt"),
        "inactive\n",
        "{}{}",
        read("purge.txt"),
        context()
    );

    // The documented removal path: the check is clean before the restart,
    // Redis restarts, the module package goes.
    assert_eq!(read("check-config.txt"), "rc=0\n");
    assert!(
        read("module-purge.txt").ends_with("rc=0\n"),
        "{}",
        read("module-purge.txt")
    );
    assert_eq!(read("after-removal.txt"), "active\nPONG\n", "{}", context());
}

const CHECK_REDIS_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/module/debian/check-redis-config"
);

/// The module prerm's guard (check-redis-config) on one config folder: its
/// exit code and the lines it lists.
fn guard(etc: &Path) -> (i32, String) {
    let out = Command::new(CHECK_REDIS_CONFIG)
        .env("QUANTUM_REDIS_ETC", etc)
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn the_removal_guard_reads_redis_conf_as_redis_does() {
    let dir = TempDir::new("guard");
    let etc = dir.path();
    let conf = etc.join("redis.conf");
    let clean = "bind 127.0.0.1\n# loadmodule /usr/lib/redis/modules/libquantum.so\n\
                 loadmodule /usr/lib/redis/modules/other.so\n";
    std::fs::write(&conf, clean).unwrap();
    assert_eq!(guard(etc), (0, String::new()));

    let link = etc.join("link.so");
    std::os::unix::fs::symlink("/usr/lib/redis/modules/libquantum.so", &link).unwrap();
    for form in [
        "LOADMODULE /usr/lib/redis/modules/libquantum.so".to_string(),
        "loadmodule \"/usr/lib/redis/modules/libquantum.so\"".to_string(),
        "loadmodule '/usr/lib/redis/modules/libquantum.so' x".to_string(),
        "  loadmodule /usr/lib/redis/modules//libquantum.so".to_string(),
        "loadmodule /usr/lib/redis/./modules/../modules/libquantum.so".to_string(),
        format!("loadmodule {}", link.display()),
        "QUANTUM.mode-key quantum:mode".to_string(),
        "user q on nopass ~* +Quantum.Recover".to_string(),
    ] {
        std::fs::write(&conf, format!("{clean}{form}\n")).unwrap();
        assert_eq!(
            guard(etc),
            (1, format!("{}:4: {form}\n", conf.display())),
            "{form}"
        );
    }

    // Lines in included files (globs) and in the aclfile any of them names.
    let sub = etc.join("conf.d");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(&conf, format!("{clean}include {}/*.conf\n", sub.display())).unwrap();
    let acl = etc.join("users.acl");
    std::fs::write(
        sub.join("10-quantum.conf"),
        format!(
            "Loadmodule /usr/lib/redis/modules/libquantum.so\naclfile \"{}\"\n",
            acl.display()
        ),
    )
    .unwrap();
    std::fs::write(
        &acl,
        "user default on nopass ~* &* +@all\nuser quantum-recover on #ab ~* +quantum.recover\n",
    )
    .unwrap();
    let (code, lines) = guard(etc);
    assert_eq!(code, 1, "{lines}");
    assert_eq!(
        lines,
        format!(
            "{}/10-quantum.conf:1: Loadmodule /usr/lib/redis/modules/libquantum.so\n\
             {}:2: user quantum-recover on #ab ~* +quantum.recover\n",
            sub.display(),
            acl.display()
        )
    );
}

/// README "Rolling back" with an aclfile: CONFIG REWRITE leaves the user's
/// `+quantum.*` line in the aclfile (Redis would not start without the
/// module); ACL SAVE removes it, and the check then passes.
#[test]
fn rolling_back_with_an_aclfile_needs_acl_save() {
    let dir = TempDir::new("rollback-aclfile");
    let acl = dir.path().join("users.acl");
    std::fs::write(&acl, "user default on nopass ~* &* +@all\n").unwrap();
    let server = quantum_integration::Server::with(quantum_integration::Options {
        config_file: Some(format!("aclfile {}\n", acl.display())),
        ..Default::default()
    });
    std::fs::write(
        dir.path().join("redis.conf"),
        format!("aclfile \"{}\"\n", acl.display()),
    )
    .unwrap();
    let mut con = server.connect();
    let mut run = |args: &[&str]| {
        redis::cmd(args[0])
            .arg(&args[1..])
            .query::<redis::Value>(&mut con)
            .unwrap();
    };
    run(&[
        "ACL",
        "SETUSER",
        "quantum-recover",
        "on",
        ">pw",
        "+quantum.recover",
    ]);
    run(&["ACL", "SAVE"]);
    let (code, lines) = guard(dir.path());
    assert!(code == 1 && lines.contains("+quantum.recover"), "{lines}");

    run(&["ACL", "DELUSER", "quantum-recover"]);
    run(&["CONFIG", "REWRITE"]);
    let (code, lines) = guard(dir.path());
    assert!(
        code == 1 && lines.contains("quantum-recover"),
        "CONFIG REWRITE alone: {lines}"
    );
    run(&["ACL", "SAVE"]);
    assert_eq!(guard(dir.path()), (0, String::new()));
}
