//! Reads redis.conf the way Redis does, for `doctor`: directives in any case,
//! arguments split like Redis's `sdssplitargs` (quotes, escapes), `include`
//! lines followed (a `*`/`?` glob in the file name too). Only what doctor needs:
//! the `loadmodule` lines.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One `loadmodule` line: where it is and the path it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadModule {
    pub file: PathBuf,
    pub line: usize,
    pub path: String,
}

/// Redis's `sdssplitargs`: `None` for unbalanced quotes (Redis rejects the line).
pub fn split_args(line: &str) -> Option<Vec<String>> {
    let bytes = line.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let Some(&c) = bytes.get(i) else {
                if in_double || in_single {
                    return None;
                }
                break;
            };
            let next = bytes.get(i + 1).copied();
            let closes = |at: usize| bytes.get(at).is_none_or(|b| b.is_ascii_whitespace());
            if in_double {
                let hex = bytes
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
                match (c, next, hex) {
                    (b'\\', Some(b'x'), Some(h)) => {
                        current.push(h);
                        i += 3;
                    }
                    (b'\\', Some(e), _) => {
                        current.push(match e {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                        i += 1;
                    }
                    (b'"', _, _) if !closes(i + 1) => return None,
                    (b'"', _, _) => {
                        i += 1;
                        break;
                    }
                    _ => current.push(c),
                }
            } else if in_single {
                match (c, next) {
                    (b'\\', Some(b'\'')) => {
                        current.push(b'\'');
                        i += 1;
                    }
                    (b'\'', _) if !closes(i + 1) => return None,
                    (b'\'', _) => {
                        i += 1;
                        break;
                    }
                    _ => current.push(c),
                }
            } else if c.is_ascii_whitespace() {
                break;
            } else if c == b'"' {
                in_double = true;
            } else if c == b'\'' {
                in_single = true;
            } else {
                current.push(c);
            }
            i += 1;
        }
        args.push(String::from_utf8_lossy(&current).into_owned());
    }
}

/// Every `loadmodule` line of `conf` and the files it includes.
/// `Err` when `conf` itself cannot be read.
pub fn loadmodule_lines(conf: &Path) -> std::io::Result<Vec<LoadModule>> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    read(conf, &mut found, &mut seen)?;
    Ok(found)
}

fn read(
    file: &Path,
    found: &mut Vec<LoadModule>,
    seen: &mut HashSet<PathBuf>,
) -> std::io::Result<()> {
    if !seen.insert(std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf())) {
        return Ok(());
    }
    let text = std::fs::read_to_string(file)?;
    for (number, line) in text.lines().enumerate() {
        let Some(args) = split_args(line) else {
            continue;
        };
        let (Some(directive), Some(arg)) = (args.first(), args.get(1)) else {
            continue;
        };
        if directive.eq_ignore_ascii_case("loadmodule") {
            found.push(LoadModule {
                file: file.to_path_buf(),
                line: number + 1,
                path: arg.clone(),
            });
        } else if directive.eq_ignore_ascii_case("include") {
            for included in glob(arg) {
                // A missing include makes Redis refuse to start, not doctor.
                let _ = read(&included, found, seen);
            }
        }
    }
    Ok(())
}

/// The files an `include` names: a pattern (`*`, `?`) in the file name only.
fn glob(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![path.to_path_buf()];
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| matches(name.as_bytes(), e.file_name().as_encoded_bytes()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            matches(rest, name) || (!name.is_empty() && matches(pattern, &name[1..]))
        }
        (Some((b'?', rest)), Some((_, tail))) => matches(rest, tail),
        (Some((p, rest)), Some((n, tail))) => p == n && matches(rest, tail),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_like_redis() {
        let split = |l: &str| split_args(l);
        assert_eq!(
            split("LOADMODULE  \"/a b/x.so\" 'c\\'d' e"),
            Some(vec![
                "LOADMODULE".into(),
                "/a b/x.so".into(),
                "c'd".into(),
                "e".into()
            ])
        );
        assert_eq!(
            split("x \"\\x41\\n\""),
            Some(vec!["x".into(), "A\n".into()])
        );
        assert_eq!(split("loadmodule \"/x.so"), None);
        assert_eq!(split("loadmodule \"/x.so\"y"), None);
        assert_eq!(split("   "), Some(vec![]));
    }

    #[test]
    fn loadmodule_lines_in_any_case_quoted_and_in_includes() {
        let dir = std::env::temp_dir().join(format!("quantum-conf-{}", std::process::id()));
        let sub = dir.join("conf.d");
        std::fs::create_dir_all(&sub).unwrap();
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "# loadmodule /commented.so\nLOADMODULE \"/a/libquantum.so\" x\n\
                 include {}/*.conf\ninclude {}/missing.conf\n",
                sub.display(),
                sub.display()
            ),
        )
        .unwrap();
        std::fs::write(sub.join("10.conf"), "loadModule /b//quantum.so\n").unwrap();
        std::fs::write(sub.join("20.conf"), format!("include {}\n", conf.display())).unwrap();
        std::fs::write(sub.join("30.txt"), "loadmodule /not-included.so\n").unwrap();
        let lines = loadmodule_lines(&conf).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let found: Vec<(PathBuf, usize, &str)> = lines
            .iter()
            .map(|l| (l.file.clone(), l.line, l.path.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (conf.clone(), 2, "/a/libquantum.so"),
                (sub.join("10.conf"), 1, "/b//quantum.so"),
            ]
        );
        assert!(loadmodule_lines(&dir.join("gone.conf")).is_err());
    }
}
