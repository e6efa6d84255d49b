//! Reply shaping: maps go out with `RM_ReplyWithMap`, which is a map under
//! RESP3 and a flat key/value array under RESP2 (like XINFO), keys in the order
//! given here, as SPEC.md lists them.

use redis_module::{raw, Context, RedisResult, RedisValue};
use std::os::raw::c_long;

pub enum Reply {
    Value(RedisValue),
    Map(Vec<(&'static str, Reply)>),
    List(Vec<Reply>),
}

impl Reply {
    pub fn int(n: i64) -> Reply {
        Reply::Value(RedisValue::Integer(n))
    }

    pub fn bytes(b: &[u8]) -> Reply {
        Reply::Value(RedisValue::StringBuffer(b.to_vec()))
    }

    pub fn nil_or_bytes(b: Option<&[u8]>) -> Reply {
        b.map_or(Reply::Value(RedisValue::Null), Reply::bytes)
    }

    pub fn ids(ids: &[String]) -> Reply {
        Reply::List(ids.iter().map(|id| Reply::bytes(id.as_bytes())).collect())
    }

    pub fn names(names: &[Vec<u8>]) -> Reply {
        Reply::List(names.iter().map(|n| Reply::bytes(n)).collect())
    }
}

fn send(ctx: &Context, reply: Reply) {
    match reply {
        Reply::Value(value) => {
            ctx.reply(Ok(value));
        }
        Reply::Map(fields) => {
            raw::reply_with_map(ctx.ctx, fields.len() as c_long);
            for (key, value) in fields {
                ctx.reply(Ok(RedisValue::BulkString(key.to_string())));
                send(ctx, value);
            }
        }
        Reply::List(items) => {
            raw::reply_with_array(ctx.ctx, items.len() as c_long);
            for item in items {
                send(ctx, item);
            }
        }
    }
}

/// Sends `reply` and tells the command glue nothing is left to send.
pub fn reply(ctx: &Context, reply: Reply) -> RedisResult {
    send(ctx, reply);
    Ok(RedisValue::NoReply)
}
