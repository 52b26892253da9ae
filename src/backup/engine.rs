//! Taking a backup, as a narrated list of steps: start it on a held
//! connection, copy the data directory (what changed only, for a
//! differential or incremental one) compressed and checksummed into the
//! repository, stop it, make sure its WAL is archived, then write
//! PostgreSQL's own manifest and, last, the record that commits it. A
//! failure is recorded too; when the repository cannot take even that (S3
//! is down), the failed record goes back to the caller to keep.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::catalog::{self, BackupKind, BackupRecord, BackupStatus, FileRecord};
use super::copy;
use super::outage;
use super::pgmanifest::{FileChecksum, ManifestBuilder, WalRange};
use super::repo::Repo;
use crate::postgres::sql::{parse_lsn, Db};

/// What to back up, and how.
pub struct Request<'a> {
    pub id: String,
    pub kind: BackupKind,
    /// The record this backup builds on (differential and incremental).
    pub reference: Option<BackupRecord>,
    pub unit: String,
    pub data_dir: PathBuf,
    pub pg_version: u32,
    pub system_identifier: String,
    /// Files uploaded at once.
    pub concurrency: usize,
    /// On a replica: the primary, to switch WAL so the last segment is archived.
    pub primary: Option<&'a Db>,
    /// Progress for whoever waits (action-log).
    pub progress: &'a dyn Fn(&str),
    /// The schedule's occurrence it is taken for, when a schedule took it.
    pub scheduled: Option<String>,
    /// When the data directory was last rewound (seconds since the epoch).
    pub rewound_at: Option<i64>,
}

/// The runtime the engine's uploads run on. A repository's HTTP client
/// belongs to the runtime that first used it: use one runtime per action.
pub fn runtime(concurrency: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(concurrency.clamp(1, 8))
        .enable_all()
        .build()
        .context("cannot start the upload runtime")
}

/// A backup that did not finish.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong, as the user reads it.
    pub error: anyhow::Error,
    /// Its failed record, when the repository could not take it: the caller
    /// keeps it to write later (see `pending`).
    pub unrecorded: Option<Box<BackupRecord>>,
}

/// Takes the backup; on failure records it as failed, with its error.
pub fn take(
    rt: &tokio::runtime::Runtime,
    repo: &Repo,
    db: &Db,
    req: &Request<'_>,
) -> Result<BackupRecord, Failed> {
    let started = chrono::Utc::now();
    let mut record = BackupRecord {
        id: req.id.clone(),
        kind: req.kind,
        reference: req.reference.as_ref().map(|r| r.id.clone()),
        status: BackupStatus::Failed,
        error: None,
        start_lsn: None,
        stop_lsn: None,
        start_time: started.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        finish_time: None,
        timeline: None,
        unit: req.unit.clone(),
        pg_version: Some(req.pg_version),
        system_identifier: Some(req.system_identifier.clone()),
        database_bytes: 0,
        stored_bytes: 0,
        files: Vec::new(),
        scheduled: req.scheduled.clone(),
    };
    let outcome = run(rt, repo, db, req, &mut record).map_err(outage::explain);
    record.finish_time = Some(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    match outcome {
        Ok(()) => record.status = BackupStatus::Finished,
        Err(ref err) => fail(&mut record, err),
    }
    // The record is the commit: written last, for a failure too. When it
    // cannot be written, the backup's own error still comes first, and the
    // failed record goes back to the caller.
    let saved = rt
        .block_on(catalog::save(repo, &record))
        .map_err(outage::explain);
    match (outcome, saved) {
        (Ok(()), Ok(())) => Ok(record),
        (Ok(()), Err(save)) => {
            // Not committed: a failed backup, for want of its record.
            let error = save.context("cannot record the backup");
            fail(&mut record, &error);
            Err(Failed {
                error,
                unrecorded: Some(Box::new(record)),
            })
        }
        (Err(error), Ok(())) => Err(Failed {
            error,
            unrecorded: None,
        }),
        (Err(error), Err(save)) => {
            tracing::warn!(
                "the failure of backup {} is not recorded: {save:#}",
                record.id
            );
            Err(Failed {
                error,
                unrecorded: Some(Box::new(record)),
            })
        }
    }
}

/// The warning for pages whose checksum failed when the backup read them,
/// if any: `page checksum failures in 1 file(s): base/5/16384 (blocks 3, 7)`.
pub fn bad_pages(files: &[FileRecord]) -> Option<String> {
    let bad: Vec<String> = files
        .iter()
        .filter(|f| !f.bad_pages.is_empty())
        .map(|f| {
            let blocks: Vec<String> = f.bad_pages.iter().map(u32::to_string).collect();
            format!("{} (blocks {})", f.path, blocks.join(", "))
        })
        .collect();
    (!bad.is_empty()).then(|| {
        format!(
            "WARNING: page checksum failures in {} file(s): {}; the backup keeps the pages as \
             read: check the storage, and the data with pg_amcheck",
            bad.len(),
            bad.join("; ")
        )
    })
}

/// Marks the record failed with `err`; a failed backup lists no files.
fn fail(record: &mut BackupRecord, err: &anyhow::Error) {
    record.status = BackupStatus::Failed;
    record.error = Some(format!("{err:#}"));
    record.files.clear();
}

fn run(
    rt: &tokio::runtime::Runtime,
    repo: &Repo,
    db: &Db,
    req: &Request<'_>,
    record: &mut BackupRecord,
) -> Result<()> {
    // The WAL's segment size is the one the charm's initdb gives (the
    // archive's names, verify-backup and retention count with it).
    let segment_size = db.query_text("SHOW wal_segment_size")?;
    if segment_size != "16MB" {
        anyhow::bail!(
            "the server's WAL segment size is {segment_size}, and backups support only the \
             default 16MB the charm initialises clusters with"
        );
    }

    // Start: a checkpoint now, and the backup held by this connection.
    let label = format!("postgresql-charm {}", req.id);
    let start = db.query_row(&format!(
        "SELECT pg_backup_start({}, true)::text",
        crate::postgres::sql::literal(&label)
    ))?;
    record.start_lsn = start.into_iter().next().flatten();
    (req.progress)(&format!(
        "backup {} started at LSN {}",
        req.id,
        record.start_lsn.as_deref().unwrap_or("?")
    ));

    // Copy what the backup needs, in parallel, compressed and checksummed,
    // with the pages checked when the cluster has data checksums.
    // A relation file the reference read is stored as its changed pages
    // only, where that is sound (see `copy`).
    let page_check = match db.query_text("SHOW data_checksums")?.as_str() {
        "on" => record.start_lsn.as_deref().map(parse_lsn).transpose()?,
        _ => None,
    };
    // The timeline of the checkpoint (or, on a replica, the restartpoint)
    // the backup began with.
    let timeline = db
        .query_text("SELECT timeline_id::text FROM pg_control_checkpoint()")?
        .parse::<u32>()
        .context("the server reports no timeline")?;
    let deltas = copy::DeltaSince::of(
        req.reference.as_ref(),
        &req.unit,
        timeline,
        page_check.is_some(),
        req.rewound_at,
    );
    let copied = rt
        .block_on(copy::files(repo, req, page_check, deltas))
        .context("cannot copy the data files");
    let (files, uploaded) = match copied {
        Ok(done) => {
            if let Some(warning) = bad_pages(&done.0) {
                (req.progress)(&warning);
            }
            done
        }
        Err(err) => {
            // End the backup on the server before giving up.
            let _ = db.query_row("SELECT lsn::text FROM pg_backup_stop(false)");
            return Err(err);
        }
    };

    // Stop: the label and tablespace map PostgreSQL hands back.
    let on_primary = !db.is_in_recovery()?;
    let stop = db.query_row(&format!(
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop({on_primary})"
    ))?;
    let stop_lsn = stop[0].clone().context("pg_backup_stop returned no LSN")?;
    let label_file = stop[1]
        .clone()
        .context("pg_backup_stop returned no backup label")?;
    let map_file = stop[2].clone().unwrap_or_default();
    let range = WalRange::from_backup_label(&label_file, parse_lsn(&stop_lsn)?)?;
    record.stop_lsn = Some(stop_lsn);
    record.timeline = Some(range.timeline);

    // The WAL up to the stop point must be in the archive.
    if let Some(primary) = req.primary {
        primary
            .execute("SELECT pg_switch_wal()")
            .context("cannot switch WAL on the primary")?;
    }
    rt.block_on(wait_archived(repo, range.timeline, range.end_lsn))?;

    // PostgreSQL's manifest, for pg_verifybackup on a restored copy.
    let mut manifest = ManifestBuilder::new();
    let mut extra = vec![("backup_label", label_file.into_bytes())];
    if !map_file.is_empty() {
        extra.push(("tablespace_map", map_file.into_bytes()));
    }
    for (name, bytes) in &extra {
        rt.block_on(put(
            repo,
            &format!("{}/{name}", catalog::backup_dir(&req.id)),
            bytes.clone(),
        ))?;
        manifest.add_file(
            Path::new(name),
            bytes.len() as u64,
            chrono::Utc::now().timestamp(),
            FileChecksum::Crc32c(crc32c::crc32c(bytes)),
        )?;
    }
    for file in files.iter().filter(|f| f.kind == "file") {
        manifest.add_file(
            Path::new(&file.path),
            file.size,
            file.mtime,
            manifest_checksum(file)?,
        )?;
    }
    manifest.add_wal_range(range);
    let rendered = manifest.render()?;
    rt.block_on(put(
        repo,
        &format!("{}/backup_manifest", catalog::backup_dir(&req.id)),
        rendered,
    ))?;

    record.database_bytes = files.iter().map(|f| f.size).sum();
    record.stored_bytes = uploaded;
    record.files = files;
    Ok(())
}

/// Waits until the segment holding `lsn` is in the archive.
async fn wait_archived(repo: &Repo, timeline: u32, lsn: u64) -> Result<()> {
    // The stop LSN may sit exactly at a segment boundary: its WAL ends in the previous one.
    let segment = segment_name(timeline, lsn.saturating_sub(1));
    let started = Instant::now();
    loop {
        if archived(repo, &segment).await? {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the WAL segment {segment} that ends the backup was not archived within 5 minutes: check the archiver (pg_stat_archiver) and the S3 repository");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Stores one of the backup's small files (label, map, manifest): as it
/// is, or encrypted.
async fn put(repo: &Repo, key: &str, bytes: Vec<u8>) -> Result<()> {
    let stored = repo.format.seal_small(&bytes)?;
    repo.store
        .put(&ObjectPath::from(key), PutPayload::from(stored))
        .await
        .with_context(|| format!("cannot write {key}"))?;
    Ok(())
}

/// A file's checksum for PostgreSQL's manifest: its CRC-32C, or its SHA-256
/// when it comes unchanged from a backup whose record has no CRC-32C.
fn manifest_checksum(file: &FileRecord) -> Result<FileChecksum> {
    if let Some(crc) = &file.crc32c {
        let crc = u32::from_str_radix(crc, 16)
            .with_context(|| format!("the CRC-32C of {} is not hex", file.path))?;
        return Ok(FileChecksum::Crc32c(crc));
    }
    let sha = file
        .sha256
        .as_deref()
        .with_context(|| format!("{} has no checksum", file.path))?;
    let bytes = hex::decode(sha).context("a checksum is not hex")?;
    let bytes = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a checksum is not 32 bytes"))?;
    Ok(FileChecksum::Sha256(bytes))
}

/// The name of the WAL segment holding `lsn` (16 MiB segments).
fn segment_name(timeline: u32, lsn: u64) -> String {
    const SEGMENT: u64 = 16 << 20;
    let segno = lsn / SEGMENT;
    let per_log = 0x1_0000_0000 / SEGMENT;
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / per_log,
        segno % per_log
    )
}

/// Whether the archive holds the segment (any content hash).
async fn archived(repo: &Repo, segment: &str) -> Result<bool> {
    let dir = ObjectPath::from(format!("wal/{}", &segment[..16]));
    let lead = format!("{segment}-");
    let listing = repo
        .store
        .list_with_delimiter(Some(&dir))
        .await
        .context("cannot list the WAL archive")?;
    Ok(listing
        .objects
        .iter()
        .any(|o| o.location.filename().is_some_and(|f| f.starts_with(&lead))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_follow_postgresql() {
        assert_eq!(segment_name(1, 0x0300_0000), "000000010000000000000003");
        assert_eq!(
            segment_name(2, (1 << 32) + 0x0500_0028),
            "000000020000000100000005"
        );
    }
}
