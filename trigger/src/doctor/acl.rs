//! Whether the URL's ACL user may run every command the trigger and RECOVER
//! need, asked with ACL DRYRUN on the admin connection.

use super::{fail, ok, url_user, Check, UrlUser};
use crate::cli::Cli;
use crate::connect::Link;
use crate::failure::Failure;
use redis::{FromRedisValue, Value};
use std::time::Instant;

/// The commands RECOVER and the trigger run with the user's ACL, as `ACL DRYRUN` argv.
fn needed_commands(cli: &Cli, mode_key: &str) -> Vec<Vec<String>> {
    let (s, g) = (cli.stream.as_str(), cli.group.as_str());
    let lines: [&[&str]; 11] = [
        &["QUANTUM.RECOVER", s, g, "MODEKEY", mode_key],
        &["QUANTUM.STATUS", s, g, "MODEKEY", mode_key],
        &["QUANTUM.RETIRE", s, g, "exec-1", "MODEKEY", mode_key],
        &["XPENDING", s, g, "-", "+", "1"],
        &["XCLAIM", s, g, "recovery", "1", "0-1", "JUSTID"],
        &["XRANGE", s, "-", "+", "COUNT", "1"],
        &["XINFO", "CONSUMERS", s, g],
        &["XINFO", "GROUPS", s],
        &["XGROUP", "CREATECONSUMER", s, g, "recovery"],
        &["XGROUP", "DELCONSUMER", s, g, "recovery"],
        &["INFO", "quantum"],
    ];
    let mut argvs: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.iter().map(|a| a.to_string()).collect())
        .collect();
    // Copies go to the dead-letter stream with the caller's ACL.
    if let Some(dead_letter) = &cli.dead_letter {
        argvs.push(
            ["XADD", dead_letter, "*", "f", "v"]
                .map(String::from)
                .to_vec(),
        );
    }
    // Behind Sentinel the trigger WAITs for the replicas before it reports.
    if crate::sentinel::parse_url(&cli.url).is_some() {
        argvs.push(["WAIT", "1", "0"].map(String::from).to_vec());
    }
    argvs
}

pub fn acl(
    cli: &Cli,
    admin: Option<&mut Link>,
    module_list: &Option<Option<String>>,
    deadline: Instant,
) -> Check {
    let UrlUser { name: user, named } = url_user(cli);
    let checked = if named {
        format!("user {user}")
    } else {
        format!("user {user} (the URL names no user)")
    };
    let Some(admin) = admin else {
        return fail(
            "acl",
            "cannot check: no admin connection (give --admin-url, or REDISCLI_AUTH for the default user)",
        );
    };
    let mode_key = cli
        .mode_key
        .clone()
        .unwrap_or_else(|| "quantum:mode".into());
    let module_missing = matches!(module_list, Some(None));
    let mut refused = Vec::new();
    let mut grants = Vec::new();
    for argv in needed_commands(cli, &mode_key) {
        // ACL DRYRUN knows no command of a module that is not loaded.
        if module_missing && argv[0].starts_with("QUANTUM.") {
            continue;
        }
        let answer = match dry_run(admin, &user, &argv, deadline) {
            Ok(None) => continue,
            Ok(Some(answer)) => answer,
            Err(f) if f.message.contains("User '") && f.message.contains("not found") => {
                return fail(
                    "acl",
                    format!(
                        "{checked} does not exist: create it (README, Installing, step 4), then \
                         CONFIG REWRITE (or ACL SAVE with an aclfile) so it survives a restart"
                    ),
                )
            }
            Err(f) => {
                return fail(
                    "acl",
                    format!(
                        "cannot run ACL DRYRUN for {checked}: {} (give --admin-url of an admin \
                         user)",
                        f.message
                    ),
                )
            }
        };
        refused.push(format!("{} {} ({answer})", argv[0], argv[1]));
        let grant = match argv[0].as_str() {
            "XGROUP" | "XINFO" => format!("+{}|{}", argv[0], argv[1]),
            name => format!("+{name}"),
        };
        grants.push(grant.to_lowercase());
    }
    let skipped = if module_missing {
        "; QUANTUM.* not checked: the module is not loaded"
    } else {
        ""
    };
    if refused.is_empty() {
        let safer = match named {
            true => "",
            false => "; a least-privilege user in the URL is safer (README, Installing, step 4)",
        };
        return ok(
            "acl",
            format!("{checked} may run every command RECOVER needs{skipped}{safer}"),
        );
    }
    grants.dedup();
    let fix = if named {
        format!(
            "grant them (ACL SETUSER {user} {}), then CONFIG REWRITE (or ACL SAVE with an \
             aclfile)",
            grants.join(" ")
        )
    } else {
        "put a least-privilege user in the URL (README, Installing, step 4) rather than \
         changing the default user"
            .to_string()
    };
    fail(
        "acl",
        format!(
            "{checked} may not run: {}; {fix}{skipped}",
            refused.join(", ")
        ),
    )
}

/// `ACL DRYRUN user argv…`: `None` when the user may run it, else why not.
fn dry_run(
    admin: &mut Link,
    user: &str,
    argv: &[String],
    deadline: Instant,
) -> Result<Option<String>, Failure> {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("DRYRUN").arg(user).arg(argv);
    Ok(match admin.query(&cmd, deadline)? {
        Value::Okay => None,
        reply => match String::from_redis_value(reply) {
            Ok(answer) if answer == "OK" => None,
            Ok(answer) => Some(answer),
            Err(_) => Some("unexpected ACL DRYRUN reply".into()),
        },
    })
}
