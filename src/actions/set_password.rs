//! `set-password username=… [password=…]`: change a system user's password,
//! on the leader only; a strong one is generated when none is given.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::json;

use crate::charm::cluster;
use crate::charm::passwords::{self, SystemUser};
use crate::charm::peers::Peers;
use crate::juju::{action, Context, HookTools};
use crate::postgres::roles;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    username: String,
    password: Option<String>,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // Only the leader owns the secret.
    if !tools.is_leader()? {
        bail!("The action can be run only on leader unit.");
    }

    // Check the user and the password before touching anything.
    let params: Params = action::params(tools)?;
    let user: SystemUser = params.username.parse()?;
    let password = match params.password {
        Some(password) => {
            passwords::validate(&password)?;
            password
        }
        None => passwords::generate(),
    };

    // Apply it on the primary first, as a verifier computed here.
    let peers = Peers::load(tools, ctx)?
        .context("the peer relation does not exist yet: try again once the unit is installed")?;
    let current = passwords::load(tools, &peers.app_data)?;
    let db = cluster::connect_primary(ctx, &peers, &current)?;
    roles::apply(&db, user.as_str(), &password)?;

    // Then store it: the other units get secret-changed and follow.
    let updated = passwords::set(tools, &peers.app_data, user, &password)?;
    cluster::follow_password_change(ctx, &updated)?;
    tracing::info!("changed the password of {user}");

    action::set_results(tools, &json!({ "password": password }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::testing::context;
    use crate::juju::fake::FakeTools;

    #[test]
    fn refuses_bad_requests_before_touching_anything() {
        let cases = [
            (
                false,
                json!({"username": "operator", "password": "x"}),
                "only on leader",
            ),
            (
                true,
                json!({"username": "postgres", "password": "x"}),
                "not postgres",
            ),
            (
                true,
                json!({"username": "operator", "password": ""}),
                "empty",
            ),
        ];
        for (leader, params, want) in cases {
            let tools = FakeTools::new("postgresql/0", leader);
            tools.state.borrow_mut().params = params.as_object().unwrap().clone();
            let err = run(&context("postgresql/0", "set-password"), &tools).unwrap_err();
            assert!(err.to_string().contains(want), "{err:#}");
            assert!(tools.state.borrow().secrets.is_empty(), "nothing is stored");
        }
    }
}
