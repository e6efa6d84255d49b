//! The trigger reads `--env-file` as systemd reads `EnvironmentFile=`: the
//! fixtures in tests/fixtures/env-file/ against (a) what systemd 252 passed to
//! a process for each of them, recorded in systemd-252.json by booting this
//! machine's systemd in systemd-nspawn, and (b) a live systemd, booted the same
//! way (root and systemd-nspawn needed; QUANTUM_SKIP_NSPAWN=1 skips it out loud).

#[path = "../trigger/src/env_file.rs"]
#[allow(dead_code)]
mod env_file;

use quantum_integration::TempDir;
use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/env-file");
const FILES: [&str; 4] = [
    "accepted.env",
    "empty-key.env",
    "invalid-utf8.env",
    "nul-byte.env",
];

/// What a process gets from `file`, or None when the file is refused.
type Reading = Option<BTreeMap<String, String>>;

fn ours(file: &str) -> Reading {
    let bytes = std::fs::read(Path::new(FIXTURES).join(file)).unwrap();
    env_file::parse(&bytes)
        .ok()
        .map(|f| f.vars.into_iter().collect())
}

fn recorded() -> BTreeMap<String, Reading> {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("systemd-252.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    FILES
        .iter()
        .map(|file| {
            let reading = doc["files"][file].as_array().map(|pairs| {
                pairs
                    .iter()
                    .map(|p| {
                        let text = |i: usize| p[i].as_str().unwrap().to_string();
                        (text(0), text(1))
                    })
                    .collect()
            });
            (file.to_string(), reading)
        })
        .collect()
}

/// Line by line: every variable systemd set, and none it did not.
fn assert_same(file: &str, systemd: &Reading, what: &str) {
    let ours = ours(file);
    match (systemd, &ours) {
        (Some(systemd), Some(ours)) => {
            for (key, value) in systemd {
                assert_eq!(ours.get(key), Some(value), "{file}: {key} ({what})");
            }
            for key in ours.keys() {
                assert!(
                    systemd.contains_key(key),
                    "{file}: systemd has no {key} ({what})"
                );
            }
        }
        _ => assert_eq!(
            systemd.is_some(),
            ours.is_some(),
            "{file}: systemd loaded it: {}, we did: {} ({what})",
            systemd.is_some(),
            ours.is_some()
        ),
    }
}

#[test]
fn env_files_read_as_the_recorded_systemd_252_read_them() {
    let recorded = recorded();
    assert!(recorded["accepted.env"].as_ref().unwrap().len() > 15);
    for (file, systemd) in &recorded {
        assert_same(file, systemd, "recorded");
    }
}

/// Boots the machine's own systemd with one oneshot unit per fixture
/// (`EnvironmentFile=` it, run `env -0`) and one without a file, whose
/// variables (PATH, INVOCATION_ID, ...) are systemd's own.
fn systemd_readings(dir: &Path) -> BTreeMap<String, Reading> {
    let units = dir.join("units");
    let wants = units.join("multi-user.target.wants");
    let results = dir.join("results");
    std::fs::create_dir_all(&wants).unwrap();
    std::fs::create_dir_all(&results).unwrap();
    let unit = |name: &str, body: String| {
        std::fs::write(units.join(format!("{name}.service")), body).unwrap();
        symlink(
            format!("../{name}.service"),
            wants.join(format!("{name}.service")),
        )
        .unwrap();
    };
    let mut names = Vec::new();
    for (i, file) in FILES.iter().chain([&"none"]).enumerate() {
        let env_file = match *file {
            "none" => String::new(),
            file => format!("EnvironmentFile=/fixtures/{file}\n"),
        };
        unit(
            &format!("qsr-env-{i}"),
            format!(
                "[Service]\nType=oneshot\n{env_file}ExecStart=/usr/bin/env -0\n\
                 StandardOutput=file:/results/{i}.out\n"
            ),
        );
        names.push(format!("qsr-env-{i}.service"));
    }
    unit(
        "qsr-env-done",
        format!(
            "[Unit]\nAfter={}\n[Service]\nType=oneshot\n\
             ExecStart=/bin/sh -c 'touch /results/done; systemctl --no-block poweroff'\n",
            names.join(" ")
        ),
    );
    for masked in [
        "systemd-firstboot.service",
        "systemd-networkd-wait-online.service",
        "redis-server.service",
        "prometheus.service",
        "prometheus-node-exporter.service",
    ] {
        symlink("/dev/null", units.join(masked)).unwrap();
    }
    let machine = format!("qsr-env-{}", std::process::id());
    let uuid = format!("{:032x}", std::process::id() as u128 * 0x9e37_79b9 + 7);
    let bind = |flag: &str, from: &Path, to: &str| format!("--{flag}={}:{to}", from.display());
    let out = Command::new("timeout")
        .args([
            "--kill-after=10",
            "120",
            "systemd-nspawn",
            "--quiet",
            "-D",
            "/",
        ])
        .args(["--volatile=yes", "--boot", "--register=no", "--keep-unit"])
        .args(["--private-network", "--machine", &machine, "--uuid", &uuid])
        .arg(bind("bind-ro", &units, "/run/systemd/system"))
        .arg(bind("bind-ro", Path::new(FIXTURES), "/fixtures"))
        .arg(bind("bind", &results, "/results"))
        .args(["--", "systemd.firstboot=off"])
        .output()
        .expect("run systemd-nspawn");
    assert!(
        results.join("done").exists(),
        "the container did not finish: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let env = |i: usize| -> Reading {
        let bytes = std::fs::read(results.join(format!("{i}.out"))).ok()?;
        Some(
            bytes
                .split(|&b| b == 0)
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let kv = String::from_utf8(kv.to_vec()).unwrap();
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect(),
        )
    };
    let own = env(FILES.len()).expect("the unit without a file ran");
    FILES
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let reading = env(i).map(|mut vars| {
                vars.retain(|k, _| !own.contains_key(k));
                vars
            });
            (file.to_string(), reading)
        })
        .collect()
}

#[test]
fn env_files_read_as_a_live_systemd_reads_them() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let nspawn = Command::new("systemd-nspawn")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(is_root && nspawn) {
        if std::env::var("QUANTUM_SKIP_NSPAWN").as_deref() == Ok("1") {
            eprintln!("\n!!!!!!!! SKIPPED the live systemd env-file comparison: needs root and systemd-nspawn !!!!!!!!\n");
            return;
        }
        panic!("needs root and systemd-nspawn (QUANTUM_SKIP_NSPAWN=1 skips it)");
    }
    let dir = TempDir::new("env-systemd");
    let live = systemd_readings(dir.path());
    for (file, systemd) in &live {
        assert_same(file, systemd, "live systemd");
    }
    assert_eq!(live, recorded(), "the recording is what systemd does here");
}
