//! How a replica gets its data directory. When the repository holds a
//! recent backup of this cluster, the unit restores it from S3 and replays
//! the archive, so that the primary sends only the WAL not archived yet
//! (the way Crunchy's operator seeds replicas from pgBackRest); otherwise,
//! or when any step of that fails, it copies the primary's data with
//! `pg_basebackup`.
//!
//! A backup is recent enough when it is a finished backup of this cluster
//! (the primary's system identifier), on the primary's current timeline,
//! and the primary has written no more WAL since it started than the
//! backup's database holds: replaying more would take longer than copying.
//! The restored copy is checked file by file (each against its SHA-256)
//! and by `pg_verifybackup` (every file of the manifest there, with its
//! size) before it is swapped in, and whatever the unit had before is kept aside
//! until the server has started on the copy; a copy that does not start is
//! taken out again and the unit falls back to `pg_basebackup`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::Cluster;
use crate::backup::catalog::{self, BackupRecord};
use crate::backup::repo::Repo;
use crate::backup::settings::RepoSettings;
use crate::backup::{engine, owner};
use crate::charm::archiving;
use crate::charm::restore::fetch_into;
use crate::juju::{Status, StatusKind};
use crate::postgres::conf::Standby;
use crate::postgres::sql::{parse_lsn, Db};

/// Threads of the runtime the repository is read on.
const CONCURRENCY: usize = 4;

/// What seeding from the repository came to.
enum FromRepository {
    /// No backup recent enough: nothing changed.
    NoBackup,
    /// A standby runs on the restored backup; the data directory the unit
    /// had before, if any, is set aside.
    Seeded { set_aside: Option<PathBuf> },
}

/// Where a replica copies its data from when it cannot use the repository.
pub struct Upstream<'a> {
    /// The primary's unit and address.
    pub unit: &'a str,
    pub address: IpAddr,
    /// This unit's slot on the primary.
    pub slot: &'a str,
    /// The TLS settings of `pg_basebackup`'s connection.
    pub ssl_env: &'a [(&'a str, String)],
}

/// What the primary says of itself, to judge a backup by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryState {
    pub system_identifier: String,
    pub timeline: u32,
    /// Its current WAL position.
    pub lsn: u64,
}

impl PrimaryState {
    fn read(db: &Db) -> Result<Self> {
        Ok(Self {
            system_identifier: db
                .query_text("SELECT system_identifier::text FROM pg_control_system()")?,
            timeline: db.timeline()?,
            lsn: parse_lsn(&db.query_text("SELECT pg_current_wal_lsn()::text")?)?,
        })
    }
}

/// Gives this unit (its server stopped) a data directory and starts a
/// standby on it; returns the directory it had before, set aside, for the
/// caller to remove.
pub fn seed(
    c: &Cluster<'_>,
    upstream: &Upstream<'_>,
    standby: Standby<'_>,
) -> Result<Option<PathBuf>> {
    let server = &c.workload.server;
    if let Some(settings) = &c.repository {
        match from_repository(c, settings, standby.clone()) {
            Ok(FromRepository::Seeded { set_aside }) => return Ok(set_aside),
            Ok(FromRepository::NoBackup) => tracing::info!(
                "no recent backup of this cluster in the repository: copying the data of {}",
                upstream.unit
            ),
            Err(err) => tracing::warn!(
                "cannot seed this unit from the repository ({err:#}): copying the data of {} \
                 instead",
                upstream.unit
            ),
        }
    }
    status(c, format!("copying the data of {}", upstream.unit))?;
    let set_aside = server.seed_from(upstream.address, upstream.slot, upstream.ssl_env)?;
    c.workload.configure(&c.peers, Some(standby))?;
    server.start()?;
    tracing::info!("seeded this unit from {} by pg_basebackup", upstream.unit);
    Ok(set_aside)
}

/// The newest backup of `records` a replica of `primary` can start from,
/// if it is recent enough (see the module).
pub fn recent_backup<'r>(
    records: &'r [BackupRecord],
    primary: &PrimaryState,
) -> Option<&'r BackupRecord> {
    let newest = records.iter().rev().find(|r| {
        r.is_finished_backup()
            && r.system_identifier.as_deref() == Some(&primary.system_identifier)
            && r.timeline == Some(primary.timeline)
    })?;
    let start = parse_lsn(newest.start_lsn.as_deref()?).ok()?;
    (primary.lsn.saturating_sub(start) <= newest.database_bytes).then_some(newest)
}

/// Seeds from the repository's most recent backup, if there is one recent
/// enough: restored beside the data directory, checked, swapped in and
/// started as a standby that reads the archive. On failure, nothing is
/// left changed.
fn from_repository(
    c: &Cluster<'_>,
    settings: &RepoSettings,
    standby: Standby<'_>,
) -> Result<FromRepository> {
    let server = &c.workload.server;
    // A new unit has not written the settings the archive's reader needs.
    let command = match standby.restore_command {
        Some(command) => command.to_owned(),
        None => {
            settings.save(&archiving::settings_path(server), &server.user)?;
            archiving::fetch_command(c.ctx, server)?
        }
    };
    let standby = Standby {
        restore_command: Some(&command),
        ..standby
    };

    // The backup: this cluster's newest, if recent enough.
    let primary = super::connect_primary(c.ctx, &c.peers, &c.passwords)
        .and_then(|db| PrimaryState::read(&db))
        .context("cannot ask the primary where it is")?;
    let rt = engine::runtime(CONCURRENCY)?;
    let repo = Repo::open(settings)?;
    let ours = rt
        .block_on(owner::read(&repo))?
        .is_some_and(|o| o.system_identifier == primary.system_identifier);
    if !ours {
        return Ok(FromRepository::NoBackup);
    }
    let records = rt.block_on(catalog::list(&repo))?;
    let Some(record) = recent_backup(&records, &primary) else {
        return Ok(FromRepository::NoBackup);
    };

    // Its files, beside the data directory, checked.
    status(
        c,
        format!("restoring backup {} to seed this unit", record.id),
    )?;
    let incoming = server.layout.storage.join("data.incoming");
    let progress = |line: &str| tracing::info!("{line}");
    let fetched = fetch_into(server, &rt, &repo, record, &incoming, &progress).and_then(|()| {
        server
            .user
            .write_file(&incoming.join("standby.signal"), b"", 0o600)
    });
    if let Err(err) = fetched {
        let _ = std::fs::remove_dir_all(&incoming);
        return Err(err.context(format!("cannot restore backup {}", record.id)));
    }

    // In place, started as a standby: it replays the archive, then streams.
    let set_aside = server.swap_in(&incoming)?;
    let started = c
        .workload
        .configure(&c.peers, Some(standby))
        .and_then(|_| server.start());
    if let Err(err) = started {
        let _ = server.stop();
        let rejected = server.layout.storage.join("data.rejected");
        server.swap_back(set_aside.as_deref(), &rejected)?;
        let _ = std::fs::remove_dir_all(&rejected);
        return Err(err.context(format!("the copy of backup {} did not start", record.id)));
    }
    tracing::info!(
        "seeded this unit from backup {} in the repository; streaming the rest from the primary",
        record.id
    );
    Ok(FromRepository::Seeded { set_aside })
}

fn status(c: &Cluster<'_>, message: String) -> Result<()> {
    c.tools
        .status_set(false, &Status::new(StatusKind::Maintenance, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::catalog::BackupKind;

    fn backup(id: &str, timeline: u32, start: &str, bytes: u64) -> BackupRecord {
        let mut r = catalog::tests::record(id, BackupKind::Full, true);
        r.timeline = Some(timeline);
        r.start_lsn = Some(start.into());
        r.database_bytes = bytes;
        r
    }

    #[test]
    fn the_newest_backup_of_the_cluster_on_its_timeline_if_little_wal_followed() {
        let primary = PrimaryState {
            system_identifier: "42".into(),
            timeline: 2,
            lsn: 0x3000_0000,
        };
        let older = backup("2026-01-01T00:00:00Z", 2, "0/10000000", 1 << 30);
        let newer = backup("2026-01-02T00:00:00Z", 2, "0/20000000", 1 << 30);
        let records = vec![older.clone(), newer.clone()];
        assert_eq!(recent_backup(&records, &primary), Some(&newer));

        // More WAL since it began than the database holds: copy instead.
        let small = backup("2026-01-02T00:00:00Z", 2, "0/20000000", 0x0fff_ffff);
        assert_eq!(recent_backup(&[older.clone(), small], &primary), None);

        // Another timeline, another cluster, or not finished: passed over.
        let mut failed = newer.clone();
        failed.status = catalog::BackupStatus::Failed;
        assert_eq!(
            recent_backup(&[older.clone(), failed], &primary),
            Some(&older)
        );
        let other_timeline = backup("2026-01-03T00:00:00Z", 1, "0/28000000", 1 << 30);
        assert_eq!(
            recent_backup(&[older.clone(), other_timeline], &primary),
            Some(&older)
        );
        let mut foreign = newer.clone();
        foreign.system_identifier = Some("7".into());
        assert_eq!(recent_backup(&[foreign], &primary), None);
        let mut restore_row = newer;
        restore_row.kind = BackupKind::Restore;
        assert_eq!(recent_backup(&[restore_row], &primary), None);
    }
}
