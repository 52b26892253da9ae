//! Checking a backup without restoring it: everything a restore would read
//! is read again and checked, with no server and nothing written to disk.
//!
//! For one finished backup: its chain (every backup it builds on is there
//! and finished, down to a full one); every object of every file (the
//! whole file, or its base and page deltas), decrypted (when it is
//! encrypted: without the key that is a problem named per object),
//! decompressed and compared with the SHA-256 the record gives it (a page
//! delta's is its stream's, before compression); its `backup_label` and
//! PostgreSQL `backup_manifest`; and the WAL from the segment it starts in
//! to the one it stops in, every segment archived, with no gap. Segments
//! are counted with PostgreSQL's default size of 16 MiB: the size the charm
//! initialises clusters with, and the only one a backup is taken of (the
//! engine checks). Each problem names the object or segment.

use std::collections::HashMap;
use std::io::Write as _;

use anyhow::{bail, Context as _, Result};
use futures::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt as _;

use super::catalog::{self, BackupKind, BackupRecord};
use super::repo::Repo;
use crate::postgres::sql::parse_lsn;

/// PostgreSQL's default WAL segment size, and segments per log file id.
const SEGMENT_SIZE: u64 = 16 << 20;
const SEGMENTS_PER_LOG: u64 = 0x1_0000_0000 / SEGMENT_SIZE;

/// Problems a report's line shows at most.
const MAX_PROBLEMS_SHOWN: usize = 10;

/// What checking one backup found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub id: String,
    pub files: usize,
    pub bytes: u64,
    /// The WAL segments checked, first and last.
    pub wal: Option<(String, String)>,
    pub problems: Vec<String>,
}

impl Report {
    /// One line for the action's output.
    pub fn line(&self) -> String {
        if self.problems.is_empty() {
            let wal = self
                .wal
                .as_ref()
                .map(|(a, b)| format!(", WAL {a} to {b}"))
                .unwrap_or_default();
            format!(
                "{}: ok ({} files, {} MiB{wal})",
                self.id,
                self.files,
                self.bytes >> 20
            )
        } else {
            // A damaged repository may fail every object: the first few say enough.
            let shown = self.problems.len().min(MAX_PROBLEMS_SHOWN);
            let more = match self.problems.len() - shown {
                0 => String::new(),
                n => format!("; and {n} more"),
            };
            format!(
                "{}: FAILED: {}{more}",
                self.id,
                self.problems[..shown].join("; ")
            )
        }
    }
}

/// Checks backup `record` of `records`, reading `concurrency` objects at once.
pub async fn backup(
    repo: &Repo,
    records: &[BackupRecord],
    record: &BackupRecord,
    concurrency: usize,
) -> Report {
    let mut report = Report {
        id: record.id.clone(),
        ..Default::default()
    };
    if let Err(err) = chain(records, record) {
        report.problems.push(format!("{err:#}"));
    }
    let dir = catalog::backup_dir(&record.id);
    for name in ["backup_label", "backup_manifest"] {
        let key = ObjectPath::from(format!("{dir}/{name}"));
        if let Err(err) = repo.store.head(&key).await {
            report.problems.push(missing(&key, err));
        }
    }

    // Every file's object, read whole and checked.
    let checks = record
        .files
        .iter()
        .filter(|f| f.kind == "file")
        .map(|file| async move {
            let sources = file.sources();
            if sources.is_empty() {
                return Err(format!("the record names no object for {}", file.path));
            }
            // A page delta's checksum is its stream's: each source is
            // checked as it is; a restore checks the file they rebuild.
            for (object, want) in sources {
                match digest(repo, object).await {
                    Ok(got) if Some(got.as_str()) == want => {}
                    Ok(_) => {
                        return Err(format!(
                            "{object} ({}) does not match its checksum",
                            file.path
                        ))
                    }
                    Err(err) => return Err(format!("{err:#}")),
                }
            }
            Ok(file.size)
        });
    let mut results = futures::stream::iter(checks).buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        match result {
            Ok(size) => {
                report.files += 1;
                report.bytes += size;
            }
            Err(problem) => report.problems.push(problem),
        }
    }

    // The WAL it needs to be consistent.
    match wal_range(repo, record).await {
        Ok((first, last)) => {
            for segment in segments(&first, &last) {
                match archived(repo, &segment).await {
                    Ok(true) => {}
                    Ok(false) => report.problems.push(format!(
                        "WAL segment {segment} is not in the archive (the backup needs \
                         {first} to {last})"
                    )),
                    Err(err) => report.problems.push(format!("{err:#}")),
                }
            }
            report.wal = Some((first, last));
        }
        Err(err) => report.problems.push(format!("{err:#}")),
    }
    report.problems.sort();
    report
}

/// Every backup `record` builds on is in the catalog and finished, down to a full one.
fn chain(records: &[BackupRecord], record: &BackupRecord) -> Result<()> {
    let by_id: HashMap<&str, &BackupRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut current = record;
    for _ in 0..=records.len() {
        if current.kind == BackupKind::Full {
            return Ok(());
        }
        let Some(reference) = current.reference.as_deref() else {
            bail!("backup {} names no backup it builds on", current.id);
        };
        let Some(next) = by_id.get(reference) else {
            bail!(
                "backup {} builds on backup {reference}, which is not in the repository",
                current.id
            );
        };
        if !next.is_finished() {
            bail!(
                "backup {} builds on backup {reference}, which failed",
                current.id
            );
        }
        current = next;
    }
    bail!("the chain of backup {} loops", record.id)
}

fn missing(key: &ObjectPath, err: object_store::Error) -> String {
    match err {
        object_store::Error::NotFound { .. } => format!("{key} is missing"),
        other => format!("cannot read {key}: {other}"),
    }
}

/// The SHA-256 of the file an object holds.
async fn digest(repo: &Repo, object: &str) -> Result<String> {
    let key = ObjectPath::from(object);
    let mut body = match repo.store.get(&key).await {
        Ok(found) => found.into_stream(),
        Err(err) => bail!(missing(&key, err)),
    };
    let mut out = repo.format.reader(object, std::io::sink())?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("cannot read {key}"))?;
        out.write_all(&chunk)
            .with_context(|| format!("{key} cannot be decoded"))?;
    }
    let (_, digest) = out
        .finish()
        .with_context(|| format!("{key} is truncated"))?;
    Ok(digest.sha256)
}

/// The first and last WAL segments of a backup: the one its label says it
/// starts in, and the one holding its stop point, on the same timeline.
async fn wal_range(repo: &Repo, record: &BackupRecord) -> Result<(String, String)> {
    let first = catalog::start_segment(repo, &record.id).await?;
    let stop = record
        .stop_lsn
        .as_deref()
        .and_then(|lsn| parse_lsn(lsn).ok())
        .with_context(|| format!("the record of backup {} has no stop point", record.id))?;
    let segment = stop / SEGMENT_SIZE;
    let last = format!(
        "{}{:08X}{:08X}",
        &first[..8],
        segment / SEGMENTS_PER_LOG,
        segment % SEGMENTS_PER_LOG
    );
    Ok((first, last))
}

/// Every segment from `first` to `last`, on `first`'s timeline.
fn segments(first: &str, last: &str) -> Vec<String> {
    let number = |name: &str| {
        let log = u64::from_str_radix(&name[8..16], 16).unwrap_or(0);
        let seg = u64::from_str_radix(&name[16..24], 16).unwrap_or(0);
        log * SEGMENTS_PER_LOG + seg
    };
    let timeline = &first[..8];
    (number(first)..=number(last))
        .map(|n| {
            format!(
                "{timeline}{:08X}{:08X}",
                n / SEGMENTS_PER_LOG,
                n % SEGMENTS_PER_LOG
            )
        })
        .collect()
}

/// Whether WAL segment `name` is archived (a complete segment, not a partial one).
async fn archived(repo: &Repo, name: &str) -> Result<bool> {
    let dir = ObjectPath::from(format!("wal/{}", &name[..16]));
    let listing = repo
        .store
        .list_with_delimiter(Some(&dir))
        .await
        .with_context(|| format!("cannot list {dir}"))?;
    let lead = format!("{name}-");
    Ok(listing
        .objects
        .iter()
        .any(|m| m.location.filename().is_some_and(|f| f.starts_with(&lead))))
}

#[cfg(test)]
mod tests;
