//! `promote-to-primary [unit=…]`: a switchover, on the leader. The unit
//! named (this one by default) takes over as the primary once it has all of
//! the current primary's WAL; the former primary rejoins as its replica by
//! `pg_rewind`.

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::json;

use crate::charm::cluster;
use crate::juju::{action, Context, HookTools};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    unit: Option<String>,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // Which unit: the one named, which must be of this application.
    let params: Params = action::params(tools)?;
    let target = params.unit.unwrap_or_else(|| ctx.unit.clone());
    check_unit_name(&ctx.app, &target)?;

    // Only the leader records the primary.
    if !tools.is_leader()? {
        bail!(
            "only the leader can change the primary: run `juju run {}/leader \
             promote-to-primary unit={target}`",
            ctx.app
        );
    }

    // Fence the primary, let the target catch up, record and promote it.
    action::log(tools, &format!("switching the primary over to {target}"));
    let switched = cluster::switchover(ctx, tools, &target)?;
    tracing::info!(
        "{} is the primary; {} rejoins as a replica",
        switched.primary,
        switched.former
    );
    action::set_results(
        tools,
        &json!({
            "primary": switched.primary,
            "former-primary": switched.former,
            "switched-at-lsn": switched.fenced_at,
        }),
    )
}

/// A unit of `app`: `<app>/<number>`.
fn check_unit_name(app: &str, unit: &str) -> Result<()> {
    let number = unit
        .strip_prefix(app)
        .and_then(|rest| rest.strip_prefix('/'));
    match number {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => bail!(
            "unit={unit:?} is not a unit of {app}: name one as {app}/<number>, for example {app}/1"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::testing::context;
    use crate::juju::fake::FakeTools;

    #[test]
    fn refuses_bad_requests_before_touching_anything() {
        let cases = [
            (true, json!({"unit": "other/1"}), "not a unit of postgresql"),
            (true, json!({"unit": "postgresql/x"}), "postgresql/<number>"),
            (true, json!({"unit": "postgresql/"}), "postgresql/<number>"),
            (true, json!({"unit": ""}), "not a unit of postgresql"),
            (true, json!({"units": "postgresql/1"}), "unknown field"),
            (
                false,
                json!({"unit": "postgresql/1"}),
                "juju run postgresql/leader promote-to-primary unit=postgresql/1",
            ),
            (
                false,
                json!({}),
                "juju run postgresql/leader promote-to-primary unit=postgresql/0",
            ),
        ];
        for (leader, params, want) in cases {
            let tools = FakeTools::new("postgresql/0", leader);
            tools.state.borrow_mut().params = params.as_object().unwrap().clone();
            let err = run(&context("postgresql/0", "promote-to-primary"), &tools).unwrap_err();
            assert!(format!("{err:#}").contains(want), "{err:#}");
            assert!(tools.state.borrow().bags.is_empty(), "nothing is written");
        }
    }
}
