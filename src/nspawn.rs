//! Boots the machine's own OS tree in systemd-nspawn, writable through an
//! overlay (`mount -t overlay … lowerdir=/`): Debian's real redis-server.service,
//! dpkg database and users, changes kept in a temp dir. A test writes a shell
//! script that runs once the container reached multi-user.target, collects
//! what it wants under /results and powers off; about 5 s of boot.
//!
//! Needs root and systemd-nspawn (package systemd-container). Where it cannot
//! run, the test fails and says why; QUANTUM_SKIP_NSPAWN=1 skips it out loud.

use crate::TempDir;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why nspawn cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !is_root {
        return Some("systemd-nspawn needs root".into());
    }
    match Command::new("systemd-nspawn").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("systemd-nspawn is missing: apt-get install systemd-container".into()),
    }
}

/// False (after saying so) when the test should be skipped; panics when it
/// cannot run and was not told to skip.
pub fn can_run(test: &str) -> bool {
    let Some(why) = cannot_run() else {
        return true;
    };
    if std::env::var("QUANTUM_SKIP_NSPAWN").as_deref() == Ok("1") {
        eprintln!("\n!!!!!!!! SKIPPED {test}: {why} !!!!!!!!\n");
        return false;
    }
    panic!("{test} cannot run here: {why} (QUANTUM_SKIP_NSPAWN=1 skips it)");
}

/// The overlay-mounted root and the folder the container's /results is.
pub struct Machine {
    dir: TempDir,
    root: PathBuf,
}

impl Machine {
    /// Mounts the overlay and installs `script` as a unit that runs after boot.
    pub fn new(label: &str, script: &str) -> Machine {
        let dir = TempDir::new(label);
        let d = dir.path();
        for sub in ["upper", "work", "root", "results"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let root = d.join("root");
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir=/,upperdir={},workdir={}",
                d.join("upper").display(),
                d.join("work").display()
            ))
            .arg(&root)
            .status()
            .expect("mount");
        assert!(status.success(), "mount -t overlay failed");
        let machine = Machine { dir, root };
        let units = machine.path("/etc/systemd/system");
        // The host's other services and the first-boot prompt have no business
        // here; with only a loopback, waiting for "online" would take minutes.
        for unit in [
            "systemd-firstboot.service",
            "systemd-networkd-wait-online.service",
            "prometheus.service",
            "prometheus-node-exporter.service",
        ] {
            let _ = std::fs::remove_file(units.join(unit));
            symlink("/dev/null", units.join(unit)).unwrap();
        }
        write(&machine.path("/opt/qtest/run.sh"), script);
        write(
            &units.join("quantum-test-run.service"),
            "[Unit]\nDescription=the test's script\nAfter=multi-user.target redis-server.service\n\n\
             [Service]\nType=oneshot\nExecStart=/bin/sh /opt/qtest/run.sh\n\n\
             [Install]\nWantedBy=multi-user.target\n",
        );
        let wants = units.join("multi-user.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        let _ = std::fs::remove_file(wants.join("quantum-test-run.service"));
        symlink(
            "../quantum-test-run.service",
            wants.join("quantum-test-run.service"),
        )
        .unwrap();
        machine
    }

    /// A path inside the container, on the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    /// Boots until the script powers off (or `timeout_s`); the console's tail.
    pub fn boot(&self, extra: &[String], timeout_s: u32) -> String {
        let id = std::process::id();
        let out = Command::new("timeout")
            .args(["--kill-after=10", &timeout_s.to_string(), "systemd-nspawn"])
            .args(["--quiet", "--boot", "--register=no", "--keep-unit"])
            .args(["--private-network", "--machine", &format!("qtest-{id}")])
            .arg("-D")
            .arg(&self.root)
            .arg(format!(
                "--bind={}:/results",
                self.dir.path().join("results").display()
            ))
            .args(extra)
            .args(["--", "systemd.firstboot=off"])
            .output()
            .expect("run systemd-nspawn");
        let console = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = console.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A file the script wrote under /results ("" when it did not).
    pub fn result(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("results").join(name)).unwrap_or_default()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.root).status();
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
