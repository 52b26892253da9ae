//! relation-ids, relation-list, relation-get and relation-set: relation
//! ids as `-r` values, databag read permissions, buffered writes.

use serde_json::Value;

use super::{
    check_empty, check_format, fail, key_values, output, parse, read_file_arg, settings_from_yaml,
    usage, Fail, Out, SMART,
};
use crate::client::Request;
use crate::context::HookContext;
use crate::flags::{flag_with_minus, Kind, Parsed, Spec};

pub fn run(ctx: &mut HookContext, req: &Request) -> Out {
    match req.command.as_str() {
        "relation-ids" => ids(ctx, &req.args),
        "relation-list" => list(ctx, &req.args),
        "relation-get" => get(ctx, &req.args),
        _ => set(ctx, req),
    }
}

/// The relation `-r`/`--relation` names, or the hook's own relation.
/// Errors are gnuflag's `invalid value "X" for option -r: ...` (exit 2).
fn relation_id(ctx: &HookContext, p: &Parsed) -> Result<Option<u64>, Fail> {
    let Some((_, name, value)) = p.given.iter().rev().find(|(c, _, _)| *c == "r") else {
        return Ok(ctx.hook.relation);
    };
    let trim = value.rsplit(':').next().unwrap_or(value);
    let bad = |why: &str| {
        usage(format!(
            "invalid value {value:?} for option {}: {why}",
            flag_with_minus(name)
        ))
    };
    let id: u64 = trim.parse().map_err(|_| bad("invalid relation id"))?;
    if !ctx.work.relations_of_unit(&ctx.unit).contains(&id) {
        return Err(bad("relation not found"));
    }
    Ok(Some(id))
}

fn rel_spec() -> Spec {
    Spec::new().format().flag(&["r", "relation"], Kind::Value)
}

fn ids(ctx: &mut HookContext, args: &[String]) -> Out {
    let p = parse(&rel_spec(), args)?;
    check_format(&p, SMART)?;
    let mut rest = p.args.clone();
    let name = if rest.is_empty() {
        match ctx.hook.relation.and_then(|id| ctx.work.relations.get(&id)) {
            Some(r) => r
                .end_of(ctx.app())
                .map(|e| e.endpoint.clone())
                .unwrap_or_default(),
            None => return Err(usage("no endpoint name specified")),
        }
    } else {
        rest.remove(0)
    };
    check_empty(&rest)?;
    let mut keys: Vec<String> = ctx
        .work
        .relations_of_unit(&ctx.unit)
        .into_iter()
        .filter_map(|id| ctx.work.relations.get(&id))
        .filter(|r| r.end_of(ctx.app()).is_some_and(|e| e.endpoint == name))
        .map(|r| r.key_for(ctx.app()))
        .collect();
    keys.sort();
    let v = Value::from(keys);
    output(&p, "smart", SMART, Some(&v))
}

fn list(ctx: &mut HookContext, args: &[String]) -> Out {
    let spec = rel_spec().flag(&["app"], Kind::Bool);
    let p = parse(&spec, args)?;
    check_format(&p, SMART)?;
    let id = relation_id(ctx, &p)?.ok_or_else(|| usage("no relation id specified"))?;
    check_empty(&p.args)?;
    let rel = &ctx.work.relations[&id];
    if p.on("app") {
        let app = rel.remote_app(ctx.app()).unwrap_or_default();
        return output(&p, "smart", SMART, Some(&Value::from(app)));
    }
    let units: Vec<String> = rel
        .joined
        .get(&ctx.unit)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    output(&p, "smart", SMART, Some(&Value::from(units)))
}

fn is_valid_unit(s: &str) -> bool {
    s.split_once('/').is_some_and(|(a, n)| {
        is_valid_app(a) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

fn is_valid_app(s: &str) -> bool {
    let re = regex::Regex::new(r"^[a-z][a-z0-9]*(-[a-z0-9]*[a-z][a-z0-9]*)*$").ok();
    re.is_some_and(|r| r.is_match(s))
}

fn get(ctx: &mut HookContext, args: &[String]) -> Out {
    let spec = rel_spec().flag(&["app"], Kind::Bool);
    let p = parse(&spec, args)?;
    check_format(&p, SMART)?;
    let id = relation_id(ctx, &p)?.ok_or_else(|| usage("no relation id specified"))?;
    let mut rest = p.args.clone();
    let mut key = String::new();
    if !rest.is_empty() {
        key = rest.remove(0);
        if key == "-" {
            key.clear();
        }
    }
    let mut app_mode = p.on("app");
    let target = if !rest.is_empty() {
        let given = rest.remove(0);
        if app_mode {
            if is_valid_unit(&given) {
                crate::model::unit_app(&given).to_string()
            } else {
                given
            }
        } else if !is_valid_unit(&given) {
            if is_valid_app(&given) {
                return Err(usage(format!(
                    "expected unit name, got application name {given:?}"
                )));
            }
            return Err(usage(format!("invalid unit name {given:?}")));
        } else {
            given
        }
    } else if app_mode {
        ctx.hook
            .remote_app
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| usage("no unit or application specified"))?
    } else if let Some(u) = ctx.hook.remote_unit.clone().filter(|u| !u.is_empty()) {
        u
    } else if let Some(a) = ctx.hook.remote_app.clone().filter(|a| !a.is_empty()) {
        app_mode = true;
        a
    } else {
        return Err(usage("no unit or application specified"));
    };
    check_empty(&rest)?;
    let rel = &ctx.work.relations[&id];
    let bag = if app_mode {
        if !rel.has_app(&target) {
            return Err(fail("permission denied"));
        }
        if target == ctx.app() && !ctx.is_leader() && !rel.is_peer() {
            return Err(fail("permission denied"));
        }
        rel.app_bags.get(&target).cloned().unwrap_or_default()
    } else {
        if !rel.has_app(crate::model::unit_app(&target)) {
            return Err(fail("permission denied"));
        }
        rel.unit_bags.get(&target).cloned().unwrap_or_default()
    };
    if key.is_empty() {
        let v = serde_json::to_value(&bag).map_err(|e| fail(e.to_string()))?;
        return output(&p, "smart", SMART, Some(&v));
    }
    let v = bag.get(&key).map(|s| Value::from(s.as_str()));
    output(&p, "smart", SMART, v.as_ref())
}

fn set(ctx: &mut HookContext, req: &Request) -> Out {
    let spec = Spec::new()
        .flag(&["r", "relation"], Kind::Value)
        .flag(&["app"], Kind::Bool)
        .flag(&["file"], Kind::Value)
        .format();
    let p = parse(&spec, &req.args)?;
    let id = relation_id(ctx, &p)?.ok_or_else(|| usage("no relation id specified"))?;
    let from_args = key_values(&p.args)?;
    let mut settings = Vec::new();
    if let Some(path) = p.value("file") {
        settings = settings_from_yaml(&read_file_arg(req, path)?)?;
    }
    settings.extend(from_args);
    let app = p.on("app");
    if app && !ctx.is_leader() {
        return Err(fail("cannot write relation settings"));
    }
    let owner = if app {
        ctx.app().to_string()
    } else {
        ctx.unit.clone()
    };
    let rel = ctx
        .work
        .relations
        .get_mut(&id)
        .ok_or_else(|| fail("relation not found"))?;
    let bag = if app {
        rel.app_bags.entry(owner).or_default()
    } else {
        rel.unit_bags.entry(owner).or_default()
    };
    for (k, v) in settings {
        if v.is_empty() {
            bag.remove(&k);
        } else {
            bag.insert(k, v);
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_unit("postgresql/0"));
        assert!(is_valid_unit("s3-integrator/12"));
        assert!(!is_valid_unit("postgresql"));
        assert!(is_valid_app("postgresql"));
        assert!(is_valid_app("s3-integrator"));
        assert!(!is_valid_app("Bad"));
    }
}
