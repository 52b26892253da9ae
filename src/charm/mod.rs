//! The charm: events to handlers, with one span per hook or action, and the
//! outcome of each mapped to what Juju sees.

pub mod archiving;
pub mod backup_options;
pub mod cluster;
pub mod config;
pub mod encryption;
pub mod event;
pub mod outcome;
pub mod passwords;
pub mod peers;
pub mod restore;
pub mod s3;
pub mod tls;
pub mod trash;
pub mod workload;

use std::process::ExitCode;

use anyhow::Result;

use self::event::{Endpoint, Event, RelationEvent};
use crate::actions;
use crate::juju::{Context, HookTools};

/// Runs the hook or action Juju dispatched.
pub fn run(ctx: &Context, tools: &dyn HookTools) -> ExitCode {
    let name = ctx.dispatch_path.rsplit('/').next().unwrap_or_default();
    let _span = tracing::info_span!("dispatch", name).entered();
    match Event::from_dispatch_path(&ctx.dispatch_path) {
        Event::Action(action) => outcome::finish_action(tools, actions::run(ctx, tools, &action)),
        hook => {
            // What an earlier restore replaced goes now, if it is not gone yet.
            if !matches!(
                hook,
                Event::Stop | Event::Remove | Event::StorageDetaching(_)
            ) {
                if let Some(storage) = workload::Workload::cached_storage(ctx) {
                    trash::empty_in_background(&storage);
                }
            }
            outcome::finish_hook(tools, handle_hook(ctx, tools, &hook))
        }
    }
}

fn handle_hook(ctx: &Context, tools: &dyn HookTools, event: &Event) -> Result<()> {
    match event {
        Event::UpdateStatus => cluster::update_status(ctx, tools),
        // A unit leaving the cluster stops its server and does nothing more:
        // the peer relation is broken only on a unit that is going away.
        Event::Stop | Event::Remove | Event::StorageDetaching(_) => cluster::stop(ctx),
        Event::Relation(Endpoint::Peers, RelationEvent::Broken) => cluster::stop(ctx),
        Event::Relation(Endpoint::Peers, RelationEvent::Departed) if leaving(ctx) => {
            cluster::stop(ctx)
        }
        Event::Unknown(name) => {
            tracing::debug!("nothing to do for the {name} hook");
            Ok(())
        }
        _ => cluster::reconcile(ctx, tools),
    }
}

/// True in the departed hook this unit runs as it leaves the cluster.
fn leaving(ctx: &Context) -> bool {
    ctx.relation
        .as_ref()
        .and_then(|r| r.departing_unit.as_deref())
        == Some(ctx.unit.as_str())
}
