//! A Redis Cluster as the trigger needs it: each command goes to the primary
//! owning its key's slot, following MOVED and ASK, and waits out what a cluster
//! under change answers (TRYAGAIN while a slot migrates, CLUSTERDOWN, LOADING,
//! a primary that died until its replica is promoted), never past the run's
//! deadline. The `redis` crate's cluster client retries those up to 16 times
//! with waits of its own (seconds to minutes) whatever the caller's deadline,
//! so the routing lives here, over plain connections made by `connect::single`.

use crate::connect::{remaining, single};
use crate::failure::{self, ExitCode, Failure};
use redis::{Connection, ConnectionAddr, ConnectionInfo, RedisError, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// `(host, port)` of a node.
pub type Addr = (String, u16);

/// The first pause while the cluster changes; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// The longest pause: a promoted replica is noticed within half a second.
const MAX_PAUSE: Duration = Duration::from_millis(500);
/// Redirects in a row before they count as a cluster under change (and wait).
const MAX_HOPS: u32 = 3;
/// The longest wait for one call's reply. RECOVER's work is bounded (SCAN,
/// COUNT), so a node silent this long is treated like an unreachable one: the
/// slot map is read again and a promoted replica followed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait for a node's CLUSTER SLOTS: a hung node is skipped.
const SLOTS_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Cluster {
    /// The seed's connection settings (scheme, TLS, user), used for every node.
    template: ConnectionInfo,
    password: Option<String>,
    /// Every node ever named, the seed first: where to ask for the slot map.
    known: Vec<Addr>,
    /// `(first slot, last slot, primary)`.
    slots: Vec<(u16, u16, Addr)>,
    links: HashMap<Addr, Connection>,
    /// The node that answered the last call per slot, to log a switch.
    served: HashMap<u16, Addr>,
    /// How often a slot's call was answered by another node than before.
    pub switches: u64,
}

/// What one try at a node came to.
enum Answer {
    Value(Value),
    Moved(u16, Addr),
    Ask(Addr),
    /// The cluster is changing or the node is gone: wait, refresh, try again.
    Wait(String),
    Fail(Failure),
}

fn show((host, port): &Addr) -> String {
    format!("{host}:{port}")
}

fn parse_addr(text: &str) -> Option<Addr> {
    let (host, port) = text.rsplit_once(':')?;
    Some((host.to_string(), port.parse().ok()?))
}

/// Names the node in a "module missing" failure: in a cluster only some nodes
/// may lack the module.
pub fn at_node(f: Failure, node: &str) -> Failure {
    match f.code {
        ExitCode::ModuleMissing => Failure::new(
            f.code,
            format!("the quantum module is missing on {node}: {}", f.message),
        ),
        _ => f,
    }
}

/// The hash slot of `key` (CRC16/XMODEM of its `{hash tag}` or the whole key).
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// CLUSTER SLOTS as `(first, last, primary)` ranges plus every node named;
/// an empty host means the node that answered.
type SlotMap = (Vec<(u16, u16, Addr)>, Vec<Addr>);

fn parse_slots(reply: Value, asked: &str) -> Option<SlotMap> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let node = |value: &Value| -> Option<Addr> {
        let Value::Array(fields) = value else {
            return None;
        };
        let host = match fields.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let host = match host.as_str() {
            "" | "?" => asked.to_string(),
            _ => host,
        };
        // Port 0: a node without a usable address (a failed or unknown one).
        match fields.get(1)? {
            Value::Int(port) => Some((host, u16::try_from(*port).ok().filter(|p| *p != 0)?)),
            _ => None,
        }
    };
    let (mut slots, mut nodes) = (Vec::new(), Vec::new());
    for range in ranges {
        let Value::Array(items) = range else {
            return None;
        };
        let (Some(Value::Int(first)), Some(Value::Int(last))) = (items.first(), items.get(1))
        else {
            return None;
        };
        // A range whose primary has no address has no owner to ask now.
        let Some(primary) = node(items.get(2)?) else {
            continue;
        };
        nodes.extend(items.iter().skip(2).filter_map(node));
        slots.push((
            u16::try_from(*first).ok()?,
            u16::try_from(*last).ok()?,
            primary,
        ));
    }
    Some((slots, nodes))
}

impl Cluster {
    /// Reads the slot map from the first seed that answers (`info`, then
    /// `others`), each within its own short bound, trying again until the deadline.
    pub fn connect(
        info: ConnectionInfo,
        others: Vec<Addr>,
        password: Option<String>,
        given_url: &str,
        deadline: Instant,
    ) -> Result<Cluster, Failure> {
        let seed = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
            _ => {
                return Err(Failure::new(
                    ExitCode::Config,
                    format!("bad --url {given_url:?}: a cluster seed node needs host:port"),
                ))
            }
        };
        let mut known = vec![seed];
        for addr in others {
            if !known.contains(&addr) {
                known.push(addr);
            }
        }
        let mut cluster = Cluster {
            template: info,
            password,
            known: known.clone(),
            slots: Vec::new(),
            links: HashMap::new(),
            served: HashMap::new(),
            switches: 0,
        };
        let mut pause = FIRST_PAUSE;
        let mut first_round = true;
        loop {
            let mut last = None;
            for seed in &known {
                match cluster.refresh_from(seed, deadline) {
                    Ok(()) => return Ok(cluster),
                    Err(f) if f.message.contains("cluster support disabled") => {
                        return Err(Failure::new(
                            ExitCode::Config,
                            format!(
                                "bad --url {given_url:?}: it names a Redis Cluster \
                                 (redis+cluster:// or --cluster) but this server has cluster \
                                 support disabled: use redis://"
                            ),
                        ))
                    }
                    // Refused credentials or a bad reply do not get better by waiting.
                    Err(f) if f.code != ExitCode::Unavailable => return Err(f),
                    Err(f) => {
                        if first_round {
                            warn!("{}; trying again until the deadline", f.message);
                        }
                        last = Some(f);
                    }
                }
            }
            first_round = false;
            let last = last.expect("at least one seed");
            let Ok(left) = remaining(deadline) else {
                return Err(last);
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_PAUSE);
            if remaining(deadline).is_err() {
                return Err(last);
            }
        }
    }

    /// Runs `cmd` on the primary owning `key` (without one, on the owner of
    /// slot 0), until it answers or the deadline.
    pub fn query(
        &mut self,
        cmd: &redis::Cmd,
        key: Option<&[u8]>,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let key = key.unwrap_or_default();
        let slot = key_slot(key);
        let mut pause = FIRST_PAUSE;
        let mut waiting: Option<String> = None;
        let (mut ask, mut hops) = (None, 0);
        loop {
            let (addr, asking) = match ask.take() {
                Some(addr) => (addr, true),
                None => match self.owner(slot) {
                    Some(addr) => (addr, false),
                    None => {
                        let why = format!("no node serves slot {slot}");
                        self.wait(&mut pause, &mut waiting, why, deadline)?;
                        continue;
                    }
                },
            };
            match self.send(&addr, cmd, asking, deadline) {
                Answer::Value(value) => {
                    self.note_served(slot, addr, key);
                    return Ok(value);
                }
                Answer::Moved(moved, to) if hops < MAX_HOPS => {
                    hops += 1;
                    self.slots
                        .retain(|(first, last, _)| !(*first..=*last).contains(&moved));
                    self.slots.push((moved, moved, to));
                }
                Answer::Ask(to) if hops < MAX_HOPS => {
                    hops += 1;
                    ask = Some(to);
                }
                Answer::Moved(..) | Answer::Ask(_) => {
                    hops = 0;
                    let why = format!("slot {slot} keeps being redirected");
                    self.wait(&mut pause, &mut waiting, why, deadline)?;
                }
                Answer::Wait(why) => {
                    hops = 0;
                    let why = match why.starts_with(&show(&addr)) {
                        true => why,
                        false => format!("{}: {why}", show(&addr)),
                    };
                    self.wait(&mut pause, &mut waiting, why, deadline)?;
                }
                Answer::Fail(f) => {
                    return Err(match waiting {
                        Some(why) if f.code == ExitCode::Unavailable => {
                            let message = format!("{} (after {why})", f.message);
                            f.reworded(message)
                        }
                        _ => f,
                    })
                }
            }
        }
    }

    /// Pauses before the next try (logging the first reason), then reads the
    /// slot map again; the deadline reached ends the call with the reason.
    fn wait(
        &mut self,
        pause: &mut Duration,
        waiting: &mut Option<String>,
        why: String,
        deadline: Instant,
    ) -> Result<(), Failure> {
        if waiting.is_none() {
            warn!("{why}: waiting for the cluster to settle, at most until the deadline");
        }
        let reached = |why: &str| {
            Failure::new(
                ExitCode::Unavailable,
                format!("deadline reached while the cluster was changing: {why}"),
            )
        };
        let left = remaining(deadline).map_err(|_| reached(&why))?;
        std::thread::sleep((*pause).min(left));
        *pause = (*pause * 2).min(MAX_PAUSE);
        remaining(deadline).map_err(|_| reached(&why))?;
        *waiting = Some(why);
        // A node that cannot tell is no reason to stop: the next try says more.
        let _ = self.refresh(deadline);
        Ok(())
    }

    /// Asks the connected nodes, then every other node ever named, for the slot map.
    fn refresh(&mut self, deadline: Instant) -> Result<(), Failure> {
        let mut order: Vec<Addr> = self.links.keys().cloned().collect();
        order.extend(
            self.known
                .iter()
                .filter(|a| !self.links.contains_key(*a))
                .cloned(),
        );
        let mut last = Failure::new(
            ExitCode::Unavailable,
            "no cluster node answered CLUSTER SLOTS",
        );
        for addr in order {
            match self.refresh_from(&addr, deadline) {
                Ok(()) => return Ok(()),
                Err(f) => last = f,
            }
            remaining(deadline)?;
        }
        Err(last)
    }

    fn refresh_from(&mut self, addr: &Addr, deadline: Instant) -> Result<(), Failure> {
        let con = self.link(addr, deadline, SLOTS_TIMEOUT)?;
        let reply = redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(con);
        let reply = reply.map_err(|e| {
            let f = self.failed(addr, &e);
            match e.is_timeout() {
                true => Failure::new(
                    f.code,
                    format!(
                        "{} did not answer CLUSTER SLOTS within {}s",
                        show(addr),
                        SLOTS_TIMEOUT.as_secs()
                    ),
                ),
                false => Failure::new(f.code, format!("{}: {}", show(addr), f.message)),
            }
        })?;
        let (slots, nodes) =
            parse_slots(reply, &addr.0).ok_or_else(|| failure::unexpected("CLUSTER SLOTS"))?;
        if slots.is_empty() {
            return Err(Failure::new(
                ExitCode::Unavailable,
                format!("{} knows no slot owners", show(addr)),
            ));
        }
        self.slots = slots;
        for node in nodes {
            if !self.known.contains(&node) {
                self.known.push(node);
            }
        }
        Ok(())
    }

    fn owner(&self, slot: u16) -> Option<Addr> {
        self.slots
            .iter()
            .rev()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, addr)| addr.clone())
    }

    /// The connection to `addr` (made within the node connect bound), with
    /// the time left, at most `bound`, as its read and write timeouts.
    fn link(
        &mut self,
        addr: &Addr,
        deadline: Instant,
        bound: Duration,
    ) -> Result<&mut Connection, Failure> {
        let left = remaining(deadline)?;
        if !self.links.contains_key(addr) {
            let info = self.template.clone().set_addr(match self.template.addr() {
                ConnectionAddr::TcpTls {
                    insecure,
                    tls_params,
                    ..
                } => ConnectionAddr::TcpTls {
                    host: addr.0.clone(),
                    port: addr.1,
                    insecure: *insecure,
                    tls_params: tls_params.clone(),
                },
                _ => ConnectionAddr::Tcp(addr.0.clone(), addr.1),
            });
            let connect_by = Instant::now() + left.min(crate::connect::NODE_CONNECT_TIMEOUT);
            let con = single(info, self.password.clone(), connect_by)?;
            self.links.insert(addr.clone(), con);
        }
        let con = self.links.get_mut(addr).expect("inserted above");
        let wait = Some(left.min(bound));
        con.set_read_timeout(wait)
            .and_then(|_| con.set_write_timeout(wait))
            .map_err(|e| failure::from_redis(&e))?;
        Ok(con)
    }

    /// Every primary serving slots now, each once (`[[discover]]` runs SCAN
    /// on each: a key lives on exactly one).
    pub fn primaries(&self) -> Vec<Addr> {
        let mut primaries: Vec<Addr> = self.slots.iter().map(|(_, _, p)| p.clone()).collect();
        primaries.sort();
        primaries.dedup();
        primaries
    }

    /// A connection to `addr` whose calls wait at most `CALL_TIMEOUT` (and
    /// never past `deadline`), named for messages.
    pub fn node(
        &mut self,
        addr: &Addr,
        deadline: Instant,
    ) -> Result<(&mut Connection, String), Failure> {
        let name = show(addr);
        let con = self.link(addr, deadline, CALL_TIMEOUT)?;
        Ok((con, name))
    }

    /// Forgets `addr`'s connection after a failed call on it (its reply may still come).
    pub fn drop_node(&mut self, addr: &Addr) {
        self.links.remove(addr);
    }

    /// A connection that failed is dropped, so the next try makes a new one
    /// (after a timeout the reply may still arrive: the connection is unusable).
    fn failed(&mut self, addr: &Addr, e: &RedisError) -> Failure {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            self.links.remove(addr);
        }
        failure::from_redis(e)
    }

    fn send(&mut self, addr: &Addr, cmd: &redis::Cmd, asking: bool, deadline: Instant) -> Answer {
        let con = match self.link(addr, deadline, CALL_TIMEOUT) {
            Ok(con) => con,
            Err(f) if f.code == ExitCode::Unavailable && remaining(deadline).is_ok() => {
                return Answer::Wait(f.message)
            }
            Err(f) => return Answer::Fail(f),
        };
        let reply = match asking {
            true => redis::cmd("ASKING")
                .query::<()>(con)
                .and_then(|_| cmd.query::<Value>(con)),
            false => cmd.query::<Value>(con),
        };
        let e = match reply {
            Ok(value) => return Answer::Value(value),
            Err(e) => e,
        };
        if let Some((to, slot)) = e.redirect_node() {
            if let Some(to) = parse_addr(to) {
                return match e.code() {
                    Some("ASK") => Answer::Ask(to),
                    _ => Answer::Moved(slot, to),
                };
            }
        }
        let timed_out = e.is_timeout();
        let f = Failure {
            reply_lost: failure::reply_lost(&e),
            ..self.failed(addr, &e)
        };
        let changing = matches!(
            e.code(),
            Some("TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "LOADING" | "READONLY")
        );
        let gone = e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal();
        match (changing, gone, timed_out) {
            // Hung (SIGSTOP, a paused VM) or overloaded: like a dead node, the
            // cluster may be promoting its replica. The call may have run:
            // asking again from the same cursor re-claims nothing TO holds.
            (_, _, true) => Answer::Wait(format!(
                "{} did not answer within {}s",
                show(addr),
                CALL_TIMEOUT.as_secs()
            )),
            (true, _, _) | (_, true, _) => Answer::Wait(f.message),
            _ => Answer::Fail(at_node(f, &show(addr))),
        }
    }

    fn note_served(&mut self, slot: u16, addr: Addr, key: &[u8]) {
        if key.is_empty() {
            return;
        }
        if let Some(before) = self.served.get(&slot).filter(|b| **b != addr) {
            info!(
                "key {:?} (slot {slot}) is now served by {} instead of {}: the cluster \
                 switched its owner (failover or migration); the run goes on there",
                String::from_utf8_lossy(key),
                show(&addr),
                show(before)
            );
            self.switches += 1;
        }
        self.served.insert(slot, addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_spec() {
        // The Redis Cluster specification: CRC16("123456789") is 0x31C3, and its hash tag rules.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"{u}:stream"), key_slot(b"{u}:mode"));
    }

    #[test]
    fn cluster_slots_replies_become_ranges_and_nodes() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            node("", 7000),
            node("10.0.0.2", 7003),
        ])]);
        let (slots, nodes) = parse_slots(reply, "10.0.0.1").unwrap();
        assert_eq!(slots, [(0, 5460, ("10.0.0.1".to_string(), 7000))]);
        assert_eq!(nodes.len(), 2);
        assert!(parse_slots(Value::Int(1), "x").is_none());
    }
}
