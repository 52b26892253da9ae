//! Archive recovery of a restored data directory: the settings that make
//! PostgreSQL replay WAL from the archive to a target and then promote, and
//! watching the server until it has promoted or stopped short. While it
//! replays, the server takes no connections (`hot_standby = off`), so it
//! needs no parameter at least as large as the backed-up server's, and
//! "ready" in its postmaster.pid means "promoted".

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::conf::quote;
use super::server::Server;

/// Where replay stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopAt {
    /// As soon as the restored backup is consistent: the backup's own end.
    Consistent,
    /// After the last transaction committed at or before this time
    /// (written as PostgreSQL reads a timestamptz).
    Time(String),
    /// At the end of the archive.
    End,
}

/// The recovery a restored data directory goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub restore_command: String,
    pub stop_at: StopAt,
    /// The timeline to follow; None follows the newest in the archive.
    pub timeline: Option<u32>,
}

impl Recovery {
    /// The postgresql.conf settings while recovery runs.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("restore_command", quote(&self.restore_command))];
        match &self.stop_at {
            StopAt::Consistent => out.push(("recovery_target", quote("immediate"))),
            StopAt::Time(time) => {
                out.push(("recovery_target_time", quote(time)));
                out.push(("recovery_target_inclusive", "on".into()));
            }
            StopAt::End => {}
        }
        out.push(("recovery_target_action", quote("promote")));
        let timeline = self
            .timeline
            .map_or_else(|| "latest".to_owned(), |t| t.to_string());
        out.push(("recovery_target_timeline", quote(&timeline)));
        out
    }
}

/// What the server's log says about a recovery that ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The commit time of the last transaction replayed, as logged.
    pub last_commit: Option<String>,
    /// Where replay ended (`redo done at …`).
    pub redo_done: Option<String>,
    /// The FATAL or PANIC line of the server giving up (not of a client
    /// it turned away).
    pub fatal: Option<String>,
    /// The last WAL file restored from the archive.
    pub last_restored: Option<String>,
}

impl Outcome {
    fn read(lines: &[String]) -> Self {
        let mut out = Self::default();
        for line in lines {
            if let Some(rest) = after(line, "last completed transaction was at log time ") {
                out.last_commit = Some(rest.to_owned());
            } else if let Some(rest) = after(line, "redo done at ") {
                out.redo_done = rest.split_whitespace().next().map(str::to_owned);
            } else if let Some(rest) = after(line, "restored log file \"") {
                out.last_restored = rest.split('"').next().map(str::to_owned);
            }
            // The startup process's own reason, not a client turned away.
            for level in ["FATAL:", "PANIC:"] {
                if let Some(rest) = after(line, level) {
                    let rest = rest.trim();
                    if !CLIENT_REFUSALS.iter().any(|m| rest.starts_with(m)) {
                        out.fatal = Some(rest.to_owned());
                    }
                }
            }
        }
        out
    }
}

/// What the server tells clients it turns away while it starts or stops.
const CLIENT_REFUSALS: [&str; 4] = [
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
];

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|at| &line[at + marker.len()..])
}

/// Why a recovery failed, with what the log said.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RecoveryFailed {
    pub message: String,
    pub outcome: Outcome,
}

/// Starts the server on a data directory set up for recovery and waits
/// until it has promoted; `progress` hears about the WAL it replays. When
/// the server stops instead, the error says why and how far it got.
pub fn run(server: &Server, progress: &mut dyn FnMut(&str)) -> Result<Outcome> {
    let mut log = LogCursor::at_end(&server.layout.log_dir());
    server.start_in_background()?;
    let started = Instant::now();
    let mut seen_running = false;
    let mut last_report = Instant::now();
    let mut lines = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        lines.extend(log.read_new());
        if server.is_ready()? {
            return Ok(Outcome::read(&lines));
        }
        if server.is_running()? {
            seen_running = true;
        } else if seen_running || started.elapsed() > Duration::from_secs(30) {
            lines.extend(log.read_new());
            let outcome = Outcome::read(&lines);
            let why = outcome
                .fatal
                .clone()
                .unwrap_or_else(|| "the server stopped without saying why".into());
            let reached = match &outcome.last_commit {
                Some(time) => format!("the last transaction replayed committed at {time}"),
                None => "no transaction was replayed".into(),
            };
            return Err(RecoveryFailed {
                message: format!("recovery stopped: {why}; {reached}"),
                outcome,
            }
            .into());
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let outcome = Outcome::read(&lines);
            progress(&match outcome.last_restored {
                Some(file) => format!("replaying WAL: restored {file} from the archive"),
                None => "replaying WAL".into(),
            });
        }
    }
}

/// Reads what the server logs from now on, across its log files (the
/// collector's and pg_ctl's startup log).
struct LogCursor {
    dir: PathBuf,
    offsets: BTreeMap<PathBuf, u64>,
}

impl LogCursor {
    fn at_end(dir: &Path) -> Self {
        let mut offsets = BTreeMap::new();
        for path in log_files(dir) {
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            offsets.insert(path, len);
        }
        Self {
            dir: dir.to_owned(),
            offsets,
        }
    }

    fn read_new(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        for path in log_files(&self.dir) {
            let offset = self.offsets.get(&path).copied().unwrap_or(0);
            let Ok(mut file) = std::fs::File::open(&path) else {
                continue;
            };
            let len = file.metadata().map_or(0, |m| m.len());
            // A file rotated with truncation starts again from its beginning.
            let from = if len < offset { 0 } else { offset };
            let mut text = String::new();
            if file.seek(SeekFrom::Start(from)).is_ok() && file.read_to_string(&mut text).is_ok() {
                // Only whole lines; the rest is read next time.
                let complete = text.rfind('\n').map_or(0, |at| at + 1);
                lines.extend(text[..complete].lines().map(str::to_owned));
                self.offsets.insert(path, from + complete as u64);
            }
        }
        lines
    }
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_target_renders_its_settings() {
        let r = |stop_at, timeline| Recovery {
            restore_command: "charm wal-fetch %f %p".into(),
            stop_at,
            timeline,
        };
        let at_end = r(StopAt::Consistent, Some(1)).settings();
        assert!(at_end.contains(&("recovery_target", "'immediate'".into())));
        assert!(at_end.contains(&("recovery_target_timeline", "'1'".into())));
        assert!(at_end.contains(&("recovery_target_action", "'promote'".into())));

        let at_time = r(StopAt::Time("2026-11-22 10:00:00+00".into()), Some(2)).settings();
        assert!(at_time.contains(&("recovery_target_time", "'2026-11-22 10:00:00+00'".into())));
        assert!(!at_time.iter().any(|(k, _)| *k == "recovery_target"));

        let latest = r(StopAt::End, None).settings();
        assert!(latest.contains(&("recovery_target_timeline", "'latest'".into())));
        assert!(!latest
            .iter()
            .any(|(k, _)| k.starts_with("recovery_target_t") && *k != "recovery_target_timeline"));
        assert!(latest.contains(&("restore_command", "'charm wal-fetch %f %p'".into())));
    }

    #[test]
    fn the_log_tells_how_far_recovery_got_and_why_it_stopped() {
        let lines: Vec<String> = [
            "2026-11-22 10:00:01.000 UTC [9] LOG:  restored log file \"000000010000000000000004\" from archive",
            "2026-11-22 10:00:02.000 UTC [9] LOG:  redo done at 0/4000100 system usage: CPU: user: 0.00 s",
            "2026-11-22 10:00:02.000 UTC [9] LOG:  last completed transaction was at log time 2026-11-22 09:59:58.123+00",
            "2026-11-22 10:00:01.500 UTC [12] replication@[unknown] FATAL:  the database system is starting up",
            "2026-11-22 10:00:02.000 UTC [9] FATAL:  recovery ended before configured recovery target was reached",
            "2026-11-22 10:00:02.100 UTC [13] replication@[unknown] FATAL:  the database system is shutting down",
        ]
        .map(String::from)
        .to_vec();
        let outcome = Outcome::read(&lines);
        assert_eq!(
            outcome.last_restored.as_deref(),
            Some("000000010000000000000004")
        );
        assert_eq!(outcome.redo_done.as_deref(), Some("0/4000100"));
        assert_eq!(
            outcome.last_commit.as_deref(),
            Some("2026-11-22 09:59:58.123+00")
        );
        assert_eq!(
            outcome.fatal.as_deref(),
            Some("recovery ended before configured recovery target was reached")
        );
    }

    #[test]
    fn the_cursor_reads_only_what_was_logged_since() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("postgresql-Sun.log");
        std::fs::write(&file, "old line\n").unwrap();
        let mut cursor = LogCursor::at_end(dir.path());
        std::fs::write(&file, "old line\nnew line\npartial").unwrap();
        std::fs::write(dir.path().join("startup.log"), "started\n").unwrap();
        let mut got = cursor.read_new();
        got.sort();
        assert_eq!(got, ["new line", "started"]);
        assert!(cursor.read_new().is_empty());
    }
}
