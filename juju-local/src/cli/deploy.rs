//! Commands that shape the model: deploy, add-unit, remove-unit, config,
//! integrate and remove-relation. Each changes model.json and queues the
//! hooks Juju would run; the caller settles.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::{count, parse, report, with_model};
use crate::charm::CharmMeta;
use crate::flags::{Kind, Spec};
use crate::fsutil::create_dir_shared;
use crate::model::{App, End, Model, ModelDir, Relation, Status, Storage, Unit};
use crate::queue::{self, QueuedHook};

fn new_uuid() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::thread_rng().gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The hook tools dir: one symlink per tool to this binary.
fn install_tools(md: &ModelDir) -> Result<()> {
    let bin = md.bin_dir();
    create_dir_shared(&bin)?;
    let exe = std::env::current_exe().context("cannot find the juju-local binary")?;
    for tool in crate::client::TOOLS.iter().chain([&super::JUJU_EXEC]) {
        let link = bin.join(tool);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    Ok(())
}

pub fn deploy(dir: &Path, args: &[String]) -> Result<i32> {
    let spec = Spec::new()
        .flag(&["n", "num-units"], Kind::Value)
        .flag(&["config"], Kind::Multi);
    let p = parse(&spec, args)?;
    let n = count(&p)?;
    let Some(charm) = p.args.first() else {
        bail!("no charm specified");
    };
    let builtin = crate::builtin::is_builtin_arg(charm).then(|| charm.clone());
    let charm = match &builtin {
        Some(_) => PathBuf::new(),
        None => PathBuf::from(charm)
            .canonicalize()
            .with_context(|| format!("charm {charm:?} not found"))?,
    };
    let md = ModelDir::open(dir, true)?;
    let mut model = if md.exists() {
        md.load()?
    } else {
        let name = crate::model::new_model_name()?;
        let octet = crate::net::reserve(&md.root)?;
        let m = Model {
            uuid: new_uuid(),
            name,
            octet,
            ..Default::default()
        };
        md.save(&m)?;
        m
    };
    install_tools(&md)?;
    // Unpack to a staging dir to learn the charm's name, then move into place.
    let staging = md.root.join("charms").join(".staging");
    let _ = std::fs::remove_dir_all(&staging);
    match &builtin {
        Some(name) => crate::builtin::write_charm(name, &staging)?,
        None => crate::charm::unpack(&charm, &staging)?,
    }
    let meta = CharmMeta::load(&staging)?;
    let app = p.args.get(1).cloned().unwrap_or_else(|| meta.name.clone());
    if model.apps.contains_key(&app) {
        let _ = std::fs::remove_dir_all(&staging);
        bail!("cannot add application {app:?}: application already exists");
    }
    let dest = md.charm_dir(&app);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest)
        .with_context(|| format!("cannot place charm at {}", dest.display()))?;
    let mut config = serde_json::Map::new();
    for kv in p.all("config") {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("expected key=value, got {kv:?}"))?;
        config.insert(k.to_string(), typed_config(&meta, k, v)?);
    }
    model.next_app_index += 1;
    model.apps.insert(
        app.clone(),
        App {
            name: app.clone(),
            charm: meta.name.clone(),
            index: model.next_app_index,
            config: config.into_iter().collect(),
            builtin: builtin.clone(),
            ..Default::default()
        },
    );
    for ep in meta.endpoints.iter().filter(|e| e.role == "peer") {
        let id = model.next_relation_id;
        model.next_relation_id += 1;
        model.relations.insert(
            id,
            Relation {
                id,
                interface: ep.interface.clone(),
                ends: vec![End {
                    app: app.clone(),
                    endpoint: ep.name.clone(),
                    role: "peer".into(),
                }],
                ..Default::default()
            },
        );
    }
    let wants_server = builtin.as_deref() == Some("s3-integrator")
        && !model.apps[&app].config.contains_key("endpoint");
    if wants_server {
        local_s3(&md, &mut model, &app)?;
    }
    add_units(&md, &mut model, &meta, &app, n)?;
    md.save(&model)?;
    let errors = crate::settle::settle(&md, &mut model)?;
    Ok(report(&errors))
}

/// Points an s3-integrator stand-in with no endpoint at the model's own S3
/// server: its config, and its credentials as `sync-s3-credentials` keeps them.
fn local_s3(md: &ModelDir, model: &mut Model, app: &str) -> Result<()> {
    let mut bag = crate::model::Bag::new();
    let config = super::s3::configure_for(md, model, &mut bag)?;
    let a = model.apps.get_mut(app).context("application vanished")?;
    for (k, v) in config {
        a.config.entry(k).or_insert(v);
    }
    let peer = model
        .relations
        .values_mut()
        .find(|r| r.is_peer() && r.has_app(app))
        .context("the s3-integrator peer relation is missing")?;
    peer.app_bags
        .entry(app.to_string())
        .or_default()
        .extend(bag);
    Ok(())
}

/// Parses a config value as config.yaml's type for `key` says.
pub fn typed_config(meta: &CharmMeta, key: &str, v: &str) -> Result<Value> {
    let opt = meta
        .config
        .get(key)
        .with_context(|| format!("unknown option {key:?}"))?;
    Ok(match opt.kind.as_str() {
        "int" => Value::from(
            v.parse::<i64>()
                .with_context(|| format!("option {key:?} expected int, got {v:?}"))?,
        ),
        "float" => Value::from(
            v.parse::<f64>()
                .with_context(|| format!("option {key:?} expected float, got {v:?}"))?,
        ),
        "boolean" => Value::from(
            crate::flags::parse_bool(v)
                .with_context(|| format!("option {key:?} expected boolean, got {v:?}"))?,
        ),
        "secret" => {
            super::secret::check_uri(key, v)?;
            Value::from(v)
        }
        _ => Value::from(v),
    })
}

/// Creates `n` units of `app` (dirs, charm copy, storage) and queues their hooks.
pub fn add_units(
    md: &ModelDir,
    model: &mut Model,
    meta: &CharmMeta,
    app: &str,
    n: u32,
) -> Result<()> {
    let mut new = Vec::new();
    for _ in 0..n {
        let a = model.apps.get_mut(app).context("application vanished")?;
        let number = a.next_unit;
        a.next_unit += 1;
        let name = format!("{app}/{number}");
        if a.leader.is_none() {
            a.leader = Some(name.clone());
        }
        let address = crate::net::address(model.octet, a.index, number);
        let unit_dir = md.unit_dir(&name);
        create_dir_shared(&unit_dir)?;
        crate::fsutil::copy_tree(&md.charm_dir(app), &unit_dir.join("charm"))?;
        create_dir_shared(&unit_dir.join("storage"))?;
        let mut unit = Unit {
            name: name.clone(),
            app: app.to_string(),
            number,
            machine: model.next_machine,
            address,
            workload: Status::new("waiting", "agent initialising"),
            agent: "allocating".into(),
            ..Default::default()
        };
        model.next_machine += 1;
        for st in &meta.storage {
            let sid = model.next_storage_id;
            model.next_storage_id += 1;
            let loc = unit_dir.join("storage").join(format!("{}-{sid}", st.name));
            create_dir_shared(&loc)?;
            unit.storage.insert(
                st.name.clone(),
                Storage {
                    id: format!("{}/{sid}", st.name),
                    location: loc.display().to_string(),
                },
            );
        }
        model.units.insert(name.clone(), unit);
        new.push(name);
    }
    for u in &new {
        for h in queue::unit_setup(model, meta, u) {
            queue::push(&mut model.queue, h);
        }
    }
    for u in &new {
        for h in queue::unit_joins(model, u) {
            queue::push(&mut model.queue, h);
        }
    }
    Ok(())
}

pub fn add_unit(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new().flag(&["n", "num-units"], Kind::Value), args)?;
    let n = count(&p)?;
    let app = p.args.first().context("no application specified")?.clone();
    with_model(dir, |md, model| {
        model.app(&app)?;
        let meta = CharmMeta::load(&md.charm_dir(&app))?;
        add_units(md, model, &meta, &app, n)
    })
}

pub fn remove_unit(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new().flag(&["force"], Kind::Bool), args)?;
    if p.args.is_empty() {
        bail!("no units specified");
    }
    with_model(dir, |_, model| {
        for u in &p.args {
            let unit = model.unit(u)?;
            if unit.dying {
                continue;
            }
            let hooks = queue::unit_teardown(model, u);
            model.unit_mut(u)?.dying = true;
            for h in hooks {
                queue::push(&mut model.queue, h);
            }
        }
        Ok(())
    })
}

pub fn config(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new().flag(&["reset"], Kind::Multi), args)?;
    let app = p.args.first().context("no application specified")?.clone();
    if p.args.len() == 1 && p.all("reset").is_empty() {
        let md = ModelDir::open(dir, false)?;
        let model = md.load()?;
        let a = model.app(&app)?;
        let meta = CharmMeta::load(&md.charm_dir(&app))?;
        let mut out = serde_json::Map::new();
        for (k, opt) in &meta.config {
            if let Some(v) = a.config.get(k).or(opt.default.as_ref()) {
                out.insert(k.clone(), v.clone());
            }
        }
        print!("{}", crate::format::yaml(&Value::Object(out)));
        return Ok(0);
    }
    with_model(dir, |md, model| {
        let meta = CharmMeta::load(&md.charm_dir(&app))?;
        model.app(&app)?;
        let mut changes = Vec::new();
        for kv in &p.args[1..] {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("expected key=value, got {kv:?}"))?;
            changes.push((k.to_string(), Some(typed_config(&meta, k, v)?)));
        }
        for k in p.all("reset") {
            for k in k.split(',') {
                meta.config
                    .get(k)
                    .with_context(|| format!("unknown option {k:?}"))?;
                changes.push((k.to_string(), None));
            }
        }
        let a = model.apps.get_mut(&app).context("application vanished")?;
        let before = a.config.clone();
        for (k, v) in changes {
            match v {
                Some(v) => a.config.insert(k, v),
                None => a.config.remove(&k),
            };
        }
        if a.config != before {
            for u in model.units_of(&app) {
                queue::push(&mut model.queue, QueuedHook::simple(&u, "config-changed"));
            }
        }
        Ok(())
    })
}

/// `app[:endpoint]` -> (app, endpoint).
fn split_end(s: &str) -> (String, Option<String>) {
    match s.split_once(':') {
        Some((a, e)) => (a.to_string(), Some(e.to_string())),
        None => (s.to_string(), None),
    }
}

/// Finds the one pair of endpoints the two apps can relate through.
fn match_ends(md: &ModelDir, model: &Model, a: &str, b: &str) -> Result<(End, End, String)> {
    let (app_a, ep_a) = split_end(a);
    let (app_b, ep_b) = split_end(b);
    model.app(&app_a)?;
    model.app(&app_b)?;
    let ma = CharmMeta::load(&md.charm_dir(&app_a))?;
    let mb = CharmMeta::load(&md.charm_dir(&app_b))?;
    let mut found = Vec::new();
    for ea in ma
        .endpoints
        .iter()
        .filter(|e| e.role != "peer" && ep_a.as_ref().is_none_or(|x| *x == e.name))
    {
        for eb in mb
            .endpoints
            .iter()
            .filter(|e| e.role != "peer" && ep_b.as_ref().is_none_or(|x| *x == e.name))
        {
            if ea.interface == eb.interface && ea.role != eb.role {
                found.push((
                    End {
                        app: app_a.clone(),
                        endpoint: ea.name.clone(),
                        role: ea.role.clone(),
                    },
                    End {
                        app: app_b.clone(),
                        endpoint: eb.name.clone(),
                        role: eb.role.clone(),
                    },
                    ea.interface.clone(),
                ));
            }
        }
    }
    match found.len() {
        0 => bail!("no relations found between {a:?} and {b:?}"),
        1 => Ok(found.remove(0)),
        _ => {
            let list: Vec<String> = found
                .iter()
                .map(|(x, y, _)| format!("{}:{} {}:{}", x.app, x.endpoint, y.app, y.endpoint))
                .collect();
            bail!(
                "ambiguous relation: {a:?} {b:?} could refer to {}",
                list.join("; ")
            )
        }
    }
}

pub fn integrate(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new(), args)?;
    let [a, b] = p.args.as_slice() else {
        bail!("an integration must involve two applications");
    };
    with_model(dir, |md, model| {
        let (ea, eb, interface) = match_ends(md, model, a, b)?;
        let exists = model
            .relations
            .values()
            .any(|r| !r.dying && r.ends.contains(&ea) && r.ends.contains(&eb));
        if exists {
            bail!(
                "relation {}:{} {}:{} already exists",
                ea.app,
                ea.endpoint,
                eb.app,
                eb.endpoint
            );
        }
        let id = model.next_relation_id;
        model.next_relation_id += 1;
        let (provider, requirer) = if ea.role == "provider" {
            (ea, eb)
        } else {
            (eb, ea)
        };
        let rel = Relation {
            id,
            interface,
            ends: vec![provider, requirer],
            ..Default::default()
        };
        let hooks = queue::relation_established(model, &rel);
        model.relations.insert(id, rel);
        for h in hooks {
            queue::push(&mut model.queue, h);
        }
        Ok(())
    })
}

pub fn remove_relation(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new(), args)?;
    let [a, b] = p.args.as_slice() else {
        bail!("a relation must involve two applications");
    };
    with_model(dir, |_, model| {
        let (app_a, ep_a) = split_end(a);
        let (app_b, ep_b) = split_end(b);
        let hit = |r: &&Relation, app: &str, ep: &Option<String>| {
            r.ends
                .iter()
                .any(|e| e.app == app && ep.as_ref().is_none_or(|x| *x == e.endpoint))
        };
        let id = model
            .relations
            .values()
            .find(|r| !r.dying && !r.is_peer() && hit(r, &app_a, &ep_a) && hit(r, &app_b, &ep_b))
            .map(|r| r.id)
            .with_context(|| format!("relation between {a:?} and {b:?} not found"))?;
        let hooks = queue::relation_removed(model, &model.relations[&id]);
        if let Some(r) = model.relations.get_mut(&id) {
            r.dying = true;
        }
        for h in hooks {
            queue::push(&mut model.queue, h);
        }
        Ok(())
    })
}
