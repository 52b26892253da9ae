//! What the backup actions share: the repository from the s3-parameters
//! relation and the backup options, with the anchor's messages when it is
//! missing or incomplete, and the retention policy from the config and the
//! relation.

use anyhow::{bail, Result};

use crate::backup::expire::Policy;
use crate::backup::owner;
use crate::backup::repo::Repo;
use crate::backup::settings::RepoSettings;
use crate::charm::config::CharmConfig;
use crate::charm::encryption;
use crate::charm::s3::{self, S3State};
use crate::juju::{Context, HookTools};

/// The relation's state, then the repository (with the configured
/// compression, encryption key and bandwidth limit), or the reason there
/// is none.
pub fn repository(ctx: &Context, tools: &dyn HookTools) -> Result<(S3State, RepoSettings, Repo)> {
    let options = CharmConfig::load(tools)?.backup;
    let state = s3::load(ctx, tools, tools.is_leader()?)?;
    let state = encryption::complete(ctx, tools, &options, state)?;
    let (settings, repo) = open(&state)?;
    Ok((
        state,
        settings,
        repo.with_bandwidth(options.bandwidth_limit),
    ))
}

fn open(state: &S3State) -> Result<(RepoSettings, Repo)> {
    match state {
        S3State::NotRelated => {
            bail!("Relation with s3-integrator charm missing, cannot create/restore backup.")
        }
        S3State::Incomplete(message) => bail!(message.clone()),
        S3State::Ready(settings) => Ok((settings.as_ref().clone(), Repo::open(settings)?)),
    }
}

/// What the repository's recorded key says of the configured one: None
/// when objects written with it can be read, else the reason.
pub fn key_problem(
    rt: &tokio::runtime::Runtime,
    settings: &RepoSettings,
    repo: &Repo,
) -> Result<Option<String>> {
    let recorded = rt
        .block_on(owner::read(repo))?
        .and_then(|o| o.encryption_key_id);
    let configured = settings.encryption_key.as_ref().map(|k| k.id().to_string());
    let at = format!("{}/{}", settings.bucket, settings.prefix());
    Ok(owner::key_problem(
        recorded.as_deref(),
        configured.as_deref(),
        &at,
    ))
}

/// The retention policy: the config's counts, the days falling back to the
/// s3-integrator's `delete-older-than-days`.
pub fn policy(tools: &dyn HookTools, config: &CharmConfig) -> Result<Policy> {
    let days = match config.retention_days {
        Some(days) => Some(days),
        None => s3::delete_older_than_days(tools)?,
    };
    Ok(Policy {
        full: config.retention_full,
        days,
    })
}
