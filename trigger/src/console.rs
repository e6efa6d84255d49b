//! stdout and stderr that cannot end the run: a closed pipe (`--json | head`),
//! a full disk behind a redirect or a journald stream that went away must not
//! turn a run's exit code into a panic (101). What could not be written is lost;
//! the exit code, the log file and the metrics still say how the run went.

use std::io::Write;

/// `text` on stdout, write errors ignored.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
}

/// `text` and a newline on stderr, write errors ignored.
pub fn err_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
