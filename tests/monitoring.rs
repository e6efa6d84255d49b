//! The example alert rules load in Prometheus and fire when they should.

use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/monitoring");

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(DIR)
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_are_valid_and_fire_as_described() {
    promtool(&["check", "rules", "quantum-stream-recover.rules.yml"]);
    promtool(&["test", "rules", "quantum-stream-recover.rules.test.yml"]);
}
