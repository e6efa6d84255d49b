//! Redis module `quantum`: recovers a Redis Streams consumer group's pending
//! entries from dead consumers and deletes the dead names, atomically, inside Redis.
//!
//! Layout: `plan` decides (pure), `redis_ops` talks to Redis, `reply` shapes
//! replies, `recover` runs one call; `args`, `mode` and `config` hold the rules
//! for input, the mode guard and defaults.

// The command glue is compiled out of unit tests (see `registration`).
#![cfg_attr(test, allow(dead_code))]

mod args;
mod config;
mod mode;
mod plan;
mod recover;
mod redis_ops;
mod reply;
mod stats;
mod text;

use recover::Failure;
use redis_module::{raw, Context, RedisError, RedisResult, RedisString, RedisValue};
use stats::{bump, STATS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The text of a panic caught by `catch_panic`.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic".into())
}

/// Runs a command body; a panic becomes `Err(panic text)` instead of unwinding
/// into Redis, which would abort the server (S6).
fn catch_panic(body: impl FnOnce() -> RedisResult) -> Result<RedisResult, String> {
    catch_unwind(AssertUnwindSafe(body)).map_err(|payload| panic_text(&*payload))
}

fn guarded(ctx: &Context, command: &str, body: impl FnOnce() -> RedisResult) -> RedisResult {
    catch_panic(body).unwrap_or_else(|panic| {
        bump(&STATS.errors, 1);
        ctx.log_warning(&text::log_safe(&format!(
            "internal error in {command}: {}",
            text::printable(panic.as_bytes(), 500)
        )));
        Err(RedisError::Str("ERR internal error"))
    })
}

fn as_bytes(args: &[RedisString]) -> Vec<&[u8]> {
    args.iter().map(RedisString::as_slice).collect()
}

/// Cluster routing and ACL learn the keys from here: the stream, and the mode
/// key when MODEKEY names it (read only). The default mode key is not in argv,
/// so `recover` checks the caller's read permission on it itself.
fn declare_keys(ctx: &Context, argv: &[&[u8]]) {
    if argv.len() < 2 {
        return;
    }
    ctx.key_at_pos(1);
    if let Ok(request) = recover::parse(argv) {
        if let (Some(pos), Some(key_at_pos)) = (request.mode_key_pos, unsafe {
            raw::RedisModule_KeyAtPosWithFlags
        }) {
            let flags = raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS;
            unsafe { key_at_pos(ctx.ctx, pos as i32, flags as i32) };
        }
    }
}

/// ```text
/// QUANTUM.RECOVER key group [TO consumer] [MINIDLE ms] [COUNT n] [SCAN n] [CURSOR id]
///                 [ZOMBIEIDLE ms] [DELETELIMIT n] [MAXDELIVERIES n] [QUARANTINE consumer]
///                 [MODEKEY key] [DRYRUN]
/// ```
/// Moves entries idle ≥ MINIDLE from dead consumers to TO (or QUARANTINE when
/// delivered ≥ MAXDELIVERIES times), then deletes consumers idle > ZOMBIEIDLE
/// with nothing pending. Mode-guarded unless DRYRUN. Replies with a map:
/// mode, dry-run, claimed, quarantined, dropped, deleted, kept, scanned, cursor,
/// pending, consumers.
fn quantum_recover(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guarded(ctx, "QUANTUM.RECOVER", || {
        let argv = as_bytes(&args);
        if ctx.is_keys_position_request() {
            declare_keys(ctx, &argv);
            return Ok(RedisValue::NoReply);
        }
        let started = Instant::now();
        match recover::recover(ctx, &argv) {
            Ok(report) => {
                record_run(ctx, &argv, &report, started);
                reply::ordered_map(ctx, reply::recover_fields(&report))
            }
            Err(Failure::Refused(message)) => {
                bump(&STATS.refused, 1);
                Err(RedisError::String(message))
            }
            Err(Failure::Error(e)) => {
                bump(&STATS.errors, 1);
                Err(e)
            }
        }
    })
}

/// Counts a completed call in `INFO quantum` and logs what a real one changed.
fn record_run(ctx: &Context, argv: &[&[u8]], report: &recover::Report, started: Instant) {
    if report.dry_run {
        bump(&STATS.dry_runs, 1);
        return;
    }
    let outcome = &report.outcome;
    bump(&STATS.runs, 1);
    bump(&STATS.claimed, outcome.claimed.len());
    bump(&STATS.quarantined, outcome.quarantined.len());
    bump(&STATS.dropped, outcome.dropped.len());
    bump(&STATS.deleted, report.deletions.delete.len());
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    STATS.last_run_unix_ms.store(now_ms, Relaxed);
    STATS
        .last_run_duration_us
        .store(started.elapsed().as_micros() as u64, Relaxed);

    let changed = outcome.claimed.len()
        + outcome.quarantined.len()
        + outcome.dropped.len()
        + report.deletions.delete.len();
    if changed == 0 {
        return;
    }
    let deleted: Vec<String> = report
        .deletions
        .delete
        .iter()
        .take(20)
        .map(|name| format!("'{}'", text::printable(name, 200)))
        .collect();
    let more = report.deletions.delete.len().saturating_sub(deleted.len());
    let more = if more > 0 {
        format!(" +{more} more")
    } else {
        String::new()
    };
    ctx.log_notice(&text::log_safe(&format!(
        "recovered stream='{}' group='{}' claimed={} quarantined={} dropped={} deleted={} kept={} deleted_consumers=[{}]{more}",
        text::printable(argv[1], 200),
        text::printable(argv[2], 200),
        outcome.claimed.len(),
        outcome.quarantined.len(),
        outcome.dropped.len(),
        report.deletions.delete.len(),
        report.deletions.kept.len(),
        deleted.join(", "),
    )));
}

/// `INFO quantum`: the counters since load and the build stamp.
fn add_info(ctx: &redis_module::InfoContext, _for_crash_report: bool) {
    // An INFO callback cannot report an error: a section that fails to build is left out.
    let _ = STATS
        .fields()
        .into_iter()
        .try_fold(
            ctx.builder().add_section("stats"),
            |section, (name, value)| section.field(name, value),
        )
        .and_then(|section| section.field("build", env!("QUANTUM_BUILD").to_string()))
        .and_then(|section| section.build_section())
        .and_then(|info| info.build_info());
}

#[cfg(not(test))]
mod registration {
    use super::*;
    use crate::config::*;
    use redis_module::configuration::ConfigurationFlags;
    use redis_module::{redis_module, InfoContext, Status};

    /// Applies `loadmodule` arguments (`name value` pairs, with or without the
    /// `quantum.` prefix) through CONFIG SET, so they get the same checks as any
    /// config and a bad one fails the load instead of being ignored.
    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        let argv = as_bytes(args);
        let result = if !argv.len().is_multiple_of(2) {
            Err("loadmodule arguments must be name value pairs".to_string())
        } else {
            argv.chunks(2)
                .try_for_each(|pair| apply_module_arg(ctx, pair[0], pair[1]))
        };
        match result {
            Ok(()) => Status::Ok,
            Err(message) => {
                ctx.log_warning(&text::log_safe(&format!("not loaded: {message}")));
                Status::Err
            }
        }
    }

    fn apply_module_arg(ctx: &Context, name: &[u8], value: &[u8]) -> Result<(), String> {
        let name = name.strip_prefix(b"quantum.").unwrap_or(name);
        let config_name = [b"quantum.".as_slice(), name].concat();
        let options = redis_module::CallOptionsBuilder::new()
            .errors_as_replies()
            .build();
        let result: redis_module::CallResult = ctx.call_ext(
            "CONFIG",
            &options,
            &[b"SET".as_slice(), &config_name, value],
        );
        result.map(|_| ()).map_err(|e| {
            format!(
                "loadmodule argument {} {}: {}",
                text::quote(name),
                text::quote(value),
                String::from_utf8_lossy(e.as_bytes())
            )
        })
    }

    redis_module! {
        name: "quantum",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [],
        init: init,
        info: add_info,
        commands: [
            // Legacy key tuple (loads on Redis 7.0) plus getkeys-api for MODEKEY.
            ["quantum.recover", quantum_recover, "write getkeys-api", 1, 1, 1, ""],
        ],
        configurations: [
            i64: [
                ["min-idle", &MIN_IDLE, DEFAULT_MIN_IDLE, args::MIN_IDLE_RANGE.0, args::MIN_IDLE_RANGE.1, ConfigurationFlags::DEFAULT, None],
                ["count", &COUNT, DEFAULT_COUNT, args::COUNT_RANGE.0, args::COUNT_RANGE.1, ConfigurationFlags::DEFAULT, None],
                ["scan", &SCAN, DEFAULT_SCAN, args::SCAN_RANGE.0, args::SCAN_RANGE.1, ConfigurationFlags::DEFAULT, None],
                ["zombie-idle", &ZOMBIE_IDLE, DEFAULT_ZOMBIE_IDLE, args::ZOMBIE_IDLE_RANGE.0, args::ZOMBIE_IDLE_RANGE.1, ConfigurationFlags::DEFAULT, None],
                ["delete-limit", &DELETE_LIMIT, DEFAULT_DELETE_LIMIT, args::DELETE_LIMIT_RANGE.0, args::DELETE_LIMIT_RANGE.1, ConfigurationFlags::DEFAULT, None],
                ["max-deliveries", &MAX_DELIVERIES, DEFAULT_MAX_DELIVERIES, args::MAX_DELIVERIES_RANGE.0, args::MAX_DELIVERIES_RANGE.1, ConfigurationFlags::DEFAULT, None],
            ],
            string: [
                ["target", &TARGET, DEFAULT_TARGET, ConfigurationFlags::DEFAULT, None],
                ["quarantine", &QUARANTINE, DEFAULT_QUARANTINE, ConfigurationFlags::DEFAULT, None],
                ["mode-key", &MODE_KEY, DEFAULT_MODE_KEY, ConfigurationFlags::DEFAULT, None],
                ["allowed-modes", &ALLOWED_MODES, DEFAULT_ALLOWED_MODES, ConfigurationFlags::DEFAULT, None],
            ],
            // The macro wants every kind listed once module arguments are mentioned.
            bool: [],
            enum: [],
            // Applied by `init` through CONFIG SET instead, which checks them like any config.
            module_args_as_configuration: false,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_not_an_unwind() {
        let caught = catch_panic(|| panic!("boom {}", 42));
        assert_eq!(caught.unwrap_err(), "boom 42");
        let fine = catch_panic(|| Ok(RedisValue::Integer(1)));
        assert!(matches!(fine, Ok(Ok(RedisValue::Integer(1)))));
    }
}
