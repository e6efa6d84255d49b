//! Redis Sentinel: `redis+sentinel://host:port[,host:port…]/<master-name>`
//! (`rediss+sentinel://` for TLS to the sentinels and the data nodes). Every
//! listed sentinel is asked for the primary of `<master-name>` (SENTINEL
//! GET-MASTER-ADDR-BY-NAME, all at once, each within a short bound) and the
//! address a majority of those that named one agree on is taken (resolve.rs);
//! the node is checked to be a primary (ROLE) and every command goes there.
//! After READONLY, LOADING or a lost connection, and at least once a second
//! between commands, the sentinels are asked again: a graceful failover
//! (SENTINEL FAILOVER) leaves the old primary writable for seconds, answering
//! neither READONLY nor with a lost connection. Before a verb reports, the
//! sentinels confirm the primary once more (`confirm_primary`).
//!
//! The `redis` crate's `sentinel` module connects and asks ROLE without any
//! timeout (a black-holed sentinel or node would hold the run for minutes) and
//! asks SENTINEL MASTERS (more than a sentinel's ACL may grant), so the
//! sentinels are asked here, over plain connections made by `connect::single`.

mod durable;
mod resolve;
mod url;

use crate::cluster::{at_node, CALL_TIMEOUT};
use crate::connect::{self, remaining, single, NODE_CONNECT_TIMEOUT};
use crate::failure::{self, ExitCode, Failure};
use durable::replication;
use redis::{Connection, FromRedisValue, RedisError, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::warn;
use url::show;
pub use url::{parse_url, percent_decode, SentinelUrl};

/// `(host, port)` of a sentinel or a data node.
pub type Addr = (String, u16);

/// The first pause while no primary can be found; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// The longest pause: a promoted replica is noticed within half a second.
const MAX_PAUSE: Duration = Duration::from_millis(500);
/// How long the primary is used before the sentinels are asked again.
const RECHECK: Duration = Duration::from_secs(1);
/// How long `confirm_primary` waits for disagreeing sentinels to agree: a
/// sentinel hears of a failover another one led within its 2 s hello period.
const SETTLE: Duration = Duration::from_secs(3);
/// The longest WAIT for the replicas before reporting (a healthy replica
/// acknowledges within milliseconds).
const REPLICA_WAIT: Duration = Duration::from_secs(1);
/// How long a sentinel that failed a periodic check is left out of them.
const SKIP_FAILED: Duration = Duration::from_secs(10);

/// The sentinels of one master and a connection to the primary they name.
pub struct Sentinel {
    url: SentinelUrl,
    sentinel_password: Option<String>,
    password: Option<String>,
    primary: Option<(Addr, Connection)>,
    /// The primary of the last answered command, to notice a switch.
    served: Option<Addr>,
    /// How often commands went to another primary than before (a failover).
    pub switches: u64,
    /// When the sentinels last named the primary.
    asked_at: Instant,
    /// Calls whose reply was lost (and that were sent again): they may have run.
    pub lost_replies: u64,
    /// A recheck found no answer (said once).
    recheck_failed: bool,
    /// Sentinels that failed a periodic check, and when: left out of the
    /// periodic checks for `SKIP_FAILED` (a hung one would hold each for 1 s).
    failing: HashMap<Addr, Instant>,
    /// The replicas the primary in use (the first) listed when connected
    /// (and since): how many must acknowledge the run's writes before it reports.
    replicas: (Option<Addr>, Vec<Addr>),
    /// Before reporting: how many of `replicas` acknowledged (WAIT); None
    /// when WAIT could not be run.
    pub acks: Option<ReplicaAcks>,
}

/// What WAIT said before a verb reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaAcks {
    pub acked: u64,
    pub replicas: u64,
}

/// Whether `e` says the node is gone, hung or no primary (any more): ask the sentinels again.
fn ask_again(e: &RedisError) -> bool {
    e.is_timeout()
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.code(), Some("READONLY" | "LOADING" | "MASTERDOWN"))
}

/// `connect::connect` for a Sentinel URL (`shown` redacted for messages): the
/// data nodes' password from the usual sources, the sentinels' from its own file.
pub fn connect_url(
    parsed: Result<SentinelUrl, String>,
    shown: &str,
    cluster: bool,
    (password_file, sentinel_password_file): (Option<&Path>, Option<&Path>),
    deadline: Instant,
) -> Result<Sentinel, Failure> {
    let bad_url = |why: &str| Failure::new(ExitCode::Config, format!("bad --url {shown:?}: {why}"));
    let url = parsed.map_err(|why| bad_url(&why))?;
    if cluster {
        return Err(bad_url(
            "it names sentinels, not a Redis Cluster: drop --cluster (QUANTUM_CLUSTER)",
        ));
    }
    let password = connect::password(password_file)?;
    if let (Some(user), None) = (&url.user, &password) {
        // Connecting as `default` instead would silently bypass the least-privilege user.
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "the URL names user {user:?} but no password was found: {}",
                connect::sources_tried()
            ),
        ));
    }
    let sentinel_password = sentinel_password_file
        .map(connect::read_password_file)
        .transpose()?;
    Sentinel::connect(url, password, sentinel_password, deadline)
}

impl Sentinel {
    /// Finds the primary, trying again until the deadline while the sentinels
    /// cannot be reached or name no reachable primary.
    pub fn connect(
        url: SentinelUrl,
        password: Option<String>,
        sentinel_password: Option<String>,
        deadline: Instant,
    ) -> Result<Sentinel, Failure> {
        let mut sentinel = Sentinel {
            url,
            sentinel_password,
            password,
            primary: None,
            served: None,
            switches: 0,
            asked_at: Instant::now(),
            lost_replies: 0,
            recheck_failed: false,
            failing: HashMap::new(),
            replicas: (None, Vec::new()),
            acks: None,
        };
        sentinel.find_primary(deadline)?;
        sentinel.served = sentinel.primary.as_ref().map(|(addr, _)| addr.clone());
        Ok(sentinel)
    }

    pub fn master(&self) -> &str {
        &self.url.master
    }

    /// The primary commands go to now, once a failover switched it.
    pub fn switched_primary(&self) -> Option<String> {
        self.served.as_ref().filter(|_| self.switches > 0).map(show)
    }

    /// A connection to the data node `addr`, made within the node connect bound;
    /// a database the node lacks is a setting to fix (78).
    pub fn node(&self, addr: &Addr, deadline: Instant) -> Result<Connection, Failure> {
        let connect_by = Instant::now() + remaining(deadline)?.min(NODE_CONNECT_TIMEOUT);
        single(
            self.url.info(addr, true)?,
            self.password.clone(),
            connect_by,
        )
        .map_err(|f| match f.message.contains("DB index is out of range") {
            true => Failure::new(
                ExitCode::Config,
                format!(
                    "bad --url: no such database on {} ({})",
                    show(addr),
                    f.message
                ),
            ),
            false => f,
        })
    }

    /// Every sentinel's answer to `cmd`.
    fn ask_all(&self, cmd: &redis::Cmd, deadline: Instant) -> Vec<(Addr, Result<Value, Failure>)> {
        resolve::ask_all(&self.url, self.sentinel_password.as_deref(), cmd, deadline)
    }

    fn get_master_addr(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(&self.url.master);
        cmd
    }

    /// The primary the sentinels name now (the majority's word).
    pub fn named_primary(&self, deadline: Instant) -> Result<Addr, Failure> {
        let answers = self.ask_all(&self.get_master_addr(), deadline);
        resolve::vote(&self.url.master, answers)
    }

    /// The replicas the sentinels know of the master: address and flags, as
    /// the first sentinel (in the URL's order) that answers says.
    pub fn replicas(&self, deadline: Instant) -> Result<Vec<(Addr, String)>, Failure> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("REPLICAS").arg(&self.url.master);
        let mut failures = Vec::new();
        let mut answer = None;
        for (_, result) in self.ask_all(&cmd, deadline) {
            match result {
                Ok(value) => {
                    answer = Some(value);
                    break;
                }
                Err(f) => failures.push(f),
            }
        }
        let answer = answer.ok_or_else(|| resolve::none_usable(&self.url.master, failures))?;
        let Value::Array(replicas) = answer else {
            return Err(failure::unexpected("SENTINEL REPLICAS"));
        };
        let mut out = Vec::new();
        for replica in replicas {
            let fields = HashMap::<String, String>::from_redis_value(replica)
                .map_err(|_| failure::unexpected("SENTINEL REPLICAS"))?;
            let get = |name: &str| {
                fields.get(name).cloned().ok_or_else(|| {
                    failure::unexpected(&format!("SENTINEL REPLICAS without {name}"))
                })
            };
            let port = get("port")?
                .parse()
                .map_err(|_| failure::unexpected("SENTINEL REPLICAS port"))?;
            out.push(((get("ip")?, port), get("flags")?));
        }
        Ok(out)
    }

    /// One try: the primary the sentinels name, connected and checked to be one.
    fn try_primary(&mut self, deadline: Instant) -> Result<(), Failure> {
        let addr = self.named_primary(deadline)?;
        self.asked_at = Instant::now();
        let mut con = match self.checked_primary(&addr, deadline) {
            Ok(con) => con,
            // It answered (a refusal, NOAUTH, no such database): it is the
            // primary served now, so a switch to it is reported.
            Err(f) if f.code != ExitCode::Unavailable => {
                if self.served.is_some() {
                    self.note_served(addr);
                }
                return Err(f);
            }
            Err(f) => return Err(f),
        };
        if self.replicas.0.as_ref() != Some(&addr) {
            self.replicas = (Some(addr.clone()), Vec::new());
        }
        if let Some(replication) = replication(&mut con) {
            self.know_replicas(replication.replicas);
        }
        self.primary = Some((addr, con));
        Ok(())
    }

    fn know_replicas(&mut self, replicas: Vec<Addr>) {
        for replica in replicas {
            if !self.replicas.1.contains(&replica) {
                self.replicas.1.push(replica);
            }
        }
    }

    /// A connection to `addr`, which the sentinels named as the primary, if it is one.
    fn checked_primary(&self, addr: &Addr, deadline: Instant) -> Result<Connection, Failure> {
        let named = |why: String| {
            Failure::new(
                ExitCode::Unavailable,
                format!(
                    "Sentinel names {} as the primary of {:?}, but {why}",
                    show(addr),
                    self.url.master
                ),
            )
        };
        let mut con = match self.node(addr, deadline) {
            Ok(con) => con,
            Err(f) if f.code == ExitCode::Unavailable => return Err(named(f.message)),
            Err(f) => return Err(f),
        };
        if let Some(role) = role(&mut con) {
            if role != "master" {
                return Err(named(format!("it is a {role} (a failover under way?)")));
            }
        }
        Ok(con)
    }

    /// Connects to the primary the sentinels name, asking again until the deadline.
    fn find_primary(&mut self, deadline: Instant) -> Result<(), Failure> {
        let mut pause = FIRST_PAUSE;
        let mut logged = false;
        loop {
            let f = match self.try_primary(deadline) {
                Ok(()) => return Ok(()),
                Err(f) if f.code != ExitCode::Unavailable => return Err(f),
                Err(f) => f,
            };
            if !logged {
                warn!(
                    "{}; asking the sentinels again until the deadline",
                    f.message
                );
                logged = true;
            }
            let Ok(left) = remaining(deadline) else {
                return Err(f);
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_PAUSE);
            if remaining(deadline).is_err() {
                let message = format!("deadline reached: {}", f.message);
                return Err(f.reworded(message));
            }
        }
    }

    /// Asks the sentinels whether the primary is still the one in use; when
    /// they name another, or disagree with no majority (a failover under
    /// way), it is dropped: the next command finds the primary a majority
    /// names, asking again until the deadline. Sentinels that cannot say
    /// leave the primary in use: its own answers (READONLY, a lost
    /// connection) still send the run back to them.
    fn recheck(&mut self, deadline: Instant) {
        let Some((current, _)) = &self.primary else {
            return;
        };
        let current = current.clone();
        let mut url = self.url.clone();
        let skipped =
            |addr: &Addr| matches!(self.failing.get(addr), Some(at) if at.elapsed() < SKIP_FAILED);
        url.sentinels.retain(|addr| !skipped(addr));
        if url.sentinels.is_empty() {
            url.sentinels.clone_from(&self.url.sentinels);
        }
        let cmd = self.get_master_addr();
        let answers = resolve::ask_all(&url, self.sentinel_password.as_deref(), &cmd, deadline);
        for (addr, answer) in &answers {
            match answer {
                Ok(_) => self.failing.remove(addr),
                Err(_) => self.failing.insert(addr.clone(), Instant::now()),
            };
        }
        let named = resolve::tally(&self.url.master, answers);
        self.asked_at = Instant::now();
        match named {
            Ok(named) if named != current => {
                warn!(
                    "the sentinels of {:?} now name {} as the primary instead of {} (a \
                     failover)",
                    self.url.master,
                    show(&named),
                    show(&current)
                );
                self.primary = None;
            }
            Ok(_) => {}
            Err(no) if no.split => {
                warn!(
                    "{}: the primary {} is not confirmed, so no more calls go there until a \
                     majority names one",
                    no.failure.message,
                    show(&current)
                );
                self.primary = None;
            }
            // Once a run: a sentinel outage must not fill the journal every second.
            Err(no) if !self.recheck_failed => {
                self.recheck_failed = true;
                warn!(
                    "cannot confirm the primary {} with the sentinels: {}; going on with it",
                    show(&current),
                    no.failure.message
                )
            }
            Err(_) => {}
        }
    }

    /// Before a verb reports: the sentinels are asked once more (waiting up
    /// to `SETTLE` while they disagree but one has a majority, and until the
    /// deadline while none has), and the primary that answered must still be
    /// a primary whose replicas hold what it was sent (`durable`). Another
    /// primary named counts as a switch (`switches`): what the old one
    /// answered may be lost when Sentinel converts it to a replica, so the
    /// verb goes on there. No majority until the deadline, or a primary
    /// deposed with no successor named by then, is 75: the outcome of what
    /// it answered is unknown. Sentinels that cannot say are logged; the
    /// primary's own word then stands.
    pub fn confirm_primary(&mut self, deadline: Instant) -> Result<(), Failure> {
        let Some(served) = self.served.clone() else {
            return Ok(());
        };
        let started = Instant::now();
        // While they disagree: what they said last, for the message should
        // the deadline come first (asked then, they would only say that).
        let mut disagreed: Option<String> = None;
        let named = loop {
            if let (Some(sides), Err(_)) = (&disagreed, remaining(deadline)) {
                let f = Failure::new(
                    ExitCode::Unavailable,
                    format!(
                        "deadline reached before the sentinels of {:?} agreed on the primary: \
                         {sides}",
                        self.url.master
                    ),
                );
                return Err(self.unconfirmed(f, &served));
            }
            let answers = self.ask_all(&self.get_master_addr(), deadline);
            self.asked_at = Instant::now();
            let dissent = resolve::dissent(&answers);
            let named = resolve::tally(&self.url.master, answers);
            let wait = match &named {
                Err(no) => no.split,
                Ok(_) => dissent.is_some() && started.elapsed() < SETTLE,
            };
            if !wait {
                break named;
            }
            disagreed = dissent;
            std::thread::sleep(MAX_PAUSE.min(deadline.saturating_duration_since(Instant::now())));
        };
        match named {
            Ok(named) if named != served => {
                self.primary = None;
                self.note_served(named);
                Ok(())
            }
            Ok(_) => self.durable(&served, deadline),
            Err(no) => {
                warn!(
                    "cannot confirm the primary {} with the sentinels before reporting: {}",
                    show(&served),
                    no.failure.message
                );
                self.durable(&served, deadline)
            }
        }
    }

    /// `f`, saying that what `served` answered is not confirmed.
    fn unconfirmed(&self, f: Failure, served: &Addr) -> Failure {
        let message = format!(
            "{}; the outcome is unknown: the calls {} answered are not confirmed (if it was \
             deposed, what they did there may be undone; nothing leaves the group: the next \
             run claims such entries again)",
            f.message,
            show(served)
        );
        Failure::new(ExitCode::Unavailable, message)
    }

    /// Runs one command on the primary; after READONLY, LOADING, a lost
    /// connection or a silent primary, asks the sentinels again and sends it
    /// to the primary they name, until the deadline; at least once a second
    /// the sentinels are asked before a command. A command sent again may
    /// have run already: RECOVER from the same cursor re-claims nothing TO
    /// holds, RETIRE moves what the consumer still holds.
    pub fn query(&mut self, cmd: &redis::Cmd, deadline: Instant) -> Result<Value, Failure> {
        let mut pause = FIRST_PAUSE;
        let mut lost = false;
        let mut logged = false;
        let with_lost = |f: Failure, lost: bool| Failure {
            reply_lost: lost || f.reply_lost,
            ..f
        };
        loop {
            if self.asked_at.elapsed() >= RECHECK {
                self.recheck(deadline);
            }
            if self.primary.is_none() {
                self.find_primary(deadline).map_err(|f| {
                    let f = match (&self.served, f.code) {
                        (Some(served), ExitCode::Unavailable) => self.unconfirmed(f, served),
                        _ => f,
                    };
                    with_lost(f, lost)
                })?;
            }
            let (addr, con) = self.primary.as_mut().expect("found above");
            let wait = Some(
                remaining(deadline)
                    .map_err(|f| with_lost(f, lost))?
                    .min(CALL_TIMEOUT),
            );
            con.set_read_timeout(wait)
                .and_then(|_| con.set_write_timeout(wait))
                .map_err(|e| with_lost(failure::from_redis(&e), lost))?;
            let e = match cmd.query::<Value>(con) {
                Ok(value) => {
                    let addr = addr.clone();
                    self.note_served(addr);
                    return Ok(value);
                }
                Err(e) => e,
            };
            let name = show(addr);
            let lost_now = failure::reply_lost(&e);
            lost |= lost_now;
            self.lost_replies += u64::from(lost_now);
            let f = with_lost(at_node(failure::from_redis(&e), &name), lost);
            if !ask_again(&e) {
                // It answered (a refusal is an answer): it is the primary served now.
                let addr = addr.clone();
                self.note_served(addr);
                return Err(f);
            }
            self.primary = None;
            if !logged {
                warn!(
                    "{name}: {}; asking the sentinels of {:?} for the primary again, at most \
                     until the deadline",
                    f.message, self.url.master
                );
                logged = true;
            }
            let Ok(left) = remaining(deadline) else {
                return Err(f);
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    fn note_served(&mut self, addr: Addr) {
        if let Some(before) = self.served.as_ref().filter(|b| **b != addr) {
            warn!(
                "Sentinel named {} as the primary of {:?} instead of {} (a failover): \
                 switched_primary={}; the run goes on there",
                show(&addr),
                self.url.master,
                show(before),
                show(&addr)
            );
            self.switches += 1;
        }
        self.served = Some(addr);
    }
}

/// The node's role (`master`, `slave`): from ROLE, or from INFO replication
/// for a user without `+role`; `None` when neither may be run (the sentinels'
/// word stands, and a write to a replica answers READONLY).
fn role(con: &mut Connection) -> Option<String> {
    if let Ok(Value::Array(items)) = redis::cmd("ROLE").query::<Value>(con) {
        return items
            .into_iter()
            .next()
            .and_then(|v| String::from_redis_value(v).ok());
    }
    let info: String = redis::cmd("INFO").arg("replication").query(con).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .map(|r| r.trim().to_string())
}
