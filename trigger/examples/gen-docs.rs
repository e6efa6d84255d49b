//! Writes the trigger's man page (clap_mangen) and bash/zsh/fish completions
//! (clap_complete) from its own command-line definition into the folder given,
//! for the Debian package (`scripts/package.sh`).
//!
//! `cargo run -p quantum-stream-recover --example gen-docs -- target/debian-assets`

// The binary's own option definitions; only the clap parts are used here.
#[allow(dead_code)]
#[path = "../src/cli.rs"]
mod cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::PathBuf;

const NAME: &str = "quantum-stream-recover";

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-docs OUT_DIR");
        std::process::exit(64);
    };
    std::fs::create_dir_all(&dir)?;
    let mut command = cli::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{NAME}.1")), page)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, NAME, &dir)?;
    }
    Ok(())
}
