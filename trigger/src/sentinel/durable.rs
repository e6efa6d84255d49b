//! Before a verb reports behind Sentinel: the primary that answered must
//! still be one and its replicas must hold what it was sent (WAIT); a
//! replica promoted before the sentinels announced it, or the primary
//! deposed, sends the run to the successor the sentinels name, or ends it
//! at the deadline with the outcome unknown.

use super::url::show;
use super::{remaining, Addr, ReplicaAcks, Sentinel, MAX_PAUSE, REPLICA_WAIT, SETTLE};
use crate::failure::{self, ExitCode, Failure};
use redis::Connection;
use std::collections::HashMap;
use std::time::Instant;
use tracing::{info, warn};

impl Sentinel {
    /// Whether what `served` was sent holds: it is still a primary and its
    /// replicas acknowledged it (WAIT, at most `REPLICA_WAIT`; the count goes
    /// in the report). A replica that did not acknowledge and is now a
    /// primary itself was promoted (a failover the sentinels have not
    /// announced yet): then, as when `served` is a replica now, the
    /// sentinels are asked until they name the new primary (a switch) or the
    /// deadline (75). A replica merely late is a warning: replication is
    /// asynchronous, `min-replicas-to-write` is Redis's own guard for that.
    pub(super) fn durable(&mut self, served: &Addr, deadline: Instant) -> Result<(), Failure> {
        let reuse = matches!(&self.primary, Some((addr, _)) if addr == served);
        let mut fresh = match reuse {
            true => None,
            false => Some(self.node(served, deadline)?),
        };
        let con = match (&mut fresh, &mut self.primary) {
            (Some(con), _) => con,
            (None, Some((_, con))) => con,
            (None, None) => return Ok(()),
        };
        let Some(info) = replication(con) else {
            warn!("cannot read INFO replication of {}", show(served));
            return Ok(());
        };
        if info.role != "master" {
            let why = format!("{} is a {} now (deposed)", show(served), info.role);
            return self.await_successor(served, why, deadline);
        }
        let mut now: Vec<Addr> = info.replicas;
        if self.replicas.0.as_ref() != Some(served) {
            self.replicas = (Some(served.clone()), Vec::new());
        }
        // A replica promoted before the run connected is no longer listed by
        // the old primary; the sentinels still list it (until they switch).
        // Listed by them only, a primary may also be the deposed one they
        // are about to convert: not a promotion for certain.
        let mut sentinels_only = Vec::new();
        if let Ok(known) = self.replicas(deadline) {
            let up = known
                .into_iter()
                .filter(|(_, flags)| !flags.contains("down") && !flags.contains("disconnected"));
            for (addr, _) in up {
                if !now.contains(&addr) && !self.replicas.1.contains(&addr) {
                    now.push(addr.clone());
                    sentinels_only.push(addr);
                }
            }
        }
        let expected = self.replicas.1.len().max(now.len()) as u64;
        let left = remaining(deadline).map_err(|f| {
            let f = f.reworded("deadline reached before the replicas could be asked (WAIT)".into());
            self.unconfirmed(f, served)
        })?;
        let wait_ms = left.min(REPLICA_WAIT).as_millis().max(1) as u64;
        let con = match (&mut fresh, &mut self.primary) {
            (Some(con), _) => con,
            (None, Some((_, con))) => con,
            (None, None) => return Ok(()),
        };
        let _ = con.set_read_timeout(Some(remaining(deadline)?));
        let acked = redis::cmd("WAIT")
            .arg(expected)
            .arg(wait_ms)
            .query::<u64>(con);
        self.know_replicas(now);
        let acked = match acked {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(
                    "{}: WAIT: {} (give the ACL user +wait): how many replicas hold the run's \
                     writes is not known",
                    show(served),
                    failure::from_redis(&e).message
                );
                None
            }
        };
        self.acks = acked.map(|acked| ReplicaAcks {
            acked,
            replicas: expected,
        });
        if let Some(n) = acked {
            info!(
                "{}: replicas_acked={n} replicas={expected} (WAIT: the replicas that hold what \
                 the run wrote)",
                show(served)
            );
        }
        if acked.is_some_and(|n| n >= expected) {
            return self.still_named(served, Vec::new(), deadline);
        }
        let mut doubtful = Vec::new();
        for replica in self.replicas.1.clone() {
            let role = self.role_of(&replica, deadline);
            let sentinels_only = sentinels_only.contains(&replica);
            if role.is_none() || (sentinels_only && role.as_deref() == Some("master")) {
                doubtful.push(replica);
                continue;
            }
            if role.as_deref() == Some("master") {
                let why = format!(
                    "its replica {} did not acknowledge the run's writes and is a primary now \
                     (promoted)",
                    show(&replica)
                );
                return self.await_successor(served, why, deadline);
            }
        }
        // A replica that did not acknowledge and cannot be asked its role (the
        // ACL user exists on the primary only) may be the one being promoted:
        // the sentinels announce it within a second or two.
        if !doubtful.is_empty() {
            let shown: Vec<String> = doubtful.iter().map(show).collect();
            warn!(
                "{} did not acknowledge and cannot be asked its role (does the run's ACL user \
                 exist there?) or is a primary the sentinels list as a replica: asking the \
                 sentinels for up to {} s whether it was promoted",
                shown.join(", "),
                SETTLE.as_secs()
            );
        }
        self.still_named(served, doubtful, deadline)?;
        if self.served.as_ref() != Some(served) {
            return Ok(());
        }
        if let Some(n) = acked {
            warn!(
                "only {n} of {expected} replicas of {} acknowledged the run's writes within \
                 {wait_ms} ms: a failover now could undo some (the next run claims them again)",
                show(served)
            );
        }
        Ok(())
    }

    /// A node's role (INFO replication); None when it cannot be asked.
    fn role_of(&self, node: &Addr, deadline: Instant) -> Option<String> {
        let mut con = self.node(node, deadline).ok()?;
        replication(&mut con).map(|r| r.role)
    }

    /// After the WAIT: the sentinels still name `served`, asked once, or
    /// while a `doubtful` replica (role unknown, or a primary only the
    /// sentinels list) stays so, for up to `SETTLE`. Another primary named is
    /// a switch; sentinels that cannot say leave `served`'s own word standing.
    fn still_named(
        &mut self,
        served: &Addr,
        mut doubtful: Vec<Addr>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let until = Instant::now() + SETTLE;
        loop {
            let named = self.named_primary(deadline);
            self.asked_at = Instant::now();
            if let Ok(named) = named {
                if named != *served {
                    self.primary = None;
                    self.note_served(named);
                    return Ok(());
                }
            }
            doubtful.retain(|replica| self.role_of(replica, deadline).as_deref() != Some("slave"));
            let Ok(left) = remaining(deadline) else {
                return Ok(());
            };
            if doubtful.is_empty() || Instant::now() >= until {
                return Ok(());
            }
            std::thread::sleep(MAX_PAUSE.min(left).min(until - Instant::now()));
        }
    }

    /// `served` was deposed: asks the sentinels until they name another
    /// primary (a switch: the verb goes on there) or the deadline (75).
    fn await_successor(
        &mut self,
        served: &Addr,
        why: String,
        deadline: Instant,
    ) -> Result<(), Failure> {
        warn!(
            "{why}: asking the sentinels of {:?} for its successor until the deadline",
            self.url.master
        );
        self.primary = None;
        loop {
            if let Ok(named) = self.named_primary(deadline) {
                self.asked_at = Instant::now();
                if named != *served {
                    self.note_served(named);
                    return Ok(());
                }
            }
            let Ok(left) = remaining(deadline) else {
                let f = Failure::new(ExitCode::Unavailable, format!("deadline reached: {why}"));
                return Err(self.unconfirmed(f, served));
            };
            std::thread::sleep(MAX_PAUSE.min(left));
        }
    }
}

/// A node's INFO replication: its role and, for a primary, its replicas.
pub(super) struct Replication {
    pub role: String,
    pub replicas: Vec<Addr>,
}

/// INFO replication (which the least-privileged user may run, unlike ROLE).
pub(super) fn replication(con: &mut Connection) -> Option<Replication> {
    let info: String = redis::cmd("INFO").arg("replication").query(con).ok()?;
    parse_replication(&info)
}

fn parse_replication(info: &str) -> Option<Replication> {
    let role = info
        .lines()
        .find_map(|l| l.strip_prefix("role:"))?
        .trim()
        .to_string();
    // slave0:ip=127.0.0.1,port=6380,state=online,offset=…,lag=0
    let replicas = info
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains(":ip="))
        .filter_map(|l| {
            let fields: HashMap<&str, &str> = l
                .split_once(':')?
                .1
                .trim()
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .collect();
            Some((
                fields.get("ip")?.to_string(),
                fields.get("port")?.parse().ok()?,
            ))
        })
        .collect();
    Some(Replication { role, replicas })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_replication_gives_the_role_and_the_replicas() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=6380,state=online,offset=42,lag=0\r\n\
                    slave1:ip=::1,port=6381,state=wait_bgsave,offset=0,lag=0\r\n\
                    master_failover_state:no-failover\r\n";
        let parsed = parse_replication(info).unwrap();
        assert_eq!(parsed.role, "master");
        assert_eq!(
            parsed.replicas,
            [("127.0.0.1".to_string(), 6380), ("::1".to_string(), 6381)]
        );
        let replica = parse_replication("role:slave\r\nmaster_host:127.0.0.1\r\n").unwrap();
        assert_eq!(replica.role, "slave");
        assert!(replica.replicas.is_empty());
        assert!(parse_replication("# Replication\r\n").is_none());
    }
}
