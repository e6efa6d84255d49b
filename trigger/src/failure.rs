//! Why a run failed, as a sysexits code a systemd unit and an operator can act on.
//! `ExitCode` below is the one table of which exit code means what; `from_redis`
//! and `server_error_code` say which Redis error gets which code.

use quantum_protocol::error;
use redis::RedisError;

/// Every exit code the trigger ends with (sysexits.h where one fits). The
/// long help (`cli.rs`) and the README's exit-code table say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The run did its work, found nothing to do, or the mode guard refused
    /// (a refusal is what LIVE is for).
    Success = 0,
    /// `doctor`: at least one check failed; `check`: WARNING.
    ChecksFailed = 1,
    /// `check` only: CRITICAL (monitoring-plugins).
    CheckCritical = 2,
    /// `check` only: UNKNOWN (monitoring-plugins), Redis unreachable or the module missing included.
    CheckUnknown = 3,
    /// EX_USAGE: a bad option, a missing `--consumer`, an option of another
    /// verb, or an argument the module refused.
    Usage = 64,
    /// EX_UNAVAILABLE: the quantum module is not loaded.
    ModuleMissing = 69,
    /// EX_CANTCREAT: the log or metrics file could not be written.
    CantCreate = 73,
    /// EX_TEMPFAIL: Redis unreachable, a timeout or the deadline, LOADING,
    /// READONLY, BUSY, a cluster that is down: the next run may succeed.
    Unavailable = 75,
    /// EX_PROTOCOL: a reply the trigger cannot use (WRONGTYPE, internal error),
    /// or a refusal of the server's data at run time that no retry mends (a
    /// dead-letter stream out of IDs).
    Protocol = 76,
    /// EX_NOPERM: NOAUTH, WRONGPASS, NOPERM.
    NoPermission = 77,
    /// EX_CONFIG: a bad URL, password file or env file.
    Config = 78,
}

impl ExitCode {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.as_u8())
    }
}

impl serde::Serialize for ExitCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.as_u8())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ExitCode,
    pub message: String,
    /// The command was sent but its answer never came (a timeout, a dropped
    /// connection): Redis may have run it.
    pub reply_lost: bool,
}

impl Failure {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Failure {
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
    // A server's text goes to the journal: one line, whatever it holds.
    let line: String = line
        .chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_default().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect();
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return Failure::new(
            ExitCode::NoPermission,
            format!("authentication failed: {line}{NO_SUCH_USER_HINT}"),
        );
    }
    if e.kind() == redis::ErrorKind::InvalidClientConfig {
        // Found only when connecting, e.g. rediss://…/#insecure.
        return Failure::new(ExitCode::Config, format!("bad --url: {line}"));
    }
    if e.is_timeout() {
        return Failure::new(
            ExitCode::Unavailable,
            format!("Redis did not answer in time: {line}"),
        );
    }
    if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        return Failure::new(ExitCode::Unavailable, format!("Redis unreachable: {line}"));
    }
    let code = server_error_code(e.code().unwrap_or(""), &line);
    let hint = match code {
        ExitCode::Unavailable if line.starts_with("READONLY") => {
            " (this server is a replica: point --url at the primary)"
        }
        ExitCode::ModuleMissing => " (is the quantum module loaded? MODULE LIST)",
        ExitCode::NoPermission if !line.starts_with(error::NOPERM) => NO_SUCH_USER_HINT,
        _ => "",
    };
    Failure::new(code, format!("{line}{hint}"))
}

/// The exit code for a server error reply `line` with error code `code`.
fn server_error_code(code: &str, line: &str) -> ExitCode {
    match code {
        "LOADING" | "READONLY" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" => {
            ExitCode::Unavailable
        }
        "NOAUTH" | "WRONGPASS" | "NOPERM" => ExitCode::NoPermission,
        // A mode key outside the stream's cluster slot: a setting to fix.
        "CROSSSLOT" => ExitCode::Usage,
        error::ERR if line.contains("unknown command") => ExitCode::ModuleMissing,
        // The module answers ERR for arguments it refuses (e.g. SCAN below COUNT from its configs).
        error::ERR
            if !line.starts_with(error::INTERNAL)
                && !line.starts_with(error::UNEXPECTED_REPLY)
                && !line.starts_with(error::DEAD_LETTER_FULL) =>
        {
            ExitCode::Usage
        }
        _ => ExitCode::Protocol,
    }
}

pub fn unexpected(what: &str) -> Failure {
    Failure::new(ExitCode::Protocol, format!("unexpected reply: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_cannot_add_a_line_to_the_journal() {
        let e = RedisError::from((
            redis::ErrorKind::Extension,
            "WEIRD",
            "boom\n INFO recovered stream=x claimed=999\r".to_string(),
        ));
        let f = from_redis(&e);
        assert!(
            !f.message.contains('\n') && !f.message.contains('\r'),
            "{}",
            f.message
        );
        assert!(f.message.contains("boom\\n INFO"), "{}", f.message);
    }

    /// `--help`'s exit-code line says what this table says.
    #[test]
    fn the_long_help_names_every_exit_code() {
        use clap::CommandFactory;
        let help = crate::cli::Cli::command().render_long_help().to_string();
        for code in [
            ExitCode::Usage,
            ExitCode::ModuleMissing,
            ExitCode::CantCreate,
            ExitCode::Unavailable,
            ExitCode::Protocol,
            ExitCode::NoPermission,
            ExitCode::Config,
        ] {
            assert!(help.contains(&format!(" {} ", code.as_u8())), "{code:?}");
        }
    }

    #[test]
    fn server_errors_follow_the_exit_code_table() {
        for (code, line, exit) in [
            (
                "ERR",
                "ERR unknown command 'QUANTUM.RECOVER', with args beginning with:",
                ExitCode::ModuleMissing,
            ),
            (
                "ERR",
                "ERR COUNT must be an integer from 1 to 10000, got '0'",
                ExitCode::Usage,
            ),
            ("ERR", "ERR internal error", ExitCode::Protocol),
            (
                "ERR",
                "ERR dead-letter stream 'dl' has 0 IDs left after its last ID \
                 18446744073709551615-18446744073709551615, this call would copy 1: nothing changed",
                ExitCode::Protocol,
            ),
            (
                "LOADING",
                "LOADING Redis is loading the dataset in memory",
                ExitCode::Unavailable,
            ),
            (
                "READONLY",
                "READONLY You can't write against a read only replica.",
                ExitCode::Unavailable,
            ),
            (
                "NOPERM",
                "NOPERM XCLAIM refused by ACL",
                ExitCode::NoPermission,
            ),
            (
                "WRONGPASS",
                "WRONGPASS invalid username-password pair",
                ExitCode::NoPermission,
            ),
            (
                "WRONGTYPE",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                ExitCode::Protocol,
            ),
        ] {
            assert_eq!(server_error_code(code, line), exit, "{line}");
        }
    }
}
