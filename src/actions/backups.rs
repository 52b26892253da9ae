//! What the backup actions share: the repository from the s3-parameters
//! relation, with the anchor's messages when it is missing or incomplete.

use anyhow::{bail, Result};

use crate::backup::repo::Repo;
use crate::backup::settings::RepoSettings;
use crate::charm::s3::{self, S3State};
use crate::juju::{Context, HookTools};

/// The repository's settings and the store, or the reason there is none.
pub fn repository(ctx: &Context, tools: &dyn HookTools) -> Result<(RepoSettings, Repo)> {
    match s3::load(ctx, tools, tools.is_leader()?)? {
        S3State::NotRelated => {
            bail!("Relation with s3-integrator charm missing, cannot create/restore backup.")
        }
        S3State::Incomplete(message) => bail!(message),
        S3State::Ready(settings) => {
            let repo = Repo::open(&settings)?;
            Ok((*settings, repo))
        }
    }
}
