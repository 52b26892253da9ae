//! `get-password [username=operator]`: the password of a system user, on any unit.

use anyhow::{Context as _, Result};
use serde::Deserialize;
use serde_json::json;

use crate::charm::passwords::{self, SystemUser};
use crate::charm::peers::Peers;
use crate::juju::{action, Context, HookTools};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    username: String,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // Juju filled in the default user; check it names a system user.
    let params: Params = action::params(tools)?;
    let user: SystemUser = params.username.parse()?;

    // The peer app bag points at the secret; read this user's password.
    let peers = Peers::load(tools, ctx)?
        .context("the peer relation does not exist yet: try again once the unit is installed")?;
    let passwords = passwords::load(tools, &peers.app_data)?;

    action::set_results(tools, &json!({ "password": passwords.get(user)? }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::testing::context;
    use crate::juju::fake::FakeTools;

    #[test]
    fn answers_the_password_in_the_secret() {
        let tools = FakeTools::new("postgresql/0", true);
        tools.add_relation("database-peers:0", "postgresql", &[]);
        let ctx = context("postgresql/0", "get-password");
        let mut peers = Peers::load(&tools, &ctx).unwrap().unwrap();
        passwords::ensure(&tools, &mut peers).unwrap();
        tools.state.borrow_mut().params =
            json!({"username": "rewind"}).as_object().unwrap().clone();

        run(&context("postgresql/0", "get-password"), &tools).unwrap();

        let state = tools.state.borrow();
        let (_, content) = state.secrets.values().next().unwrap();
        assert_eq!(
            state.results,
            [("password".to_owned(), content["rewind-password"].clone())]
        );
    }

    #[test]
    fn without_params_it_fails_rather_than_guess() {
        let tools = FakeTools::new("postgresql/0", true);
        let err = run(&context("postgresql/0", "get-password"), &tools).unwrap_err();
        assert!(format!("{err:#}").contains("username"), "{err:#}");
    }
}
