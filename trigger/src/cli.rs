//! Command line: every option also reads an environment variable, so systemd
//! units can pass settings through an EnvironmentFile or `--env-file`. Which
//! verb takes which option: `startup::VERB_OPTIONS`. Only clap's definitions
//! here: examples/gen-docs.rs compiles this file for the man page.

use clap::{Parser, Subcommand};
use quantum_protocol::range;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_STREAM: &str = "quantum:stream:trade.intent";
pub const DEFAULT_GROUP: &str = "quantum:group:execution:trade.intent";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "quantum-stream-recover",
    version = env!("QUANTUM_BUILD"),
    about = "Recovers a Redis Streams consumer group's stuck entries through the quantum module",
    long_about = "Recovers a Redis Streams consumer group's stuck entries through the quantum \
module (QUANTUM.RECOVER), in bounded atomic batches. Meant for a systemd timer and an \
ExecStartPre. Every option also reads the environment variable shown. An option the verb \
does not take is a usage error on the command line and ignored in the environment (one env \
file serves every verb).\n\n\
Exit codes: 0 success, nothing to do, or refused by the mode guard; 64 usage; 69 module not \
loaded; 73 the log or metrics file could not be written; 75 Redis unreachable, timeout, \
LOADING or READONLY; 76 unexpected reply; 77 NOAUTH/NOPERM; 78 bad URL, password or env file. \
With many targets (--config) the worst target's code, the numerically largest. check: 0 OK, \
1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n\n\
Precedence: the command line, then the environment (--env-file included), then the --config \
file (a target's value over its top level), then the default.",
    after_help = "Durations take 250ms, 60s, 5m, 1h or a bare number of milliseconds.\n\
The password comes from --password-file, $CREDENTIALS_DIRECTORY/redis-password or \
REDISCLI_AUTH, never from the command line."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Verb>,

    /// Redis URL: redis://host:port, rediss://host:port (TLS), unix:///path/to/redis.sock,
    /// redis+sentinel://host:port[,host:port…]/<master-name>
    #[arg(
        long,
        global = true,
        env = "QUANTUM_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub url: String,

    /// Treat --url as a seed node of a Redis Cluster (also: redis+cluster://host:port)
    #[arg(long, global = true, env = "QUANTUM_CLUSTER", action = clap::ArgAction::SetTrue, value_parser = parse_switch)]
    pub cluster: bool,

    /// Stream key
    #[arg(
        long,
        global = true,
        env = "QUANTUM_STREAM",
        default_value = DEFAULT_STREAM
    )]
    pub stream: String,

    /// Consumer group
    #[arg(
        long,
        global = true,
        env = "QUANTUM_GROUP",
        default_value = DEFAULT_GROUP
    )]
    pub group: String,

    /// Consumer that receives recovered entries (run, retire) [default: module's quantum.target]
    #[arg(long, global = true, env = "QUANTUM_TO")]
    pub to: Option<String>,

    /// Only entries idle at least this long move (run) [default: quantum.min-idle]
    #[arg(long, global = true, env = "QUANTUM_MIN_IDLE", value_parser = parse_duration_ms)]
    pub min_idle: Option<u64>,

    /// Most entries moved per batch, 1..10000 (run) [default: quantum.count]
    #[arg(long, global = true, env = "QUANTUM_COUNT", value_parser = clap::value_parser!(u64).range(range::COUNT.as_u64()))]
    pub count: Option<u64>,

    /// Most PEL entries examined per batch, 1..100000 and >= count (run) [default: quantum.scan]
    #[arg(long, global = true, env = "QUANTUM_SCAN", value_parser = clap::value_parser!(u64).range(range::SCAN.as_u64()))]
    pub scan: Option<u64>,

    /// Consumers idle longer than this with nothing pending are deleted (run, status) [default: quantum.zombie-idle]
    #[arg(long, global = true, env = "QUANTUM_ZOMBIE_IDLE", value_parser = parse_duration_ms)]
    pub zombie_idle: Option<u64>,

    /// Most consumers deleted per batch, 0 (off)..100000 (run) [default: quantum.delete-limit]
    #[arg(long, global = true, env = "QUANTUM_DELETE_LIMIT", value_parser = clap::value_parser!(u64).range(range::DELETE_LIMIT.as_u64()))]
    pub delete_limit: Option<u64>,

    /// Entries delivered at least this often go to quarantine; 0 is off (run) [default: quantum.max-deliveries]
    #[arg(long, global = true, env = "QUANTUM_MAX_DELIVERIES", value_parser = clap::value_parser!(u64).range(range::MAX_DELIVERIES.as_u64()))]
    pub max_deliveries: Option<u64>,

    /// Consumer that parks poison entries (run) [default: quantum.quarantine]
    #[arg(long, global = true, env = "QUANTUM_QUARANTINE")]
    pub quarantine: Option<String>,

    /// Stream that gets a copy of every entry moved to quarantine (run) [default: quantum.dead-letter]
    #[arg(long, global = true, env = "QUANTUM_DEAD_LETTER")]
    pub dead_letter: Option<String>,

    /// Key holding the mode (TESTNET, LIVE, ...) [default: quantum.mode-key]
    #[arg(long, global = true, env = "QUANTUM_MODE_KEY")]
    pub mode_key: Option<String>,

    /// Consumer to retire (retire only)
    #[arg(long, global = true, env = "QUANTUM_CONSUMER")]
    pub consumer: Option<String>,

    /// Most entries retire moves per call, 1..100000 (retire) [default: quantum.retire-count]
    #[arg(long, global = true, env = "QUANTUM_RETIRE_COUNT", value_parser = clap::value_parser!(u64).range(range::RETIRE_COUNT.as_u64()))]
    pub retire_count: Option<u64>,

    /// Most consumers status lists, the longest idle first, 1..10000 (status) [default: 100]
    #[arg(long, global = true, env = "QUANTUM_LIMIT", value_parser = clap::value_parser!(u64).range(range::STATUS_LIMIT.as_u64()))]
    pub limit: Option<u64>,

    /// Most batches per run; with --state-dir the next run continues where this one stopped (run)
    #[arg(long, global = true, env = "QUANTUM_MAX_BATCHES", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batches: u64,

    /// Folder where run keeps its cursor between runs (run; systemd: StateDirectory=quantum)
    #[arg(long, global = true, env = "QUANTUM_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Overall time limit, connecting included
    #[arg(long, global = true, env = "QUANTUM_DEADLINE", default_value = "30s", value_parser = parse_deadline)]
    pub deadline: Duration,

    /// File holding the Redis password
    #[arg(long, global = true, env = "QUANTUM_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// File holding the sentinels' password (redis+sentinel:// URLs)
    #[arg(long, global = true, env = "QUANTUM_SENTINEL_PASSWORD_FILE")]
    pub sentinel_password_file: Option<PathBuf>,

    /// Append one line per run to this file
    #[arg(long, global = true, env = "QUANTUM_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Write node_exporter textfile metrics here, atomically (run; doctor checks it)
    #[arg(long, global = true, env = "QUANTUM_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Report what would happen, change nothing (run only)
    #[arg(long, global = true, env = "QUANTUM_DRY_RUN", action = clap::ArgAction::SetTrue, value_parser = parse_switch)]
    pub dry_run: bool,

    /// Print one JSON object on stdout (run, status, retire)
    #[arg(long, global = true, env = "QUANTUM_JSON", action = clap::ArgAction::SetTrue, value_parser = parse_switch)]
    pub json: bool,

    /// KEY=value settings file, below real environment variables (read before the rest)
    #[arg(long, global = true)]
    pub env_file: Option<PathBuf>,

    /// TOML file naming many targets ([[target]], [[discover]]) and options, below the command line and the environment
    #[arg(long, global = true, env = "QUANTUM_CONFIG")]
    pub config: Option<PathBuf>,

    /// check: WARNING when the first entry the recovery consumer holds waited longer than this
    #[arg(long, global = true, env = "QUANTUM_PARKED_WARNING", default_value = "15m", value_parser = parse_duration)]
    pub parked_warning: Duration,

    /// check: CRITICAL when the first entry the recovery consumer holds waited longer than this
    #[arg(long, global = true, env = "QUANTUM_PARKED_CRITICAL", default_value = "1h", value_parser = parse_duration)]
    pub parked_critical: Duration,

    #[command(flatten)]
    pub doctor: DoctorOptions,
}

/// Settings only `doctor` uses.
#[derive(clap::Args, Debug, Clone)]
pub struct DoctorOptions {
    /// doctor: connection for ACL DRYRUN, MODULE LIST and CONFIG GET [default: --url without its user]
    #[arg(long, global = true, env = "QUANTUM_ADMIN_URL")]
    pub admin_url: Option<String>,

    /// doctor: password file for --admin-url [default: REDISCLI_AUTH]
    #[arg(long, global = true, env = "QUANTUM_ADMIN_PASSWORD_FILE")]
    pub admin_password_file: Option<PathBuf>,

    /// doctor: the trading service's user, which must be in group quantum
    #[arg(long, global = true, env = "QUANTUM_TRADING_USER")]
    pub trading_user: Option<String>,

    /// doctor: Redis's systemd unit, whose ExecPaths= must allow the module
    #[arg(
        long,
        global = true,
        env = "QUANTUM_REDIS_UNIT",
        default_value = "redis-server.service"
    )]
    pub redis_unit: String,

    /// doctor: Redis's config file, whose loadmodule line the next restart loads
    #[arg(
        long,
        global = true,
        env = "QUANTUM_REDIS_CONF",
        default_value = "/etc/redis/redis.conf"
    )]
    pub redis_conf: PathBuf,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Recover stuck entries and delete dead consumers (the default)
    Run,
    /// Show the group's health: mode, pending, lag, consumers by state, the longest idle listed
    Status,
    /// Hand a stopping consumer's entries to --to in bounded calls, then delete it (--consumer)
    Retire,
    /// Health check in the monitoring-plugins format over every target: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    Check,
    /// Check the installation end to end: one line per check, ok or FAIL and what to do
    Doctor,
}

impl Verb {
    /// The verb as typed on the command line and shown in the JSON's `command`.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Run => "run",
            Verb::Status => "status",
            Verb::Retire => "retire",
            Verb::Check => "check",
            Verb::Doctor => "doctor",
        }
    }
}

impl Cli {
    /// The verb asked for; `run` when none was.
    pub fn verb(&self) -> Verb {
        self.command.unwrap_or(Verb::Run)
    }
}

/// `250ms`, `60s`, `5m`, `1h`, or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (use 250ms, 60s, 1h or milliseconds)"))
}

/// A duration the module takes in milliseconds: 1 to i64::MAX.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let ms = parse_duration(text)?.as_millis();
    match u64::try_from(ms) {
        Ok(ms) if ms >= 1 && ms <= i64::MAX as u64 => Ok(ms),
        _ => Err(format!("must be from 1ms to {}ms", i64::MAX)),
    }
}

/// The longest `--deadline`: a day is far beyond any timer interval, and keeps
/// `now + deadline` from overflowing.
const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);

pub fn parse_deadline(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() || d > MAX_DEADLINE => Err("must be from 1ms to 24h".into()),
        d => Ok(d),
    }
}

/// A boolean as systemd users write it: 1/yes/y/true/t/on, 0/no/n/false/f/off;
/// empty is off.
pub fn parse_switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Ok(true),
        "" | "0" | "no" | "n" | "false" | "f" | "off" => Ok(false),
        _ => Err("expected a boolean: 1, yes, true, on or 0, no, false, off".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1500"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration_ms("0").is_err());
        assert!(parse_deadline("0").is_err());
        assert!(parse_deadline("10000000000000000000s").is_err());
        assert_eq!(
            parse_duration_ms("10000000000000000000s"),
            Err(format!("must be from 1ms to {}ms", i64::MAX))
        );
        assert_eq!(parse_duration_ms("2s"), Ok(2000));
    }

    #[test]
    fn options_read_their_environment_variables_and_default_to_run() {
        let cli = Cli::try_parse_from(["q", "--count", "5", "--dry-run"]).unwrap();
        assert_eq!((cli.command, cli.count, cli.dry_run), (None, Some(5), true));
        assert!(Cli::try_parse_from(["q", "--count", "0"]).is_err());
        let cli = Cli::try_parse_from(["q", "retire", "--consumer", "exec-1", "--deadline", "5s"])
            .unwrap();
        assert_eq!(
            (cli.command, cli.deadline),
            (Some(Verb::Retire), Duration::from_secs(5))
        );
        let cli = Cli::try_parse_from(["q", "retire", "--retire-count", "100000"]).unwrap();
        assert_eq!(cli.retire_count, Some(100_000));
        assert!(Cli::try_parse_from(["q", "retire", "--retire-count", "100001"]).is_err());
        assert!(Cli::try_parse_from(["q", "status", "--limit", "0"]).is_err());
    }
}
