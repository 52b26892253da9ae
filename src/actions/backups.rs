//! `create-backup`, `list-backups` and `restore`: the parameters are checked
//! now; the backup engine that runs them is not in this version yet.

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::charm::event::S3_ENDPOINT;
use crate::juju::{action, Context, HookTools};

const NOT_YET: &str =
    "backups are not available yet: this version of the charm does not run PostgreSQL";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateParams {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RestoreParams {
    backup_id: Option<String>,
    restore_to_time: Option<String>,
}

pub fn create(_ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // The type must be one the engine knows.
    let params: CreateParams = action::params(tools)?;
    if !["full", "differential", "incremental"].contains(&params.kind.as_str()) {
        bail!(
            "Invalid backup type: {}. Possible values: full, differential, incremental.",
            params.kind
        );
    }
    // Backups need the S3 relation.
    require_s3(tools)?;
    bail!(NOT_YET)
}

pub fn list(_ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    require_s3(tools)?;
    bail!(NOT_YET)
}

pub fn restore(_ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // One of the two targets must be given.
    let params: RestoreParams = action::params(tools)?;
    if params.backup_id.is_none() && params.restore_to_time.is_none() {
        bail!("Either backup-id or restore-to-time parameters need to be provided to be able to do restore");
    }
    require_s3(tools)?;
    bail!(NOT_YET)
}

fn require_s3(tools: &dyn HookTools) -> Result<()> {
    if tools.relation_ids(S3_ENDPOINT)?.is_empty() {
        bail!("Relation with s3-integrator charm missing, cannot create/restore backup.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::testing::context;
    use crate::juju::fake::FakeTools;
    use serde_json::json;

    #[test]
    fn create_backup_checks_the_type_then_the_relation() {
        let tools = FakeTools::new("postgresql/0", true);
        tools.state.borrow_mut().params = json!({"type": "weekly"}).as_object().unwrap().clone();
        let err = create(&context("postgresql/0", "create-backup"), &tools).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid backup type: weekly. Possible values: full, differential, incremental."
        );
        tools.state.borrow_mut().params = json!({"type": "full"}).as_object().unwrap().clone();
        let err = create(&context("postgresql/0", "create-backup"), &tools).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Relation with s3-integrator charm missing"),
            "{err}"
        );
    }

    #[test]
    fn restore_needs_a_target() {
        let tools = FakeTools::new("postgresql/0", true);
        let err = restore(&context("postgresql/0", "restore"), &tools).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Either backup-id or restore-to-time"),
            "{err}"
        );
    }
}
