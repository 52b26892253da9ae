//! The hook tools, as one trait: every call a charm makes to its Juju agent.
//! `ProcessTools` runs the real executables; tests use an in-memory fake.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A relation id as Juju writes it: `<endpoint>:<number>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelationId {
    pub endpoint: String,
    pub number: u32,
}

impl fmt::Display for RelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.endpoint, self.number)
    }
}

impl FromStr for RelationId {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let parsed = s
            .rsplit_once(':')
            .and_then(|(ep, n)| Some((ep, n.parse().ok()?)))
            .filter(|(ep, _)| !ep.is_empty());
        match parsed {
            Some((endpoint, number)) => Ok(Self {
                endpoint: endpoint.to_owned(),
                number,
            }),
            None => bail!("relation id {s:?} is not of the form <endpoint>:<number>"),
        }
    }
}

/// Whose databag a relation read or write is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bag<'a> {
    Unit(&'a str),
    App(&'a str),
}

/// A workload status as `status-set` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusKind {
    Maintenance,
    Blocked,
    Waiting,
    Active,
    /// Only ever read back (`status-get`) before a charm set anything.
    Unknown,
    /// Only ever read back, when a hook failed.
    Error,
}

impl StatusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Maintenance => "maintenance",
            Self::Blocked => "blocked",
            Self::Waiting => "waiting",
            Self::Active => "active",
            Self::Unknown => "unknown",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub kind: StatusKind,
    pub message: String,
}

impl Status {
    pub fn new(kind: StatusKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// `juju-log` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
        }
    }
}

/// How `secret-get` picks the revision it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRead {
    /// The revision this unit tracks.
    Tracked,
    /// The latest revision, and track it from now on.
    Refresh,
    /// The latest revision, without tracking it.
    Peek,
}

/// What `network-get --format=json` answers, as far as the charm uses it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NetworkInfo {
    #[serde(rename = "ingress-addresses", default)]
    pub ingress_addresses: Vec<String>,
    #[serde(rename = "bind-addresses", default)]
    pub bind_addresses: Vec<BindAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BindAddress {
    #[serde(default)]
    pub addresses: Vec<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Address {
    pub value: String,
}

/// A hook tool that ran and said no: its exit code and its stderr, for the
/// callers that branch on them (a missing secret, a non-leader write).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{tool} failed with exit code {code}: {stderr}")]
pub struct ToolError {
    pub tool: String,
    pub code: i32,
    pub stderr: String,
}

impl ToolError {
    /// True when the tool reported that the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.stderr.contains("not found")
    }
}

/// A databag, a secret's content or unit state: string keys to string values.
pub type Fields = BTreeMap<String, String>;

/// Every hook tool the charm uses, one method each, arguments as in Juju's
/// reference. Writes that Juju buffers commit when the process exits 0.
pub trait HookTools {
    // config and leadership
    fn config_get(&self) -> Result<Map<String, Value>>;
    fn is_leader(&self) -> Result<bool>;

    // relations
    fn relation_ids(&self, endpoint: &str) -> Result<Vec<RelationId>>;
    fn relation_list(&self, relation: &RelationId) -> Result<Vec<String>>;
    fn relation_remote_app(&self, relation: &RelationId) -> Result<String>;
    fn relation_get(&self, relation: &RelationId, bag: Bag<'_>) -> Result<Fields>;
    /// Writes `data` into this unit's bag, or the app's (leader only); an empty value deletes.
    fn relation_set(&self, relation: &RelationId, app: bool, data: &Fields) -> Result<()>;

    // status and logs
    fn status_set(&self, app: bool, status: &Status) -> Result<()>;
    fn status_get(&self, app: bool) -> Result<Status>;
    fn juju_log(&self, level: LogLevel, message: &str) -> Result<()>;
    fn application_version_set(&self, version: &str) -> Result<()>;

    // actions
    fn action_get(&self) -> Result<Map<String, Value>>;
    /// Sets results as `key=value` pairs; dotted keys nest.
    fn action_set(&self, results: &[(String, String)]) -> Result<()>;
    fn action_fail(&self, message: &str) -> Result<()>;
    fn action_log(&self, message: &str) -> Result<()>;

    // secrets
    /// Adds an app-owned secret (leader only) and returns its URI.
    fn secret_add(&self, label: Option<&str>, content: &Fields) -> Result<String>;
    fn secret_get(&self, id: Option<&str>, label: Option<&str>, read: SecretRead)
        -> Result<Fields>;
    fn secret_set(&self, id: &str, content: &Fields) -> Result<()>;
    fn secret_grant(&self, id: &str, relation: &RelationId) -> Result<()>;
    fn secret_remove(&self, id: &str) -> Result<()>;
    fn secret_ids(&self) -> Result<Vec<String>>;

    // unit state kept by the controller
    fn state_get(&self, key: &str) -> Result<Option<String>>;
    fn state_set(&self, data: &Fields) -> Result<()>;
    fn state_delete(&self, key: &str) -> Result<()>;

    // the machine
    /// Ids (`name/N`) of this unit's storage instances called `name`.
    fn storage_list(&self, name: &str) -> Result<Vec<String>>;
    fn storage_get(&self, storage_id: &str) -> Result<PathBuf>;
    fn network_get(&self, binding: &str) -> Result<NetworkInfo>;
    fn open_port(&self, port: u16) -> Result<()>;
    fn close_port(&self, port: u16) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_ids_round_trip() {
        let id: RelationId = "database-peers:12".parse().unwrap();
        assert_eq!(id.endpoint, "database-peers");
        assert_eq!(id.number, 12);
        assert_eq!(id.to_string(), "database-peers:12");
        assert!("database-peers".parse::<RelationId>().is_err());
        assert!(":3".parse::<RelationId>().is_err());
        assert!("db:x".parse::<RelationId>().is_err());
    }

    #[test]
    fn relation_ids_sort_by_endpoint_then_number() {
        let mut ids: Vec<RelationId> = ["db:12", "db:2", "a:9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        ids.sort();
        let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["a:9", "db:2", "db:12"]);
    }
}
