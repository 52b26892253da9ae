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
pub mod scheduled;
pub mod timer;
pub mod tls;
pub mod trash;
pub mod workload;

use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

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
            let leaving = matches!(
                hook,
                Event::Stop | Event::Remove | Event::StorageDetaching(_)
            );
            if let Some(storage) = workload::Workload::cached_storage(ctx) {
                if leaving {
                    // No more scheduled backups from a unit going away.
                    if let Err(err) = timer::disarm(&storage) {
                        tracing::warn!("{err:#}");
                    }
                } else {
                    // What an earlier restore replaced goes now, if it is
                    // not gone yet.
                    trash::empty_in_background(&storage);
                }
            }
            let handled = handle_hook(ctx, tools, &hook);
            if handled.is_err() {
                cluster::remember_outcome(ctx, false);
            }
            // The backup timer runs while a schedule is set (the hook may
            // just have set it).
            if !leaving {
                if let Some(storage) = workload::Workload::cached_storage(ctx) {
                    timer::keep_running(&ctx.unit, &storage);
                }
            }
            outcome::finish_hook(tools, handled)
        }
    }
}

/// Runs one tick of the backup timer (`backup-tick`), at `at` or now.
pub fn tick(ctx: &Context, tools: &dyn HookTools, at: Option<DateTime<Utc>>) -> ExitCode {
    let _span = tracing::info_span!("dispatch", name = timer::TICK).entered();
    outcome::finish_hook(tools, scheduled::tick(ctx, tools, at))
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
