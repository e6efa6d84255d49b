//! The checks of this host: the timer and its last run, the log and metrics
//! files as the service writes them, and the trading user's group.

use super::{fail, ok, property, systemctl, Check, SERVICE, TIMER, USER};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn timer() -> Check {
    let Some(enabled) = systemctl(&["is-enabled", TIMER]) else {
        return ok("timer", "no systemctl here, not checked");
    };
    if enabled.trim().is_empty() {
        return ok("timer", "systemd is not running here, not checked");
    }
    if enabled.trim() != "enabled" {
        return fail(
            "timer",
            format!(
                "{TIMER} is {}: systemctl enable --now {TIMER}",
                enabled.trim()
            ),
        );
    }
    let active = systemctl(&["is-active", TIMER]).unwrap_or_default();
    if active.trim() != "active" {
        return fail(
            "timer",
            format!(
                "{TIMER} is enabled but {}: systemctl start {TIMER}",
                active.trim()
            ),
        );
    }
    let show = systemctl(&[
        "show",
        SERVICE,
        "-p",
        "Result",
        "-p",
        "ExecMainStatus",
        "-p",
        "ExecMainExitTimestampMonotonic",
    ])
    .unwrap_or_default();
    let (result, status) = (property(&show, "Result"), property(&show, "ExecMainStatus"));
    if property(&show, "ExecMainExitTimestampMonotonic") == "0" {
        ok("timer", format!("{TIMER} enabled; no run yet"))
    } else if result == "success" {
        ok("timer", format!("{TIMER} enabled; last run succeeded"))
    } else {
        fail(
            "timer",
            format!(
                "{TIMER} enabled; last run ended {result} (exit {status}): \
                 journalctl -u {SERVICE}"
            ),
        )
    }
}

/// Runs `test EXPR…` as user quantum (when root and the user exists), else as
/// this user; returns whether it passed and who was checked.
fn test_as_quantum(expr: &[&str]) -> (bool, &'static str) {
    let user_exists = Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    let as_root = is_root() && user_exists;
    let mut test = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", USER, "--", "test"]);
        c
    } else {
        Command::new("test")
    };
    let passed = test.args(expr).status().is_ok_and(|s| s.success());
    (passed, if as_root { USER } else { "this user" })
}

/// The service writes only regular files it does not follow symlinks to
/// (exit 73 otherwise): an existing path must be a regular file.
fn not_a_regular_file(path: &Path) -> Option<&'static str> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        Some("a symlink")
    } else if !meta.is_file() {
        Some("not a regular file")
    } else {
        None
    }
}

/// The log: a regular file quantum may append to, or absent in a folder
/// where quantum may create it.
pub fn log_writable(path: &Path) -> Check {
    let what = "log file";
    let fix = "systemd-tmpfiles --create quantum-stream-recover.conf (the package's tmpfiles.d)";
    if let Some(kind) = not_a_regular_file(path) {
        return fail(
            what,
            format!(
                "{} is {kind}; the service writes regular files only (exit 73): remove it, \
                 then {fix}",
                path.display()
            ),
        );
    }
    let target = if path.exists() {
        path.to_path_buf()
    } else {
        parent(path)
    };
    let t = target.to_string_lossy();
    let (writable, who) = if path.exists() {
        test_as_quantum(&["-w", &t])
    } else {
        test_as_quantum(&["-d", &t, "-a", "-w", &t, "-a", "-x", &t])
    };
    if writable {
        ok(what, format!("{} is writable by {who}", path.display()))
    } else {
        fail(
            what,
            format!("{} is not writable by {who}: {fix}", target.display()),
        )
    }
}

/// The metrics file is written as a temp file in its folder and renamed over
/// the old one: quantum must be able to create files in the folder.
pub fn metrics_writable(path: &Path) -> Check {
    let what = "metrics file";
    let folder = parent(path);
    if let Some(kind) = not_a_regular_file(path) {
        return fail(
            what,
            format!(
                "{} is {kind}; the service replaces regular files only (exit 73): remove it",
                path.display()
            ),
        );
    }
    let f = folder.to_string_lossy();
    let (writable, who) = test_as_quantum(&["-d", &f, "-a", "-w", &f, "-a", "-x", &f]);
    if writable {
        ok(
            what,
            format!(
                "{who} may create files in {} (temp file + rename)",
                folder.display()
            ),
        )
    } else {
        fail(
            what,
            format!(
                "{who} may not create files in {} (the service writes a temp file there and \
                 renames it): setfacl -m u:{USER}:rwx {} (what the package's postinst does; \
                 needs ACL support), or a --metrics-file in a folder {USER} owns \
                 and node_exporter reads (e.g. install -d -o {USER} -m 0755 \
                 /var/lib/quantum-metrics)",
                folder.display(),
                folder.display()
            ),
        )
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

pub fn trading_user(user: Option<&str>) -> Check {
    let Some(user) = user else {
        return ok(
            "trading user",
            "not named (QUANTUM_TRADING_USER / --trading-user): group quantum not checked",
        );
    };
    if user == "root" {
        return ok(
            "trading user",
            "root reads the env and password files as it is",
        );
    }
    let groups = Command::new("id").args(["-nG", user]).output();
    match groups {
        Ok(out) if out.status.success() => {
            let groups = String::from_utf8_lossy(&out.stdout);
            if groups.split_whitespace().any(|g| g == USER) {
                ok("trading user", format!("{user} is in group {USER}"))
            } else {
                fail(
                    "trading user",
                    format!(
                        "{user} is not in group {USER}, so its ExecStartPre cannot read \
                         /etc/quantum/stream-recover.env (exit 78): usermod -aG {USER} {user}"
                    ),
                )
            }
        }
        _ => fail("trading user", format!("no user {user} on this host")),
    }
}
