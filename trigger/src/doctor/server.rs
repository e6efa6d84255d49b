//! The checks that ask Redis: is the module of this build loaded, does the
//! mode key hold a mode, do the stream and the group exist.

use super::{fail, ok, url_user, Check, MODULE_PATH};
use crate::cli::Cli;
use crate::connect::Link;
use crate::failure::ExitCode;
use crate::redis_conf::LoadModule;
use redis::{FromRedisValue, InfoDict, Value};
use std::collections::HashMap;
use std::time::Instant;

/// `module_list`: the admin's MODULE LIST (`None`: could not ask; `Some(None)`:
/// not loaded). Only it says whether the module is loaded: the URL's user may
/// just lack `+info`.
pub fn module_build(
    cli: &Cli,
    con: &mut Link,
    module_list: &Option<Option<String>>,
    loadmodule: &std::io::Result<Vec<LoadModule>>,
    deadline: Instant,
) -> Check {
    let ours = env!("QUANTUM_BUILD");
    let user = url_user(cli).name;
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
        Err(f) if f.code == ExitCode::NoPermission => {
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
        Ok(reply) => InfoDict::from_redis_value(reply).ok(),
    };
    let build = info
        .and_then(|info| info.get::<String>("quantum_build"))
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
pub fn mode_key(cli: &Cli, con: &mut Link, admin: Option<&mut Link>, deadline: Instant) -> Check {
    let mut admin = admin;
    let config = |admin: &mut Option<&mut Link>, name: &str| {
        let link = admin.as_deref_mut()?;
        let reply = link
            .query(redis::cmd("CONFIG").arg("GET").arg(name), deadline)
            .ok()?;
        Vec::<String>::from_redis_value(reply).ok()?.get(1).cloned()
    };
    let key = cli
        .mode_key
        .clone()
        .or_else(|| config(&mut admin, "quantum.mode-key"))
        .unwrap_or_else(|| "quantum:mode".into());
    let get = redis::cmd("GET").arg(&key).clone();
    let value = match admin.as_deref_mut().map(|a| a.query(&get, deadline)) {
        Some(Ok(v)) => Ok(v),
        Some(Err(f)) if f.code != ExitCode::NoPermission => Err(f),
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
        Ok(v) => match String::from_redis_value(v) {
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

pub fn stream_and_group(cli: &Cli, con: &mut Link, deadline: Instant) -> Check {
    let (s, g) = (&cli.stream, &cli.group);
    let reply = con.query(redis::cmd("XINFO").arg("GROUPS").arg(s), deadline);
    let groups = match reply.map(Vec::<HashMap<String, Value>>::from_redis_value) {
        Ok(Ok(groups)) => groups,
        Ok(Err(_)) => return fail("stream", "unexpected XINFO GROUPS reply"),
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
        group
            .get("name")
            .and_then(|name| String::from_redis_value_ref(name).ok())
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

/// The path MODULE LIST shows for the module: `None` when it could not be
/// asked, `Some(None)` when the module is not loaded.
pub fn loaded_module_path(admin: &mut Link, deadline: Instant) -> Option<Option<String>> {
    let reply = admin
        .query(redis::cmd("MODULE").arg("LIST"), deadline)
        .ok()?;
    let modules = Vec::<HashMap<String, Value>>::from_redis_value(reply).ok()?;
    Some(modules.into_iter().find_map(|module| {
        let get = |name: &str| {
            module
                .get(name)
                .and_then(|v| String::from_redis_value_ref(v).ok())
        };
        (get("name").as_deref() == Some("quantum"))
            .then(|| get("path"))
            .flatten()
    }))
}
