//! What a unit still owes the repository after an S3 outage. When a failed
//! backup's record cannot be written, or its lock cannot be released, a
//! small note keeps them in the unit's storage (`backup-pending/<id>.json`);
//! the next create-backup or list-backups on that unit writes the record,
//! releases the lock if it still holds it, and removes the note. A note
//! names its repository and is only ever written there.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::catalog::{self, BackupRecord};
use super::lock::{self, Holder};
use super::repo::Repo;
use super::settings::RepoSettings;

/// What one backup still owes the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Note {
    /// The repository it is owed to (see [`location`]).
    pub repository: String,
    /// The failed record to write.
    pub record: Option<BackupRecord>,
    /// The lock to release, if this holder still has it.
    pub lock: Option<Holder>,
}

impl Note {
    /// True when nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.record.is_none() && self.lock.is_none()
    }
}

/// A repository's location: endpoint, bucket and prefix (no credentials).
pub fn location(settings: &RepoSettings) -> String {
    format!(
        "{}/{}/{}",
        settings.endpoint.trim_end_matches('/'),
        settings.bucket,
        settings.prefix()
    )
}

/// Where a unit keeps its notes: a directory in its storage.
pub fn dir(storage: &Path) -> PathBuf {
    storage.join("backup-pending")
}

/// Keeps `note` for backup `id` in `dir` (replaced atomically, mode 0600).
pub fn keep(dir: &Path, id: &str, note: &Note) -> Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        bail!("cannot keep a note for backup {id:?}: not a backup id");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let body = serde_json::to_vec_pretty(note).context("cannot encode the note")?;
    let path = dir.join(format!("{id}.json"));
    let tmp = dir.join(format!(".{id}.json.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| file.write_all(&body).and_then(|()| file.sync_all()))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(path)
}

/// Writes what every note in `dir` owes to `repo` (at `repository`), oldest
/// backup first, removing each note once done; stops at the first failure,
/// keeping that note and the later ones. Notes owed to another repository
/// stay; a note that cannot be read is dropped with a warning. Returns the
/// ids of the backups whose notes were written.
pub async fn flush(repo: &Repo, repository: &str, dir: &Path) -> Result<Vec<String>> {
    let mut notes: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", dir.display())),
    };
    // Backup ids sort by time.
    notes.sort();
    let mut done = Vec::new();
    for path in notes {
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(serde_json::from_slice::<Note>(&bytes)?));
        let note = match parsed {
            Ok(note) => note,
            Err(err) => {
                tracing::warn!("dropping the unreadable note {}: {err:#}", path.display());
                remove(&path)?;
                continue;
            }
        };
        if note.repository != repository {
            continue;
        }
        settle(repo, &note)
            .await
            .with_context(|| format!("cannot record what backup {id} left undone"))?;
        remove(&path)?;
        done.push(id);
    }
    Ok(done)
}

/// Writes the record (unless the repository has a finished one by that id)
/// and releases the lock.
async fn settle(repo: &Repo, note: &Note) -> Result<()> {
    if let Some(record) = &note.record {
        let finished = catalog::load(repo, &record.id)
            .await?
            .is_some_and(|r| r.is_finished());
        if !finished {
            catalog::save(repo, record).await?;
        }
    }
    if let Some(holder) = &note.lock {
        lock::release(repo, holder).await?;
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::catalog::BackupStatus;
    use crate::backup::settings::UriStyle;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStoreExt, PutPayload};
    use std::sync::Arc;

    const ID: &str = "2026-01-01T00:00:00Z";
    const LOCK: &str = "locks/backup.json";
    const HERE: &str = "http://s3/b/m.pg";

    fn failed(id: &str) -> BackupRecord {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "kind": "full",
            "status": "failed",
            "error": "cannot copy the data files: the S3 repository could not be reached",
            "start-time": id,
            "unit": "pg/0",
        }))
        .unwrap()
    }

    fn holder(unit: &str) -> Holder {
        Holder {
            unit: unit.into(),
            backup: ID.into(),
            since: ID.into(),
        }
    }

    /// The real S3 client, pointed at a port nothing listens on.
    fn unreachable() -> Repo {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Repo::open(&RepoSettings {
            endpoint: format!("http://127.0.0.1:{port}"),
            region: None,
            bucket: "b".into(),
            path: String::new(),
            uri_style: UriStyle::Path,
            tls_ca_chain: Vec::new(),
            storage_class: None,
            access_key: "a".into(),
            secret_key: "s".into(),
            repository: "m.pg".into(),
            compression: Default::default(),
            encryption_key: None,
        })
        .unwrap()
    }

    use crate::backup::testing::run;

    #[test]
    fn a_note_kept_while_s3_is_down_is_written_when_it_is_back() {
        let storage = tempfile::tempdir().unwrap();
        let dir = dir(storage.path());
        let note = Note {
            repository: HERE.into(),
            record: Some(failed(ID)),
            lock: Some(holder("pg/0")),
        };
        let path = keep(&dir, ID, &note).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // Still down: the note stays, and the error says the repository could not be reached.
        let err = run(flush(&unreachable(), HERE, &dir)).unwrap_err();
        let text = format!("{:#}", super::super::outage::explain(err));
        assert!(
            text.starts_with(&format!(
                "cannot record what backup {ID} left undone: the S3 repository could not be reached"
            )),
            "{text}"
        );
        assert!(path.exists());

        // Back: the record is written, the lock released, the note gone.
        let repo = Repo::new(Arc::new(InMemory::new()));
        let body = serde_json::to_vec(&holder("pg/0")).unwrap();
        run(repo
            .store
            .put(&ObjectPath::from(LOCK), PutPayload::from(body)))
        .unwrap();
        assert_eq!(run(flush(&repo, HERE, &dir)).unwrap(), [ID]);
        let record = run(catalog::load(&repo, ID)).unwrap().unwrap();
        assert_eq!(record, failed(ID));
        assert!(run(repo.store.head(&ObjectPath::from(LOCK))).is_err());
        assert!(!path.exists());
        assert!(run(flush(&repo, HERE, &dir)).unwrap().is_empty());
    }

    #[test]
    fn another_holders_lock_and_a_finished_record_are_left_alone() {
        let storage = tempfile::tempdir().unwrap();
        let dir = dir(storage.path());
        let repo = Repo::new(Arc::new(InMemory::new()));
        let mut finished = failed(ID);
        finished.status = BackupStatus::Finished;
        finished.error = None;
        run(catalog::save(&repo, &finished)).unwrap();
        let theirs = serde_json::to_vec(&holder("pg/1")).unwrap();
        run(repo
            .store
            .put(&ObjectPath::from(LOCK), PutPayload::from(theirs)))
        .unwrap();
        let note = Note {
            repository: HERE.into(),
            record: Some(failed(ID)),
            lock: Some(holder("pg/0")),
        };
        keep(&dir, ID, &note).unwrap();
        assert_eq!(run(flush(&repo, HERE, &dir)).unwrap(), [ID]);
        assert!(run(catalog::load(&repo, ID))
            .unwrap()
            .unwrap()
            .is_finished());
        assert!(run(repo.store.head(&ObjectPath::from(LOCK))).is_ok());
    }

    #[test]
    fn a_note_is_only_written_to_its_own_repository() {
        let storage = tempfile::tempdir().unwrap();
        let dir = dir(storage.path());
        let note = Note {
            repository: "http://elsewhere/b/m.pg".into(),
            record: Some(failed(ID)),
            lock: None,
        };
        let path = keep(&dir, ID, &note).unwrap();
        let repo = Repo::new(Arc::new(InMemory::new()));
        assert!(run(flush(&repo, HERE, &dir)).unwrap().is_empty());
        assert!(run(catalog::load(&repo, ID)).unwrap().is_none());
        assert!(path.exists());
        assert_eq!(
            run(flush(&repo, "http://elsewhere/b/m.pg", &dir)).unwrap(),
            [ID]
        );
    }

    #[test]
    fn notes_are_written_oldest_first_and_a_bad_one_is_dropped() {
        let storage = tempfile::tempdir().unwrap();
        let dir = dir(storage.path());
        let repo = Repo::new(Arc::new(InMemory::new()));
        let later = "2026-01-02T00:00:00Z";
        for id in [later, ID] {
            let note = Note {
                repository: HERE.into(),
                record: Some(failed(id)),
                lock: None,
            };
            keep(&dir, id, &note).unwrap();
        }
        std::fs::write(dir.join("2025-12-31T00:00:00Z.json"), b"{not json").unwrap();
        assert_eq!(run(flush(&repo, HERE, &dir)).unwrap(), [ID, later]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let nothing = Note {
            repository: HERE.into(),
            record: None,
            lock: None,
        };
        assert!(nothing.is_empty());
        assert!(keep(&dir, "../x", &nothing).is_err());
        // No directory at all: nothing owed.
        assert!(run(flush(&repo, HERE, &storage.path().join("none")))
            .unwrap()
            .is_empty());
    }
}
