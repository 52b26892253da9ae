//! Removing backups from the repository: what depends on what, what a
//! retention policy lets go, and the removal itself, backups then the WAL
//! no kept backup needs.
//!
//! The rules:
//!
//! - A backup's files may be objects of the backups it builds on (an
//!   unchanged file points at its reference's object, a relation file kept
//!   as page deltas at its chain's objects), so a backup goes only
//!   together with every backup that builds on it, directly or not.
//! - A chain is a finished full backup and everything built on it. The
//!   policy keeps the newest chain always; with `full = N`, the newest N
//!   chains; with `days = D`, every chain needed to restore to any time in
//!   the last D days: those whose full ended within the window, and the
//!   newest one that ended before it. With both, a chain stays when either
//!   keeps it. With neither, nothing expires.
//! - A failed backup (or one cut off without a record) older than the
//!   oldest kept chain goes too; newer ones stay, to be looked at.
//!   Restore rows stay: they tell which cluster's history each timeline is.
//! - WAL: the segments (and backup history files) before the first segment
//!   the oldest kept backup starts from go; timeline history files stay. A
//!   point in time inside the window is after a kept backup's start, so it
//!   needs none of them.
//! - A backup's record is removed first: a removal cut short leaves a
//!   directory without a record, listed as failed, and removed next time.

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::catalog::{self, BackupKind, BackupRecord};
use super::repo::Repo;

/// How many backups to keep; `None` is no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub full: Option<u32>,
    pub days: Option<u32>,
}

/// The full backup at the root of `record`'s chain, if it has one.
fn root<'a>(by_id: &HashMap<&str, &'a BackupRecord>, record: &'a BackupRecord) -> Option<&'a str> {
    let mut current = record;
    for _ in 0..by_id.len() + 1 {
        match (&current.kind, &current.reference) {
            (BackupKind::Full, _) => return Some(&current.id),
            (BackupKind::Restore, _) | (_, None) => return None,
            (_, Some(reference)) => current = by_id.get(reference.as_str())?,
        }
    }
    None
}

/// The backups that build on `id`, directly or through others.
pub fn dependants<'a>(records: &'a [BackupRecord], id: &str) -> Vec<&'a BackupRecord> {
    let mut found: BTreeSet<&str> = BTreeSet::from([id]);
    loop {
        let before = found.len();
        for r in records.iter().filter(|r| r.kind.is_backup()) {
            if r.reference.as_deref().is_some_and(|p| found.contains(p)) {
                found.insert(&r.id);
            }
        }
        if found.len() == before {
            break;
        }
    }
    records
        .iter()
        .filter(|r| r.id != id && found.contains(r.id.as_str()) && r.kind.is_backup())
        .collect()
}

/// The ids the policy lets go, sorted.
pub fn expired(records: &[BackupRecord], policy: Policy, now: DateTime<Utc>) -> Vec<String> {
    if policy.full.is_none() && policy.days.is_none() {
        return Vec::new();
    }
    // The finished full backups, newest first, with when they ended.
    let mut fulls: Vec<(&BackupRecord, DateTime<Utc>)> = records
        .iter()
        .filter(|r| r.kind == BackupKind::Full && r.is_finished())
        .filter_map(|r| Some((r, r.finished_at()?)))
        .collect();
    fulls.sort_by(|a, b| (b.1, &b.0.id).cmp(&(a.1, &a.0.id)));
    let Some(newest) = fulls.first() else {
        return Vec::new();
    };

    let mut kept: BTreeSet<&str> = BTreeSet::from([newest.0.id.as_str()]);
    if let Some(n) = policy.full {
        kept.extend(fulls.iter().take(n as usize).map(|(r, _)| r.id.as_str()));
    }
    if let Some(days) = policy.days {
        let start = now - Duration::days(i64::from(days));
        kept.extend(
            fulls
                .iter()
                .take_while(|(_, end)| *end > start)
                .map(|(r, _)| r.id.as_str()),
        );
        if let Some((before, _)) = fulls.iter().find(|(_, end)| *end <= start) {
            kept.insert(&before.id);
        }
    }

    // Whole chains go; failed and cut-off backups older than every kept chain too.
    let by_id: HashMap<&str, &BackupRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let oldest_kept = fulls
        .iter()
        .filter(|(r, _)| kept.contains(r.id.as_str()))
        .map(|(r, _)| r.id.as_str())
        .min()
        .unwrap_or(newest.0.id.as_str());
    records
        .iter()
        .filter(|r| r.kind.is_backup())
        .filter(|r| match root(&by_id, r) {
            Some(full) if by_id[full].is_finished() => !kept.contains(full),
            _ => !r.is_finished() && r.id.as_str() < oldest_kept,
        })
        .map(|r| r.id.clone())
        .collect()
}

/// Refuses to remove `ids` when a backup that stays uses their files: the
/// dependants must go with them.
pub fn check_removable(records: &[BackupRecord], ids: &[String]) -> Result<()> {
    let going: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    for kept in records.iter().filter(|r| !going.contains(r.id.as_str())) {
        for (file, object) in kept
            .files
            .iter()
            .flat_map(|f| f.objects().map(move |o| (f, o)))
        {
            if let Some(used) = going
                .iter()
                .find(|id| object.starts_with(&format!("{}/", catalog::backup_dir(id))))
            {
                bail!(
                    "backup {} uses files of backup {used} ({}): remove it too, or keep {used}",
                    kept.id,
                    file.path
                );
            }
        }
    }
    Ok(())
}

/// Removes the backups `ids` (records first, then their objects); returns
/// the number of objects removed.
pub async fn remove_backups(
    repo: &Repo,
    records: &[BackupRecord],
    ids: &[String],
) -> Result<usize> {
    check_removable(records, ids)?;
    let mut removed = 0;
    for id in ids {
        let dir = ObjectPath::from(catalog::backup_dir(id));
        let record = ObjectPath::from(format!("{dir}/record.json"));
        match repo.store.delete(&record).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot remove the record of backup {id}"))
            }
        }
        removed += remove_all(repo.store.as_ref(), Some(&dir))
            .await
            .with_context(|| format!("cannot remove the files of backup {id}"))?;
    }
    Ok(removed)
}

/// Removes every object under `prefix` that `keep` does not hold on to.
async fn remove_matching(
    store: &dyn ObjectStore,
    prefix: Option<&ObjectPath>,
    keep: impl Fn(&ObjectPath) -> bool,
) -> Result<usize> {
    let doomed: Vec<ObjectPath> = store
        .list(prefix)
        .map_ok(|meta| meta.location)
        .try_filter(|location| futures::future::ready(!keep(location)))
        .try_collect()
        .await?;
    let count = doomed.len();
    let locations = futures::stream::iter(doomed.into_iter().map(Ok)).boxed();
    store
        .delete_stream(locations)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(count)
}

async fn remove_all(store: &dyn ObjectStore, prefix: Option<&ObjectPath>) -> Result<usize> {
    remove_matching(store, prefix, |_| false).await
}

/// Removes the WAL that no backup in `kept` needs; returns the number of
/// objects removed. Nothing goes when no finished backup is kept.
pub async fn prune_wal(repo: &Repo, kept: &[&BackupRecord]) -> Result<usize> {
    let mut first: Option<String> = None;
    for record in kept.iter().filter(|r| r.is_finished_backup()) {
        let segment = catalog::start_segment(repo, &record.id).await?;
        // Timelines aside: the log and segment numbers order the WAL.
        let position = segment[8..].to_owned();
        if first.as_ref().is_none_or(|f| position < *f) {
            first = Some(position);
        }
    }
    let Some(first) = first else {
        return Ok(0);
    };
    remove_matching(
        repo.store.as_ref(),
        Some(&ObjectPath::from("wal")),
        |location| match location.filename() {
            Some(name) if name.len() >= 24 && !name.contains(".history") => {
                !name.as_bytes()[..24].iter().all(u8::is_ascii_hexdigit) || name[8..24] >= *first
            }
            _ => true,
        },
    )
    .await
    .context("cannot remove the WAL no backup needs")
}

/// What a retention run removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    pub backups: Vec<String>,
    pub objects: usize,
    pub wal: usize,
}

/// Applies `policy` to the repository: the backups it lets go, then the WAL
/// no kept backup needs. The caller holds the backup lock. Without a policy
/// nothing is removed, not even WAL.
pub async fn apply(repo: &Repo, policy: Policy, now: DateTime<Utc>) -> Result<Expiry> {
    if policy == Policy::default() {
        return Ok(Expiry::default());
    }
    let records = catalog::list(repo).await?;
    let backups = expired(&records, policy, now);
    let objects = remove_backups(repo, &records, &backups).await?;
    let kept: Vec<&BackupRecord> = records
        .iter()
        .filter(|r| !backups.contains(&r.id))
        .collect();
    let wal = prune_wal(repo, &kept).await?;
    Ok(Expiry {
        backups,
        objects,
        wal,
    })
}

#[cfg(test)]
mod tests;
