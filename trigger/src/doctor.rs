//! `quantum-stream-recover doctor`: checks an installation end to end and
//! prints one line per check, `ok` or `FAIL` plus what to do. Exit 0 only when
//! every check passes. It changes nothing: reads, `ACL DRYRUN` and `systemctl
//! show`. Checks that need Redis say so when it cannot be reached; the local
//! ones (unit, timer, files, group) run anyway.

use crate::cli::Cli;
use crate::commands::{text, texts};
use crate::connect::{self, Link};
use crate::failure::{Failure, NO_PERMISSION};
use redis::{IntoConnectionInfo, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where the package installs the module: the only place Debian's
/// redis-server.service lets Redis map it.
pub const MODULE_PATH: &str = "/usr/lib/redis/modules/libquantum.so";
const REDIS_CONF: &str = "/etc/redis/redis.conf";
const TIMER: &str = "quantum-stream-recover.timer";
const SERVICE: &str = "quantum-stream-recover.service";
/// The paths the packaged service passes on its command line.
const LOG_FILE: &str = "/var/log/quantum/stream_recover.log";
const METRICS_FILE: &str = "/var/lib/prometheus/node-exporter/quantum_stream_recover.prom";
const USER: &str = "quantum";

/// One line of the report.
struct Check {
    ok: bool,
    what: &'static str,
    detail: String,
}

fn ok(what: &'static str, detail: impl Into<String>) -> Check {
    Check {
        ok: true,
        what,
        detail: detail.into(),
    }
}

fn fail(what: &'static str, detail: impl Into<String>) -> Check {
    Check {
        ok: false,
        what,
        detail: detail.into(),
    }
}

/// Runs every check, prints the report on stdout and returns the exit code.
pub fn run(cli: &Cli, deadline: Instant) -> u8 {
    let mut checks = Vec::new();
    let mut con = connect::connect(
        &cli.url,
        cli.cluster,
        cli.password_file.as_deref(),
        deadline,
    )
    .and_then(|mut con| {
        con.query(&redis::cmd("PING"), deadline)?;
        Ok(con)
    });
    let admin_url = cli
        .doctor
        .admin_url
        .clone()
        .unwrap_or_else(|| without_user(&cli.url));
    let mut admin = connect::connect(
        &admin_url,
        cli.cluster,
        cli.doctor.admin_password_file.as_deref(),
        deadline,
    )
    .ok();

    let module_path = match &mut con {
        Ok(con) => {
            checks.push(ok("redis", format!("{} answers PING", cli.url)));
            checks.push(module_build(con, deadline));
            checks.push(mode_key(cli, con, admin.as_mut(), deadline));
            checks.push(acl(cli, admin.as_mut(), deadline));
            checks.push(stream_and_group(cli, con, deadline));
            loaded_module_path(admin.as_mut(), deadline)
        }
        Err(f) => {
            checks.push(fail("redis", unreachable(&cli.url, f)));
            None
        }
    };
    let module_path = module_path
        .map(|p| (p, "MODULE LIST"))
        .or_else(|| loadmodule_line(REDIS_CONF).map(|p| (p, REDIS_CONF)))
        .unwrap_or_else(|| (MODULE_PATH.to_string(), "the package's path"));
    checks.push(unit_may_map(
        &cli.doctor.redis_unit,
        &module_path.0,
        module_path.1,
    ));
    checks.push(timer());
    let log = cli.log_file.clone().unwrap_or_else(|| LOG_FILE.into());
    let metrics = cli
        .metrics_file
        .clone()
        .unwrap_or_else(|| METRICS_FILE.into());
    checks.push(writable("log file", &log));
    checks.push(writable("metrics file", &metrics));
    checks.push(trading_user(cli.doctor.trading_user.as_deref()));

    for check in &checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        crate::console::out(&format!("{mark} {}: {}\n", check.what, check.detail));
    }
    u8::from(!checks.iter().all(|c| c.ok))
}

fn unreachable(url: &str, f: &Failure) -> String {
    let mut text = format!("cannot use {url}: {}", f.message);
    if f.code == NO_PERMISSION {
        text.push_str(
            "; the ACL user may not exist: users made with ACL SETUSER live in memory until \
             CONFIG REWRITE (or ACL SAVE with an aclfile) and are gone after a restart",
        );
    } else {
        text.push_str("; is redis-server running (systemctl status redis-server) and --url right?");
    }
    text
}

/// `redis://user@host:port` → `redis://host:port`: the admin connection uses
/// Redis's default user (its password from REDISCLI_AUTH) unless told otherwise.
fn without_user(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn info_field(con: &mut Link, section: &str, name: &str, deadline: Instant) -> Option<String> {
    let info = con.query(redis::cmd("INFO").arg(section), deadline).ok()?;
    let info = match info {
        Value::VerbatimString { text, .. } => text,
        other => text(&other).ok()?,
    };
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

fn module_build(con: &mut Link, deadline: Instant) -> Check {
    let ours = env!("QUANTUM_BUILD");
    match info_field(con, "quantum", "quantum_build", deadline) {
        None => fail(
            "module",
            format!(
                "not loaded (INFO quantum is empty): add `loadmodule {MODULE_PATH}` to \
                 {REDIS_CONF} and restart redis-server (MODULE LOAD is off since Redis 7)"
            ),
        ),
        Some(build) if build == ours => ok("module", format!("loaded, build {build}")),
        Some(build) => fail(
            "module",
            format!(
                "loaded build {build} differs from this trigger's {ours}: install both \
                 packages of one version and restart redis-server"
            ),
        ),
    }
}

/// The mode key's name: --mode-key, else the module's config, else its default.
fn mode_key(cli: &Cli, con: &mut Link, admin: Option<&mut Link>, deadline: Instant) -> Check {
    let mut admin = admin;
    let config = |admin: &mut Option<&mut Link>, name: &str| {
        let link = admin.as_deref_mut()?;
        let reply = link
            .query(redis::cmd("CONFIG").arg("GET").arg(name), deadline)
            .ok()?;
        texts(&reply).ok()?.get(1).cloned()
    };
    let key = cli
        .mode_key
        .clone()
        .or_else(|| config(&mut admin, "quantum.mode-key"))
        .unwrap_or_else(|| "quantum:mode".into());
    let get = redis::cmd("GET").arg(&key).clone();
    let value = match admin.as_deref_mut().map(|a| a.query(&get, deadline)) {
        Some(Ok(v)) => Ok(v),
        _ => con.query(&get, deadline),
    };
    let allowed = config(&mut admin, "quantum.allowed-modes").unwrap_or_else(|| "TESTNET".into());
    match value {
        Ok(Value::Nil) => fail(
            "mode key",
            format!(
                "{key} is missing, so every run is refused: redis-cli SET {key} TESTNET \
                 (a mode in quantum.allowed-modes, {allowed}) where recovery may act"
            ),
        ),
        Ok(v) => match text(&v) {
            Ok(mode) if allowed.split(',').any(|m| m.trim() == mode) => {
                ok("mode key", format!("{key} = {mode}: recovery acts"))
            }
            Ok(mode) => ok(
                "mode key",
                format!("{key} = {mode}: recovery refuses to act (allowed: {allowed})"),
            ),
            Err(_) => fail(
                "mode key",
                format!("{key} is not a string: SET it to a mode"),
            ),
        },
        Err(f) => fail("mode key", format!("cannot read {key}: {}", f.message)),
    }
}

/// The commands RECOVER and the trigger run with the user's ACL, as `ACL DRYRUN` argv.
fn needed_commands(cli: &Cli, mode_key: &str) -> Vec<Vec<String>> {
    let (s, g) = (cli.stream.as_str(), cli.group.as_str());
    let lines: [&[&str]; 11] = [
        &["QUANTUM.RECOVER", s, g, "MODEKEY", mode_key],
        &["QUANTUM.STATUS", s, g, "MODEKEY", mode_key],
        &["QUANTUM.RETIRE", s, g, "exec-1", "MODEKEY", mode_key],
        &["XPENDING", s, g, "-", "+", "1"],
        &["XCLAIM", s, g, "recovery", "1", "0-1", "JUSTID"],
        &["XRANGE", s, "-", "+", "COUNT", "1"],
        &["XINFO", "CONSUMERS", s, g],
        &["XINFO", "GROUPS", s],
        &["XGROUP", "CREATECONSUMER", s, g, "recovery"],
        &["XGROUP", "DELCONSUMER", s, g, "recovery"],
        &["INFO", "quantum"],
    ];
    lines
        .iter()
        .map(|l| l.iter().map(|a| a.to_string()).collect())
        .collect()
}

fn acl(cli: &Cli, admin: Option<&mut Link>, deadline: Instant) -> Check {
    let user = cli
        .url
        .as_str()
        .into_connection_info()
        .ok()
        .and_then(|i| i.redis_settings().username().map(str::to_string))
        .unwrap_or_else(|| "default".into());
    let Some(admin) = admin else {
        return fail(
            "acl",
            "cannot check: no admin connection (give --admin-url, or REDISCLI_AUTH for the default user)",
        );
    };
    let mode_key = cli
        .mode_key
        .clone()
        .unwrap_or_else(|| "quantum:mode".into());
    let mut refused = Vec::new();
    for argv in needed_commands(cli, &mode_key) {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("DRYRUN").arg(&user).arg(&argv);
        match admin.query(&cmd, deadline) {
            Ok(Value::Okay) => {}
            Ok(reply) => match text(&reply) {
                Ok(answer) if answer == "OK" => {}
                Ok(answer) => refused.push(format!("{} {} ({answer})", argv[0], argv[1])),
                Err(_) => refused.push(format!("{}: unexpected ACL DRYRUN reply", argv[0])),
            },
            Err(f) if f.message.contains("not found") => {
                return fail(
                    "acl",
                    format!(
                        "user {user} does not exist: ACL SETUSER it (README, Installing), then \
                         CONFIG REWRITE (or ACL SAVE with an aclfile) so it survives a restart"
                    ),
                )
            }
            Err(f) => {
                return fail(
                    "acl",
                    format!(
                        "cannot run ACL DRYRUN: {} (give --admin-url of an admin user)",
                        f.message
                    ),
                )
            }
        }
    }
    if refused.is_empty() {
        ok(
            "acl",
            format!("user {user} may run every command RECOVER needs"),
        )
    } else {
        fail(
            "acl",
            format!(
                "user {user} may not run: {}; grant them (e.g. ACL SETUSER {user} \
                 +xgroup|delconsumer), then CONFIG REWRITE",
                refused.join(", ")
            ),
        )
    }
}

fn stream_and_group(cli: &Cli, con: &mut Link, deadline: Instant) -> Check {
    let (s, g) = (&cli.stream, &cli.group);
    let reply = con.query(redis::cmd("XINFO").arg("GROUPS").arg(s), deadline);
    let groups = match reply {
        Ok(Value::Array(groups)) => groups,
        Ok(_) => return fail("stream", "unexpected XINFO GROUPS reply"),
        Err(f) if f.message.contains("no such key") => {
            return fail(
                "stream",
                format!(
                    "{s} does not exist yet: the trading service creates it \
                     (XGROUP CREATE {s} {g} $ MKSTREAM)"
                ),
            )
        }
        Err(f) => return fail("stream", format!("XINFO GROUPS {s}: {}", f.message)),
    };
    let has_group = groups.iter().any(|group| {
        crate::commands::pairs(group.clone())
            .ok()
            .and_then(|fields| {
                fields
                    .into_iter()
                    .find(|(k, _)| k == "name")
                    .and_then(|(_, v)| text(&v).ok())
            })
            .as_deref()
            == Some(g.as_str())
    });
    if has_group {
        ok("stream", format!("{s} has group {g}"))
    } else {
        fail(
            "stream",
            format!("{s} has no group {g}: check QUANTUM_GROUP, or XGROUP CREATE {s} {g} $"),
        )
    }
}

fn loaded_module_path(admin: Option<&mut Link>, deadline: Instant) -> Option<String> {
    let reply = admin?
        .query(redis::cmd("MODULE").arg("LIST"), deadline)
        .ok()?;
    let Value::Array(modules) = reply else {
        return None;
    };
    modules.into_iter().find_map(|module| {
        let fields = crate::commands::pairs(module).ok()?;
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| text(v).ok())
        };
        (get("name").as_deref() == Some("quantum"))
            .then(|| get("path"))
            .flatten()
    })
}

/// The module path of an active `loadmodule …libquantum.so` line.
fn loadmodule_line(conf: &str) -> Option<String> {
    let text = std::fs::read_to_string(conf).ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("loadmodule"))
            .then(|| words.next())
            .flatten()
            .filter(|p| p.ends_with("libquantum.so"))
            .map(str::to_string)
    })
}

/// Whether a unit with these `ExecPaths=`/`NoExecPaths=` may execute (map)
/// `path`: the longest listed prefix decides, as systemd nests its mounts.
pub fn exec_allowed(path: &str, exec_paths: &str, no_exec_paths: &str) -> bool {
    let under = |prefix: &str| {
        let prefix = prefix.trim_start_matches(['-', '+']).trim_end_matches('/');
        path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
    };
    let longest = |list: &str| {
        list.split_whitespace()
            .filter(|p| under(p))
            .map(|p| p.trim_start_matches(['-', '+']).trim_end_matches('/').len())
            .max()
    };
    match (longest(exec_paths), longest(no_exec_paths)) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(exec), Some(no_exec)) => exec >= no_exec,
    }
}

fn systemctl(args: &[&str]) -> Option<String> {
    let out = Command::new("systemctl").args(args).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn property<'a>(show: &'a str, name: &str) -> &'a str {
    show.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_default()
}

fn unit_may_map(unit: &str, module: &str, source: &str) -> Check {
    let what = "module path";
    let Some(show) = systemctl(&[
        "show",
        unit,
        "-p",
        "LoadState",
        "-p",
        "ExecPaths",
        "-p",
        "NoExecPaths",
    ]) else {
        return ok(
            what,
            format!("{module} ({source}); no systemctl here, {unit} not checked"),
        );
    };
    if property(&show, "LoadState") != "loaded" {
        return ok(
            what,
            format!("{module} ({source}); no {unit} on this host, not checked"),
        );
    }
    // Debian links /lib to /usr/lib: compare the path systemd will see.
    let resolved = std::fs::canonicalize(module)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| module.to_string());
    let (exec, no_exec) = (property(&show, "ExecPaths"), property(&show, "NoExecPaths"));
    if exec_allowed(&resolved, exec, no_exec) {
        ok(what, format!("{unit} may map {module} ({source})"))
    } else {
        fail(
            what,
            format!(
                "{unit} forbids executing {module} ({source}; NoExecPaths={no_exec} \
                 ExecPaths={exec}), so Redis would refuse to start: move the module to \
                 {MODULE_PATH} (package quantum-redis-module) and point loadmodule there"
            ),
        )
    }
}

fn timer() -> Check {
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

/// Whether user quantum may write `path` (or create it in its folder).
fn writable(what: &'static str, path: &Path) -> Check {
    let target: PathBuf = if path.exists() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new("/")).to_path_buf()
    };
    let user_exists = Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    let as_root = is_root() && user_exists;
    let mut test = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", USER, "--", "test", "-w"]);
        c
    } else {
        let mut c = Command::new("test");
        c.arg("-w");
        c
    };
    let writable = test.arg(&target).status().is_ok_and(|s| s.success());
    let who = if as_root { USER } else { "this user" };
    if writable {
        ok(what, format!("{} is writable by {who}", path.display()))
    } else {
        fail(
            what,
            format!(
                "{} is not writable by {who}: systemd-tmpfiles --create \
                 quantum-stream-recover.conf (the package's tmpfiles.d) makes it so",
                target.display()
            ),
        )
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

fn trading_user(user: Option<&str>) -> Check {
    let Some(user) = user else {
        return ok(
            "trading user",
            "not named (QUANTUM_TRADING_USER / --trading-user): group quantum not checked",
        );
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_redis_unit_maps_only_usr_lib() {
        let (exec, no_exec) = ("/usr/bin/redis-server /usr/lib /lib", "/");
        assert!(exec_allowed(
            "/usr/lib/redis/modules/libquantum.so",
            exec,
            no_exec
        ));
        assert!(!exec_allowed(
            "/usr/local/lib/redis/libquantum.so",
            exec,
            no_exec
        ));
        assert!(!exec_allowed("/usr/library/x.so", exec, no_exec));
        assert!(exec_allowed("/opt/x.so", "", ""));
        assert!(!exec_allowed("/opt/x.so", "", "-/opt"));
    }

    #[test]
    fn the_admin_connection_drops_the_user_name() {
        assert_eq!(
            without_user("redis://quantum-recover@127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            without_user("unix:///run/redis.sock"),
            "unix:///run/redis.sock"
        );
    }
}
