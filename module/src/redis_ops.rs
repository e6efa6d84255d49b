//! The thin layer that talks to Redis. Every stream command goes through
//! `call_ext` with the caller's ACL (S7) and errors as replies; writes are
//! replicated to replicas and the AOF (S4). Replies are parsed by field name,
//! never by position, so Redis 7.0 and 7.2+ (which adds `inactive`) both work.

use crate::args::StreamId;
use crate::mode::ModeValue;
use crate::plan::dead_letter::Room;
use crate::plan::{Consumer, PendingEntry};
use quantum_protocol::error;
use redis_module::{
    raw, CallOptions, CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags, ErrorReply,
    KeyType, RedisError, RedisString,
};
use std::collections::HashMap;
use std::os::raw::c_int;
use std::rc::Rc;
use std::sync::OnceLock;

fn unexpected(command: &str) -> RedisError {
    RedisError::String(format!("{} {command}", error::UNEXPECTED_REPLY))
}

/// Reads the mode key without changing it. Its type comes from the key handle;
/// a string's bytes come from GET, because RM_StringDMA (the handle's `read`)
/// unshares an `embstr` or `int` value into `raw` even for reading, which would
/// change the key's OBJECT ENCODING (and memory) on every call, STATUS included.
/// GET costs one RM_Call more (measured in BENCHMARKS.md / the issue-15 report).
pub fn read_mode(ctx: &Context, mode_key: &[u8]) -> Result<ModeValue, RedisError> {
    let name = RedisString::create_from_slice(ctx.ctx, mode_key);
    let key_type = ctx.open_key(&name).key_type();
    Ok(match key_type {
        KeyType::Empty => ModeValue::Missing,
        KeyType::String => ModeValue::Value(get_string(ctx, mode_key)?),
        KeyType::List => ModeValue::NotString("list"),
        KeyType::Hash => ModeValue::NotString("hash"),
        KeyType::Set => ModeValue::NotString("set"),
        KeyType::ZSet => ModeValue::NotString("zset"),
        KeyType::Stream => ModeValue::NotString("stream"),
        KeyType::Module => ModeValue::NotString("module type"),
    })
}

/// GET without the caller's ACL: `shared::read_mode` has already checked read
/// access to the key, and the caller need not be allowed the GET command itself.
fn get_string(ctx: &Context, key: &[u8]) -> Result<Vec<u8>, RedisError> {
    static OPTIONS: OnceLock<CallOptions> = OnceLock::new();
    let options = OPTIONS.get_or_init(|| CallOptionsBuilder::new().errors_as_replies().build());
    let result: CallResult<'static> = ctx.call_ext("GET", options, &[key]);
    match result {
        Ok(CallReply::String(value)) => Ok(value.as_bytes().to_vec()),
        // The server's own words say why (e.g. Valkey refusing a key of
        // another slot after a script touched one: review r15 F4).
        Err(e) => Err(call_error("GET", &e)),
        _ => Err(unexpected("GET")),
    }
}

/// The key must hold a stream; the group is checked by the first stream command (NOGROUP).
pub fn check_stream(ctx: &Context, key: &[u8]) -> Result<(), RedisError> {
    let name = RedisString::create_from_slice(ctx.ctx, key);
    match ctx.open_key(&name).key_type() {
        KeyType::Stream => Ok(()),
        KeyType::Empty => Err(RedisError::Str(error::NO_SUCH_KEY)),
        _ => Err(RedisError::WrongType),
    }
}

/// The calling user, for the ACL checks that `call_ext` cannot make on its own:
/// the mode key is read directly, and a delete after a claim must not fail half way.
///
/// Hand-written over the raw API because redis-module 2.0.8 covers only part of
/// it: it has no wrapper for RM_ACLCheckCommandPermissions at all, and its
/// `Context::acl_check_key_permission` looks the user up by name and frees it
/// again on every check (one call checks up to five commands and a key) and
/// `unwrap`s API pointers a server may lack (S6). This looks the user up once
/// per call and frees it on drop.
pub struct CallerAcl {
    user: *mut raw::RedisModuleUser,
}

impl CallerAcl {
    pub fn of(ctx: &Context) -> Result<Self, RedisError> {
        let no_user = || {
            RedisError::String(format!(
                "{} no user is attached to this call",
                error::NOPERM
            ))
        };
        // SAFETY: the function pointer was filled in at module load (and checked
        // for None here); `ctx.ctx` is the context of the command now running.
        let name = unsafe { raw::RedisModule_GetCurrentUserName.ok_or_else(no_user)?(ctx.ctx) };
        if name.is_null() {
            return Err(no_user());
        }
        let name = RedisString::from_redis_module_string(ctx.ctx, name);
        // SAFETY: as above; `name.inner` is the non-null string Redis just gave
        // us, owned (and freed on drop) by `name`, which outlives the call.
        let user =
            unsafe { raw::RedisModule_GetModuleUserFromUserName.ok_or_else(no_user)?(name.inner) };
        if user.is_null() {
            return Err(no_user());
        }
        Ok(CallerAcl { user })
    }

    pub fn check_command(&self, argv: &[&[u8]]) -> Result<(), RedisError> {
        let strings: Vec<RedisString> = argv
            .iter()
            .map(|a| RedisString::create_from_slice(std::ptr::null_mut(), a))
            .collect();
        let mut raw_argv: Vec<*mut raw::RedisModuleString> =
            strings.iter().map(|s| s.inner).collect();
        // SAFETY: `self.user` as above; `raw_argv` holds `raw_argv.len()` valid
        // strings, owned by `strings`, which outlives the call.
        let status = unsafe {
            raw::RedisModule_ACLCheckCommandPermissions
                .map(|check| check(self.user, raw_argv.as_mut_ptr(), raw_argv.len() as c_int))
        };
        match status {
            Some(s) if s == raw::REDISMODULE_OK as c_int => Ok(()),
            _ => Err(RedisError::String(format!(
                "{} this user has no permissions to run the '{}' command on this key",
                error::NOPERM,
                command_name(argv)
            ))),
        }
    }
}

/// How Redis names a command in ACL messages: `xpending`, or `xgroup|createconsumer`
/// for a command with subcommands (only XINFO and XGROUP, of those checked here).
fn command_name(argv: &[&[u8]]) -> String {
    let word = |a: &[u8]| String::from_utf8_lossy(a).to_lowercase();
    let name = argv.first().map_or_else(String::new, |a| word(a));
    match (name.as_str(), argv.get(1)) {
        ("xinfo" | "xgroup", Some(sub)) => format!("{name}|{}", word(sub)),
        _ => name,
    }
}

impl Drop for CallerAcl {
    fn drop(&mut self) {
        // SAFETY: reading a function pointer filled in at module load.
        if let Some(free) = unsafe { raw::RedisModule_FreeModuleUser } {
            // SAFETY: `self.user` came from RedisModule_GetModuleUserFromUserName
            // and is freed here once: `CallerAcl` is neither Clone nor Copy.
            unsafe { free(self.user) };
        }
    }
}

/// The stream commands a QUANTUM.* call may run on its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Internal {
    Pending,
    Claim,
    Range,
    InfoConsumers,
    InfoGroups,
    CreateConsumer,
    DeleteConsumer,
}

/// One consumer group of one stream, as seen through its stream commands.
pub struct Group<'a> {
    ctx: &'a Context,
    key: &'a [u8],
    group: &'a [u8],
}

/// What an internal call does to the data, which decides whether it is replicated.
#[derive(Clone, Copy)]
enum Effect {
    Reads,
    /// Replicated to replicas and the AOF (S4).
    Writes,
    /// Reads bookkeeping the call needs for its own pre-checks, without the
    /// caller's ACL: the caller's right to the key was checked for what the
    /// call does with it (a write-only user of a dead-letter stream may XADD
    /// to it, not XINFO it), and nothing read reaches the reply.
    Inspects,
}

/// The RM_Call options, built once rather than on every call: reads with the
/// caller's ACL, writes also replicated.
fn call_options(effect: Effect) -> &'static CallOptions {
    static READ: OnceLock<CallOptions> = OnceLock::new();
    static WRITE: OnceLock<CallOptions> = OnceLock::new();
    static INSPECT: OnceLock<CallOptions> = OnceLock::new();
    match effect {
        Effect::Writes => WRITE.get_or_init(|| {
            CallOptionsBuilder::new()
                .replicate()
                .verify_acl()
                .errors_as_replies()
                .build()
        }),
        Effect::Reads => READ.get_or_init(|| {
            CallOptionsBuilder::new()
                .verify_acl()
                .errors_as_replies()
                .build()
        }),
        Effect::Inspects => {
            INSPECT.get_or_init(|| CallOptionsBuilder::new().errors_as_replies().build())
        }
    }
}

/// Runs `command` through RM_Call with the caller's ACL; an error reply becomes `Err`.
fn call(
    ctx: &Context,
    effect: Effect,
    command: &str,
    args: &[&[u8]],
) -> Result<CallReply<'static>, RedisError> {
    let result: CallResult<'static> = ctx.call_ext(command, call_options(effect), args);
    result.map_err(|e| call_error(command, &e))
}

/// An internal call's error reply as our error.
fn call_error(command: &str, e: &ErrorReply) -> RedisError {
    RedisError::String(error_reply(command, &crate::text::ascii(e.as_bytes())))
}

/// This group's line of XINFO GROUPS: what STATUS and a call without the
/// consumer pass report.
pub struct GroupInfo {
    pub pending: i64,
    pub consumers: i64,
    /// `None` when the server does not know it (or, before 7.0, report it).
    pub lag: Option<i64>,
}

impl<'a> Group<'a> {
    pub fn new(ctx: &'a Context, key: &'a [u8], group: &'a [u8]) -> Self {
        Group { ctx, key, group }
    }

    /// Runs a command that only reads.
    fn read(&self, command: &str, args: &[&[u8]]) -> Result<CallReply<'static>, RedisError> {
        self.call(Effect::Reads, command, args)
    }

    /// Runs a command that changes the group, replicated.
    fn write(&self, command: &str, args: &[&[u8]]) -> Result<CallReply<'static>, RedisError> {
        self.call(Effect::Writes, command, args)
    }

    fn call(
        &self,
        effect: Effect,
        command: &str,
        args: &[&[u8]],
    ) -> Result<CallReply<'static>, RedisError> {
        call(self.ctx, effect, command, args)
    }

    /// XPENDING extended form: at most `count` entries after `after` (or from
    /// the start), of every consumer or only of `owner`.
    pub fn pending(
        &self,
        after: Option<StreamId>,
        count: usize,
        owner: Option<&[u8]>,
    ) -> Result<Vec<PendingEntry>, RedisError> {
        let start = match after {
            None => "-".to_string(),
            // Nothing can follow the largest ID, and "(" of it is an error.
            Some(StreamId::MAX) => return Ok(Vec::new()),
            Some(id) => format!("({id}"),
        };
        let count = count.to_string();
        let mut args: Vec<&[u8]> = vec![
            self.key,
            self.group,
            start.as_bytes(),
            b"+",
            count.as_bytes(),
        ];
        args.extend(owner);
        let CallReply::Array(rows) = self.read("XPENDING", &args)? else {
            return Err(unexpected("XPENDING"));
        };
        // The previous row's owner, shared with the next row it also owns.
        let mut last_owner: Option<Rc<[u8]>> = None;
        rows.iter()
            .map(|row| match row {
                Ok(CallReply::Array(fields)) if fields.len() == 4 => {
                    let owner = fields.get(1);
                    let owner = key_bytes(&owner).ok_or_else(|| unexpected("XPENDING"))?;
                    let owner = match &last_owner {
                        Some(last) if **last == *owner => Rc::clone(last),
                        _ => last_owner.insert(Rc::from(owner)).clone(),
                    };
                    Ok(PendingEntry {
                        id: string_at(&fields.get(0)).ok_or_else(|| unexpected("XPENDING"))?,
                        owner,
                        idle_ms: int_at(&fields.get(2)).ok_or_else(|| unexpected("XPENDING"))?,
                        deliveries: int_at(&fields.get(3)).ok_or_else(|| unexpected("XPENDING"))?,
                    })
                }
                _ => Err(unexpected("XPENDING")),
            })
            .collect()
    }

    /// How many of `owner`'s PEL entries follow `after`, counting at most
    /// `limit`: XPENDING's extended form walks only that consumer's PEL, so
    /// this costs O(limit), whatever the group's size. The rows are not parsed.
    pub fn pending_len(
        &self,
        after: StreamId,
        limit: usize,
        owner: &[u8],
    ) -> Result<usize, RedisError> {
        if after == StreamId::MAX {
            return Ok(0);
        }
        let start = format!("({after}");
        let limit = limit.to_string();
        let args: [&[u8]; 6] = [
            self.key,
            self.group,
            start.as_bytes(),
            b"+",
            limit.as_bytes(),
            owner,
        ];
        match self.read("XPENDING", &args)? {
            CallReply::Array(rows) => Ok(rows.len()),
            _ => Err(unexpected("XPENDING")),
        }
    }

    /// This group's counts from XINFO GROUPS: without a pass over every consumer.
    pub fn info(&self) -> Result<GroupInfo, RedisError> {
        match self.group_fields(&[b"pending", b"consumers", b"lag"])?[..] {
            [Some(pending), Some(consumers), lag] => Ok(GroupInfo {
                pending,
                consumers,
                lag,
            }),
            _ => Err(unexpected("XINFO GROUPS")),
        }
    }

    /// The integer fields `names` of this group's line of XINFO GROUPS.
    fn group_fields(&self, names: &[&[u8]]) -> Result<Vec<Option<i64>>, RedisError> {
        let CallReply::Array(groups) = self.read("XINFO", &[b"GROUPS", self.key])? else {
            return Err(unexpected("XINFO GROUPS"));
        };
        for group in groups.iter() {
            let Ok(CallReply::Array(fields)) = group else {
                return Err(unexpected("XINFO GROUPS"));
            };
            let field = |name: &[u8]| {
                (0..fields.len())
                    .step_by(2)
                    .find(|&i| key_bytes(&fields.get(i)) == Some(name))
                    .map(|i| fields.get(i + 1))
            };
            if field(b"name").as_ref().and_then(key_bytes) != Some(self.group) {
                continue;
            }
            return Ok(names
                .iter()
                .map(|name| field(name).and_then(|v| int_at(&v)))
                .collect());
        }
        Err(RedisError::String(format!(
            "{} No such consumer group {} for key name {}",
            error::NOGROUP,
            crate::text::quote(self.group),
            crate::text::quote(self.key)
        )))
    }

    /// XGROUP CREATECONSUMER, replicated. Called before claiming to `consumer`:
    /// on Redis 7.2+ (and Valkey) XCLAIM creates its consumer even when every
    /// entry it names is gone from the stream, but then propagates nothing that
    /// creates it, so a replica and the AOF would lack it (S4). Created here, the
    /// creation is propagated itself (and not at all when it already exists),
    /// and primary, replica and AOF hold the same consumers on every version.
    /// Returns whether it created the consumer (false: it existed already).
    pub fn create_consumer(&self, consumer: &[u8]) -> Result<bool, RedisError> {
        match self.write(
            "XGROUP",
            &[b"CREATECONSUMER", self.key, self.group, consumer],
        )? {
            CallReply::I64(created) => Ok(created.to_i64() == 1),
            _ => Err(unexpected("XGROUP CREATECONSUMER")),
        }
    }

    /// XCLAIM … JUSTID: moves `ids` (ascending, each once) idle ≥ `min_idle`
    /// to `consumer` without counting a delivery. Returns, for each of `ids`,
    /// whether it moved: XCLAIM replies with the IDs it moved in the order it
    /// was given them and silently removes from the PEL those whose stream
    /// entry is gone, so one pass over the reply tells them apart, with no
    /// copy of an ID (a drain's batches claim a hundred each).
    pub fn claim(
        &self,
        consumer: &[u8],
        min_idle: i64,
        ids: &[&str],
    ) -> Result<Vec<bool>, RedisError> {
        let mut moved = vec![false; ids.len()];
        if ids.is_empty() {
            return Ok(moved);
        }
        let min_idle = min_idle.to_string();
        let mut args: Vec<&[u8]> = vec![self.key, self.group, consumer, min_idle.as_bytes()];
        args.extend(ids.iter().map(|id| id.as_bytes()));
        args.push(b"JUSTID");
        let CallReply::Array(reply) = self.write("XCLAIM", &args)? else {
            return Err(unexpected("XCLAIM"));
        };
        // XCLAIM answers in the order asked: the next reply ID is looked for
        // where the last one was found, and only a gap (an entry it dropped)
        // or another server's order makes an index of the asked IDs.
        let mut next = 0;
        let mut index: Option<HashMap<&[u8], usize>> = None;
        for item in reply.iter() {
            let item = Some(item);
            let id = key_bytes(&item).ok_or_else(|| unexpected("XCLAIM"))?;
            let at = match ids.get(next) {
                Some(asked) if asked.as_bytes() == id => Some(next),
                // After an entry XCLAIM dropped (or in another order): by index.
                _ => index
                    .get_or_insert_with(|| {
                        ids.iter()
                            .enumerate()
                            .map(|(i, a)| (a.as_bytes(), i))
                            .collect()
                    })
                    .get(id)
                    .copied(),
            };
            // An ID that was not asked for: no XCLAIM reply we know.
            let at = at.ok_or_else(|| unexpected("XCLAIM"))?;
            moved[at] = true;
            next = at + 1;
        }
        Ok(moved)
    }

    /// Whether the stream still holds entry `id` (for DRYRUN's prediction of `dropped`).
    pub fn entry_exists(&self, id: &str) -> Result<bool, RedisError> {
        match self.read("XRANGE", &[self.key, id.as_bytes(), id.as_bytes()])? {
            CallReply::Array(entries) => Ok(entries.len() > 0),
            _ => Err(unexpected("XRANGE")),
        }
    }

    /// The field/value pairs (flat, in order) of those of `ids` (ascending)
    /// that the stream still holds. Read with the stream iterator of the key
    /// API, walking forward from one wanted entry to the next: finding a single
    /// ID (as XRANGE id id does) walks its stream node from the start, about
    /// as long as XCLAIM takes, while poison entries usually sit close
    /// together. A gap of more than `MAX_WALK` entries starts a fresh seek
    /// instead. The caller's read access was checked: Redis checked the key
    /// (declared with access), `check_allowed` the XRANGE command.
    pub fn entries_fields(
        &self,
        ids: &[StreamId],
    ) -> Result<HashMap<StreamId, Vec<RedisString>>, RedisError> {
        const MAX_WALK: usize = 64;
        let mut found = HashMap::with_capacity(ids.len());
        let Some(&last) = ids.last() else {
            return Ok(found);
        };
        let name = RedisString::create_from_slice(self.ctx.ctx, self.key);
        let stream_id = |id: StreamId| raw::RedisModuleStreamID {
            ms: id.ms,
            seq: id.seq,
        };
        let mut next = 0;
        while next < ids.len() {
            // A handle per seek: starting a second iterator on the same handle,
            // after the first was deleted, failed with EBADF on Redis 7.0.
            let key = self.ctx.open_key(&name);
            let walk = key.get_stream_range_iterator(
                Some(stream_id(ids[next])),
                Some(stream_id(last)),
                false,
                false,
            )?;
            // Every seek moves `next` on: its first entry is ids[next] or after it.
            let mut since_hit = 0;
            let mut reseek = false;
            for record in walk {
                let at = StreamId {
                    ms: record.id.ms,
                    seq: record.id.seq,
                };
                // Wanted IDs before this entry are gone from the stream.
                while next < ids.len() && ids[next] < at {
                    next += 1;
                }
                if next == ids.len() {
                    break;
                }
                if ids[next] == at {
                    // The iterator's own strings, kept: the copy's XADD takes
                    // them as they are, with no copy of their bytes.
                    let flat = record
                        .fields
                        .into_iter()
                        .flat_map(|(f, v)| [f, v])
                        .collect();
                    found.insert(at, flat);
                    next += 1;
                    since_hit = 0;
                } else {
                    since_hit += 1;
                    if since_hit > MAX_WALK {
                        reseek = true;
                        break;
                    }
                }
            }
            // The walk reached the last wanted ID: any not found is gone.
            if !reseek {
                break;
            }
        }
        Ok(found)
    }

    /// XINFO CONSUMERS, read by field name.
    pub fn consumers(&self) -> Result<Vec<Consumer>, RedisError> {
        let CallReply::Array(rows) = self.read("XINFO", &[b"CONSUMERS", self.key, self.group])?
        else {
            return Err(unexpected("XINFO CONSUMERS"));
        };
        rows.iter()
            .map(|row| {
                let Ok(CallReply::Array(fields)) = row else {
                    return Err(unexpected("XINFO CONSUMERS"));
                };
                let (mut name, mut pending, mut idle) = (None, None, None);
                for i in (0..fields.len()).step_by(2) {
                    let value = fields.get(i + 1);
                    // Field names compared in place: a group can have 100,000 consumers.
                    let key = fields.get(i);
                    match key_bytes(&key) {
                        Some(b"name") => name = bytes_at(&value),
                        Some(b"pending") => pending = int_at(&value),
                        Some(b"idle") => idle = int_at(&value),
                        _ => {}
                    }
                }
                match (name, pending, idle) {
                    (Some(name), Some(pending), Some(idle_ms)) => Ok(Consumer {
                        name,
                        pending,
                        idle_ms,
                    }),
                    _ => Err(unexpected("XINFO CONSUMERS")),
                }
            })
            .collect()
    }

    /// The caller's ACL checks of `commands` on this key and group, without
    /// running them: a call checks everything it may run before its first
    /// change, so an ACL refusal never leaves a half-done call (S7).
    pub fn check_allowed(&self, acl: &CallerAcl, commands: &[Internal]) -> Result<(), RedisError> {
        for command in commands {
            let argv: &[&[u8]] = match command {
                Internal::Pending => &[b"XPENDING", self.key, self.group],
                Internal::Claim => &[b"XCLAIM", self.key, self.group, b"-", b"1", b"0-1"],
                Internal::Range => &[b"XRANGE", self.key, b"-", b"+"],
                Internal::InfoConsumers => &[b"XINFO", b"CONSUMERS", self.key, self.group],
                Internal::InfoGroups => &[b"XINFO", b"GROUPS", self.key],
                Internal::CreateConsumer => {
                    &[b"XGROUP", b"CREATECONSUMER", self.key, self.group, b"-"]
                }
                Internal::DeleteConsumer => {
                    &[b"XGROUP", b"DELCONSUMER", self.key, self.group, b"-"]
                }
            };
            acl.check_command(argv)?;
        }
        Ok(())
    }

    /// XGROUP DELCONSUMER; returns the pending count the consumer had (0 when the plan is right).
    pub fn delete_consumer(&self, name: &[u8]) -> Result<i64, RedisError> {
        match self.write("XGROUP", &[b"DELCONSUMER", self.key, self.group, name])? {
            CallReply::I64(n) => Ok(n.to_i64()),
            _ => Err(unexpected("XGROUP DELCONSUMER")),
        }
    }
}

/// The stream RECOVER copies quarantined entries to (DEADLETTER).
pub struct DeadLetterStream<'a> {
    ctx: &'a Context,
    key: &'a [u8],
    /// `~ maxlen`, as XADD takes it.
    maxlen: String,
}

impl<'a> DeadLetterStream<'a> {
    pub fn new(ctx: &'a Context, key: &'a [u8], maxlen: i64) -> Self {
        DeadLetterStream {
            ctx,
            key,
            maxlen: maxlen.to_string(),
        }
    }

    /// Before the first change: the key holds a stream or nothing (XADD creates
    /// it), and the caller may XADD to it. A refusal after the claims would
    /// leave moved entries without their copies (S7).
    pub fn check(&self, acl: &CallerAcl) -> Result<(), RedisError> {
        let name = RedisString::create_from_slice(self.ctx.ctx, self.key);
        match self.ctx.open_key(&name).key_type() {
            KeyType::Stream | KeyType::Empty => {}
            _ => {
                return Err(RedisError::String(format!(
                    "WRONGTYPE the dead-letter key {} holds something other than a stream",
                    crate::text::quote(self.key)
                )))
            }
        }
        acl.check_command(&[b"XADD", self.key, b"MAXLEN", b"~", b"1", b"*", b"f", b"v"])
    }

    /// The stream's last generated ID (XINFO STREAM's `last-generated-id`,
    /// which outlives deleted entries), `None` while the key does not exist.
    pub fn last_id(&self) -> Result<Option<StreamId>, RedisError> {
        let name = RedisString::create_from_slice(self.ctx.ctx, self.key);
        if self.ctx.open_key(&name).key_type() == KeyType::Empty {
            return Ok(None);
        }
        let CallReply::Array(fields) =
            call(self.ctx, Effect::Inspects, "XINFO", &[b"STREAM", self.key])?
        else {
            return Err(unexpected("XINFO STREAM"));
        };
        (0..fields.len())
            .step_by(2)
            .find(|&i| key_bytes(&fields.get(i)) == Some(b"last-generated-id"))
            .and_then(|i| StreamId::parse(key_bytes(&fields.get(i + 1))?))
            .map(Some)
            .ok_or_else(|| unexpected("XINFO STREAM (last-generated-id)"))
    }

    /// The writer of this call's copies.
    pub fn appender(&self) -> Appender<'a> {
        let string = |bytes: &[u8]| RedisString::create_from_slice(std::ptr::null_mut(), bytes);
        Appender {
            ctx: self.ctx,
            head: [
                string(self.key),
                string(b"MAXLEN"),
                string(b"~"),
                string(self.maxlen.as_bytes()),
                string(b"*"),
            ],
            header: Vec::new(),
        }
    }
}

/// Appends one call's copies. Every XADD argument is a string object Redis
/// allocates: the ones all copies share (key, MAXLEN ~ n, `*`, the header's
/// field names, stream, group and reason) are made once per call, the
/// entry's own fields are the stream iterator's strings, so a copy makes only
/// the few header values that change (its ID; owner and count when they do).
pub struct Appender<'a> {
    ctx: &'a Context,
    /// `key MAXLEN ~ maxlen *`.
    head: [RedisString; 5],
    /// The previous copy's header, field and value.
    header: Vec<(RedisString, RedisString)>,
}

impl Appender<'_> {
    /// XADD key MAXLEN ~ maxlen * header… payload…, replicated (S4) and with
    /// the caller's ACL (S7).
    pub fn append(
        &mut self,
        header: &[(&str, Vec<u8>)],
        payload: &[RedisString],
    ) -> Result<(), RedisError> {
        let string = |bytes: &[u8]| RedisString::create_from_slice(std::ptr::null_mut(), bytes);
        self.header.truncate(header.len());
        for (i, (field, value)) in header.iter().enumerate() {
            match self.header.get_mut(i) {
                Some((f, v)) => {
                    if f.as_slice() != field.as_bytes() {
                        *f = string(field.as_bytes());
                    }
                    if v.as_slice() != value.as_slice() {
                        *v = string(value);
                    }
                }
                None => self.header.push((string(field.as_bytes()), string(value))),
            }
        }
        let mut args: Vec<&RedisString> =
            Vec::with_capacity(self.head.len() + 2 * self.header.len() + payload.len());
        args.extend(&self.head);
        for (field, value) in &self.header {
            args.extend([field, value]);
        }
        args.extend(payload);
        let result: CallResult<'static> =
            self.ctx
                .call_ext("XADD", call_options(Effect::Writes), args.as_slice());
        match result.map_err(|e| call_error("XADD", &e))? {
            CallReply::String(_) => Ok(()),
            _ => Err(unexpected("XADD")),
        }
    }
}

/// How full Redis is (used memory over `maxmemory`), `None` without a
/// `maxmemory`. Taken when a call starts: the call's own buffers (the PEL it
/// reads, the entries it will copy), counted by Redis as used memory and freed
/// when it returns, must not count against the copies it keeps.
pub fn memory_use(ctx: &Context) -> Result<Option<f32>, RedisError> {
    if !ctx.get_flags().contains(ContextFlags::MAXMEMORY) {
        return Ok(None);
    }
    // SAFETY: reading a function pointer Redis filled in at module load.
    let used_ratio = unsafe { raw::RedisModule_GetUsedMemoryRatio }
        // SAFETY: takes no arguments and only reads the server's memory counters.
        .map(|ratio| unsafe { ratio() })
        .ok_or_else(|| unexpected("GetUsedMemoryRatio"))?;
    Ok(Some(used_ratio))
}

/// The memory left before `maxmemory` for the dead-letter copies, from the
/// `memory_use` taken at the call's start.
pub fn memory_room(ctx: &Context, used_ratio: Option<f32>) -> Result<Room, RedisError> {
    let Some(used_ratio) = used_ratio else {
        return Ok(Room::Unlimited);
    };
    // From the server's INFO data rather than CONFIG GET: the caller need not
    // be allowed CONFIG, and hardened servers rename it away.
    let maxmemory = ctx
        .server_info("memory")
        .field("maxmemory")
        .and_then(|v| std::str::from_utf8(v.as_slice()).ok()?.parse::<u64>().ok())
        .ok_or_else(|| unexpected("INFO memory (maxmemory)"))?;
    Ok(Room::from_usage(maxmemory, f64::from(used_ratio)))
}

/// An internal call's error as our reply: RM_Call's "acl verification failed"
/// becomes NOPERM naming the refused command; Redis's own errors (`NOGROUP …`)
/// pass through; anything without an error code gets ERR.
fn error_reply(command: &str, text: &str) -> String {
    let code = text.split(' ').next().unwrap_or("");
    if text.contains("acl verification failed") {
        let reason = text.strip_prefix("ERR ").unwrap_or(text);
        format!("{} {command} refused by ACL: {reason}", error::NOPERM)
    } else if !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase()) {
        text.to_string()
    } else {
        format!("{} {command}: {text}", error::ERR)
    }
}

fn key_bytes<'a>(item: &'a Option<CallResult<'_>>) -> Option<&'a [u8]> {
    match item {
        Some(Ok(CallReply::String(s))) => Some(s.as_bytes()),
        _ => None,
    }
}

fn bytes_at(item: &Option<CallResult<'_>>) -> Option<Vec<u8>> {
    key_bytes(item).map(<[u8]>::to_vec)
}

fn string_at(item: &Option<CallResult<'_>>) -> Option<String> {
    bytes_at(item).and_then(|b| String::from_utf8(b).ok())
}

fn int_at(item: &Option<CallResult<'_>>) -> Option<i64> {
    match item {
        Some(Ok(CallReply::I64(n))) => Some(n.to_i64()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::command_name;

    #[test]
    fn acl_messages_name_the_command_not_the_key() {
        assert_eq!(command_name(&[b"XPENDING", b"s", b"g"]), "xpending");
        assert_eq!(command_name(&[b"XCLAIM", b"s", b"g", b"c"]), "xclaim");
        assert_eq!(
            command_name(&[b"XGROUP", b"CREATECONSUMER", b"s", b"g", b"-"]),
            "xgroup|createconsumer"
        );
        assert_eq!(
            command_name(&[b"XINFO", b"CONSUMERS", b"s", b"g"]),
            "xinfo|consumers"
        );
        assert_eq!(command_name(&[b"QUANTUM.RETIRE", b"s"]), "quantum.retire");
    }
}
