//! The unit's own tools: config-get, is-leader, status-set/get, juju-log,
//! application-version-set, state-get/set/delete, storage-get/list,
//! network-get, open-port/close-port/opened-ports, leader-get/set.

use serde_json::{json, Map, Value};

use super::{
    check_empty, check_format, fail, key_values, output, parse, read_file_arg, settings_from_yaml,
    usage, Out, SMART,
};
use crate::client::Request;
use crate::context::{HookContext, Immediate};
use crate::flags::{Kind, Spec};
use crate::model::Status;

const STATUSES: &[&str] = &["maintenance", "blocked", "waiting", "active"];

pub fn run(ctx: &mut HookContext, req: &Request) -> Out {
    let a = &req.args;
    match req.command.as_str() {
        "config-get" => config_get(ctx, a),
        "is-leader" => {
            let p = parse(&Spec::new().format(), a)?;
            check_format(&p, SMART)?;
            check_empty(&p.args)?;
            output(&p, "smart", SMART, Some(&Value::Bool(ctx.is_leader())))
        }
        "status-set" => status_set(ctx, a),
        "status-get" => status_get(ctx, a),
        "juju-log" => juju_log(ctx, a),
        "application-version-set" => {
            let p = parse(&Spec::new(), a)?;
            let v = p
                .args
                .first()
                .ok_or_else(|| usage("no version specified"))?;
            check_empty(&p.args[1..])?;
            let w = Immediate::AppVersion(ctx.app().to_string(), v.clone());
            ctx.apply_immediate(w);
            Ok(String::new())
        }
        "state-get" => {
            let p = parse(&Spec::new().format().flag(&["strict"], Kind::Bool), a)?;
            check_format(&p, SMART)?;
            let state = ctx
                .work
                .unit(&ctx.unit)
                .map_err(|e| fail(e.to_string()))?
                .state
                .clone();
            match p.args.first() {
                None => output(&p, "smart", SMART, Some(&json!(state))),
                Some(k) => {
                    check_empty(&p.args[1..])?;
                    match state.get(k) {
                        Some(v) => output(&p, "smart", SMART, Some(&json!(v))),
                        None if p.on("strict") => Err(fail(format!("{k:?} not found"))),
                        None => output(&p, "smart", SMART, None),
                    }
                }
            }
        }
        "state-set" => {
            let p = parse(&Spec::new().flag(&["file"], Kind::Value), a)?;
            let mut kv = Vec::new();
            if let Some(path) = p.value("file") {
                kv = settings_from_yaml(&read_file_arg(req, path)?)?;
            }
            kv.extend(key_values(&p.args)?);
            let unit = ctx
                .work
                .unit_mut(&ctx.unit.clone())
                .map_err(|e| fail(e.to_string()))?;
            for (k, v) in kv {
                if k.len() > 256 {
                    return Err(fail(format!("key {k:?} is longer than 256 bytes")));
                }
                if v.len() > 64 * 1024 {
                    return Err(fail(format!("value of {k:?} is longer than 65536 bytes")));
                }
                if v.is_empty() {
                    unit.state.remove(&k);
                } else {
                    unit.state.insert(k, v);
                }
            }
            Ok(String::new())
        }
        "state-delete" => {
            let p = parse(&Spec::new(), a)?;
            let k = p.args.first().ok_or_else(|| usage("no key specified"))?;
            check_empty(&p.args[1..])?;
            let unit = ctx
                .work
                .unit_mut(&ctx.unit.clone())
                .map_err(|e| fail(e.to_string()))?;
            unit.state.remove(k);
            Ok(String::new())
        }
        "storage-get" => storage_get(ctx, a),
        "storage-list" => {
            let p = parse(&Spec::new().format(), a)?;
            check_format(&p, SMART)?;
            let unit = ctx.work.unit(&ctx.unit).map_err(|e| fail(e.to_string()))?;
            let ids: Vec<String> = unit
                .storage
                .iter()
                .filter(|(n, _)| p.args.first().is_none_or(|f| f == *n))
                .map(|(_, s)| s.id.clone())
                .collect();
            output(&p, "smart", SMART, Some(&json!(ids)))
        }
        "network-get" => network_get(ctx, a),
        "open-port" | "close-port" => ports(ctx, &req.command, a),
        "opened-ports" => {
            let p = parse(&Spec::new().format().flag(&["endpoints"], Kind::Bool), a)?;
            check_format(&p, SMART)?;
            let unit = ctx.work.unit(&ctx.unit).map_err(|e| fail(e.to_string()))?;
            let list: Vec<&String> = unit.ports.iter().collect();
            output(&p, "smart", SMART, Some(&json!(list)))
        }
        "leader-get" => {
            let p = parse(&Spec::new().format(), a)?;
            check_format(&p, SMART)?;
            let bag = &ctx
                .work
                .app(ctx.app())
                .map_err(|e| fail(e.to_string()))?
                .leader_settings;
            match p.args.first().filter(|k| *k != "-") {
                None => output(&p, "smart", SMART, Some(&json!(bag))),
                Some(k) => output(&p, "smart", SMART, bag.get(k).map(|v| json!(v)).as_ref()),
            }
        }
        "leader-set" => {
            let p = parse(&Spec::new().flag(&["file"], Kind::Value), a)?;
            let kv = key_values(&p.args)?;
            if !ctx.is_leader() {
                return Err(fail(
                    "cannot write leadership settings: cannot write settings: not the leader",
                ));
            }
            let mut bag = ctx
                .work
                .app(ctx.app())
                .map_err(|e| fail(e.to_string()))?
                .leader_settings
                .clone();
            for (k, v) in kv {
                if v.is_empty() {
                    bag.remove(&k);
                } else {
                    bag.insert(k, v);
                }
            }
            ctx.apply_immediate(Immediate::LeaderSettings(ctx.app().to_string(), bag));
            Ok(String::new())
        }
        other => Err(fail(format!("unknown command {other:?}"))),
    }
}

fn config_get(ctx: &mut HookContext, a: &[String]) -> Out {
    let p = parse(&Spec::new().format().flag(&["all", "a"], Kind::Bool), a)?;
    check_format(&p, SMART)?;
    let app = ctx.work.app(ctx.app()).map_err(|e| fail(e.to_string()))?;
    let mut all = Map::new();
    for (name, opt) in &ctx.meta.config {
        match app.config.get(name).or(opt.default.as_ref()) {
            Some(v) => {
                all.insert(name.clone(), v.clone());
            }
            None if p.on("all") => {
                all.insert(name.clone(), Value::Null);
            }
            None => {}
        }
    }
    match p.args.first() {
        None => output(&p, "smart", SMART, Some(&Value::Object(all))),
        Some(k) => {
            check_empty(&p.args[1..])?;
            output(&p, "smart", SMART, all.get(k).filter(|v| !v.is_null()))
        }
    }
}

fn status_set(ctx: &mut HookContext, a: &[String]) -> Out {
    let p = parse(&Spec::new().flag(&["application"], Kind::Bool), a)?;
    let Some(status) = p.args.first() else {
        return Err(usage("invalid args, require <status> [message] [data]"));
    };
    if !STATUSES.contains(&status.as_str()) {
        return Err(usage(format!(
            "invalid status {status:?}, expected one of [{}]",
            STATUSES.join(" ")
        )));
    }
    let message = p.args[1..].join(" ");
    let st = Status::new(status, &message);
    if p.on("application") {
        if !ctx.is_leader() {
            return Err(fail(
                "setting application status: this unit is not the leader",
            ));
        }
        ctx.apply_immediate(Immediate::AppStatus(ctx.app().to_string(), st));
    } else {
        ctx.apply_immediate(Immediate::UnitStatus(ctx.unit.clone(), st));
    }
    Ok(String::new())
}

fn status_json(s: &Status, include_data: bool) -> Value {
    let mut m = json!({"message": s.message, "status": s.status});
    if include_data {
        m["status-data"] = json!(s.data);
    }
    m
}

fn status_get(ctx: &mut HookContext, a: &[String]) -> Out {
    let spec = Spec::new()
        .format()
        .flag(&["include-data"], Kind::Bool)
        .flag(&["application"], Kind::Bool);
    let p = parse(&spec, a)?;
    check_format(&p, SMART)?;
    let data = p.on("include-data");
    let unit = ctx.work.unit(&ctx.unit).map_err(|e| fail(e.to_string()))?;
    let value = if p.on("application") {
        if !ctx.is_leader() {
            return Err(fail(
                "finding application status: this unit is not the leader",
            ));
        }
        let app = ctx.work.app(ctx.app()).map_err(|e| fail(e.to_string()))?;
        let st = app
            .status
            .clone()
            .unwrap_or_else(|| Status::new("unknown", ""));
        let mut units = Map::new();
        for u in ctx.work.units_of(ctx.app()) {
            if let Ok(x) = ctx.work.unit(&u) {
                units.insert(u, status_json(&x.workload, data));
            }
        }
        if !data {
            json!(st.status)
        } else {
            json!({"application-status": status_json(&st, true), "units": units})
        }
    } else if let Some(k) = p.args.first() {
        status_json(&unit.workload, true)
            .get(k)
            .cloned()
            .unwrap_or(Value::Null)
    } else if data {
        status_json(&unit.workload, true)
    } else {
        json!(unit.workload.status)
    };
    output(&p, "smart", SMART, Some(&value))
}

fn juju_log(ctx: &mut HookContext, a: &[String]) -> Out {
    let spec = Spec::new()
        .flag(&["l", "log-level"], Kind::Value)
        .flag(&["debug"], Kind::Bool)
        .format();
    let p = parse(&spec, a)?;
    if p.args.is_empty() {
        return Err(usage("no message specified"));
    }
    let mut level = p.value("l").unwrap_or("INFO").to_uppercase();
    if p.on("debug") {
        level = "DEBUG".into();
    }
    if level == "WARN" {
        level = "WARNING".into();
    }
    let mut msg = p.args.join(" ");
    if let Some(rel) = ctx.hook.relation.and_then(|id| ctx.work.relations.get(&id)) {
        msg = format!("{}: {msg}", rel.key_for(ctx.app()));
    }
    let module = format!("unit.{}.juju-log", ctx.unit);
    crate::debuglog::append(&ctx.model_dir, &ctx.unit, &level, &module, &msg);
    Ok(String::new())
}

fn storage_get(ctx: &mut HookContext, a: &[String]) -> Out {
    let p = parse(&Spec::new().format().flag(&["s"], Kind::Value), a)?;
    check_format(&p, SMART)?;
    let unit = ctx.work.unit(&ctx.unit).map_err(|e| fail(e.to_string()))?;
    let id = match p.value("s") {
        Some(id) => id.to_string(),
        None => ctx
            .hook
            .storage
            .clone()
            .ok_or_else(|| usage("no storage instance specified"))?,
    };
    let Some((name, st)) = unit
        .storage
        .iter()
        .find(|(_, s)| s.id == id || s.id.split('/').next() == Some(id.as_str()))
    else {
        return Err(usage(format!(
            "invalid value {id:?} for option -s: storage instance {id:?} not found"
        )));
    };
    let kind = ctx
        .meta
        .storage
        .iter()
        .find(|s| &s.name == name)
        .map(|s| s.kind.clone())
        .unwrap_or_else(|| "filesystem".into());
    let all = json!({"kind": kind, "location": st.location});
    match p.args.first() {
        None => output(&p, "smart", SMART, Some(&all)),
        Some(k) => {
            check_empty(&p.args[1..])?;
            output(&p, "smart", SMART, all.get(k))
        }
    }
}

fn network_get(ctx: &mut HookContext, a: &[String]) -> Out {
    let spec = Spec::new()
        .format()
        .flag(&["r", "relation"], Kind::Value)
        .flag(&["primary-address"], Kind::Bool)
        .flag(&["bind-address"], Kind::Bool)
        .flag(&["ingress-address"], Kind::Bool)
        .flag(&["egress-subnets"], Kind::Bool);
    let p = parse(&spec, a)?;
    check_format(&p, SMART)?;
    let binding = match p.args.first() {
        Some(b) => b.clone(),
        None => return Err(usage("no arguments specified")),
    };
    check_empty(&p.args[1..])?;
    if ctx.meta.endpoint(&binding).is_none() && binding != "juju-info" {
        return Err(fail(format!(
            "no network config found for binding {binding:?}"
        )));
    }
    let addr = ctx
        .work
        .unit(&ctx.unit)
        .map_err(|e| fail(e.to_string()))?
        .address
        .clone();
    let bind = json!([{
        "mac-address": "",
        "interface-name": "lo",
        "addresses": [{"hostname": "", "value": addr, "cidr": format!("{addr}/32"), "address": addr}],
        "macaddress": "",
        "interfacename": "lo"
    }]);
    let full = json!({
        "bind-addresses": bind,
        "egress-subnets": [format!("{addr}/32")],
        "ingress-addresses": [addr],
    });
    let picked: Vec<Value> = [
        ("bind-address", json!(addr)),
        ("primary-address", json!(addr)),
        ("ingress-address", json!(addr)),
        ("egress-subnets", json!(format!("{addr}/32"))),
    ]
    .into_iter()
    .filter(|(f, _)| p.on(f))
    .map(|(_, v)| v)
    .collect();
    match picked.len() {
        0 => output(&p, "smart", SMART, Some(&full)),
        1 => output(&p, "smart", SMART, Some(&picked[0])),
        _ => output(&p, "smart", SMART, Some(&full)),
    }
}

fn ports(ctx: &mut HookContext, cmd: &str, a: &[String]) -> Out {
    let p = parse(&Spec::new().flag(&["endpoints"], Kind::Value).format(), a)?;
    let Some(spec) = p.args.first() else {
        return Err(usage("no port or range specified"));
    };
    check_empty(&p.args[1..])?;
    let norm = normalize_port(spec).ok_or_else(|| {
        usage(format!(
            "expected <port>[/<protocol>] or <from>-<to>[/<protocol>] or icmp; got {spec:?}"
        ))
    })?;
    let unit = ctx
        .work
        .unit_mut(&ctx.unit.clone())
        .map_err(|e| fail(e.to_string()))?;
    if cmd == "open-port" {
        unit.ports.insert(norm);
    } else {
        unit.ports.remove(&norm);
    }
    Ok(String::new())
}

/// `5432` -> `5432/tcp`; `8000-8010/udp` and `icmp` kept.
fn normalize_port(spec: &str) -> Option<String> {
    if spec == "icmp" {
        return Some("icmp".into());
    }
    let (range, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_lowercase();
    if proto != "tcp" && proto != "udp" {
        return None;
    }
    let ok = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    match range.split_once('-') {
        Some((a, b)) if ok(a) && ok(b) => Some(format!("{a}-{b}/{proto}")),
        None if ok(range) => Some(format!("{range}/{proto}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_normalize() {
        assert_eq!(normalize_port("5432").as_deref(), Some("5432/tcp"));
        assert_eq!(normalize_port("53/UDP").as_deref(), Some("53/udp"));
        assert_eq!(normalize_port("1-2/tcp").as_deref(), Some("1-2/tcp"));
        assert_eq!(normalize_port("x"), None);
    }
}
