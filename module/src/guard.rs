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
/// allowed mode is refused. In a cluster a call without MODEKEY is an error.
pub fn read_mode(
    ctx: &Context,
    acl: &CallerAcl,
    mode_key: &ModeKey,
    enforce: bool,
) -> Result<ModeValue, Failure> {
    // In a cluster the configured mode key may live on another node, where this
    // node would read it as missing (`mode: nil, allowed: 0` from STATUS or a
    // DRYRUN, a refusal from the rest): every call must name it, in the
    // stream's slot.
    if mode_key.argv_pos.is_none() && ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return Err(Failure::Error(RedisError::String(format!(
            "ERR in a Redis Cluster pass MODEKEY with a key in the stream's hash slot, \
             e.g. {{orders}}:mode for the stream {{orders}}:stream (quantum.mode-key {} is not in argv)",
            text::quote(&mode_key.name)
        ))));
    }
    acl.check_read_key(&mode_key.name, "the mode key")?;
    let value = redis_ops::read_mode(ctx, &mode_key.name)?;
    if enforce {
        mode::check(&value, &config::ALLOWED_MODES.get_string(), &mode_key.name)
            .map_err(Failure::Refused)?;
    }
    Ok(value)
}

/// Logs one line at notice level; client bytes must already be `text::printable`.
pub fn log_notice(ctx: &Context, line: &str) {
    ctx.log_notice(&text::log_safe(line));
}
