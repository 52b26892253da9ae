//! The hook queue: what a queued hook is, and the pure functions that decide
//! which hooks a model change queues, in Juju 3.6's order.

use serde::{Deserialize, Serialize};

use crate::charm::CharmMeta;
use crate::model::{Model, Relation};

/// One hook waiting to run on one unit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QueuedHook {
    pub unit: String,
    /// The full hook name, e.g. `database-peers-relation-joined`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_revision: Option<u32>,
}

impl QueuedHook {
    pub fn simple(unit: &str, name: &str) -> QueuedHook {
        QueuedHook {
            unit: unit.to_string(),
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// A relation hook for `unit` in `rel`; `remote_unit` empty for created/broken/app-changed.
    pub fn relation(unit: &str, rel: &Relation, kind: &str, remote_unit: Option<&str>) -> Self {
        let app = crate::model::unit_app(unit);
        let endpoint = rel
            .end_of(app)
            .map(|e| e.endpoint.clone())
            .unwrap_or_default();
        QueuedHook {
            unit: unit.to_string(),
            name: format!("{endpoint}-relation-{kind}"),
            relation: Some(rel.id),
            remote_unit: remote_unit.map(str::to_string),
            remote_app: rel.remote_app(app),
            ..Default::default()
        }
    }

    pub fn is_relation(&self, kind: &str) -> bool {
        self.relation.is_some() && self.name.ends_with(&format!("-relation-{kind}"))
    }
}

/// Appends a hook unless the very same hook is already waiting.
pub fn push(queue: &mut Vec<QueuedHook>, hook: QueuedHook) {
    if !queue.contains(&hook) {
        queue.push(hook);
    }
}

/// The hooks a new unit runs at deploy/add-unit, up to `start` included.
pub fn unit_setup(model: &Model, meta: &CharmMeta, unit: &str) -> Vec<QueuedHook> {
    let mut out = Vec::new();
    if let Some(u) = model.units.get(unit) {
        for (name, st) in &u.storage {
            let mut h = QueuedHook::simple(unit, &format!("{name}-storage-attached"));
            h.storage = Some(st.id.clone());
            out.push(h);
        }
    }
    out.push(QueuedHook::simple(unit, "install"));
    for rid in model.relations_of_unit(unit) {
        let rel = &model.relations[&rid];
        out.push(QueuedHook::relation(unit, rel, "created", None));
    }
    let lead = if model.is_leader(unit) {
        "leader-elected"
    } else {
        "leader-settings-changed"
    };
    out.push(QueuedHook::simple(unit, lead));
    out.push(QueuedHook::simple(unit, "config-changed"));
    out.push(QueuedHook::simple(unit, "start"));
    let _ = meta;
    out
}

/// joined+changed for `unit` and every other unit of each of its relations, both ways.
pub fn unit_joins(model: &Model, unit: &str) -> Vec<QueuedHook> {
    let mut out = Vec::new();
    for rid in model.relations_of_unit(unit) {
        let rel = &model.relations[&rid];
        for other in model.relation_units(rel) {
            if other == unit || model.units.get(&other).is_some_and(|u| u.dying) {
                continue;
            }
            out.push(QueuedHook::relation(&other, rel, "joined", Some(unit)));
            out.push(QueuedHook::relation(&other, rel, "changed", Some(unit)));
            out.push(QueuedHook::relation(unit, rel, "joined", Some(&other)));
            out.push(QueuedHook::relation(unit, rel, "changed", Some(&other)));
        }
    }
    out
}

/// After integrate: created on every unit of both apps, then joined/changed for every remote unit.
pub fn relation_established(model: &Model, rel: &Relation) -> Vec<QueuedHook> {
    let units = model.relation_units(rel);
    let mut out: Vec<QueuedHook> = units
        .iter()
        .map(|u| QueuedHook::relation(u, rel, "created", None))
        .collect();
    for u in &units {
        for r in remote_units(model, rel, u) {
            out.push(QueuedHook::relation(u, rel, "joined", Some(&r)));
            out.push(QueuedHook::relation(u, rel, "changed", Some(&r)));
        }
    }
    out
}

/// remove-relation: departed for every remote unit, then broken, on each unit.
pub fn relation_removed(model: &Model, rel: &Relation) -> Vec<QueuedHook> {
    let mut out = Vec::new();
    for u in model.relation_units(rel) {
        let seen = rel.joined.get(&u).cloned().unwrap_or_default();
        for r in seen {
            let mut h = QueuedHook::relation(&u, rel, "departed", Some(&r));
            h.departing = Some(r.clone());
            out.push(h);
        }
        out.push(QueuedHook::relation(&u, rel, "broken", None));
    }
    out
}

/// remove-unit: departed on both sides, then the unit's own teardown.
pub fn unit_teardown(model: &Model, unit: &str) -> Vec<QueuedHook> {
    let mut out = Vec::new();
    let rels = model.relations_of_unit(unit);
    for rid in &rels {
        let rel = &model.relations[rid];
        for other in model.relation_units(rel) {
            if other == unit {
                continue;
            }
            if rel.joined.get(&other).is_some_and(|s| s.contains(unit)) {
                let mut h = QueuedHook::relation(&other, rel, "departed", Some(unit));
                h.departing = Some(unit.to_string());
                out.push(h);
            }
        }
        for r in rel.joined.get(unit).cloned().unwrap_or_default() {
            let mut h = QueuedHook::relation(unit, rel, "departed", Some(&r));
            h.departing = Some(unit.to_string());
            out.push(h);
        }
    }
    out.push(QueuedHook::simple(unit, "stop"));
    for rid in &rels {
        out.push(QueuedHook::relation(
            unit,
            &model.relations[rid],
            "broken",
            None,
        ));
    }
    if let Some(u) = model.units.get(unit) {
        for (name, st) in &u.storage {
            let mut h = QueuedHook::simple(unit, &format!("{name}-storage-detaching"));
            h.storage = Some(st.id.clone());
            out.push(h);
        }
    }
    out.push(QueuedHook::simple(unit, "remove"));
    out
}

/// The units on the other side of `rel` from `unit` (peers: the other units).
pub fn remote_units(model: &Model, rel: &Relation, unit: &str) -> Vec<String> {
    let app = crate::model::unit_app(unit);
    model
        .relation_units(rel)
        .into_iter()
        .filter(|u| u != unit)
        .filter(|u| rel.is_peer() || crate::model::unit_app(u) != app)
        .filter(|u| !model.units.get(u).is_some_and(|x| x.dying))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{App, End, Unit};

    fn model(n: u32) -> Model {
        let mut m = Model::default();
        m.apps.insert(
            "pg".into(),
            App {
                name: "pg".into(),
                leader: Some("pg/0".into()),
                ..Default::default()
            },
        );
        for i in 0..n {
            let name = format!("pg/{i}");
            m.units.insert(
                name.clone(),
                Unit {
                    name,
                    app: "pg".into(),
                    number: i,
                    ..Default::default()
                },
            );
        }
        m.relations.insert(
            0,
            Relation {
                id: 0,
                interface: "x".into(),
                ends: vec![End {
                    app: "pg".into(),
                    endpoint: "peers".into(),
                    role: "peer".into(),
                }],
                ..Default::default()
            },
        );
        m
    }

    #[test]
    fn setup_order_for_leader_and_follower() {
        let m = model(2);
        let names = |u| {
            unit_setup(&m, &CharmMeta::default(), u)
                .into_iter()
                .map(|h| h.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("pg/0"),
            [
                "install",
                "peers-relation-created",
                "leader-elected",
                "config-changed",
                "start"
            ]
        );
        assert_eq!(names("pg/1")[2], "leader-settings-changed");
    }

    #[test]
    fn joins_pair_joined_with_changed_both_ways() {
        let m = model(2);
        let hooks = unit_joins(&m, "pg/1");
        let got: Vec<(String, String, String)> = hooks
            .iter()
            .map(|h| {
                (
                    h.unit.clone(),
                    h.name.clone(),
                    h.remote_unit.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0],
            ("pg/0".into(), "peers-relation-joined".into(), "pg/1".into())
        );
        assert_eq!(got[1].1, "peers-relation-changed");
        assert_eq!(
            got[2],
            ("pg/1".into(), "peers-relation-joined".into(), "pg/0".into())
        );
    }

    #[test]
    fn teardown_departs_then_stops() {
        let mut m = model(2);
        let rel = m.relations.get_mut(&0).unwrap();
        rel.joined
            .insert("pg/0".into(), ["pg/1".to_string()].into());
        rel.joined
            .insert("pg/1".into(), ["pg/0".to_string()].into());
        let hooks = unit_teardown(&m, "pg/1");
        let got: Vec<String> = hooks
            .iter()
            .map(|h| format!("{} {}", h.unit, h.name))
            .collect();
        assert_eq!(
            got,
            [
                "pg/0 peers-relation-departed",
                "pg/1 peers-relation-departed",
                "pg/1 stop",
                "pg/1 peers-relation-broken",
                "pg/1 remove"
            ]
        );
        assert_eq!(hooks[0].departing.as_deref(), Some("pg/1"));
    }

    #[test]
    fn push_dedupes() {
        let mut q = Vec::new();
        push(&mut q, QueuedHook::simple("a/0", "x"));
        push(&mut q, QueuedHook::simple("a/0", "x"));
        assert_eq!(q.len(), 1);
    }
}
