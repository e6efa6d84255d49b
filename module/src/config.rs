//! The `quantum.*` configs: the defaults of every QUANTUM.RECOVER option,
//! RETIRE's `quantum.retire-count` and `quantum.allowed-modes`. Redis owns them
//! (CONFIG SET/GET, redis.conf lines); these statics are where Redis stores
//! them and where each call reads them.

use crate::args::Defaults;
use quantum_protocol::config as protocol;
use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::{RedisError, RedisString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

pub static MIN_IDLE: AtomicI64 = AtomicI64::new(protocol::DEFAULT_MIN_IDLE);
pub static COUNT: AtomicI64 = AtomicI64::new(protocol::DEFAULT_COUNT);
pub static SCAN: AtomicI64 = AtomicI64::new(protocol::DEFAULT_SCAN);
pub static ZOMBIE_IDLE: AtomicI64 = AtomicI64::new(protocol::DEFAULT_ZOMBIE_IDLE);
pub static DELETE_LIMIT: AtomicI64 = AtomicI64::new(protocol::DEFAULT_DELETE_LIMIT);
pub static MAX_DELIVERIES: AtomicI64 = AtomicI64::new(protocol::DEFAULT_MAX_DELIVERIES);
pub static RETIRE_COUNT: AtomicI64 = AtomicI64::new(protocol::DEFAULT_RETIRE_COUNT);

pub static TARGET: TextConfig = TextConfig::name();
pub static QUARANTINE: TextConfig = TextConfig::name();
pub static MODE_KEY: TextConfig = TextConfig::name();
/// Comma list; empty allows nothing (fail closed).
pub static ALLOWED_MODES: TextConfig = TextConfig::list();

/// Whether a string config may be set to the empty string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Empty {
    Refused,
    Allowed,
}

/// A string config.
pub struct TextConfig {
    value: Mutex<String>,
    empty: Empty,
}

impl TextConfig {
    /// The name of a consumer or key: never empty.
    const fn name() -> Self {
        TextConfig {
            value: Mutex::new(String::new()),
            empty: Empty::Refused,
        }
    }

    /// A list, which may be empty.
    const fn list() -> Self {
        TextConfig {
            value: Mutex::new(String::new()),
            empty: Empty::Allowed,
        }
    }

    pub fn get_string(&self) -> String {
        self.value.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Redis calls these from C (CONFIG GET/SET, CONFIG REWRITE, redis.conf lines):
/// a panic here would unwind across the FFI boundary and abort the server (S6).
/// redis-module's own callback glue panics in two places we control: building
/// the value with `RedisString::create` (a CString: panics on NUL) and building
/// a set error (also a CString). So the value is built from a slice, error texts
/// are static ASCII, NUL is refused at set time, and both bodies run under
/// `catch_unwind` for anything else.
impl ConfigurationValue<RedisString> for TextConfig {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        let value = catch_unwind(AssertUnwindSafe(|| self.get_string())).unwrap_or_default();
        RedisString::create_from_slice(std::ptr::null_mut(), value.as_bytes())
    }

    fn set(&self, _ctx: &ConfigurationContext, value: RedisString) -> Result<(), RedisError> {
        catch_unwind(AssertUnwindSafe(|| self.set_bytes(value.as_slice())))
            .unwrap_or(Err(RedisError::Str("internal error")))
    }
}

impl TextConfig {
    fn set_bytes(&self, value: &[u8]) -> Result<(), RedisError> {
        let text = check_text(value, self.empty)?;
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = text.to_string();
        Ok(())
    }
}

/// The rules of a string config: UTF-8, no NUL byte (a consumer or key name
/// with NUL cannot be shown by CONFIG GET or written by CONFIG REWRITE), and
/// not empty unless allowed.
fn check_text(value: &[u8], empty: Empty) -> Result<&str, RedisError> {
    if value.contains(&0) {
        return Err(RedisError::Str("must not contain a NUL byte"));
    }
    let text =
        std::str::from_utf8(value).map_err(|_| RedisError::Str("must be valid UTF-8 text"))?;
    if text.is_empty() && empty == Empty::Refused {
        return Err(RedisError::Str("must not be empty"));
    }
    Ok(text)
}

/// The configs as they are now: the defaults of every command's options.
pub fn defaults() -> Defaults {
    Defaults {
        to: TARGET.get_string().into_bytes(),
        quarantine: QUARANTINE.get_string().into_bytes(),
        mode_key: MODE_KEY.get_string().into_bytes(),
        min_idle: MIN_IDLE.load(Ordering::Relaxed),
        count: COUNT.load(Ordering::Relaxed),
        scan: SCAN.load(Ordering::Relaxed),
        zombie_idle: ZOMBIE_IDLE.load(Ordering::Relaxed),
        delete_limit: DELETE_LIMIT.load(Ordering::Relaxed),
        max_deliveries: MAX_DELIVERIES.load(Ordering::Relaxed),
        retire_count: RETIRE_COUNT.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_configs_refuse_nul_bad_utf8_and_empty_names() {
        assert!(check_text(b"a\0b", Empty::Allowed).is_err());
        assert!(check_text(b"TESTNET\0", Empty::Allowed).is_err());
        assert!(check_text(b"\xff", Empty::Allowed).is_err());
        assert!(check_text(b"", Empty::Refused).is_err());
        assert_eq!(check_text(b"", Empty::Allowed).unwrap(), "");
        assert_eq!(check_text(b"recovery", Empty::Refused).unwrap(), "recovery");
    }
}
