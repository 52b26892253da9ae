//! The model's log (`<model>/debug.log`): one line per event, as
//! `unit-<app>-<n>: HH:MM:SS LEVEL <module> <message>`, which `debug-log` prints.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// The agent tag of a unit: `postgresql/0` -> `unit-postgresql-0`.
pub fn tag(unit: &str) -> String {
    format!("unit-{}", crate::model::unit_dirname(unit))
}

/// Appends one line per message line; logging never fails a hook.
pub fn append(model_dir: &Path, unit: &str, level: &str, module: &str, message: &str) {
    let t = crate::fsutil::hms_now();
    let mut text = String::new();
    for line in message.lines() {
        text.push_str(&format!("{}: {t} {level} {module} {line}\n", tag(unit)));
    }
    if message.is_empty() {
        text = format!("{}: {t} {level} {module} \n", tag(unit));
    }
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(model_dir.join("debug.log"))
    {
        let _ = f.write_all(text.as_bytes());
    }
}

const LEVELS: &[&str] = &["TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/// Whether a log line passes `--include <unit>` and `--level LEVEL`.
pub fn keep(line: &str, include: &[String], level: Option<&str>) -> bool {
    if !include.is_empty() {
        let ok = include.iter().any(|i| {
            let t = if i.starts_with("unit-") {
                i.clone()
            } else {
                tag(i)
            };
            line.starts_with(&format!("{t}:"))
        });
        if !ok {
            return false;
        }
    }
    if let Some(min) = level {
        let min = LEVELS
            .iter()
            .position(|l| l.eq_ignore_ascii_case(min))
            .unwrap_or(0);
        let lvl = line.split_whitespace().nth(2).unwrap_or("");
        let at = LEVELS
            .iter()
            .position(|l| *l == lvl)
            .unwrap_or(LEVELS.len());
        if at < min {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let line = "unit-pg-0: 10:00:00 INFO juju.worker.uniter.operation ran \"install\" hook";
        assert!(keep(line, &["pg/0".into()], None));
        assert!(!keep(line, &["pg/1".into()], None));
        assert!(keep(line, &[], Some("info")));
        assert!(!keep(line, &[], Some("WARNING")));
    }
}
