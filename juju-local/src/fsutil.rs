//! Filesystem helpers: directories other OS users can traverse, recursive
//! copies of a charm directory, and wall-clock formatting for logs.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use anyhow::{Context as _, Result};

/// `mkdir -p` whose created directories are mode 0755, and makes `dir` itself 0755.
pub fn create_dir_shared(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} traversable", dir.display()))
}

/// Copies a directory tree, keeping file modes and symlinks.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    create_dir_shared(to)?;
    let entries = fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta =
            fs::symlink_metadata(&src).with_context(|| format!("cannot stat {}", src.display()))?;
        if meta.file_type().is_symlink() {
            let target =
                fs::read_link(&src).with_context(|| format!("cannot read {}", src.display()))?;
            symlink(&target, &dst).with_context(|| format!("cannot link {}", dst.display()))?;
        } else if meta.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst)
                .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// Local wall-clock time as `HH:MM:SS`.
pub fn hms_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r writes into the tm we pass and reads `now`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&now, &mut tm).is_null() };
    if !ok {
        return "00:00:00".to_string();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// UTC time as RFC 3339 (`2026-11-22T10:00:00Z`), for action timings.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: gmtime_r writes into the tm we pass and reads `now`.
    unsafe { libc::gmtime_r(&now, &mut tm) };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
