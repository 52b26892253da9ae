//! Settling the model: running queued hooks one at a time until none is
//! left for a unit that is not in error, committing each, applying the
//! membership changes hooks stand for, and saving after every hook.

use anyhow::{Context as _, Result};

use crate::charm::CharmMeta;
use crate::context::{new_context_id, HookContext};
use crate::debuglog;
use crate::model::{Model, ModelDir, Status};
use crate::queue::{self, QueuedHook};
use crate::runner::{self, Output, Program, RunResult};

/// A new hook context for `hook` on its unit, over a copy of `model`.
pub fn context(md: &ModelDir, model: &Model, hook: QueuedHook) -> Result<HookContext> {
    let app = crate::model::unit_app(&hook.unit).to_string();
    let meta = CharmMeta::load(&md.charm_dir(&app))?;
    let what = if hook.name.is_empty() {
        "run"
    } else {
        &hook.name
    };
    Ok(HookContext {
        id: new_context_id(&hook.unit, what),
        unit: hook.unit.clone(),
        hook,
        action: None,
        meta,
        model_dir: md.root.clone(),
        work: model.clone(),
        immediate: Vec::new(),
    })
}

/// Membership changes a hook stands for, applied as it starts.
fn before(model: &mut Model, h: &QueuedHook) {
    let (Some(rid), Some(remote)) = (h.relation, h.remote_unit.as_ref()) else {
        return;
    };
    let Some(rel) = model.relations.get_mut(&rid) else {
        return;
    };
    if h.is_relation("joined") {
        rel.joined
            .entry(h.unit.clone())
            .or_default()
            .insert(remote.clone());
    } else if h.is_relation("departed") {
        rel.joined.entry(h.unit.clone()).or_default().remove(remote);
    }
}

/// Changes a hook stands for once it succeeded: broken relations, removed units.
fn after(md: &ModelDir, model: &mut Model, h: &QueuedHook) {
    if h.is_relation("broken") {
        if let Some(rel) = h.relation.and_then(|id| model.relations.get_mut(&id)) {
            rel.broken.insert(h.unit.clone());
            rel.joined.remove(&h.unit);
        }
        prune_relations(model);
    }
    if h.name == "remove" && model.units.get(&h.unit).is_some_and(|u| u.dying) {
        remove_unit(md, model, &h.unit);
    }
}

/// Deletes dying relations every unit has left.
fn prune_relations(model: &mut Model) {
    let gone: Vec<u64> = model
        .relations
        .values()
        .filter(|r| r.dying && model.relation_units(r).is_empty())
        .map(|r| r.id)
        .collect();
    for id in gone {
        model.relations.remove(&id);
    }
}

/// Forgets a unit after its `remove` hook; elects a new leader when it led.
pub fn remove_unit(md: &ModelDir, model: &mut Model, unit: &str) {
    model.units.remove(unit);
    model.queue.retain(|h| h.unit != unit);
    for rel in model.relations.values_mut() {
        rel.joined.remove(unit);
        rel.broken.remove(unit);
    }
    let _ = std::fs::remove_dir_all(md.unit_dir(unit));
    let app = crate::model::unit_app(unit).to_string();
    let was_leader = model
        .apps
        .get(&app)
        .and_then(|a| a.leader.clone())
        .as_deref()
        == Some(unit);
    if was_leader {
        let next = model
            .units_of(&app)
            .into_iter()
            .find(|u| !model.units[u].dying);
        if let Some(a) = model.apps.get_mut(&app) {
            a.leader = next.clone();
        }
        if let Some(n) = next {
            queue::push(&mut model.queue, QueuedHook::simple(&n, "leader-elected"));
        }
    }
    prune_relations(model);
}

/// Logs a finished run's output and outcome to debug.log.
pub fn log_run(md: &ModelDir, unit: &str, what: &str, r: &RunResult, ok_msg: &str, fail_msg: &str) {
    let module = format!("unit.{unit}.{what}");
    if !r.stdout.is_empty() {
        debuglog::append(&md.root, unit, "DEBUG", &module, r.stdout.trim_end());
    }
    if !r.stderr.is_empty() {
        debuglog::append(&md.root, unit, "WARNING", &module, r.stderr.trim_end());
    }
    let op = "juju.worker.uniter.operation";
    if r.code == 0 {
        debuglog::append(&md.root, unit, "INFO", op, ok_msg);
    } else {
        debuglog::append(&md.root, unit, "ERROR", op, fail_msg);
    }
}

/// How one hook run went.
pub struct Outcome {
    pub code: i32,
    pub wall: std::time::Duration,
    pub max_rss_kib: i64,
    /// `hook "x" failed on u/0: exit status N` when it failed.
    pub error: Option<String>,
}

/// Runs one queued hook and commits it (or keeps only its immediate writes).
pub fn run_hook(md: &ModelDir, model: &mut Model, hook: QueuedHook) -> Result<Outcome> {
    before(model, &hook);
    if let Some(u) = model.units.get_mut(&hook.unit) {
        u.agent = "executing".into();
    }
    let ctx = context(md, model, hook.clone())?;
    let r = match crate::builtin::of_unit(model, &hook.unit) {
        Some(name) => crate::builtin::run(md, ctx, &name),
        None => runner::run(md, ctx, Program::Dispatch, Output::Capture)
            .with_context(|| format!("cannot run hook {:?} on {}", hook.name, hook.unit))?,
    };
    let via = "(via hook dispatching script: dispatch)";
    let ok = format!("ran {:?} hook {via}", hook.name);
    let bad = format!("hook {:?} {via} failed: exit status {}", hook.name, r.code);
    log_run(md, &hook.unit, &hook.name, &r, &ok, &bad);
    let base = std::mem::take(model);
    let RunResult {
        ctx,
        code,
        wall,
        max_rss_kib,
        ..
    } = r;
    *model = ctx.finish(base, code == 0);
    let mut outcome = Outcome {
        code,
        wall,
        max_rss_kib,
        error: None,
    };
    if code == 0 {
        if let Some(u) = model.units.get_mut(&hook.unit) {
            u.agent = "idle".into();
            u.agent_message.clear();
            if hook.name == "install"
                && u.workload.status == "waiting"
                && u.workload.message == "agent initialising"
            {
                u.workload = Status::new("unknown", "");
            }
        }
        after(md, model, &hook);
        Ok(outcome)
    } else {
        if let Some(u) = model.units.get_mut(&hook.unit) {
            u.agent = "error".into();
            u.agent_message = format!("hook failed: {:?}", hook.name);
        }
        model.queue.insert(0, hook.clone());
        outcome.error = Some(format!(
            "hook {:?} failed on {}: exit status {code}",
            hook.name, hook.unit
        ));
        Ok(outcome)
    }
}

/// The next hook to run: the first queued one whose unit exists and is not in error.
fn next(model: &mut Model) -> Option<QueuedHook> {
    model.queue.retain(|h| model.units.contains_key(&h.unit));
    let i = model
        .queue
        .iter()
        .position(|h| model.units.get(&h.unit).is_some_and(|u| u.agent != "error"))?;
    Some(model.queue.remove(i))
}

/// Runs queued hooks until none can run; returns the failures, in order.
pub fn settle(md: &ModelDir, model: &mut Model) -> Result<Vec<String>> {
    let mut errors = Vec::new();
    while let Some(h) = next(model) {
        if let Some(e) = run_hook(md, model, h)?.error {
            errors.push(e);
        }
        md.save(model)?;
    }
    md.save(model)?;
    Ok(errors)
}
