//! `--env-file` read exactly as systemd reads `EnvironmentFile=`, because the
//! same file feeds both the timer's unit and the ExecStartPre's `--env-file`.
//! A port of systemd 252's `load_env_file` (src/basic/env-file.c) plus the
//! clean-up it does before exec: the last of duplicate keys wins, `#` and `;`
//! start comments (a comment ending in `\` swallows the next line), `\`
//! continues a line, quotes as a shell would, a UTF-8 BOM is part of the first
//! key (which is then not a valid name: systemd ignores that line). A NUL byte
//! or invalid UTF-8 makes systemd refuse the whole file, and so do we.
//! Only std here: tests/env_file.rs compiles this file to compare it with systemd.
//!
//! Why not `dotenvy` (issue 9 asked): dotenvy 0.15.7 run on the fixtures of
//! tests/env_file.rs disagrees with systemd 252 on each file but the invalid
//! UTF-8 one. It refuses accepted.env at its first line (a BOM before the key),
//! then, with that line removed, at a `;` comment, then at a `\` line
//! continuation; it refuses empty-key.env (systemd skips the `=value` line and
//! keeps the rest); and it reads nul-byte.env, which systemd refuses. One file
//! feeds the timer's `EnvironmentFile=` and the ExecStartPre's `--env-file`:
//! a parser that disagrees with systemd makes the two runs see different settings.

/// What a file sets, in first-seen order, and the assignments systemd ignores.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvFile {
    pub vars: Vec<(String, String)>,
    /// `line N: "KEY"` of assignments whose key is not a valid variable name.
    pub ignored: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    SingleQuote,
    DoubleQuote,
    DoubleQuoteEscape,
    Comment,
    CommentEscape,
}

const WHITESPACE: &[u8] = b" \t\n\r";
const NEWLINE: &[u8] = b"\n\r";

/// A pair being read: key, value, and where trailing whitespace starts in each.
#[derive(Default)]
struct Pending {
    key: Vec<u8>,
    value: Vec<u8>,
    key_ws: Option<usize>,
    value_ws: Option<usize>,
}

pub fn parse(bytes: &[u8]) -> Result<EnvFile, String> {
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        return Err(format!(
            "line {line}: a NUL byte (systemd refuses such a file too)"
        ));
    }
    let mut pushed: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut p = Pending::default();
    let mut line = 1;
    let mut state = State::PreKey;
    let push = |p: &mut Pending, trim_value: bool, line: usize, out: &mut Vec<_>| {
        let mut p = std::mem::take(p);
        if let Some(at) = p.key_ws {
            p.key.truncate(at);
        }
        if let (true, Some(at)) = (trim_value, p.value_ws) {
            p.value.truncate(at);
        }
        out.push((line, p.key, p.value));
    };
    for &c in bytes {
        let ws = WHITESPACE.contains(&c);
        let nl = NEWLINE.contains(&c);
        state = match state {
            State::PreKey if c == b'#' || c == b';' => State::Comment,
            State::PreKey if ws => State::PreKey,
            State::PreKey => {
                p.key.push(c);
                State::Key
            }
            State::Key if nl => {
                p = Pending::default();
                State::PreKey
            }
            State::Key if c == b'=' => {
                p.value_ws = None;
                State::PreValue
            }
            State::Key => {
                if !ws {
                    p.key_ws = None;
                } else if p.key_ws.is_none() {
                    p.key_ws = Some(p.key.len());
                }
                p.key.push(c);
                State::Key
            }
            State::PreValue | State::Value if nl => {
                push(&mut p, state == State::Value, line, &mut pushed);
                State::PreKey
            }
            State::PreValue if c == b'\'' => State::SingleQuote,
            State::PreValue if c == b'"' => State::DoubleQuote,
            State::PreValue | State::Value if c == b'\\' => {
                if state == State::Value {
                    p.value_ws = None;
                }
                State::ValueEscape
            }
            State::PreValue if ws => State::PreValue,
            State::PreValue => {
                p.value.push(c);
                State::Value
            }
            State::Value => {
                if !ws {
                    p.value_ws = None;
                } else if p.value_ws.is_none() {
                    p.value_ws = Some(p.value.len());
                }
                p.value.push(c);
                State::Value
            }
            State::ValueEscape => {
                // An escaped newline continues the line.
                if !nl {
                    p.value.push(c);
                }
                State::Value
            }
            State::SingleQuote if c == b'\'' => State::PreValue,
            State::SingleQuote => {
                p.value.push(c);
                State::SingleQuote
            }
            State::DoubleQuote if c == b'"' => State::PreValue,
            State::DoubleQuote if c == b'\\' => State::DoubleQuoteEscape,
            State::DoubleQuote => {
                p.value.push(c);
                State::DoubleQuote
            }
            State::DoubleQuoteEscape => {
                if b"\"\\`$".contains(&c) {
                    p.value.push(c);
                } else if c != b'\n' {
                    // Like a shell: other escapes keep their backslash.
                    p.value.extend([b'\\', c]);
                }
                State::DoubleQuote
            }
            State::Comment if c == b'\\' => State::CommentEscape,
            State::Comment if nl => State::PreKey,
            State::Comment => State::Comment,
            // systemd 252: whatever follows the backslash, newline included, stays in the comment.
            State::CommentEscape => State::Comment,
        };
        if c == b'\n' {
            line += 1;
        }
    }
    if !matches!(
        state,
        State::PreKey | State::Key | State::Comment | State::CommentEscape
    ) {
        push(&mut p, state == State::Value, line, &mut pushed);
    }
    let mut out = EnvFile::default();
    for (line, key, value) in pushed {
        let (Ok(key), Ok(value)) = (String::from_utf8(key), String::from_utf8(value)) else {
            return Err(format!(
                "line {line}: invalid UTF-8 (systemd refuses such a file too)"
            ));
        };
        if !valid_name(&key) {
            out.ignored.push(format!("line {line}: {key:?}"));
            continue;
        }
        match out.vars.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = value,
            None => out.vars.push((key, value)),
        }
    }
    Ok(out)
}

/// What systemd passes to a process: letters, digits and `_`, not starting with a digit.
fn valid_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes()).unwrap().vars
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn reads_like_systemd() {
        assert_eq!(vars("A=1\nA=2\n"), [pair("A", "2")]);
        assert_eq!(vars("; c\n# c\nA=x # y"), [pair("A", "x # y")]);
        assert_eq!(vars("A=one\\\ntwo"), [pair("A", "onetwo")]);
        assert_eq!(vars("A=\"q \\\"x\\\" \\n\""), [pair("A", "q \"x\" \\n")]);
        assert_eq!(vars("# c \\\nA=1\nB=2"), [pair("B", "2")]);
        assert_eq!(vars("  K  =  v  \n"), [pair("K", "v")]);
        let bom = parse("\u{feff}A=1\nB=2\n".as_bytes()).unwrap();
        assert_eq!(bom.vars, [pair("B", "2")]);
        assert_eq!(bom.ignored, ["line 1: \"\\u{feff}A\""]);
        assert_eq!(parse(b"=v\nexport X=1\n").unwrap().vars, []);
        assert!(parse(b"A=1\0").unwrap_err().contains("NUL"));
        assert!(parse(b"A=\xff").unwrap_err().contains("UTF-8"));
    }
}
