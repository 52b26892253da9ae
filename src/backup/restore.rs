//! Putting a backup's files back: every object streamed from the
//! repository, decompressed and checked against the SHA-256 in the record,
//! written into a new directory with the backup's own `backup_label`,
//! `tablespace_map` and PostgreSQL `backup_manifest`, so `pg_verifybackup`
//! can check the result before anything uses it.

use std::cell::Cell;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::catalog::{self, BackupRecord};
use super::codec::Decompressor;
use super::repo::Repo;

/// How often progress is reported.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Writes the files of a finished backup into `dest` (which must not
/// exist); `progress` hears how far it got every few seconds.
pub async fn files(
    repo: &Repo,
    record: &BackupRecord,
    dest: &Path,
    concurrency: usize,
    progress: &dyn Fn(&str),
) -> Result<()> {
    if !record.is_finished() {
        bail!("backup {} did not finish and cannot be restored", record.id);
    }
    std::fs::create_dir(dest).with_context(|| format!("cannot create {}", dest.display()))?;

    // Directories and links first, so files have somewhere to go.
    for entry in record.files.iter().filter(|f| f.kind != "file") {
        let path = dest.join(&entry.path);
        match entry.kind.as_str() {
            "dir" => {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode))?;
            }
            "link" => {
                let target = entry.target.as_deref().context("a link without a target")?;
                std::fs::create_dir_all(target)
                    .with_context(|| format!("cannot create the tablespace {target}"))?;
                std::os::unix::fs::symlink(target, &path)
                    .with_context(|| format!("cannot link {}", path.display()))?;
            }
            other => bail!(
                "backup {} holds an entry of unknown kind {other:?}",
                record.id
            ),
        }
    }

    // Every file, checked against its checksum.
    let total_files = record.files.iter().filter(|f| f.kind == "file").count();
    let total_bytes: u64 = record.files.iter().map(|f| f.size).sum();
    let done = Cell::new((0usize, 0u64));
    let last_report = Cell::new(Instant::now());
    let report = |size: u64| {
        let (files, bytes) = done.get();
        done.set((files + 1, bytes + size));
        if last_report.get().elapsed() >= REPORT_EVERY {
            last_report.set(Instant::now());
            progress(&format!(
                "restored {} of {total_files} files ({} of {} MiB)",
                files + 1,
                (bytes + size) >> 20,
                total_bytes >> 20
            ));
        }
    };
    let jobs = record
        .files
        .iter()
        .filter(|f| f.kind == "file")
        .map(|entry| {
            let store = repo.store.clone();
            let report = &report;
            async move {
                let key = entry
                    .object
                    .as_deref()
                    .context("a file without an object")?;
                let want = entry
                    .sha256
                    .as_deref()
                    .context("a file without a checksum")?;
                let path = dest.join(&entry.path);
                let got = download(store.as_ref(), &ObjectPath::from(key), &path).await?;
                if got != want {
                    bail!(
                        "{} does not match its checksum in backup {} (object {key})",
                        entry.path,
                        record.id
                    );
                }
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode))?;
                report(entry.size);
                Ok(())
            }
        });
    futures::stream::iter(jobs)
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;

    // The backup's own label, map and manifest.
    for name in ["backup_label", "tablespace_map", "backup_manifest"] {
        let key = ObjectPath::from(format!("{}/{name}", catalog::backup_dir(&record.id)));
        match repo.store.get(&key).await {
            Ok(found) => {
                let bytes = found
                    .bytes()
                    .await
                    .with_context(|| format!("cannot read {key}"))?;
                std::fs::write(dest.join(name), &bytes)?;
            }
            Err(object_store::Error::NotFound { .. }) if name == "tablespace_map" => {}
            Err(err) => return Err(err).with_context(|| format!("cannot read {key}")),
        }
    }
    Ok(())
}

/// Streams one object into a file, decompressing; returns the SHA-256.
async fn download(store: &dyn ObjectStore, key: &ObjectPath, dest: &Path) -> Result<String> {
    let file =
        std::fs::File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut out = Decompressor::new(std::io::BufWriter::new(file))?;
    let mut stream = store
        .get(key)
        .await
        .with_context(|| format!("cannot read {key}"))?
        .into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("cannot read {key}"))?;
        out.write_all(&chunk)
            .with_context(|| format!("{key} is not valid zstd"))?;
    }
    let (mut writer, digest) = out
        .finish()
        .with_context(|| format!("{key} is truncated"))?;
    writer
        .flush()
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(digest.sha256)
}
