//! Putting a backup's files back: every object streamed from the
//! repository (at the repository's bandwidth limit, if any) and handed,
//! chunk by chunk, to a blocking thread of its own that decrypts it (when
//! it is encrypted: nothing unauthenticated is written), decompresses it,
//! checks it against the SHA-256 in the record, writes it, gives it to the
//! server's user and syncs it to disk (`writer`; a relation file a backup
//! kept as page deltas is rebuilt there in one pass from its base and its
//! chain, each of its objects downloaded at once, and checked against the
//! whole file's SHA-256). Several files are in flight at once, so that
//! work spreads over the cores while memory stays bounded (a few chunks
//! per object, a few pages per delta). The
//! backup's own `backup_label`, `tablespace_map` and PostgreSQL
//! `backup_manifest` go in last, then every directory is synced: the
//! result is durable, ready for `pg_verifybackup`, and a server started on
//! it has nothing left to flush.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;

use super::catalog::{self, BackupRecord, FileRecord};
use super::outage;
use super::repo::Repo;
use super::wal::Backoff;
use writer::{write_file, Feed, Piece, Plan, Target};

mod hashing;
mod merge;
mod spool;
mod writer;

/// How often progress is reported.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Chunks of one object in flight between its download and its writer.
const CHUNKS_IN_FLIGHT: usize = 8;
/// A file whose download fails for a reason that may pass (S3 unreachable,
/// or answering with server errors through all of its client's retries)
/// is fetched again: 4 attempts, waiting 1, 2 and 4 s between them.
const RETRY: Backoff = Backoff {
    attempts: 4,
    first_delay: Duration::from_secs(1),
};

/// How a restore writes.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Files fetched at once.
    pub concurrency: usize,
    /// The uid and gid to give every file and directory to, when the
    /// caller is not the server's user.
    pub owner: Option<(u32, u32)>,
}

/// Writes the files of a finished backup into `dest` (which must not
/// exist); `progress` hears how far it got every few seconds. On failure
/// the first error is returned once no file is being written any more, so
/// the caller may remove `dest` at once.
pub async fn files(
    repo: &Repo,
    record: &BackupRecord,
    dest: &Path,
    options: &Options,
    progress: &dyn Fn(&str),
) -> Result<()> {
    if !record.is_finished() {
        bail!("backup {} did not finish and cannot be restored", record.id);
    }
    std::fs::create_dir(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    give(dest, options.owner)?;

    // Directories and links first, so files have somewhere to go.
    for entry in record.files.iter().filter(|f| f.kind != "file") {
        let path = dest.join(&entry.path);
        match entry.kind.as_str() {
            "dir" => {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                std::fs::set_permissions(&path, Permissions::from_mode(entry.mode))
                    .with_context(|| format!("cannot set the mode of {}", path.display()))?;
                give(&path, options.owner)?;
            }
            "link" => {
                let target = entry.target.as_deref().context("a link without a target")?;
                std::fs::create_dir_all(target)
                    .with_context(|| format!("cannot create the tablespace {target}"))?;
                std::os::unix::fs::symlink(target, &path)
                    .with_context(|| format!("cannot link {}", path.display()))?;
                give(&path, options.owner)?;
            }
            other => bail!(
                "backup {} holds an entry of unknown kind {other:?}",
                record.id
            ),
        }
    }

    // Every file, checked against its checksum, on as many threads as files in flight.
    let total_files = record.files.iter().filter(|f| f.kind == "file").count();
    let total_bytes: u64 = record.files.iter().map(|f| f.size).sum();
    let (mut files_done, mut bytes_done, mut last_report) = (0usize, 0u64, Instant::now());
    let failed = AtomicBool::new(false);
    let jobs = record
        .files
        .iter()
        .filter(|f| f.kind == "file")
        .map(|entry| fetch_retrying(repo, record, entry, dest, options.owner, &failed));
    let mut running = futures::stream::iter(jobs).buffer_unordered(options.concurrency.max(1));
    let mut first_error = None;
    while let Some(done) = running.next().await {
        match done {
            Ok(size) => {
                files_done += 1;
                bytes_done += size;
                if last_report.elapsed() >= REPORT_EVERY {
                    last_report = Instant::now();
                    progress(&format!(
                        "restored {files_done} of {total_files} files ({} of {} MiB)",
                        bytes_done >> 20,
                        total_bytes >> 20
                    ));
                }
            }
            Err(err) => {
                // The others stop at their next chunk; the first error is the one to tell.
                failed.store(true, Ordering::Relaxed);
                first_error.get_or_insert(err);
            }
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }

    // The backup's own label, map and manifest.
    for name in ["backup_label", "tablespace_map", "backup_manifest"] {
        let key = ObjectPath::from(format!("{}/{name}", catalog::backup_dir(&record.id)));
        match repo.store.get(&key).await {
            Ok(found) => {
                let stored = found
                    .bytes()
                    .await
                    .with_context(|| format!("cannot read {key}"))?;
                let bytes = repo.format.open_small(key.as_ref(), &stored)?;
                write_small(&dest.join(name), &bytes, options.owner)?;
            }
            Err(object_store::Error::NotFound { .. }) if name == "tablespace_map" => {}
            Err(err) => return Err(err).with_context(|| format!("cannot read {key}")),
        }
    }

    // The directories' entries, down to the one holding `dest`.
    let dirs = record.files.iter().filter(|f| f.kind == "dir");
    for dir in dirs.map(|d| dest.join(&d.path)).chain([dest.to_path_buf()]) {
        sync_dir(&dir)?;
    }
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// [`fetch_file`], again after a transient failure, up to [`RETRY`]'s
/// attempts (unless another file failed for good meanwhile).
async fn fetch_retrying(
    repo: &Repo,
    record: &BackupRecord,
    entry: &FileRecord,
    dest: &Path,
    owner: Option<(u32, u32)>,
    failed: &AtomicBool,
) -> Result<u64> {
    let mut failures = 0;
    loop {
        match fetch_file(repo, record, entry, dest, owner, failed).await {
            Err(err) if outage::is_transient(&err) && !failed.load(Ordering::Relaxed) => {
                failures += 1;
                if failures >= RETRY.attempts {
                    return Err(err.context(format!(
                        "cannot restore {} after {failures} attempts",
                        entry.path
                    )));
                }
                tracing::info!("fetching {} again: {err:#}", entry.path);
                tokio::time::sleep(RETRY.delay(failures)).await;
            }
            done => return done,
        }
    }
}

/// Downloads the objects of one file into its writer; returns the file's
/// size. Returns at once (with nothing written) once `failed` is set.
async fn fetch_file(
    repo: &Repo,
    record: &BackupRecord,
    entry: &FileRecord,
    dest: &Path,
    owner: Option<(u32, u32)>,
    failed: &AtomicBool,
) -> Result<u64> {
    if failed.load(Ordering::Relaxed) {
        return Ok(0);
    }
    let target = Target {
        path: dest.join(&entry.path),
        name: entry.path.clone(),
        backup: record.id.clone(),
        plan: Plan::of(entry)?,
        size: entry.size,
        sha256: entry.sha256.clone().context("a file without a checksum")?,
        crc32c: entry
            .crc32c
            .as_deref()
            .map(|hex| u32::from_str_radix(hex, 16))
            .transpose()
            .with_context(|| format!("the CRC-32C of {} is not hex", entry.path))?,
        mode: entry.mode,
        owner,
        format: repo.format.clone(),
    };
    // Every object of the file streams at once: the base through a few
    // chunks in flight, at the writer's pace; a chain's deltas into spool
    // files, at the network's.
    let (base, layers) = target.plan.objects();
    let base = base.clone();
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let feed = Feed {
        rx,
        key: base.clone(),
    };
    let (spools, unspools): (Vec<_>, Vec<_>) = layers
        .iter()
        .map(|key| spool::spool(dest, key))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let writer = tokio::task::spawn_blocking(move || write_file(feed, unspools, target));
    let into_spools = layers
        .iter()
        .zip(spools)
        .map(|(key, spool)| download(repo, key, Sink::Spool(spool), failed));
    let streamed = futures::future::try_join_all(
        [download(repo, &base, Sink::Channel(tx), failed)]
            .into_iter()
            .chain(into_spools),
    )
    .await;
    let written = writer
        .await
        .with_context(|| format!("the writer of {} stopped", entry.path))?;
    streamed.and(written).map(|_| entry.size)
}

/// Where a download goes.
enum Sink {
    Channel(mpsc::Sender<Piece>),
    Spool(spool::Spool),
}

/// Streams the object `key` into `sink`, then marks its end. Returns
/// early, and fine, when the writer gave up (its error says why).
async fn download(
    repo: &Repo,
    key: &ObjectPath,
    mut sink: Sink,
    failed: &AtomicBool,
) -> Result<()> {
    let store: &dyn ObjectStore = repo.store.as_ref();
    let mut stream = store
        .get(key)
        .await
        .with_context(|| format!("cannot read {key}"))?
        .into_stream();
    while let Some(chunk) = stream.next().await {
        if failed.load(Ordering::Relaxed) {
            bail!("stopped reading {key}: another file failed");
        }
        let chunk = chunk.with_context(|| format!("cannot read {key}"))?;
        if let Some(throttle) = &repo.throttle {
            throttle.take(chunk.len()).await;
        }
        let taken = match &mut sink {
            Sink::Channel(tx) => tx.send(Piece::Chunk(chunk)).await.is_ok(),
            Sink::Spool(spool) => spool.append(&chunk)?,
        };
        if !taken {
            return Ok(());
        }
    }
    match sink {
        Sink::Channel(tx) => {
            let _ = tx.send(Piece::End).await;
        }
        Sink::Spool(spool) => spool.end(),
    }
    Ok(())
}

/// Writes a small file whole (mode 0600), gives it away and syncs it.
fn write_small(path: &Path, bytes: &[u8], owner: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {} to uid {uid}", path.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("cannot sync {} to disk", path.display()))
}

/// Gives a directory or link (not what a link points to) to `owner`.
fn give(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {} to uid {uid}", path.display())),
        None => Ok(()),
    }
}

/// Syncs a directory's entries to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the directory {} to disk", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::catalog::{BackupKind, BackupStatus};
    use crate::backup::codec::compress_to_vec;
    use crate::backup::object::Format;
    use crate::backup::{delta, pages};
    use object_store::memory::InMemory;
    use object_store::PutPayload;
    use std::sync::Arc;

    fn file(path: &str, content: &[u8], mode: u32) -> (FileRecord, Vec<u8>) {
        let (packed, digest) = compress_to_vec(content).unwrap();
        let record = FileRecord {
            path: path.into(),
            kind: "file".into(),
            size: content.len() as u64,
            mtime: 0,
            mode,
            sha256: Some(digest.sha256),
            crc32c: Some(crate::backup::codec::crc32c_hex(digest.crc32c)),
            object: Some(format!("backups/b1/data/{path}.zst")),
            stored: packed.len() as u64,
            target: None,
            ..Default::default()
        };
        (record, packed)
    }

    /// A repository holding backup `b1`: a directory, a large file and a
    /// few small ones, its label and manifest.
    async fn backup() -> (Repo, BackupRecord) {
        backup_in(Arc::new(InMemory::new())).await
    }

    /// The same backup in `store`.
    async fn backup_in(store: Arc<dyn ObjectStore>) -> (Repo, BackupRecord) {
        let repo = Repo::new(store);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut files = vec![FileRecord {
            path: "base".into(),
            kind: "dir".into(),
            size: 0,
            mtime: 0,
            mode: 0o700,
            sha256: None,
            crc32c: None,
            object: None,
            stored: 0,
            target: None,
            ..Default::default()
        }];
        let contents: Vec<(&str, Vec<u8>, u32)> = vec![
            ("base/1", big, 0o600),
            ("base/2", b"two".to_vec(), 0o640),
            ("PG_VERSION", b"15\n".to_vec(), 0o600),
            ("empty", Vec::new(), 0o600),
        ];
        for (path, content, mode) in contents {
            let (record, packed) = file(path, &content, mode);
            let key = ObjectPath::from(record.object.clone().unwrap());
            repo.store
                .put(&key, PutPayload::from(packed))
                .await
                .unwrap();
            files.push(record);
        }
        for (name, body) in [("backup_label", "label"), ("backup_manifest", "manifest")] {
            let key = ObjectPath::from(format!("backups/b1/{name}"));
            repo.store.put(&key, PutPayload::from(body)).await.unwrap();
        }
        let record = BackupRecord {
            id: "b1".into(),
            kind: BackupKind::Full,
            reference: None,
            status: BackupStatus::Finished,
            error: None,
            start_lsn: None,
            stop_lsn: None,
            start_time: "2026-11-22T10:00:00Z".into(),
            finish_time: None,
            timeline: Some(1),
            unit: "postgresql/0".into(),
            pg_version: Some(15),
            system_identifier: None,
            database_bytes: 0,
            stored_bytes: 0,
            files,
            scheduled: None,
        };
        (repo, record)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    const OPTIONS: Options = Options {
        concurrency: 3,
        owner: None,
    };

    #[test]
    fn a_download_that_fails_for_a_while_is_fetched_again() {
        use crate::backup::wal::tests::Flaky;
        use std::sync::atomic::Ordering;
        let rt = runtime();
        let store = Arc::new(Flaky::new(0));
        let (repo, record) = rt.block_on(backup_in(store.clone()));
        // Two of the first downloads fail, as through a flaky S3 endpoint.
        store.failures.store(2, Ordering::SeqCst);
        let calls = store.calls.load(Ordering::SeqCst);
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("data");
        rt.block_on(files(&repo, &record, &dest, &OPTIONS, &|_| ()))
            .unwrap();
        let big = std::fs::read(dest.join("base/1")).unwrap();
        assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
        assert_eq!(std::fs::read(dest.join("base/2")).unwrap(), b"two");
        assert_eq!(std::fs::read(dest.join("PG_VERSION")).unwrap(), b"15\n");
        // Four files and three of the backup's own objects, and the two again.
        assert_eq!(store.calls.load(Ordering::SeqCst) - calls, 4 + 3 + 2);
    }

    #[test]
    fn writes_every_file_with_its_mode_and_the_backups_own_files() {
        let rt = runtime();
        let (repo, record) = rt.block_on(backup());
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("data");
        rt.block_on(files(&repo, &record, &dest, &OPTIONS, &|_| ()))
            .unwrap();
        let big = std::fs::read(dest.join("base/1")).unwrap();
        assert_eq!(big.len(), 3_000_000);
        assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
        assert_eq!(std::fs::read(dest.join("base/2")).unwrap(), b"two");
        assert_eq!(std::fs::read(dest.join("PG_VERSION")).unwrap(), b"15\n");
        assert_eq!(std::fs::read(dest.join("empty")).unwrap(), b"");
        assert_eq!(std::fs::read(dest.join("backup_label")).unwrap(), b"label");
        assert!(!dest.join("tablespace_map").exists());
        let mode = |p: &str| {
            std::fs::metadata(dest.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("base"), 0o700);
        assert_eq!(mode("base/2"), 0o640);
        assert_eq!(mode("backup_manifest"), 0o600);
    }

    /// A page delta stream putting `pages` (block, fill byte) into a file
    /// of `size` bytes, compressed, with the stream's SHA-256.
    fn delta_object(pages: &[(u32, u8)], size: u64) -> (Vec<u8>, crate::backup::codec::Digest) {
        let mut writer = delta::Writer::new(Vec::new()).unwrap();
        for &(block, fill) in pages {
            writer.page(block, &[fill; pages::BLOCK]).unwrap();
        }
        let stream = writer.finish(size).unwrap();
        compress_to_vec(&stream[..]).unwrap()
    }

    /// Backup `b1` plus a relation file kept as a base of 8 pages and two
    /// page deltas (the second also cuts the file to 6 pages); the file
    /// they must give back.
    async fn layered() -> (Repo, BackupRecord, Vec<u8>) {
        use crate::backup::catalog::Layer;
        let (repo, mut record) = backup().await;
        let block = pages::BLOCK;
        let base: Vec<u8> = (0..8 * block).map(|i| (i / block) as u8).collect();
        let (mut entry, packed) = file("base/16384", &base, 0o600);
        repo.store
            .put(
                &ObjectPath::from(entry.object.clone().unwrap()),
                PutPayload::from(packed),
            )
            .await
            .unwrap();
        let mut want = base.clone();
        let steps: [(&[(u32, u8)], u64); 2] =
            [(&[(1, 0xa1), (7, 0xa7)], 8), (&[(1, 0xb1), (3, 0xb3)], 6)];
        for (n, (pages, blocks)) in steps.into_iter().enumerate() {
            let (packed, digest) = delta_object(pages, blocks * block as u64);
            let object = format!("backups/b{}/data/base/16384.delta.zst", n + 2);
            repo.store
                .put(&ObjectPath::from(object.as_str()), PutPayload::from(packed))
                .await
                .unwrap();
            // The first as records before deltas had a CRC-32C.
            entry.layers.push(Layer {
                object,
                stored: 0,
                sha256: digest.sha256,
                crc32c: (n > 0).then(|| crate::backup::codec::crc32c_hex(digest.crc32c)),
                pages: pages.len() as u32,
            });
            for &(b, fill) in pages {
                want[b as usize * block..(b as usize + 1) * block].fill(fill);
            }
            want.truncate(blocks as usize * block);
        }
        entry.base_sha256 = entry.sha256.take();
        entry.sha256 = Some(crate::backup::codec::sha256_hex(&want));
        entry.crc32c = Some(crate::backup::codec::crc32c_hex(crc32c::crc32c(&want)));
        entry.size = want.len() as u64;
        record.files.push(entry);
        (repo, record, want)
    }

    #[test]
    fn a_file_kept_as_page_deltas_is_rebuilt_and_checked() {
        let rt = runtime();
        let (repo, record, want) = rt.block_on(layered());
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("data");
        rt.block_on(files(&repo, &record, &dest, &OPTIONS, &|_| ()))
            .unwrap();
        assert_eq!(std::fs::read(dest.join("base/16384")).unwrap(), want);
        let rebuilt_wrong = "base/16384 rebuilt from its 2 page delta(s) does not match its \
             checksum in backup b1: its base or a delta is damaged (verify-backup names which)";

        // A delta swapped for another valid one is named, by its SHA-256
        // in an older record, by its CRC-32C in a newer one.
        let (other, _) = delta_object(&[(2, 0xcc)], 6 * pages::BLOCK as u64);
        for n in [2, 3] {
            let (repo, record, _) = rt.block_on(layered());
            let key = ObjectPath::from(format!("backups/b{n}/data/base/16384.delta.zst"));
            rt.block_on(repo.store.put(&key, PutPayload::from(other.clone())))
                .unwrap();
            let dest = tmp.path().join(format!("swapped-{n}"));
            let err = rt
                .block_on(files(&repo, &record, &dest, &OPTIONS, &|_| ()))
                .unwrap_err();
            assert_eq!(
                format!("{err:#}"),
                format!(
                    "cannot restore base/16384 of backup b1: cannot rebuild base/16384 from its \
                     page deltas: the page delta {key} does not match its checksum"
                )
            );
        }
        let key = ObjectPath::from("backups/b3/data/base/16384.delta.zst");

        // A delta cut short is named.
        let cut = other[..other.len() - 4].to_vec();
        rt.block_on(repo.store.put(&key, PutPayload::from(cut)))
            .unwrap();
        let dest = tmp.path().join("cut");
        let err = rt
            .block_on(files(&repo, &record, &dest, &OPTIONS, &|_| ()))
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.starts_with(
                "cannot restore base/16384 of backup b1: cannot rebuild base/16384 from its \
                 page deltas: backups/b3/data/base/16384.delta.zst is truncated"
            ),
            "{message}"
        );

        // Every object right, but the file they give is not the one read.
        let (repo, mut record, _) = rt.block_on(layered());
        let entry = record.files.last_mut().unwrap();
        entry.sha256 = Some("00".repeat(32));
        let dest = tmp.path().join("rebuilt");
        let err = rt
            .block_on(files(&repo, &record, &dest, &OPTIONS, &|_| ()))
            .unwrap_err();
        assert_eq!(format!("{err:#}"), rebuilt_wrong);

        // A base swapped for another valid object: the rebuilt file
        // (not the base, which is not hashed on its own) says so.
        let (repo, record, _) = rt.block_on(layered());
        let entry = record.files.last().unwrap();
        let (other, _) = repo.format.write_to_vec(&[7u8; 6 * 8192][..]).unwrap();
        let base = ObjectPath::from(entry.object.clone().unwrap());
        rt.block_on(repo.store.put(&base, PutPayload::from(other)))
            .unwrap();
        let dest = tmp.path().join("other-base");
        let err = rt
            .block_on(files(&repo, &record, &dest, &OPTIONS, &|_| ()))
            .unwrap_err();
        assert_eq!(format!("{err:#}"), rebuilt_wrong);
    }

    #[test]
    fn a_damaged_object_is_named_and_nothing_is_left_writing() {
        let rt = runtime();
        let (repo, record) = rt.block_on(backup());
        // Same length, other content: valid zstd, wrong checksum.
        let (_, other) = file("base/2", b"TWO", 0o600);
        let key = ObjectPath::from("backups/b1/data/base/2.zst");
        rt.block_on(repo.store.put(&key, PutPayload::from(other)))
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("data");
        let err = rt
            .block_on(files(&repo, &record, &dest, &OPTIONS, &|_| ()))
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "base/2 does not match its checksum in backup b1 (object backups/b1/data/base/2.zst)"
        );
        // Every writer has finished: the directory can go at once.
        std::fs::remove_dir_all(&dest).unwrap();
        assert!(!dest.exists());

        // The content the record's SHA-256 names, but not the CRC-32C of
        // PostgreSQL's manifest (which pg_verifybackup no longer reads for).
        let (repo, mut record) = rt.block_on(backup());
        let big = record
            .files
            .iter_mut()
            .find(|f| f.path == "base/1")
            .unwrap();
        big.crc32c = Some("0badc0de".into());
        let err = rt
            .block_on(files(&repo, &record, &dest, &OPTIONS, &|_| ()))
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "base/1 does not match its CRC-32C in backup b1's backup_manifest"
        );
    }

    #[test]
    fn a_missing_or_broken_object_is_named() {
        let rt = runtime();
        let (repo, record) = rt.block_on(backup());
        let key = ObjectPath::from("backups/b1/data/base/1.zst");
        let packed = rt
            .block_on(async { repo.store.get(&key).await?.bytes().await })
            .unwrap();
        let half = packed.slice(..packed.len() / 2);
        rt.block_on(repo.store.put(&key, PutPayload::from(half)))
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let err = rt
            .block_on(files(
                &repo,
                &record,
                &tmp.path().join("a"),
                &OPTIONS,
                &|_| (),
            ))
            .unwrap_err();
        assert!(
            format!("{err:#}").starts_with(
                "cannot restore base/1 of backup b1: backups/b1/data/base/1.zst is truncated"
            ),
            "{err:#}"
        );

        rt.block_on(repo.store.delete(&key)).unwrap();
        let err = rt
            .block_on(files(
                &repo,
                &record,
                &tmp.path().join("b"),
                &OPTIONS,
                &|_| (),
            ))
            .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot read backups/b1/data/base/1.zst"),
            "{err:#}"
        );
    }

    #[test]
    fn an_encrypted_backup_restores_with_its_key_only() {
        use crate::backup::cipher::Key;
        use crate::backup::codec::Compression;
        let rt = runtime();
        let (plain_repo, mut record) = rt.block_on(backup());
        let keyed = Format {
            compression: Compression::Lz4,
            key: Some(Key::from_bytes([9; 32])),
        };
        let repo = Repo::new(Arc::new(InMemory::new())).with_format(keyed.clone());
        // The same backup, every object re-stored encrypted.
        for f in record.files.iter_mut().filter(|f| f.kind == "file") {
            let old = ObjectPath::from(f.object.clone().unwrap());
            let packed = rt
                .block_on(async { plain_repo.store.get(&old).await?.bytes().await })
                .unwrap();
            let (content, _) = crate::backup::codec::decompress_to_vec(&packed).unwrap();
            let (sealed, _) = keyed.write_to_vec(content.as_slice()).unwrap();
            let key = format!("backups/b1/data/{}.lz4", f.path);
            rt.block_on(
                repo.store
                    .put(&ObjectPath::from(key.clone()), sealed.into()),
            )
            .unwrap();
            f.object = Some(key);
        }
        for (name, body) in [("backup_label", "label"), ("backup_manifest", "manifest")] {
            let key = ObjectPath::from(format!("backups/b1/{name}"));
            let sealed = keyed.seal_small(body.as_bytes()).unwrap();
            rt.block_on(repo.store.put(&key, sealed.into())).unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        rt.block_on(files(
            &repo,
            &record,
            &tmp.path().join("ok"),
            &OPTIONS,
            &|_| (),
        ))
        .unwrap();
        assert_eq!(std::fs::read(tmp.path().join("ok/base/2")).unwrap(), b"two");
        assert_eq!(
            std::fs::read(tmp.path().join("ok/backup_label")).unwrap(),
            b"label"
        );

        for (format, expected) in [
            (Format::default(), "no encryption key is configured"),
            (
                Format {
                    key: Some(Key::from_bytes([1; 32])),
                    ..Format::default()
                },
                "not the configured key",
            ),
        ] {
            let without = repo.clone().with_format(format);
            let dest = tmp.path().join("refused");
            let err = rt
                .block_on(files(&without, &record, &dest, &OPTIONS, &|_| ()))
                .unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(expected), "{text}");
            assert!(text.contains("backups/b1/data/"), "{text}");
            // Nothing of any file was written.
            for f in record.files.iter().filter(|f| f.kind == "file") {
                let written = std::fs::metadata(dest.join(&f.path)).map_or(0, |m| m.len());
                assert_eq!(written, 0, "{}", f.path);
            }
            std::fs::remove_dir_all(&dest).unwrap();
        }
    }

    #[test]
    fn an_unfinished_backup_is_refused() {
        let rt = runtime();
        let (repo, mut record) = rt.block_on(backup());
        record.status = BackupStatus::Failed;
        let tmp = tempfile::tempdir().unwrap();
        let err = rt
            .block_on(files(
                &repo,
                &record,
                &tmp.path().join("d"),
                &OPTIONS,
                &|_| (),
            ))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "backup b1 did not finish and cannot be restored"
        );
    }
}
