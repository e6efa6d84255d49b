//! QUANTUM.RECOVER: one atomic execution of validate, mode guard, claim, delete.
//! Redis runs a module command to completion without serving anyone else, so
//! the check before each delete and the delete itself cannot be separated (S2).

use crate::args::{self, RecoverRequest, StreamId};
use crate::dead_letter;
use crate::plan::dead_letter::CopyPlan;
use crate::plan::{
    self, ClaimOutcome, ClaimPlan, ClaimRules, DeleteRules, DeletionPlan, Destination, Keepers,
    PendingEntry,
};
use crate::redis_ops::{self, CallerAcl, DeadLetterStream, Group, Internal};
use crate::reply::{self, Reply};
use crate::shared::{self, Failure};
use crate::stats::{self, bump, STATS};
use crate::{log, text};
use quantum_protocol::{key, CURSOR_END};
use redis_module::{Context, RedisError};
use std::collections::HashSet;
use std::time::Instant;

/// What one call did (or, with DRYRUN, would do).
#[derive(Debug)]
pub struct Report {
    pub mode: Option<Vec<u8>>,
    pub dry_run: bool,
    pub outcome: ClaimOutcome,
    /// Empty when the consumer pass was skipped.
    pub deletions: DeletionPlan,
    /// `None` when the consumer pass was skipped (DELETELIMIT 0).
    pub kept_total: Option<usize>,
    pub scanned: usize,
    /// `None` when the end of the PEL was reached.
    pub cursor: Option<String>,
    pub pending: i64,
    pub consumers: i64,
    /// With a dead-letter stream: what was (DRYRUN: would be) copied and what waits.
    pub dead_letter: Option<CopyPlan>,
}

/// ```text
/// QUANTUM.RECOVER key group [TO consumer] [MINIDLE ms] [COUNT n] [SCAN n] [CURSOR id]
///                 [ZOMBIEIDLE ms] [DELETELIMIT n] [MAXDELIVERIES n] [QUARANTINE consumer]
///                 [MODEKEY key] [DEADLETTER key] [DRYRUN]
/// ```
/// Moves entries idle ≥ MINIDLE from dead consumers to TO (or QUARANTINE when
/// delivered ≥ MAXDELIVERIES times, with a copy XADDed to the DEADLETTER
/// stream when there is one), then deletes consumers idle > ZOMBIEIDLE
/// with nothing pending. Mode-guarded unless DRYRUN. Replies with a map:
/// mode, dry-run, claimed, quarantined, dropped, deleted, kept (at most
/// `plan::KEPT_LIMIT` names), scanned, cursor, pending, consumers, kept-total,
/// and with a dead-letter stream dead-lettered and dead-letter-deferred (quarantine
/// moves left with their owner this time: their copies would pass maxmemory).
/// A real call with DELETELIMIT 0 skips the pass over every consumer: kept is
/// empty, kept-total nil, pending and consumers come from XINFO GROUPS.
pub fn run(ctx: &Context, argv: &[&[u8]]) -> Result<(), Failure> {
    let started = Instant::now();
    let request = shared::parse(argv, args::parse_recover)?;
    let report = recover(ctx, argv, &request)?;
    record(ctx, &request, &report, started);
    reply::reply(ctx, reply_of(&report));
    Ok(())
}

pub fn mode_key_pos(argv: &[&[u8]]) -> Option<usize> {
    shared::parse(argv, args::parse_recover)
        .ok()?
        .mode_key
        .argv_pos
}

pub fn dead_letter_pos(argv: &[&[u8]]) -> Option<usize> {
    shared::parse(argv, args::parse_recover)
        .ok()?
        .dead_letter?
        .argv_pos
}

fn recover(ctx: &Context, argv: &[&[u8]], request: &RecoverRequest) -> Result<Report, Failure> {
    let memory_use = match request.dead_letter {
        Some(_) => redis_ops::memory_use(ctx)?,
        None => None,
    };
    let acl = CallerAcl::of(ctx)?;
    let mode_value = if request.dry_run {
        shared::read_mode(ctx, &acl, argv, &request.mode_key)?
    } else {
        shared::guard_mode(ctx, &acl, argv, &request.mode_key)?
    };
    redis_ops::check_stream(ctx, &request.key)?;
    let group = Group::new(ctx, &request.key, &request.group);
    group.check_allowed(&acl, &internal_commands(request))?;
    if let Some(dead_letter) = &request.dead_letter {
        shared::check_configured_key(ctx, &acl, argv, dead_letter_key(dead_letter))?;
        DeadLetterStream::new(ctx, &dead_letter.name, dead_letter.maxlen).check(&acl)?;
    }
    let keepers = Keepers {
        to: request.to.clone(),
        quarantine: request.quarantine.clone(),
    };
    let rules = claim_rules(request);
    let pel = read_pel(&group, request.cursor, &rules, &keepers)?;
    let claim_plan = plan::plan_claims(pel.entries, &rules, &keepers, pel.ended);
    // Before any change: the copies' entries are read and what does not fit waits.
    let copies = match &request.dead_letter {
        Some(dead_letter) => Some(dead_letter::prepare(
            ctx,
            &group,
            (&request.key, &request.group),
            &claim_plan,
            dead_letter::Target {
                dead_letter,
                memory_use,
            },
        )?),
        None => None,
    };
    let claim_plan = match &copies {
        Some(copies) => claim_plan.without(&copies.plan.deferred),
        None => claim_plan,
    };

    let mut report = Report {
        mode: mode_value.as_bytes().map(<[u8]>::to_vec),
        dry_run: request.dry_run,
        outcome: ClaimOutcome::default(),
        deletions: DeletionPlan::default(),
        kept_total: None,
        scanned: claim_plan.scanned,
        cursor: claim_plan.cursor.clone(),
        pending: 0,
        consumers: 0,
        dead_letter: copies.as_ref().map(|c| c.plan.clone()),
    };
    let consumers = if request.dry_run {
        report.outcome = predict_claims(&group, &claim_plan)?;
        plan::consumers_after_claims(group.consumers()?, &claim_plan, &report.outcome, &keepers)
    } else {
        report.outcome = execute_claims(&group, claim_plan, request)?;
        if let (Some(dead_letter), Some(copies)) = (&request.dead_letter, &copies) {
            dead_letter::write(ctx, dead_letter, copies)?;
        }
        if !consumer_pass(request) {
            let info = group.info()?;
            (report.pending, report.consumers) = (info.pending, info.consumers);
            return Ok(report);
        }
        // Read after the claims: a zombie they emptied is deleted by this same call.
        group.consumers()?
    };

    let delete_rules = DeleteRules {
        zombie_idle_ms: request.zombie_idle,
        delete_limit: request.delete_limit as usize,
    };
    let deletions = plan::plan_deletions(&consumers, &delete_rules, &keepers);
    if !request.dry_run {
        for name in &deletions.delete {
            let lost = group.delete_consumer(name)?;
            if lost != 0 {
                // Cannot happen: the count was 0 a moment ago in this same atomic call.
                log::warning(
                    ctx,
                    &format!(
                        "consumer '{}' had {lost} pending entries when deleted",
                        text::printable(name, 200)
                    ),
                );
            }
        }
    }
    report.pending = consumers.iter().map(|c| c.pending).sum();
    report.consumers = (consumers.len() - deletions.delete.len()) as i64;
    report.kept_total = Some(deletions.kept_total);
    report.deletions = deletions;
    Ok(report)
}

/// The configured dead-letter key as `shared::check_configured_key` takes it.
fn dead_letter_key(dead_letter: &args::DeadLetter) -> shared::OptionalKey<'_> {
    shared::OptionalKey {
        keyword: quantum_protocol::keyword::DEADLETTER,
        config: quantum_protocol::config::DEAD_LETTER,
        purpose: "write the dead-letter stream",
        name: &dead_letter.name,
        argv_pos: dead_letter.argv_pos,
    }
}

/// Whether the call looks at every consumer: it must to delete or to predict
/// (DRYRUN); a real call with DELETELIMIT 0 cannot delete, so it skips the
/// pass, whose cost grows with the group's consumers, not with COUNT (S5).
fn consumer_pass(request: &RecoverRequest) -> bool {
    request.dry_run || request.delete_limit > 0
}

/// Every stream command this call may run, checked against the caller's ACL
/// before the first one runs: a refusal half way would leave claims done and
/// unreported (S7).
fn internal_commands(request: &RecoverRequest) -> Vec<Internal> {
    let mut commands = vec![Internal::Pending];
    if request.dry_run {
        commands.extend([Internal::Range, Internal::InfoConsumers]);
    } else {
        commands.extend([Internal::CreateConsumer, Internal::Claim]);
        if request.dead_letter.is_some() {
            // The quarantined entries are read for their copies.
            commands.push(Internal::Range);
        }
        if consumer_pass(request) {
            commands.extend([Internal::InfoConsumers, Internal::DeleteConsumer]);
        } else {
            commands.push(Internal::InfoGroups);
        }
    }
    commands
}

/// Smallest XPENDING page, so COUNT 1 with a large SCAN does not take a call per entry.
const MIN_PAGE: usize = 64;

/// The part of the PEL one call looks at.
struct PelSlice {
    entries: Vec<PendingEntry>,
    /// Whether the slice reaches the end of the PEL.
    ended: bool,
}

/// Reads the PEL after `cursor` in pages only as far as the plan can use it:
/// until COUNT entries the claim wants, SCAN entries, or the end of the PEL.
/// A backlog's first page usually suffices, where reading all SCAN entries at
/// once would parse ten times what COUNT can move.
fn read_pel(
    group: &Group,
    cursor: Option<StreamId>,
    rules: &ClaimRules,
    keepers: &Keepers,
) -> Result<PelSlice, RedisError> {
    let page = rules.count.max(MIN_PAGE);
    let (mut pel, mut after, mut wanted) = (Vec::new(), cursor, 0);
    loop {
        let asked = page.min(rules.scan - pel.len());
        let got = group.pending(after, asked, None)?;
        let ended = got.len() < asked;
        wanted += got.iter().filter(|e| rules.wants(e, keepers)).count();
        if let Some(last) = got.last() {
            after = Some(
                StreamId::parse(last.id.as_bytes())
                    .ok_or(RedisError::Str("ERR unexpected PEL entry ID"))?,
            );
        }
        pel.extend(got);
        if ended || wanted >= rules.count || pel.len() >= rules.scan {
            return Ok(PelSlice {
                entries: pel,
                ended,
            });
        }
    }
}

fn claim_rules(request: &RecoverRequest) -> ClaimRules {
    ClaimRules {
        min_idle_ms: request.min_idle,
        count: request.count as usize,
        scan: request.scan as usize,
        max_deliveries: (request.max_deliveries > 0).then_some(request.max_deliveries),
    }
}

fn execute_claims(
    group: &Group,
    plan: ClaimPlan,
    request: &RecoverRequest,
) -> Result<ClaimOutcome, RedisError> {
    // Owned, to hand the plan's IDs on to the outcome; only a gone entry is copied.
    let mut gone: HashSet<String> = HashSet::new();
    for (destination, consumer) in [
        (Destination::Target, &request.to),
        (Destination::Quarantine, &request.quarantine),
    ] {
        let ids = plan.ids_to(destination);
        if ids.is_empty() {
            continue;
        }
        // Explicitly, so replicas and the AOF get it even if every entry is gone.
        group.create_consumer(consumer)?;
        let moved = group.claim(consumer, request.min_idle, &ids)?;
        gone.extend(
            ids.iter()
                .zip(moved)
                .filter(|(_, moved)| !moved)
                .map(|(id, _)| id.to_string()),
        );
    }
    // XCLAIM leaves out exactly the entries it removed from the PEL because their
    // stream entry is gone: it checks existence before idle time, and every
    // planned entry was idle enough a moment ago in this same call.
    Ok(ClaimOutcome::from_plan(plan, |id| gone.contains(id)))
}

/// DRYRUN's view of the claim step: an entry whose stream entry is gone would be dropped.
fn predict_claims(group: &Group, plan: &ClaimPlan) -> Result<ClaimOutcome, RedisError> {
    let mut gone = HashSet::new();
    for m in &plan.moves {
        if !group.entry_exists(&m.id)? {
            gone.insert(m.id.as_str());
        }
    }
    Ok(ClaimOutcome::from_plan(plan.clone(), |id| {
        gone.contains(id)
    }))
}

fn reply_of(report: &Report) -> Reply<'_> {
    let mut fields = vec![
        (key::MODE, Reply::nil_or_bytes(report.mode.as_deref())),
        (key::DRY_RUN, Reply::Int(report.dry_run.into())),
        (key::CLAIMED, Reply::ids(&report.outcome.claimed)),
        (key::QUARANTINED, Reply::ids(&report.outcome.quarantined)),
        (key::DROPPED, Reply::ids(&report.outcome.dropped)),
        (key::DELETED, Reply::names(&report.deletions.delete)),
        (key::KEPT, Reply::names(&report.deletions.kept)),
        (key::SCANNED, Reply::Int(report.scanned as i64)),
        (
            key::CURSOR,
            Reply::Bytes(report.cursor.as_deref().unwrap_or(CURSOR_END).as_bytes()),
        ),
        (key::PENDING, Reply::Int(report.pending)),
        (key::CONSUMERS, Reply::Int(report.consumers)),
        (
            key::KEPT_TOTAL,
            report
                .kept_total
                .map_or(Reply::Nil, |n| Reply::Int(n as i64)),
        ),
    ];
    if let Some(copies) = &report.dead_letter {
        fields.push((key::DEAD_LETTERED, Reply::ids(&copies.copy)));
        fields.push((key::DEAD_LETTER_DEFERRED, Reply::ids(&copies.deferred)));
    }
    Reply::Map(fields)
}

/// Counts a completed call in `INFO quantum` and logs what a real one changed.
fn record(ctx: &Context, request: &RecoverRequest, report: &Report, started: Instant) {
    if report.dry_run {
        bump(&STATS.dry_runs, 1);
        return;
    }
    let outcome = &report.outcome;
    let deleted = &report.deletions.delete;
    bump(&STATS.runs, 1);
    bump(&STATS.claimed, outcome.claimed.len());
    bump(&STATS.quarantined, outcome.quarantined.len());
    bump(&STATS.dropped, outcome.dropped.len());
    bump(&STATS.deleted, deleted.len());
    if let Some(copies) = &report.dead_letter {
        bump(&STATS.dead_lettered, copies.copy.len());
        bump(&STATS.dead_letter_deferred, copies.deferred.len());
        if !copies.deferred.is_empty() {
            log::warning(
                ctx,
                &format!(
                    "maxmemory: {} poison entries of stream='{}' group='{}' stay with their owners \
                     until their dead-letter copies fit",
                    copies.deferred.len(),
                    text::printable(&request.key, 200),
                    text::printable(&request.group, 200),
                ),
            );
        }
    }
    let last = stats::LastRun {
        unix_ms: stats::now_unix_ms(),
        claimed: outcome.claimed.len(),
        quarantined: outcome.quarantined.len(),
        dropped: outcome.dropped.len(),
        deleted: deleted.len(),
    };
    stats::record_run(&request.key, &request.group, last, started);

    if outcome.claimed.is_empty()
        && outcome.quarantined.is_empty()
        && outcome.dropped.is_empty()
        && deleted.is_empty()
    {
        return;
    }
    // A drain's intermediate batches (no consumer step) that only claimed go
    // to `verbose`: a million-entry drain would write 10,000 notice lines, each
    // opening and appending to the log file inside the call. Anything else,
    // and the drain's first and closing calls, stay at `notice`.
    let claims_only = outcome.quarantined.is_empty() && outcome.dropped.is_empty();
    let log = match claims_only && !consumer_pass(request) {
        true => log::verbose,
        false => log::notice,
    };
    log(
        ctx,
        &format!(
            "recovered stream='{}' group='{}' claimed={} quarantined={} dropped={} deleted={} kept={} dead_lettered={} deleted_consumers=[{}]",
            text::printable(&request.key, 200),
            text::printable(&request.group, 200),
            outcome.claimed.len(),
            outcome.quarantined.len(),
            outcome.dropped.len(),
            deleted.len(),
            report.kept_total.unwrap_or(0),
            report.dead_letter.as_ref().map_or(0, |c| c.copy.len()),
            text::name_list(deleted, 20),
        ),
    );
}
