//! `quantum-stream-recover doctor`: checks an installation end to end and
//! prints one line per check, `ok` or `FAIL` plus what to do. Exit 0 only when
//! every check passes. It changes nothing: reads, `ACL DRYRUN` and `systemctl
//! show`. Checks that need Redis say so when it cannot be reached; the local
//! ones (unit, timer, files, group) run anyway.

use crate::cli::Cli;
use crate::commands::{text, texts};
use crate::connect::{self, Link};
use crate::failure::{Failure, NO_PERMISSION};
use crate::redis_conf::LoadModule;
use redis::{IntoConnectionInfo, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where the package installs the module: the only place Debian's
/// redis-server.service lets Redis map it.
pub const MODULE_PATH: &str = "/usr/lib/redis/modules/libquantum.so";
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
        cli.sentinel_password_file.as_deref(),
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
        cli.sentinel_password_file.as_deref(),
        deadline,
    )
    .ok();

    let module_list = match (&con, admin.as_mut()) {
        (Ok(_), Some(admin)) => loaded_module_path(admin, deadline),
        _ => None,
    };
    let conf = &cli.doctor.redis_conf;
    let loadmodule =
        quantum_loadmodule_lines(conf, module_list.as_ref().and_then(Option::as_deref));
    match &mut con {
        Ok(con) => {
            checks.push(ok(
                "redis",
                format!("{} answers PING", connect::redact_url(&cli.url)),
            ));
            checks.push(module_build(cli, con, &module_list, &loadmodule, deadline));
            checks.push(mode_key(cli, con, admin.as_mut(), deadline));
            checks.push(acl(cli, admin.as_mut(), &module_list, deadline));
            checks.push(stream_and_group(cli, con, deadline));
            if let Link::Sentinel(sentinel) = con {
                let (passed, detail) = crate::doctor_sentinel::check(sentinel, deadline);
                checks.push(Check {
                    ok: passed,
                    what: "sentinel",
                    detail,
                });
            }
        }
        Err(f) => checks.push(fail("redis", unreachable(&cli.url, f))),
    }
    checks.push(module_path_check(
        &cli.doctor.redis_unit,
        conf,
        &loadmodule,
        module_list.flatten(),
    ));
    checks.push(timer());
    let log = cli.log_file.clone().unwrap_or_else(|| LOG_FILE.into());
    let metrics = cli
        .metrics_file
        .clone()
        .unwrap_or_else(|| METRICS_FILE.into());
    checks.push(log_writable(&log));
    checks.push(metrics_writable(&metrics));
    checks.push(trading_user(cli.doctor.trading_user.as_deref()));

    for check in &checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        crate::console::out(&format!("{mark} {}: {}\n", check.what, check.detail));
    }
    u8::from(!checks.iter().all(|c| c.ok))
}

fn unreachable(url: &str, f: &Failure) -> String {
    let mut text = format!("cannot use {}: {}", connect::redact_url(url), f.message);
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

/// The URL's ACL user, and whether the URL named it.
fn url_user(cli: &Cli) -> (String, bool) {
    match cli
        .url
        .as_str()
        .into_connection_info()
        .ok()
        .and_then(|i| i.redis_settings().username().map(str::to_string))
        .or_else(|| crate::sentinel::parse_url(&cli.url)?.ok()?.user)
    {
        Some(user) => (user, true),
        None => ("default".into(), false),
    }
}

/// `module_list`: the admin's MODULE LIST (`None`: could not ask; `Some(None)`:
/// not loaded). Only it says whether the module is loaded: the URL's user may
/// just lack `+info`.
fn module_build(
    cli: &Cli,
    con: &mut Link,
    module_list: &Option<Option<String>>,
    loadmodule: &std::io::Result<Vec<LoadModule>>,
    deadline: Instant,
) -> Check {
    let ours = env!("QUANTUM_BUILD");
    let (user, _) = url_user(cli);
    let not_loaded = || {
        let conf = cli.doctor.redis_conf.display();
        match loadmodule {
            Ok(lines) if !lines.is_empty() => format!(
                "not loaded, though {}:{} has `loadmodule {}`: systemctl restart redis-server \
                 (after the module path check passes)",
                lines[0].file.display(),
                lines[0].line,
                lines[0].path
            ),
            _ => format!(
                "not loaded: add `loadmodule {MODULE_PATH}` to {conf} and restart \
                 redis-server (MODULE LOAD is off since Redis 7)"
            ),
        }
    };
    let info = con.query(redis::cmd("INFO").arg("quantum"), deadline);
    let info = match info {
        Err(f) if f.code == NO_PERMISSION => {
            let state = match module_list {
                Some(None) => return fail("module", not_loaded()),
                Some(Some(path)) => format!("the module is loaded ({path})"),
                None => "whether the module is loaded is unknown (no admin connection)".into(),
            };
            return fail(
                "module",
                format!(
                    "user {user} may not run INFO ({}): an ACL problem, not a missing module; \
                     ACL SETUSER {user} +info, then persist it; {state}",
                    f.message
                ),
            );
        }
        Err(f) => return fail("module", format!("INFO quantum: {}", f.message)),
        Ok(Value::VerbatimString { text, .. }) => text,
        Ok(other) => text(&other).unwrap_or_default(),
    };
    let build = info
        .lines()
        .find_map(|l| l.strip_prefix("quantum_build")?.strip_prefix(':'))
        .map(|v| v.trim().to_string());
    match build {
        None => fail("module", not_loaded()),
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
        Some(Err(f)) if f.code != NO_PERMISSION => Err(f),
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
        Err(f) if f.message.contains("WRONGTYPE") => fail(
            "mode key",
            format!("{key} is not a string (wrong type): DEL it, then SET it to a mode"),
        ),
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

fn acl(
    cli: &Cli,
    admin: Option<&mut Link>,
    module_list: &Option<Option<String>>,
    deadline: Instant,
) -> Check {
    let (user, named) = url_user(cli);
    let checked = if named {
        format!("user {user}")
    } else {
        format!("user {user} (the URL names no user)")
    };
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
    let module_missing = matches!(module_list, Some(None));
    let mut refused = Vec::new();
    let mut grants = Vec::new();
    for argv in needed_commands(cli, &mode_key) {
        // ACL DRYRUN knows no command of a module that is not loaded.
        if module_missing && argv[0].starts_with("QUANTUM.") {
            continue;
        }
        let mut cmd = redis::cmd("ACL");
        cmd.arg("DRYRUN").arg(&user).arg(&argv);
        let answer = match admin.query(&cmd, deadline) {
            Ok(Value::Okay) => continue,
            Ok(reply) => match text(&reply) {
                Ok(answer) if answer == "OK" => continue,
                Ok(answer) => answer,
                Err(_) => "unexpected ACL DRYRUN reply".into(),
            },
            Err(f) if f.message.contains("User '") && f.message.contains("not found") => {
                return fail(
                    "acl",
                    format!(
                        "{checked} does not exist: create it (README, Installing, step 4), then \
                         CONFIG REWRITE (or ACL SAVE with an aclfile) so it survives a restart"
                    ),
                )
            }
            Err(f) => {
                return fail(
                    "acl",
                    format!(
                    "cannot run ACL DRYRUN for {checked}: {} (give --admin-url of an admin user)",
                    f.message
                ),
                )
            }
        };
        refused.push(format!("{} {} ({answer})", argv[0], argv[1]));
        let grant = match argv[0].as_str() {
            "XGROUP" | "XINFO" => format!("+{}|{}", argv[0], argv[1]),
            name => format!("+{name}"),
        };
        grants.push(grant.to_lowercase());
    }
    let skipped = if module_missing {
        "; QUANTUM.* not checked: the module is not loaded"
    } else {
        ""
    };
    if !refused.is_empty() {
        grants.dedup();
        let fix = if named {
            format!(
                "grant them (ACL SETUSER {user} {}), then CONFIG REWRITE (or ACL SAVE with an \
                 aclfile)",
                grants.join(" ")
            )
        } else {
            "put a least-privilege user in the URL (README, Installing, step 4) rather than \
             changing the default user"
                .to_string()
        };
        return fail(
            "acl",
            format!(
                "{checked} may not run: {}; {fix}{skipped}",
                refused.join(", ")
            ),
        );
    }
    if named {
        ok(
            "acl",
            format!("{checked} may run every command RECOVER needs{skipped}"),
        )
    } else {
        ok(
            "acl",
            format!(
                "{checked} may run every command RECOVER needs{skipped}; a least-privilege \
                 user in the URL is safer (README, Installing, step 4)"
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

/// The `loadmodule` lines of redis.conf (and its includes) that load this
/// module: a path naming quantum, or the file MODULE LIST shows.
fn quantum_loadmodule_lines(conf: &Path, loaded: Option<&str>) -> std::io::Result<Vec<LoadModule>> {
    let loaded = loaded.map(resolved);
    Ok(crate::redis_conf::loadmodule_lines(conf)?
        .into_iter()
        .filter(|l| l.path.contains("quantum") || Some(resolved(&l.path)) == loaded)
        .collect())
}

/// The path MODULE LIST shows for the module: `None` when it could not be
/// asked, `Some(None)` when the module is not loaded.
fn loaded_module_path(admin: &mut Link, deadline: Instant) -> Option<Option<String>> {
    let reply = admin
        .query(redis::cmd("MODULE").arg("LIST"), deadline)
        .ok()?;
    let Value::Array(modules) = reply else {
        return None;
    };
    Some(modules.into_iter().find_map(|module| {
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
    }))
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

/// `ExecPaths=`/`NoExecPaths=` of Redis's unit; `Err` says why not checked.
fn unit_exec_paths(unit: &str) -> Result<(String, String), String> {
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
        return Err(format!("no systemctl here, {unit} not checked"));
    };
    if property(&show, "LoadState") != "loaded" {
        return Err(format!("no {unit} on this host, not checked"));
    }
    Ok((
        property(&show, "ExecPaths").to_string(),
        property(&show, "NoExecPaths").to_string(),
    ))
}

/// What the next restart of Redis loads: the quantum `loadmodule` line of
/// redis.conf (and its includes) must name an executable file Redis's unit may
/// map (the symlink's target counts), and the one MODULE LIST shows.
fn module_path_check(
    unit: &str,
    conf: &Path,
    lines: &std::io::Result<Vec<LoadModule>>,
    loaded: Option<String>,
) -> Check {
    let what = "module path";
    let unit_paths = unit_exec_paths(unit);
    let lines = match lines {
        Err(e) => {
            return fail(
                what,
                format!(
                    "cannot read {}: {e}; run doctor as root on the Redis host (--redis-conf \
                     names another file)",
                    conf.display()
                ),
            )
        }
        Ok(lines) if lines.is_empty() => {
            let (path, source) = match &loaded {
                Some(path) => (path.as_str(), "MODULE LIST"),
                None => (MODULE_PATH, "the package's path"),
            };
            let unit_note = match &unit_paths {
                Ok((exec, no_exec)) if !exec_allowed(&resolved(path), exec, no_exec) => {
                    format!("; {unit} forbids executing {path} ({source})")
                }
                Ok(_) => format!("; {unit} may map {path} ({source})"),
                Err(why) => format!("; {why}"),
            };
            return fail(
                what,
                format!(
                    "no loadmodule line for the module in {} or its includes, so the next \
                     restart loads no module: add `loadmodule {MODULE_PATH}`{unit_note}",
                    conf.display()
                ),
            );
        }
        Ok(lines) => lines,
    };
    if lines.len() > 1 {
        let at: Vec<String> = lines
            .iter()
            .map(|l| format!("{}:{}", l.file.display(), l.line))
            .collect();
        return fail(
            what,
            format!(
                "loadmodule for the module {} times ({}): Redis refuses to start loading one \
                 module twice; keep one line",
                lines.len(),
                at.join(", ")
            ),
        );
    }
    let line = &lines[0];
    let at = format!(
        "{}:{} loadmodule {}",
        line.file.display(),
        line.line,
        line.path
    );
    let move_it = format!("point loadmodule at {MODULE_PATH} (package quantum-redis-module)");
    let real = match std::fs::canonicalize(&line.path) {
        Ok(real) => real.display().to_string(),
        Err(e) => {
            return fail(
                what,
                format!("{at}: {e}, so Redis would refuse to start: {move_it}"),
            )
        }
    };
    match std::fs::metadata(&real) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => {
            return fail(
                what,
                format!(
                    "{at}: {real} is not an executable file (Redis 7 refuses a module \
                     without x bits), so Redis would refuse to start: {move_it}"
                ),
            )
        }
        Err(e) => return fail(what, format!("{at}: {real}: {e}")),
    }
    let unit_note = match &unit_paths {
        Ok((exec, no_exec)) if !exec_allowed(&real, exec, no_exec) => {
            return fail(
                what,
                format!(
                    "{unit} forbids executing {real} ({at}; NoExecPaths={no_exec} \
                     ExecPaths={exec}), so Redis would refuse to start: move the module to \
                     {MODULE_PATH} (package quantum-redis-module) and point loadmodule there"
                ),
            )
        }
        Ok(_) => format!("{unit} may map {real}"),
        Err(why) => why.clone(),
    };
    if let Some(loaded) = loaded {
        if resolved(&loaded) != real {
            return fail(
                what,
                format!(
                    "Redis runs {loaded} (MODULE LIST) but its next restart loads {real} \
                     ({at}): make sure that is the file you mean, or {move_it}"
                ),
            );
        }
    }
    ok(what, format!("{at}: {unit_note}"))
}

/// The path systemd and Redis will see (Debian links /lib to /usr/lib).
fn resolved(path: &str) -> String {
    std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
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
fn log_writable(path: &Path) -> Check {
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
fn metrics_writable(path: &Path) -> Check {
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

fn trading_user(user: Option<&str>) -> Check {
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
