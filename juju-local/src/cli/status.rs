//! `status` (tabular, json, yaml in the shape of `juju status`) and
//! `debug-log` (the model's log, filtered).

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Map, Value};

use super::parse;
use crate::flags::{Kind, Spec};
use crate::model::{Model, ModelDir, Status};

const SEVERITY: &[&str] = &[
    "unknown",
    "active",
    "waiting",
    "maintenance",
    "blocked",
    "error",
];

/// App status: what the leader set, else the most severe unit status.
pub fn app_status(model: &Model, app: &str) -> Status {
    if let Some(s) = model.apps.get(app).and_then(|a| a.status.clone()) {
        return s;
    }
    let mut best = Status::new("unknown", "");
    for u in model.units_of(app) {
        let unit = &model.units[&u];
        let st = if unit.agent == "error" {
            Status::new("error", &unit.agent_message)
        } else {
            unit.workload.clone()
        };
        let rank = |s: &str| SEVERITY.iter().position(|x| *x == s).unwrap_or(0);
        if rank(&st.status) > rank(&best.status) {
            best = st;
        }
    }
    best
}

/// Workload status and agent status as `juju status` shows them: a hook
/// error is the workload's `error` with the agent `idle`.
fn shown(unit: &crate::model::Unit) -> (Status, String) {
    if unit.agent == "error" {
        (Status::new("error", &unit.agent_message), "idle".into())
    } else {
        (unit.workload.clone(), unit.agent.clone())
    }
}

fn to_json(md: &ModelDir, model: &Model) -> Value {
    let mut apps = Map::new();
    for (name, app) in &model.apps {
        let st = app_status(model, name);
        let mut units = Map::new();
        for u in model.units_of(name) {
            let unit = &model.units[&u];
            let (wl, agent) = shown(unit);
            let mut ws = json!({"current": wl.status});
            if !wl.message.is_empty() {
                ws["message"] = json!(wl.message);
            }
            let js = json!({"current": agent, "version": "3.6.0"});
            let mut entry = json!({
                "workload-status": ws,
                "juju-status": js,
                "machine": unit.machine.to_string(),
                "public-address": unit.address,
            });
            if model.is_leader(&u) {
                entry["leader"] = json!(true);
            }
            if !unit.ports.is_empty() {
                entry["open-ports"] = json!(unit.ports);
            }
            units.insert(u.clone(), entry);
        }
        let mut rels = Map::new();
        for r in model.relations.values().filter(|r| r.has_app(name)) {
            if let (Some(end), Some(remote)) = (r.end_of(name), r.remote_app(name)) {
                rels.insert(end.endpoint.clone(), json!([remote]));
            }
        }
        let mut s = json!({"current": st.status});
        if !st.message.is_empty() {
            s["message"] = json!(st.message);
        }
        let mut a = json!({
            "charm": app.charm,
            "charm-origin": "local",
            "application-status": s,
            "units": units,
            "relations": rels,
        });
        if !app.version.is_empty() {
            a["version"] = json!(app.version);
        }
        apps.insert(name.clone(), a);
    }
    let relations: Vec<Value> = model
        .relations
        .values()
        .map(|r| {
            let provider = &r.ends[0];
            let requirer = r.ends.get(1).unwrap_or(provider);
            json!({
                "id": r.id,
                "provider": format!("{}:{}", provider.app, provider.endpoint),
                "requirer": format!("{}:{}", requirer.app, requirer.endpoint),
                "interface": r.interface,
                "type": if r.is_peer() { "peer" } else { "regular" },
            })
        })
        .collect();
    json!({
        "model": {"name": model.name, "type": "iaas", "version": "3.6.0", "model-uuid": model.uuid, "directory": md.root.display().to_string()},
        "applications": apps,
        "relations": relations,
    })
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn tabular(md: &ModelDir, model: &Model) -> String {
    let mut out = table(&[
        vec!["Model".into(), "Version".into(), "Directory".into()],
        vec![
            "local".into(),
            "3.6.0".into(),
            md.root.display().to_string(),
        ],
    ]);
    out.push('\n');
    if model.apps.is_empty() {
        out.push_str("Model \"local\" is empty.\n");
        return out;
    }
    let mut rows = vec![["App", "Version", "Status", "Scale", "Charm", "Message"]
        .map(String::from)
        .to_vec()];
    for (name, app) in &model.apps {
        let st = app_status(model, name);
        let scale = model.units_of(name).len().to_string();
        rows.push(vec![
            name.clone(),
            app.version.clone(),
            st.status,
            scale,
            app.charm.clone(),
            st.message,
        ]);
    }
    out.push_str(&table(&rows));
    out.push('\n');
    let mut rows = vec![["Unit", "Workload", "Agent", "Address", "Ports", "Message"]
        .map(String::from)
        .to_vec()];
    for (name, unit) in &model.units {
        let star = if model.is_leader(name) { "*" } else { "" };
        let (wl, agent) = shown(unit);
        let ports: Vec<&str> = unit.ports.iter().map(String::as_str).collect();
        rows.push(vec![
            format!("{name}{star}"),
            wl.status,
            agent,
            unit.address.clone(),
            ports.join(","),
            wl.message,
        ]);
    }
    out.push_str(&table(&rows));
    if !model.relations.is_empty() {
        out.push('\n');
        let mut rows = vec![["Integration provider", "Requirer", "Interface", "Type"]
            .map(String::from)
            .to_vec()];
        for r in model.relations.values() {
            let p = &r.ends[0];
            let q = r.ends.get(1).unwrap_or(p);
            rows.push(vec![
                format!("{}:{}", p.app, p.endpoint),
                format!("{}:{}", q.app, q.endpoint),
                r.interface.clone(),
                if r.is_peer() {
                    "peer".into()
                } else {
                    "regular".into()
                },
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

pub fn status(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new().format(), args)?;
    let md = ModelDir::open(dir, false)?;
    let model = md.load()?;
    match p.value("format").unwrap_or("tabular") {
        "tabular" => print!("{}", tabular(&md, &model)),
        "json" => println!("{}", serde_json::to_string(&to_json(&md, &model))?),
        "yaml" => print!("{}", crate::format::yaml(&to_json(&md, &model))),
        f => bail!("invalid value {f:?} for option --format: unknown format {f:?}"),
    }
    Ok(0)
}

pub fn debug_log(dir: &Path, args: &[String]) -> Result<i32> {
    let spec = Spec::new()
        .flag(&["replay"], Kind::Bool)
        .flag(&["include", "i"], Kind::Multi)
        .flag(&["level", "l"], Kind::Value)
        .flag(&["lines", "n"], Kind::Value)
        .flag(&["no-tail"], Kind::Bool);
    let p = parse(&spec, args)?;
    let path = dir.join("debug.log");
    let text = if path.exists() {
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?
    } else if dir.join("model.json").exists() {
        String::new()
    } else {
        bail!("model {} does not exist", dir.display());
    };
    let include = p.all("include");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| crate::debuglog::keep(l, &include, p.value("level")))
        .collect();
    let n = match p.value("lines") {
        Some(v) => v
            .parse::<usize>()
            .with_context(|| format!("invalid value {v:?} for option --lines"))?,
        None if p.on("replay") => lines.len(),
        None => 10,
    };
    for l in &lines[lines.len().saturating_sub(n)..] {
        println!("{l}");
    }
    Ok(0)
}
