//! The unit's trash: data directories the charm no longer needs (the one a
//! restore replaced, once the restored primary has promoted), moved by a
//! rename into `<storage>/trash` and deleted by a detached process after the
//! action that replaced them has answered, so that nobody waits for
//! gigabytes to be unlinked. Every hook starts that process when the trash
//! holds anything, so a deletion cut short (a reboot, a killed process)
//! finishes later; a lock beside the trash lets one deleter run at a time.
//!
//! The deleter is the charm binary itself: `postgresql-charm empty-trash
//! <dir>`, in a session of its own with no standard streams, so that no
//! agent waiting on the hook's process or its output waits for it.

use std::ffi::OsString;
use std::os::unix::io::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context as _, Result};

/// The subcommand that empties a trash directory.
pub const SUBCOMMAND: &str = "empty-trash";

/// The trash directory of the unit's storage.
pub fn dir(storage: &Path) -> PathBuf {
    storage.join("trash")
}

/// The lock a deleter holds while it empties `trash`.
fn lock_path(trash: &Path) -> PathBuf {
    trash.with_extension("lock")
}

/// Moves `path` (on the storage's file system) into the trash.
pub fn put(storage: &Path, path: &Path) -> Result<()> {
    let trash = dir(storage);
    std::fs::create_dir_all(&trash)
        .with_context(|| format!("cannot create {}", trash.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no name to keep in the trash", path.display()))?;
    let mut target = trash.join(name);
    let mut n = 1;
    while target.symlink_metadata().is_ok() {
        let mut numbered = name.to_owned();
        numbered.push(format!(".{n}"));
        target = trash.join(numbered);
        n += 1;
    }
    std::fs::rename(path, &target).with_context(|| {
        format!(
            "cannot move {} into the trash {}",
            path.display(),
            trash.display()
        )
    })
}

/// True when the trash holds anything.
fn holds_anything(trash: &Path) -> bool {
    std::fs::read_dir(trash).is_ok_and(|mut entries| entries.next().is_some())
}

/// Starts a detached deleter when the trash of `storage` holds anything;
/// returns at once. A failure to start it is logged: the next hook retries.
pub fn empty_in_background(storage: &Path) {
    let trash = dir(storage);
    if !holds_anything(&trash) {
        return;
    }
    let started = std::env::current_exe()
        .context("cannot find the charm binary")
        .and_then(|exe| {
            let mut cmd = Command::new(exe);
            cmd.arg(SUBCOMMAND).arg(&trash);
            spawn_detached(cmd, 10).context("cannot start the deleter")
        });
    if let Err(err) = started {
        tracing::warn!("cannot empty the trash {}: {err:#}", trash.display());
    }
}

/// Starts `cmd` in a session of its own with no standard streams, at
/// `nice` (0 for the default), so that no agent waiting on the hook's
/// process or its output waits for it; returns at once.
pub fn spawn_detached(mut cmd: Command, nice: i32) -> std::io::Result<()> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid and nice are async-signal-safe system calls, with no
    // memory touched between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if nice != 0 {
                libc::nice(nice);
            }
            Ok(())
        });
    }
    cmd.spawn().map(|_| ())
}

/// Runs `empty-trash <dir>` when `args[1]` names it; `None` otherwise.
pub fn dispatch(args: &[OsString]) -> Option<ExitCode> {
    if args.get(1)?.to_str()? != SUBCOMMAND {
        return None;
    }
    let code = match args.get(2..) {
        Some([trash]) => match empty(Path::new(trash)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{SUBCOMMAND}: {err:#}");
                ExitCode::from(1)
            }
        },
        _ => {
            eprintln!("usage: postgresql-charm {SUBCOMMAND} DIR");
            ExitCode::from(2)
        }
    };
    Some(code)
}

/// Deletes everything in `trash`, unless another deleter holds the lock.
pub fn empty(trash: &Path) -> Result<()> {
    if trash.file_name().and_then(|n| n.to_str()) != Some("trash") {
        bail!("{} is not a trash directory", trash.display());
    }
    let lock_file = lock_path(trash);
    let lock = std::fs::File::create(&lock_file)
        .with_context(|| format!("cannot open {}", lock_file.display()))?;
    // SAFETY: flock on a descriptor this function owns; released on close.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        // Another deleter is at work.
        return Ok(());
    }
    let entries = match std::fs::read_dir(trash) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot list {}", trash.display())),
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", trash.display()))?
            .path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("cannot delete {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("base/1")).unwrap();
        std::fs::write(root.join("base/1/1259"), b"x").unwrap();
        std::fs::write(root.join("PG_VERSION"), b"15\n").unwrap();
    }

    #[test]
    fn put_moves_into_the_trash_without_overwriting() {
        let storage = tempfile::tempdir().unwrap();
        let old = storage.path().join("data.old-1");
        tree(&old);
        put(storage.path(), &old).unwrap();
        assert!(!old.exists());
        assert!(dir(storage.path()).join("data.old-1/base/1/1259").exists());
        tree(&old);
        put(storage.path(), &old).unwrap();
        assert!(dir(storage.path()).join("data.old-1.1/PG_VERSION").exists());
        let err = put(storage.path(), &storage.path().join("none")).unwrap_err();
        assert!(format!("{err:#}").starts_with("cannot move"), "{err:#}");
    }

    #[test]
    fn empty_deletes_everything_in_it_and_nothing_else() {
        let storage = tempfile::tempdir().unwrap();
        let data = storage.path().join("data");
        tree(&data);
        for name in ["data.old-1", "data.old-2"] {
            let old = storage.path().join(name);
            tree(&old);
            put(storage.path(), &old).unwrap();
        }
        std::fs::write(dir(storage.path()).join("stray"), b"").unwrap();
        assert!(holds_anything(&dir(storage.path())));
        empty(&dir(storage.path())).unwrap();
        assert!(!holds_anything(&dir(storage.path())));
        assert!(data.join("base/1/1259").exists());
        // Nothing there, or no trash yet: nothing to do.
        empty(&dir(storage.path())).unwrap();
        let fresh = tempfile::tempdir().unwrap();
        empty(&dir(fresh.path())).unwrap();
        empty_in_background(fresh.path());
    }

    #[test]
    fn a_held_lock_leaves_the_trash_to_its_holder() {
        let storage = tempfile::tempdir().unwrap();
        let old = storage.path().join("data.old-1");
        tree(&old);
        put(storage.path(), &old).unwrap();
        let trash = dir(storage.path());
        let held = std::fs::File::create(lock_path(&trash)).unwrap();
        // SAFETY: flock on a descriptor the test owns.
        assert_eq!(
            unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        empty(&trash).unwrap();
        assert!(holds_anything(&trash));
        drop(held);
        empty(&trash).unwrap();
        assert!(!holds_anything(&trash));
    }

    #[test]
    fn only_a_trash_directory_is_emptied() {
        let storage = tempfile::tempdir().unwrap();
        tree(&storage.path().join("data"));
        let err = empty(&storage.path().join("data")).unwrap_err();
        assert!(
            err.to_string().contains("is not a trash directory"),
            "{err}"
        );
        assert!(storage.path().join("data/PG_VERSION").exists());
        let args: Vec<OsString> = vec!["x".into(), SUBCOMMAND.into()];
        assert_eq!(dispatch(&args), Some(ExitCode::from(2)));
        assert_eq!(dispatch(&["x".into(), "wal-push".into()]), None);
    }
}
