//! `get-primary`: which unit runs the primary, as the peer app bag says.

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::charm::peers::Peers;
use crate::juju::{action, Context, HookTools};

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // The leader records the primary in the peer app bag.
    let peers = Peers::load(tools, ctx)?
        .context("the peer relation does not exist yet: try again once the unit is installed")?;
    let primary = peers.app_data.primary.context(
        "the cluster has no primary yet: the leader initialises it once its unit is set up; try again in a moment",
    )?;

    action::set_results(tools, &json!({ "primary": primary }))
}
