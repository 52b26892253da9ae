//! A charm as juju-local sees it: metadata.yaml (endpoints, storage),
//! config.yaml (options and types), actions.yaml (action schemas), read from
//! a charm directory; and unpacking a `.charm` zip into one.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    pub name: String,
    pub interface: String,
    /// `peer`, `provider` or `requirer`.
    pub role: String,
}

#[derive(Debug, Clone, Default)]
pub struct StorageSpec {
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone, Default)]
pub struct ConfigOption {
    pub kind: String,
    pub default: Option<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct CharmMeta {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub storage: Vec<StorageSpec>,
    pub config: BTreeMap<String, ConfigOption>,
    /// Action name -> its JSON schema (as Juju builds it from actions.yaml).
    pub actions: BTreeMap<String, Value>,
}

fn read_yaml(path: &Path) -> Result<Option<Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value =
        serde_yaml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    Ok(Some(v))
}

impl CharmMeta {
    /// Reads a charm directory's metadata.yaml, config.yaml and actions.yaml.
    pub fn load(dir: &Path) -> Result<CharmMeta> {
        let meta = read_yaml(&dir.join("metadata.yaml"))?
            .or(read_yaml(&dir.join("charmcraft.yaml"))?)
            .with_context(|| format!("{} has no metadata.yaml", dir.display()))?;
        let mut out = CharmMeta {
            name: meta["name"]
                .as_str()
                .context("metadata.yaml has no name")?
                .to_string(),
            ..Default::default()
        };
        for (section, role) in [
            ("peers", "peer"),
            ("provides", "provider"),
            ("requires", "requirer"),
        ] {
            if let Some(map) = meta[section].as_object() {
                for (name, spec) in map {
                    let interface = spec["interface"]
                        .as_str()
                        .with_context(|| format!("endpoint {name} has no interface"))?;
                    out.endpoints.push(Endpoint {
                        name: name.clone(),
                        interface: interface.to_string(),
                        role: role.to_string(),
                    });
                }
            }
        }
        if let Some(map) = meta["storage"].as_object() {
            for (name, spec) in map {
                out.storage.push(StorageSpec {
                    name: name.clone(),
                    kind: spec["type"].as_str().unwrap_or("filesystem").to_string(),
                });
            }
        }
        if let Some(cfg) = read_yaml(&dir.join("config.yaml"))? {
            if let Some(opts) = cfg["options"].as_object() {
                for (name, spec) in opts {
                    out.config.insert(
                        name.clone(),
                        ConfigOption {
                            kind: spec["type"].as_str().unwrap_or("string").to_string(),
                            default: spec.get("default").filter(|d| !d.is_null()).cloned(),
                        },
                    );
                }
            }
        }
        if let Some(Value::Object(actions)) = read_yaml(&dir.join("actions.yaml"))? {
            for (name, spec) in actions {
                out.actions
                    .insert(name.clone(), action_schema(&name, &spec));
            }
        }
        Ok(out)
    }

    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

/// Builds the JSON schema of one action as Juju 3 does: an object whose
/// properties are `params`, with the action's other top-level keys kept.
fn action_schema(name: &str, spec: &Value) -> Value {
    let mut schema = serde_json::Map::new();
    schema.insert("type".into(), "object".into());
    schema.insert("title".into(), name.into());
    schema.insert("description".into(), "No description".into());
    schema.insert("properties".into(), Value::Object(Default::default()));
    if let Some(map) = spec.as_object() {
        for (k, v) in map {
            match k.as_str() {
                "params" => {
                    schema.insert("properties".into(), v.clone());
                }
                "parallel" | "execution-group" => {}
                _ => {
                    schema.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Value::Object(schema)
}

/// Places the charm at `dest`: copies a charm directory or unzips a `.charm`.
pub fn unpack(src: &Path, dest: &Path) -> Result<()> {
    if src.is_dir() {
        return crate::fsutil::copy_tree(src, dest);
    }
    if !src.is_file() {
        bail!(
            "charm {} is neither a directory nor a .charm file",
            src.display()
        );
    }
    crate::charmzip::extract(src, dest)
}
