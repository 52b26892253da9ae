//! Pushing WAL ahead of the archiver. PostgreSQL's archiver asks for one
//! segment at a time and waits for each, so a backlog drains at the speed
//! of one compression and one round trip after another. When wal-push is
//! asked for a segment, it also pushes, in parallel, the next segments the
//! server has already marked ready (`pg_wal/archive_status/<segment>.ready`)
//! and leaves a marker for each one stored. When the archiver then asks for
//! one of those, the marker answers: nothing is compressed or sent again.
//!
//! A marker lives in `pg_wal/charm-pushed/<segment>` and holds the file's
//! size, its CRC-32C and the repository it was stored in. It counts only if
//! all three still match, so a marker left by another repository (the S3
//! relation changed) or for other bytes is ignored, and the segment is
//! pushed as usual. Markers belong to this data directory's pg_wal, which
//! neither backups nor `pg_basebackup` copy, and a restored directory
//! starts without them. Markers for segments before the one asked for are
//! removed; the archiver never asks for those again.
//!
//! Only plain segments are pushed ahead: timeline history files and
//! partial segments wait for their turn.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::repo::Repo;
use super::settings::RepoSettings;
use super::wal::{self, Pushed};

/// Segments pushed by one call: the one asked for and those after it.
pub const BATCH: usize = 16;
/// Segments compressed and uploaded at once within a call.
pub const PARALLEL: usize = 4;

/// The markers of one pg_wal directory, for one repository.
#[derive(Debug, Clone)]
pub struct Ahead {
    pg_wal: PathBuf,
    repository: String,
}

/// What a marker records about the segment it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    repository: String,
    size: u64,
    crc32c: u32,
}

/// Whether `name` is a plain WAL segment name (24 hex digits).
fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Size and CRC-32C of a file, read once.
fn fingerprint(file: &Path) -> Result<(u64, u32)> {
    let mut reader =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut size, mut crc) = (0u64, 0u32);
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if n == 0 {
            return Ok((size, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        size += n as u64;
    }
}

impl Ahead {
    /// The markers beside `file` (archive_command's `%p`, in pg_wal), for
    /// the repository the settings name.
    pub fn beside(file: &Path, settings: &RepoSettings) -> Self {
        let pg_wal = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        let identity = format!(
            "{}\n{}\n{}",
            settings.endpoint,
            settings.bucket,
            settings.prefix()
        );
        Self {
            pg_wal,
            repository: hex::encode(&Sha256::digest(identity.as_bytes())[..16]),
        }
    }

    fn markers(&self) -> PathBuf {
        self.pg_wal.join("charm-pushed")
    }

    /// Whether `name` was pushed ahead into this repository with exactly
    /// the bytes now at `file`; the marker is used up either way. Segments
    /// before `name` lose their markers.
    pub fn claim(&self, name: &str, file: &Path) -> bool {
        self.forget_before(name);
        let marker = self.markers().join(name);
        let Ok(text) = std::fs::read(&marker) else {
            return false;
        };
        let _ = std::fs::remove_file(&marker);
        let Ok(recorded) = serde_json::from_slice::<Marker>(&text) else {
            return false;
        };
        match fingerprint(file) {
            Ok((size, crc32c)) => {
                recorded
                    == Marker {
                        repository: self.repository.clone(),
                        size,
                        crc32c,
                    }
            }
            Err(_) => false,
        }
    }

    /// Records that the segment at `file` was stored in this repository.
    pub fn mark(&self, file: &Path) -> Result<()> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", file.display()))?;
        let (size, crc32c) = fingerprint(file)?;
        let marker = Marker {
            repository: self.repository.clone(),
            size,
            crc32c,
        };
        let dir = self.markers();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let partial = dir.join(format!(".{name}.tmp"));
        std::fs::write(&partial, serde_json::to_vec(&marker)?)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::rename(&partial, dir.join(name))
            .with_context(|| format!("cannot write the marker of {name}"))
    }

    /// The paths of up to `limit` segments after `name` that the server has
    /// marked ready, oldest first.
    pub fn ready_after(&self, name: &str, limit: usize) -> Vec<PathBuf> {
        if !is_segment(name) || limit == 0 {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(self.pg_wal.join("archive_status")) else {
            return Vec::new();
        };
        let mut ready: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let segment = file.strip_suffix(".ready")?;
                (is_segment(segment) && segment > name).then(|| segment.to_owned())
            })
            .collect();
        ready.sort();
        ready.truncate(limit);
        ready.into_iter().map(|s| self.pg_wal.join(s)).collect()
    }

    /// Removes the markers of segments before `name`.
    fn forget_before(&self, name: &str) {
        let Ok(entries) = std::fs::read_dir(self.markers()) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let stale = if let Some(tmp) = file.strip_prefix('.') {
                tmp.strip_suffix(".tmp").is_some_and(|s| s < name)
            } else {
                file < name
            };
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Archives `file` (archive_command's `%p`) and, alongside it, the ready
/// segments after it, leaving a marker for each of those stored. The
/// result is `file`'s alone: a segment pushed ahead that fails is simply
/// pushed again, and reported, when its turn comes.
pub async fn push(repo: &Repo, ahead: &Ahead, file: &Path) -> Result<Pushed> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let next = ahead.ready_after(name, BATCH - 1);
    let asked = wal::push(repo, file);
    let alongside = futures::stream::iter(next)
        .map(|path| async move {
            let stored = wal::push(repo, &path).await;
            (path, stored)
        })
        .buffer_unordered(PARALLEL - 1)
        .for_each(|(path, stored)| async move {
            if stored.is_ok() {
                let _ = ahead.mark(&path);
            }
        });
    let (pushed, ()) = futures::join!(asked, alongside);
    pushed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(bucket: &str) -> RepoSettings {
        serde_json::from_value(serde_json::json!({
            "endpoint": "http://127.0.0.1:9000", "region": null, "bucket": bucket,
            "path": "/p", "uri-style": "path", "storage-class": null,
            "access-key": "a", "secret-key": "s", "repository": "m.postgresql"
        }))
        .unwrap()
    }

    const S1: &str = "000000010000000000000001";
    const S2: &str = "000000010000000000000002";
    const S3: &str = "000000010000000000000003";
    const S4: &str = "000000010000000000000004";

    /// A pg_wal with segments 1–4, 2–4 ready, a history file and a partial
    /// segment ready too.
    fn pg_wal() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("archive_status");
        std::fs::create_dir(&status).unwrap();
        for (n, s) in [S1, S2, S3, S4].iter().enumerate() {
            std::fs::write(dir.path().join(s), vec![n as u8; 1000]).unwrap();
        }
        for ready in [
            S2,
            S3,
            S4,
            "00000002.history",
            "000000010000000000000005.partial",
        ] {
            std::fs::write(status.join(format!("{ready}.ready")), b"").unwrap();
        }
        std::fs::write(status.join(format!("{S1}.done")), b"").unwrap();
        dir
    }

    #[test]
    fn the_ready_segments_after_the_one_asked_for_oldest_first() {
        let dir = pg_wal();
        let ahead = Ahead::beside(&dir.path().join(S1), &settings("b"));
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names(ahead.ready_after(S1, 7)), [S2, S3, S4]);
        assert_eq!(names(ahead.ready_after(S1, 2)), [S2, S3]);
        assert_eq!(names(ahead.ready_after(S3, 7)), [S4]);
        assert!(ahead.ready_after("00000002.history", 7).is_empty());
    }

    #[test]
    fn a_marker_answers_once_and_only_for_the_same_bytes_and_repository() {
        let dir = pg_wal();
        let ahead = Ahead::beside(&dir.path().join(S1), &settings("b"));
        ahead.mark(&dir.path().join(S2)).unwrap();
        assert!(ahead.claim(S2, &dir.path().join(S2)));
        assert!(!ahead.claim(S2, &dir.path().join(S2)), "used up");

        // Another repository: not stored there.
        ahead.mark(&dir.path().join(S3)).unwrap();
        let other = Ahead::beside(&dir.path().join(S1), &settings("other"));
        assert!(!other.claim(S3, &dir.path().join(S3)));

        // Other bytes under the name.
        ahead.mark(&dir.path().join(S4)).unwrap();
        let mut bytes = std::fs::read(dir.path().join(S4)).unwrap();
        bytes[500] ^= 1;
        std::fs::write(dir.path().join(S4), bytes).unwrap();
        assert!(!ahead.claim(S4, &dir.path().join(S4)));
    }

    #[test]
    fn markers_before_the_segment_asked_for_are_removed() {
        let dir = pg_wal();
        let ahead = Ahead::beside(&dir.path().join(S1), &settings("b"));
        for s in [S2, S3, S4] {
            ahead.mark(&dir.path().join(s)).unwrap();
        }
        assert!(!ahead.claim(S1, &dir.path().join(S1)), "never pushed ahead");
        assert!(ahead.claim(S4, &dir.path().join(S4)));
        let left = std::fs::read_dir(dir.path().join("charm-pushed"))
            .unwrap()
            .count();
        assert_eq!(left, 0, "the markers of 2 and 3 went with the claim of 4");
    }
}
