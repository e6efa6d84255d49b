//! What every command shares before it touches a stream: how a call fails, how
//! argument errors become replies, and the mode key read under the caller's ACL.

use crate::args::{ArgError, Defaults, ModeKey};
use crate::mode::{self, ModeValue};
use crate::redis_ops::{self, CallerAcl};
use crate::{config, text};
use quantum_protocol::{config as config_name, keyword as kw};
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
    let key = OptionalKey {
        keyword: kw::MODEKEY,
        config: config_name::MODE_KEY,
        purpose: "read the mode key",
        name: &mode_key.name,
        argv_pos: mode_key.argv_pos,
    };
    check_configured_key(ctx, acl, argv, key)?;
    Ok(redis_ops::read_mode(ctx, &mode_key.name)?)
}

/// A key a call names with `keyword`, or else takes from `quantum.<config>`.
pub struct OptionalKey<'a> {
    pub keyword: &'static str,
    pub config: &'static str,
    /// What the call does with it, for a refusal: "read the mode key".
    pub purpose: &'static str,
    pub name: &'a [u8],
    pub argv_pos: Option<usize>,
}

/// A key from a config is not in argv, so Redis has checked neither its slot
/// nor the caller's access to it. In a cluster it may live on another node,
/// where this node would read it as missing (the mode key: `mode: nil,
/// allowed: 0` from STATUS or a DRYRUN, a refusal from the rest) or create it
/// (the dead-letter stream): every call must name it, in the stream's slot.
/// Elsewhere the ACL check is this call as if it named the key (the
/// getkeys-api declares it then, with its access flags), so a selector
/// granting the key but not the command does not let it be used.
pub fn check_configured_key(
    ctx: &Context,
    acl: &CallerAcl,
    argv: &[&[u8]],
    key: OptionalKey,
) -> Result<(), Failure> {
    if key.argv_pos.is_some() {
        return Ok(());
    }
    if ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return Err(Failure::Error(RedisError::String(format!(
            "ERR in a Redis Cluster pass {} with a key in the stream's hash slot, \
             e.g. {{orders}}:{} for the stream {{orders}}:stream ({}{} {} is not in argv)",
            key.keyword,
            key.config,
            config_name::PREFIX,
            key.config,
            text::quote(key.name)
        ))));
    }
    let with_key = [argv, &[key.keyword.as_bytes(), key.name]].concat();
    acl.check_command(&with_key).map_err(|_| {
        Failure::Error(RedisError::String(format!(
            "NOPERM this user has no permissions to {} {} ({}{})",
            key.purpose,
            text::quote(key.name),
            config_name::PREFIX,
            key.config
        )))
    })
}
