//! Where PostgreSQL's programs are: `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/<major>/bin`; version 15 or newer. Installs the
//! distribution's package when there is none, without letting it create the
//! distribution's own cluster on port 5432.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::os_user::run;

/// The oldest major version the charm runs.
pub const MIN_MAJOR: u32 = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub bindir: PathBuf,
    pub major: u32,
}

impl Binaries {
    pub fn program(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

/// Finds the binaries, if installed.
pub fn find() -> Result<Option<Binaries>> {
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
        candidates.extend(dirs.into_iter().map(|(_, p)| p));
    }
    for bindir in candidates {
        if let Some(major) = major_version(&bindir)? {
            if major >= MIN_MAJOR {
                return Ok(Some(Binaries { bindir, major }));
            }
        }
    }
    Ok(None)
}

/// `postgres --version` → the major version, or None when absent.
fn major_version(bindir: &Path) -> Result<Option<u32>> {
    let postgres = bindir.join("postgres");
    if !postgres.exists() {
        return Ok(None);
    }
    let out = run(
        Command::new(&postgres).arg("--version"),
        "ask postgres for its version",
    )?;
    // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    let version = out.split_whitespace().nth(2).unwrap_or_default();
    Ok(version.split('.').next().and_then(|m| m.parse().ok()))
}

/// Finds the binaries, installing the distribution's package when absent.
pub fn find_or_install() -> Result<Binaries> {
    if let Some(found) = find()? {
        return Ok(found);
    }
    // Tell postgresql-common not to create (and start) its own cluster.
    let conf_dir = Path::new("/etc/postgresql-common/createcluster.d");
    std::fs::create_dir_all(conf_dir).context("cannot configure postgresql-common")?;
    std::fs::write(
        conf_dir.join("50-postgresql-charm.conf"),
        "create_main_cluster = false\n",
    )
    .context("cannot configure postgresql-common")?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "install the postgresql package",
    )?;
    match find()? {
        Some(found) => Ok(found),
        None => bail!(
            "the postgresql package installed no PostgreSQL {MIN_MAJOR} or newer: use a base whose archive has one"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_machines_postgresql() {
        let found = find()
            .unwrap()
            .expect("PostgreSQL is installed where the tests run");
        assert!(found.major >= MIN_MAJOR);
        assert!(found.program("initdb").exists(), "{found:?}");
    }
}
