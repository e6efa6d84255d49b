//! QUANTUM.STATUS: read-only health of one group, allowed in any mode.

use crate::args;
use crate::mode;
use crate::plan::states::{self, StateRules};
use crate::redis_ops::{self, CallerAcl, Group};
use crate::reply::{self, Reply};
use crate::shared::{self, Failure};
use crate::{config, stats};
use quantum_protocol::key;
use redis_module::Context;

/// ```text
/// QUANTUM.STATUS key group [ZOMBIEIDLE ms] [MODEKEY key] [LIMIT n]
/// ```
/// Replies with a map: mode, allowed (0/1), pending, lag (nil when unknown),
/// oldest-idle (ms of the oldest pending entry, nil when none), states (how
/// many consumers are live, zombie, stuck, target, quarantine), consumers (at
/// most LIMIT, the longest idle first; each name, pending, idle, state), and
/// last-run (the last real QUANTUM.RECOVER of this key and group since load, or nil),
/// and parked (for the configured target and quarantine consumers, listed or
/// not: name, pending, oldest-idle of its first entry or nil).
pub fn run(ctx: &Context, argv: &[&[u8]]) -> Result<(), Failure> {
    let request = shared::parse(argv, args::parse_status)?;
    let acl = CallerAcl::of(ctx)?;
    let mode_value = shared::read_mode(ctx, &acl, argv, &request.mode_key)?;
    redis_ops::check_stream(ctx, &request.key)?;
    let group = Group::new(ctx, &request.key, &request.group);
    let info = group.info()?;
    let oldest = group.pending(None, 1, None)?;
    let consumers = group.consumers()?;

    let defaults = config::defaults();
    let rules = StateRules {
        zombie_idle_ms: request.zombie_idle,
        to: &defaults.to,
        quarantine: &defaults.quarantine,
    };
    let counts = rules
        .counts(&consumers)
        .iter()
        .map(|(state, n)| (state.as_str(), Reply::Int(*n as i64)))
        .collect();
    let listed = states::longest_idle_first(&consumers, request.limit as usize)
        .into_iter()
        .map(|c| {
            Reply::Map(vec![
                (key::NAME, Reply::Bytes(&c.name)),
                (key::PENDING, Reply::Int(c.pending)),
                (key::IDLE, Reply::Int(c.idle_ms)),
                (key::STATE, Reply::Bytes(rules.state(c).as_str().as_bytes())),
            ])
        })
        .collect();
    let last_run = stats::last_run(&request.key, &request.group).map_or(Reply::Nil, |run| {
        Reply::Map(vec![
            (key::UNIX_MS, Reply::Int(run.unix_ms as i64)),
            (key::CLAIMED, Reply::Int(run.claimed as i64)),
            (key::QUARANTINED, Reply::Int(run.quarantined as i64)),
            (key::DROPPED, Reply::Int(run.dropped as i64)),
            (key::DELETED, Reply::Int(run.deleted as i64)),
        ])
    });
    let parked = [
        (key::TARGET, defaults.to.as_slice()),
        (key::QUARANTINE, defaults.quarantine.as_slice()),
    ]
    .into_iter()
    .map(|(role, name)| Ok((role, parked_reply(&group, &consumers, name)?)))
    .collect::<Result<Vec<_>, Failure>>()?;
    reply::reply(
        ctx,
        Reply::Map(vec![
            (key::MODE, Reply::nil_or_bytes(mode_value.as_bytes())),
            (
                key::ALLOWED,
                Reply::Int(
                    mode::is_allowed(&mode_value, &config::ALLOWED_MODES.get_string()).into(),
                ),
            ),
            (key::PENDING, Reply::Int(info.pending)),
            (key::LAG, info.lag.map_or(Reply::Nil, Reply::Int)),
            (
                key::OLDEST_IDLE,
                oldest.first().map_or(Reply::Nil, |e| Reply::Int(e.idle_ms)),
            ),
            (key::STATES, Reply::Map(counts)),
            (key::CONSUMERS, Reply::List(listed)),
            (key::LAST_RUN, last_run),
            (key::PARKED, Reply::Map(parked)),
        ]),
    );
    Ok(())
}

/// What one parking consumer holds: its pending count from the consumer list
/// (0 when it does not exist) and, when it holds any, the idle of its first
/// entry (XPENDING … - + 1 consumer, O(1) in its own PEL).
fn parked_reply<'a>(
    group: &Group,
    consumers: &[crate::plan::Consumer],
    name: &'a [u8],
) -> Result<Reply<'a>, Failure> {
    let pending = consumers
        .iter()
        .find(|c| c.name == name)
        .map_or(0, |c| c.pending);
    let oldest = match pending {
        0 => Reply::Nil,
        _ => group
            .pending(None, 1, Some(name))?
            .first()
            .map_or(Reply::Nil, |e| Reply::Int(e.idle_ms)),
    };
    Ok(Reply::Map(vec![
        (key::NAME, Reply::Bytes(name)),
        (key::PENDING, Reply::Int(pending)),
        (key::OLDEST_IDLE, oldest),
    ]))
}

pub fn mode_key_pos(argv: &[&[u8]]) -> Option<usize> {
    shared::parse(argv, args::parse_status)
        .ok()?
        .mode_key
        .argv_pos
}
