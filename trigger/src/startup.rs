//! Before a verb runs: the `--env-file`, the command line, and which verb
//! takes which option. What goes wrong here is reported by
//! `report::early_failure`, which finds the output paths in the raw arguments.

use crate::cli::{self, Cli, Verb};
use crate::failure::ExitCode;
use crate::files::Symlink;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use std::path::Path;

/// What reading the environment file and the command line came to.
pub enum Parsed {
    /// Options to run a verb with.
    Run(Box<Cli>),
    /// `--help` or `--version`, printed.
    Printed,
    /// Said on stderr already; the run ends with this code.
    Failed(ExitCode, String),
}

/// Reads `--env-file` (its settings become environment variables), then the
/// command line; a problem is said on stderr and comes back as `Failed`.
pub fn parse(args: &[String]) -> Parsed {
    let failed = |code, message: String| {
        crate::console::err_line(&format!("quantum-stream-recover: {message}"));
        Parsed::Failed(code, message)
    };
    if let Err(message) = load_env_file(args) {
        return failed(ExitCode::Config, message);
    }
    let parsed = Cli::command()
        .try_get_matches_from(std::env::args_os())
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if e.use_stderr() => {
            let text = crate::connect::redact_urls_in(&e.to_string());
            crate::console::err_line(text.trim_end());
            let first = text.lines().next().unwrap_or_default();
            let message = first.trim_start_matches("error: ").to_string();
            return Parsed::Failed(ExitCode::Usage, message);
        }
        Err(e) => {
            let _ = e.print();
            return Parsed::Printed;
        }
    };
    match check_verb_options(cli.verb(), &matches) {
        Ok(()) => Parsed::Run(Box::new(cli)),
        Err(message) => failed(ExitCode::Usage, message),
    }
}

use Verb::{Doctor, Retire, Run, Status};

/// The options only some verbs take (by clap id), and which verbs; every
/// other option is common to all. On the command line of a verb that does
/// not take it an option is a usage error (64) rather than silently ignored;
/// from the environment it is left alone, since one env file serves every
/// verb (the timer's `run`, the ExecStop's `retire`, `doctor`).
pub const VERB_OPTIONS: &[(&str, &[Verb])] = &[
    ("to", &[Run, Retire]),
    ("min_idle", &[Run]),
    ("count", &[Run]),
    ("scan", &[Run]),
    ("zombie_idle", &[Run, Status]),
    ("delete_limit", &[Run]),
    ("max_deliveries", &[Run]),
    ("dead_letter", &[Run]),
    ("quarantine", &[Run]),
    ("max_batches", &[Run]),
    ("state_dir", &[Run]),
    ("dry_run", &[Run]),
    ("consumer", &[Retire]),
    ("retire_count", &[Retire]),
    ("limit", &[Status]),
    ("json", &[Run, Status, Retire]),
    // doctor checks that the service can write them.
    ("metrics_file", &[Run, Doctor]),
    ("admin_url", &[Doctor]),
    ("admin_password_file", &[Doctor]),
    ("trading_user", &[Doctor]),
    ("redis_unit", &[Doctor]),
    ("redis_conf", &[Doctor]),
];

/// Where option `id` got its value, whether given before or after the verb.
fn source(matches: &ArgMatches, id: &str) -> Option<ValueSource> {
    matches
        .subcommand()
        .and_then(|(_, sub)| sub.value_source(id))
        .or_else(|| matches.value_source(id))
}

/// Refuses (64) an option given on the command line to a verb that does not
/// take it. `--dry-run` has its own words: RETIRE has no dry run, so `retire`
/// with it would act for real; it refuses instead, from the command line or
/// from QUANTUM_DRY_RUN alike (an operator who set the switch expects this
/// tool to change nothing).
pub fn check_verb_options(verb: Verb, matches: &ArgMatches) -> Result<(), String> {
    let dry_run = source(matches, "dry_run");
    let dry_run_on = matches.get_flag("dry_run");
    match (verb, dry_run) {
        (Retire, Some(ValueSource::CommandLine)) => {
            return Err(
                "--dry-run applies to run only: retire has no dry run, so nothing was retired"
                    .into(),
            )
        }
        (Retire, Some(ValueSource::EnvVariable)) if dry_run_on => {
            return Err(
                "QUANTUM_DRY_RUN is on (environment or --env-file) and retire has no dry run: \
                 nothing was retired, the consumer keeps its entries; set QUANTUM_DRY_RUN=0 for \
                 retire to hand them over"
                    .into(),
            )
        }
        (Status, Some(ValueSource::CommandLine)) => {
            return Err("--dry-run applies to run only: status changes nothing anyway".into())
        }
        _ => {}
    }
    let sentinel_url = matches
        .subcommand()
        .and_then(|(_, sub)| sub.get_one::<String>("url"))
        .or_else(|| matches.get_one::<String>("url"))
        .is_some_and(|url| crate::sentinel::parse_url(url).is_some());
    if source(matches, "sentinel_password_file") == Some(ValueSource::CommandLine) && !sentinel_url
    {
        return Err(
            "--sentinel-password-file applies to redis+sentinel:// URLs only, and --url \
             (QUANTUM_REDIS_URL) is not one"
                .into(),
        );
    }
    for (id, verbs) in VERB_OPTIONS {
        if !verbs.contains(&verb) && source(matches, id) == Some(ValueSource::CommandLine) {
            let names: Vec<&str> = verbs.iter().map(|v| v.name()).collect();
            return Err(format!(
                "--{} applies to {} only, not to {}",
                id.replace('_', "-"),
                names.join(" and "),
                verb.name()
            ));
        }
    }
    Ok(())
}

/// The value of option `name` (`--name value` or `--name=value`), looked up
/// before clap runs (the env file's path, or where to report a usage error).
pub fn arg_value(args: &[String], name: &str) -> Option<String> {
    let with_equals = format!("{name}=");
    args.iter().enumerate().skip(1).find_map(|(i, a)| {
        a.strip_prefix(&with_equals)
            .map(str::to_string)
            .or_else(|| (a == name).then(|| args.get(i + 1).cloned()).flatten())
    })
}

/// An option's value from the arguments, else its environment variable: for
/// errors found before clap's parse succeeds.
pub fn early_value(args: &[String], name: &str, env: &str) -> Option<String> {
    arg_value(args, name)
        .or_else(|| std::env::var(env).ok())
        .filter(|v| !v.is_empty())
}

/// Whether the arguments name a verb other than `run` (best effort, before
/// clap): only `run` writes the metrics, its early failures included.
pub fn names_other_verb(args: &[String]) -> bool {
    let others = [Verb::Status, Verb::Retire, Verb::Doctor].map(Verb::name);
    args.iter().skip(1).any(|a| others.contains(&a.as_str()))
}

/// The longest env file read: a few hundred bytes in practice.
const MAX_ENV_FILE: u64 = 1 << 20;

/// Reads `--env-file` before clap runs, with systemd's `EnvironmentFile=`
/// rules (env_file.rs); its settings become environment variables unless the
/// real environment already has them.
pub fn load_env_file(args: &[String]) -> Result<(), String> {
    let Some(path) = arg_value(args, "--env-file") else {
        return Ok(());
    };
    let bytes = crate::files::read_regular(Path::new(&path), MAX_ENV_FILE, Symlink::Follow)
        .map_err(|e| format!("cannot read --env-file {path}: {e}"))?;
    let file = crate::env_file::parse(&bytes).map_err(|e| format!("--env-file {path}: {e}"))?;
    for ignored in file.ignored {
        crate::console::err_line(&format!(
            "quantum-stream-recover: --env-file {path}: {ignored} is not a valid variable name, \
             ignored (as systemd ignores it)"
        ));
    }
    for (key, value) in file.vars {
        if std::env::var_os(&key).is_none() {
            std::env::set_var(key, value);
        }
    }
    Ok(())
}

/// Whether `--json` was asked for, for errors found before clap's parse succeeds.
pub fn json_requested(args: &[String]) -> bool {
    args.iter().skip(1).any(|a| a == "--json")
        || std::env::var("QUANTUM_JSON").is_ok_and(|v| cli::parse_switch(&v) == Ok(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(argv: &[&str]) -> Result<(), String> {
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        check_verb_options(cli.verb(), &matches)
    }

    #[test]
    fn only_runs_write_metrics_when_the_arguments_do_not_parse() {
        let args = |argv: &[&str]| argv.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        for verb in ["status", "retire", "doctor"] {
            assert!(names_other_verb(&args(&["q", verb, "--bogus"])), "{verb}");
        }
        assert!(!names_other_verb(&args(&["q", "run", "--bogus"])));
        assert!(!names_other_verb(&args(&["q", "--bogus"])));
    }

    #[test]
    fn every_verb_option_is_an_option() {
        let command = Cli::command();
        for (id, _) in VERB_OPTIONS {
            assert!(command.get_arguments().any(|a| a.get_id() == *id), "{id}");
        }
    }

    #[test]
    fn an_option_of_another_verb_on_the_command_line_is_a_usage_error() {
        assert_eq!(
            check(&["q", "status", "--to", "x"]),
            Err("--to applies to run and retire only, not to status".into())
        );
        assert!(check(&["q", "--quarantine", "q", "status"]).is_err());
        assert!(check(&["q", "--consumer", "exec-1"]).is_err());
        assert!(check(&["q", "run", "--limit", "5"]).is_err());
        assert!(check(&["q", "run", "--admin-url", "redis://x"]).is_err());
        assert!(check(&["q", "doctor", "--json"]).is_err());
        assert!(check(&[
            "q",
            "retire",
            "--consumer",
            "c",
            "--to",
            "t",
            "--retire-count",
            "5"
        ])
        .is_ok());
        assert!(check(&["q", "status", "--limit", "5", "--zombie-idle", "1s"]).is_ok());
        assert!(check(&[
            "q",
            "doctor",
            "--admin-url",
            "redis://x",
            "--metrics-file",
            "m"
        ])
        .is_ok());
        assert!(check(&["q", "--to", "t", "--count", "5", "--dry-run"]).is_ok());
    }
}
