//! `quantum-stream-recover doctor`: checks an installation end to end and
//! prints one line per check, `ok` or `FAIL` plus what to do. Exit 0 only when
//! every check passes. It changes nothing: reads, `ACL DRYRUN` and `systemctl
//! show`. Checks that need Redis say so when it cannot be reached; the local
//! ones (unit, timer, files, group) run anyway.
//!
//! server.rs: the module, the mode key and the stream; acl.rs: the user's
//! commands; module_path.rs: what the next Redis restart loads; host.rs: the
//! timer, the files and the trading user.

mod acl;
mod host;
mod module_path;
mod sentinel;
mod server;

use crate::cli::Cli;
use crate::connect::{self, Link};
use crate::failure::{ExitCode, Failure};
use redis::IntoConnectionInfo;
use std::process::Command;
use std::time::Instant;

/// Where the package installs the module: the only place Debian's
/// redis-server.service lets Redis map it.
pub const MODULE_PATH: &str = "/usr/lib/redis/modules/libquantum.so";

const TIMER: &str = "quantum-stream-recover.timer";

const SERVICE: &str = "quantum-stream-recover.service";

/// The paths the packaged service passes on its command line.
const LOG_FILE: &str = "/var/log/quantum/stream_recover.log";

const METRICS_FILE: &str = "/var/lib/prometheus/node-exporter/quantum_stream_recover.prom";

const USER: &str = "quantum";

/// One line of the report.
struct Check {
    ok: bool,
    what: &'static str,
    detail: String,
}

fn ok(what: &'static str, detail: impl Into<String>) -> Check {
    Check {
        ok: true,
        what,
        detail: detail.into(),
    }
}

fn fail(what: &'static str, detail: impl Into<String>) -> Check {
    Check {
        ok: false,
        what,
        detail: detail.into(),
    }
}

/// Runs every check, prints the report on stdout and returns the exit code.
pub fn run(cli: &Cli, deadline: Instant) -> ExitCode {
    let mut checks = Vec::new();
    let mut con = connect::connect(
        &cli.url,
        cli.cluster,
        cli.password_file.as_deref(),
        cli.sentinel_password_file.as_deref(),
        deadline,
    )
    .and_then(|mut con| {
        con.query(&redis::cmd("PING"), deadline)?;
        Ok(con)
    });
    let admin_url = cli
        .doctor
        .admin_url
        .clone()
        .unwrap_or_else(|| without_user(&cli.url));
    let mut admin = connect::connect(
        &admin_url,
        cli.cluster,
        cli.doctor.admin_password_file.as_deref(),
        cli.sentinel_password_file.as_deref(),
        deadline,
    )
    .ok();

    let module_list = match (&con, admin.as_mut()) {
        (Ok(_), Some(admin)) => server::loaded_module_path(admin, deadline),
        _ => None,
    };
    let conf = &cli.doctor.redis_conf;
    let loadmodule = module_path::quantum_loadmodule_lines(
        conf,
        module_list.as_ref().and_then(Option::as_deref),
    );
    match &mut con {
        Ok(con) => {
            checks.push(ok(
                "redis",
                format!("{} answers PING", connect::redact_url(&cli.url)),
            ));
            checks.push(server::module_build(
                cli,
                con,
                &module_list,
                &loadmodule,
                deadline,
            ));
            checks.push(server::mode_key(cli, con, admin.as_mut(), deadline));
            checks.push(acl::acl(cli, admin.as_mut(), &module_list, deadline));
            checks.push(server::stream_and_group(cli, con, deadline));
            if let Link::Sentinel(named) = con {
                let (passed, detail) = sentinel::check(named, deadline);
                checks.push(Check {
                    ok: passed,
                    what: "sentinel",
                    detail,
                });
            }
        }
        Err(f) => checks.push(fail("redis", unreachable(&cli.url, f))),
    }
    checks.push(module_path::module_path_check(
        &cli.doctor.redis_unit,
        conf,
        &loadmodule,
        module_list.flatten(),
    ));
    checks.push(host::timer());
    let log = cli.log_file.clone().unwrap_or_else(|| LOG_FILE.into());
    let metrics = cli
        .metrics_file
        .clone()
        .unwrap_or_else(|| METRICS_FILE.into());
    checks.push(host::log_writable(&log));
    checks.push(host::metrics_writable(&metrics));
    checks.push(host::trading_user(cli.doctor.trading_user.as_deref()));

    for check in &checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        crate::console::out(&format!("{mark} {}: {}\n", check.what, check.detail));
    }
    match checks.iter().all(|c| c.ok) {
        true => ExitCode::Success,
        false => ExitCode::ChecksFailed,
    }
}

fn unreachable(url: &str, f: &Failure) -> String {
    let mut text = format!("cannot use {}: {}", connect::redact_url(url), f.message);
    if f.code == ExitCode::NoPermission {
        text.push_str(
            "; the ACL user may not exist: users made with ACL SETUSER live in memory until \
             CONFIG REWRITE (or ACL SAVE with an aclfile) and are gone after a restart",
        );
    } else {
        text.push_str("; is redis-server running (systemctl status redis-server) and --url right?");
    }
    text
}

/// `redis://user@host:port` → `redis://host:port`: the admin connection uses
/// Redis's default user (its password from REDISCLI_AUTH) unless told otherwise.
fn without_user(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The ACL user the URL logs in as.
struct UrlUser {
    name: String,
    /// Whether the URL names it (else it is `default`).
    named: bool,
}

fn url_user(cli: &Cli) -> UrlUser {
    match cli
        .url
        .as_str()
        .into_connection_info()
        .ok()
        .and_then(|i| i.redis_settings().username().map(str::to_string))
        .or_else(|| crate::sentinel::parse_url(&cli.url)?.ok()?.user)
    {
        Some(name) => UrlUser { name, named: true },
        None => UrlUser {
            name: "default".into(),
            named: false,
        },
    }
}

fn systemctl(args: &[&str]) -> Option<String> {
    let out = Command::new("systemctl").args(args).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn property<'a>(show: &'a str, name: &str) -> &'a str {
    show.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_connection_drops_the_user_name() {
        assert_eq!(
            without_user("redis://quantum-recover@127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            without_user("unix:///run/redis.sock"),
            "unix:///run/redis.sock"
        );
    }
}
