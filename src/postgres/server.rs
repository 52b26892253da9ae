//! One unit's server: where its files are in the unit's storage, and the
//! programs that create, start, stop, promote and seed it. Starting and
//! stopping are idempotent; a data directory is only ever replaced by one
//! that is complete.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};

use super::binaries::Binaries;
use super::conf::PORT;
use super::os_user::{run, ServerUser};

/// The server's files inside the unit's `pgdata` storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub storage: PathBuf,
}

impl Layout {
    pub fn new(storage: impl Into<PathBuf>) -> Self {
        Self {
            storage: storage.into(),
        }
    }
    pub fn data(&self) -> PathBuf {
        self.storage.join("data")
    }
    pub fn socket_dir(&self) -> PathBuf {
        self.storage.join("run")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.storage.join("logs")
    }
    /// The libpq password file the server's own connections use (mode 0600).
    pub fn passfile(&self) -> PathBuf {
        self.storage.join("pgpass")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.storage.join("tls")
    }
    /// Where the time of the data directory's last `pg_rewind` is noted.
    fn rewind_note(&self) -> PathBuf {
        self.storage.join("rewound-at")
    }
    /// Notes that the data directory is about to be rewound, now.
    pub fn note_rewind(&self) -> Result<()> {
        std::fs::write(self.rewind_note(), format!("{}\n", now_secs()))
            .context("cannot note the rewind in the unit's storage")
    }
    /// When the data directory was last rewound (seconds since the epoch).
    pub fn rewound_at(&self) -> Option<i64> {
        let text = std::fs::read_to_string(self.rewind_note()).ok()?;
        text.trim().parse().ok()
    }
    /// Where a replaced data directory waits until its replacement is proven.
    pub fn set_aside(&self) -> PathBuf {
        self.storage.join(format!("data.old-{}", now_secs()))
    }
}

/// Seconds since the epoch, now.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The server of this unit.
#[derive(Debug, Clone)]
pub struct Server {
    pub bin: Binaries,
    pub layout: Layout,
    pub user: ServerUser,
}

impl Server {
    pub fn new(bin: Binaries, layout: Layout, user: ServerUser) -> Self {
        Self { bin, layout, user }
    }

    /// True once `initdb` or a base backup has produced a data directory.
    pub fn is_initialised(&self) -> bool {
        self.layout.data().join("PG_VERSION").exists()
    }

    /// Creates the directories the server needs, owned by its user.
    pub fn prepare_dirs(&self) -> Result<()> {
        self.user.create_dir(&self.layout.storage, 0o755)?;
        self.user.create_dir(&self.layout.socket_dir(), 0o755)?;
        self.user.create_dir(&self.layout.log_dir(), 0o750)?;
        self.user.create_dir(&self.layout.tls_dir(), 0o700)
    }

    /// `initdb --data-checksums` with `superuser` as the bootstrap superuser
    /// and its password from a private file, never from argv.
    pub fn initdb(&self, superuser: &str, password: &str) -> Result<()> {
        self.prepare_dirs()?;
        let pwfile = self.layout.storage.join("initdb.pw");
        self.user.write_file(&pwfile, password.as_bytes(), 0o600)?;
        let result = run(
            self.user
                .command(self.bin.program("initdb"))
                .arg("--pgdata")
                .arg(self.layout.data())
                .args([
                    "--data-checksums",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--auth=scram-sha-256",
                ])
                .arg(format!("--username={superuser}"))
                .arg(format!("--pwfile={}", pwfile.display())),
            "initialise the database cluster",
        );
        let _ = std::fs::remove_file(&pwfile);
        result.map(drop)
    }

    /// Writes a configuration file into the data directory; true if it changed.
    pub fn write_config(&self, name: &str, contents: &str) -> Result<bool> {
        let path = self.layout.data().join(name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(contents) {
            return Ok(false);
        }
        self.user.write_file(&path, contents.as_bytes(), 0o600)?;
        Ok(true)
    }

    /// Whether the server is running: its postmaster.pid names a live
    /// process (what `pg_ctl status` checks, without starting a process).
    pub fn is_running(&self) -> Result<bool> {
        let pidfile = self.layout.data().join("postmaster.pid");
        let text = match std::fs::read_to_string(&pidfile) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", pidfile.display()))
            }
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return Ok(false);
        };
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        Ok(alive)
    }

    /// True when the running server says, in its postmaster.pid, that it
    /// accepts connections (the line `pg_ctl start --wait` watches).
    pub fn is_ready(&self) -> Result<bool> {
        if !self.is_running()? {
            return Ok(false);
        }
        let text =
            std::fs::read_to_string(self.layout.data().join("postmaster.pid")).unwrap_or_default();
        Ok(text
            .lines()
            .nth(7)
            .is_some_and(|status| status.trim() == "ready"))
    }

    /// The cluster's system identifier, from pg_control (server up or down).
    pub fn system_identifier(&self) -> Result<String> {
        let out = run(
            self.user
                .command(self.bin.program("pg_controldata"))
                .arg(self.layout.data()),
            "read the cluster's control file",
        )?;
        out.lines()
            .find_map(|l| l.strip_prefix("Database system identifier:"))
            .map(|v| v.trim().to_owned())
            .context("pg_controldata printed no system identifier")
    }

    /// True when the data directory is a standby's (standby.signal).
    pub fn is_standby(&self) -> bool {
        self.layout.data().join("standby.signal").exists()
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        if self.is_running()? {
            return Ok(());
        }
        let log = self.layout.log_dir().join("startup.log");
        run(
            self.user
                .command(self.bin.program("pg_ctl"))
                .arg("start")
                .args(["--wait", "--timeout=120", "--silent"])
                .arg("--pgdata")
                .arg(self.layout.data())
                .arg("--log")
                .arg(&log),
            "start postgresql",
        )
        .with_context(|| format!("the server's log is {}", log.display()))
        .map(drop)
    }

    /// Starts the server without waiting for it to accept connections (a
    /// recovery may take long; the caller watches it).
    pub fn start_in_background(&self) -> Result<()> {
        let log = self.layout.log_dir().join("startup.log");
        run(
            self.user
                .command(self.bin.program("pg_ctl"))
                .arg("start")
                .args(["--no-wait", "--silent"])
                .arg("--pgdata")
                .arg(self.layout.data())
                .arg("--log")
                .arg(&log),
            "start postgresql",
        )
        .with_context(|| format!("the server's log is {}", log.display()))
        .map(drop)
    }

    /// Stops the server (fast mode: sessions are ended, WAL is flushed and
    /// sent to replicas); nothing to do when it is not running.
    pub fn stop(&self) -> Result<()> {
        if !self.is_running()? {
            return Ok(());
        }
        run(
            self.user
                .command(self.bin.program("pg_ctl"))
                .arg("stop")
                .args(["--wait", "--timeout=120", "--silent", "--mode=fast"])
                .arg("--pgdata")
                .arg(self.layout.data()),
            "stop postgresql",
        )
        .map(drop)
    }

    /// Asks the running server to reread its configuration.
    pub fn reload(&self) -> Result<()> {
        run(
            self.user
                .command(self.bin.program("pg_ctl"))
                .arg("reload")
                .arg("--pgdata")
                .arg(self.layout.data()),
            "reload postgresql's configuration",
        )
        .map(drop)
    }

    /// Ends recovery on a replica: it becomes a primary.
    pub fn promote(&self) -> Result<()> {
        run(
            self.user
                .command(self.bin.program("pg_ctl"))
                .arg("promote")
                .args(["--wait", "--timeout=120", "--silent"])
                .arg("--pgdata")
                .arg(self.layout.data()),
            "promote postgresql",
        )
        .map(drop)
    }

    /// Seeds this unit as a replica of `primary`: a base backup into a new
    /// directory through the replica's slot, then swapped in; what was there
    /// before is kept aside and returned for the caller to remove once the
    /// new server has proven itself.
    pub fn seed_from(
        &self,
        primary: IpAddr,
        slot: &str,
        env: &[(&str, String)],
    ) -> Result<Option<PathBuf>> {
        self.prepare_dirs()?;
        let incoming = self.layout.storage.join("data.incoming");
        if incoming.exists() {
            std::fs::remove_dir_all(&incoming).context("cannot clear an unfinished base backup")?;
        }
        run(
            self.user
                .command(self.bin.program("pg_basebackup"))
                .arg("--pgdata")
                .arg(&incoming)
                .args(["--wal-method=stream", "--checkpoint=fast", "--no-password"])
                .arg(format!("--host={primary}"))
                .arg(format!("--port={PORT}"))
                .arg("--username=replication")
                .arg(format!("--slot={slot}"))
                .env("PGPASSFILE", self.layout.passfile())
                .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
            "copy the primary's data with pg_basebackup",
        )?;
        // Marks it a standby before it is ever started.
        self.user
            .write_file(&incoming.join("standby.signal"), b"", 0o600)?;
        self.swap_in(&incoming)
    }

    /// Puts a complete data directory in place (the server must be
    /// stopped); returns the old one, set aside, for the caller to remove
    /// once the new one has proven itself, or to put back.
    pub fn swap_in(&self, incoming: &Path) -> Result<Option<PathBuf>> {
        if !incoming.join("PG_VERSION").exists() {
            bail!("{} is not a complete data directory", incoming.display());
        }
        let data = self.layout.data();
        let old = if data.exists() {
            let aside = self.layout.set_aside();
            std::fs::rename(&data, &aside).context("cannot set the old data directory aside")?;
            Some(aside)
        } else {
            None
        };
        std::fs::rename(incoming, &data).context("cannot put the new data directory in place")?;
        Ok(old)
    }

    /// Undoes `swap_in`: the new data directory goes to `rejected` and the
    /// one set aside comes back (the server must be stopped).
    pub fn swap_back(&self, old: Option<&Path>, rejected: &Path) -> Result<()> {
        let data = self.layout.data();
        if data.exists() {
            if rejected.exists() {
                std::fs::remove_dir_all(rejected)
                    .with_context(|| format!("cannot clear {}", rejected.display()))?;
            }
            std::fs::rename(&data, rejected).with_context(|| {
                format!(
                    "cannot move the new data directory to {}",
                    rejected.display()
                )
            })?;
        }
        if let Some(old) = old {
            std::fs::rename(old, &data).with_context(|| {
                format!("cannot put the old data directory {} back", old.display())
            })?;
        }
        Ok(())
    }
}
