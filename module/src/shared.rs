//! What every command shares before it touches a stream: how a call fails, how
//! argument errors become replies, and the mode key read under the caller's ACL.

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
    parser(argv, &config::defaults()).map_err(|e| match e {
        ArgError::WrongArity => RedisError::WrongArity,
        ArgError::Invalid(message) => RedisError::String(message),
    })
}

/// The mode guard (S3) of a call that changes state: anything but an allowed
/// mode is refused, and the call must stop before its first change.
pub fn guard_mode(
    ctx: &Context,
    acl: &CallerAcl,
    argv: &[&[u8]],
    mode_key: &ModeKey,
) -> Result<ModeValue, Failure> {
    let value = read_mode(ctx, acl, argv, mode_key)?;
    mode::check(&value, &config::ALLOWED_MODES.get_string(), &mode_key.name)
        .map_err(Failure::Refused)?;
    Ok(value)
}

/// Reads the mode key, after checking the caller may read it (it is read
/// directly, not through an ACL-checked call). STATUS and DRYRUN use it as is.
pub fn read_mode(
    ctx: &Context,
    acl: &CallerAcl,
    argv: &[&[u8]],
    mode_key: &ModeKey,
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
    if mode_key.argv_pos.is_none() {
        check_default_mode_key(acl, argv, &mode_key.name)?;
    }
    Ok(redis_ops::read_mode(ctx, &mode_key.name)?)
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
