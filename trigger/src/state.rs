//! `run`'s cursor kept between runs in `--state-dir`: a run stopped by
//! `--max-batches` saves where it stopped and the next run continues there, so
//! entries parked at the front of the PEL cannot hide the rest for ever.
//! Reaching the end of the PEL (`0-0`) removes the file; the run after that
//! starts at the beginning again.

use crate::files::{self, Symlink};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One file per stream and group; the name is a hash (a stream name may hold
/// any byte), the content names both, so a collision is noticed.
fn file_for(dir: &Path, stream: &str, group: &str) -> PathBuf {
    // FNV-1a, 64 bits: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream.bytes().chain([0]).chain(group.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    dir.join(format!("cursor-{hash:016x}.json"))
}

/// A stream ID as QUANTUM.RECOVER takes it for CURSOR: `ms-seq`.
fn is_stream_id(text: &str) -> bool {
    let Some((ms, seq)) = text.split_once('-') else {
        return false;
    };
    [ms, seq].iter().all(|part| {
        !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit())
    }) && ms.parse::<u64>().is_ok()
        && seq.parse::<u64>().is_ok()
}

/// The saved cursor, if any; Err says why a file there was not used (the
/// run then starts at the beginning of the PEL).
pub fn load(dir: &Path, stream: &str, group: &str) -> Result<Option<String>, String> {
    let path = file_for(dir, stream, group);
    let bytes = match files::read_regular(&path, 4096, Symlink::Refuse) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let corrupt = || {
        format!(
            "{} is not a cursor file of this stream and group",
            path.display()
        )
    };
    let saved: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
    match (
        saved["stream"].as_str(),
        saved["group"].as_str(),
        saved["cursor"].as_str(),
    ) {
        (Some(s), Some(g), Some(cursor)) if s == stream && g == group && is_stream_id(cursor) => {
            Ok(Some(cursor.to_string()))
        }
        _ => Err(corrupt()),
    }
}

/// Saves `cursor` atomically (a temp file in `dir`, renamed), or removes the
/// file when the run reached the end of the PEL. Returns the file's path.
pub fn save(dir: &Path, stream: &str, group: &str, cursor: &str) -> std::io::Result<PathBuf> {
    let path = file_for(dir, stream, group);
    if cursor == "0-0" {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(path),
        };
    }
    let text = serde_json::json!({"stream": stream, "group": group, "cursor": cursor});
    let mut temp = tempfile::Builder::new()
        .prefix(".cursor.")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(text.to_string().as_bytes())?;
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_saved_loaded_and_cleared_and_a_corrupt_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("quantum-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir, "s", "g"), Ok(None));
        let path = save(&dir, "s", "g", "1700000000000-5").unwrap();
        assert_eq!(load(&dir, "s", "g"), Ok(Some("1700000000000-5".into())));
        assert_eq!(load(&dir, "s", "other"), Ok(None));
        save(&dir, "s", "g", "0-0").unwrap();
        assert!(!path.exists());
        for corrupt in [
            "{",
            r#"{"stream":"s","group":"g","cursor":"1-x"}"#,
            r#"{"stream":"t","group":"g","cursor":"1-1"}"#,
        ] {
            std::fs::write(&path, corrupt).unwrap();
            assert!(load(&dir, "s", "g").is_err(), "{corrupt}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
