//! Scheduled backups: the tick the unit's timer has Juju run every minute
//! (`backup-tick [--at TIME]`, in a hook context), and the failure notice
//! that stays in the unit's status until a later scheduled backup succeeds.
//!
//! Every unit ticks; only the unit create-backup's TLS rule allows takes
//! scheduled backups, and of several such the first by unit number: the
//! first replica with TLS when there is one (sparing the primary), else the
//! primary. Each unit decides from its own view of the peer relation, so
//! while units come and go two may each think they are the one: the
//! cluster's backup lock keeps them from running at once, and the
//! repository's records (`schedule::covered`, checked again under the lock)
//! from taking an occurrence twice. A tick while another backup runs does
//! nothing; the next tick takes the occurrence if it is still due.
//!
//! The time of a tick is the system clock's, or `--at`: Juju's timer never
//! gives one, but an emulated clock (juju-local's) does.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::CharmConfig;
use super::peers::Peers;
use super::timer;
use super::workload::Workload;
use crate::actions::backups::repository;
use crate::actions::create_backup::{self, Order, Taken};
use crate::backup::catalog::{self, BackupRecord};
use crate::backup::schedule::{self, Due};
use crate::backup::{engine, lock, outage};
use crate::juju::{Context, HookTools, Status, StatusKind};

/// A scheduled backup that failed, kept until a later one succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The tick's time (the occurrence's, when a backup was due).
    pub at: String,
    pub message: String,
}

fn notice_path(storage: &Path) -> PathBuf {
    storage.join("backup-schedule-failure.json")
}

/// The failure notice of this unit, if any.
pub fn notice(storage: &Path) -> Option<Notice> {
    let text = std::fs::read(notice_path(storage)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn keep_notice(storage: &Path, notice: &Notice) -> Result<()> {
    let path = notice_path(storage);
    let body = serde_json::to_vec(notice).context("cannot encode the failure notice")?;
    std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))
}

fn clear_notice(storage: &Path) {
    let _ = std::fs::remove_file(notice_path(storage));
}

/// `status` with this unit's failure notice after it, while it serves.
pub fn with_notice(storage: &Path, status: Status) -> Status {
    match notice(storage) {
        Some(notice) if status.kind == StatusKind::Active => {
            let message = if status.message.is_empty() {
                notice.message
            } else {
                format!("{}; {}", status.message, notice.message)
            };
            Status::new(StatusKind::Active, message)
        }
        _ => status,
    }
}

/// The unit that takes scheduled backups, from every unit's TLS flag: the
/// first replica (by unit number) serving TLS, else the primary.
pub fn backup_unit<'a>(primary: &'a str, units: &'a [(String, bool)]) -> &'a str {
    let number = |unit: &str| {
        unit.rsplit('/')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    units
        .iter()
        .filter(|(unit, tls)| *tls && unit != primary)
        .min_by_key(|(unit, _)| number(unit))
        .map_or(primary, |(unit, _)| unit.as_str())
}

/// One tick at `at` (the system clock's time when none is given).
pub fn tick(ctx: &Context, tools: &dyn HookTools, at: Option<DateTime<Utc>>) -> Result<()> {
    let at = at.unwrap_or_else(Utc::now);

    // The schedules, and since when they hold on this unit.
    let config = CharmConfig::load(tools)?;
    let Some(storage) = Workload::cached_storage(ctx) else {
        return Ok(());
    };
    if config.schedules.is_empty() {
        return Ok(());
    }
    let since = timer::since(&storage, at)?;

    // Only the unit the TLS rule picks takes them.
    let Some(peers) = Peers::load(tools, ctx)? else {
        return Ok(());
    };
    let Some(primary) = peers.app_data.primary.as_deref() else {
        return Ok(());
    };
    let mut units: Vec<(String, bool)> = peers
        .members
        .iter()
        .map(|(unit, data)| (unit.clone(), data.tls == Some(true)))
        .collect();
    units.push((ctx.unit.clone(), peers.mine.tls == Some(true)));
    if backup_unit(primary, &units) != ctx.unit {
        return forget_superseded(ctx, tools, &storage);
    }

    // What is due, from the repository's records.
    let due = match records(ctx, tools) {
        Ok(records) => config.schedules.due(at, since, &records),
        Err(err) => {
            let message = format!("scheduled backups cannot run: {:#}", outage::explain(err));
            return failed(ctx, tools, &storage, at, message);
        }
    };
    let Some(due) = due else {
        return Ok(());
    };

    // Take it.
    tracing::info!(
        "scheduled {} backup for {}",
        due.kind,
        schedule::format_time(due.occurrence)
    );
    let progress = |line: &str| tracing::debug!("{line}");
    let order = Order {
        kind: due.kind,
        scheduled: Some(&due),
        progress: &progress,
    };
    match create_backup::take(ctx, tools, &order) {
        Ok(Taken::Backup { record, .. }) => {
            tracing::info!("scheduled backup {} ({}) created", record.id, record.kind);
            clear_notice(&storage);
            super::cluster::update_status(ctx, tools)
        }
        Ok(Taken::Covered) => Ok(()),
        Err(err) if err.downcast_ref::<lock::Busy>().is_some() => {
            tracing::info!("scheduled backup waits: {err:#}");
            Ok(())
        }
        Err(err) => {
            let message = failure(&due, err);
            failed(ctx, tools, &storage, due.occurrence, message)
        }
    }
}

/// The notice of a scheduled backup's failure, as the status shows it.
fn failure(due: &Due, err: anyhow::Error) -> String {
    let error = format!("{:#}", outage::explain(err));
    let error = error
        .strip_prefix("Failed to backup PostgreSQL with error: ")
        .unwrap_or(&error);
    format!(
        "scheduled {} backup for {} failed: {error}",
        due.kind,
        schedule::format_time(due.occurrence)
    )
}

/// Keeps the notice, logs it and shows it in the status.
fn failed(
    ctx: &Context,
    tools: &dyn HookTools,
    storage: &Path,
    at: DateTime<Utc>,
    message: String,
) -> Result<()> {
    tracing::error!("{message}");
    keep_notice(
        storage,
        &Notice {
            at: schedule::format_time(at),
            message,
        },
    )?;
    super::cluster::update_status(ctx, tools)
}

/// The repository's records (and with it, whether it can be reached).
fn records(ctx: &Context, tools: &dyn HookTools) -> Result<Vec<BackupRecord>> {
    let (_, _, repo) = repository(ctx, tools)?;
    let rt = engine::runtime(1)?;
    rt.block_on(catalog::list(&repo))
}

/// On a unit that no longer takes scheduled backups: its notice goes once
/// a later scheduled backup (from whichever unit) has succeeded.
fn forget_superseded(ctx: &Context, tools: &dyn HookTools, storage: &Path) -> Result<()> {
    let Some(notice) = notice(storage) else {
        return Ok(());
    };
    let Ok(since) = schedule::parse_time(&notice.at) else {
        clear_notice(storage);
        return Ok(());
    };
    let records = records(ctx, tools)?;
    let succeeded = records
        .iter()
        .any(|r| r.is_finished_backup() && schedule::scheduled_for(r).is_some_and(|t| t > since));
    if succeeded {
        clear_notice(storage);
        super::cluster::update_status(ctx, tools)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(u, t)| (u.to_string(), *t)).collect()
    }

    #[test]
    fn the_first_replica_with_tls_else_the_primary() {
        let all_tls = units(&[("pg/0", true), ("pg/12", true), ("pg/3", true)]);
        assert_eq!(backup_unit("pg/0", &all_tls), "pg/3");
        assert_eq!(backup_unit("pg/3", &all_tls), "pg/0");
        let no_tls = units(&[("pg/0", false), ("pg/1", false)]);
        assert_eq!(backup_unit("pg/1", &no_tls), "pg/1");
        // A replica still without its certificate is passed over.
        let one = units(&[("pg/0", true), ("pg/1", false), ("pg/2", true)]);
        assert_eq!(backup_unit("pg/0", &one), "pg/2");
        assert_eq!(backup_unit("pg/0", &units(&[("pg/0", true)])), "pg/0");
    }

    #[test]
    fn the_notice_follows_an_active_status_until_cleared() {
        let storage = tempfile::tempdir().unwrap();
        let active = || Status::new(StatusKind::Active, "Primary");
        assert_eq!(with_notice(storage.path(), active()), active());
        let notice = Notice {
            at: "2030-01-01T00:03:00Z".into(),
            message: "scheduled full backup for 2030-01-01T00:03:00Z failed: boom".into(),
        };
        keep_notice(storage.path(), &notice).unwrap();
        assert_eq!(
            with_notice(storage.path(), active()).message,
            "Primary; scheduled full backup for 2030-01-01T00:03:00Z failed: boom"
        );
        let blocked = Status::new(StatusKind::Blocked, "fix the repository");
        assert_eq!(with_notice(storage.path(), blocked.clone()), blocked);
        clear_notice(storage.path());
        assert_eq!(with_notice(storage.path(), active()), active());
    }
}
