//! QUANTUM.RECOVER: one atomic execution of validate, mode guard, claim, delete.
//! Redis runs a module command to completion without serving anyone else, so
//! the check before each delete and the delete itself cannot be separated (S2).

use crate::args::{self, ArgError, RecoverRequest};
use crate::plan::{
    self, ClaimOutcome, ClaimPlan, ClaimRules, DeleteRules, DeletionPlan, Destination, Keepers,
};
use crate::redis_ops::{self, CallerAcl, Group};
use crate::{config, mode};
use redis_module::{Context, RedisError};
use std::collections::HashSet;

/// What one call did (or, with DRYRUN, would do).
#[derive(Debug)]
pub struct Report {
    pub mode: Option<Vec<u8>>,
    pub dry_run: bool,
    pub outcome: ClaimOutcome,
    pub deletions: DeletionPlan,
    pub scanned: usize,
    /// `None` when the end of the PEL was reached.
    pub cursor: Option<String>,
    pub pending: i64,
    pub consumers: usize,
}

pub enum Failure {
    /// The mode guard said no (S3): nothing was touched.
    Refused(String),
    Error(RedisError),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Error(e)
    }
}

pub fn parse(argv: &[&[u8]]) -> Result<RecoverRequest, RedisError> {
    args::parse_recover(argv, &config::recover_defaults()).map_err(|e| match e {
        ArgError::WrongArity => RedisError::WrongArity,
        ArgError::Invalid(message) => RedisError::String(message),
    })
}

pub fn recover(ctx: &Context, argv: &[&[u8]]) -> Result<Report, Failure> {
    let request = parse(argv)?;
    let acl = CallerAcl::of(ctx)?;
    acl.check_read_key(&request.mode_key, "the mode key")?;
    let mode_value = redis_ops::read_mode(ctx, &request.mode_key)?;
    if !request.dry_run {
        mode::check(
            &mode_value,
            &config::ALLOWED_MODES.get_string(),
            &request.mode_key,
        )
        .map_err(Failure::Refused)?;
    }
    redis_ops::check_stream(ctx, &request.key)?;

    let group = Group::new(ctx, &request.key, &request.group);
    let keepers = Keepers {
        to: request.to.clone(),
        quarantine: request.quarantine.clone(),
    };
    let pel = group.pending_after(request.cursor, request.scan as usize)?;
    let claim_plan = plan::plan_claims(&pel, &claim_rules(&request), &keepers);

    let (outcome, consumers) = if request.dry_run {
        let outcome = predict_claims(&group, &claim_plan)?;
        let consumers =
            plan::consumers_after_claims(group.consumers()?, &claim_plan, &outcome, &keepers);
        (outcome, consumers)
    } else {
        if !claim_plan.moves.is_empty() {
            group.check_delete_allowed(&acl)?;
        }
        let outcome = execute_claims(&group, &claim_plan, &request)?;
        // Read after the claims: a zombie they emptied is deleted by this same call.
        (outcome, group.consumers()?)
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
                ctx.log_warning(&crate::text::log_safe(&format!(
                    "consumer '{}' had {lost} pending entries when deleted",
                    crate::text::printable(name, 200)
                )));
            }
        }
    }

    Ok(Report {
        mode: mode_value.as_bytes().map(<[u8]>::to_vec),
        dry_run: request.dry_run,
        outcome,
        scanned: claim_plan.scanned,
        cursor: claim_plan.cursor,
        pending: consumers.iter().map(|c| c.pending).sum(),
        consumers: consumers.len() - deletions.delete.len(),
        deletions,
    })
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
    plan: &ClaimPlan,
    request: &RecoverRequest,
) -> Result<ClaimOutcome, RedisError> {
    let mut moved: HashSet<String> = HashSet::new();
    for (destination, consumer) in [
        (Destination::Target, &request.to),
        (Destination::Quarantine, &request.quarantine),
    ] {
        moved.extend(group.claim(consumer, request.min_idle, &plan.ids_to(destination))?);
    }
    // XCLAIM leaves out exactly the entries it removed from the PEL because their
    // stream entry is gone: it checks existence before idle time, and every
    // planned entry was idle enough a moment ago in this same call.
    Ok(ClaimOutcome::from_plan(plan, |id| !moved.contains(id)))
}

/// DRYRUN's view of the claim step: an entry whose stream entry is gone would be dropped.
fn predict_claims(group: &Group, plan: &ClaimPlan) -> Result<ClaimOutcome, RedisError> {
    let mut gone = HashSet::new();
    for m in &plan.moves {
        if !group.entry_exists(&m.id)? {
            gone.insert(m.id.as_str());
        }
    }
    Ok(ClaimOutcome::from_plan(plan, |id| gone.contains(id)))
}
