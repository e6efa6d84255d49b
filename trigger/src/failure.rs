//! Why a run failed, as a sysexits code a systemd unit and an operator can act on.

use quantum_protocol::error;
use redis::RedisError;

pub const USAGE: u8 = 64;
pub const MODULE_MISSING: u8 = 69;
pub const CANT_CREATE: u8 = 73;
pub const UNAVAILABLE: u8 = 75;
pub const PROTOCOL: u8 = 76;
pub const NO_PERMISSION: u8 = 77;
pub const CONFIG: u8 = 78;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// The command was sent but its answer never came (a timeout, a dropped
    /// connection): Redis may have run it.
    pub reply_lost: bool,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            reply_lost: false,
        }
    }

    /// The same failure with another message.
    pub fn reworded(self, message: String) -> Failure {
        Failure { message, ..self }
    }
}

/// `e` ended a command that was already sent: a timeout or a connection lost
/// mid-call leaves its outcome unknown (a refused connection sent nothing).
pub fn reply_lost(e: &RedisError) -> bool {
    e.is_timeout() || e.is_connection_dropped() || (e.is_io_error() && !e.is_connection_refusal())
}

/// Why a password that worked yesterday fails today.
const NO_SUCH_USER_HINT: &str = " (the ACL user may not exist: users made with ACL SETUSER \
live in memory only, so a Redis restart forgets them unless they were persisted with \
CONFIG REWRITE or ACL SAVE to an aclfile; check ACL LIST, or run quantum-stream-recover doctor)";

/// Server errors by their code; I/O trouble (refused, timeout, dropped) is temporary.
pub fn from_redis(e: &RedisError) -> Failure {
    let line = match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    };
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return Failure::new(
            NO_PERMISSION,
            format!("authentication failed: {line}{NO_SUCH_USER_HINT}"),
        );
    }
    if e.kind() == redis::ErrorKind::InvalidClientConfig {
        // Found only when connecting, e.g. rediss://…/#insecure.
        return Failure::new(CONFIG, format!("bad --url: {line}"));
    }
    if e.is_timeout() {
        return Failure::new(UNAVAILABLE, format!("Redis did not answer in time: {line}"));
    }
    if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        return Failure::new(UNAVAILABLE, format!("Redis unreachable: {line}"));
    }
    let code = server_error_code(e.code().unwrap_or(""), &line);
    let hint = match code {
        UNAVAILABLE if line.starts_with("READONLY") => {
            " (this server is a replica: point --url at the primary)"
        }
        MODULE_MISSING => " (is the quantum module loaded? MODULE LIST)",
        NO_PERMISSION if !line.starts_with(error::NOPERM) => NO_SUCH_USER_HINT,
        _ => "",
    };
    Failure::new(code, format!("{line}{hint}"))
}

/// The exit code for a server error reply `line` with error code `code`.
fn server_error_code(code: &str, line: &str) -> u8 {
    match code {
        "LOADING" | "READONLY" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" => UNAVAILABLE,
        "NOAUTH" | "WRONGPASS" | "NOPERM" => NO_PERMISSION,
        // A mode key outside the stream's cluster slot: a setting to fix.
        "CROSSSLOT" => USAGE,
        error::ERR if line.contains("unknown command") => MODULE_MISSING,
        // The module answers ERR for arguments it refuses (e.g. SCAN below COUNT from its configs).
        error::ERR
            if !line.starts_with(error::INTERNAL) && !line.starts_with(error::UNEXPECTED_REPLY) =>
        {
            USAGE
        }
        _ => PROTOCOL,
    }
}

pub fn unexpected(what: &str) -> Failure {
    Failure::new(PROTOCOL, format!("unexpected reply: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_follow_the_exit_code_table() {
        for (code, line, exit) in [
            (
                "ERR",
                "ERR unknown command 'QUANTUM.RECOVER', with args beginning with:",
                MODULE_MISSING,
            ),
            (
                "ERR",
                "ERR COUNT must be an integer from 1 to 10000, got '0'",
                USAGE,
            ),
            ("ERR", "ERR internal error", PROTOCOL),
            (
                "LOADING",
                "LOADING Redis is loading the dataset in memory",
                UNAVAILABLE,
            ),
            (
                "READONLY",
                "READONLY You can't write against a read only replica.",
                UNAVAILABLE,
            ),
            ("NOPERM", "NOPERM XCLAIM refused by ACL", NO_PERMISSION),
            (
                "WRONGPASS",
                "WRONGPASS invalid username-password pair",
                NO_PERMISSION,
            ),
            (
                "WRONGTYPE",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                PROTOCOL,
            ),
        ] {
            assert_eq!(server_error_code(code, line), exit, "{line}");
        }
    }
}
