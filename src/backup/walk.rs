//! What a physical backup copies from a data directory: every file,
//! directory and link, minus what PostgreSQL recreates or must not see
//! again (the exclusions of pg_basebackup and the other engines: WAL,
//! runtime state, temporary and unlogged relations, leftover backup and
//! recovery files). Tablespace links in `pg_tblspc` are listed with their
//! target and followed. `global/pg_control` comes last. Files that vanish
//! while the walk runs (PostgreSQL drops files during a backup) are skipped.
//!
//! Pure listing: nothing is read or copied here.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};

/// What an entry is in the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A link kept as a link; for a tablespace, its contents follow it in
    /// the walk under the link's own path (`pg_tblspc/<oid>/...`).
    Symlink {
        target: PathBuf,
    },
}

/// One thing a backup must restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the data directory, through tablespace links; the file
    /// to read is `data_dir.join(path)`.
    pub path: PathBuf,
    pub kind: Kind,
    /// Bytes at the time of the walk (0 for directories and links); the
    /// copy may read more or fewer if PostgreSQL writes meanwhile.
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Which file this is, beyond its name: a page-level delta is taken
    /// only against the reference's copy of the same file.
    pub identity: Identity,
}

/// A file's inode number and birth time (nanoseconds since the epoch,
/// where the filesystem keeps it). A name taken again by a new file (a
/// relation's file number reused, a database copied file by file) shows
/// another inode or a later birth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identity {
    pub ino: u64,
    pub birth_ns: Option<u64>,
}

impl Identity {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        let birth_ns = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| u64::try_from(d.as_nanos()).ok());
        Self {
            ino: meta.ino(),
            birth_ns,
        }
    }
}

/// Top-level files never copied: runtime state, leftovers of an earlier
/// backup or recovery, and files being rewritten.
const SKIPPED_AT_ROOT: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "recovery.signal",
    "standby.signal",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "backup_manifest",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
];

/// Top-level directories kept empty: PostgreSQL recreates their contents.
const EMPTIED_AT_ROOT: &[&str] = &[
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];

const PG_CONTROL: &str = "global/pg_control";

/// Lists what a backup of `data_dir` copies, in a deterministic order
/// (depth first, names sorted bytewise, `global/pg_control` last).
pub fn walk(data_dir: &Path) -> Result<Vec<Entry>> {
    if !data_dir.join("PG_VERSION").is_file() {
        bail!(
            "{} is not a postgresql data directory (no PG_VERSION)",
            data_dir.display()
        );
    }
    let mut walker = Walker::default();
    walker.dir(data_dir, Path::new(""))?;
    let Some(control) = walker.pg_control.take() else {
        bail!("{} has no {PG_CONTROL}", data_dir.display());
    };
    walker.out.push(control);
    Ok(walker.out)
}

#[derive(Default)]
struct Walker {
    out: Vec<Entry>,
    pg_control: Option<Entry>,
}

/// How a directory's children are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Root,
    /// `pg_tblspc`: links here are tablespaces, followed.
    Tablespaces,
    /// `base/<oid>` or `pg_tblspc/<oid>/<version>/<oid>`: relation files.
    Database,
    Other,
}

impl Place {
    fn of(rel: &Path) -> Self {
        let parts: Vec<&OsStr> = rel.iter().collect();
        let digits = |s: &OsStr| is_digits(s.as_bytes());
        match parts.as_slice() {
            [] => Self::Root,
            [t] if *t == "pg_tblspc" => Self::Tablespaces,
            [b, db] if *b == "base" && digits(db) => Self::Database,
            [t, spc, _, db] if *t == "pg_tblspc" && digits(spc) && digits(db) => Self::Database,
            _ => Self::Other,
        }
    }
}

/// What happens to one name found in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Skip,
    Copy,
    /// A directory listed without its contents.
    Empty,
    /// `pg_wal`: listed empty but for an empty `archive_status`.
    Wal,
}

fn rule(place: Place, name: &OsStr, siblings: &HashSet<&OsStr>) -> Rule {
    let bytes = name.as_bytes();
    if bytes.starts_with(b"pgsql_tmp") || bytes.starts_with(b"pg_internal.init") {
        return Rule::Skip;
    }
    match place {
        Place::Root if SKIPPED_AT_ROOT.iter().any(|s| name == *s) => Rule::Skip,
        Place::Root if EMPTIED_AT_ROOT.iter().any(|s| name == *s) => Rule::Empty,
        Place::Root if name == "pg_wal" => Rule::Wal,
        Place::Database if is_temp_relation(bytes) => Rule::Skip,
        Place::Database => match relation_file(bytes) {
            Some((node, fork)) if fork != Fork::Init => {
                let mut init = node.to_vec();
                init.extend_from_slice(b"_init");
                if siblings.contains(OsStr::from_bytes(&init)) {
                    Rule::Skip // an unlogged relation: only its init fork
                } else {
                    Rule::Copy
                }
            }
            _ => Rule::Copy,
        },
        _ => Rule::Copy,
    }
}

impl Walker {
    /// Walks the directory at `abs` (shown as `rel`); nothing if it vanished.
    fn dir(&mut self, abs: &Path, rel: &Path) -> Result<()> {
        let names = match list(abs)? {
            Some(names) => names,
            None => return Ok(()),
        };
        self.names(abs, rel, &names)
    }

    /// Walks the children `names` of `abs`, as listed a moment ago.
    fn names(&mut self, abs: &Path, rel: &Path, names: &[OsString]) -> Result<()> {
        let place = Place::of(rel);
        let siblings: HashSet<&OsStr> = names.iter().map(OsString::as_os_str).collect();
        for name in names {
            let rule = rule(place, name, &siblings);
            if rule == Rule::Skip {
                continue;
            }
            let (abs, rel) = (abs.join(name), rel.join(name));
            let Some(meta) = vanishable(std::fs::symlink_metadata(&abs), &abs)? else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_symlink() {
                self.link(&abs, rel, &meta, place, rule)?;
            } else if ft.is_dir() {
                self.out.push(entry(rel.clone(), Kind::Dir, &meta));
                self.contents(&abs, &rel, &meta, rule)?;
            } else if ft.is_file() {
                let file = entry(rel, Kind::File, &meta);
                if file.path == Path::new(PG_CONTROL) {
                    self.pg_control = Some(file);
                } else {
                    self.out.push(file);
                }
            } else {
                tracing::warn!("skipping special file {}", abs.display());
            }
        }
        Ok(())
    }

    /// A directory's contents, as its rule says.
    fn contents(
        &mut self,
        abs: &Path,
        rel: &Path,
        meta: &std::fs::Metadata,
        rule: Rule,
    ) -> Result<()> {
        match rule {
            Rule::Copy => self.dir(abs, rel),
            Rule::Wal => {
                let status = abs.join("archive_status");
                let status_meta = vanishable(std::fs::metadata(&status), &status)?;
                let meta = status_meta.as_ref().unwrap_or(meta);
                self.out
                    .push(entry(rel.join("archive_status"), Kind::Dir, meta));
                Ok(())
            }
            Rule::Empty | Rule::Skip => Ok(()),
        }
    }

    /// A link: tablespaces (and a linked `pg_wal`) are followed, any other
    /// link is kept as it is.
    fn link(
        &mut self,
        abs: &Path,
        rel: PathBuf,
        meta: &std::fs::Metadata,
        place: Place,
        rule: Rule,
    ) -> Result<()> {
        if rule == Rule::Wal {
            // A pg_wal elsewhere (initdb --waldir) is restored as a directory.
            let Some(target) = vanishable(std::fs::metadata(abs), abs)? else {
                return Ok(());
            };
            self.out.push(entry(rel.clone(), Kind::Dir, &target));
            return self.contents(abs, &rel, &target, rule);
        }
        let Some(target) = vanishable(std::fs::read_link(abs), abs)? else {
            return Ok(());
        };
        self.out
            .push(entry(rel.clone(), Kind::Symlink { target }, meta));
        if place != Place::Tablespaces {
            return Ok(());
        }
        let Some(target) = vanishable(std::fs::metadata(abs), abs)? else {
            return Ok(()); // dropped while the backup runs: WAL replays the drop
        };
        if !target.is_dir() {
            bail!(
                "the tablespace link {} does not point to a directory",
                abs.display()
            );
        }
        self.dir(abs, &rel)
    }
}

fn entry(path: PathBuf, kind: Kind, meta: &std::fs::Metadata) -> Entry {
    let size = if kind == Kind::File { meta.len() } else { 0 };
    Entry {
        path,
        kind,
        size,
        mtime: meta.mtime(),
        mode: meta.mode() & 0o7777,
        identity: Identity::of(meta),
    }
}

/// The names in a directory, sorted bytewise; None if it vanished.
fn list(abs: &Path) -> Result<Option<Vec<OsString>>> {
    let Some(read) = vanishable(std::fs::read_dir(abs), abs)? else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for item in read {
        match vanishable(item, abs)? {
            Some(item) => names.push(item.file_name()),
            None => continue,
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(Some(names))
}

/// A file system result where "not found" means the file was dropped
/// meanwhile (None); any other error names the path.
fn vanishable<T>(result: std::io::Result<T>, path: &Path) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fork {
    Main,
    Fsm,
    Vm,
    Init,
}

/// `<relfilenode>[_<fork>][.<segment>]` → the relfilenode and the fork.
fn relation_file(name: &[u8]) -> Option<(&[u8], Fork)> {
    let node_len = name.iter().take_while(|b| b.is_ascii_digit()).count();
    if node_len == 0 {
        return None;
    }
    let (node, mut rest) = name.split_at(node_len);
    let mut fork = Fork::Main;
    for (suffix, f) in [
        (&b"_fsm"[..], Fork::Fsm),
        (b"_vm", Fork::Vm),
        (b"_init", Fork::Init),
    ] {
        if let Some(after) = rest.strip_prefix(suffix) {
            (fork, rest) = (f, after);
            break;
        }
    }
    match rest {
        [] => Some((node, fork)),
        [b'.', segment @ ..] if is_digits(segment) => Some((node, fork)),
        _ => None,
    }
}

/// `t<backend>_<relfilenode>[_<fork>][.<segment>]`: a temporary relation.
fn is_temp_relation(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b"t") else {
        return false;
    };
    let backend = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    backend > 0
        && rest[backend..]
            .strip_prefix(b"_")
            .is_some_and(|file| relation_file(file).is_some())
}

fn is_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

/// True when `path` is a plain relative path (no root, `.` or `..`), as
/// every entry's is.
pub fn is_plain_relative(path: &Path) -> bool {
    path.components().next().is_some()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A data directory with one of everything the rules care about.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let file = |rel: &str, body: &[u8]| {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        };
        // Kept: the ordinary files. Dropped: runtime state, leftovers, WAL,
        // temporary files, an unlogged relation's main/fsm/vm forks (16400),
        // temporary relations. `global/t3_16500` and `pg_logical/16400`
        // only look like relations: they are outside a database directory.
        let fixture = "
            PG_VERSION postgresql.conf postgresql.auto.conf postmaster.pid
            postmaster.opts recovery.signal standby.signal backup_label
            backup_label.old tablespace_map backup_manifest
            postgresql.auto.conf.tmp global/pg_control global/1262
            global/pg_internal.init pg_wal/000000010000000000000001
            pg_wal/archive_status/000000010000000000000001.done
            pg_replslot/slot1/state pg_dynshmem/mmap.1 pg_notify/0000
            pg_serial/0000 pg_snapshots/00000003-1 pg_stat_tmp/global.stat
            pg_subtrans/0000 pg_xact/0000 base/5/1259 base/5/1259_fsm
            base/5/1259_vm base/5/1259.1 base/5/pg_internal.init
            base/5/pgsql_tmp12.3 base/pgsql_tmp/pgsql_tmp99.0
            base/5/16400 base/5/16400.1 base/5/16400_fsm base/5/16400_vm
            base/5/16400_init base/5/t3_16500 base/5/t3_16500_fsm
            base/5/t3_16500.2 base/5/t12_16501_init global/t3_16500
            pg_logical/16400 pg_logical/16400_init";
        for rel in fixture.split_whitespace() {
            file(rel, rel.as_bytes());
        }
        std::fs::create_dir(d.join("pg_tblspc")).unwrap();
        dir
    }

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.path.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_exclusion_rule() {
        let dir = tree();
        let got = paths(&walk(dir.path()).unwrap());
        let want = "
            PG_VERSION base base/5 base/5/1259 base/5/1259.1 base/5/1259_fsm
            base/5/1259_vm base/5/16400_init global global/1262
            global/t3_16500 pg_dynshmem pg_logical pg_logical/16400
            pg_logical/16400_init pg_notify pg_replslot pg_serial
            pg_snapshots pg_stat_tmp pg_subtrans pg_tblspc pg_wal
            pg_wal/archive_status pg_xact pg_xact/0000 postgresql.auto.conf
            postgresql.conf global/pg_control";
        let want: Vec<&str> = want.split_whitespace().collect();
        assert_eq!(got, want);
    }

    #[test]
    fn entries_carry_kind_size_mtime_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tree();
        let conf = dir.path().join("postgresql.conf");
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
        let entries = walk(dir.path()).unwrap();
        let e = entries
            .iter()
            .find(|e| e.path == Path::new("postgresql.conf"))
            .unwrap();
        assert_eq!(e.kind, Kind::File);
        assert_eq!(e.size, "postgresql.conf".len() as u64);
        assert_eq!(e.mode, 0o640);
        assert_eq!(e.mtime, std::fs::metadata(&conf).unwrap().mtime());
        let wal = entries
            .iter()
            .find(|e| e.path == Path::new("pg_wal"))
            .unwrap();
        assert_eq!((wal.kind.clone(), wal.size), (Kind::Dir, 0));
        assert!(entries.iter().all(|e| is_plain_relative(&e.path)));
    }

    #[test]
    fn a_name_taken_again_is_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("16384");
        std::fs::write(&path, b"first").unwrap();
        let first = Identity::of(&std::fs::metadata(&path).unwrap());
        assert_eq!(first, Identity::of(&std::fs::metadata(&path).unwrap()));
        // Another file under the same name, the first still open so that
        // its inode cannot be handed out again at once.
        let _held = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"first").unwrap();
        assert_ne!(first, Identity::of(&std::fs::metadata(&path).unwrap()));
    }

    #[test]
    fn the_order_is_deterministic_with_pg_control_last() {
        let dir = tree();
        let first = walk(dir.path()).unwrap();
        assert_eq!(first, walk(dir.path()).unwrap());
        assert_eq!(first.last().unwrap().path, Path::new(PG_CONTROL));
    }

    #[test]
    fn tablespaces_are_followed_and_other_links_kept() {
        let dir = tree();
        let space = tempfile::tempdir().unwrap();
        let version = space.path().join("PG_15_202209061/16390");
        std::fs::create_dir_all(&version).unwrap();
        for name in ["17000", "17001", "17001_init", "t4_17002", "pgsql_tmp7.1"] {
            std::fs::write(version.join(name), b"x").unwrap();
        }
        symlink(space.path(), dir.path().join("pg_tblspc/16389")).unwrap();
        symlink("/etc/hostname", dir.path().join("linked.conf")).unwrap();
        let entries = walk(dir.path()).unwrap();
        let link = entries
            .iter()
            .find(|e| e.path == Path::new("pg_tblspc/16389"))
            .unwrap();
        assert_eq!(
            link.kind,
            Kind::Symlink {
                target: space.path().to_owned()
            }
        );
        let inside: Vec<String> = paths(&entries)
            .into_iter()
            .filter(|p| p.starts_with("pg_tblspc/"))
            .collect();
        assert_eq!(
            inside,
            [
                "pg_tblspc/16389",
                "pg_tblspc/16389/PG_15_202209061",
                "pg_tblspc/16389/PG_15_202209061/16390",
                "pg_tblspc/16389/PG_15_202209061/16390/17000",
                "pg_tblspc/16389/PG_15_202209061/16390/17001_init",
            ]
        );
        let other = entries
            .iter()
            .find(|e| e.path == Path::new("linked.conf"))
            .unwrap();
        assert_eq!(
            other.kind,
            Kind::Symlink {
                target: "/etc/hostname".into()
            }
        );
    }

    #[test]
    fn a_linked_pg_wal_is_an_empty_directory() {
        let dir = tree();
        let wal = tempfile::tempdir().unwrap();
        std::fs::create_dir(wal.path().join("archive_status")).unwrap();
        std::fs::write(wal.path().join("000000010000000000000002"), b"x").unwrap();
        std::fs::remove_dir_all(dir.path().join("pg_wal")).unwrap();
        symlink(wal.path(), dir.path().join("pg_wal")).unwrap();
        let entries = walk(dir.path()).unwrap();
        let got: Vec<(String, Kind)> = entries
            .iter()
            .filter(|e| e.path.starts_with("pg_wal"))
            .map(|e| (e.path.to_string_lossy().into_owned(), e.kind.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("pg_wal".to_owned(), Kind::Dir),
                ("pg_wal/archive_status".to_owned(), Kind::Dir)
            ]
        );
    }

    #[test]
    fn non_utf8_names_are_kept_byte_for_byte() {
        let dir = tree();
        let name = OsStr::from_bytes(b"caf\xe9.conf");
        std::fs::write(dir.path().join(name), b"x").unwrap();
        let entries = walk(dir.path()).unwrap();
        assert!(entries.iter().any(|e| e.path.as_os_str() == name));
    }

    #[test]
    fn files_that_vanish_are_skipped() {
        let dir = tree();
        let d = dir.path();
        // Listed a moment ago, gone now: a file, a directory, a tablespace.
        let names: Vec<OsString> = ["PG_VERSION", "gone-file", "gone-dir"]
            .iter()
            .map(OsString::from)
            .collect();
        let mut walker = Walker::default();
        walker.names(d, Path::new(""), &names).unwrap();
        assert_eq!(paths(&walker.out), ["PG_VERSION"]);
        walker
            .dir(&d.join("base/77"), Path::new("base/77"))
            .unwrap();
        assert_eq!(walker.out.len(), 1);
        symlink(d.join("dropped"), d.join("pg_tblspc/16999")).unwrap();
        let entries = walk(d).unwrap();
        assert!(entries
            .iter()
            .any(|e| e.path == Path::new("pg_tblspc/16999")));
        let under = |e: &&Entry| e.path.starts_with("pg_tblspc/16999");
        assert_eq!(entries.iter().filter(under).count(), 1, "only the link");
    }

    #[test]
    fn a_walk_survives_files_dropped_while_it_runs() {
        let dir = tree();
        let db = dir.path().join("base/5");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let dir = db.join(format!("d{}", i % 50));
                    let _ = std::fs::create_dir(&dir);
                    let _ = std::fs::write(dir.join("f"), b"x");
                    let _ = std::fs::write(db.join(format!("{}", 20000 + i % 500)), b"x");
                    let _ = std::fs::remove_file(db.join(format!("{}", 20000 + (i + 250) % 500)));
                    let _ = std::fs::remove_dir_all(db.join(format!("d{}", (i + 25) % 50)));
                    i += 1;
                }
            })
        };
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(300) {
            walk(dir.path()).expect("a dropped file is not an error");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
    }

    #[test]
    fn other_io_errors_name_the_path() {
        let dir = tree();
        // A tablespace link to a file, and one to itself.
        symlink(
            dir.path().join("PG_VERSION"),
            dir.path().join("pg_tblspc/1"),
        )
        .unwrap();
        let err = format!("{:#}", walk(dir.path()).unwrap_err());
        assert!(
            err.contains("pg_tblspc/1 does not point to a directory"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("pg_tblspc/1")).unwrap();
        let looped = dir.path().join("pg_tblspc/2");
        symlink(&looped, &looped).unwrap();
        let err = format!("{:#}", walk(dir.path()).unwrap_err());
        assert!(
            err.contains(&format!("cannot read {}", looped.display())),
            "{err}"
        );
        let not_data = tempfile::tempdir().unwrap();
        assert!(walk(not_data.path()).is_err());
    }

    #[test]
    fn relation_file_names() {
        assert_eq!(relation_file(b"16400"), Some((&b"16400"[..], Fork::Main)));
        assert_eq!(
            relation_file(b"16400.12"),
            Some((&b"16400"[..], Fork::Main))
        );
        assert_eq!(
            relation_file(b"16400_vm.1"),
            Some((&b"16400"[..], Fork::Vm))
        );
        assert_eq!(
            relation_file(b"16400_init"),
            Some((&b"16400"[..], Fork::Init))
        );
        for not in [
            &b"16400_main"[..],
            b"16400.",
            b"16400_fsmx",
            b"PG_VERSION",
            b"_vm",
            b"1.a",
        ] {
            assert_eq!(relation_file(not), None, "{}", String::from_utf8_lossy(not));
        }
        assert!(is_temp_relation(b"t3_16500"));
        assert!(is_temp_relation(b"t3_16500_fsm.1"));
        for not in [&b"t_16500"[..], b"t3_", b"t3_x", b"t3", b"16500", b"tx_1"] {
            assert!(!is_temp_relation(not), "{}", String::from_utf8_lossy(not));
        }
    }
}
