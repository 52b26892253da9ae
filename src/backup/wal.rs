//! Continuous WAL archiving: what `archive_command` (push) and
//! `restore_command` (fetch) do, and the two commands as postgresql.conf
//! spells them.
//!
//! An archived file is one immutable object, compressed (the suffix says
//! how: `zst`, `lz4` or `raw`) and encrypted when a key is configured, named
//! after the SHA-256 of the file's own bytes:
//!
//! ```text
//! wal/<first 16 chars of the segment>/<segment>-<sha256>.<suffix>   segments (and <segment>.partial)
//! wal/<timeline>.history-<sha256>.<suffix>                          timeline history files
//! wal/<segment>.<offset>.backup-<sha256>.<suffix>                   backup history files
//! ```
//!
//! The name is the same whatever the format, so a segment archived before
//! compression or encryption changed is still "already archived"; an
//! encrypted object that cannot be read (no key, another key, altered) is
//! an error, never "not found".
//!
//! Pushing the same content again succeeds without uploading; different
//! content under a name already archived fails and keeps the first. Should two
//! servers race (both list nothing, both store), the first object stored wins:
//! the loser removes its own object and fails, and fetch picks the same one.
//! Fetch answers "not found" only when the listing succeeded and held nothing;
//! any other failure is retried, then returned as an error.

use std::io::Write as _;
use std::path::Path as FsPath;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use futures::StreamExt as _;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use super::codec::{self, Compression};
use super::repo::Repo;

/// What push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Stored,
    /// The same content was archived before; nothing was uploaded.
    AlreadyArchived,
}

/// What fetch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Found,
    /// The archive answered and holds no file of that name.
    NotFound,
}

/// How often and how patiently fetch retries a failing store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each one.
    pub first_delay: Duration,
}

impl Backoff {
    /// 5 attempts, waiting 2, 4, 8 and 16 s between them (30 s in all).
    pub const STANDARD: Backoff = Backoff {
        attempts: 5,
        first_delay: Duration::from_secs(2),
    };

    /// One attempt: for a standby, which streams instead.
    pub const ONCE: Backoff = Backoff {
        attempts: 1,
        first_delay: Duration::ZERO,
    };

    /// The wait after `failures` failures.
    pub fn delay(&self, failures: u32) -> Duration {
        self.first_delay
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
    }
}

/// Whether `name` is a timeline history file (`<timeline>.history`).
pub fn is_history(name: &str) -> bool {
    name.strip_suffix(".history")
        .is_some_and(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Where the objects for the WAL file `name` live; refuses any name that is
/// not one PostgreSQL archives (so no name can reach outside `wal/`).
fn directory(name: &str) -> Result<Path> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = name.split('.').collect();
    let in_segment_dir = match parts.as_slice() {
        [segment] | [segment, "partial"] if hex(segment, 24) => true,
        [timeline, "history"] if hex(timeline, 8) => false,
        [segment, offset, "backup"] if hex(segment, 24) && hex(offset, 8) => false,
        _ => bail!(
            "{name:?} is not the name of a WAL segment, timeline history or backup history file"
        ),
    };
    Ok(if in_segment_dir {
        Path::from_iter(["wal", &name[..16]])
    } else {
        Path::from("wal")
    })
}

/// The object key of `name` with content hash `sha256`, in the default
/// format (zstd).
pub fn object_key(name: &str, sha256: &str) -> Result<Path> {
    object_key_as(name, sha256, Compression::default())
}

/// The object key of `name` with content hash `sha256`, compressed so.
pub fn object_key_as(name: &str, sha256: &str, compression: Compression) -> Result<Path> {
    Ok(directory(name)?.join(format!("{name}-{sha256}.{}", compression.suffix())))
}

/// One stored object for a WAL file, and the hash its key names.
#[derive(Debug, Clone)]
struct Archived {
    meta: ObjectMeta,
    sha256: String,
}

/// Every object stored for `name`, the first stored first.
async fn archived(repo: &Repo, name: &str) -> Result<Vec<Archived>> {
    let dir = directory(name)?;
    let listing = repo
        .store
        .list_with_delimiter(Some(&dir))
        .await
        .with_context(|| format!("cannot list {dir} in the repository"))?;
    let lead = format!("{name}-");
    let mut found: Vec<Archived> = listing
        .objects
        .into_iter()
        .filter_map(|meta| {
            let file = meta.location.filename()?;
            let sha = Compression::strip_suffix(file.strip_prefix(&lead)?)?;
            let sha256 = codec::is_sha256_hex(sha).then(|| sha.to_owned())?;
            Some(Archived { meta, sha256 })
        })
        .collect();
    found.sort_by(|a, b| {
        (a.meta.last_modified, &a.meta.location).cmp(&(b.meta.last_modified, &b.meta.location))
    });
    Ok(found)
}

fn conflict(name: &str, archived: &str, ours: &str) -> anyhow::Error {
    anyhow!(
        "{name} is already archived with sha256 {archived} but this server's copy has sha256 \
         {ours}: another server wrote a different history under this name; the archived copy \
         is kept"
    )
}

/// Archives the WAL file at `file` (archive_command's `%p`).
pub async fn push(repo: &Repo, file: &FsPath) -> Result<Pushed> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", file.display()))?
        .to_owned();
    directory(&name)?;
    let source = file.to_owned();
    let format = repo.format.clone();
    let (packed, digest) = tokio::task::spawn_blocking(move || {
        let reader = std::fs::File::open(&source)
            .with_context(|| format!("cannot open {}", source.display()))?;
        format
            .write_to_vec(std::io::BufReader::with_capacity(1 << 20, reader))
            .with_context(|| format!("cannot compress {}", source.display()))
    })
    .await
    .context("the compression task failed")??;

    let before = archived(repo, &name).await?;
    // A partial segment is the end of a timeline that a promotion left
    // behind; recovery never reads one, and two restores from the same point
    // may each leave their own copy, so copies sit side by side.
    let partial = name.ends_with(".partial");
    if before.iter().any(|a| a.sha256 == digest.sha256) {
        return Ok(Pushed::AlreadyArchived);
    }
    if let Some(first) = before.first().filter(|_| !partial) {
        return if first.sha256 == digest.sha256 {
            Ok(Pushed::AlreadyArchived)
        } else {
            Err(conflict(&name, &first.sha256, &digest.sha256))
        };
    }

    let key = object_key_as(&name, &digest.sha256, repo.format.compression)?;
    let payload = PutPayload::from(packed);
    let created = repo
        .store
        .put_opts(&key, payload.clone(), PutOptions::from(PutMode::Create))
        .await;
    match created {
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(object_store::Error::NotImplemented { .. }) => {
            // A store without conditional writes: same key, same content.
            repo.store
                .put(&key, payload)
                .await
                .with_context(|| format!("cannot store {key}"))?;
        }
        Err(err) => return Err(err).with_context(|| format!("cannot store {key}")),
    }

    // Another server may have stored a different copy since we listed.
    let after = archived(repo, &name).await?;
    match after.first() {
        Some(first) if first.sha256 != digest.sha256 && !partial => {
            let _ = repo.store.delete(&key).await;
            Err(conflict(&name, &first.sha256, &digest.sha256))
        }
        Some(_) => Ok(Pushed::Stored),
        None => bail!("{key} was stored but the repository does not list it"),
    }
}

/// Restores the archived WAL file `name` to `dest` (restore_command's `%f`
/// and `%p`), retrying any failure but "not in the archive".
pub async fn fetch(repo: &Repo, name: &str, dest: &FsPath, backoff: &Backoff) -> Result<Fetched> {
    directory(name)?;
    let mut failures = 0;
    loop {
        match fetch_once(repo, name, dest).await {
            Ok(fetched) => return Ok(fetched),
            // Read whole but not readable as stored (no key, another key,
            // altered): asking again cannot help.
            Err(err) if unreadable(&err) => return Err(err),
            Err(err) => {
                failures += 1;
                if failures >= backoff.attempts {
                    return Err(err.context(format!("gave up after {failures} attempts")));
                }
                tokio::time::sleep(backoff.delay(failures)).await;
            }
        }
    }
}

/// Whether `err` says the stored bytes themselves are wrong for this
/// reader (the cipher's and decoders' invalid-data errors).
fn unreadable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
    })
}

async fn fetch_once(repo: &Repo, name: &str, dest: &FsPath) -> Result<Fetched> {
    let Some(chosen) = archived(repo, name).await?.into_iter().next() else {
        return Ok(Fetched::NotFound);
    };
    let key = &chosen.meta.location;
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => FsPath::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".wal-fetch-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut out = repo.format.reader(key.as_ref(), tmp)?;
    let mut body = repo
        .store
        .get(key)
        .await
        .with_context(|| format!("cannot download {key}"))?
        .into_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("cannot download {key}"))?;
        out.write_all(&chunk)
            .with_context(|| format!("cannot read {key} into {}", dir.display()))?;
    }
    let (tmp, digest) = out.finish().with_context(|| format!("cannot read {key}"))?;
    if digest.sha256 != chosen.sha256 {
        bail!(
            "{key} is corrupt: its content has sha256 {} but its name says {}",
            digest.sha256,
            chosen.sha256
        );
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", dest.display()))?;
    tmp.persist(dest)
        .with_context(|| format!("cannot move the restored file to {}", dest.display()))?;
    Ok(Fetched::Found)
}

/// A word for `sh`, in single quotes, with `%` doubled for PostgreSQL's
/// placeholder expansion.
fn shell_word(path: &FsPath) -> String {
    let text = path.to_string_lossy().replace('%', "%%");
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// archive_command: `'<bin>' wal-push --settings '<file>' %p`.
pub fn archive_command(charm_bin: &FsPath, settings: &FsPath) -> String {
    format!(
        "{} wal-push --settings {} %p",
        shell_word(charm_bin),
        shell_word(settings)
    )
}

/// restore_command: `'<bin>' wal-fetch --settings '<file>' %f %p`, with
/// `--history-from '<file>'` when history files are also looked up in a
/// second repository.
pub fn restore_command(
    charm_bin: &FsPath,
    settings: &FsPath,
    history_from: Option<&FsPath>,
) -> String {
    let also = history_from
        .map(|file| format!(" --history-from {}", shell_word(file)))
        .unwrap_or_default();
    format!(
        "{} wal-fetch --settings {}{also} %f %p",
        shell_word(charm_bin),
        shell_word(settings)
    )
}

/// A standby's restore_command: [`restore_command`] with `--standby`, which
/// answers "not in the archive" for any failure, so the standby streams.
pub fn standby_restore_command(charm_bin: &FsPath, settings: &FsPath) -> String {
    format!(
        "{} wal-fetch --settings {} --standby %f %p",
        shell_word(charm_bin),
        shell_word(settings)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures::future::BoxFuture;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectStore,
        PutMultipartOptions, PutResult,
    };

    use super::*;

    const SEGMENT: &str = "000000010000000A000000FE";
    const QUICK: Backoff = Backoff {
        attempts: 3,
        first_delay: Duration::from_millis(1),
    };

    use crate::backup::testing::run;

    fn wal_file(dir: &FsPath, name: &str, seed: u8) -> (std::path::PathBuf, Vec<u8>) {
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i % 97) as u8 ^ seed).collect();
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    fn keys(store: &InMemory) -> Vec<String> {
        run(async {
            let mut all: Vec<String> = store
                .list(None)
                .map(|m| m.unwrap().location.to_string())
                .collect()
                .await;
            all.sort();
            all
        })
    }

    #[test]
    fn push_then_fetch_round_trips_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(InMemory::new());
        let repo = Repo::new(store.clone());
        let (path, bytes) = wal_file(dir.path(), SEGMENT, 0);
        assert_eq!(run(push(&repo, &path)).unwrap(), Pushed::Stored);
        let sha = codec::sha256_hex(&bytes);
        assert_eq!(
            keys(&store),
            vec![format!("wal/000000010000000A/{SEGMENT}-{sha}.zst")]
        );

        let dest = dir.path().join("RECOVERYXLOG");
        let fetched = run(fetch(&repo, SEGMENT, &dest, &QUICK)).unwrap();
        assert_eq!(fetched, Fetched::Found);
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn history_files_live_directly_under_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(InMemory::new());
        let repo = Repo::new(store.clone());
        let (path, bytes) = wal_file(dir.path(), "00000002.history", 3);
        run(push(&repo, &path)).unwrap();
        let sha = codec::sha256_hex(&bytes);
        assert_eq!(
            keys(&store),
            vec![format!("wal/00000002.history-{sha}.zst")]
        );
        let dest = dir.path().join("restored");
        assert_eq!(
            run(fetch(&repo, "00000002.history", &dest, &QUICK)).unwrap(),
            Fetched::Found
        );
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        // A history file's name is not the prefix of a segment's, nor the reverse.
        assert_eq!(
            run(fetch(&repo, "00000003.history", &dest, &QUICK)).unwrap(),
            Fetched::NotFound
        );
    }

    #[test]
    fn pushing_the_same_segment_twice_succeeds_without_a_second_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(InMemory::new());
        let repo = Repo::new(store.clone());
        let (path, _) = wal_file(dir.path(), SEGMENT, 0);
        assert_eq!(run(push(&repo, &path)).unwrap(), Pushed::Stored);
        assert_eq!(run(push(&repo, &path)).unwrap(), Pushed::AlreadyArchived);
        assert_eq!(keys(&store).len(), 1);
    }

    #[test]
    fn a_different_segment_under_an_archived_name_fails_and_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let store = Arc::new(InMemory::new());
        let repo = Repo::new(store.clone());
        let (first, first_bytes) = wal_file(dir.path(), SEGMENT, 0);
        let (second, second_bytes) = wal_file(other.path(), SEGMENT, 1);
        run(push(&repo, &first)).unwrap();
        let err = run(push(&repo, &second)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(SEGMENT), "{text}");
        assert!(text.contains(&codec::sha256_hex(&first_bytes)), "{text}");
        assert!(text.contains(&codec::sha256_hex(&second_bytes)), "{text}");
        assert_eq!(keys(&store).len(), 1);
        let dest = dir.path().join("back");
        run(fetch(&repo, SEGMENT, &dest, &QUICK)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), first_bytes);
    }

    #[test]
    fn partial_segments_from_two_promotions_are_both_kept() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let store = Arc::new(InMemory::new());
        let repo = Repo::new(store.clone());
        let name = format!("{SEGMENT}.partial");
        let (first, _) = wal_file(dir.path(), &name, 0);
        let (second, _) = wal_file(other.path(), &name, 1);
        assert!(matches!(run(push(&repo, &first)).unwrap(), Pushed::Stored));
        assert!(matches!(run(push(&repo, &second)).unwrap(), Pushed::Stored));
        assert!(matches!(
            run(push(&repo, &second)).unwrap(),
            Pushed::AlreadyArchived
        ));
        assert_eq!(keys(&store).len(), 2);
    }

    #[test]
    fn a_racing_writer_loses_to_the_first_object_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Flaky::new(0));
        let repo = Repo::new(store.clone());
        // Another server stores its copy after our listing, before our write
        // (its hash also sorts first should the two timestamps tie).
        let theirs = object_key(SEGMENT, &"0".repeat(64)).unwrap();
        *store.before_put.lock().unwrap() = Some(theirs.clone());
        let (path, _) = wal_file(dir.path(), SEGMENT, 0);
        let err = run(push(&repo, &path)).unwrap_err();
        assert!(format!("{err:#}").contains(&"0".repeat(64)), "{err:#}");
        assert_eq!(keys(&store.inner), vec![theirs.to_string()]);
    }

    #[test]
    fn an_absent_name_is_not_found_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(Arc::new(InMemory::new()));
        let dest = dir.path().join("RECOVERYXLOG");
        let fetched = run(fetch(&repo, SEGMENT, &dest, &QUICK)).unwrap();
        assert_eq!(fetched, Fetched::NotFound);
        assert!(!dest.exists());
    }

    #[test]
    fn names_that_are_not_wal_files_are_refused() {
        let repo = Repo::new(Arc::new(InMemory::new()));
        let dest = FsPath::new("/nonexistent/x");
        for name in [
            "../../etc",
            "000000010000000A",
            "backup_label",
            "0000000G.history",
        ] {
            assert!(run(fetch(&repo, name, dest, &QUICK)).is_err(), "{name}");
        }
        assert!(object_key("000000010000000A000000FE.00000028.backup", "x").is_ok());
        assert!(object_key("000000010000000A000000FE.partial", "x").is_ok());
    }

    #[test]
    fn a_corrupt_object_fails_fetch_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(InMemory::new());
        let repo = Repo::new(store.clone());
        let (path, bytes) = wal_file(dir.path(), SEGMENT, 0);
        run(push(&repo, &path)).unwrap();
        let key = object_key(SEGMENT, &codec::sha256_hex(&bytes)).unwrap();
        let (wrong, _) = codec::compress_to_vec(&b"other content"[..]).unwrap();
        run(store.put(&key, PutPayload::from(wrong))).unwrap();

        let dest = dir.path().join("RECOVERYXLOG");
        let err = run(fetch(&repo, SEGMENT, &dest, &QUICK)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("is corrupt"), "{text}");
        assert!(!dest.exists());
    }

    /// A store that fails its first `failures` calls, then is `InMemory`.
    #[derive(Debug)]
    pub(crate) struct Flaky {
        inner: InMemory,
        pub(crate) failures: AtomicUsize,
        pub(crate) calls: AtomicUsize,
        /// An object another server stores just before our next put.
        before_put: std::sync::Mutex<Option<Path>>,
    }

    impl Flaky {
        pub(crate) fn new(failures: usize) -> Self {
            Self {
                inner: InMemory::new(),
                failures: AtomicUsize::new(failures),
                calls: AtomicUsize::new(0),
                before_put: Default::default(),
            }
        }

        fn check(&self) -> object_store::Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let left = self.failures.load(Ordering::SeqCst);
            if left == 0 {
                return Ok(());
            }
            self.failures.store(left - 1, Ordering::SeqCst);
            Err(object_store::Error::Generic {
                store: "flaky",
                source: "connection refused".into(),
            })
        }
    }

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Flaky")
        }
    }

    type Fut<'a, T> = BoxFuture<'a, object_store::Result<T>>;

    impl ObjectStore for Flaky {
        fn put_opts<'l0, 'l1, 'a>(
            &'l0 self,
            location: &'l1 Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> Fut<'a, PutResult>
        where
            'l0: 'a,
            'l1: 'a,
            Self: 'a,
        {
            let racer = self.before_put.lock().unwrap().take();
            Box::pin(async move {
                self.check()?;
                if let Some(racer) = racer {
                    self.inner.put(&racer, PutPayload::from(vec![1])).await?;
                }
                self.inner.put_opts(location, payload, opts).await
            })
        }

        fn put_multipart_opts<'l0, 'l1, 'a>(
            &'l0 self,
            location: &'l1 Path,
            opts: PutMultipartOptions,
        ) -> Fut<'a, Box<dyn MultipartUpload>>
        where
            'l0: 'a,
            'l1: 'a,
            Self: 'a,
        {
            Box::pin(async move {
                self.check()?;
                self.inner.put_multipart_opts(location, opts).await
            })
        }

        fn get_opts<'l0, 'l1, 'a>(
            &'l0 self,
            location: &'l1 Path,
            options: GetOptions,
        ) -> Fut<'a, GetResult>
        where
            'l0: 'a,
            'l1: 'a,
            Self: 'a,
        {
            Box::pin(async move {
                self.check()?;
                self.inner.get_opts(location, options).await
            })
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            match self.check() {
                Ok(()) => self.inner.delete_stream(locations),
                Err(err) => futures::stream::once(async { Err(err) }).boxed(),
            }
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            match self.check() {
                Ok(()) => self.inner.list(prefix),
                Err(err) => futures::stream::once(async { Err(err) }).boxed(),
            }
        }

        fn list_with_delimiter<'l0, 'l1, 'a>(
            &'l0 self,
            prefix: Option<&'l1 Path>,
        ) -> Fut<'a, ListResult>
        where
            'l0: 'a,
            'l1: 'a,
            Self: 'a,
        {
            Box::pin(async move {
                self.check()?;
                self.inner.list_with_delimiter(prefix).await
            })
        }

        fn copy_opts<'l0, 'l1, 'l2, 'a>(
            &'l0 self,
            from: &'l1 Path,
            to: &'l2 Path,
            options: CopyOptions,
        ) -> Fut<'a, ()>
        where
            'l0: 'a,
            'l1: 'a,
            'l2: 'a,
            Self: 'a,
        {
            Box::pin(async move {
                self.check()?;
                self.inner.copy_opts(from, to, options).await
            })
        }
    }

    #[test]
    fn a_failing_store_is_an_error_after_every_attempt_never_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Flaky::new(usize::MAX));
        let repo = Repo::new(store.clone());
        let dest = dir.path().join("RECOVERYXLOG");
        let err = run(fetch(&repo, SEGMENT, &dest, &QUICK)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("gave up after 3 attempts"), "{text}");
        assert!(text.contains("connection refused"), "{text}");
        assert_eq!(store.calls.load(Ordering::SeqCst), 3);
        assert!(!dest.exists());
    }

    #[test]
    fn a_store_that_recovers_within_the_attempts_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Flaky::new(0));
        let repo = Repo::new(store.clone());
        let (path, bytes) = wal_file(dir.path(), SEGMENT, 0);
        run(push(&repo, &path)).unwrap();
        store.failures.store(2, Ordering::SeqCst);
        let dest = dir.path().join("RECOVERYXLOG");
        let fetched = run(fetch(&repo, SEGMENT, &dest, &QUICK)).unwrap();
        assert_eq!(fetched, Fetched::Found);
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    }

    #[test]
    fn backoff_doubles_to_about_thirty_seconds() {
        let b = Backoff::STANDARD;
        let total: Duration = (1..b.attempts).map(|f| b.delay(f)).sum();
        assert_eq!(total, Duration::from_secs(30));
    }

    #[test]
    fn commands_quote_paths_for_the_shell_and_for_placeholders() {
        let cmd = archive_command(
            FsPath::new("/var/lib/juju/agents/unit-postgresql-0/charm/bin/postgresql-charm"),
            FsPath::new("/var/snap/it's 100%/repository.json"),
        );
        assert_eq!(
            cmd,
            "'/var/lib/juju/agents/unit-postgresql-0/charm/bin/postgresql-charm' wal-push \
             --settings '/var/snap/it'\\''s 100%%/repository.json' %p"
        );
        let cmd = restore_command(FsPath::new("/bin/charm"), FsPath::new("/s.json"), None);
        assert_eq!(cmd, "'/bin/charm' wal-fetch --settings '/s.json' %f %p");
        let cmd = restore_command(
            FsPath::new("/bin/charm"),
            FsPath::new("/s.json"),
            Some(FsPath::new("/own.json")),
        );
        assert_eq!(
            cmd,
            "'/bin/charm' wal-fetch --settings '/s.json' --history-from '/own.json' %f %p"
        );
        assert!(is_history("0000000A.history") && !is_history("0000000A.history.partial"));
        assert!(!is_history("000000010000000000000001"));
    }
}
