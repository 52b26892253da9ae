//! The reconcile step most hooks run: look at the world, converge on what it
//! should be, and say how the unit is. Idempotent by construction.

use anyhow::Result;

use super::outcome::Waiting;
use super::passwords;
use super::peers::Peers;
use crate::juju::{Context, HookTools, Status, StatusKind};

/// What the unit reports while this version of the charm does not run
/// PostgreSQL: honest about what is and is not done.
pub const NOT_RUNNING_YET: &str =
    "postgresql is not set up: this version of the charm runs the Juju layer only";

/// Converges the unit on the cluster's desired state.
pub fn reconcile(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    let Some(mut peers) = Peers::load(tools, &ctx.app)? else {
        return Err(Waiting("waiting for Juju to create the peer relation".into()).into());
    };
    if tools.is_leader()? {
        passwords::ensure(tools, &mut peers)?;
    }
    update_status(tools)
}

/// The periodic health check: cheap, and nothing but a status.
pub fn update_status(tools: &dyn HookTools) -> Result<()> {
    tools.status_set(false, &Status::new(StatusKind::Waiting, NOT_RUNNING_YET))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charm::peers::PeerAppData;
    use crate::juju::fake::FakeTools;
    use crate::juju::{databag, Bag, SecretRead};

    fn context(unit: &str) -> Context {
        let env = [
            ("JUJU_DISPATCH_PATH", "hooks/leader-elected"),
            ("JUJU_UNIT_NAME", unit),
        ];
        Context::from_env(
            &env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn the_leader_creates_the_passwords_once() {
        let tools = FakeTools::new("postgresql/0", true);
        let rel = tools.add_relation("database-peers:0", "postgresql", &[]);
        reconcile(&context("postgresql/0"), &tools).unwrap();
        reconcile(&context("postgresql/0"), &tools).unwrap();

        assert_eq!(
            tools.state.borrow().secrets.len(),
            1,
            "a second run must not add a secret"
        );
        let bag: PeerAppData = databag::read(&tools, &rel, Bag::App("postgresql")).unwrap();
        let id = bag
            .system_users_secret
            .expect("the app bag points at the secret");
        let content = tools.secret_get(Some(&id), None, SecretRead::Peek).unwrap();
        assert_eq!(content.len(), 5);
        assert!(content.values().all(|p| p.len() >= 32));
    }

    #[test]
    fn a_non_leader_creates_nothing() {
        let tools = FakeTools::new("postgresql/1", false);
        tools.add_relation("database-peers:0", "postgresql", &["postgresql/0"]);
        reconcile(&context("postgresql/1"), &tools).unwrap();
        assert!(tools.state.borrow().secrets.is_empty());
        assert_eq!(
            tools.state.borrow().unit_status.as_ref().unwrap().kind,
            StatusKind::Waiting
        );
    }

    #[test]
    fn without_the_peer_relation_the_unit_waits() {
        let tools = FakeTools::new("postgresql/0", true);
        let err = reconcile(&context("postgresql/0"), &tools).unwrap_err();
        assert!(err.downcast_ref::<Waiting>().is_some(), "{err:#}");
    }
}
