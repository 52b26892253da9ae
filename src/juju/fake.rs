//! An in-memory `HookTools` for unit tests: relation bags, leadership,
//! secrets, statuses, action params and results, with Juju's leader-only
//! rules for app bags and app-owned secrets.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

use super::tools::{
    Bag, Fields, HookTools, LogLevel, NetworkInfo, RelationId, SecretRead, Status, StatusKind,
    ToolError,
};

#[derive(Debug, Default)]
pub struct FakeState {
    pub unit: String,
    pub app: String,
    pub leader: bool,
    pub config: Map<String, Value>,
    /// Relation id → (endpoint's remote units, remote app).
    pub relations: BTreeMap<RelationId, (Vec<String>, String)>,
    /// (relation, owner name) → bag.
    pub bags: BTreeMap<(RelationId, String), Fields>,
    /// id → (label, content).
    pub secrets: BTreeMap<String, (Option<String>, Fields)>,
    pub unit_status: Option<Status>,
    pub app_status: Option<Status>,
    pub logs: Vec<(LogLevel, String)>,
    pub params: Map<String, Value>,
    pub results: Vec<(String, String)>,
    pub failed: Option<String>,
    pub action_logs: Vec<String>,
    pub state: Fields,
    pub address: String,
    /// Storage id → location.
    pub storage: BTreeMap<String, PathBuf>,
}

/// The fake; `state` is public so tests can arrange and inspect it.
#[derive(Debug, Default)]
pub struct FakeTools {
    pub state: RefCell<FakeState>,
}

fn refuse(tool: &str, code: i32, stderr: &str) -> anyhow::Error {
    ToolError {
        tool: tool.into(),
        code,
        stderr: stderr.into(),
    }
    .into()
}

impl FakeTools {
    pub fn new(unit: &str, leader: bool) -> Self {
        let app = unit.split('/').next().unwrap_or(unit).to_owned();
        let state = FakeState {
            unit: unit.into(),
            app,
            leader,
            address: "127.0.0.1".into(),
            ..FakeState::default()
        };
        Self {
            state: RefCell::new(state),
        }
    }

    /// Adds a relation to `remote_app` with the given remote units.
    pub fn add_relation(&self, id: &str, remote_app: &str, units: &[&str]) -> RelationId {
        let id: RelationId = id.parse().expect("a valid relation id");
        let units = units.iter().map(|u| u.to_string()).collect();
        self.state
            .borrow_mut()
            .relations
            .insert(id.clone(), (units, remote_app.into()));
        id
    }

    fn relation(&self, tool: &str, id: &RelationId) -> Result<(Vec<String>, String)> {
        let state = self.state.borrow();
        state.relations.get(id).cloned().ok_or_else(|| {
            refuse(
                tool,
                2,
                &format!("invalid value \"{id}\" for option -r: relation not found"),
            )
        })
    }
}

impl HookTools for FakeTools {
    fn config_get(&self) -> Result<Map<String, Value>> {
        Ok(self.state.borrow().config.clone())
    }

    fn is_leader(&self) -> Result<bool> {
        Ok(self.state.borrow().leader)
    }

    fn relation_ids(&self, endpoint: &str) -> Result<Vec<RelationId>> {
        let state = self.state.borrow();
        Ok(state
            .relations
            .keys()
            .filter(|id| id.endpoint == endpoint)
            .cloned()
            .collect())
    }

    fn relation_list(&self, relation: &RelationId) -> Result<Vec<String>> {
        Ok(self.relation("relation-list", relation)?.0)
    }

    fn relation_remote_app(&self, relation: &RelationId) -> Result<String> {
        Ok(self.relation("relation-list", relation)?.1)
    }

    fn relation_get(&self, relation: &RelationId, bag: Bag<'_>) -> Result<Fields> {
        let (_, remote_app) = self.relation("relation-get", relation)?;
        let state = self.state.borrow();
        let owner = match bag {
            Bag::Unit(u) => u.to_owned(),
            Bag::App(a) => {
                let own_app_outside_peers = a == state.app && remote_app != state.app;
                if own_app_outside_peers && !state.leader {
                    return Err(refuse("relation-get", 1, "permission denied"));
                }
                a.to_owned()
            }
        };
        Ok(state
            .bags
            .get(&(relation.clone(), owner))
            .cloned()
            .unwrap_or_default())
    }

    fn relation_set(&self, relation: &RelationId, app: bool, data: &Fields) -> Result<()> {
        self.relation("relation-set", relation)?;
        let mut state = self.state.borrow_mut();
        if app && !state.leader {
            return Err(refuse("relation-set", 1, "cannot write relation settings"));
        }
        let owner = if app {
            state.app.clone()
        } else {
            state.unit.clone()
        };
        let bag = state.bags.entry((relation.clone(), owner)).or_default();
        for (k, v) in data {
            if v.is_empty() {
                bag.remove(k);
            } else {
                bag.insert(k.clone(), v.clone());
            }
        }
        Ok(())
    }

    fn status_set(&self, app: bool, status: &Status) -> Result<()> {
        let mut state = self.state.borrow_mut();
        if app {
            if !state.leader {
                return Err(refuse("status-set", 1, "this unit is not the leader"));
            }
            state.app_status = Some(status.clone());
        } else {
            state.unit_status = Some(status.clone());
        }
        Ok(())
    }

    fn status_get(&self, app: bool) -> Result<Status> {
        let state = self.state.borrow();
        let status = if app {
            &state.app_status
        } else {
            &state.unit_status
        };
        Ok(status
            .clone()
            .unwrap_or(Status::new(StatusKind::Unknown, "")))
    }

    fn juju_log(&self, level: LogLevel, message: &str) -> Result<()> {
        self.state.borrow_mut().logs.push((level, message.into()));
        Ok(())
    }

    fn application_version_set(&self, _version: &str) -> Result<()> {
        Ok(())
    }

    fn action_get(&self) -> Result<Map<String, Value>> {
        Ok(self.state.borrow().params.clone())
    }

    fn action_set(&self, results: &[(String, String)]) -> Result<()> {
        self.state.borrow_mut().results.extend_from_slice(results);
        Ok(())
    }

    fn action_fail(&self, message: &str) -> Result<()> {
        self.state.borrow_mut().failed = Some(message.into());
        Ok(())
    }

    fn action_log(&self, message: &str) -> Result<()> {
        self.state.borrow_mut().action_logs.push(message.into());
        Ok(())
    }

    fn secret_add(&self, label: Option<&str>, content: &Fields) -> Result<String> {
        let mut state = self.state.borrow_mut();
        if !state.leader {
            return Err(refuse("secret-add", 1, "this unit is not the leader"));
        }
        let id = format!("secret://model/s{}", state.secrets.len());
        state
            .secrets
            .insert(id.clone(), (label.map(str::to_owned), content.clone()));
        Ok(id)
    }

    fn secret_get(
        &self,
        id: Option<&str>,
        label: Option<&str>,
        _read: SecretRead,
    ) -> Result<Fields> {
        let state = self.state.borrow();
        let found = state.secrets.iter().find(|(sid, (slabel, _))| match id {
            Some(id) => id == sid.as_str(),
            None => slabel.as_deref() == label,
        });
        match found {
            Some((_, (_, content))) => Ok(content.clone()),
            None => Err(refuse(
                "secret-get",
                1,
                &format!("secret \"{}\" not found", id.or(label).unwrap_or_default()),
            )),
        }
    }

    fn secret_set(&self, id: &str, content: &Fields) -> Result<()> {
        let mut state = self.state.borrow_mut();
        if !state.leader {
            return Err(refuse("secret-set", 1, "this unit is not the leader"));
        }
        match state.secrets.get_mut(id) {
            Some(secret) => secret.1 = content.clone(),
            None => {
                return Err(refuse(
                    "secret-set",
                    1,
                    &format!("secret \"{id}\" not found"),
                ))
            }
        }
        Ok(())
    }

    fn secret_grant(&self, _id: &str, _relation: &RelationId) -> Result<()> {
        Ok(())
    }

    fn secret_remove(&self, id: &str) -> Result<()> {
        self.state.borrow_mut().secrets.remove(id);
        Ok(())
    }

    fn secret_ids(&self) -> Result<Vec<String>> {
        Ok(self.state.borrow().secrets.keys().cloned().collect())
    }

    fn state_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.state.borrow().state.get(key).cloned())
    }

    fn state_set(&self, data: &Fields) -> Result<()> {
        self.state.borrow_mut().state.extend(data.clone());
        Ok(())
    }

    fn state_delete(&self, key: &str) -> Result<()> {
        self.state.borrow_mut().state.remove(key);
        Ok(())
    }

    fn storage_list(&self, name: &str) -> Result<Vec<String>> {
        let state = self.state.borrow();
        Ok(state
            .storage
            .keys()
            .filter(|id| id.split('/').next() == Some(name))
            .cloned()
            .collect())
    }

    fn storage_get(&self, storage_id: &str) -> Result<PathBuf> {
        match self.state.borrow().storage.get(storage_id) {
            Some(path) => Ok(path.clone()),
            None => bail!("the fake has no storage {storage_id}"),
        }
    }

    fn network_get(&self, _binding: &str) -> Result<NetworkInfo> {
        let address = self.state.borrow().address.clone();
        Ok(NetworkInfo {
            ingress_addresses: vec![address],
            bind_addresses: vec![],
        })
    }

    fn open_port(&self, _port: u16) -> Result<()> {
        Ok(())
    }

    fn close_port(&self, _port: u16) -> Result<()> {
        Ok(())
    }
}
