//! The catalog: one record per backup, stored as `backups/<id>/record.json`
//! and written last, so that a backup exists exactly when its record does.
//! A failed backup gets a record too, with its error. Listing reads every
//! record; a backup directory without one was cut off and shows as failed.
//!
//! A restore is recorded the same way, as a row of kind [`BackupKind::Restore`]
//! (it created a timeline): it lists beside the backups but is never one, so
//! it is never a reference, never parsed from create-backup's `type` and
//! never a restore's base backup.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::repo::Repo;

/// What a backup stores: everything, or what changed since another one; or
/// a row that records a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Full,
    /// What changed since the last full backup.
    Differential,
    /// What changed since the last backup of any kind.
    Incremental,
    /// Not a backup: the record of a restore, which created a timeline
    /// (`reference` is the backup it restored). `FromStr` never yields it.
    Restore,
}

impl BackupKind {
    /// The `action` column of list-backups.
    pub fn action(self) -> &'static str {
        match self {
            Self::Full => "full backup",
            Self::Differential => "differential backup",
            Self::Incremental => "incremental backup",
            Self::Restore => "restore",
        }
    }

    /// True for the kinds that store a backup (all but `Restore`).
    pub fn is_backup(self) -> bool {
        match self {
            Self::Full | Self::Differential | Self::Incremental => true,
            Self::Restore => false,
        }
    }
}

impl FromStr for BackupKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(Self::Full),
            "differential" => Ok(Self::Differential),
            "incremental" => Ok(Self::Incremental),
            other => bail!(
                "Invalid backup type: {other}. Possible values: full, differential, incremental."
            ),
        }
    }
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "full",
            Self::Differential => "differential",
            Self::Incremental => "incremental",
            Self::Restore => "restore",
        })
    }
}

/// One file, directory or link of the data directory as a backup holds it.
///
/// A relation file of a differential or incremental backup may be held as
/// a base and layers: `object` holds the whole file as an earlier backup of
/// the chain read it (its SHA-256 is `base_sha256`), and each layer holds
/// the pages that changed since the backup before it (see `delta`); laid
/// over the base in order they give the file whose SHA-256 is `sha256`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileRecord {
    pub path: String,
    /// `file`, `dir` or `link`.
    pub kind: String,
    #[serde(default)]
    pub size: u64,
    /// Seconds since the epoch.
    #[serde(default)]
    pub mtime: i64,
    #[serde(default)]
    pub mode: u32,
    /// SHA-256 of the content (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// CRC-32C of the content, 8 hex digits of its value (files of backups
    /// taken since PostgreSQL's manifest lists CRC-32C; older ones have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    /// Key of the object holding the compressed content: in this backup's
    /// directory, or in the earlier backup it was unchanged since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Stored (compressed) bytes of that object.
    #[serde(default)]
    pub stored: u64,
    /// A link's target (tablespaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Blocks (numbered in the relation) whose page checksum failed when the
    /// backup read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_pages: Vec<u32>,
    /// The file's inode number and birth time (nanoseconds) when the backup
    /// read it: a later backup stores a page delta only against the same file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_ns: Option<u64>,
    /// With layers: the SHA-256 of the file `object` holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_sha256: Option<String>,
    /// Page deltas laid over the base, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
}

/// One page delta of a file: its object, its stored bytes, the SHA-256 and
/// CRC-32C (hex; none in records older than it) of the delta stream
/// (before compression and encryption) and its pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Layer {
    pub object: String,
    pub stored: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    pub pages: u32,
}

impl FileRecord {
    /// Every object the file's content comes from: the base, then its layers.
    pub fn objects(&self) -> impl Iterator<Item = &str> {
        self.sources().into_iter().map(|(object, _)| object)
    }

    /// The objects the file is rebuilt from, each with the SHA-256 of what
    /// it holds: the whole file, or its base then its layers.
    pub fn sources(&self) -> Vec<(&str, Option<&str>)> {
        let base_sha256 = match self.layers.is_empty() {
            true => self.sha256.as_deref(),
            false => self.base_sha256.as_deref(),
        };
        let layers = self
            .layers
            .iter()
            .map(|l| (l.object.as_str(), Some(l.sha256.as_str())));
        self.object
            .as_deref()
            .map(|object| (object, base_sha256))
            .into_iter()
            .chain(layers)
            .collect()
    }

    /// Takes the content of `earlier` (the same file, unchanged since that
    /// backup read it): its checksums and the objects that hold it.
    pub fn reuse(&mut self, earlier: &FileRecord) {
        self.sha256.clone_from(&earlier.sha256);
        self.crc32c.clone_from(&earlier.crc32c);
        self.object.clone_from(&earlier.object);
        self.stored = earlier.stored;
        self.base_sha256.clone_from(&earlier.base_sha256);
        self.layers.clone_from(&earlier.layers);
    }
}

/// Whether a backup can be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupStatus {
    Finished,
    Failed,
}

/// The record of one backup, or of one restore (kind `Restore`): then `id` is
/// the restore's time, `reference` the backup it restored, `timeline` the
/// timeline it created, `start_time` when it began, `finish_time` when the
/// restored primary accepted writes, the LSNs the point reached (or none),
/// and `files` empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupRecord {
    pub id: String,
    pub kind: BackupKind,
    /// The backup this one builds on (differential: the last full;
    /// incremental: the last backup of any kind).
    pub reference: Option<String>,
    pub status: BackupStatus,
    pub error: Option<String>,
    pub start_lsn: Option<String>,
    pub stop_lsn: Option<String>,
    pub start_time: String,
    pub finish_time: Option<String>,
    pub timeline: Option<u32>,
    /// The unit that took it.
    pub unit: String,
    pub pg_version: Option<u32>,
    pub system_identifier: Option<String>,
    /// Bytes of the data directory it represents, and bytes it added to the repository.
    #[serde(default)]
    pub database_bytes: u64,
    #[serde(default)]
    pub stored_bytes: u64,
    #[serde(default)]
    pub files: Vec<FileRecord>,
    /// For a scheduled backup: the occurrence of its schedule it was taken
    /// for (see `schedule`); none for one taken by an action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<String>,
}

impl BackupRecord {
    pub fn is_finished(&self) -> bool {
        self.status == BackupStatus::Finished
    }

    /// A finished backup (not a restore row): what a restore can start from
    /// and a new backup can build on.
    pub fn is_finished_backup(&self) -> bool {
        self.is_finished() && self.kind.is_backup()
    }

    /// When the record says it finished (ids and times are whole seconds).
    pub fn finished_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = self.finish_time.as_deref()?;
        Some(
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ")
                .ok()?
                .and_utc(),
        )
    }
}

/// `backups/<id>/` — everything of one backup.
pub fn backup_dir(id: &str) -> String {
    format!("backups/{id}")
}

fn record_path(id: &str) -> ObjectPath {
    ObjectPath::from(format!("{}/record.json", backup_dir(id)))
}

/// Writes a backup's record (the commit of the backup).
pub async fn save(repo: &Repo, record: &BackupRecord) -> Result<()> {
    let body = serde_json::to_vec(record).context("cannot encode the backup record")?;
    repo.store
        .put(&record_path(&record.id), PutPayload::from(body))
        .await
        .with_context(|| format!("cannot write the record of backup {}", record.id))?;
    Ok(())
}

/// Reads one backup's record.
pub async fn load(repo: &Repo, id: &str) -> Result<Option<BackupRecord>> {
    match repo.store.get(&record_path(id)).await {
        Ok(found) => {
            let bytes = found
                .bytes()
                .await
                .with_context(|| format!("cannot read the record of backup {id}"))?;
            let record = serde_json::from_slice(&bytes)
                .with_context(|| format!("the record of backup {id} is not valid"))?;
            Ok(Some(record))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read the record of backup {id}")),
    }
}

/// The WAL segment a backup starts in, from its `backup_label`
/// (`START WAL LOCATION: 0/2000028 (file 000000010000000000000002)`).
pub async fn start_segment(repo: &Repo, id: &str) -> Result<String> {
    let key = ObjectPath::from(format!("{}/backup_label", backup_dir(id)));
    let stored = match repo.store.get(&key).await {
        Ok(found) => found
            .bytes()
            .await
            .with_context(|| format!("cannot read {key}"))?,
        Err(object_store::Error::NotFound { .. }) => anyhow::bail!("{key} is missing"),
        Err(err) => return Err(err).with_context(|| format!("cannot read {key}")),
    };
    let label = repo.format.open_small(key.as_ref(), &stored)?;
    String::from_utf8_lossy(&label)
        .lines()
        .find_map(|line| {
            let file = line
                .strip_prefix("START WAL LOCATION: ")?
                .split("(file ")
                .nth(1)?
                .strip_suffix(')')?;
            (file.len() == 24 && file.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| file.to_owned())
        })
        .with_context(|| format!("{key} names no start segment"))
}

/// Every backup in the repository, sorted by id (ids sort by time). A
/// directory without a record was cut off mid-way: listed as failed.
pub async fn list(repo: &Repo) -> Result<Vec<BackupRecord>> {
    let listing = repo
        .store
        .list_with_delimiter(Some(&ObjectPath::from("backups")))
        .await
        .context("cannot list the backups in the repository")?;
    let ids: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .collect();
    let mut records: Vec<BackupRecord> = futures::stream::iter(ids)
        .map(|id| async move {
            let record = load(repo, &id).await?;
            Ok::<_, anyhow::Error>(record.unwrap_or_else(|| cut_off(&id)))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(records)
}

fn cut_off(id: &str) -> BackupRecord {
    BackupRecord {
        id: id.to_owned(),
        kind: BackupKind::Full,
        reference: None,
        status: BackupStatus::Failed,
        error: Some("the backup did not finish: it has no record".into()),
        start_lsn: None,
        stop_lsn: None,
        start_time: id.to_owned(),
        finish_time: None,
        timeline: None,
        unit: String::new(),
        pg_version: None,
        system_identifier: None,
        database_bytes: 0,
        stored_bytes: 0,
        files: Vec::new(),
        scheduled: None,
    }
}

/// The backup a new one of `kind` builds on, among finished backups of this
/// cluster (restore rows are not backups and are skipped); `None` for a full
/// backup. Fails with the anchor's message when there is no full backup to
/// build on.
pub fn reference_for(
    kind: BackupKind,
    records: &[BackupRecord],
    system_identifier: &str,
) -> Result<Option<String>> {
    let mut ours = records.iter().filter(|r| {
        r.is_finished_backup() && r.system_identifier.as_deref() == Some(system_identifier)
    });
    let reference = match kind {
        BackupKind::Full => return Ok(None),
        BackupKind::Restore => bail!("a restore is not a kind of backup: nothing to reference"),
        BackupKind::Differential => ours.rfind(|r| r.kind == BackupKind::Full),
        BackupKind::Incremental => {
            let candidates: Vec<&BackupRecord> = ours.collect();
            // Only a chain that starts with a full backup can be restored.
            candidates
                .iter()
                .rposition(|r| r.kind == BackupKind::Full)
                .map(|_| *candidates.last().unwrap())
        }
    };
    match reference {
        Some(r) => Ok(Some(r.id.clone())),
        None => bail!("Invalid backup type: {kind}. No previous full backup to reference."),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    pub fn record(id: &str, kind: BackupKind, finished: bool) -> BackupRecord {
        BackupRecord {
            kind,
            status: if finished {
                BackupStatus::Finished
            } else {
                BackupStatus::Failed
            },
            system_identifier: Some("42".into()),
            error: None,
            ..cut_off(id)
        }
    }

    #[test]
    fn references_follow_the_kind() {
        use BackupKind::*;
        let records = [
            record("2026-01-01T00:00:00Z", Full, true),
            record("2026-01-02T00:00:00Z", Incremental, true),
            record("2026-01-03T00:00:00Z", Full, false),
        ];
        assert_eq!(reference_for(Full, &records, "42").unwrap(), None);
        assert_eq!(
            reference_for(Differential, &records, "42")
                .unwrap()
                .unwrap(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            reference_for(Incremental, &records, "42").unwrap().unwrap(),
            "2026-01-02T00:00:00Z"
        );
        let err = reference_for(Differential, &records[1..], "42").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid backup type: differential. No previous full backup to reference."
        );
        let err = reference_for(Incremental, &records, "another cluster").unwrap_err();
        assert!(err.to_string().contains("No previous full backup"), "{err}");
    }

    #[test]
    fn restore_rows_are_never_references() {
        use BackupKind::*;
        let mut restore = record("2026-01-03T00:00:00Z", Restore, true);
        restore.reference = Some("2026-01-01T00:00:00Z".into());
        let records = [
            record("2026-01-01T00:00:00Z", Full, true),
            record("2026-01-02T00:00:00Z", Differential, true),
            restore,
        ];
        assert_eq!(
            reference_for(Incremental, &records, "42").unwrap().unwrap(),
            "2026-01-02T00:00:00Z"
        );
        assert_eq!(
            reference_for(Differential, &records, "42")
                .unwrap()
                .unwrap(),
            "2026-01-01T00:00:00Z"
        );
        // A restore alone is no full backup to build on.
        let err = reference_for(Incremental, &records[2..], "42").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid backup type: incremental. No previous full backup to reference."
        );
        assert!(reference_for(Restore, &records, "42").is_err());
    }

    #[test]
    fn restore_is_a_kind_of_row_but_not_a_backup_type() {
        let err = "restore".parse::<BackupKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid backup type: restore. Possible values: full, differential, incremental."
        );
        assert_eq!(BackupKind::Restore.action(), "restore");
        assert_eq!(BackupKind::Restore.to_string(), "restore");
        assert!(!BackupKind::Restore.is_backup());
        assert!(BackupKind::Full.is_backup() && BackupKind::Incremental.is_backup());
        let row = record("2026-01-03T00:00:00Z", BackupKind::Restore, true);
        assert!(row.is_finished() && !row.is_finished_backup());

        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["kind"], "restore");
        let back: BackupRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, row);
    }

    #[test]
    fn records_written_before_restore_rows_still_parse() {
        let old = r#"{"id":"2026-01-01T00:00:00Z","kind":"full","reference":null,
            "status":"finished","error":null,"start-lsn":"0/2000028","stop-lsn":"0/2000100",
            "start-time":"2026-01-01T00:00:00Z","finish-time":"2026-01-01T00:00:09Z",
            "timeline":1,"unit":"postgresql/0","pg-version":15,"system-identifier":"42"}"#;
        let record: BackupRecord = serde_json::from_str(old).unwrap();
        assert!(record.is_finished_backup());
        assert_eq!(record.kind, BackupKind::Full);
    }

    #[test]
    fn kinds_parse_with_the_anchor_message() {
        assert_eq!(
            "incremental".parse::<BackupKind>().unwrap(),
            BackupKind::Incremental
        );
        let err = "weekly".parse::<BackupKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid backup type: weekly. Possible values: full, differential, incremental."
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn records_list_sorted_and_cut_off_backups_show_as_failed() {
        let repo = Repo::new(Arc::new(InMemory::new()));
        save(
            &repo,
            &record("2026-01-02T00:00:00Z", BackupKind::Incremental, true),
        )
        .await
        .unwrap();
        save(
            &repo,
            &record("2026-01-01T00:00:00Z", BackupKind::Full, true),
        )
        .await
        .unwrap();
        let orphan = ObjectPath::from("backups/2026-01-03T00:00:00Z/data/0.zst");
        repo.store
            .put(&orphan, PutPayload::from_static(b"x"))
            .await
            .unwrap();

        let listed = list(&repo).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "2026-01-01T00:00:00Z",
                "2026-01-02T00:00:00Z",
                "2026-01-03T00:00:00Z"
            ]
        );
        assert!(!listed[2].is_finished());
        assert!(listed[2]
            .error
            .as_deref()
            .unwrap()
            .contains("did not finish"));
    }
}
