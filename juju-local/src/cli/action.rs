//! `run`: an action as `juju run` (Juju 3.6) runs it — params parsed as
//! YAML (dotted keys nest), validated against the action's schema with
//! defaults inserted before the charm runs, progress on stderr, results as
//! YAML (or the task as JSON/YAML), exit 1 on a non-zero return code.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Map, Value};

use super::{parse, report};
use crate::context::ActionState;
use crate::flags::{Kind, Spec};
use crate::model::ModelDir;
use crate::queue::QueuedHook;
use crate::runner::{self, Output, Program};

/// Parses `k=v` action arguments: YAML values unless `string_args`, dotted keys nest.
pub fn action_params(args: &[String], string_args: bool) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("argument {a:?} must be of the form key...=value"))?;
        let value = if string_args {
            Value::String(v.to_string())
        } else {
            serde_yaml::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_string()))
        };
        let value = if value.is_null() && !v.is_empty() && v != "null" && v != "~" {
            Value::String(v.to_string())
        } else {
            value
        };
        let mut segs: Vec<&str> = k.split('.').collect();
        let last = segs.pop().unwrap_or(k);
        let mut cur = &mut out;
        for s in segs {
            let e = cur
                .entry(s.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            let Value::Object(next) = e else {
                unreachable!()
            };
            cur = next;
        }
        cur.insert(last.to_string(), value);
    }
    Ok(out)
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

pub fn run(dir: &Path, args: &[String]) -> Result<i32> {
    let spec = Spec::new()
        .flag(&["params"], Kind::Value)
        .flag(&["string-args"], Kind::Bool)
        .flag(&["format"], Kind::Value)
        .flag(&["wait"], Kind::Value)
        .flag(&["background"], Kind::Bool);
    let p = parse(&spec, args)?;
    let format = p.value("format").unwrap_or("plain").to_string();
    if !["plain", "yaml", "json"].contains(&format.as_str()) {
        bail!("invalid value {format:?} for option --format: unknown format {format:?}");
    }
    let [target, action, kvs @ ..] = p.args.as_slice() else {
        bail!("no unit specified");
    };
    let mut params = Map::new();
    if let Some(f) = p.value("params") {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {f}"))?;
        match serde_yaml::from_str::<Value>(&text).with_context(|| format!("cannot parse {f}"))? {
            Value::Object(m) => params = m,
            Value::Null => {}
            _ => bail!("params file {f} must hold a map"),
        }
    }
    merge(&mut params, action_params(kvs, p.on("string-args"))?);

    let md = ModelDir::open(dir, false)?;
    let mut model = md.load()?;
    let unit = if let Some(app) = target.strip_suffix("/leader") {
        model
            .app(app)?
            .leader
            .clone()
            .with_context(|| format!("application {app:?} has no leader"))?
    } else {
        model.unit(target)?;
        target.clone()
    };
    let app = crate::model::unit_app(&unit).to_string();
    let meta = crate::charm::CharmMeta::load(&md.charm_dir(&app))?;
    let schema = meta
        .actions
        .get(action.as_str())
        .with_context(|| format!("action {action:?} not defined on unit {unit:?}"))?;
    crate::schema::validate(schema, &Value::Object(params.clone())).map_err(anyhow::Error::msg)?;
    crate::schema::insert_defaults(schema, &mut params);

    model.next_action_id += 1;
    let op = model.next_action_id;
    model.next_action_id += 1;
    let task = model.next_action_id;
    md.save(&model)?;
    let tag = crate::debuglog::tag(&unit);
    let plain = format == "plain";
    if plain {
        eprintln!("Running operation {op} with 1 task");
        eprintln!("  - task {task} on {tag}");
        eprintln!();
        eprintln!("Waiting for task {task}...");
    }
    let enqueued = crate::fsutil::rfc3339_now();
    let mut ctx = crate::settle::context(&md, &model, QueuedHook::simple(&unit, ""))?;
    ctx.action = Some(ActionState {
        name: action.clone(),
        id: task,
        params,
        stream: plain,
        ..Default::default()
    });
    let started = crate::fsutil::rfc3339_now();
    let r = match crate::builtin::of_unit(&model, &unit) {
        Some(name) => crate::builtin::run(&md, ctx, &name),
        None => runner::run(&md, ctx, Program::Dispatch, Output::Capture)?,
    };
    let completed = crate::fsutil::rfc3339_now();
    let ok = format!("ran {action:?} action");
    let bad = format!("action {action:?} failed: exit status {}", r.code);
    crate::settle::log_run(&md, &unit, action, &r, &ok, &bad);
    let state = r
        .ctx
        .action
        .as_ref()
        .map(|a| (a.results.clone(), a.failed.clone(), a.logs.clone()));
    let (results, failed, logs) = state.unwrap_or_default();
    let base = std::mem::take(&mut model);
    model = r.ctx.finish(base, r.code == 0);
    md.save(&model)?;

    let (status, message) = match (&failed, r.code) {
        (Some(m), _) => ("failed", m.clone()),
        (None, 0) => ("completed", String::new()),
        (None, c) => ("failed", format!("exit status {c}")),
    };
    if plain {
        if status == "failed" {
            println!("Action id {task} failed: {message}");
        }
        if !results.is_empty() {
            print!("{}", crate::format::yaml(&Value::Object(results.clone())));
        }
        print!("{}", r.stdout);
        eprint!("{}", r.stderr);
    } else {
        let mut res = results.clone();
        res.insert("return-code".into(), json!(r.code));
        if !r.stdout.is_empty() {
            res.insert("stdout".into(), json!(r.stdout));
        }
        if !r.stderr.is_empty() {
            res.insert("stderr".into(), json!(r.stderr));
        }
        let mut t = json!({
            "id": task.to_string(),
            "status": status,
            "unit": unit,
            "results": res,
            "timing": {"enqueued": enqueued, "started": started, "completed": completed},
        });
        if !message.is_empty() {
            t["message"] = json!(message);
        }
        if !logs.is_empty() {
            let l: Vec<String> = logs.iter().map(|(ts, m)| format!("{ts} {m}")).collect();
            t["log"] = json!(l);
        }
        let out = json!({ unit.clone(): t });
        if format == "json" {
            println!("{}", serde_json::to_string(&out)?);
        } else {
            print!("{}", crate::format::yaml(&out));
        }
    }
    let errors = crate::settle::settle(&md, &mut model)?;
    let mut code = report(&errors);
    if r.code != 0 {
        eprintln!("ERROR the following task failed:");
        eprintln!(" - id {:?} with return code {}", task.to_string(), r.code);
        code = 1;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_yaml_and_nest() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let p = action_params(&s(&["a=1", "b.c=true", "d=x y", "e="]), false).unwrap();
        assert_eq!(
            Value::Object(p),
            json!({"a": 1, "b": {"c": true}, "d": "x y", "e": null})
        );
        let p = action_params(&s(&["a=1"]), true).unwrap();
        assert_eq!(Value::Object(p), json!({"a": "1"}));
    }
}
