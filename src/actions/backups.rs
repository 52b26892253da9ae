//! What the backup actions share: the repository from the s3-parameters
//! relation, with the anchor's messages when it is missing or incomplete,
//! and the retention policy from the config and the relation.

use anyhow::{bail, Result};

use crate::backup::expire::Policy;
use crate::backup::repo::Repo;
use crate::backup::settings::RepoSettings;
use crate::charm::config::CharmConfig;
use crate::charm::s3::{self, S3State};
use crate::juju::{Context, HookTools};

/// The relation's state, then the repository, or the reason there is none.
pub fn repository(ctx: &Context, tools: &dyn HookTools) -> Result<(S3State, RepoSettings, Repo)> {
    let state = s3::load(ctx, tools, tools.is_leader()?)?;
    let (settings, repo) = open(&state)?;
    Ok((state, settings, repo))
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
