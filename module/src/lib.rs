//! Redis module `quantum`: recovers a Redis Streams consumer group's pending
//! entries from dead consumers and deletes the dead names, atomically, inside Redis.
//!
//! Layout: `recover`, `status` and `retire` run one call of their command on
//! what they all share (`shared`: failures, parsing with the configs as
//! defaults, the mode key read). `plan` decides (pure), `redis_ops` runs the
//! stream commands, `reply` shapes replies, `log` writes the server log;
//! `args`, `mode` and `config` hold the rules for input, the mode guard and
//! defaults; `stats` the counters of `INFO quantum`; `text` makes client bytes
//! safe to show. This file registers the commands and configs, catches panics,
//! answers INFO and applies `loadmodule` arguments (through CONFIG SET).

// The command glue is compiled out of unit tests (see `registration`).
#![cfg_attr(test, allow(dead_code))]
// Inside redis-server an unwrap that fails is a crash (S6); tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod args;
mod config;
mod dead_letter;
mod log;
mod mode;
mod plan;
mod recover;
mod redis_ops;
mod reply;
mod retire;
mod shared;
mod stats;
mod status;
mod text;

use quantum_protocol::{command, error};
use redis_module::{raw, Context, RedisError, RedisResult, RedisString, RedisValue};
use shared::Failure;
use stats::{bump, STATS};
use std::panic::{catch_unwind, AssertUnwindSafe};

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

/// One QUANTUM.* command: its body, and where MODEKEY and DEADLETTER sit in its argv.
#[derive(Clone, Copy)]
struct Command {
    name: &'static str,
    /// Sends its own reply on success.
    body: fn(&Context, &[&[u8]]) -> Result<(), Failure>,
    mode_key_pos: fn(&[&[u8]]) -> Option<usize>,
    dead_letter_pos: fn(&[&[u8]]) -> Option<usize>,
    /// Whether the command only reads the stream (its key is declared read-only).
    reads_only: bool,
}

/// Runs `command` under the panic guard, answers key-position requests, counts
/// failures in `INFO quantum` and sends the reply.
fn dispatch(ctx: &Context, command: Command, args: &[RedisString]) -> RedisResult {
    let outcome = catch_panic(|| {
        let argv: Vec<&[u8]> = args.iter().map(RedisString::as_slice).collect();
        if ctx.is_keys_position_request() {
            let optional = OptionalKeys {
                mode_key: (command.mode_key_pos)(&argv),
                dead_letter: (command.dead_letter_pos)(&argv),
            };
            declare_keys(ctx, &argv, optional, command.reads_only);
            return Ok(RedisValue::NoReply);
        }
        match (command.body)(ctx, &argv) {
            Ok(()) => Ok(RedisValue::NoReply),
            Err(Failure::Refused(message)) => {
                bump(&STATS.refused, 1);
                Err(RedisError::String(message))
            }
            Err(Failure::Error(e)) => {
                bump(&STATS.errors, 1);
                Err(e)
            }
        }
    });
    outcome.unwrap_or_else(|panic| {
        bump(&STATS.errors, 1);
        log::warning(
            ctx,
            &format!(
                "internal error in {}: {}",
                command.name,
                text::printable(panic.as_bytes(), 500)
            ),
        );
        Err(RedisError::Str(error::INTERNAL))
    })
}

/// Where the keys a call may name besides its stream sit in its argv.
struct OptionalKeys {
    mode_key: Option<usize>,
    dead_letter: Option<usize>,
}

/// Cluster routing and ACL learn the keys from here: the stream (read-only for
/// STATUS, read-write otherwise), the mode key when MODEKEY names it (read
/// only) and the dead-letter stream when DEADLETTER names it (written, as by
/// XADD: no read access needed). Keys from the configs are not in argv, so
/// `shared` checks the call as if it named them. RM_KeyAtPosWithFlags exists
/// from Redis 7.0 on; without it (older servers) keys are declared with full access.
fn declare_keys(ctx: &Context, argv: &[&[u8]], optional: OptionalKeys, reads_only: bool) {
    if argv.len() < 2 {
        return;
    }
    let read_only = (raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS) as i32;
    let read_write = (raw::REDISMODULE_CMD_KEY_RW
        | raw::REDISMODULE_CMD_KEY_ACCESS
        | raw::REDISMODULE_CMD_KEY_UPDATE) as i32;
    // As XADD declares its key (written and trimmed, never read back).
    let appended = (raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE) as i32;
    // SAFETY: reading a function pointer Redis filled in when the module loaded
    // (RedisModule_Init runs before any command); it is never written again.
    match unsafe { raw::RedisModule_KeyAtPosWithFlags } {
        // SAFETY: `ctx.ctx` is the live context of this key-position request
        // (checked by `is_keys_position_request`), and every position is < argc:
        // 1 because argv has at least 2 entries, MODEKEY's and DEADLETTER's because
        // the parser found their values in argv.
        Some(key_at_pos) => unsafe {
            key_at_pos(ctx.ctx, 1, if reads_only { read_only } else { read_write });
            if let Some(pos) = optional.mode_key {
                key_at_pos(ctx.ctx, pos as i32, read_only);
            }
            if let Some(pos) = optional.dead_letter {
                key_at_pos(ctx.ctx, pos as i32, appended);
            }
        },
        None => {
            ctx.key_at_pos(1);
            if let Some(pos) = optional.dead_letter {
                ctx.key_at_pos(pos as i32);
            }
        }
    }
}

/// For commands without a DEADLETTER option.
fn no_key(_argv: &[&[u8]]) -> Option<usize> {
    None
}

const RECOVER: Command = Command {
    name: command::RECOVER,
    body: recover::run,
    mode_key_pos: recover::mode_key_pos,
    dead_letter_pos: recover::dead_letter_pos,
    reads_only: false,
};
const STATUS: Command = Command {
    name: command::STATUS,
    body: status::run,
    mode_key_pos: status::mode_key_pos,
    dead_letter_pos: no_key,
    reads_only: true,
};
const RETIRE: Command = Command {
    name: command::RETIRE,
    body: retire::run,
    mode_key_pos: retire::mode_key_pos,
    dead_letter_pos: no_key,
    reads_only: false,
};

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
    use crate::config::{self, NUMBER_CONFIGS, STRING_CONFIGS};
    use redis_module::configuration::{
        register_i64_configuration, register_string_configuration, ConfigurationFlags,
    };
    use redis_module::{redis_module, InfoContext, Status};

    /// Registers the `quantum.*` configs with the `loadmodule` arguments as
    /// their defaults, then lets Redis apply the redis.conf `quantum.*` lines
    /// on top: a line, and so CONFIG REWRITE, wins over an argument. A bad
    /// argument or line fails the load with a log line naming it.
    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        let argv: Vec<&[u8]> = args.iter().map(RedisString::as_slice).collect();
        let defaults = match config::registered_defaults(&argv) {
            Ok(defaults) => defaults,
            Err(message) => return not_loaded(ctx, &message),
        };
        const FLAGS: ConfigurationFlags = ConfigurationFlags::DEFAULT;
        for (c, default) in NUMBER_CONFIGS.iter().zip(defaults.numbers) {
            let (min, max) = (c.range.min, c.range.max);
            register_i64_configuration(ctx, c.name, c.value, default, min, max, FLAGS, None);
        }
        for (c, default) in STRING_CONFIGS.iter().zip(&defaults.strings) {
            register_string_configuration(ctx, c.name, c.value, default, FLAGS, None);
        }
        // SAFETY: reads a function pointer Redis filled in before calling this module's OnLoad.
        let Some(load_configs) = (unsafe { raw::RedisModule_LoadConfigs }) else {
            return not_loaded(
                ctx,
                "this server has no module configs (Redis 7.0 or later needed)",
            );
        };
        // SAFETY: `ctx.ctx` is the live context of this OnLoad call, as RM_LoadConfigs requires.
        if unsafe { load_configs(ctx.ctx) } != raw::REDISMODULE_OK as i32 {
            return not_loaded(ctx, "a quantum.* setting was refused (see the line above)");
        }
        Status::Ok
    }

    fn not_loaded(ctx: &Context, message: &str) -> Status {
        log::warning(ctx, &format!("not loaded: {message}"));
        Status::Err
    }

    redis_module! {
        name: "quantum",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [],
        // Registers the configs too: `init` sees the loadmodule arguments first.
        init: init,
        info: add_info,
        commands: [
            // Legacy key tuple (loads on Redis 7.0) plus getkeys-api for MODEKEY.
            ["quantum.recover", |ctx: &Context, args: Vec<RedisString>| dispatch(ctx, RECOVER, &args), "write getkeys-api", 1, 1, 1, ""],
            ["quantum.retire", |ctx: &Context, args: Vec<RedisString>| dispatch(ctx, RETIRE, &args), "write getkeys-api", 1, 1, 1, ""],
            ["quantum.status", |ctx: &Context, args: Vec<RedisString>| dispatch(ctx, STATUS, &args), "readonly getkeys-api", 1, 1, 1, ""],
        ],
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
