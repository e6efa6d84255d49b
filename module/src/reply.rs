//! Reply shaping: maps go out with `RM_ReplyWithMap`, which is a map under
//! RESP3 and a flat key/value array under RESP2 (like XINFO), keys in the order
//! given here, as SPEC.md lists them. Values borrow what the call already holds
//! and go straight to the RM_ReplyWith* functions: a recovery's reply carries up
//! to COUNT IDs, and copying each one showed in the profile.
//!
//! Hand-written rather than redis-module's `RedisValue`, because 2.0.8's map
//! types cannot keep SPEC's key order: `RedisValue::Map` is a `HashMap` (any
//! order) and `RedisValue::OrderedMap` a `BTreeMap` (alphabetical), and both
//! own copies of every key and value.

use redis_module::{raw, Context};
use std::os::raw::{c_char, c_long};

pub enum Reply<'a> {
    Int(i64),
    Nil,
    Bytes(&'a [u8]),
    Map(Vec<(&'static str, Reply<'a>)>),
    List(Vec<Reply<'a>>),
}

impl<'a> Reply<'a> {
    pub fn nil_or_bytes(b: Option<&'a [u8]>) -> Reply<'a> {
        b.map_or(Reply::Nil, Reply::Bytes)
    }

    pub fn ids(ids: &'a [String]) -> Reply<'a> {
        Reply::List(ids.iter().map(|id| Reply::Bytes(id.as_bytes())).collect())
    }

    pub fn names(names: &'a [Vec<u8>]) -> Reply<'a> {
        Reply::List(names.iter().map(|n| Reply::Bytes(n)).collect())
    }
}

fn bytes(ctx: &Context, b: &[u8]) {
    raw::reply_with_string_buffer(ctx.ctx, b.as_ptr().cast::<c_char>(), b.len());
}

fn send(ctx: &Context, reply: &Reply) {
    match reply {
        Reply::Int(n) => {
            raw::reply_with_long_long(ctx.ctx, *n);
        }
        Reply::Nil => {
            raw::reply_with_null(ctx.ctx);
        }
        Reply::Bytes(b) => bytes(ctx, b),
        Reply::Map(fields) => {
            raw::reply_with_map(ctx.ctx, fields.len() as c_long);
            for (key, value) in fields {
                bytes(ctx, key.as_bytes());
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

/// Sends `reply` to the caller.
pub fn reply(ctx: &Context, reply: Reply) {
    send(ctx, &reply);
}
