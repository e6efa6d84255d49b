//! QUANTUM.RETIRE: a stopping consumer hands every pending entry to TO and is
//! deleted, in one atomic call.

use crate::args::{self, RetireRequest};
use crate::guard::{self, Failure};
use crate::redis_ops::{self, CallerAcl, Group, Internal};
use crate::reply::{self, Reply};
use crate::stats::{bump, STATS};
use crate::text;
use redis_module::{Context, RedisError};
use std::collections::HashSet;

const INTERNAL_COMMANDS: [Internal; 5] = [
    Internal::InfoConsumers,
    Internal::Pending,
    Internal::CreateConsumer,
    Internal::Claim,
    Internal::DeleteConsumer,
];

/// PEL entries moved per XCLAIM; a retiring consumer rarely holds more than one page.
const PAGE: usize = 1_000;

/// ```text
/// QUANTUM.RETIRE key group consumer [TO consumer] [MODEKEY key]
/// ```
/// Moves all of `consumer`'s pending entries, whatever their idle time, to TO
/// (entries whose stream entry is gone leave the PEL instead), then deletes
/// the consumer. Mode-guarded. Replies with a map: moved (IDs), dropped (IDs),
/// deleted (0/1; 0 when there was no such consumer).
pub fn run(ctx: &Context, argv: &[&[u8]]) -> Result<(), Failure> {
    let request = guard::parse(argv, args::parse_retire)?;
    let acl = CallerAcl::of(ctx)?;
    guard::read_mode(ctx, &acl, &request.mode_key, true)?;
    redis_ops::check_stream(ctx, &request.key)?;
    let group = Group::new(ctx, &request.key, &request.group);
    // Everything the call may run, before its first change (S7).
    group.check_allowed(&acl, &INTERNAL_COMMANDS)?;

    let held = group
        .consumers()?
        .into_iter()
        .find(|c| c.name == request.consumer);
    let (moved, dropped, deleted) = match held {
        None => (Vec::new(), Vec::new(), false),
        Some(consumer) => {
            if consumer.pending > 0 {
                // Explicitly, so replicas and the AOF get TO even if every entry is gone.
                group.create_consumer(&request.to)?;
            }
            let (moved, dropped) = hand_over(&group, &request, consumer.pending)?;
            group.delete_consumer(&request.consumer)?;
            (moved, dropped, true)
        }
    };

    bump(&STATS.retires, 1);
    bump(&STATS.claimed, moved.len());
    bump(&STATS.dropped, dropped.len());
    bump(&STATS.deleted, usize::from(deleted));
    if deleted {
        guard::log_notice(
            ctx,
            &format!(
                "retired consumer '{}' stream='{}' group='{}' moved={} dropped={} to='{}'",
                text::printable(&request.consumer, 200),
                text::printable(&request.key, 200),
                text::printable(&request.group, 200),
                moved.len(),
                dropped.len(),
                text::printable(&request.to, 200),
            ),
        );
    }
    let fields = vec![
        ("moved", Reply::ids(&moved)),
        ("dropped", Reply::ids(&dropped)),
        ("deleted", Reply::Int(deleted.into())),
    ];
    reply::reply(ctx, Reply::Map(fields));
    Ok(())
}

pub fn mode_key_pos(argv: &[&[u8]]) -> Option<usize> {
    guard::parse(argv, args::parse_retire)
        .ok()?
        .mode_key
        .argv_pos
}

/// Moves the consumer's PEL to TO page by page until it is empty; returns (moved, dropped).
fn hand_over(
    group: &Group,
    request: &RetireRequest,
    pending: i64,
) -> Result<(Vec<String>, Vec<String>), RedisError> {
    let (mut moved, mut dropped) = (Vec::new(), Vec::new());
    // Each page empties PAGE entries from the consumer's PEL; the bound only guards against a surprise.
    let max_pages = pending.max(0) as usize / PAGE + 2;
    for _ in 0..max_pages {
        let page = group.pending(None, PAGE, Some(&request.consumer))?;
        if page.is_empty() {
            return Ok((moved, dropped));
        }
        let ids: Vec<&str> = page.iter().map(|e| e.id.as_str()).collect();
        let claimed: HashSet<String> = group.claim(&request.to, 0, &ids)?.into_iter().collect();
        for id in ids {
            let list = if claimed.contains(id) {
                &mut moved
            } else {
                &mut dropped
            };
            list.push(id.to_string());
        }
    }
    Err(RedisError::Str(
        "ERR the consumer's pending entries did not empty; it was not deleted",
    ))
}
