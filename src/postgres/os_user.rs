//! Who PostgreSQL runs as: the `postgres` OS user when the charm runs as
//! root (PostgreSQL refuses root), else the charm's own user. Commands and
//! files for the server go through here.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// The OS user that owns the data directory and runs the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// True when the charm must switch to this user to run server commands.
    pub switch: bool,
}

impl ServerUser {
    /// `postgres` when running as root, else the current user.
    pub fn detect() -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 {
            let mut user = lookup("postgres")?.context(
                "the postgres OS user does not exist: install the distribution's postgresql package",
            )?;
            user.switch = true;
            Ok(user)
        } else {
            Ok(Self {
                name: std::env::var("USER").unwrap_or_else(|_| euid.to_string()),
                uid: euid,
                // SAFETY: getegid has no preconditions.
                gid: unsafe { libc::getegid() },
                home: std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "/".into()),
                switch: false,
            })
        }
    }

    /// A command that runs as this user, in its home, with a clean locale.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        if self.switch {
            // As root, std drops the supplementary groups before setuid.
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd.env("HOME", &self.home)
            .env("LC_ALL", "C.UTF-8")
            .current_dir("/");
        cmd
    }

    /// Makes `path` (not recursively) owned by this user.
    pub fn chown(&self, path: &Path) -> Result<()> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
                .with_context(|| format!("cannot give {} to {}", path.display(), self.name))?;
        }
        Ok(())
    }

    /// Gives `root` and everything under it to this user (links themselves,
    /// not what they point at).
    pub fn chown_tree(&self, root: &Path) -> Result<()> {
        if !self.switch {
            return Ok(());
        }
        std::os::unix::fs::lchown(root, Some(self.uid), Some(self.gid))
            .with_context(|| format!("cannot give {} to {}", root.display(), self.name))?;
        if std::fs::symlink_metadata(root)?.is_dir() {
            for entry in std::fs::read_dir(root)
                .with_context(|| format!("cannot list {}", root.display()))?
            {
                self.chown_tree(&entry?.path())?;
            }
        }
        Ok(())
    }

    /// Creates `dir` with `mode` and gives it to this user.
    pub fn create_dir(&self, dir: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
        self.chown(dir)
    }

    /// Writes `contents` to `path` atomically with `mode`, owned by this user.
    pub fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("charm-tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        self.chown(&tmp)?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
    }
}

/// The name of the OS user this process runs as.
pub fn current_user_name() -> Result<String> {
    // SAFETY: getpwuid returns NULL or a pointer to static storage, copied
    // out at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            bail!("the charm's OS user has no entry in the user database");
        }
        Ok(std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned())
    }
}

fn lookup(name: &str) -> Result<Option<ServerUser>> {
    let cname = CString::new(name).context("a user name has no NUL byte")?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage that stays
    // valid until the next getpw* call; everything is copied out before that.
    unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() {
            return Ok(None);
        }
        let home = std::ffi::CStr::from_ptr((*pw).pw_dir)
            .to_string_lossy()
            .into_owned();
        Ok(Some(ServerUser {
            name: name.to_owned(),
            uid: (*pw).pw_uid,
            gid: (*pw).pw_gid,
            home: PathBuf::from(home),
            switch: false,
        }))
    }
}

/// Runs `cmd` and fails with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot {what}: cannot start {:?}", cmd.get_program()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let detail = if stderr.trim().is_empty() {
            stdout.trim()
        } else {
            stderr.trim()
        };
        bail!("cannot {what}: {} ({})", detail, out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
