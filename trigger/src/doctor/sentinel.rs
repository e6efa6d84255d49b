//! `doctor` behind Sentinel: which primary the sentinels name, and whether the
//! module (this trigger's build) is loaded on it and on every replica they
//! know: after a failover a replica without it becomes a primary without it.

use crate::failure::ExitCode;
use crate::sentinel::{Addr, Sentinel};
use redis::FromRedisValue;
use redis::Value;
use std::time::Instant;

/// Flags of a replica the sentinels cannot reach now.
const DOWN_FLAGS: [&str; 3] = ["s_down", "o_down", "disconnected"];

/// Whether the check passed, and the report line's text.
pub fn check(sentinel: &Sentinel, deadline: Instant) -> (bool, String) {
    let master = sentinel.master();
    let primary = match sentinel.named_primary(deadline) {
        Ok(primary) => primary,
        Err(f) => return (false, format!("cannot ask the sentinels: {}", f.message)),
    };
    let (mut passed, state) = module_on(sentinel, &primary, deadline);
    let mut lines = vec![format!(
        "the sentinels name {} as the primary of {master:?}: {state}",
        show(&primary)
    )];
    match sentinel.replicas(deadline) {
        Ok(replicas) if replicas.is_empty() => {
            lines.push("no replica known to the sentinels".into());
        }
        Ok(replicas) => {
            for (addr, flags) in replicas {
                let (ok, state) = match flags.split(',').find(|f| DOWN_FLAGS.contains(f)) {
                    Some(_) => (false, format!("down ({flags}): cannot check the module")),
                    None => module_on(sentinel, &addr, deadline),
                };
                passed &= ok;
                lines.push(format!("replica {}: {state}", show(&addr)));
            }
        }
        Err(f) => {
            passed = false;
            lines.push(format!("cannot list the replicas: {}", f.message));
        }
    }
    if !passed {
        lines.push(
            "the module must be loaded on every data node (loadmodule in each redis.conf, \
             then restart it): a failover makes a replica the primary"
                .into(),
        );
    }
    (passed, lines.join("; "))
}

fn show((host, port): &Addr) -> String {
    format!("{host}:{port}")
}

/// Whether the node runs this trigger's build of the module, and what it has.
fn module_on(sentinel: &Sentinel, addr: &Addr, deadline: Instant) -> (bool, String) {
    let mut con = match sentinel.node(addr, deadline) {
        Ok(con) => con,
        Err(f) => return (false, format!("cannot connect: {}", f.message)),
    };
    let info = match redis::cmd("INFO").arg("quantum").query::<Value>(&mut con) {
        Ok(reply) => String::from_redis_value(reply).unwrap_or_default(),
        Err(e) => {
            let f = crate::failure::from_redis(&e);
            let why = match f.code {
                ExitCode::NoPermission => "the user may not run INFO (ACL +info)",
                _ => "INFO quantum failed",
            };
            return (
                false,
                format!(
                    "cannot tell whether the module is loaded: {why}: {}",
                    f.message
                ),
            );
        }
    };
    let ours = env!("QUANTUM_BUILD");
    match info
        .lines()
        .find_map(|l| l.strip_prefix("quantum_build:"))
        .map(str::trim)
    {
        None => (false, "the quantum module is NOT loaded".into()),
        Some(build) if build == ours => (true, format!("module loaded, build {build}")),
        Some(build) => (
            false,
            format!("module build {build} differs from this trigger's {ours}"),
        ),
    }
}
