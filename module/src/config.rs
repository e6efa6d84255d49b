//! The `quantum.*` configs: the defaults of every QUANTUM.RECOVER option
//! (with the dead-letter stream and its MAXLEN), RETIRE's
//! `quantum.retire-count` and `quantum.retire-budget`, and
//! `quantum.allowed-modes`. Redis owns them (CONFIG SET/GET, redis.conf
//! lines); these statics are where Redis stores them and where each call
//! reads them. `loadmodule` arguments become their
//! registered defaults (`registered_defaults`), so redis.conf lines win.

use crate::args::Defaults;
use crate::text;
use quantum_protocol::config::{self as protocol, PREFIX};
use quantum_protocol::{range, Range};
use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::{RedisError, RedisString};
use std::borrow::Cow;
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
pub static RETIRE_BUDGET: AtomicI64 = AtomicI64::new(protocol::DEFAULT_RETIRE_BUDGET);
pub static DEAD_LETTER_MAXLEN: AtomicI64 = AtomicI64::new(protocol::DEFAULT_DEAD_LETTER_MAXLEN);

pub static TARGET: TextConfig = TextConfig::name(protocol::DEFAULT_TARGET);
pub static QUARANTINE: TextConfig = TextConfig::name(protocol::DEFAULT_QUARANTINE);
pub static MODE_KEY: TextConfig = TextConfig::name(protocol::DEFAULT_MODE_KEY);
/// Comma list; empty allows nothing (fail closed).
pub static ALLOWED_MODES: TextConfig = TextConfig::list(protocol::DEFAULT_ALLOWED_MODES);
/// Empty: quarantined entries are not copied.
pub static DEAD_LETTER: TextConfig = TextConfig::optional(protocol::DEFAULT_DEAD_LETTER);

/// A numeric `quantum.<name>` config as it is registered.
pub struct NumberConfig {
    pub name: &'static str,
    pub value: &'static AtomicI64,
    pub default: i64,
    pub range: Range,
}

/// A string `quantum.<name>` config as it is registered.
pub struct StringConfig {
    pub name: &'static str,
    pub value: &'static TextConfig,
    pub default: &'static str,
}

pub static NUMBER_CONFIGS: [NumberConfig; 9] = [
    number(
        protocol::MIN_IDLE,
        &MIN_IDLE,
        protocol::DEFAULT_MIN_IDLE,
        range::MIN_IDLE,
    ),
    number(
        protocol::COUNT,
        &COUNT,
        protocol::DEFAULT_COUNT,
        range::COUNT,
    ),
    number(protocol::SCAN, &SCAN, protocol::DEFAULT_SCAN, range::SCAN),
    number(
        protocol::ZOMBIE_IDLE,
        &ZOMBIE_IDLE,
        protocol::DEFAULT_ZOMBIE_IDLE,
        range::ZOMBIE_IDLE,
    ),
    number(
        protocol::DELETE_LIMIT,
        &DELETE_LIMIT,
        protocol::DEFAULT_DELETE_LIMIT,
        range::DELETE_LIMIT,
    ),
    number(
        protocol::MAX_DELIVERIES,
        &MAX_DELIVERIES,
        protocol::DEFAULT_MAX_DELIVERIES,
        range::MAX_DELIVERIES,
    ),
    number(
        protocol::RETIRE_COUNT,
        &RETIRE_COUNT,
        protocol::DEFAULT_RETIRE_COUNT,
        range::RETIRE_COUNT,
    ),
    number(
        protocol::RETIRE_BUDGET,
        &RETIRE_BUDGET,
        protocol::DEFAULT_RETIRE_BUDGET,
        range::RETIRE_BUDGET,
    ),
    number(
        protocol::DEAD_LETTER_MAXLEN,
        &DEAD_LETTER_MAXLEN,
        protocol::DEFAULT_DEAD_LETTER_MAXLEN,
        range::DEAD_LETTER_MAXLEN,
    ),
];

pub static STRING_CONFIGS: [StringConfig; 5] = [
    StringConfig {
        name: protocol::TARGET,
        value: &TARGET,
        default: protocol::DEFAULT_TARGET,
    },
    StringConfig {
        name: protocol::QUARANTINE,
        value: &QUARANTINE,
        default: protocol::DEFAULT_QUARANTINE,
    },
    StringConfig {
        name: protocol::MODE_KEY,
        value: &MODE_KEY,
        default: protocol::DEFAULT_MODE_KEY,
    },
    StringConfig {
        name: protocol::ALLOWED_MODES,
        value: &ALLOWED_MODES,
        default: protocol::DEFAULT_ALLOWED_MODES,
    },
    StringConfig {
        name: protocol::DEAD_LETTER,
        value: &DEAD_LETTER,
        default: protocol::DEFAULT_DEAD_LETTER,
    },
];

const fn number(
    name: &'static str,
    value: &'static AtomicI64,
    default: i64,
    range: Range,
) -> NumberConfig {
    NumberConfig {
        name,
        value,
        default,
        range,
    }
}

/// Whether a string config may be set to the empty string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Empty {
    Refused,
    Allowed,
}

/// A string config.
pub struct TextConfig {
    /// Starts as the built-in default, never as "" where "" is refused: Redis
    /// calls the set callback for a redis.conf line only when the value differs
    /// from what the config holds, so an initial "" would let
    /// `quantum.target ""` in unchecked.
    value: Mutex<Cow<'static, str>>,
    empty: Empty,
}

impl TextConfig {
    /// The name of a consumer or key: never empty.
    const fn name(default: &'static str) -> Self {
        TextConfig {
            value: Mutex::new(Cow::Borrowed(default)),
            empty: Empty::Refused,
        }
    }

    /// A key name that may be empty (meaning: none).
    const fn optional(default: &'static str) -> Self {
        TextConfig {
            value: Mutex::new(Cow::Borrowed(default)),
            empty: Empty::Allowed,
        }
    }

    /// A list, which may be empty.
    const fn list(default: &'static str) -> Self {
        TextConfig {
            value: Mutex::new(Cow::Borrowed(default)),
            empty: Empty::Allowed,
        }
    }

    pub fn get_string(&self) -> String {
        self.value
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .to_string()
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
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Cow::Owned(text.to_string());
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

/// The registered defaults: the built-in ones, replaced by `loadmodule`
/// arguments; in the order of `NUMBER_CONFIGS` and `STRING_CONFIGS`.
#[derive(Debug, PartialEq, Eq)]
pub struct RegisteredDefaults {
    pub numbers: Vec<i64>,
    pub strings: Vec<String>,
}

/// Checks `loadmodule` arguments, `name value` pairs with `name` with or without
/// `quantum.`, and makes them the registered defaults. Every value must come
/// back intact from CONFIG REWRITE, which writes the loadmodule line unquoted.
pub fn registered_defaults(argv: &[&[u8]]) -> Result<RegisteredDefaults, String> {
    if !argv.len().is_multiple_of(2) {
        return Err("loadmodule arguments must be name value pairs".into());
    }
    let mut defaults = RegisteredDefaults {
        numbers: NUMBER_CONFIGS.iter().map(|c| c.default).collect(),
        strings: STRING_CONFIGS
            .iter()
            .map(|c| c.default.to_string())
            .collect(),
    };
    let mut seen: Vec<&[u8]> = Vec::new();
    for pair in argv.chunks(2) {
        let name = pair[0].strip_prefix(PREFIX.as_bytes()).unwrap_or(pair[0]);
        let value = pair[1];
        let what = || {
            format!(
                "loadmodule argument {} {}",
                text::quote(name),
                text::quote(value)
            )
        };
        if seen.contains(&name) {
            return Err(format!("{}: given twice", what()));
        }
        seen.push(name);
        if let Some(reason) = rewrite_breaks(value) {
            return Err(format!(
                "{}: {reason}; CONFIG REWRITE writes loadmodule arguments back unquoted, so \
                 they may not be empty or hold spaces, quotes, backslashes, control or \
                 non-ASCII bytes; put such a value on a quantum.{} line in redis.conf",
                what(),
                text::printable(name, 64)
            ));
        }
        if let Some(i) = NUMBER_CONFIGS
            .iter()
            .position(|c| c.name.as_bytes() == name)
        {
            let Range { min, max } = NUMBER_CONFIGS[i].range;
            defaults.numbers[i] = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|&n| NUMBER_CONFIGS[i].range.contains(n))
                .ok_or_else(|| format!("{}: must be an integer from {min} to {max}", what()))?;
        } else if let Some(i) = STRING_CONFIGS
            .iter()
            .position(|c| c.name.as_bytes() == name)
        {
            // rewrite_breaks has already refused empty and non-ASCII values.
            defaults.strings[i] = String::from_utf8_lossy(value).into_owned();
        } else {
            return Err(format!(
                "{}: no such config 'quantum.{}'",
                what(),
                text::printable(name, 64)
            ));
        }
    }
    Ok(defaults)
}

/// Why `value` would not survive an unquoted `loadmodule` line, if it would not.
fn rewrite_breaks(value: &[u8]) -> Option<String> {
    if value.is_empty() {
        return Some("the value is empty".into());
    }
    value.iter().find_map(|&b| match b {
        b' ' => Some("the value holds a space".into()),
        b'"' | b'\'' | b'\\' => Some(format!("the value holds {}", b as char)),
        0 => Some("the value holds a NUL byte".into()),
        0x21..=0x7e => None,
        _ => Some(format!("the value holds the byte \\x{b:02x}")),
    })
}

/// How long one RETIRE call may claim before it stops (a config, not an option).
pub fn retire_budget() -> std::time::Duration {
    let ms = RETIRE_BUDGET.load(Ordering::Relaxed);
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(1))
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
        dead_letter: DEAD_LETTER.get_string().into_bytes(),
        dead_letter_maxlen: DEAD_LETTER_MAXLEN.load(Ordering::Relaxed),
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

    #[test]
    fn text_configs_start_at_their_defaults() {
        assert_eq!(TARGET.get_string(), protocol::DEFAULT_TARGET);
        assert_eq!(ALLOWED_MODES.get_string(), protocol::DEFAULT_ALLOWED_MODES);
    }

    fn defaults_of(argv: &[&str]) -> Result<RegisteredDefaults, String> {
        let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        registered_defaults(&argv)
    }

    #[test]
    fn loadmodule_arguments_become_registered_defaults_in_either_spelling() {
        let got = defaults_of(&["count", "7", "quantum.allowed-modes", "TESTNET,PAPER"]).unwrap();
        let count = NUMBER_CONFIGS
            .iter()
            .position(|c| c.name == "count")
            .unwrap();
        let modes = STRING_CONFIGS
            .iter()
            .position(|c| c.name == "allowed-modes")
            .unwrap();
        assert_eq!(got.numbers[count], 7);
        assert_eq!(got.strings[modes], "TESTNET,PAPER");
        let none = defaults_of(&[]).unwrap();
        assert_eq!(none.numbers[count], protocol::DEFAULT_COUNT);
        assert_eq!(none.strings[modes], protocol::DEFAULT_ALLOWED_MODES);
    }

    #[test]
    fn loadmodule_arguments_that_break_or_are_unknown_are_refused_by_name() {
        for (argv, expected) in [
            (&["count"][..], "name value pairs"),
            (&["bogus", "1"], "no such config 'quantum.bogus'"),
            (
                &["count", "0"],
                "'count' '0': must be an integer from 1 to 10000",
            ),
            (&["count", "x"], "'count' 'x': must be an integer"),
            (
                &["count", "1", "quantum.count", "2"],
                "'count' '2': given twice",
            ),
            (
                &["target", "exec 1"],
                "'target' 'exec 1': the value holds a space",
            ),
            (
                &["allowed-modes", ""],
                "'allowed-modes' '': the value is empty",
            ),
            (&["target", "a\"b"], "the value holds \""),
            (&["target", "a\\b"], "the value holds \\"),
            (&["target", "it's"], "the value holds '"),
            (&["target", "a\tb"], "the byte \\x09"),
            (&["target", "caf\u{e9}"], "the byte \\xc3"),
            (&["target", "a\0b"], "NUL"),
        ] {
            let err = defaults_of(argv).unwrap_err();
            assert!(err.contains(expected), "{argv:?}: {err}");
        }
        let err = defaults_of(&["quantum.mode-key", "a b"]).unwrap_err();
        assert!(err.contains("quantum.mode-key line in redis.conf"), "{err}");
    }
}
