//! Copying the data directory into a backup: which files a backup stores
//! and how. A full backup stores every file whole. A differential or
//! incremental one reuses the reference's copy of a file whose size and
//! mtime did not move (or whose content hashes the same), stores a
//! relation file the reference read as a page delta (only the pages
//! changed since the reference began, laid over the reference's copy at
//! restore; see `delta`), and stores every other changed file whole.
//!
//! A page delta is taken only where it is sound (see `delta` for why the
//! page LSN tells what changed): the cluster has data checksums (hint bits
//! are then WAL-logged, and pages read mid-write are caught and read
//! again), the reference was taken on this unit on the same timeline and
//! after the data directory's last `pg_rewind` (so no restore, rewind or
//! promotion moved pages back in between), the file
//! is the very file the reference read (same inode and birth time), it is
//! a main fork (free-space and visibility maps are stored whole), and its
//! chain of layers is neither [`MAX_LAYERS`] long already nor heavier in
//! the repository than its base.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt as _;

use super::catalog::{self, BackupRecord, FileRecord, Layer};
use super::codec::crc32c_hex;
use super::engine::Request;
use super::pages;
use super::pgmanifest::sha256_file;
use super::repo::Repo;
use super::upload;
use super::walk::{self, Kind};

/// Layers a file's chain may have before a backup stores it whole again:
/// a restore reads one object per layer.
pub const MAX_LAYERS: usize = 16;
/// Files smaller than this are stored whole: a delta would save little,
/// and cost the restore a request per layer.
pub const DELTA_MIN_SIZE: u64 = 64 << 10;

/// Where page deltas may be taken for this backup: the reference's start
/// LSN, when the reference and the cluster allow it (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaSince(pub u64);

impl DeltaSince {
    /// Deltas against `reference` for a backup on `unit`, on `timeline`,
    /// of a cluster with data checksums or not, whose data directory was
    /// last rewound at `rewound_at` (seconds since the epoch), if ever.
    pub fn of(
        reference: Option<&BackupRecord>,
        unit: &str,
        timeline: u32,
        checksums: bool,
        rewound_at: Option<i64>,
    ) -> Option<Self> {
        let reference = reference?;
        if !checksums || reference.unit != unit || reference.timeline != Some(timeline) {
            return None;
        }
        // A rewind may have put older pages back into the same files.
        if let Some(rewound_at) = rewound_at {
            let started = chrono::DateTime::parse_from_rfc3339(&reference.start_time).ok()?;
            if started.timestamp() <= rewound_at {
                return None;
            }
        }
        let start = reference.start_lsn.as_deref()?;
        crate::postgres::sql::parse_lsn(start).ok().map(Self)
    }
}

/// How one changed file is stored.
enum Plan {
    /// Whole; unless its content hashes as the reference's copy of the same size.
    Whole { same_size: Option<FileRecord> },
    /// As the pages changed since `since`, over the reference's copy `base`.
    Delta { base: FileRecord, since: u64 },
}

/// What became of one file.
enum Copied {
    Whole(ObjectPath, upload::Uploaded),
    Delta(ObjectPath, upload::Uploaded, FileRecord),
    Reused(FileRecord),
    /// Dropped by PostgreSQL during the backup.
    Gone,
}

/// Stores every file of the data directory the backup needs; returns the
/// backup's file list and the bytes it added to the repository. With
/// `page_check` (the backup's start LSN, on a cluster with data checksums)
/// the pages of relation files are checked as they are read.
pub async fn files(
    repo: &Repo,
    req: &Request<'_>,
    page_check: Option<u64>,
    delta: Option<DeltaSince>,
) -> Result<(Vec<FileRecord>, u64)> {
    let entries = walk::walk(&req.data_dir)?;
    let total: u64 = entries.iter().map(|e| e.size).sum();
    let reference = req.reference.as_ref();
    let reference_start =
        reference.and_then(|r| chrono::DateTime::parse_from_rfc3339(&r.start_time).ok());
    let earlier = |path: &str| reference.and_then(|r| r.files.iter().find(|f| f.path == path));
    let (mut records, mut work) = (Vec::new(), Vec::new());
    for entry in entries {
        let mut file = record_of(&entry);
        if entry.kind == Kind::File {
            let old = earlier(&file.path);
            // Unchanged since the reference (same size and mtime, and not
            // touched in the second that backup started): reuse its copy.
            let unchanged = old.filter(|old| {
                old.size == entry.size
                    && old.mtime == entry.mtime
                    && reference_start.is_some_and(|t| entry.mtime < t.timestamp() - 1)
            });
            match unchanged {
                Some(old) => file.reuse(old),
                None => work.push((records.len(), file.path.clone(), plan(&file, old, delta))),
            }
        }
        records.push(file);
    }

    let changed_bytes: u64 = work.iter().map(|(i, _, _)| records[*i].size).sum();
    let deltas = work
        .iter()
        .filter(|(_, _, p)| matches!(p, Plan::Delta { .. }))
        .count();
    (req.progress)(&format!(
        "copying {} of {} files ({} of {} MiB; {deltas} as changed pages only)",
        work.len(),
        records.len(),
        changed_bytes >> 20,
        total >> 20
    ));
    let started = Instant::now();
    let dir = catalog::backup_dir(&req.id);
    let (dir, suffix) = (dir.as_str(), repo.format.suffix());
    let jobs = work.into_iter().map(|(i, path, plan)| {
        let source = req.data_dir.join(&path);
        let pages = page_check.and_then(|start_lsn| {
            Some(upload::PageCheck {
                first_block: pages::first_block(&path)?,
                start_lsn,
            })
        });
        async move {
            let copied = match plan {
                Plan::Whole { same_size } => {
                    if let Some(old) = same_size {
                        if same_content(&source, &old).await? {
                            return Ok::<_, anyhow::Error>((i, Copied::Reused(old)));
                        }
                    }
                    let key = ObjectPath::from(format!("{dir}/data/{path}.{suffix}"));
                    let done = upload::file(repo, key.clone(), &source, pages).await?;
                    done.map_or(Copied::Gone, |d| Copied::Whole(key, d))
                }
                Plan::Delta { base, since } => {
                    let key = ObjectPath::from(format!("{dir}/data/{path}.delta.{suffix}"));
                    match upload::delta(repo, key.clone(), &source, pages, since).await? {
                        None => Copied::Gone,
                        // Nothing changed after all (only its mtime moved).
                        Some(done) if Some(&done.sha256) == base.sha256.as_ref() => {
                            if let Err(err) = repo.store.delete(&key).await {
                                tracing::debug!("cannot remove the unneeded {key}: {err}");
                            }
                            Copied::Reused(base)
                        }
                        Some(done) => Copied::Delta(key, done, base),
                    }
                }
            };
            Ok((i, copied))
        }
    });
    let mut done_bytes = 0u64;
    let mut uploaded = 0u64;
    let mut last_report = Instant::now();
    let mut results = futures::stream::iter(jobs).buffer_unordered(req.concurrency.max(1));
    while let Some((i, copied)) = results.try_next().await? {
        let file = &mut records[i];
        let done = match copied {
            Copied::Whole(key, done) => {
                file.object = Some(key.to_string());
                file.stored = done.stored;
                done
            }
            Copied::Delta(key, done, base) => {
                lay_over(file, &base, &key, &done);
                done
            }
            Copied::Reused(old) => {
                file.reuse(&old);
                continue;
            }
            Copied::Gone => {
                // WAL replay recreates nothing of a dropped relation.
                file.kind = "gone".into();
                continue;
            }
        };
        file.sha256 = Some(done.sha256);
        file.crc32c = Some(crc32c_hex(done.crc32c));
        file.size = done.len;
        file.bad_pages = done.bad_pages;
        uploaded += done.stored;
        done_bytes += done.len;
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(0.001);
            (req.progress)(&format!(
                "copied {} of {} MiB ({:.0}%) at {:.1} MiB/s",
                done_bytes >> 20,
                changed_bytes >> 20,
                100.0 * done_bytes as f64 / changed_bytes.max(1) as f64,
                done_bytes as f64 / secs / 1048576.0
            ));
        }
    }
    records.retain(|f| f.kind != "gone");
    Ok((records, uploaded))
}

/// A walked entry as the backup records it, before its content is stored.
fn record_of(entry: &walk::Entry) -> FileRecord {
    FileRecord {
        path: entry.path.to_string_lossy().into_owned(),
        kind: match entry.kind {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink { .. } => "link",
        }
        .into(),
        size: entry.size,
        mtime: entry.mtime,
        mode: entry.mode,
        target: match &entry.kind {
            Kind::Symlink { target } => Some(target.to_string_lossy().into_owned()),
            _ => None,
        },
        ino: (entry.kind == Kind::File).then_some(entry.identity.ino),
        birth_ns: entry.identity.birth_ns.filter(|_| entry.kind == Kind::File),
        ..FileRecord::default()
    }
}

/// What a file's page deltas weigh in the repository. Once they weigh
/// more than its base, the next backup stores it whole: a restore reads a
/// file's base and every delta, so this keeps that read under about twice
/// the file's own stored size (its deltas compress less than the whole
/// file: they are the pages that changed, without the unchanged ones).
fn layer_bytes(file: &FileRecord) -> u64 {
    file.layers.iter().map(|l| l.stored).sum()
}

/// How a changed file is stored, given the reference's copy of it (`old`).
fn plan(file: &FileRecord, old: Option<&FileRecord>, delta: Option<DeltaSince>) -> Plan {
    let Some(old) = old.filter(|old| old.object.is_some() && old.sha256.is_some()) else {
        return Plan::Whole { same_size: None };
    };
    let same_file = file.ino.is_some()
        && file.birth_ns.is_some()
        && (old.ino, old.birth_ns) == (file.ino, file.birth_ns);
    match delta {
        Some(DeltaSince(since))
            if same_file
                && file.size >= DELTA_MIN_SIZE
                && old.layers.len() < MAX_LAYERS
                && layer_bytes(old) <= old.stored
                && pages::is_main_fork(&file.path) =>
        {
            Plan::Delta {
                base: old.clone(),
                since,
            }
        }
        _ => Plan::Whole {
            same_size: (old.size == file.size).then(|| old.clone()),
        },
    }
}

/// Whether `source` still holds what `old` recorded (only its mtime moved).
async fn same_content(source: &std::path::Path, old: &FileRecord) -> Result<bool> {
    let hashing = source.to_owned();
    let hashed = tokio::task::spawn_blocking(move || sha256_file(&hashing)).await?;
    Ok(matches!(hashed, Ok((len, sha))
        if len == old.size && Some(hex::encode(sha)) == old.sha256))
}

/// Records `file` as `base`'s content with one more layer, the delta just
/// stored as `key`.
fn lay_over(file: &mut FileRecord, base: &FileRecord, key: &ObjectPath, done: &upload::Uploaded) {
    let delta = done
        .delta
        .as_ref()
        .expect("a delta upload describes its delta");
    file.object.clone_from(&base.object);
    file.stored = base.stored;
    file.base_sha256 = base.base_sha256.clone().or_else(|| base.sha256.clone());
    file.layers = base.layers.clone();
    file.layers.push(Layer {
        object: key.to_string(),
        stored: done.stored,
        sha256: delta.sha256.clone(),
        crc32c: Some(crc32c_hex(delta.crc32c)),
        pages: delta.pages,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::walk::Identity;

    fn relation(path: &str, size: u64, ino: u64, birth: u64) -> FileRecord {
        FileRecord {
            path: path.into(),
            kind: "file".into(),
            size,
            ino: Some(ino),
            birth_ns: Some(birth),
            sha256: Some("ab".repeat(32)),
            object: Some(format!("backups/b1/data/{path}.zst")),
            ..FileRecord::default()
        }
    }

    fn is_delta(plan: &Plan) -> bool {
        matches!(plan, Plan::Delta { .. })
    }

    #[test]
    fn only_the_same_main_fork_file_of_some_size_becomes_a_delta() {
        let since = Some(DeltaSince(0x100));
        let old = relation("base/5/16384", 1 << 20, 7, 99);
        let now = relation("base/5/16384", 2 << 20, 7, 99);
        assert!(is_delta(&plan(&now, Some(&old), since)));
        // Another file under the same name (a relation file number reused).
        let reborn = relation("base/5/16384", 2 << 20, 7, 100);
        assert!(!is_delta(&plan(&reborn, Some(&old), since)));
        let moved = relation("base/5/16384", 2 << 20, 8, 99);
        assert!(!is_delta(&plan(&moved, Some(&old), since)));
        // No birth time on this filesystem: never sure it is the same file.
        let mut unknown = now.clone();
        unknown.birth_ns = None;
        let mut old_unknown = old.clone();
        old_unknown.birth_ns = None;
        assert!(!is_delta(&plan(&unknown, Some(&old_unknown), since)));
        // Maps, small files, a new file, no deltas allowed, a long chain.
        let fsm = relation("base/5/16384_fsm", 1 << 20, 7, 99);
        assert!(!is_delta(&plan(&fsm, Some(&fsm), since)));
        let vm = relation("base/5/16384_vm", 1 << 20, 7, 99);
        assert!(!is_delta(&plan(&vm, Some(&vm), since)));
        let small = relation("base/5/16384", 8192, 7, 99);
        assert!(!is_delta(&plan(&small, Some(&old), since)));
        assert!(!is_delta(&plan(&now, None, since)));
        assert!(!is_delta(&plan(&now, Some(&old), None)));
        let mut long = old.clone();
        long.layers = vec![
            Layer {
                object: "k".into(),
                stored: 1,
                sha256: "s".into(),
                crc32c: None,
                pages: 1
            };
            MAX_LAYERS
        ];
        assert!(!is_delta(&plan(&now, Some(&long), since)));
        // Deltas that outweigh the base: stored whole again.
        let mut heavy = old.clone();
        heavy.stored = 100;
        heavy.layers = vec![
            Layer {
                object: "k".into(),
                stored: 60,
                sha256: "s".into(),
                crc32c: None,
                pages: 1
            };
            2
        ];
        assert!(!is_delta(&plan(&now, Some(&heavy), since)));
        heavy.layers.pop();
        assert!(is_delta(&plan(&now, Some(&heavy), since)));
        let segment = relation("base/5/16384.1", 1 << 20, 7, 99);
        assert!(is_delta(&plan(&segment, Some(&segment), since)));
        let pg_control = relation("global/pg_control", 1 << 20, 7, 99);
        assert!(!is_delta(&plan(&pg_control, Some(&pg_control), since)));
    }

    #[test]
    fn deltas_need_checksums_and_a_reference_of_this_unit_and_timeline() {
        let mut reference =
            catalog::tests::record("2026-01-01T00:00:00Z", catalog::BackupKind::Full, true);
        reference.unit = "postgresql/0".into();
        reference.timeline = Some(2);
        reference.start_lsn = Some("0/3000028".into());
        let of = |r: Option<&BackupRecord>, unit, tl, sums| DeltaSince::of(r, unit, tl, sums, None);
        assert_eq!(
            of(Some(&reference), "postgresql/0", 2, true),
            Some(DeltaSince(0x300_0028))
        );
        // Rewound since the reference began (2026-01-01T00:00:00Z is
        // 1767225600): no deltas against it; rewound before: deltas.
        let rewound = |at| DeltaSince::of(Some(&reference), "postgresql/0", 2, true, Some(at));
        assert_eq!(rewound(1_767_225_600), None);
        assert_eq!(rewound(1_767_225_599), Some(DeltaSince(0x300_0028)));
        assert_eq!(of(Some(&reference), "postgresql/1", 2, true), None);
        assert_eq!(of(Some(&reference), "postgresql/0", 3, true), None);
        assert_eq!(of(Some(&reference), "postgresql/0", 2, false), None);
        assert_eq!(of(None, "postgresql/0", 2, true), None);
    }

    #[test]
    fn a_layer_goes_on_top_of_the_references_chain() {
        let mut base = relation("base/5/16384", 1 << 20, 7, 99);
        base.stored = 500;
        let done = upload::Uploaded {
            sha256: "cd".repeat(32),
            crc32c: 1,
            len: 1 << 20,
            stored: 40,
            bad_pages: Vec::new(),
            delta: Some(upload::StoredDelta {
                pages: 3,
                sha256: "ef".repeat(32),
                crc32c: 7,
            }),
        };
        let mut first = relation("base/5/16384", 1 << 20, 7, 99);
        lay_over(
            &mut first,
            &base,
            &ObjectPath::from("backups/b2/data/x.delta.zst"),
            &done,
        );
        assert_eq!(first.object, base.object);
        assert_eq!(first.stored, 500);
        assert_eq!(first.base_sha256, base.sha256);
        assert_eq!(first.layers.len(), 1);
        assert_eq!(first.layers[0].pages, 3);
        assert_eq!(first.layers[0].crc32c.as_deref(), Some("00000007"));
        first.sha256 = Some(done.sha256.clone());

        let mut second = relation("base/5/16384", 1 << 20, 7, 99);
        lay_over(
            &mut second,
            &first,
            &ObjectPath::from("backups/b3/data/x.delta.zst"),
            &done,
        );
        // The base stays the full backup's copy, whatever the layers did.
        assert_eq!(second.base_sha256, base.sha256);
        let objects: Vec<&str> = second.objects().collect();
        assert_eq!(
            objects,
            [
                "backups/b1/data/base/5/16384.zst",
                "backups/b2/data/x.delta.zst",
                "backups/b3/data/x.delta.zst"
            ]
        );
    }

    #[test]
    fn entries_record_their_identity() {
        let entry = walk::Entry {
            path: "base/5/16384".into(),
            kind: Kind::File,
            size: 10,
            mtime: 1,
            mode: 0o600,
            identity: Identity {
                ino: 42,
                birth_ns: Some(7),
            },
        };
        let file = record_of(&entry);
        assert_eq!((file.ino, file.birth_ns), (Some(42), Some(7)));
        let dir = record_of(&walk::Entry {
            kind: Kind::Dir,
            ..entry
        });
        assert_eq!((dir.ino, dir.birth_ns), (None, None));
    }
}
