//! The `quantum.*` configs: the defaults of every QUANTUM.RECOVER option,
//! RETIRE's `quantum.retire-count` and `quantum.allowed-modes`. Redis owns them
//! (CONFIG SET/GET, redis.conf lines); these statics are where Redis stores
//! them and where each call reads them.

use crate::args::Defaults;
use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::{RedisError, RedisString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

pub const DEFAULT_TARGET: &str = "recovery";
pub const DEFAULT_QUARANTINE: &str = "quarantine";
pub const DEFAULT_MODE_KEY: &str = "quantum:mode";
pub const DEFAULT_ALLOWED_MODES: &str = "TESTNET";
pub const DEFAULT_MIN_IDLE: i64 = 60_000;
pub const DEFAULT_COUNT: i64 = 100;
pub const DEFAULT_SCAN: i64 = 1_000;
pub const DEFAULT_ZOMBIE_IDLE: i64 = 3_600_000;
pub const DEFAULT_DELETE_LIMIT: i64 = 1_000;
pub const DEFAULT_MAX_DELIVERIES: i64 = 0;
pub const DEFAULT_RETIRE_COUNT: i64 = 1_000;

pub static MIN_IDLE: AtomicI64 = AtomicI64::new(DEFAULT_MIN_IDLE);
pub static COUNT: AtomicI64 = AtomicI64::new(DEFAULT_COUNT);
pub static SCAN: AtomicI64 = AtomicI64::new(DEFAULT_SCAN);
pub static ZOMBIE_IDLE: AtomicI64 = AtomicI64::new(DEFAULT_ZOMBIE_IDLE);
pub static DELETE_LIMIT: AtomicI64 = AtomicI64::new(DEFAULT_DELETE_LIMIT);
pub static MAX_DELIVERIES: AtomicI64 = AtomicI64::new(DEFAULT_MAX_DELIVERIES);
pub static RETIRE_COUNT: AtomicI64 = AtomicI64::new(DEFAULT_RETIRE_COUNT);

pub static TARGET: TextConfig = TextConfig::new(false);
pub static QUARANTINE: TextConfig = TextConfig::new(false);
pub static MODE_KEY: TextConfig = TextConfig::new(false);
/// Comma list; empty allows nothing (fail closed).
pub static ALLOWED_MODES: TextConfig = TextConfig::new(true);

/// A string config; names of consumers and keys may not be empty.
pub struct TextConfig {
    value: Mutex<String>,
    may_be_empty: bool,
}

impl TextConfig {
    const fn new(may_be_empty: bool) -> Self {
        TextConfig {
            value: Mutex::new(String::new()),
            may_be_empty,
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
        let text = check_text(value, self.may_be_empty)?;
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = text.to_string();
        Ok(())
    }
}

/// The rules of a string config: UTF-8, no NUL byte (a consumer or key name
/// with NUL cannot be shown by CONFIG GET or written by CONFIG REWRITE), and
/// not empty unless allowed.
fn check_text(value: &[u8], may_be_empty: bool) -> Result<&str, RedisError> {
    if value.contains(&0) {
        return Err(RedisError::Str("must not contain a NUL byte"));
    }
    let text =
        std::str::from_utf8(value).map_err(|_| RedisError::Str("must be valid UTF-8 text"))?;
    if text.is_empty() && !may_be_empty {
        return Err(RedisError::Str("must not be empty"));
    }
    Ok(text)
}

/// The configs as they are now, as RECOVER's defaults.
pub fn recover_defaults() -> Defaults {
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
        assert!(check_text(b"a\0b", true).is_err());
        assert!(check_text(b"TESTNET\0", true).is_err());
        assert!(check_text(b"\xff", true).is_err());
        assert!(check_text(b"", false).is_err());
        assert_eq!(check_text(b"", true).unwrap(), "");
        assert_eq!(check_text(b"recovery", false).unwrap(), "recovery");
    }
}
