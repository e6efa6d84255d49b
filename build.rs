//! Stamps `QUANTUM_BUILD` ("<version> (<commit>)") into every crate that
//! uses this script, so `INFO quantum` and the tests can tell which build is loaded.
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=QUANTUM_BUILD={version} ({commit})");

    // Re-stamp when HEAD moves (a commit or a checkout); outside git the commit is "unknown".
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!(
            "cargo:rerun-if-changed={}",
            Path::new(&git_dir).join("HEAD").display()
        );
        // HEAD's reflog grows with every commit, checkout or reset of this
        // worktree, even when the branch ref itself is packed (git gc) or lives
        // in the common dir of a linked worktree.
        let reflog = Path::new(&git_dir).join("logs/HEAD");
        if reflog.exists() {
            println!("cargo:rerun-if-changed={}", reflog.display());
        }
    }
}
