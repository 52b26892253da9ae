//! The actions, one module each; every `run()` is a narrated list of steps.

pub(crate) mod backups;
pub(crate) mod create_backup;
mod delete_backup;
mod expire_backups;
mod get_password;
mod get_primary;
mod list_backups;
mod promote_to_primary;
mod restore;
mod set_password;
mod verify_backup;

use anyhow::{bail, Result};

use crate::charm::event::Action;
use crate::juju::{Context, HookTools};

/// Runs one action; an error fails the action with its message.
pub fn run(ctx: &Context, tools: &dyn HookTools, action: &Action) -> Result<()> {
    match action {
        Action::GetPassword => get_password::run(ctx, tools),
        Action::SetPassword => set_password::run(ctx, tools),
        Action::GetPrimary => get_primary::run(ctx, tools),
        Action::PromoteToPrimary => promote_to_primary::run(ctx, tools),
        Action::CreateBackup => create_backup::run(ctx, tools),
        Action::ListBackups => list_backups::run(ctx, tools),
        Action::DeleteBackup => delete_backup::run(ctx, tools),
        Action::ExpireBackups => expire_backups::run(ctx, tools),
        Action::VerifyBackup => verify_backup::run(ctx, tools),
        Action::Restore => restore::run(ctx, tools),
        Action::Unknown(name) => bail!("this charm has no action {name:?}: see actions.yaml"),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for action tests.
    use crate::juju::Context;

    pub fn context(unit: &str, action: &str) -> Context {
        let env = [
            ("JUJU_DISPATCH_PATH", format!("actions/{action}")),
            ("JUJU_UNIT_NAME", unit.to_owned()),
            ("JUJU_ACTION_NAME", action.to_owned()),
        ];
        Context::from_env(&env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()).unwrap()
    }
}
