//! What every command shares before it touches a stream: how a call fails, how
//! arguments errors become replies, and the mode key read under the caller's ACL.

use crate::args::{ArgError, Defaults, ModeKey};
use crate::mode::{self, ModeValue};
use crate::redis_ops::{self, CallerAcl};
use crate::{config, text};
use redis_module::{Context, ContextFlags, RedisError};

pub enum Failure {
    /// The mode guard said no (S3): nothing was touched.
    Refused(String),
    Error(RedisError),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Error(e)
    }
}

/// Runs one of the `args::parse_*` functions with the configs as defaults.
pub fn parse<R>(
    argv: &[&[u8]],
    parser: fn(&[&[u8]], &Defaults) -> Result<R, ArgError>,
) -> Result<R, RedisError> {
    parser(argv, &config::recover_defaults()).map_err(|e| match e {
        ArgError::WrongArity => RedisError::WrongArity,
        ArgError::Invalid(message) => RedisError::String(message),
    })
}

/// Reads the mode key, after checking the caller may read it (it is read
/// directly, not through an ACL-checked call). With `enforce`, anything but an
/// allowed mode is refused.
pub fn read_mode(
    ctx: &Context,
    acl: &CallerAcl,
    argv: &[&[u8]],
    mode_key: &ModeKey,
    enforce: bool,
) -> Result<ModeValue, Failure> {
    // In a cluster the configured mode key may live on another node, where this
    // node would read it as missing: the call must name it, in the stream's slot.
    if enforce && mode_key.argv_pos.is_none() && ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return Err(Failure::Error(RedisError::String(format!(
            "ERR in a Redis Cluster pass MODEKEY with a key in the stream's hash slot, \
             e.g. {{orders}}:mode for the stream {{orders}}:stream (quantum.mode-key {} is not in argv)",
            text::quote(&mode_key.name)
        ))));
    }
    if mode_key.argv_pos.is_none() {
        check_default_mode_key(acl, argv, &mode_key.name)?;
    }
    let value = redis_ops::read_mode(ctx, &mode_key.name)?;
    if enforce {
        mode::check(&value, &config::ALLOWED_MODES.get_string(), &mode_key.name)
            .map_err(Failure::Refused)?;
    }
    Ok(value)
}

/// Redis checked a MODEKEY in argv with the command, in one selector. The
/// configured key gets the same check: this call with `MODEKEY <key>` added
/// (the getkeys-api declares it then), so a selector granting the key but not
/// the command does not let it be read.
fn check_default_mode_key(acl: &CallerAcl, argv: &[&[u8]], key: &[u8]) -> Result<(), Failure> {
    let with_key = [argv, &[b"MODEKEY".as_slice(), key]].concat();
    acl.check_command(&with_key).map_err(|_| {
        Failure::Error(RedisError::Str(
            "NOPERM this user has no permissions to read the mode key",
        ))
    })
}

/// Logs one line at notice level; client bytes must already be `text::printable`.
pub fn log_notice(ctx: &Context, line: &str) {
    ctx.log_notice(&text::log_safe(line));
}
