//! QUANTUM.RETIRE: a stopping consumer hands its pending entries to TO, at most
//! COUNT per call, and is deleted by the call that leaves it empty.

use crate::args::{self, RetireRequest, StreamId};
use crate::config;
use crate::plan::retire::{self as step_plan, Remaining};
use crate::plan::PendingEntry;
use crate::redis_ops::{self, CallerAcl, Group, Internal};
use crate::reply::{self, Reply};
use crate::shared::{self, Failure};
use crate::stats::{bump, STATS};
use crate::{log, text};
use quantum_protocol::key;
use redis_module::{Context, RedisError};
use std::time::Instant;

/// Every command a call may run, checked against the caller's ACL before the
/// first change (S7). No XINFO CONSUMERS: its cost grows with the group's
/// consumer count, and a zombie-heavy group has 100,000 of them.
const INTERNAL_COMMANDS: [Internal; 4] = [
    Internal::Pending,
    Internal::CreateConsumer,
    Internal::Claim,
    Internal::DeleteConsumer,
];

/// What one call did.
struct Retired {
    moved: Vec<String>,
    dropped: Vec<String>,
    remaining: Remaining,
    deleted: bool,
}

/// ```text
/// QUANTUM.RETIRE key group consumer [TO consumer] [COUNT n] [MODEKEY key]
/// ```
/// Moves up to COUNT of `consumer`'s pending entries, lowest IDs first and
/// whatever their idle time, to TO (entries whose stream entry is gone leave
/// the PEL instead); the call that leaves the consumer empty deletes it. A
/// bigger backlog takes several calls, each atomic and O(COUNT): it reads only
/// the consumer's own PEL, never the group's consumer list (S5). A call also
/// stops claiming before it would run past `quantum.retire-budget` ms (pages
/// sized by the cost per entry so far; the first entry always moves), since
/// big stream entries and nodes make each claim dearer. Mode-guarded.
/// Replies with a map: moved (IDs), dropped (IDs), remaining (entries the
/// consumer still holds: exact up to as many as this call took from it, COUNT
/// unless the budget stopped it; else that number + 1 as a lower bound),
/// remaining-exact (0/1), deleted (0/1; 0 when there was no such consumer).
pub fn run(ctx: &Context, argv: &[&[u8]]) -> Result<(), Failure> {
    let stop_claiming_at = Instant::now() + config::retire_budget();
    let request = shared::parse(argv, args::parse_retire)?;
    let acl = CallerAcl::of(ctx)?;
    shared::guard_mode(ctx, &acl, argv, &request.mode_key)?;
    redis_ops::check_stream(ctx, &request.key)?;
    let group = Group::new(ctx, &request.key, &request.group);
    group.check_allowed(&acl, &INTERNAL_COMMANDS)?;

    let first_page = group.pending(
        None,
        step_plan::first_page_size(request.count),
        Some(&request.consumer),
    )?;
    let retired = if first_page.is_empty() {
        retire_empty(&group, &request.consumer)?
    } else {
        retire_step(ctx, &group, &request, first_page, stop_claiming_at)?
    };

    bump(&STATS.retires, 1);
    bump(&STATS.claimed, retired.moved.len());
    bump(&STATS.dropped, retired.dropped.len());
    bump(&STATS.deleted, usize::from(retired.deleted));
    log(ctx, &request, &retired);
    let fields = vec![
        (key::MOVED, Reply::ids(&retired.moved)),
        (key::DROPPED, Reply::ids(&retired.dropped)),
        (key::REMAINING, Reply::Int(retired.remaining.entries)),
        (
            key::REMAINING_EXACT,
            Reply::Int(retired.remaining.exact.into()),
        ),
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

/// A consumer whose PEL read empty: it holds nothing, or does not exist (XPENDING
/// cannot tell). XGROUP CREATECONSUMER tells, in O(log consumers): 0 when it
/// exists. Then DELCONSUMER deletes the empty consumer, or the one the probe
/// just made; both writes are replicated, so replicas and the AOF end where
/// the primary does (a missing consumer: created and deleted in one MULTI).
fn retire_empty(group: &Group, consumer: &[u8]) -> Result<Retired, RedisError> {
    let existed = !group.create_consumer(consumer)?;
    group.delete_consumer(consumer)?;
    Ok(Retired {
        moved: Vec::new(),
        dropped: Vec::new(),
        remaining: Remaining::NONE,
        deleted: existed,
    })
}

/// Moves the consumer's first entries to TO (see `claim_pages`), then looks
/// at most one entry more than it moved further to say what stays, and
/// deletes the consumer only when nothing does.
fn retire_step(
    ctx: &Context,
    group: &Group,
    request: &RetireRequest,
    first_page: Vec<PendingEntry>,
    stop_claiming_at: Instant,
) -> Result<Retired, RedisError> {
    // Explicitly, so replicas and the AOF get TO even if every entry is gone.
    group.create_consumer(&request.to)?;
    let pages = claim_pages(group, request, first_page, stop_claiming_at)?;
    let remaining = match pages.last_id {
        // As far as this call claimed (COUNT, unless the budget stopped it):
        // the look-ahead then costs a fraction of the claims, whatever COUNT is.
        Some(last) => {
            let sent = pages.moved.len() + pages.dropped.len();
            let seen = group.pending_len(last, sent + 1, &request.consumer)?;
            Remaining::from_look_ahead(seen, sent)
        }
        None => Remaining::NONE,
    };
    if remaining.empties() {
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
        moved: pages.moved,
        dropped: pages.dropped,
        remaining,
        deleted: remaining.empties(),
    })
}

/// What `claim_pages` sent to XCLAIM.
struct ClaimedPages {
    moved: Vec<String>,
    dropped: Vec<String>,
    /// The last ID sent, when the consumer may hold more after it; None when
    /// a page came back short (its PEL ended there).
    last_id: Option<StreamId>,
}

/// Claims the consumer's entries for TO a page (XPENDING, then XCLAIM) at a
/// time, from `first_page`, until COUNT were sent, its PEL ends, or the next
/// page would not fit before `stop_claiming_at` at the cost per entry so far
/// (`plan::retire::next_page_size`). The first page always moves, so every
/// call makes progress.
fn claim_pages(
    group: &Group,
    request: &RetireRequest,
    first_page: Vec<PendingEntry>,
    stop_claiming_at: Instant,
) -> Result<ClaimedPages, RedisError> {
    let mut pages = ClaimedPages {
        moved: Vec::new(),
        dropped: Vec::new(),
        last_id: None,
    };
    let started = Instant::now();
    let mut page = first_page;
    // What `run` asked XPENDING for.
    let mut asked = step_plan::first_page_size(request.count);
    while !page.is_empty() {
        let ids: Vec<&str> = page.iter().map(|e| e.id.as_str()).collect();
        let claimed = group.claim(&request.to, 0, &ids)?;
        let (moved, dropped) = step_plan::split_claimed(&page, &claimed);
        pages.moved.extend(moved);
        pages.dropped.extend(dropped);
        if page.len() < asked {
            pages.last_id = None;
            break;
        }
        let last = page.last().and_then(|e| StreamId::parse(e.id.as_bytes()));
        pages.last_id = Some(last.ok_or(RedisError::Str("ERR unexpected reply from XPENDING"))?);
        let now = Instant::now();
        asked = step_plan::next_page_size(
            request.count,
            pages.moved.len() + pages.dropped.len(),
            now - started,
            stop_claiming_at.saturating_duration_since(now),
        );
        if asked == 0 {
            break;
        }
        page = group.pending(pages.last_id, asked, Some(&request.consumer))?;
    }
    Ok(pages)
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
            "{what} '{}' stream='{}' group='{}' moved={} dropped={} remaining={}{} to='{}'",
            text::printable(&request.consumer, 200),
            text::printable(&request.key, 200),
            text::printable(&request.group, 200),
            retired.moved.len(),
            retired.dropped.len(),
            retired.remaining.entries,
            if retired.remaining.exact { "" } else { "+" },
            text::printable(&request.to, 200),
        ),
    );
}
