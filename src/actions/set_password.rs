//! `set-password username=… [password=…]`: change a system user's password,
//! on the leader only; a strong one is generated when none is given.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::json;

use crate::charm::passwords::{self, SystemUser};
use crate::charm::peers::Peers;
use crate::juju::{action, Context, HookTools};

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

    // Store it; every unit reads the new revision of the secret.
    let peers = Peers::load(tools, &ctx.app)?
        .context("the peer relation does not exist yet: try again once the unit is installed")?;
    passwords::set(tools, &peers.app_data, user, &password)?;
    tracing::info!("changed the password of {user}");

    action::set_results(tools, &json!({ "password": password }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::testing::context;
    use crate::charm::reconcile::reconcile;
    use crate::juju::fake::FakeTools;
    use serde_json::Value;

    fn cluster(leader: bool) -> FakeTools {
        let tools = FakeTools::new("postgresql/0", true);
        tools.add_relation("database-peers:0", "postgresql", &[]);
        reconcile(&context("postgresql/0", "set-password"), &tools).unwrap();
        tools.state.borrow_mut().leader = leader;
        tools
    }

    fn with_params(tools: &FakeTools, params: Value) {
        tools.state.borrow_mut().params = params.as_object().unwrap().clone();
    }

    fn stored(tools: &FakeTools, key: &str) -> String {
        tools.state.borrow().secrets.values().next().unwrap().1[key].clone()
    }

    #[test]
    fn sets_the_given_password() {
        let tools = cluster(true);
        with_params(
            &tools,
            json!({"username": "monitoring", "password": "s3cret-enough"}),
        );
        run(&context("postgresql/0", "set-password"), &tools).unwrap();
        assert_eq!(stored(&tools, "monitoring-password"), "s3cret-enough");
    }

    #[test]
    fn generates_one_when_none_is_given() {
        let tools = cluster(true);
        let before = stored(&tools, "operator-password");
        with_params(&tools, json!({"username": "operator"}));
        run(&context("postgresql/0", "set-password"), &tools).unwrap();
        let after = stored(&tools, "operator-password");
        assert_ne!(before, after);
        assert_eq!(after.len(), passwords::GENERATED_LENGTH);
    }

    #[test]
    fn refuses_bad_requests_and_changes_nothing() {
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
            let tools = cluster(leader);
            let before = stored(&tools, "operator-password");
            with_params(&tools, params);
            let err = run(&context("postgresql/0", "set-password"), &tools).unwrap_err();
            assert!(err.to_string().contains(want), "{err:#}");
            assert_eq!(stored(&tools, "operator-password"), before);
        }
    }
}
