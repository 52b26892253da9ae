//! `pg_rewind`: bringing a data directory that went its own way (a former
//! primary) back onto another server's history without copying it whole:
//! of the relation files, only the blocks the target changed after the
//! histories split (read from its WAL) and the files the source added; in
//! PostgreSQL 15, every other file whole, the source's WAL segments
//! included. What it copied is read from its own progress report.
//!
//! The target's server must be stopped. A dry run first proves that the
//! rewind applies (same system, a common checkpoint, the target's WAL since
//! then readable) without writing anything; a real run that fails part way
//! leaves the directory unusable, so the caller must have another way to
//! seed the unit.

use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use super::server::Server;

/// What the source is, and how to reach it.
pub struct Source<'a> {
    /// libpq connection string (no password: the password file has it).
    pub conninfo: &'a str,
    /// Environment for the connection (password file, TLS settings).
    pub env: &'a [(&'a str, String)],
    /// Fetch the target's own missing WAL with its `restore_command`.
    pub restore_target_wal: bool,
}

/// What a rewind did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewound {
    /// The target's history is already part of the source's.
    NotNeeded,
    /// It copied `copied_kb` of the source's `source_kb`.
    Copied { copied_kb: u64, source_kb: u64 },
}

impl Rewound {
    pub fn copied_bytes(&self) -> u64 {
        match self {
            Rewound::NotNeeded => 0,
            Rewound::Copied { copied_kb, .. } => copied_kb * 1024,
        }
    }
}

/// Runs `pg_rewind` on the stopped `server` from `source`; `dry_run` checks
/// without writing.
pub fn run(server: &Server, source: &Source<'_>, dry_run: bool) -> Result<Rewound> {
    let mut cmd = server.user.command(server.bin.program("pg_rewind"));
    cmd.arg("--target-pgdata")
        .arg(server.layout.data())
        .arg(format!("--source-server={}", source.conninfo))
        .arg("--progress")
        .envs(source.env.iter().map(|(k, v)| (*k, v.as_str())));
    if source.restore_target_wal {
        cmd.arg("--restore-target-wal");
    }
    if dry_run {
        cmd.arg("--dry-run");
    }
    let started = Instant::now();
    let out = cmd.output().context("cannot start pg_rewind")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "pg_rewind failed ({}): {}",
            out.status,
            last_lines(&stderr, 4)
        );
    }
    let rewound = parse(&stderr)?;
    tracing::debug!(
        "pg_rewind{} took {:.1} s: {rewound:?}",
        if dry_run { " --dry-run" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(rewound)
}

/// Reads what `pg_rewind --progress` reports on stderr: "no rewind
/// required", or its last progress line `<copied>/<total> kB (100%) copied`
/// and "need to copy … (total source directory size is <n> MB)".
pub fn parse(stderr: &str) -> Result<Rewound> {
    if stderr.contains("no rewind required") {
        return Ok(Rewound::NotNeeded);
    }
    let copied_kb = stderr
        .lines()
        .rev()
        .flat_map(|line| line.split('\r').rev())
        .find_map(|part| {
            let (copied, _) = part.trim().split_once(" kB (")?;
            copied.split('/').next()?.trim().parse::<u64>().ok()
        })
        .context("pg_rewind reported no progress: cannot tell what it copied")?;
    let source_kb = stderr
        .lines()
        .find_map(|line| {
            let rest = line.split("total source directory size is ").nth(1)?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(|mb| mb * 1024)
        .unwrap_or(0);
    Ok(Rewound::Copied {
        copied_kb,
        source_kb,
    })
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_pg_rewind_copied() {
        let stderr = "pg_rewind: servers diverged at WAL location 0/5000060 on timeline 1\n\
            pg_rewind: rewinding from last common checkpoint at 0/4000028 on timeline 1\n\
            pg_rewind: reading source file list\n\
            pg_rewind: reading target file list\n\
            pg_rewind: reading WAL in target\n\
            pg_rewind: need to copy 51 MB (total source directory size is 470 MB)\n\
            51207/51207 kB (100%) copied\n\
            pg_rewind: creating backup label and updating control file\n\
            pg_rewind: syncing target data directory\n\
            pg_rewind: Done!\n";
        assert_eq!(
            parse(stderr).unwrap(),
            Rewound::Copied {
                copied_kb: 51207,
                source_kb: 470 * 1024
            }
        );
    }

    #[test]
    fn reads_the_last_progress_line_when_redrawn_in_place() {
        let stderr = "pg_rewind: need to copy 2 MB (total source directory size is 30 MB)\n\
            0/2048 kB (0%) copied\r1024/2048 kB (50%) copied\r2048/2048 kB (100%) copied\n";
        assert_eq!(parse(stderr).unwrap().copied_bytes(), 2048 * 1024);
    }

    #[test]
    fn knows_when_no_rewind_was_needed() {
        let stderr = "pg_rewind: source and target cluster are on the same timeline\n\
            pg_rewind: no rewind required\n";
        assert_eq!(parse(stderr).unwrap(), Rewound::NotNeeded);
        assert_eq!(Rewound::NotNeeded.copied_bytes(), 0);
    }

    #[test]
    fn says_so_when_the_report_has_no_progress() {
        let err = parse("pg_rewind: Done!\n").unwrap_err();
        assert!(err.to_string().contains("no progress"), "{err}");
    }
}
