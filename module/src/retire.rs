//! QUANTUM.RETIRE: a stopping consumer hands its pending entries to TO, at most
//! COUNT per call, and is deleted by the call that leaves it empty.

use crate::args::{self, RetireRequest};
use crate::plan::retire::{self as step_plan, RetireStep};
use crate::redis_ops::{self, CallerAcl, Group, Internal};
use crate::reply::{self, Reply};
use crate::shared::{self, Failure};
use crate::stats::{bump, STATS};
use crate::{log, text};
use quantum_protocol::key;
use redis_module::{Context, RedisError};
use std::collections::HashSet;

/// Every command a call may run, checked against the caller's ACL before the first change (S7).
const INTERNAL_COMMANDS: [Internal; 5] = [
    Internal::InfoConsumers,
    Internal::Pending,
    Internal::CreateConsumer,
    Internal::Claim,
    Internal::DeleteConsumer,
];

/// What one call did.
struct Retired {
    moved: Vec<String>,
    dropped: Vec<String>,
    remaining: i64,
    deleted: bool,
}

/// ```text
/// QUANTUM.RETIRE key group consumer [TO consumer] [COUNT n] [MODEKEY key]
/// ```
/// Moves up to COUNT of `consumer`'s pending entries, lowest IDs first and
/// whatever their idle time, to TO (entries whose stream entry is gone leave
/// the PEL instead); the call that leaves the consumer empty deletes it. A
/// bigger backlog takes several calls, each atomic and short (S5). Mode-guarded.
/// Replies with a map: moved (IDs), dropped (IDs), remaining (entries the
/// consumer still holds), deleted (0/1; 0 when there was no such consumer).
pub fn run(ctx: &Context, argv: &[&[u8]]) -> Result<(), Failure> {
    let request = shared::parse(argv, args::parse_retire)?;
    let acl = CallerAcl::of(ctx)?;
    shared::guard_mode(ctx, &acl, argv, &request.mode_key)?;
    redis_ops::check_stream(ctx, &request.key)?;
    let group = Group::new(ctx, &request.key, &request.group);
    group.check_allowed(&acl, &INTERNAL_COMMANDS)?;

    let held = group
        .consumers()?
        .into_iter()
        .find(|c| c.name == request.consumer);
    let retired = match held {
        None => Retired {
            moved: Vec::new(),
            dropped: Vec::new(),
            remaining: 0,
            deleted: false,
        },
        Some(consumer) => {
            if consumer.pending > 0 {
                // Explicitly, so replicas and the AOF get TO even if every entry is gone.
                group.create_consumer(&request.to)?;
            }
            retire_step(ctx, &group, &request, consumer.pending)?
        }
    };

    bump(&STATS.retires, 1);
    bump(&STATS.claimed, retired.moved.len());
    bump(&STATS.dropped, retired.dropped.len());
    bump(&STATS.deleted, usize::from(retired.deleted));
    log(ctx, &request, &retired);
    let fields = vec![
        (key::MOVED, Reply::ids(&retired.moved)),
        (key::DROPPED, Reply::ids(&retired.dropped)),
        (key::REMAINING, Reply::Int(retired.remaining)),
        (key::DELETED, Reply::Int(retired.deleted.into())),
    ];
    reply::reply(ctx, Reply::Map(fields));
    Ok(())
}

pub fn mode_key_pos(argv: &[&[u8]]) -> Option<usize> {
    shared::parse(argv, args::parse_retire)
        .ok()?
        .mode_key
        .argv_pos
}

/// Moves the consumer's first COUNT entries to TO; deletes it only when the
/// PEL page showed nothing beyond them.
fn retire_step(
    ctx: &Context,
    group: &Group,
    request: &RetireRequest,
    pending: i64,
) -> Result<Retired, RedisError> {
    let count = request.count as usize;
    let page = group.pending(None, count + 1, Some(&request.consumer))?;
    let step: RetireStep = step_plan::plan_step(&page, count);
    let ids: Vec<&str> = step.take.iter().map(|e| e.id.as_str()).collect();
    let claimed: HashSet<String> = group.claim(&request.to, 0, &ids)?.into_iter().collect();
    let (moved, dropped) = step_plan::split_claimed(&step, &claimed);
    if step.empties {
        let lost = group.delete_consumer(&request.consumer)?;
        if lost != 0 {
            // Cannot happen: its PEL was read empty past these entries in this same call.
            log::warning(
                ctx,
                &format!(
                    "consumer '{}' had {lost} pending entries when retired",
                    text::printable(&request.consumer, 200)
                ),
            );
        }
    }
    Ok(Retired {
        remaining: step_plan::remaining_after(pending, ids.len(), step.empties),
        moved,
        dropped,
        deleted: step.empties,
    })
}

/// One audit line per call that changed something.
fn log(ctx: &Context, request: &RetireRequest, retired: &Retired) {
    if retired.moved.is_empty() && retired.dropped.is_empty() && !retired.deleted {
        return;
    }
    let what = if retired.deleted {
        "retired consumer"
    } else {
        "retiring consumer"
    };
    log::notice(
        ctx,
        &format!(
            "{what} '{}' stream='{}' group='{}' moved={} dropped={} remaining={} to='{}'",
            text::printable(&request.consumer, 200),
            text::printable(&request.key, 200),
            text::printable(&request.group, 200),
            retired.moved.len(),
            retired.dropped.len(),
            retired.remaining,
            text::printable(&request.to, 200),
        ),
    );
}
