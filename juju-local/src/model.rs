//! The model's state (`<model>/model.json`): applications, units, relations,
//! databags, secrets, statuses, counters and the hook queue, plus loading and
//! saving it under the model's flock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::queue::QueuedHook;

/// A relation databag: keys to string values.
pub type Bag = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub status: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub data: BTreeMap<String, serde_json::Value>,
}

impl Status {
    pub fn new(status: &str, message: &str) -> Status {
        Status {
            status: status.to_string(),
            message: message.to_string(),
            data: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    /// The charm's name from metadata.yaml.
    pub charm: String,
    /// Order of deployment, from 1: the third octet of its units' addresses.
    pub index: u32,
    pub next_unit: u32,
    /// Explicitly set config values (defaults come from config.yaml).
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
    pub leader: Option<String>,
    /// What the leader set with `status-set --application`.
    pub status: Option<Status>,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub leader_settings: Bag,
    /// Set for juju-local's built-in stand-ins (the charm's name): their
    /// hooks and actions run inside juju-local instead of a dispatch process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Storage {
    /// `name/N`.
    pub id: String,
    pub location: String,
}

/// What a unit knows of a secret it consumes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Consumed {
    pub revision: u32,
    pub label: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Unit {
    pub name: String,
    pub app: String,
    pub number: u32,
    /// The machine this unit stands for (JUJU_MACHINE_ID).
    #[serde(default)]
    pub machine: u32,
    pub address: String,
    pub workload: Status,
    /// `idle`, `executing` or `error`.
    pub agent: String,
    /// The message shown while the agent is in error.
    #[serde(default)]
    pub agent_message: String,
    #[serde(default)]
    pub state: Bag,
    #[serde(default)]
    pub storage: BTreeMap<String, Storage>,
    #[serde(default)]
    pub ports: BTreeSet<String>,
    #[serde(default)]
    pub consumed: BTreeMap<String, Consumed>,
    /// Set once remove-unit has queued its teardown.
    #[serde(default)]
    pub dying: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct End {
    pub app: String,
    pub endpoint: String,
    /// `peer`, `provider` or `requirer`.
    pub role: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Relation {
    pub id: u64,
    pub interface: String,
    pub ends: Vec<End>,
    #[serde(default)]
    pub app_bags: BTreeMap<String, Bag>,
    #[serde(default)]
    pub unit_bags: BTreeMap<String, Bag>,
    /// For each unit in the relation, the remote units it has seen join.
    #[serde(default)]
    pub joined: BTreeMap<String, BTreeSet<String>>,
    /// Units that ran `-relation-broken` (or were never in it).
    #[serde(default)]
    pub broken: BTreeSet<String>,
    #[serde(default)]
    pub dying: bool,
}

impl Relation {
    pub fn is_peer(&self) -> bool {
        self.ends.len() == 1
    }
    /// This app's end of the relation.
    pub fn end_of(&self, app: &str) -> Option<&End> {
        self.ends.iter().find(|e| e.app == app)
    }
    /// The app on the other side (the same app for a peer relation).
    pub fn remote_app(&self, app: &str) -> Option<String> {
        if self.is_peer() {
            return self.end_of(app).map(|e| e.app.clone());
        }
        self.ends
            .iter()
            .find(|e| e.app != app)
            .map(|e| e.app.clone())
    }
    pub fn has_app(&self, app: &str) -> bool {
        self.end_of(app).is_some()
    }
    /// `endpoint:id` as this app sees it.
    pub fn key_for(&self, app: &str) -> String {
        match self.end_of(app) {
            Some(e) => format!("{}:{}", e.endpoint, self.id),
            None => format!("?:{}", self.id),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Revision {
    pub revision: u32,
    pub content: Bag,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Secret {
    /// The 20-character id (the URI is `secret://<model-uuid>/<id>`).
    pub id: String,
    /// `application` (owned by `owner_app`), `unit` (owned by `owner_unit`)
    /// or `model` (a user secret, made by `juju-local add-secret`; its name
    /// is `label`).
    pub owner_kind: String,
    pub owner_app: String,
    pub owner_unit: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub expire: Option<String>,
    #[serde(default)]
    pub rotate: Option<String>,
    pub revisions: Vec<Revision>,
    /// Grants: relation id -> units or apps granted through it.
    #[serde(default)]
    pub grants: BTreeMap<u64, BTreeSet<String>>,
    /// A user secret's grants (`juju grant-secret`): applications that may read it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub granted_apps: BTreeSet<String>,
}

impl Secret {
    pub fn latest(&self) -> u32 {
        self.revisions.last().map(|r| r.revision).unwrap_or(0)
    }
    pub fn content(&self, revision: u32) -> Option<&Bag> {
        self.revisions
            .iter()
            .find(|r| r.revision == revision)
            .map(|r| &r.content)
    }
}

/// The model's embedded S3 server (see `juju-local s3-server`), when one runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct S3Server {
    pub pid: i32,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The directory it serves (one subdirectory per bucket).
    pub dir: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Model {
    pub uuid: String,
    /// The model's name (`JUJU_MODEL_NAME`), chosen when it is created.
    #[serde(default = "default_model_name")]
    pub name: String,
    pub octet: u8,
    /// Shared by operations and tasks, as in Juju.
    pub next_action_id: u64,
    pub next_relation_id: u64,
    pub next_storage_id: u64,
    pub next_app_index: u32,
    #[serde(default)]
    pub next_machine: u32,
    pub apps: BTreeMap<String, App>,
    pub units: BTreeMap<String, Unit>,
    pub relations: BTreeMap<u64, Relation>,
    pub secrets: BTreeMap<String, Secret>,
    pub queue: Vec<QueuedHook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_server: Option<S3Server>,
    /// The driven clock's time (RFC 3339), or none for the machine's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
}

/// The name of a model created without `JUJU_LOCAL_MODEL_NAME`.
pub fn default_model_name() -> String {
    "local".into()
}

/// The name for a new model: `JUJU_LOCAL_MODEL_NAME`, which must be a valid
/// Juju model name, or `local`.
pub fn new_model_name() -> Result<String> {
    let Ok(name) = std::env::var("JUJU_LOCAL_MODEL_NAME") else {
        return Ok(default_model_name());
    };
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "JUJU_LOCAL_MODEL_NAME {name:?} is not a valid model name: use lowercase letters, \
             digits and hyphens"
        );
    }
    Ok(name)
}

impl Model {
    pub fn unit(&self, name: &str) -> Result<&Unit> {
        self.units
            .get(name)
            .with_context(|| format!("unit \"{name}\" not found"))
    }
    pub fn unit_mut(&mut self, name: &str) -> Result<&mut Unit> {
        self.units
            .get_mut(name)
            .with_context(|| format!("unit \"{name}\" not found"))
    }
    pub fn app(&self, name: &str) -> Result<&App> {
        self.apps
            .get(name)
            .with_context(|| format!("application \"{name}\" not found"))
    }
    pub fn is_leader(&self, unit: &str) -> bool {
        let app = unit_app(unit);
        self.apps
            .get(app)
            .and_then(|a| a.leader.as_deref())
            .is_some_and(|l| l == unit)
    }
    /// Units of an app, sorted by number.
    pub fn units_of(&self, app: &str) -> Vec<String> {
        let mut v: Vec<&Unit> = self.units.values().filter(|u| u.app == app).collect();
        v.sort_by_key(|u| u.number);
        v.into_iter().map(|u| u.name.clone()).collect()
    }
    /// Relations this unit is in (not yet broken for it), sorted by id.
    pub fn relations_of_unit(&self, unit: &str) -> Vec<u64> {
        let app = unit_app(unit);
        self.relations
            .values()
            .filter(|r| r.has_app(app) && !r.broken.contains(unit))
            .map(|r| r.id)
            .collect()
    }
    /// Units taking part in a relation: live units of its apps that have not run broken.
    pub fn relation_units(&self, rel: &Relation) -> Vec<String> {
        let mut out = Vec::new();
        for end in &rel.ends {
            for u in self.units_of(&end.app) {
                if !rel.broken.contains(&u) {
                    out.push(u);
                }
            }
        }
        out
    }
    /// `secret://<uuid>/<id>`.
    pub fn secret_uri(&self, id: &str) -> String {
        format!("secret://{}/{}", self.uuid, id)
    }
}

/// `postgresql/0` -> `postgresql`.
pub fn unit_app(unit: &str) -> &str {
    unit.split('/').next().unwrap_or(unit)
}

/// `postgresql/0` -> `postgresql-0` (directory and tag form).
pub fn unit_dirname(unit: &str) -> String {
    unit.replace('/', "-")
}

/// A model directory held under its flock for the whole command.
pub struct ModelDir {
    pub root: PathBuf,
    _lock: fs::File,
}

impl ModelDir {
    /// Takes the model's lock, creating the directory when `create` is set.
    pub fn open(root: &Path, create: bool) -> Result<ModelDir> {
        if !root.join("model.json").exists() && !create {
            bail!(
                "model {} does not exist (deploy something first)",
                root.display()
            );
        }
        crate::fsutil::create_dir_shared(root)?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot resolve model directory {}", root.display()))?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))
            .with_context(|| format!("cannot open {}", root.join("lock").display()))?;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            bail!("cannot lock the model: {}", std::io::Error::last_os_error());
        }
        Ok(ModelDir { root, _lock: lock })
    }

    pub fn exists(&self) -> bool {
        self.root.join("model.json").exists()
    }

    pub fn load(&self) -> Result<Model> {
        let path = self.root.join("model.json");
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
    }

    /// Writes model.json atomically (temp file + rename).
    pub fn save(&self, model: &Model) -> Result<()> {
        let path = self.root.join("model.json");
        let tmp = self.root.join("model.json.tmp");
        let text = serde_json::to_string_pretty(model).context("cannot encode the model")?;
        fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))
    }

    pub fn unit_dir(&self, unit: &str) -> PathBuf {
        self.root.join("units").join(unit_dirname(unit))
    }
    pub fn charm_dir(&self, app: &str) -> PathBuf {
        self.root.join("charms").join(app)
    }
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }
}
