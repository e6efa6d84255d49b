//! Opening the files the trigger reads and writes so that no path can hang it
//! past `--deadline` or exhaust its memory: O_NONBLOCK (a FIFO opens at once
//! instead of waiting for a writer or reader), then fstat, and anything but a
//! regular file is refused (a FIFO, a device such as /dev/zero, a socket or a
//! folder); reads are bounded.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Whether a symlink at the path is followed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Symlink {
    /// Files an operator names to be read (the env and password files).
    Follow,
    /// Files the trigger writes or keeps (O_NOFOLLOW): the ExecStartPre may run
    /// as a more privileged user than the owner of their folder.
    Refuse,
}

/// Opens `path` with `options` plus O_NONBLOCK (and O_NOFOLLOW for
/// `Symlink::Refuse`), refusing anything but a regular file.
pub fn open_regular(path: &Path, options: &mut OpenOptions, symlink: Symlink) -> io::Result<File> {
    let mut flags = libc::O_NONBLOCK;
    if symlink == Symlink::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = options.custom_flags(flags).open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", describe(kind)),
        ));
    }
    Ok(file)
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match kind {
        k if k.is_fifo() => "a FIFO",
        k if k.is_char_device() || k.is_block_device() => "a device",
        k if k.is_socket() => "a socket",
        k if k.is_dir() => "a folder",
        _ => "not a file",
    }
}

/// Reads at most `limit` bytes of the regular file at `path`; a longer file is
/// an error rather than a silent cut.
pub fn read_regular(path: &Path, limit: u64, symlink: Symlink) -> io::Result<Vec<u8>> {
    let file = open_regular(path, OpenOptions::new().read(true), symlink)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_folders_are_refused_and_reads_are_bounded() {
        for path in ["/dev/zero", "/dev/null", "/"] {
            let e = read_regular(Path::new(path), 10, Symlink::Follow).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{path}: {e}");
        }
        let dir = std::env::temp_dir().join(format!("quantum-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(
            read_regular(&file, 10, Symlink::Refuse).unwrap(),
            b"0123456789"
        );
        assert!(read_regular(&file, 9, Symlink::Refuse).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
