//! One connection to Redis within the run's deadline: redis://, rediss:// (TLS,
//! system roots or SSL_CERT_FILE) or unix:// URLs; the password from a file or
//! REDISCLI_AUTH, never from the command line.

use crate::failure::{self, Failure, CONFIG};
use redis::{Connection, IntoConnectionInfo};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Connecting may take at most this long even with a longer deadline, so a
/// black-holed host fails fast and the unit's log says why.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the password comes from, first match wins.
fn password(password_file: Option<&Path>) -> Result<Option<String>, Failure> {
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join("redis-password"))
        .filter(|path| path.exists());
    if let Some(path) = password_file.map(Path::to_path_buf).or(credential) {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Failure::new(
                CONFIG,
                format!("cannot read password file {}: {e}", path.display()),
            )
        })?;
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
    }
    Ok(std::env::var("REDISCLI_AUTH")
        .ok()
        .filter(|p| !p.is_empty()))
}

pub fn connect(
    url: &str,
    password_file: Option<&Path>,
    deadline: Instant,
) -> Result<Connection, Failure> {
    let info = url
        .into_connection_info()
        .map_err(|e| Failure::new(CONFIG, format!("bad --url {url:?}: {e}")))?;
    if info.redis_settings().password().is_some() {
        return Err(Failure::new(
            CONFIG,
            "the URL holds a password: put it in --password-file (or REDISCLI_AUTH) instead, \
             command lines are visible to every local user",
        ));
    }
    // No CLIENT SETINFO round trip on connect: the run is short and starts often.
    let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(password) = password(password_file)? {
        settings = settings.set_password(password);
    }
    let info = info.set_redis_settings(settings);
    let client = redis::Client::open(info)
        .map_err(|e| Failure::new(CONFIG, format!("bad --url {url:?}: {e}")))?;
    let remaining = remaining(deadline)?;
    let con = client
        .get_connection_with_timeout(remaining.min(CONNECT_TIMEOUT))
        .map_err(|e| failure::from_redis(&e))?;
    Ok(con)
}

/// Time left before the deadline; none left is a timeout.
pub fn remaining(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::new(failure::UNAVAILABLE, "deadline reached"));
    }
    Ok(left)
}

/// Runs one command with the time left as its response timeout.
pub fn query(
    con: &mut Connection,
    cmd: &redis::Cmd,
    deadline: Instant,
) -> Result<redis::Value, Failure> {
    let left = remaining(deadline)?;
    con.set_read_timeout(Some(left))
        .map_err(|e| failure::from_redis(&e))?;
    con.set_write_timeout(Some(left))
        .map_err(|e| failure::from_redis(&e))?;
    cmd.query(con).map_err(|e| failure::from_redis(&e))
}
