//! The secret tools: secret-add, -get, -set, -grant, -revoke, -remove,
//! -ids and -info-get. Secrets live in the context's working copy, so every
//! change is buffered until the hook commits and the hook reads its own.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{json, Map, Value};

use super::{
    check_empty, check_format, fail, output, parse, read_file_arg, settings_from_yaml, usage, Fail,
    Out, YAML_JSON,
};
use crate::client::Request;
use crate::context::HookContext;
use crate::flags::{Kind, Spec};
use crate::model::{Bag, Consumed, Revision, Secret};

pub fn run(ctx: &mut HookContext, req: &Request) -> Out {
    match req.command.as_str() {
        "secret-add" => add(ctx, req),
        "secret-get" => get(ctx, &req.args),
        "secret-set" => set(ctx, req),
        "secret-grant" | "secret-revoke" => grant(ctx, &req.command, &req.args),
        "secret-remove" => remove(ctx, &req.args),
        "secret-ids" => {
            let p = parse(&Spec::new().format(), &req.args)?;
            check_format(&p, YAML_JSON)?;
            check_empty(&p.args)?;
            let ids: Vec<String> = ctx
                .work
                .secrets
                .values()
                .filter(|s| owns(ctx, s))
                .map(|s| ctx.work.secret_uri(&s.id))
                .collect();
            output(&p, "yaml", YAML_JSON, Some(&json!(ids)))
        }
        "secret-info-get" => info(ctx, &req.args),
        other => Err(fail(format!("unknown command {other:?}"))),
    }
}

/// Accepts `secret://<uuid>/<id>`, `secret:<id>` and the bare id.
pub fn parse_id(s: &str) -> Option<String> {
    let id = if let Some(rest) = s.strip_prefix("secret://") {
        rest.rsplit('/').next()?.to_string()
    } else if let Some(rest) = s.strip_prefix("secret:") {
        rest.to_string()
    } else {
        s.to_string()
    };
    let ok = id.len() == 20
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b));
    ok.then_some(id)
}

pub(crate) fn new_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let mut rng = rand::thread_rng();
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
        .collect()
}

/// The unit manages this secret: leader of the owning app, or the owning unit.
fn owns(ctx: &HookContext, s: &Secret) -> bool {
    match s.owner_kind.as_str() {
        "unit" => s.owner_unit.as_deref() == Some(ctx.unit.as_str()),
        _ => s.owner_app == ctx.app() && ctx.is_leader(),
    }
}

/// Parses `k=v`, `k#base64=v` and `k#file=path` content arguments.
pub(crate) fn content(req_dir: &str, args: &[String]) -> Result<Bag, Fail> {
    let key_re = Regex::new(r"^([a-z](?:-?[a-z0-9]){2,})$").map_err(|e| fail(e.to_string()))?;
    let mut out = Bag::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            return Err(usage(format!("key value {a:?} not valid")));
        };
        let (key, value) = if let Some(k) = k.strip_suffix("#file") {
            let path = std::path::Path::new(req_dir).join(v);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
            (k, text)
        } else if let Some(k) = k.strip_suffix("#base64") {
            (k, v.to_string())
        } else {
            (k, v.to_string())
        };
        if !key_re.is_match(key) {
            return Err(usage(format!("key {key:?} not valid")));
        }
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

fn add(ctx: &mut HookContext, req: &Request) -> Out {
    let spec = Spec::new()
        .flag(&["label"], Kind::Value)
        .flag(&["description"], Kind::Value)
        .flag(&["expire"], Kind::Value)
        .flag(&["rotate"], Kind::Value)
        .flag(&["owner"], Kind::Value)
        .flag(&["file"], Kind::Value);
    let p = parse(&spec, &req.args)?;
    let mut data = content(&req.dir, &p.args)?;
    if let Some(path) = p.value("file") {
        for (k, v) in settings_from_yaml(&read_file_arg(req, path)?)? {
            data.insert(k, v);
        }
    }
    if data.is_empty() {
        return Err(usage("missing secret value"));
    }
    let owner = p.value("owner").unwrap_or("application");
    if owner != "application" && owner != "unit" {
        return Err(usage(format!("secret owner {owner:?} not valid")));
    }
    if owner == "application" && !ctx.is_leader() {
        return Err(fail("this unit is not the leader"));
    }
    let label = p.value("label").map(str::to_string);
    if let Some(l) = &label {
        if ctx
            .work
            .secrets
            .values()
            .any(|s| s.owner_app == ctx.app() && s.label.as_ref() == Some(l))
        {
            return Err(fail(format!("secret with label {l:?} already exists")));
        }
    }
    let id = new_id();
    let secret = Secret {
        id: id.clone(),
        owner_kind: owner.to_string(),
        owner_app: ctx.app().to_string(),
        owner_unit: (owner == "unit").then(|| ctx.unit.clone()),
        label,
        description: p.value("description").map(str::to_string),
        expire: p.value("expire").map(str::to_string),
        rotate: p.value("rotate").map(str::to_string),
        revisions: vec![Revision {
            revision: 1,
            content: data,
        }],
        grants: BTreeMap::new(),
        granted_apps: Default::default(),
    };
    ctx.work.secrets.insert(id.clone(), secret);
    Ok(format!("{}\n", ctx.work.secret_uri(&id)))
}

/// Finds a secret by id or label as this unit knows it.
fn lookup(ctx: &HookContext, id: Option<&str>, label: Option<&str>) -> Result<String, Fail> {
    if let Some(id) = id {
        if ctx.work.secrets.contains_key(id) {
            return Ok(id.to_string());
        }
        return Err(fail(format!("secret {id:?} not found")));
    }
    let label = label.unwrap_or_default();
    let unit = ctx.work.unit(&ctx.unit).map_err(|e| fail(e.to_string()))?;
    if let Some((id, _)) = unit
        .consumed
        .iter()
        .find(|(_, c)| c.label.as_deref() == Some(label))
    {
        return Ok(id.clone());
    }
    ctx.work
        .secrets
        .values()
        .find(|s| s.owner_app == ctx.app() && s.label.as_deref() == Some(label))
        .map(|s| s.id.clone())
        .ok_or_else(|| fail(format!("secret {label:?} not found")))
}

/// The unit may read the secret: its app owns it, or it was granted to its
/// app or unit (through a relation, or as a user secret).
fn may_read(ctx: &HookContext, s: &Secret) -> bool {
    if s.owner_kind == "model" {
        return s.granted_apps.contains(ctx.app());
    }
    if s.owner_app == ctx.app() && (s.owner_kind == "application" || owns(ctx, s)) {
        return true;
    }
    s.grants.iter().any(|(rid, who)| {
        ctx.work.relations.contains_key(rid) && (who.contains(ctx.app()) || who.contains(&ctx.unit))
    })
}

fn get(ctx: &mut HookContext, args: &[String]) -> Out {
    let spec = Spec::new()
        .format()
        .flag(&["label"], Kind::Value)
        .flag(&["peek"], Kind::Bool)
        .flag(&["refresh"], Kind::Bool);
    let p = parse(&spec, args)?;
    check_format(&p, YAML_JSON)?;
    let mut rest = p.args.clone();
    let mut id = None;
    if !rest.is_empty() {
        let raw = rest.remove(0);
        id = Some(parse_id(&raw).ok_or_else(|| usage(format!("secret URI {raw:?} not valid")))?);
    }
    let label = p.value("label");
    if id.is_none() && label.is_none() {
        return Err(usage("require either a secret URI or label"));
    }
    if p.on("peek") && p.on("refresh") {
        return Err(usage("specify one of --peek or --refresh but not both"));
    }
    let key = if rest.is_empty() {
        None
    } else {
        Some(rest.remove(0))
    };
    check_empty(&rest)?;
    let id = lookup(ctx, id.as_deref(), label)?;
    let secret = ctx.work.secrets[&id].clone();
    if !may_read(ctx, &secret) {
        return Err(fail("permission denied"));
    }
    let latest = secret.latest();
    let revision = if owns(ctx, &secret) {
        if let (Some(l), true) = (label, args.iter().any(|a| !a.starts_with('-'))) {
            if let Some(s) = ctx.work.secrets.get_mut(&id) {
                s.label = Some(l.to_string());
            }
        }
        latest
    } else {
        let unit = ctx
            .work
            .unit_mut(&ctx.unit.clone())
            .map_err(|e| fail(e.to_string()))?;
        let entry = unit.consumed.entry(id.clone()).or_insert(Consumed {
            revision: latest,
            label: None,
        });
        if p.on("refresh") {
            entry.revision = latest;
        }
        if let (Some(l), true) = (label, !p.args.is_empty()) {
            entry.label = Some(l.to_string());
        }
        if p.on("peek") {
            latest
        } else {
            entry.revision
        }
    };
    let content = secret.content(revision).cloned().unwrap_or_default();
    match key {
        None => output(&p, "yaml", YAML_JSON, Some(&json!(content))),
        Some(k) => {
            let k = k.strip_suffix("#base64").unwrap_or(&k).to_string();
            match content.get(&k) {
                Some(v) => output(&p, "yaml", YAML_JSON, Some(&json!(v))),
                None => Err(fail(format!("secret key {k:?} not found"))),
            }
        }
    }
}

fn owned_secret(ctx: &HookContext, raw: &str) -> Result<String, Fail> {
    let id = parse_id(raw).ok_or_else(|| usage(format!("secret URI {raw:?} not valid")))?;
    let s = ctx
        .work
        .secrets
        .get(&id)
        .ok_or_else(|| fail(format!("secret {id:?} not found")))?;
    if s.owner_kind == "application" && s.owner_app == ctx.app() && !ctx.is_leader() {
        return Err(fail("this unit is not the leader"));
    }
    if !owns(ctx, s) {
        return Err(fail("permission denied"));
    }
    Ok(id)
}

fn set(ctx: &mut HookContext, req: &Request) -> Out {
    let spec = Spec::new()
        .flag(&["label"], Kind::Value)
        .flag(&["description"], Kind::Value)
        .flag(&["expire"], Kind::Value)
        .flag(&["rotate"], Kind::Value)
        .flag(&["owner"], Kind::Value)
        .flag(&["file"], Kind::Value);
    let p = parse(&spec, &req.args)?;
    let Some(raw) = p.args.first() else {
        return Err(usage("missing secret URI"));
    };
    let mut data = content(&req.dir, &p.args[1..])?;
    if let Some(path) = p.value("file") {
        data.extend(settings_from_yaml(&read_file_arg(req, path)?)?);
    }
    let id = owned_secret(ctx, raw)?;
    let s = ctx
        .work
        .secrets
        .get_mut(&id)
        .ok_or_else(|| fail("secret vanished"))?;
    if let Some(l) = p.value("label") {
        s.label = Some(l.to_string());
    }
    if let Some(d) = p.value("description") {
        s.description = Some(d.to_string());
    }
    if let Some(r) = p.value("rotate") {
        s.rotate = Some(r.to_string());
    }
    if let Some(e) = p.value("expire") {
        s.expire = Some(e.to_string());
    }
    if !data.is_empty() && s.revisions.last().map(|r| &r.content) != Some(&data) {
        let revision = s.latest() + 1;
        s.revisions.push(Revision {
            revision,
            content: data,
        });
    }
    Ok(String::new())
}

fn grant(ctx: &mut HookContext, cmd: &str, args: &[String]) -> Out {
    let spec = Spec::new()
        .flag(&["r", "relation"], Kind::Value)
        .flag(&["unit"], Kind::Value)
        .flag(&["app"], Kind::Value);
    let p = parse(&spec, args)?;
    let Some(raw) = p.args.first() else {
        return Err(usage("missing secret URI"));
    };
    check_empty(&p.args[1..])?;
    let rid = match p.value("r") {
        Some(v) => {
            let id: u64 = v.rsplit(':').next().unwrap_or(v).parse().map_err(|_| {
                usage(format!(
                    "invalid value {v:?} for option -r: invalid relation id"
                ))
            })?;
            if !ctx.work.relations.contains_key(&id) {
                return Err(usage(format!(
                    "invalid value {v:?} for option -r: relation not found"
                )));
            }
            Some(id)
        }
        None if cmd == "secret-grant" => return Err(usage("missing relation")),
        None => None,
    };
    let id = owned_secret(ctx, raw)?;
    let app = ctx.app().to_string();
    let who = match (p.value("unit"), rid) {
        (Some(u), _) => u.to_string(),
        (None, Some(r)) => ctx.work.relations[&r].remote_app(&app).unwrap_or_default(),
        (None, None) => p.value("app").unwrap_or_default().to_string(),
    };
    let s = ctx
        .work
        .secrets
        .get_mut(&id)
        .ok_or_else(|| fail("secret vanished"))?;
    if cmd == "secret-grant" {
        s.grants
            .entry(rid.unwrap_or_default())
            .or_default()
            .insert(who);
    } else {
        for set in s.grants.values_mut() {
            set.remove(&who);
        }
        s.grants
            .retain(|r, set| !set.is_empty() && rid.is_none_or(|x| x != *r || !set.is_empty()));
    }
    Ok(String::new())
}

fn remove(ctx: &mut HookContext, args: &[String]) -> Out {
    let p = parse(&Spec::new().flag(&["revision"], Kind::Value), args)?;
    let Some(raw) = p.args.first() else {
        return Err(usage("missing secret URI"));
    };
    check_empty(&p.args[1..])?;
    let id = owned_secret(ctx, raw)?;
    match p.value("revision") {
        Some(r) => {
            let n: u32 = r
                .parse()
                .map_err(|_| usage(format!("invalid value {r:?} for option --revision")))?;
            if let Some(s) = ctx.work.secrets.get_mut(&id) {
                s.revisions.retain(|x| x.revision != n);
                if s.revisions.is_empty() {
                    ctx.work.secrets.remove(&id);
                }
            }
        }
        None => {
            ctx.work.secrets.remove(&id);
        }
    }
    Ok(String::new())
}

fn info(ctx: &mut HookContext, args: &[String]) -> Out {
    let p = parse(&Spec::new().format().flag(&["label"], Kind::Value), args)?;
    check_format(&p, YAML_JSON)?;
    let id = match p.args.first() {
        Some(raw) => {
            Some(parse_id(raw).ok_or_else(|| usage(format!("secret URI {raw:?} not valid")))?)
        }
        None => None,
    };
    if id.is_none() && p.value("label").is_none() {
        return Err(usage("require either a secret URI or label"));
    }
    let id = lookup(ctx, id.as_deref(), p.value("label"))?;
    let s = &ctx.work.secrets[&id];
    if !owns(ctx, s) {
        return Err(fail("permission denied"));
    }
    let mut m = Map::new();
    m.insert("revision".into(), json!(s.latest()));
    if let Some(l) = &s.label {
        m.insert("label".into(), json!(l));
    }
    if let Some(d) = &s.description {
        m.insert("description".into(), json!(d));
    }
    m.insert("owner".into(), json!(s.owner_kind));
    m.insert(
        "rotation".into(),
        json!(s.rotate.clone().unwrap_or_else(|| "never".into())),
    );
    if let Some(e) = &s.expire {
        m.insert("expiry".into(), json!(e));
    }
    let v = json!({ id.clone(): Value::Object(m) });
    output(&p, "yaml", YAML_JSON, Some(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_every_form() {
        let id = "cn3aa1c2e9l7ljt25qpg";
        assert_eq!(parse_id(id).as_deref(), Some(id));
        assert_eq!(parse_id(&format!("secret:{id}")).as_deref(), Some(id));
        assert_eq!(
            parse_id(&format!("secret://abc-123/{id}")).as_deref(),
            Some(id)
        );
        assert_eq!(parse_id("nope"), None);
        assert_eq!(new_id().len(), 20);
    }

    #[test]
    fn content_keys_validated() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(content("/", &s(&["password=x"])).is_ok());
        let e = content("/", &s(&["ab=x"])).unwrap_err();
        assert_eq!(e.msg, "key \"ab\" not valid");
        let e = content("/", &s(&["Bad=x"])).unwrap_err();
        assert_eq!(e.code, 2);
    }
}
