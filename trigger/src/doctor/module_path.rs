//! What the next restart of Redis loads: the module's `loadmodule` line in
//! redis.conf (and its includes), the file it names, and whether Redis's
//! systemd unit may map it.

use super::{fail, ok, property, systemctl, Check, MODULE_PATH};
use crate::redis_conf::LoadModule;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The `loadmodule` lines of redis.conf (and its includes) that load this
/// module: a path naming quantum, or the file MODULE LIST shows.
pub fn quantum_loadmodule_lines(
    conf: &Path,
    loaded: Option<&str>,
) -> std::io::Result<Vec<LoadModule>> {
    let loaded = loaded.map(resolved);
    Ok(crate::redis_conf::loadmodule_lines(conf)?
        .into_iter()
        .filter(|l| l.path.contains("quantum") || Some(resolved(&l.path)) == loaded)
        .collect())
}

/// Whether a unit with these `ExecPaths=`/`NoExecPaths=` may execute (map)
/// `path`: the longest listed prefix decides, as systemd nests its mounts.
pub fn exec_allowed(path: &str, exec_paths: &str, no_exec_paths: &str) -> bool {
    let under = |prefix: &str| {
        let prefix = prefix.trim_start_matches(['-', '+']).trim_end_matches('/');
        path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
    };
    let longest = |list: &str| {
        list.split_whitespace()
            .filter(|p| under(p))
            .map(|p| p.trim_start_matches(['-', '+']).trim_end_matches('/').len())
            .max()
    };
    match (longest(exec_paths), longest(no_exec_paths)) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(exec), Some(no_exec)) => exec >= no_exec,
    }
}

/// `ExecPaths=`/`NoExecPaths=` of Redis's unit; `Err` says why not checked.
/// A unit's `ExecPaths=` and `NoExecPaths=`, as `systemctl show` prints them.
struct ExecPaths {
    exec: String,
    no_exec: String,
}

fn unit_exec_paths(unit: &str) -> Result<ExecPaths, String> {
    let Some(show) = systemctl(&[
        "show",
        unit,
        "-p",
        "LoadState",
        "-p",
        "ExecPaths",
        "-p",
        "NoExecPaths",
    ]) else {
        return Err(format!("no systemctl here, {unit} not checked"));
    };
    if property(&show, "LoadState") != "loaded" {
        return Err(format!("no {unit} on this host, not checked"));
    }
    Ok(ExecPaths {
        exec: property(&show, "ExecPaths").to_string(),
        no_exec: property(&show, "NoExecPaths").to_string(),
    })
}

/// What the next restart of Redis loads: the quantum `loadmodule` line of
/// redis.conf (and its includes) must name an executable file Redis's unit may
/// map (the symlink's target counts), and the one MODULE LIST shows.
pub fn module_path_check(
    unit: &str,
    conf: &Path,
    lines: &std::io::Result<Vec<LoadModule>>,
    loaded: Option<String>,
) -> Check {
    let what = "module path";
    let unit_paths = unit_exec_paths(unit);
    let lines = match lines {
        Err(e) => {
            return fail(
                what,
                format!(
                    "cannot read {}: {e}; run doctor as root on the Redis host (--redis-conf \
                     names another file)",
                    conf.display()
                ),
            )
        }
        Ok(lines) if lines.is_empty() => {
            let (path, source) = match &loaded {
                Some(path) => (path.as_str(), "MODULE LIST"),
                None => (MODULE_PATH, "the package's path"),
            };
            let unit_note = match &unit_paths {
                Ok(p) if !exec_allowed(&resolved(path), &p.exec, &p.no_exec) => {
                    format!("; {unit} forbids executing {path} ({source})")
                }
                Ok(_) => format!("; {unit} may map {path} ({source})"),
                Err(why) => format!("; {why}"),
            };
            return fail(
                what,
                format!(
                    "no loadmodule line for the module in {} or its includes, so the next \
                     restart loads no module: add `loadmodule {MODULE_PATH}`{unit_note}",
                    conf.display()
                ),
            );
        }
        Ok(lines) => lines,
    };
    if lines.len() > 1 {
        let at: Vec<String> = lines
            .iter()
            .map(|l| format!("{}:{}", l.file.display(), l.line))
            .collect();
        return fail(
            what,
            format!(
                "loadmodule for the module {} times ({}): Redis refuses to start loading one \
                 module twice; keep one line",
                lines.len(),
                at.join(", ")
            ),
        );
    }
    let line = &lines[0];
    let at = format!(
        "{}:{} loadmodule {}",
        line.file.display(),
        line.line,
        line.path
    );
    let move_it = format!("point loadmodule at {MODULE_PATH} (package quantum-redis-module)");
    let real = match std::fs::canonicalize(&line.path) {
        Ok(real) => real.display().to_string(),
        Err(e) => {
            return fail(
                what,
                format!("{at}: {e}, so Redis would refuse to start: {move_it}"),
            )
        }
    };
    match std::fs::metadata(&real) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => {
            return fail(
                what,
                format!(
                    "{at}: {real} is not an executable file (Redis 7 refuses a module \
                     without x bits), so Redis would refuse to start: {move_it}"
                ),
            )
        }
        Err(e) => return fail(what, format!("{at}: {real}: {e}")),
    }
    let unit_note = match &unit_paths {
        Ok(ExecPaths { exec, no_exec }) if !exec_allowed(&real, exec, no_exec) => {
            return fail(
                what,
                format!(
                    "{unit} forbids executing {real} ({at}; NoExecPaths={no_exec} \
                     ExecPaths={exec}), so Redis would refuse to start: move the module to \
                     {MODULE_PATH} (package quantum-redis-module) and point loadmodule there"
                ),
            )
        }
        Ok(_) => format!("{unit} may map {real}"),
        Err(why) => why.clone(),
    };
    if let Some(loaded) = loaded {
        if resolved(&loaded) != real {
            return fail(
                what,
                format!(
                    "Redis runs {loaded} (MODULE LIST) but its next restart loads {real} \
                     ({at}): make sure that is the file you mean, or {move_it}"
                ),
            );
        }
    }
    ok(what, format!("{at}: {unit_note}"))
}

/// The path systemd and Redis will see (Debian links /lib to /usr/lib).
fn resolved(path: &str) -> String {
    std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_redis_unit_maps_only_usr_lib() {
        let (exec, no_exec) = ("/usr/bin/redis-server /usr/lib /lib", "/");
        assert!(exec_allowed(
            "/usr/lib/redis/modules/libquantum.so",
            exec,
            no_exec
        ));
        assert!(!exec_allowed(
            "/usr/local/lib/redis/libquantum.so",
            exec,
            no_exec
        ));
        assert!(!exec_allowed("/usr/library/x.so", exec, no_exec));
        assert!(exec_allowed("/opt/x.so", "", ""));
        assert!(!exec_allowed("/opt/x.so", "", "-/opt"));
    }
}
