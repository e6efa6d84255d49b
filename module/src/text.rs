//! Client bytes made safe to show: in error replies (quoted, cut short) and in
//! the server log, whose `RedisModule_Log` treats the message as a printf format.

use std::fmt::Write;

/// Printable ASCII as is, anything else (and `'`, `\`) escaped; at most `limit` bytes shown.
pub fn printable(bytes: &[u8], limit: usize) -> String {
    escape(bytes, limit, true)
}

/// Redis's own error text made safe to pass on: printable ASCII as is, every
/// other byte (a client's binary key or group echoed back) escaped. Error
/// replies must stay valid text: redis-module turns each non-ASCII char into
/// one raw byte, and clients then fail to parse the line.
pub fn ascii(bytes: &[u8]) -> String {
    escape(bytes, usize::MAX, false)
}

fn escape(bytes: &[u8], limit: usize, quotes: bool) -> String {
    let mut out = String::with_capacity(bytes.len().min(limit) + 3);
    for &b in bytes.iter().take(limit) {
        match b {
            b'\'' | b'\\' if quotes => {
                let _ = write!(out, "\\{}", b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > limit {
        out.push_str("...");
    }
    out
}

/// For error replies: quoted and cut at 64 bytes so a huge argument cannot bloat the reply.
pub fn quote(bytes: &[u8]) -> String {
    format!("'{}'", printable(bytes, 64))
}

/// For the server log: `%` doubled so a consumer named `exec-%s` cannot read the stack.
pub fn log_safe(text: &str) -> String {
    text.replace('%', "%%")
}

/// Names for a log line: `'a', 'b' +3 more`, at most `max` shown.
pub fn name_list(names: &[Vec<u8>], max: usize) -> String {
    let mut list: Vec<String> = names
        .iter()
        .take(max)
        .map(|n| format!("'{}'", printable(n, 200)))
        .collect();
    if names.len() > max {
        list.push(format!("+{} more", names.len() - max));
    }
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_quote_and_high_bytes() {
        assert_eq!(
            printable(b"a'b\\c\0\xff\n", 64),
            "a\\'b\\\\c\\x00\\xff\\x0a"
        );
    }

    #[test]
    fn ascii_keeps_quotes_and_escapes_the_rest() {
        assert_eq!(
            ascii(b"NOGROUP group 'g\xff\n'"),
            "NOGROUP group 'g\\xff\\x0a'"
        );
    }

    #[test]
    fn cuts_long_input() {
        assert_eq!(quote(&[b'x'; 70]), format!("'{}...'", "x".repeat(64)));
    }

    #[test]
    fn name_lists_are_cut() {
        let names: Vec<Vec<u8>> = ["a", "b", "c"]
            .iter()
            .map(|n| n.as_bytes().to_vec())
            .collect();
        assert_eq!(name_list(&names, 2), "'a', 'b', +1 more");
        assert_eq!(name_list(&names[..1], 2), "'a'");
    }

    #[test]
    fn log_safe_doubles_percent() {
        assert_eq!(log_safe("exec-%s%n%x%%"), "exec-%%s%%n%%x%%%%");
    }
}
