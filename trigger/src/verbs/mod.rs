//! The verbs that talk to the module: `run`, `status` and `retire` (`doctor`
//! is doctor/). Each connects, makes its calls (commands.rs) and says what
//! happened as a `Done`; report.rs turns that into the log line, the metrics
//! and the JSON.

mod retire;
mod run;
mod status;

use crate::cli::{Cli, Verb};
use crate::commands::Progress;
use crate::connect;
use crate::failure::{ExitCode, Failure};
use crate::metrics::{Counts, Gauges};
use crate::report::{self, Details, RunResult};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tracing::{error, warn};

/// When the run started and when it must end.
#[derive(Clone, Copy)]
pub struct Clock {
    pub started: Instant,
    /// `started` as a unix time, for the metrics.
    pub started_unix_s: f64,
    pub deadline: Instant,
}

/// What a verb hands back for the log file, the metrics and the JSON.
pub struct Done {
    pub result: RunResult,
    pub exit: ExitCode,
    /// `key=value` fields for the log-file line.
    pub fields: String,
    /// Why it failed (the JSON's `error`) ...
    pub error: Option<String>,
    /// ... or why it did nothing (`message`).
    pub message: Option<String>,
    /// The verb's own part of the JSON.
    pub details: Option<Details>,
    /// The group's pending entries and consumers afterwards (run only).
    pub gauges: Option<Gauges>,
    /// What this run moved when it reached the module: the metrics' `_total`
    /// counters add it up.
    pub counted: Option<Counts>,
    /// Whether the mode key held a mode, when the run could tell (run only).
    pub mode_known: Option<bool>,
    /// The primary a Sentinel failover switched the run to, if one did.
    pub switched_primary: Option<String>,
}

impl Done {
    /// A verb that did what it was asked; `details` is its JSON.
    fn success(result: RunResult, fields: String, details: Details) -> Done {
        Done {
            result,
            exit: ExitCode::Success,
            fields,
            error: None,
            message: None,
            details: Some(details),
            gauges: None,
            counted: None,
            mode_known: None,
            switched_primary: None,
        }
    }

    /// The log line and the JSON name the primary a Sentinel failover switched the run to.
    fn switched(mut self, primary: Option<String>) -> Done {
        if let Some(primary) = &primary {
            self.fields
                .push_str(&format!(" switched_primary={primary}"));
        }
        self.switched_primary = primary;
        self
    }

    /// A failure before anything happened.
    fn failed(f: &Failure) -> Done {
        Done {
            result: RunResult::Error,
            exit: f.code,
            fields: format!("error={}", report::quoted(&f.message)),
            error: Some(f.message.clone()),
            message: None,
            details: None,
            gauges: None,
            counted: None,
            mode_known: None,
            switched_primary: None,
        }
    }

    /// A refusal or a missing stream or group: not a failure (exit 0), said
    /// at WARN; nothing moved.
    fn skipped(result: RunResult, message: String) -> Done {
        warn!("{message}");
        Done {
            result,
            exit: ExitCode::Success,
            fields: format!("{}={}", result.as_str(), report::quoted(&message)),
            error: None,
            message: Some(message),
            details: None,
            gauges: None,
            counted: Some(Counts::default()),
            mode_known: None,
            switched_primary: None,
        }
    }
}

/// How long past the deadline the main thread waits for the worker's own
/// answer (the worker's calls end at the deadline themselves when the network
/// lets them) before it reports without it.
const DEADLINE_GRACE: Duration = Duration::from_millis(300);

/// Runs `verb` (not doctor) and reports it; returns the exit code.
///
/// The work runs on a worker thread and this one waits for it at most until
/// the deadline: a node that answers one byte at a time, a hung TLS handshake
/// or a slow DNS lookup cannot hold the run (and the trading service's
/// ExecStartPre) longer. Returning from main ends the worker.
pub fn run(cli: Cli, verb: Verb, clock: Clock) -> ExitCode {
    let target = target_fields(&cli);
    let cli = Arc::new(cli);
    let progress = Progress::default();
    let (tx, rx) = mpsc::channel();
    {
        let (cli, progress, target) = (Arc::clone(&cli), progress.clone(), target.clone());
        std::thread::spawn(move || {
            let _ = tx.send(work(&cli, verb, clock, &progress, &target));
        });
    }
    let waited = clock.deadline.saturating_duration_since(Instant::now()) + DEADLINE_GRACE;
    let done = match rx.recv_timeout(waited) {
        Ok(done) => done,
        Err(_) => run::overrun(&cli, &progress, &target),
    };
    report::finish(&cli, verb, &target, clock, done)
}

/// The stream and group the verb works on, as log fields.
fn target_fields(cli: &Cli) -> String {
    format!(
        "stream={} group={}",
        report::field_value(&cli.stream),
        report::field_value(&cli.group)
    )
}

/// Connects and runs the verb (on the worker thread).
fn work(cli: &Cli, verb: Verb, clock: Clock, progress: &Progress, target: &str) -> Done {
    let deadline = clock.deadline;
    let done = connect::connect(
        &cli.url,
        cli.cluster,
        cli.password_file.as_deref(),
        cli.sentinel_password_file.as_deref(),
        deadline,
    )
    .and_then(|mut con| {
        let done = match verb {
            Verb::Run => run::run(cli, &mut con, clock, progress),
            Verb::Status => status::status(cli, &mut con, deadline),
            Verb::Retire => retire::retire(cli, &mut con, deadline),
            Verb::Doctor => unreachable!("doctor returns before connecting"),
        };
        done.map(|done| done.switched(con.switched_primary()))
    });
    done.unwrap_or_else(|f| {
        error!("{target}: {}", f.message);
        Done::failed(&f)
    })
}
