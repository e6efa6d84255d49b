//! The systemd units as systemd itself reads them: `systemd-analyze verify`
//! prints nothing, the service's exposure is at most 2.0, and the sysusers and
//! tmpfiles snippets create the user and the log folder.

use quantum_integration::{trigger_path, TempDir};
use std::path::Path;
use std::process::Command;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");
const INSTALLED: &str = "/usr/bin/quantum-stream-recover";

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(UNITS).join(name)).unwrap()
}

/// The units in `dir` as they would be installed, with the trigger at the path
/// the build put it (verify checks that ExecStart= exists), beside a stub
/// trading service that the drop-in extends.
fn lay_out_units(dir: &Path, drop_in_extra: &str) {
    let trigger = trigger_path();
    let with_binary = |name: &str| read(name).replace(INSTALLED, trigger.to_str().unwrap());
    std::fs::create_dir_all(dir.join("quantum-execution.service.d")).unwrap();
    for name in [
        "quantum-stream-recover.service",
        "quantum-stream-recover.timer",
    ] {
        std::fs::write(dir.join(name), with_binary(name)).unwrap();
    }
    let drop_in = with_binary("quantum-execution.service.d/10-zombiefix.conf") + drop_in_extra;
    std::fs::write(
        dir.join("quantum-execution.service.d/10-zombiefix.conf"),
        drop_in,
    )
    .unwrap();
    std::fs::write(
        dir.join("quantum-execution.service"),
        "[Unit]\nDescription=stub trading service\n\n[Service]\nExecStart=/bin/sleep infinity\n",
    )
    .unwrap();
}

/// `systemd-analyze verify` output (stdout and stderr); the unit folder comes
/// first on the unit path so the drop-in folder beside the stub is read.
fn verify(dir: &Path) -> String {
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            "quantum-stream-recover.service",
            "quantum-stream-recover.timer",
            "quantum-execution.service",
        ])
        .current_dir(dir)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .expect("systemd-analyze (package systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || !text.is_empty(),
        "verify failed without saying why"
    );
    text
}

#[test]
fn systemd_analyze_verify_prints_nothing() {
    let dir = TempDir::new("units");
    lay_out_units(dir.path(), "");
    assert_eq!(verify(dir.path()), "", "systemd-analyze verify complained");

    // The same check sees the drop-in: a bad line in it is reported.
    let broken = TempDir::new("units-broken");
    lay_out_units(broken.path(), "NoSuchSetting=1\n");
    assert!(
        verify(broken.path()).contains("NoSuchSetting"),
        "the drop-in was not read"
    );
}

#[test]
fn the_service_exposure_is_at_most_2() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(Path::new(UNITS).join("quantum-stream-recover.service"))
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for quantum-stream-recover.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("systemd-analyze security exposure: {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{text}");
}

#[test]
fn units_say_what_the_spec_says() {
    let service = read("quantum-stream-recover.service");
    for line in [
        "Type=oneshot",
        "User=quantum",
        "EnvironmentFile=-/etc/quantum/stream-recover.env",
    ] {
        assert!(service.lines().any(|l| l == line), "service lacks {line}");
    }
    assert!(service.lines().any(|l| l.starts_with("TimeoutStartSec=")));
    let timer = read("quantum-stream-recover.timer");
    for line in ["OnBootSec=30s", "OnUnitActiveSec=2min", "AccuracySec=1s"] {
        assert!(timer.lines().any(|l| l == line), "timer lacks {line}");
    }
    assert!(
        !timer.lines().any(|l| l.starts_with("Persistent=")),
        "Persistent= does nothing for monotonic timers"
    );
    let drop_in = read("quantum-execution.service.d/10-zombiefix.conf");
    let settings: Vec<&str> = drop_in
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        settings,
        [
            "[Service]",
            "ExecStartPre=-/usr/bin/quantum-stream-recover run --env-file /etc/quantum/stream-recover.env --deadline 5s"
        ],
        "the drop-in adds only the ExecStartPre (no EnvironmentFile=, LoadCredential=, SuccessExitStatus=)"
    );
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_and_the_log_folder() {
    let root = TempDir::new("root");
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let run = |tool: &str, args: &[&str], file: &str| {
        let out = Command::new(tool)
            .arg(format!("--root={}", root.path().display()))
            .args(args)
            .arg(Path::new(UNITS).join(file))
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("systemd-sysusers", &[], "sysusers-quantum.conf");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("quantum:") && l.ends_with(":/usr/sbin/nologin")),
        "{passwd}"
    );
    run("systemd-tmpfiles", &["--create"], "tmpfiles-quantum.conf");
    let log_dir = std::fs::metadata(root.path().join("var/log/quantum")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&log_dir.permissions()) & 0o777,
        0o750
    );
}
