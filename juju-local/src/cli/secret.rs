//! User secrets, as `juju add-secret`, `update-secret`, `grant-secret`,
//! `revoke-secret` and `remove-secret` (Juju 3.3+) make them: owned by the
//! model, named, readable by a charm (`secret-get <uri>`) only once granted
//! to its application, and never writable by one. A config option of type
//! `secret` holds such a secret's URI. A new revision queues
//! `secret-changed` on every unit that reads an older one.

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use super::{parse, with_model};
use crate::flags::{Kind, Spec};
use crate::model::{Model, Revision, Secret};
use crate::queue::{self, QueuedHook};
use crate::tools::secret::{content, new_id, parse_id};

/// The content arguments (`k=v`, `k#file=path`), files relative to the
/// current directory.
fn data(args: &[String]) -> Result<crate::model::Bag> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let bag = content(&cwd.to_string_lossy(), args).map_err(|f| anyhow::anyhow!(f.msg))?;
    if bag.is_empty() {
        bail!("missing secret value");
    }
    Ok(bag)
}

/// The id of the user secret named `name_or_uri`.
fn find(model: &Model, name_or_uri: &str) -> Result<String> {
    let by_uri = parse_id(name_or_uri).filter(|id| model.secrets.contains_key(id));
    let by_name = model
        .secrets
        .values()
        .find(|s| s.owner_kind == "model" && s.label.as_deref() == Some(name_or_uri))
        .map(|s| s.id.clone());
    by_uri
        .or(by_name)
        .filter(|id| model.secrets[id].owner_kind == "model")
        .with_context(|| format!("secret {name_or_uri:?} not found"))
}

/// `add-secret <name> [--info TEXT] k=v ...`: prints `secret:<id>`.
pub fn add(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new().flag(&["info"], Kind::Value), args)?;
    let (name, rest) = p.args.split_first().context("missing secret name")?;
    let bag = data(rest)?;
    let mut uri = String::new();
    let code = with_model(dir, |_, model| {
        if model
            .secrets
            .values()
            .any(|s| s.owner_kind == "model" && s.label.as_deref() == Some(name.as_str()))
        {
            bail!("secret with name {name:?} already exists");
        }
        let id = new_id();
        uri = format!("secret:{id}");
        model.secrets.insert(
            id.clone(),
            Secret {
                id,
                owner_kind: "model".into(),
                label: Some(name.clone()),
                description: p.value("info").map(str::to_string),
                revisions: vec![Revision {
                    revision: 1,
                    content: bag,
                }],
                ..Default::default()
            },
        );
        Ok(())
    })?;
    println!("{uri}");
    Ok(code)
}

/// `update-secret <name or uri> k=v ...`: a new revision with that content.
pub fn update(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new().flag(&["info"], Kind::Value), args)?;
    let (name, rest) = p.args.split_first().context("missing secret name")?;
    let bag = data(rest)?;
    with_model(dir, |_, model| {
        let id = find(model, name)?;
        let s = model.secrets.get_mut(&id).context("secret vanished")?;
        if let Some(info) = p.value("info") {
            s.description = Some(info.to_string());
        }
        if s.revisions.last().map(|r| &r.content) == Some(&bag) {
            return Ok(());
        }
        let revision = s.latest() + 1;
        s.revisions.push(Revision {
            revision,
            content: bag,
        });
        let consumers: Vec<(String, Option<String>)> = model
            .units
            .iter()
            .filter_map(|(unit, u)| {
                let c = u.consumed.get(&id)?;
                (c.revision < revision).then(|| (unit.clone(), c.label.clone()))
            })
            .collect();
        for (unit, label) in consumers {
            let mut hook = QueuedHook::simple(&unit, "secret-changed");
            hook.secret = Some(id.clone());
            hook.secret_label = label;
            hook.secret_revision = Some(revision);
            queue::push(&mut model.queue, hook);
        }
        Ok(())
    })
}

/// `grant-secret <name or uri> <app>[,<app>...]` and `revoke-secret`.
pub fn grant(dir: &Path, args: &[String], grant: bool) -> Result<i32> {
    let p = parse(&Spec::new(), args)?;
    let [name, apps] = p.args.as_slice() else {
        bail!("expected a secret name or URI and an application name");
    };
    with_model(dir, |_, model| {
        let id = find(model, name)?;
        let apps: Vec<&str> = apps.split(',').filter(|a| !a.is_empty()).collect();
        for app in &apps {
            model.app(app)?;
        }
        let s = model.secrets.get_mut(&id).context("secret vanished")?;
        for app in apps {
            if grant {
                s.granted_apps.insert(app.to_string());
            } else {
                s.granted_apps.remove(app);
            }
        }
        Ok(())
    })
}

/// `remove-secret <name or uri>`.
pub fn remove(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new(), args)?;
    let [name] = p.args.as_slice() else {
        bail!("expected a secret name or URI");
    };
    with_model(dir, |_, model| {
        let id = find(model, name)?;
        model.secrets.remove(&id);
        for unit in model.units.values_mut() {
            unit.consumed.remove(&id);
        }
        Ok(())
    })
}

/// Checks a value for a config option of type `secret`: a secret URI.
pub fn check_uri(key: &str, value: &str) -> Result<()> {
    if parse_id(value).is_some() && value.starts_with("secret:") {
        return Ok(());
    }
    // The value is not repeated: it may be a key typed in the wrong place.
    bail!("option {key:?} expected a secret URI (secret:<id>, as add-secret prints it)")
}
