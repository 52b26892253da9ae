//! The charm: events to handlers, with one span per hook or action, and the
//! outcome of each mapped to what Juju sees.

pub mod event;
pub mod outcome;
pub mod passwords;
pub mod peers;
pub mod reconcile;

use std::process::ExitCode;

use anyhow::Result;

use self::event::Event;
use crate::actions;
use crate::juju::{Context, HookTools};

/// Runs the hook or action Juju dispatched.
pub fn run(ctx: &Context, tools: &dyn HookTools) -> ExitCode {
    let name = ctx.dispatch_path.rsplit('/').next().unwrap_or_default();
    let _span = tracing::info_span!("dispatch", name).entered();
    match Event::from_dispatch_path(&ctx.dispatch_path) {
        Event::Action(action) => outcome::finish_action(tools, actions::run(ctx, tools, &action)),
        hook => outcome::finish_hook(tools, handle_hook(ctx, tools, &hook)),
    }
}

fn handle_hook(ctx: &Context, tools: &dyn HookTools, event: &Event) -> Result<()> {
    match event {
        Event::UpdateStatus => reconcile::update_status(tools),
        Event::Stop | Event::Remove | Event::StorageDetaching(_) => Ok(()),
        Event::Unknown(name) => {
            tracing::debug!("nothing to do for the {name} hook");
            Ok(())
        }
        _ => reconcile::reconcile(ctx, tools),
    }
}
