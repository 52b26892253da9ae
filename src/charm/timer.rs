//! The unit's backup timer: what makes scheduled backups happen on a
//! machine where Juju runs hooks only when something changes.
//!
//! Hooks are not timers (update-status comes every five minutes at best,
//! and later when other hooks queue), so the charm keeps a small process of
//! its own on each unit while a backup schedule is set, as it keeps
//! PostgreSQL running: `postgresql-charm backup-timer`, detached, in a
//! session of its own. At each whole minute it runs
//! `juju-exec -u <unit> <charm binary> backup-tick`, which Juju runs in a
//! hook context on that unit, one at a time with its hooks and actions;
//! the tick decides whether a backup is due and whether this unit takes it
//! (`scheduled`). The timer knows nothing of schedules or backups.
//!
//! The config step arms the timer by writing `<storage>/backup-timer.json`
//! (the schedules; the first tick adds its minute, since when they hold, in
//! the clock the ticks go by) and disarms it by removing the file; the timer exits at its next minute when the file is gone, or when
//! its binary was replaced by an upgrade. Every hook starts a timer when the
//! file exists and none holds the lock beside it, so after a reboot or a
//! killed process the timer is back with the next hook (update-status at
//! the latest). What the last tick printed is in `<storage>/backup-timer.log`.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Timelike as _, Utc};
use serde::{Deserialize, Serialize};

use crate::backup::schedule::{self, Schedules};

/// The subcommand that runs the timer.
pub const SUBCOMMAND: &str = "backup-timer";
/// The subcommand the timer has Juju run in a hook context.
pub const TICK: &str = "backup-tick";

/// What the armed timer's file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Armed {
    /// The schedules, as `Schedules::describe` writes them.
    pub schedules: String,
    /// The minute of the first tick that saw them: no occurrence before it
    /// is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

fn armed_path(storage: &Path) -> PathBuf {
    storage.join("backup-timer.json")
}

fn lock_path(storage: &Path) -> PathBuf {
    storage.join("backup-timer.lock")
}

fn log_path(storage: &Path) -> PathBuf {
    storage.join("backup-timer.log")
}

/// The armed timer's file, if a schedule is set.
pub fn armed(storage: &Path) -> Option<Armed> {
    let text = std::fs::read(armed_path(storage)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Arms the timer for `schedules` (disarms it when there are none); a
/// change of schedules starts them afresh at the next tick.
pub fn arm(storage: &Path, schedules: &Schedules) -> Result<()> {
    if schedules.is_empty() {
        return disarm(storage);
    }
    let described = schedules.describe();
    if armed(storage).is_some_and(|a| a.schedules == described) {
        return Ok(());
    }
    save(
        storage,
        &Armed {
            schedules: described,
            since: None,
        },
    )
}

/// Since when the schedules hold, for a tick at `at`: the first tick's
/// minute, recorded by that tick.
pub fn since(storage: &Path, at: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let minute = at
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(at);
    let Some(mut armed) = armed(storage) else {
        return Ok(minute);
    };
    if let Some(since) = armed
        .since
        .as_deref()
        .and_then(|t| schedule::parse_time(t).ok())
    {
        return Ok(since);
    }
    armed.since = Some(schedule::format_time(minute));
    save(storage, &armed)?;
    Ok(minute)
}

fn save(storage: &Path, armed: &Armed) -> Result<()> {
    let path = armed_path(storage);
    let partial = path.with_extension("json.partial");
    let body = serde_json::to_vec(armed).context("cannot encode the backup timer's file")?;
    std::fs::write(&partial, body)
        .and_then(|()| std::fs::rename(&partial, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Disarms the timer: it exits at its next minute.
pub fn disarm(storage: &Path) -> Result<()> {
    let path = armed_path(storage);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Takes the timer's lock without waiting; `None` when a timer holds it.
fn try_lock(storage: &Path) -> Result<Option<std::fs::File>> {
    let path = lock_path(storage);
    let file =
        std::fs::File::create(&path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; released on close.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    Ok(locked.then_some(file))
}

/// Starts the timer for `unit` when it is armed and not running; returns
/// at once. A failure is logged: the next hook tries again.
pub fn keep_running(unit: &str, storage: &Path) {
    if armed(storage).is_none() {
        return;
    }
    let started = try_lock(storage).and_then(|free| {
        if free.is_none() {
            return Ok(());
        }
        drop(free);
        let exe = std::env::current_exe().context("cannot find the charm binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg(SUBCOMMAND).arg(unit).arg(storage);
        super::trash::spawn_detached(cmd, 0).context("cannot start the backup timer")?;
        Ok(())
    });
    if let Err(err) = started {
        tracing::warn!("{err:#}");
    }
}

/// Runs `backup-timer <unit> <storage> [<seconds>]` when `args[1]` names
/// it; `None` otherwise. The period (default 60 s) is for tests.
pub fn dispatch(args: &[OsString]) -> Option<ExitCode> {
    if args.get(1)?.to_str()? != SUBCOMMAND {
        return None;
    }
    let period = match args.get(4).map(|s| s.to_str().and_then(|s| s.parse().ok())) {
        None => Some(60),
        Some(parsed) => parsed.filter(|s: &u64| *s > 0),
    };
    let code = match (args.get(2..4), period) {
        (Some([unit, storage]), Some(period)) if args.len() <= 5 => {
            let unit = unit.to_string_lossy();
            match run(&unit, Path::new(storage), Duration::from_secs(period)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("{SUBCOMMAND}: {err:#}");
                    ExitCode::from(1)
                }
            }
        }
        _ => {
            eprintln!("usage: postgresql-charm {SUBCOMMAND} UNIT STORAGE [SECONDS]");
            ExitCode::from(2)
        }
    };
    Some(code)
}

/// `backup-tick [--at TIME]`: `None` when `args[1]` is not the tick, else
/// the time given (none: the system clock's).
pub fn tick_args(args: &[OsString]) -> Option<Result<Option<DateTime<Utc>>>> {
    if args.get(1)?.to_str()? != TICK {
        return None;
    }
    let rest: Vec<&str> = args[2..].iter().filter_map(|a| a.to_str()).collect();
    Some(match rest.as_slice() {
        [] => Ok(None),
        ["--at", at] => schedule::parse_time(at).map(Some),
        _ => Err(anyhow::anyhow!(
            "usage: postgresql-charm {TICK} [--at TIME]"
        )),
    })
}

/// The binary's identity, to notice an upgrade that replaced it.
fn identity(exe: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(exe).ok().map(|m| (m.dev(), m.ino()))
}

/// The timer's loop: at each whole period, while armed, one tick.
pub fn run(unit: &str, storage: &Path, period: Duration) -> Result<()> {
    let Some(_lock) = try_lock(storage)? else {
        // Another timer runs for this unit.
        return Ok(());
    };
    let exe = std::env::current_exe().context("cannot find the charm binary")?;
    let started_as = identity(&exe);
    if started_as.is_none() {
        bail!("cannot read {}", exe.display());
    }
    loop {
        std::thread::sleep(until_next(SystemTime::now(), period));
        if armed(storage).is_none() || identity(&exe) != started_as {
            return Ok(());
        }
        if let Err(err) = tick(unit, &exe, storage) {
            // The next period tries again; the log says why this one failed.
            let _ = std::fs::write(log_path(storage), format!("{err:#}\n"));
        }
    }
}

/// Has Juju run one tick on `unit`, its output kept in the log.
fn tick(unit: &str, exe: &Path, storage: &Path) -> Result<()> {
    let log = std::fs::File::create(log_path(storage))
        .with_context(|| format!("cannot write {}", log_path(storage).display()))?;
    let status = Command::new("juju-exec")
        .arg("-u")
        .arg(unit)
        .arg(exe)
        .arg(TICK)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot share the log")?)
        .stderr(log)
        .status()
        .context("cannot run juju-exec")?;
    if !status.success() {
        bail!("juju-exec exited with {status}");
    }
    Ok(())
}

/// How long from `now` to the next whole multiple of `period`.
fn until_next(now: SystemTime, period: Duration) -> Duration {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let period_ns = period.as_nanos().max(1);
    let into = since_epoch.as_nanos() % period_ns;
    Duration::from_nanos((period_ns - into) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::catalog::BackupKind;
    use crate::backup::schedule::Schedule;

    fn every(expression: &str) -> Schedules {
        Schedules::new(vec![Schedule::parse(BackupKind::Full, expression).unwrap()])
    }

    #[test]
    fn the_first_tick_sets_the_start_until_the_schedules_change() {
        let storage = tempfile::tempdir().unwrap();
        let t = |s: &str| schedule::parse_time(s).unwrap();
        arm(storage.path(), &every("0 3 * * *")).unwrap();
        let first = t("2030-01-01T00:01:00Z");
        assert_eq!(
            since(storage.path(), t("2030-01-01T00:01:07Z")).unwrap(),
            first
        );
        assert_eq!(
            since(storage.path(), t("2030-01-01T00:09:00Z")).unwrap(),
            first
        );
        // The same schedules again change nothing.
        arm(storage.path(), &every("0 3 * * *")).unwrap();
        assert_eq!(
            since(storage.path(), t("2030-01-01T00:10:00Z")).unwrap(),
            first
        );
        arm(storage.path(), &every("0 4 * * *")).unwrap();
        let changed = t("2030-01-01T00:12:00Z");
        assert_eq!(since(storage.path(), changed).unwrap(), changed);
        assert_eq!(armed(storage.path()).unwrap().schedules, "full=0 4 * * *");
        arm(storage.path(), &Schedules::default()).unwrap();
        assert_eq!(armed(storage.path()), None);
        disarm(storage.path()).unwrap();
    }

    #[test]
    fn the_next_tick_is_on_the_whole_period() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_millis(s);
        let minute = Duration::from_secs(60);
        assert_eq!(until_next(at(120_000), minute), minute);
        assert_eq!(
            until_next(at(120_250), minute),
            Duration::from_millis(59_750)
        );
        assert_eq!(until_next(at(179_999), minute), Duration::from_millis(1));
    }
}
