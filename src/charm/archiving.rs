//! WAL archiving as the charm sets it up: the repository settings written
//! for the archive programs, the charm binary put where the `postgres` user
//! can run it, the repository checked (reachable, ours, encrypted with the
//! configured key if with any), and the archive_command that follows from
//! all that.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::s3::S3State;
use crate::backup::codec::sha256_hex;
use crate::backup::outage;
use crate::backup::owner::{self, Owner, Ownership};
use crate::backup::repo::Repo;
use crate::backup::settings::RepoSettings;
use crate::backup::wal;
use crate::juju::Context;
use crate::postgres::server::Server;

/// The settings file the archive programs read.
pub fn settings_path(server: &Server) -> PathBuf {
    server.layout.storage.join("s3-repository.json")
}

/// The copy of the charm binary PostgreSQL runs as its archive command.
fn archiver_path(server: &Server) -> PathBuf {
    server.layout.storage.join("bin/postgresql-charm")
}

/// Marks settings that were checked against the repository (their hash).
fn verified_path(server: &Server) -> PathBuf {
    server.layout.storage.join("s3-verified")
}

/// Checks the repository the relation points at; returns what the user
/// must fix, or None when backups and archiving may go ahead.
pub fn check(ctx: &Context, server: &Server, s3: &S3State) -> Result<Option<String>> {
    let settings = match s3 {
        S3State::NotRelated => return Ok(None),
        S3State::Incomplete(message) => return Ok(Some(message.clone())),
        S3State::Ready(settings) => settings,
    };
    if !server.is_initialised() {
        return Ok(None);
    }
    let system_identifier = server.system_identifier()?;
    let fingerprint = fingerprint(settings, &system_identifier)?;
    if std::fs::read_to_string(verified_path(server))
        .ok()
        .as_deref()
        == Some(fingerprint.as_str())
    {
        return Ok(None);
    }
    let me = Owner {
        system_identifier,
        pg_version: server.bin.major,
        model_uuid: ctx.model_uuid.clone(),
        app: ctx.app.clone(),
        encryption_key_id: settings.encryption_key.as_ref().map(|k| k.id().to_string()),
    };
    let location = format!("{}/{}", settings.bucket, settings.prefix());
    let verdict = runtime()?.block_on(async {
        let repo = Repo::open(settings)?;
        let ownership = owner::claim(&repo, &me).await?;
        if ownership != Ownership::Ours {
            return Ok(Err(ownership));
        }
        // Ours: and encrypted with the configured key, if with any.
        let recorded = owner::read(&repo).await?.and_then(|o| o.encryption_key_id);
        let configured = me.encryption_key_id.as_deref();
        if let Some(problem) = owner::key_problem(recorded.as_deref(), configured, &location) {
            return Ok(Ok(Some(problem)));
        }
        if recorded.is_none() && configured.is_some() {
            // Encrypted from now on: recorded before any object is written.
            owner::transfer(&repo, &me).await?;
        }
        anyhow::Ok(Ok(None))
    });
    match verdict {
        Ok(Ok(Some(problem))) => Ok(Some(problem)),
        Ok(Ok(None)) => {
            server
                .user
                .write_file(&verified_path(server), fingerprint.as_bytes(), 0o600)?;
            Ok(None)
        }
        Ok(Err(Ownership::Theirs(owner))) => {
            Ok(Some(owner::foreign_message(&owner, &me, &location)))
        }
        Ok(Err(Ownership::Ours)) => unreachable!("returned as Ok(Ok(..)) above"),
        Err(err) => match outage::tls_problem(&err) {
            Some(problem) => {
                tracing::warn!("the S3 repository refused over TLS: {err:#}");
                Ok(Some(format!(
                    "cannot use the S3 repository {location} at {}: {problem}",
                    settings.endpoint
                )))
            }
            None => Ok(Some(format!(
                "cannot use the S3 repository {location} at {}: {}; check the s3-integrator \
                 settings",
                settings.endpoint,
                short(&err)
            ))),
        },
    }
}

/// Writes the settings for the archive programs and returns the
/// archive_command, when the repository may be written to.
pub fn command(
    ctx: &Context,
    server: &Server,
    s3: &S3State,
    usable: bool,
) -> Result<Option<String>> {
    let S3State::Ready(settings) = s3 else {
        remove(&settings_path(server))?;
        remove(&verified_path(server))?;
        return Ok(None);
    };
    if !usable || !server.is_initialised() {
        return Ok(None);
    }
    settings.save(&settings_path(server), &server.user)?;
    let bin = install_archiver(ctx, server)?;
    Ok(Some(wal::archive_command(&bin, &settings_path(server))))
}

/// The restore_command a replica reads this repository's archive with,
/// with the settings `command` wrote.
pub fn fetch_command(ctx: &Context, server: &Server) -> Result<String> {
    let bin = install_archiver(ctx, server)?;
    Ok(wal::standby_restore_command(&bin, &settings_path(server)))
}

/// Whether the last check of the current settings passed (update-status
/// uses it to keep its fast path honest).
pub fn verified(server: &Server) -> bool {
    match (
        std::fs::read(settings_path(server)),
        std::fs::read_to_string(verified_path(server)),
    ) {
        (Err(_), _) => true,
        (Ok(bytes), Ok(mark)) => serde_json::from_slice::<RepoSettings>(&bytes)
            .ok()
            .zip(server.system_identifier().ok())
            .and_then(|(s, id)| fingerprint(&s, &id).ok())
            .is_some_and(|f| f == mark),
        (Ok(_), Err(_)) => false,
    }
}

fn fingerprint(settings: &RepoSettings, system_identifier: &str) -> Result<String> {
    let body = serde_json::to_vec(settings).context("cannot encode the repository settings")?;
    Ok(format!("{}:{system_identifier}", sha256_hex(&body)))
}

/// Copies the charm binary into the unit's storage (when it changed), where
/// the server's OS user can run it whatever the charm directory's mode.
pub(crate) fn install_archiver(ctx: &Context, server: &Server) -> Result<PathBuf> {
    let source = ctx.charm_dir.join("bin/postgresql-charm");
    let target = archiver_path(server);
    let same = match (std::fs::metadata(&source), std::fs::metadata(&target)) {
        (Ok(a), Ok(b)) => a.len() == b.len() && a.modified().ok() <= b.modified().ok(),
        _ => false,
    };
    if !same {
        let dir = target.parent().context("the archiver has a directory")?;
        server.user.create_dir(dir, 0o755)?;
        let bytes =
            std::fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?;
        server.user.write_file(&target, &bytes, 0o755)?;
    }
    Ok(target)
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The first line of an error chain, short enough for a status.
fn short(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(300).collect()
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
