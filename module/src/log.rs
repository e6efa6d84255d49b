//! The server log. `RedisModule_Log` takes the message as a printf format, so
//! every line goes through `text::log_safe` here: a consumer named `exec-%s`
//! must not make Redis read the stack (S6). Client bytes in a line must
//! already be `text::printable` (the line becomes a CString: no NUL).

use crate::text;
use redis_module::Context;

pub fn notice(ctx: &Context, line: &str) {
    ctx.log_notice(&text::log_safe(line));
}

/// Below Redis's default `loglevel notice`: written only when asked for.
pub fn verbose(ctx: &Context, line: &str) {
    ctx.log_verbose(&text::log_safe(line));
}

pub fn warning(ctx: &Context, line: &str) {
    ctx.log_warning(&text::log_safe(line));
}
