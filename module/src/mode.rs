//! The mode guard (S3): a mutating call runs only when the mode key holds, byte
//! for byte, one of the (trimmed) names in `quantum.allowed-modes`. Anything
//! else fails closed.

use crate::text::{printable, quote};
use quantum_protocol::error;

/// What the mode key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModeValue {
    Missing,
    /// The key holds another type (named as TYPE would).
    NotString(&'static str),
    Value(Vec<u8>),
}

impl ModeValue {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            ModeValue::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// `quantum.allowed-modes` as a list: comma separated, spaces around names ignored.
fn allowed_list(allowed: &str) -> impl Iterator<Item = &str> {
    allowed.split(',').map(str::trim).filter(|m| !m.is_empty())
}

pub fn is_allowed(mode: &ModeValue, allowed: &str) -> bool {
    mode.as_bytes()
        .is_some_and(|value| allowed_list(allowed).any(|m| m.as_bytes() == value))
}

/// The guard: `Ok` when mutating is allowed, else the `MODE` error reply.
pub fn check(mode: &ModeValue, allowed: &str, mode_key: &[u8]) -> Result<(), String> {
    if is_allowed(mode, allowed) {
        return Ok(());
    }
    let found = match mode {
        ModeValue::Missing => "is missing".to_string(),
        ModeValue::NotString(kind) => format!("holds a {kind}, not a string"),
        ModeValue::Value(v) => format!("is {}", quote(v)),
    };
    let allowed: Vec<&str> = allowed_list(allowed).collect();
    // Escaped as `quote` escapes the mode value (`\xNN`, `\\`, `\'`): an error
    // line carrying a non-ASCII name reaches clients as bytes they cannot
    // parse, and an unescaped `\` would print two names alike.
    let allowed = if allowed.is_empty() {
        "none".to_string()
    } else {
        let list = allowed.join(",");
        printable(list.as_bytes(), list.len())
    };
    Err(format!(
        "{} refused: mode key {} {found}; allowed modes: {allowed}",
        error::MODE,
        quote(mode_key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> ModeValue {
        ModeValue::Value(v.as_bytes().to_vec())
    }

    #[test]
    fn allows_exact_members_only() {
        assert!(check(&value("TESTNET"), "TESTNET", b"m").is_ok());
        assert!(check(&value("STAGING"), "TESTNET, STAGING", b"m").is_ok());
        for refused in ["LIVE", "testnet", "TESTNET ", " TESTNET", ""] {
            let err = check(&value(refused), "TESTNET", b"m").unwrap_err();
            assert!(err.starts_with("MODE "), "{err}");
        }
    }

    #[test]
    fn missing_and_wrong_type_fail_closed() {
        let err = check(&ModeValue::Missing, "TESTNET", b"quantum:mode").unwrap_err();
        assert_eq!(
            err,
            "MODE refused: mode key 'quantum:mode' is missing; allowed modes: TESTNET"
        );
        let err = check(&ModeValue::NotString("list"), "TESTNET", b"m").unwrap_err();
        assert!(err.contains("holds a list"), "{err}");
    }

    #[test]
    fn the_refusal_shows_non_ascii_allowed_modes_escaped() {
        let err = check(&value("LIVE"), "TESTNET, \u{fe}TAGING", b"m").unwrap_err();
        assert!(err.is_ascii(), "{err}");
        assert!(
            err.ends_with("allowed modes: TESTNET,\\xc3\\xbeTAGING"),
            "{err}"
        );
        // A name written with a backslash does not print as the bytes it spells.
        let err = check(&value("LIVE"), r"a\xc3\x89", b"m").unwrap_err();
        assert!(err.ends_with(r"allowed modes: a\\xc3\\x89"), "{err}");
    }

    #[test]
    fn empty_allowed_list_allows_nothing() {
        let err = check(&value("TESTNET"), " , ", b"m").unwrap_err();
        assert!(err.ends_with("allowed modes: none"), "{err}");
    }
}
