//! A hook context: what one hook, action or exec run sees and does. Buffered
//! writes (relation-set, state, ports, secrets) go to a working copy of the
//! model that replaces it only on commit; immediate writes (status-set,
//! application-version-set, leader-set) are also recorded so that they
//! survive a failed hook. Commit derives the hooks other units get.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::charm::CharmMeta;
use crate::model::{Model, Status};
use crate::queue::{self, QueuedHook};

/// An immediate write, replayed on the committed model when the hook fails.
#[derive(Debug, Clone)]
pub enum Immediate {
    UnitStatus(String, Status),
    AppStatus(String, Status),
    AppVersion(String, String),
    LeaderSettings(String, crate::model::Bag),
}

#[derive(Debug, Default)]
pub struct ActionState {
    pub name: String,
    pub id: u64,
    pub params: Map<String, Value>,
    pub results: Map<String, Value>,
    pub failed: Option<String>,
    /// (HH:MM:SS, message) as action-log sent them.
    pub logs: Vec<(String, String)>,
    /// Print action-log lines on stderr as they arrive (`run` in plain format).
    pub stream: bool,
}

pub struct HookContext {
    pub id: String,
    pub unit: String,
    /// The hook (name, relation, remote unit/app, ...); for actions and exec, the name is empty.
    pub hook: QueuedHook,
    pub action: Option<ActionState>,
    pub meta: CharmMeta,
    pub model_dir: PathBuf,
    /// The working copy: the committed model plus this context's writes.
    pub work: Model,
    pub immediate: Vec<Immediate>,
}

impl HookContext {
    pub fn app(&self) -> &str {
        crate::model::unit_app(&self.unit)
    }

    pub fn is_leader(&self) -> bool {
        self.work.is_leader(&self.unit)
    }

    pub fn apply_immediate(&mut self, w: Immediate) {
        apply(&mut self.work, &w);
        self.immediate.push(w);
    }

    /// The model after this context: `work` plus derived hooks when committing,
    /// else `base` plus the immediate writes.
    pub fn finish(self, base: Model, commit: bool) -> Model {
        if !commit {
            let mut m = base;
            for w in &self.immediate {
                apply(&mut m, w);
            }
            return m;
        }
        let mut next = self.work;
        let derived = derive_hooks(&base, &next, &self.unit);
        for h in derived {
            queue::push(&mut next.queue, h);
        }
        next
    }
}

fn apply(m: &mut Model, w: &Immediate) {
    match w {
        Immediate::UnitStatus(u, s) => {
            if let Some(unit) = m.units.get_mut(u) {
                unit.workload = s.clone();
            }
        }
        Immediate::AppStatus(a, s) => {
            if let Some(app) = m.apps.get_mut(a) {
                app.status = Some(s.clone());
            }
        }
        Immediate::AppVersion(a, v) => {
            if let Some(app) = m.apps.get_mut(a) {
                app.version = v.clone();
            }
        }
        Immediate::LeaderSettings(a, bag) => {
            if let Some(app) = m.apps.get_mut(a) {
                app.leader_settings = bag.clone();
            }
        }
    }
}

/// The hooks a committed change queues on other units: `-relation-changed`
/// for databag changes, `secret-changed` for new revisions, and
/// `leader-settings-changed` for leader settings.
pub fn derive_hooks(before: &Model, after: &Model, writer: &str) -> Vec<QueuedHook> {
    let mut out = Vec::new();
    let writer_app = crate::model::unit_app(writer);
    for (rid, rel) in &after.relations {
        let Some(old) = before.relations.get(rid) else {
            continue;
        };
        if old.unit_bags.get(writer) != rel.unit_bags.get(writer) {
            for other in after.relation_units(rel) {
                if other == writer {
                    continue;
                }
                let joined = rel.joined.get(&other).is_some_and(|s| s.contains(writer));
                if joined {
                    out.push(QueuedHook::relation(&other, rel, "changed", Some(writer)));
                }
            }
        }
        if old.app_bags.get(writer_app) != rel.app_bags.get(writer_app) {
            for other in after.relation_units(rel) {
                if other == writer {
                    continue;
                }
                let other_app = crate::model::unit_app(&other);
                if !rel.is_peer() && other_app == writer_app {
                    continue;
                }
                let mut h = QueuedHook::relation(&other, rel, "changed", None);
                h.remote_app = Some(writer_app.to_string());
                out.push(h);
            }
        }
    }
    // secret-changed to consumers that track an older revision.
    for (id, s) in &after.secrets {
        let old_latest = before.secrets.get(id).map(|o| o.latest()).unwrap_or(0);
        if s.latest() == old_latest {
            continue;
        }
        for (uname, unit) in &after.units {
            if uname == writer {
                continue;
            }
            if let Some(c) = unit.consumed.get(id) {
                if c.revision < s.latest() {
                    let mut h = QueuedHook::simple(uname, "secret-changed");
                    h.secret = Some(id.clone());
                    h.secret_label = c.label.clone();
                    h.secret_revision = Some(s.latest());
                    out.push(h);
                }
            }
        }
    }
    let _ = (before.apps.get(writer_app), after.apps.get(writer_app));
    out
}

/// A fresh context id: `<unit>-<hook>-<random>`, as jujud makes them.
pub fn new_context_id(unit: &str, what: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{unit}-{what}-{n}")
}
