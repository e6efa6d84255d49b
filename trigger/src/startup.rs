//! Before a verb runs: the `--env-file`, the command line, and which verb
//! takes which option. What goes wrong here is reported by
//! `report::early_failure`, which finds the output paths in the raw arguments.

use crate::cli::{self, Cli, Verb};
use crate::config_file::{ConfigFile, MAX_CONFIG_FILE};
use crate::failure::ExitCode;
use crate::files::Symlink;
use crate::targets::{self, Explicit, Selection};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use std::path::Path;

/// What reading the environment file and the command line came to.
pub enum Parsed {
    /// Options to run a verb with.
    Run(Box<Setup>),
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
    forget_other_verbs_settings();
    forget_empty_key_names();
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
    if let Err(message) = check_verb_options(cli.verb(), &matches) {
        return failed(ExitCode::Usage, message);
    }
    match with_config(cli, &matches) {
        Ok(setup) => Parsed::Run(Box::new(setup)),
        Err(message) => failed(ExitCode::Usage, message),
    }
}

/// The options and the targets' source once `--config` is read.
pub struct Setup {
    /// The run-wide options; for one target, its options too.
    pub cli: Cli,
    pub selection: Selection,
    /// Options a config file must not override.
    pub explicit: Explicit,
}

/// Reads `--config` (if any) into the options it leaves open and decides
/// where the targets come from; a bad file is a usage error (64) naming the
/// file, the line and the key, found before anything is sent to Redis.
fn with_config(mut cli: Cli, matches: &ArgMatches) -> Result<Setup, String> {
    let explicit = Explicit::of(matches);
    let Some(path) = cli.config.clone() else {
        return Ok(Setup {
            cli,
            selection: Selection::One,
            explicit,
        });
    };
    let bytes = crate::files::read_regular(&path, MAX_CONFIG_FILE, Symlink::Follow)
        .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    let file = ConfigFile::from_bytes(&path, bytes).map_err(|e| e.to_string())?;
    targets::apply_top_level(&mut cli, &file, &explicit);
    if cli.verb() == Retire && cli.dry_run {
        return Err(format!(
            "{}: dry-run is on and retire has no dry run: nothing was retired",
            path.display()
        ));
    }
    let on_command_line = ["stream", "group"]
        .iter()
        .any(|id| source(matches, id) == Some(ValueSource::CommandLine));
    if on_command_line {
        apply_selected_target(&mut cli, &file, &explicit)?;
    }
    let selection = match (file.has_targets() && !on_command_line, cli.verb()) {
        (false, _) => Selection::One,
        (true, Retire) if one_retire_target(&mut cli, &file, &explicit) => Selection::One,
        (true, _) => Selection::File(Box::new(file), path),
    };
    Ok(Setup {
        cli,
        selection,
        explicit,
    })
}

use Verb::{Check, Doctor, Retire, Run, Status};

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
    ("zombie_idle", &[Run, Status, Check]),
    ("delete_limit", &[Run]),
    ("max_deliveries", &[Run]),
    // doctor checks that the URL's user may XADD to it.
    ("dead_letter", &[Run, Doctor]),
    ("quarantine", &[Run]),
    ("max_batches", &[Run]),
    ("state_dir", &[Run]),
    ("dry_run", &[Run]),
    ("consumer", &[Retire]),
    ("retire_count", &[Retire]),
    ("limit", &[Status]),
    ("parked_warning", &[Check]),
    ("parked_critical", &[Check]),
    ("json", &[Run, Status, Retire]),
    // check writes nothing but its one line (monitoring systems keep their own log).
    ("log_file", &[Run, Status, Retire, Doctor]),
    // doctor checks that the service can write them.
    ("metrics_file", &[Run, Doctor]),
    ("admin_url", &[Doctor]),
    ("admin_password_file", &[Doctor]),
    ("trading_user", &[Doctor]),
    ("redis_unit", &[Doctor]),
    ("redis_conf", &[Doctor]),
];

/// The verb the command line asks for, read leniently (a bad option is
/// reported by the real parse that follows); `run` when none is named.
fn verb_asked_for() -> Verb {
    let matches = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(std::env::args_os());
    let name = matches
        .ok()
        .and_then(|m| m.subcommand_name().map(str::to_owned));
    [Run, Status, Retire, Check, Doctor]
        .into_iter()
        .find(|verb| Some(verb.name()) == name.as_deref())
        .unwrap_or(Run)
}

/// Removes from the environment the settings of options the asked-for verb
/// does not take, so that one env file can serve every verb: a value only
/// `retire` reads (QUANTUM_RETIRE_COUNT) must not fail the timer's `run`, even
/// when it is out of range. Not `--dry-run`: `retire` refuses it from the
/// environment too, since it would act for real. Runs before any thread starts.
fn forget_other_verbs_settings() {
    let verb = verb_asked_for();
    let command = Cli::command();
    for (id, verbs) in VERB_OPTIONS {
        if verbs.contains(&verb) || *id == "dry_run" {
            continue;
        }
        let arg = command.get_arguments().find(|a| a.get_id() == *id);
        if let Some(name) = arg.and_then(|a| a.get_env()) {
            std::env::remove_var(name);
        }
    }
}

/// The options naming a key or consumer the module takes in their place.
const KEY_NAME_VARIABLES: [&str; 4] = [
    "QUANTUM_TO",
    "QUANTUM_QUARANTINE",
    "QUANTUM_DEAD_LETTER",
    "QUANTUM_MODE_KEY",
];

/// An empty `QUANTUM_TO=`, `QUANTUM_QUARANTINE=`, `QUANTUM_DEAD_LETTER=` or
/// `QUANTUM_MODE_KEY=` (an env file's usual way to leave a setting to its
/// default) is as if unset: the module's config applies. Sent as is, the
/// module refuses an empty name and every run would exit 64 (review r15 F2).
fn forget_empty_key_names() {
    for name in KEY_NAME_VARIABLES {
        if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(name);
        }
    }
}

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
        (Status | Check, Some(ValueSource::CommandLine)) => {
            return Err(format!(
                "--dry-run applies to run only: {} changes nothing anyway",
                verb.name()
            ))
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
    let others = [Verb::Status, Verb::Retire, Verb::Doctor, Verb::Check].map(Verb::name);
    args.iter().skip(1).any(|a| others.contains(&a.as_str()))
}

/// `retire` with a config file naming one stream and group works on that
/// target alone, as without a file (one JSON object); a file naming more (or
/// a group-less target, or a discover pattern) hands the consumer over in
/// every target, like `run` (the ExecStop drop-in with `QUANTUM_CONFIG`): a
/// group where the consumer does not exist is `absent`, not an error.
fn one_retire_target(cli: &mut Cli, file: &ConfigFile, explicit: &Explicit) -> bool {
    let top = file.stream.as_ref().map(|stream| {
        let group = file.group.as_ref().map(|g| g.get_ref().clone());
        (stream.get_ref().clone(), group, Default::default())
    });
    let tables = file.targets.iter().map(|t| {
        (
            t.stream.get_ref().clone(),
            t.group.clone(),
            t.call_options(),
        )
    });
    let named: Vec<_> = top.into_iter().chain(tables).collect();
    match (named.as_slice(), file.discovers.is_empty()) {
        ([(stream, Some(group), options)], true) => {
            let target = crate::config_file::Target {
                stream: stream.clone(),
                group: group.clone(),
                options: options.over(&file.call_options()),
                pinned: crate::config_file::Pinned::of(options),
            };
            *cli = targets::for_target(cli, &target, explicit);
            true
        }
        _ => false,
    }
}

/// `--stream`/`--group` on the command line pick one target. Where the file
/// names it (a `[[target]]`, a group-less one of its stream, a `[[discover]]`
/// pattern it matches), that entry's options apply to it as they would in a
/// run of the whole file: its mode key above all, so a stream the file guards
/// with its own (LIVE) mode key is never recovered under the default one.
fn apply_selected_target(
    cli: &mut Cli,
    file: &ConfigFile,
    explicit: &Explicit,
) -> Result<(), String> {
    use crate::config_file::{expand, Found};
    use crate::discover::StreamGroups;
    let selected = || StreamGroups {
        stream: cli.stream.clone(),
        groups: vec![cli.group.clone()],
    };
    let mut found = Found::default();
    found
        .groups
        .insert(cli.stream.clone(), vec![cli.group.clone()]);
    found.discovered = file
        .discovers
        .iter()
        .map(
            |table| match crate::discover::pattern_matches(table.pattern.get_ref(), &cli.stream) {
                true => vec![selected()],
                false => Vec::new(),
            },
        )
        .collect();
    let expansion = expand(file, &found)?;
    let named = expansion
        .targets
        .iter()
        .find(|t| t.stream == cli.stream && t.group == cli.group);
    if let Some(target) = named {
        *cli = targets::for_target(cli, target, explicit);
    }
    Ok(())
}

/// Whether the arguments name `verb` (best effort, before clap).
pub fn names_verb(args: &[String], verb: Verb) -> bool {
    args.iter().skip(1).any(|a| a == verb.name())
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
