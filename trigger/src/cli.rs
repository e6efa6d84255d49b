//! Command line: every option also reads an environment variable, so systemd
//! units can pass settings through an EnvironmentFile or `--env-file`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "quantum-stream-recover",
    version = env!("QUANTUM_BUILD"),
    about = "Recovers a Redis Streams consumer group's stuck entries through the quantum module",
    long_about = "Recovers a Redis Streams consumer group's stuck entries through the quantum \
module (QUANTUM.RECOVER), in bounded atomic batches. Meant for a systemd timer and an \
ExecStartPre. Every option also reads the environment variable shown.\n\n\
Exit codes: 0 success, nothing to do, or refused by the mode guard; 64 usage; 69 module not \
loaded; 75 Redis unreachable, timeout, LOADING or READONLY; 76 unexpected reply; \
77 NOAUTH/NOPERM; 78 bad URL or credentials file.",
    after_help = "Durations take 250ms, 60s, 5m, 1h or a bare number of milliseconds.\n\
The password comes from --password-file, $CREDENTIALS_DIRECTORY/redis-password or \
REDISCLI_AUTH, never from the command line."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Verb>,

    /// Redis URL: redis://host:port, rediss://host:port (TLS), unix:///path/to/redis.sock
    #[arg(
        long,
        global = true,
        env = "QUANTUM_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub url: String,

    /// Treat --url as a seed node of a Redis Cluster (also: redis+cluster://host:port)
    #[arg(long, global = true, env = "QUANTUM_CLUSTER")]
    pub cluster: bool,

    /// Stream key
    #[arg(
        long,
        global = true,
        env = "QUANTUM_STREAM",
        default_value = "quantum:stream:trade.intent"
    )]
    pub stream: String,

    /// Consumer group
    #[arg(
        long,
        global = true,
        env = "QUANTUM_GROUP",
        default_value = "quantum:group:execution:trade.intent"
    )]
    pub group: String,

    /// Consumer that receives recovered entries [default: module's quantum.target]
    #[arg(long, global = true, env = "QUANTUM_TO")]
    pub to: Option<String>,

    /// Only entries idle at least this long move [default: quantum.min-idle]
    #[arg(long, global = true, env = "QUANTUM_MIN_IDLE", value_parser = parse_duration_ms)]
    pub min_idle: Option<u64>,

    /// Most entries moved per batch, 1..10000 [default: quantum.count]
    #[arg(long, global = true, env = "QUANTUM_COUNT", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub count: Option<u64>,

    /// Most PEL entries examined per batch, 1..100000 and >= count [default: quantum.scan]
    #[arg(long, global = true, env = "QUANTUM_SCAN", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub scan: Option<u64>,

    /// Consumers idle longer than this with nothing pending are deleted [default: quantum.zombie-idle]
    #[arg(long, global = true, env = "QUANTUM_ZOMBIE_IDLE", value_parser = parse_duration_ms)]
    pub zombie_idle: Option<u64>,

    /// Most consumers deleted per batch, 0 (off)..100000 [default: quantum.delete-limit]
    #[arg(long, global = true, env = "QUANTUM_DELETE_LIMIT", value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub delete_limit: Option<u64>,

    /// Entries delivered at least this often go to quarantine; 0 is off [default: quantum.max-deliveries]
    #[arg(long, global = true, env = "QUANTUM_MAX_DELIVERIES", value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    pub max_deliveries: Option<u64>,

    /// Consumer that parks poison entries [default: quantum.quarantine]
    #[arg(long, global = true, env = "QUANTUM_QUARANTINE")]
    pub quarantine: Option<String>,

    /// Key holding the mode (TESTNET, LIVE, ...) [default: quantum.mode-key]
    #[arg(long, global = true, env = "QUANTUM_MODE_KEY")]
    pub mode_key: Option<String>,

    /// Consumer to retire (retire only)
    #[arg(long, global = true, env = "QUANTUM_CONSUMER")]
    pub consumer: Option<String>,

    /// Most batches per run; the next run continues
    #[arg(long, global = true, env = "QUANTUM_MAX_BATCHES", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batches: u64,

    /// Overall time limit, connecting included
    #[arg(long, global = true, env = "QUANTUM_DEADLINE", default_value = "30s", value_parser = parse_duration)]
    pub deadline: Duration,

    /// File holding the Redis password
    #[arg(long, global = true, env = "QUANTUM_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// Append one line per run to this file
    #[arg(long, global = true, env = "QUANTUM_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Write node_exporter textfile metrics here (atomically)
    #[arg(long, global = true, env = "QUANTUM_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Report what would happen, change nothing
    #[arg(long, global = true, env = "QUANTUM_DRY_RUN")]
    pub dry_run: bool,

    /// Print one JSON object on stdout
    #[arg(long, global = true, env = "QUANTUM_JSON")]
    pub json: bool,

    /// KEY=value settings file, below real environment variables (read before the rest)
    #[arg(long, global = true)]
    pub env_file: Option<PathBuf>,

    #[command(flatten)]
    pub doctor: DoctorOptions,
}

/// Settings only `doctor` uses.
#[derive(clap::Args, Debug)]
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
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Recover stuck entries and delete dead consumers (the default)
    Run,
    /// Show the group's health: mode, pending, lag, each consumer's state
    Status,
    /// Hand a stopping consumer's entries to --to and delete it (--consumer)
    Retire,
    /// Check the installation end to end: one line per check, ok or FAIL and what to do
    Doctor,
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

fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let ms = parse_duration(text)?.as_millis();
    match u64::try_from(ms) {
        Ok(ms) if ms >= 1 && ms <= i64::MAX as u64 => Ok(ms),
        _ => Err("must be at least 1ms".into()),
    }
}

/// Reads `--env-file` before clap runs: `KEY=value` lines (`#` comments,
/// optional `export ` and quotes) become environment variables unless the
/// real environment already has them.
pub fn load_env_file(args: &[String]) -> Result<(), String> {
    let path = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--env-file=")
            .map(str::to_string)
            .or_else(|| {
                (a == "--env-file")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
    });
    let Some(path) = path else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read --env-file {path}: {e}"))?;
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{path}:{}: expected KEY=value", line_no + 1));
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        if std::env::var_os(key.trim()).is_none() {
            std::env::set_var(key.trim(), value);
        }
    }
    Ok(())
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
    }
}
