//! `postgresql-charm wal-push` and `wal-fetch`: the charm binary as
//! PostgreSQL's archive_command and restore_command. They run as the server's
//! OS user outside any hook, read the repository settings the charm wrote,
//! and answer with the exit codes PostgreSQL acts on:
//!
//! - wal-push: 0 archived (or already archived, identical), 1 anything else;
//!   PostgreSQL keeps the segment and retries.
//! - wal-fetch: 0 restored, 1 not in the archive (PostgreSQL: end of the
//!   archive), [`FETCH_ABORT`] when the archive could not be read after the
//!   retries, or the file is corrupt, or the command is wrong: PostgreSQL
//!   aborts recovery rather than promote on partial history. With
//!   `--standby` (a replica's restore_command) it tries once and answers 1
//!   for anything but "found": a standby then streams from the primary
//!   instead, and stopping it for an S3 outage would help nobody.
//!
//! A restore from another cluster's repository reads WAL from there and
//! gives wal-fetch `--history-from` this cluster's own repository: a
//! timeline history file found in neither is not in the archive, so the
//! timeline the restored server promotes to is new in both.
//!
//! Failures are one line on stderr, e.g. `wal-push: cannot archive <segment>:
//! <reason>`; the settings' keys never appear in it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use super::repo::Repo;
use super::settings::RepoSettings;
use super::wal::{self, Backoff, Fetched};
use super::wal_ahead::{self, Ahead};

/// wal-fetch's exit code for anything but "found" and "not found": above
/// 125, so that PostgreSQL aborts recovery instead of ending it.
pub const FETCH_ABORT: u8 = 200;

/// Runs the subcommand `args[1]` names if it is `wal-push` or `wal-fetch`;
/// `None` for anything else (the binary then runs as a hook).
pub fn dispatch(args: &[OsString]) -> Option<ExitCode> {
    let command = args.get(1)?.to_str()?;
    let rest = &args[2..];
    match command {
        "wal-push" => Some(wal_push(rest)),
        "wal-fetch" => Some(wal_fetch(rest)),
        _ => None,
    }
}

fn wal_push(args: &[OsString]) -> ExitCode {
    let (settings, operands) = match parse(args, 1, "wal-push --settings FILE PATH")
        .and_then(|p| no_history_from(p, "wal-push"))
    {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("wal-push: {err:#}");
            return ExitCode::from(1);
        }
    };
    let file = PathBuf::from(&operands[0]);
    let segment = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    let result = RepoSettings::load(&settings).and_then(|settings| {
        // Pushed already, alongside an earlier segment: nothing to do.
        let ahead = Ahead::beside(&file, &settings);
        if ahead.claim(&segment, &file) {
            return Ok(());
        }
        let repo = Repo::open(&settings)?;
        block_on(wal_ahead::push(&repo, &ahead, &file)).map(drop)
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wal-push: cannot archive {segment}: {}", one_line(&err));
            ExitCode::from(1)
        }
    }
}

fn wal_fetch(args: &[OsString]) -> ExitCode {
    let usage = "wal-fetch --settings FILE [--history-from FILE] [--standby] NAME PATH";
    let standby = args.iter().any(|a| a == "--standby");
    let args: Vec<OsString> = args.iter().filter(|a| *a != "--standby").cloned().collect();
    let (backoff, failed) = match standby {
        true => (Backoff::ONCE, ExitCode::from(1)),
        false => (Backoff::STANDARD, ExitCode::from(FETCH_ABORT)),
    };
    let (settings, operands, history_from) = match parse(&args, 2, usage) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("wal-fetch: {err:#}");
            return failed;
        }
    };
    let name = operands[0].to_string_lossy().into_owned();
    let dest = PathBuf::from(&operands[1]);
    let result = block_on(async {
        let found = wal::fetch(&open(&settings)?, &name, &dest, &backoff).await?;
        match history_from {
            Some(other) if found == Fetched::NotFound && wal::is_history(&name) => {
                wal::fetch(&open(&other)?, &name, &dest, &backoff).await
            }
            _ => Ok(found),
        }
    });
    match result {
        Ok(Fetched::Found) => ExitCode::SUCCESS,
        Ok(Fetched::NotFound) => ExitCode::from(1),
        Err(err) => {
            eprintln!("wal-fetch: cannot restore {name}: {}", one_line(&err));
            failed
        }
    }
}

/// What the command line gave: the settings, the operands, and the
/// repository consulted for history files the first one lacks.
type Parsed = (PathBuf, Vec<OsString>, Option<PathBuf>);

/// `--settings FILE` and `--history-from FILE` (anywhere) and exactly
/// `count` operands.
fn parse(args: &[OsString], count: usize, usage: &str) -> Result<Parsed> {
    let mut settings = None;
    let mut history_from = None;
    let mut operands = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_str().unwrap_or_default();
        let (slot, inline) = match text.split_once('=') {
            Some(("--settings", value)) => (&mut settings, Some(value)),
            Some(("--history-from", value)) => (&mut history_from, Some(value)),
            _ if text == "--settings" => (&mut settings, None),
            _ if text == "--history-from" => (&mut history_from, None),
            _ => {
                operands.push(arg.clone());
                continue;
            }
        };
        let value = match inline {
            Some(value) => PathBuf::from(value),
            None => PathBuf::from(
                iter.next()
                    .with_context(|| format!("{text} needs a file"))?,
            ),
        };
        *slot = Some(value);
    }
    let Some(settings) = settings else {
        bail!("missing --settings; usage: {usage}");
    };
    if operands.len() != count {
        bail!(
            "expected {count} operand(s), got {}; usage: {usage}",
            operands.len()
        );
    }
    Ok((settings, operands, history_from))
}

/// wal-push archives into one repository only.
fn no_history_from(parsed: Parsed, command: &str) -> Result<(PathBuf, Vec<OsString>)> {
    match parsed {
        (_, _, Some(_)) => bail!("{command} takes no --history-from"),
        (settings, operands, None) => Ok((settings, operands)),
    }
}

/// The error's causes on one line, each said once: object_store's errors
/// already print their own sources, which `{:#}` would repeat.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|shown| shown.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ").replace(['\n', '\r'], " ")
}

fn open(settings: &std::path::Path) -> Result<Repo> {
    Repo::open(&RepoSettings::load(settings)?)
}

fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_the_two_subcommands_are_taken() {
        assert!(dispatch(&args(&["charm"])).is_none());
        assert!(dispatch(&args(&["charm", "install"])).is_none());
    }

    #[test]
    fn settings_and_operands_are_parsed_in_any_order() {
        let (s, ops, h) = parse(&args(&["--settings", "/s.json", "pg_wal/x"]), 1, "u").unwrap();
        assert_eq!(s, PathBuf::from("/s.json"));
        assert_eq!(ops, args(&["pg_wal/x"]));
        assert_eq!(h, None);
        let (s, ops, h) = parse(
            &args(&["a", "--settings=/t", "b", "--history-from", "/o"]),
            2,
            "u",
        )
        .unwrap();
        assert_eq!(s, PathBuf::from("/t"));
        assert_eq!(ops, args(&["a", "b"]));
        assert_eq!(h, Some(PathBuf::from("/o")));
        assert!(parse(&args(&["--settings", "/s", "a", "--history-from"]), 1, "u").is_err());
        assert!(parse(&args(&["pg_wal/x"]), 1, "u").is_err());
        assert!(parse(&args(&["--settings", "/s", "a", "b"]), 1, "u").is_err());
        assert!(parse(&args(&["--settings"]), 0, "u").is_err());
    }

    #[test]
    fn errors_are_one_line_with_each_cause_once() {
        #[derive(Debug)]
        struct Wrapping(std::io::Error);
        impl std::fmt::Display for Wrapping {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "store error: {}", self.0)
            }
        }
        impl std::error::Error for Wrapping {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::other("connection\nrefused");
        let err = anyhow::Error::new(Wrapping(io)).context("cannot list wal");
        assert_eq!(
            one_line(&err),
            "cannot list wal: store error: connection refused"
        );
    }

    #[test]
    fn a_fetch_that_cannot_read_its_settings_aborts_recovery() {
        let code = dispatch(&args(&[
            "charm",
            "wal-fetch",
            "--settings",
            "/nonexistent/settings.json",
            "000000010000000000000001",
            "/nonexistent/dest",
        ]));
        assert_eq!(code, Some(ExitCode::from(FETCH_ABORT)));
        // A standby's fetch says "not there": the standby then streams.
        let code = dispatch(&args(&[
            "charm",
            "wal-fetch",
            "--settings",
            "/nonexistent/settings.json",
            "--standby",
            "000000010000000000000001",
            "/nonexistent/dest",
        ]));
        assert_eq!(code, Some(ExitCode::from(1)));
        let code = dispatch(&args(&[
            "charm",
            "wal-push",
            "--settings",
            "/nonexistent/settings.json",
            "pg_wal/000000010000000000000001",
        ]));
        assert_eq!(code, Some(ExitCode::from(1)));
    }
}
