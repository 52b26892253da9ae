//! The leader's part of a restore, step by step: the backup's files fetched
//! and checked beside the live data directory, writes stopped on the
//! current primary, the restored directory swapped in and recovered to the
//! target, and, when any step fails, everything put back as it was. The
//! live data directory is set aside, never deleted, until the restored
//! server has promoted. The other units re-seed from the restored primary
//! on their own when they see the restore in the peer app bag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::archiving;
use super::cluster;
use super::config::CharmConfig;
use super::passwords::{self, Passwords, SystemUser};
use super::peers::{PeerAppData, PeerUnitData, Peers};
use super::workload::Workload;
use crate::backup::catalog::BackupRecord;
use crate::backup::owner::Owner;
use crate::backup::repo::Repo;
use crate::backup::settings::RepoSettings;
use crate::backup::{restore as files, wal};
use crate::juju::{Context, HookTools};
use crate::postgres::os_user::run;
use crate::postgres::recovery::{self, Outcome, Recovery};
use crate::postgres::roles;
use crate::postgres::server::Server;
use crate::postgres::sql::Db;

/// Files fetched at once, each decompressed, checked, written and synced
/// on a blocking thread of its own (the async side only moves bytes).
const CONCURRENCY: usize = 4;

/// The leader's view of the cluster for a restore.
pub struct Restorer<'a> {
    pub ctx: &'a Context,
    pub tools: &'a dyn HookTools,
    pub peers: Peers,
    pub passwords: Passwords,
    pub workload: Workload,
}

/// The primary whose writes were stopped, to allow them again on failure.
pub struct Fenced(Option<Db>);

impl<'a> Restorer<'a> {
    pub fn load(ctx: &'a Context, tools: &'a dyn HookTools) -> Result<Self> {
        let config = CharmConfig::load(tools)?;
        let peers =
            Peers::load(tools, ctx)?.context("the peer relation does not exist yet: try again")?;
        let passwords = passwords::load(tools, &peers.app_data)?;
        let workload = Workload::load(ctx, tools, &config)?;
        Ok(Self {
            ctx,
            tools,
            peers,
            passwords,
            workload,
        })
    }

    /// The current primary, when it answers.
    fn primary(&self) -> Option<Db> {
        match cluster::connect_primary(self.ctx, &self.peers, &self.passwords) {
            Ok(db) => Some(db),
            Err(err) => {
                tracing::warn!("the primary does not answer: {err:#}");
                None
            }
        }
    }

    /// Archives the primary's latest WAL (after a commit stamped now), so
    /// that any time until now can be recovered to. Best effort: a cluster
    /// that is down can still be restored to what the archive holds.
    pub fn archive_now(&self) {
        let Some(db) = self.primary() else { return };
        match db.archive_now(Duration::from_secs(60)) {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the primary's last WAL was not archived within a minute"),
            Err(err) => tracing::warn!("cannot archive the primary's last WAL: {err:#}"),
        }
    }

    /// Writes the backup's files into a new directory beside the data
    /// directory, owned by the server's user, and has `pg_verifybackup`
    /// check them against the backup's PostgreSQL manifest.
    pub fn fetch(
        &self,
        rt: &tokio::runtime::Runtime,
        repo: &Repo,
        record: &BackupRecord,
        progress: &dyn Fn(&str),
    ) -> Result<PathBuf> {
        let server = &self.workload.server;
        let incoming = server.layout.storage.join("data.restoring");
        if let Err(err) = fetch_into(server, rt, repo, record, &incoming, progress) {
            if !out_of_space(&err) {
                return Err(err);
            }
            tracing::warn!("the restore ran out of space: {err:#}");
            return Err(no_space_error(record, &server.layout.storage));
        }
        Ok(incoming)
    }

    /// Stops writes on the current primary when it is another unit's (this
    /// unit's own server is stopped instead).
    pub fn fence_primary(&self) -> Result<Fenced> {
        let elsewhere = self
            .peers
            .app_data
            .primary
            .as_ref()
            .is_some_and(|p| *p != self.ctx.unit);
        if !elsewhere {
            return Ok(Fenced(None));
        }
        let Some(db) = self.primary() else {
            return Ok(Fenced(None));
        };
        db.fence()?;
        Ok(Fenced(Some(db)))
    }

    /// Lifts the fence after a failed restore.
    pub fn unfence(&self, fenced: Fenced) {
        if let Some(db) = fenced.0 {
            if let Err(err) = db.unfence() {
                tracing::warn!("cannot allow writes on the primary again: {err:#}");
            }
        }
    }

    /// Swaps the restored directory in and recovers it to the target, with
    /// the repository as the archive. On failure the directory set aside
    /// comes back and this unit's server starts on it as before; on success
    /// the set-aside directory is returned, for removal once all is done.
    pub fn recover(
        &mut self,
        incoming: &Path,
        recovery: Recovery,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(Option<PathBuf>, Outcome)> {
        let server = self.workload.server.clone();
        server.stop()?;
        let old = server.swap_in(incoming)?;
        let recovered = (|| {
            let data = server.layout.data();
            let _ = std::fs::remove_file(data.join("standby.signal"));
            server
                .user
                .write_file(&data.join("recovery.signal"), b"", 0o600)?;
            self.workload.recovery = Some(recovery);
            self.workload.configure(&self.peers, None)?;
            recovery::run(&server, progress)
        })();
        self.workload.recovery = None;
        match recovered {
            Ok(outcome) => Ok((old, outcome)),
            Err(err) => {
                let _ = server.stop();
                let rejected = server.layout.storage.join("data.rejected");
                server.swap_back(old.as_deref(), &rejected).context(
                    "the restore failed and the previous data directory could not be put back",
                )?;
                let _ = std::fs::remove_dir_all(&rejected);
                server.start().context(
                    "the restore failed; the previous data directory is back but its server does not start",
                )?;
                Err(err.context("the restore failed; the previous data is back in place"))
            }
        }
    }

    /// Points this unit's server at the repository: the settings and the
    /// archive program written where the server's user reads them, WAL
    /// archived there from the moment the restored server promotes (its
    /// new timeline's history file first); returns the restore_command.
    /// With `source` (another cluster's repository) WAL is read from there,
    /// and history files also from this cluster's own repository.
    pub fn use_repository(
        &mut self,
        settings: &RepoSettings,
        source: Option<&RepoSettings>,
    ) -> Result<String> {
        let server = &self.workload.server;
        let settings_file = archiving::settings_path(server);
        settings.save(&settings_file, &server.user)?;
        let bin = archiving::install_archiver(self.ctx, server)?;
        self.workload.archive_command = Some(wal::archive_command(&bin, &settings_file));
        let Some(source) = source else {
            return Ok(wal::restore_command(&bin, &settings_file, None));
        };
        let source_file = source_settings_path(self);
        source.save(&source_file, &server.user)?;
        Ok(wal::restore_command(
            &bin,
            &source_file,
            Some(&settings_file),
        ))
    }

    /// Removes the source repository's settings once recovery is over.
    pub fn forget_source(&self) {
        let path = source_settings_path(self);
        if let Err(err) = std::fs::remove_file(&path) {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {err}", path.display());
            }
        }
    }

    /// This cluster as a repository's owner, with the system identifier its
    /// data has now.
    pub fn owner(&self) -> Result<Owner> {
        let server = &self.workload.server;
        Ok(Owner {
            system_identifier: server.system_identifier()?,
            pg_version: server.bin.major,
            model_uuid: self.ctx.model_uuid.clone(),
            app: self.ctx.app.clone(),
            encryption_key_id: None,
        })
    }

    /// After promotion: this cluster's passwords for the system users
    /// (whatever the backed-up cluster had), and the timeline it is on.
    pub fn settle(&self) -> Result<u32> {
        let db = Db::local_peer(&self.workload.server.layout.socket_dir())?;
        for user in SystemUser::ALL {
            roles::apply(&db, user.as_str(), self.passwords.get(user)?)?;
        }
        db.timeline()
    }

    /// Tells the cluster: this unit is the primary, and every unit whose
    /// data predates `restore` re-seeds from it.
    pub fn announce(&mut self, restore: &str) -> Result<()> {
        let app = PeerAppData {
            primary: Some(self.ctx.unit.clone()),
            restore: Some(restore.to_owned()),
            ..self.peers.app_data.clone()
        };
        self.peers.save_app_data(self.tools, app)?;
        let mine = PeerUnitData {
            restored: Some(restore.to_owned()),
            ..self.peers.mine.clone()
        };
        self.peers.save_mine(self.tools, mine)
    }
}

/// Where the settings of another cluster's repository are kept while this
/// unit recovers from it.
fn source_settings_path(r: &Restorer<'_>) -> PathBuf {
    r.workload
        .server
        .layout
        .storage
        .join("s3-restore-source.json")
}

/// Writes the files of `record` into `incoming` (cleared first if an
/// earlier attempt left it), owned by the server's user, and has
/// `pg_verifybackup` check them; on failure `incoming` is removed.
pub(crate) fn fetch_into(
    server: &Server,
    rt: &tokio::runtime::Runtime,
    repo: &Repo,
    record: &BackupRecord,
    incoming: &Path,
    progress: &dyn Fn(&str),
) -> Result<()> {
    server.prepare_dirs()?;
    if incoming.exists() {
        std::fs::remove_dir_all(incoming)
            .with_context(|| format!("cannot clear the unfinished {}", incoming.display()))?;
    }
    let options = files::Options {
        concurrency: CONCURRENCY,
        owner: server
            .user
            .switch
            .then_some((server.user.uid, server.user.gid)),
    };
    let fetched = rt
        .block_on(files::files(repo, record, incoming, &options, progress))
        .and_then(|()| verify(server, incoming));
    if fetched.is_err() {
        let _ = std::fs::remove_dir_all(incoming);
    }
    fetched
}

/// `pg_verifybackup` on a restored directory, against the manifest in it:
/// every file it lists there with its size, none it does not list, and
/// the manifest's own checksum. Not the files' checksums: the fetch checked
/// each file as it wrote it against its SHA-256 and against the CRC-32C the
/// manifest lists (the record's, which the manifest was written from), and
/// reading every byte back for the same CRC-32C took a fifth of a full
/// restore's fetch again (0.40 s for 1.6 GB). WAL is checked by recovery
/// itself.
fn verify(server: &Server, dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    run(
        server
            .user
            .command(server.bin.program("pg_verifybackup"))
            .args(["--no-parse-wal", "--skip-checksums", "--quiet"])
            .arg(dir),
        "verify the restored files against the backup's manifest",
    )
    .map(drop)
}

/// Whether an error comes from a full filesystem.
fn out_of_space(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(libc::ENOSPC)
        })
    })
}

/// What a restore that filled the unit's storage says: what failed, why,
/// that nothing changed, and what to do.
fn no_space_error(record: &BackupRecord, storage: &Path) -> anyhow::Error {
    let need: u64 = record
        .files
        .iter()
        .filter(|f| f.kind == "file")
        .map(|f| f.size)
        .sum();
    anyhow::anyhow!(
        "cannot restore backup {}: no space left on the unit's storage ({}) for the backup's \
         files, which need {} MiB beside the live data; the partial copy was removed and the \
         cluster is unchanged: free space on the storage or give the unit larger storage, then \
         run the restore again",
        record.id,
        storage.display(),
        need.div_ceil(1 << 20)
    )
}

/// Refuses a restore while the cluster cannot take one.
pub fn check_ready(r: &Restorer<'_>) -> Result<()> {
    if r.peers.app_data.primary.is_none() {
        bail!("the cluster is not initialised yet: wait until the leader has set it up");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::catalog::BackupKind;

    #[test]
    fn a_full_disk_is_told_apart_and_said_plainly() {
        let full = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::ENOSPC))
            .context("cannot restore base/5/1249 of backup 2026-11-22T10:00:00Z");
        assert!(out_of_space(&full));
        let other = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::EACCES))
            .context("cannot create base/5");
        assert!(!out_of_space(&other));
        assert!(!out_of_space(&anyhow::anyhow!("no space left on device")));

        let mut record =
            crate::backup::catalog::tests::record("2026-11-22T10:00:00Z", BackupKind::Full, true);
        let entry = |path: &str, kind: &str, size: u64| crate::backup::catalog::FileRecord {
            path: path.into(),
            kind: kind.into(),
            size,
            mtime: 0,
            mode: 0o600,
            sha256: None,
            crc32c: None,
            object: None,
            stored: 0,
            target: None,
            ..Default::default()
        };
        record.files = vec![
            entry("base", "dir", 4096),
            entry("base/1", "file", 3 << 20),
            entry("base/2", "file", 1),
        ];
        let message = format!(
            "{:#}",
            no_space_error(&record, Path::new("/var/lib/pgdata"))
        );
        assert_eq!(
            message,
            "cannot restore backup 2026-11-22T10:00:00Z: no space left on the unit's storage \
             (/var/lib/pgdata) for the backup's files, which need 4 MiB beside the live data; \
             the partial copy was removed and the cluster is unchanged: free space on the \
             storage or give the unit larger storage, then run the restore again"
        );
    }
}
