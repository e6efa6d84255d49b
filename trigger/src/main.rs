//! `quantum-stream-recover`: the small synchronous program systemd runs every
//! two minutes and before the trading service starts. It issues QUANTUM.*
//! commands, logs a summary, writes metrics and maps the result to sysexits
//! (the table: `failure::ExitCode`).

mod check;
mod cli;
mod cluster;
mod commands;
mod config_file;
mod connect;
mod console;
mod discover;
mod doctor;
mod env_file;
mod failure;
mod files;
mod metrics;
mod redis_conf;
mod reply;
mod report;
mod sentinel;
mod startup;
mod state;
mod status_table;
mod target_metrics;
mod targets;
mod verbs;

use cli::Verb;
use failure::ExitCode;
use startup::Parsed;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() -> std::process::ExitCode {
    run().into()
}

/// Reads the env file and the options, then runs the verb.
fn run() -> ExitCode {
    // Lossy only to find --env-file, --json and the output paths: clap gets the
    // real arguments and refuses a value that is not UTF-8 (64) rather than
    // altering it.
    // The deadline counts from here: reading a large --config is part of the run.
    let started = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let setup = match startup::parse(&args) {
        Parsed::Run(setup) => *setup,
        Parsed::Printed => return ExitCode::Success,
        Parsed::Failed(_, message) if startup::names_verb(&args, Verb::Check) => {
            // A monitoring system reads anything but 0..3 as its own error.
            console::out(&format!("QUANTUM-STREAM-RECOVER UNKNOWN - {message}\n"));
            return ExitCode::CheckUnknown;
        }
        Parsed::Failed(code, message) => return report::early_failure(&args, code, &message),
    };
    let cli = &setup.cli;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        // A broken stderr must not make the subscriber print (and panic) about it.
        .log_internal_errors(false)
        .init();
    // One process-wide TLS provider for rediss:// (ignored if one is already set).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let clock = verbs::Clock {
        started,
        started_unix_s,
        deadline: started + cli.deadline,
        run_deadline: started + cli.deadline,
    };
    match cli.verb() {
        Verb::Doctor => doctor::run(cli, clock.deadline),
        verb => verbs::run(setup, verb, clock),
    }
}
