//! Reply shaping: a map under RESP3, a flat key/value array under RESP2 (like
//! XINFO), keys in the order SPEC.md gives. `RM_ReplyWithMap` does both.

use crate::recover::Report;
use redis_module::{raw, Context, RedisResult, RedisValue};
use std::os::raw::c_long;

fn ids(ids: &[String]) -> RedisValue {
    RedisValue::Array(
        ids.iter()
            .map(|id| RedisValue::BulkString(id.clone()))
            .collect(),
    )
}

fn names(names: &[Vec<u8>]) -> RedisValue {
    RedisValue::Array(
        names
            .iter()
            .map(|n| RedisValue::StringBuffer(n.clone()))
            .collect(),
    )
}

/// Sends `fields` as an ordered map and tells the caller nothing is left to send.
pub fn ordered_map(ctx: &Context, fields: Vec<(&str, RedisValue)>) -> RedisResult {
    raw::reply_with_map(ctx.ctx, fields.len() as c_long);
    for (key, value) in fields {
        ctx.reply(Ok(RedisValue::BulkString(key.to_string())));
        ctx.reply(Ok(value));
    }
    Ok(RedisValue::NoReply)
}

pub fn recover_fields(report: &Report) -> Vec<(&'static str, RedisValue)> {
    vec![
        (
            "mode",
            report
                .mode
                .clone()
                .map_or(RedisValue::Null, RedisValue::StringBuffer),
        ),
        ("dry-run", RedisValue::Integer(report.dry_run.into())),
        ("claimed", ids(&report.outcome.claimed)),
        ("quarantined", ids(&report.outcome.quarantined)),
        ("dropped", ids(&report.outcome.dropped)),
        ("deleted", names(&report.deletions.delete)),
        ("kept", names(&report.deletions.kept)),
        ("scanned", RedisValue::Integer(report.scanned as i64)),
        (
            "cursor",
            RedisValue::BulkString(report.cursor.clone().unwrap_or_else(|| "0-0".into())),
        ),
        ("pending", RedisValue::Integer(report.pending)),
        ("consumers", RedisValue::Integer(report.consumers as i64)),
    ]
}
