//! RECOVER's dead-letter copies (DEADLETTER): before any change, the entries
//! of the quarantine moves are read and the copies planned
//! (`plan::dead_letter`: which fit under `maxmemory`, which wait); after the
//! claims, the copies are appended. All inside the one atomic call.

use crate::args::{DeadLetter, StreamId};
use crate::plan::dead_letter::{self as copy_plan, Candidate, CopyPlan, Header, Room};
use crate::plan::{ClaimPlan, Move};
use crate::redis_ops::{self, DeadLetterStream, Group};
use quantum_protocol::error;
use redis_module::{Context, RedisError, RedisString};

/// The copies one call makes, read and planned before its first change.
pub struct Copies {
    pub plan: CopyPlan,
    /// Header and payload of each ID in `plan.copy`, in the same order.
    entries: Vec<(Header, Vec<RedisString>)>,
}

/// What `prepare` plans from: the dead-letter stream, and how full Redis was
/// when the call started (`redis_ops::memory_use`).
pub struct Target<'a> {
    pub dead_letter: &'a DeadLetter,
    pub memory_use: Option<f32>,
}

/// Reads the entry of every quarantine move in `claims` and plans the copies.
/// A move whose stream entry is gone is no candidate: the claim drops it.
/// Refuses when the dead-letter stream cannot take the copies: XADD failing
/// after the claims would leave moved entries without copies (S7).
pub fn prepare(
    ctx: &Context,
    group: &Group,
    names: (&[u8], &[u8]),
    claims: &ClaimPlan,
    target: Target,
) -> Result<Copies, RedisError> {
    let (stream, group_name) = names;
    let moves: Vec<(StreamId, &Move)> = claims
        .quarantine_moves()
        .map(|m| StreamId::parse(m.id.as_bytes()).map(|id| (id, m)))
        .collect::<Option<_>>()
        .ok_or(RedisError::Str("ERR unexpected PEL entry ID"))?;
    let ids: Vec<StreamId> = moves.iter().map(|(id, _)| *id).collect();
    let mut payloads = group.entries_fields(&ids)?;
    let mut candidates = Vec::new();
    let mut entries = Vec::new();
    for (id, moved) in moves {
        let Some(payload) = payloads.remove(&id) else {
            continue;
        };
        let header = Header::new(stream, group_name, moved);
        candidates.push(Candidate {
            id: moved.id.clone(),
            cost: copy_plan::copy_cost(&header, &payload),
        });
        entries.push((header, payload));
    }
    let room = if candidates.is_empty() {
        Room::Unlimited
    } else {
        redis_ops::memory_room(ctx, target.memory_use)?
    };
    let plan = copy_plan::plan_copies(&candidates, room);
    // The copied IDs are a prefix of the candidates (plan_copies defers the rest).
    entries.truncate(plan.copy.len());
    if !entries.is_empty() {
        check_ids_left(ctx, target.dead_letter, entries.len())?;
    }
    Ok(Copies { plan, entries })
}

/// The dead-letter stream has an ID for each of `copies`.
fn check_ids_left(
    ctx: &Context,
    dead_letter: &DeadLetter,
    copies: usize,
) -> Result<(), RedisError> {
    let stream = DeadLetterStream::new(ctx, &dead_letter.name, dead_letter.maxlen);
    let Some(last) = stream.last_id()? else {
        return Ok(());
    };
    let left = copy_plan::ids_left(last.ms, last.seq);
    if left >= copies as u64 {
        return Ok(());
    }
    Err(RedisError::String(format!(
        "{} {} has {left} IDs left after its last ID {last}, this call would copy {copies}: \
         nothing changed (delete or rename the key, or name another DEADLETTER)",
        error::DEAD_LETTER_FULL,
        crate::text::quote(&dead_letter.name)
    )))
}

/// Appends the planned copies, after their entries moved to QUARANTINE.
pub fn write(ctx: &Context, dead_letter: &DeadLetter, copies: &Copies) -> Result<(), RedisError> {
    let mut appender = DeadLetterStream::new(ctx, &dead_letter.name, dead_letter.maxlen).appender();
    for (header, payload) in &copies.entries {
        appender.append(header.fields(), payload)?;
    }
    Ok(())
}
