//! Uploading one file: read, compressed and (with a key) encrypted on a
//! blocking thread, streamed through a small bounded channel to a buffered
//! multipart writer, so memory stays bounded whatever the file's size; the
//! repository's bandwidth limit, if any, paces the writer. A relation
//! file's pages can be checked on the way (`pages`), and only its pages
//! changed since a reference backup stored (`delta`).

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context as _, Result};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::delta::{Check, Selector};
use super::pages::{confirm, Checked};
use super::repo::Repo;

/// Size of the parts sent to the store.
const PART: usize = 8 << 20;
/// Compressed chunks in flight between the reader and the writer.
const IN_FLIGHT: usize = 4;
/// Parts of one file being uploaded at once (the store's default, 8, let
/// a large file hold 64 MiB when S3 is slower than the compressor).
const PARTS_IN_FLIGHT: usize = 2;

/// What was stored for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// SHA-256, CRC-32C and length of the bytes read.
    pub sha256: String,
    pub crc32c: u32,
    pub len: u64,
    /// Bytes stored (compressed, and encrypted with a key).
    pub stored: u64,
    /// Blocks whose page checksum failed (when pages were checked).
    pub bad_pages: Vec<u32>,
    /// For a page delta: what the object holds, as opposed to the file.
    pub delta: Option<StoredDelta>,
}

/// The object of a page delta: how many pages it carries and the SHA-256
/// (which verify-backup checks) and CRC-32C (which a restore checks) of its
/// stream, uncompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelta {
    pub pages: u32,
    pub sha256: String,
    pub crc32c: u32,
}

/// Check the pages of a relation file as it is read: the number of its
/// first block in the relation, and the LSN the backup started at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCheck {
    pub first_block: u32,
    pub start_lsn: u64,
}

/// Sends what the compressor writes to the uploader, in chunks.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buffer: Vec<u8>,
    sent: u64,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(1 << 20));
        self.sent += chunk.len() as u64;
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= 1 << 20 {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Stores `source` as the object `key` in the repository's format,
/// checking its pages when asked; None when the file vanished before it
/// could be opened (PostgreSQL dropped it during the backup).
pub async fn file(
    repo: &Repo,
    key: ObjectPath,
    source: &Path,
    pages: Option<PageCheck>,
) -> Result<Option<Uploaded>> {
    upload(repo, key, source, pages, None).await
}

/// Stores as the object `key` only the pages of the relation file `source`
/// changed since `since` (the reference backup's start LSN), as a page
/// delta (see `delta`); the digest returned is the whole file's as read.
pub async fn delta(
    repo: &Repo,
    key: ObjectPath,
    source: &Path,
    pages: Option<PageCheck>,
    since: u64,
) -> Result<Option<Uploaded>> {
    upload(repo, key, source, pages, Some(since)).await
}

async fn upload(
    repo: &Repo,
    key: ObjectPath,
    source: &Path,
    pages: Option<PageCheck>,
    since: Option<u64>,
) -> Result<Option<Uploaded>> {
    let input = match std::fs::File::open(source) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot open {}", source.display())),
    };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT);
    let path = source.to_owned();
    let format = repo.format.clone();
    let reader = tokio::task::spawn_blocking(move || -> Result<(Uploaded, u64)> {
        let sink = ChannelWriter {
            tx,
            buffer: Vec::with_capacity(1 << 20),
            sent: 0,
        };
        let mut compressor = format.writer(sink)?;
        let read = |what: io::Result<u64>| {
            what.map(drop)
                .with_context(|| format!("cannot read {}", path.display()))
        };
        let (bad_pages, whole) = match (since, pages) {
            (Some(since), check) => {
                let check = match check {
                    Some(c) => Some(Check {
                        file: input.try_clone().context("cannot reopen the file")?,
                        first_block: c.first_block,
                        start_lsn: c.start_lsn,
                    }),
                    None => None,
                };
                let mut selector = Selector::new(compressor, since, check)?;
                let mut input = input;
                read(io::copy(&mut input, &mut selector))?;
                let bad = std::mem::take(&mut selector.bad_pages);
                let (digest, pages, inner) = selector.finish()?;
                compressor = inner;
                (bad, Some((digest, pages)))
            }
            (None, Some(check)) => {
                let mut checked = Checked::new(input, check.first_block, check.start_lsn);
                read(io::copy(&mut checked, &mut compressor))?;
                let bad = confirm(&path, check.first_block, check.start_lsn, &checked.failed);
                (bad, None)
            }
            (None, None) => {
                let mut input = input;
                read(io::copy(&mut input, &mut compressor))?;
                (Vec::new(), None)
            }
        };
        let (mut sink, stream) = compressor.finish()?;
        sink.send().context("the upload stopped")?;
        let (digest, delta) = match whole {
            Some((digest, pages)) => (
                digest,
                Some(StoredDelta {
                    pages,
                    sha256: stream.sha256,
                    crc32c: stream.crc32c,
                }),
            ),
            None => (stream, None),
        };
        let done = Uploaded {
            sha256: digest.sha256,
            crc32c: digest.crc32c,
            len: digest.len,
            stored: 0,
            bad_pages,
            delta,
        };
        Ok((done, sink.sent))
    });

    let mut writer = BufWriter::with_capacity(repo.store.clone(), key.clone(), PART)
        .with_max_concurrency(PARTS_IN_FLIGHT);
    while let Some(chunk) = rx.recv().await {
        if let Some(throttle) = &repo.throttle {
            throttle.take(chunk.len()).await;
        }
        writer
            .write_all(&chunk)
            .await
            .with_context(|| format!("cannot upload {key}"))?;
    }
    let (done, stored) = match reader.await.context("the compressing thread failed")? {
        Ok(done) => done,
        Err(err) => {
            let _ = writer.abort().await;
            return Err(err);
        }
    };
    writer
        .shutdown()
        .await
        .with_context(|| format!("cannot finish uploading {key}"))?;
    Ok(Some(Uploaded { stored, ..done }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::cipher::Key;
    use crate::backup::codec::Compression;
    use crate::backup::object::Format;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_file_round_trips_through_parts() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("relation");
        // 20 MiB of poorly compressible bytes: several parts.
        let bytes: Vec<u8> = (0..20u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&source, &bytes).unwrap();
        let repo = Repo::new(Arc::new(InMemory::new()));
        let key = ObjectPath::from("backups/x/data/relation.zst");

        let done = file(&repo, key.clone(), &source, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.len, bytes.len() as u64);
        assert_eq!(done.sha256, super::super::codec::sha256_hex(&bytes));
        let stored = repo.store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.len() as u64, done.stored);
        let (restored, digest) = super::super::codec::decompress_to_vec(&stored).unwrap();
        assert_eq!(restored, bytes);
        assert_eq!(digest.sha256, done.sha256);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_encrypted_lz4_upload_is_paced_by_the_limit_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("relation");
        let mut bytes = vec![0u8; 6 << 20];
        rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
        std::fs::write(&source, &bytes).unwrap();
        let format = Format {
            compression: Compression::Lz4,
            key: Some(Key::from_bytes([3; 32])),
        };
        let repo = Repo::new(Arc::new(InMemory::new()))
            .with_format(format.clone())
            .with_bandwidth(Some(2));
        let key = ObjectPath::from("backups/x/data/relation.lz4");
        let started = std::time::Instant::now();
        let done = file(&repo, key.clone(), &source, None)
            .await
            .unwrap()
            .unwrap();
        // 6 MiB (incompressible) at 2 MiB/s, with a second's credit: about 2 s.
        let took = started.elapsed().as_secs_f64();
        assert!(took > 1.7, "{took}");
        let stored = repo.store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.len() as u64, done.stored);
        assert!(crate::backup::cipher::is_encrypted(&stored));
        let (restored, digest) = format.read_to_vec(key.as_ref(), &stored).unwrap();
        assert_eq!(restored, bytes);
        assert_eq!(digest.sha256, done.sha256);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delta_stores_the_changed_pages_and_rebuilds_the_file() {
        use crate::backup::delta;
        use crate::backup::pages::BLOCK;
        // 300 pages with LSN 0/100 (pd_upper set), every tenth at 0/900.
        let page = |i: usize| {
            let mut p: Vec<u8> = (0..BLOCK).map(|b| ((b * 31 + i * 7) % 251) as u8).collect();
            let lsn: u32 = if i % 10 == 0 { 0x900 } else { 0x100 };
            p[0..8].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
            p[4..8].copy_from_slice(&lsn.to_le_bytes());
            p[14..16].copy_from_slice(&8000u16.to_le_bytes());
            p
        };
        let now: Vec<u8> = (0..300).flat_map(page).collect();
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("16384");
        std::fs::write(&source, &now).unwrap();
        let repo = Repo::new(Arc::new(InMemory::new()));
        let key = ObjectPath::from("backups/y/data/base/5/16384.delta.zst");

        let done = delta(&repo, key.clone(), &source, None, 0x500)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.len, now.len() as u64);
        assert_eq!(done.sha256, super::super::codec::sha256_hex(&now));
        let stored = repo.store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.len() as u64, done.stored);
        let (stream, digest) = super::super::codec::decompress_to_vec(&stored).unwrap();
        let noted = done.delta.unwrap();
        assert_eq!(noted.pages, 30);
        assert_eq!(noted.sha256, digest.sha256);

        // Laid over a reference whose tenth pages differ, it gives the file.
        let mut reference = now.clone();
        for i in (0..300).step_by(10) {
            reference[i * BLOCK + 100] ^= 0xff;
        }
        let target = dir.path().join("restored");
        std::fs::write(&target, &reference).unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .unwrap();
        delta::apply(&stream[..], &file).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), now);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_vanished_file_is_none() {
        let repo = Repo::new(Arc::new(InMemory::new()));
        let gone = file(
            &repo,
            ObjectPath::from("k"),
            Path::new("/nonexistent/file"),
            None,
        )
        .await
        .unwrap();
        assert!(gone.is_none());
    }
}
