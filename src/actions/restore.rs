//! `restore backup-id=… [restore-to-time=…]`: the parameters are checked
//! now; the restore itself is not in this version yet.

use anyhow::{bail, Result};
use serde::Deserialize;

use super::backups::repository;
use crate::juju::{action, Context, HookTools};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    backup_id: Option<String>,
    restore_to_time: Option<String>,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // One of the two targets must be given.
    let params: Params = action::params(tools)?;
    if params.backup_id.is_none() && params.restore_to_time.is_none() {
        bail!("Either backup-id or restore-to-time parameters need to be provided to be able to do restore");
    }
    // The repository must be there.
    repository(ctx, tools)?;
    bail!("restore is not available yet: this version of the charm takes and lists backups only")
}
