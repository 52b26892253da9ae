//! The peer relation (`database-peers`) and its typed application bag, which
//! the leader writes and every unit reads.

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::event::PEERS_ENDPOINT;
use crate::juju::{databag, Bag, Fields, HookTools, RelationId};

/// The cluster's shared facts, in the peer app bag (leader-written).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerAppData {
    /// The URI of the app-owned secret holding the system users' passwords.
    pub system_users_secret: Option<String>,
    /// The unit whose PostgreSQL is the primary.
    pub primary: Option<String>,
}

/// The peer relation as this hook sees it.
#[derive(Debug, Clone)]
pub struct Peers {
    pub relation: RelationId,
    pub app_data: PeerAppData,
    raw_app: Fields,
}

impl Peers {
    /// Reads the peer relation; `None` before Juju has created it.
    pub fn load(tools: &dyn HookTools, app: &str) -> Result<Option<Self>> {
        let ids = tools
            .relation_ids(PEERS_ENDPOINT)
            .context("cannot list the peer relations")?;
        let Some(relation) = ids.into_iter().next() else {
            return Ok(None);
        };
        let raw_app = tools
            .relation_get(&relation, Bag::App(app))
            .context("cannot read the peer application databag")?;
        let app_data =
            databag::decode(&raw_app).context("the peer application databag is not valid")?;
        Ok(Some(Self {
            relation,
            app_data,
            raw_app,
        }))
    }

    /// Writes the app bag (leader only), sending only what changed.
    pub fn save_app_data(&mut self, tools: &dyn HookTools, data: PeerAppData) -> Result<()> {
        databag::write(tools, &self.relation, true, &self.raw_app, &data)?;
        self.raw_app = databag::encode(&data)?;
        self.app_data = data;
        Ok(())
    }
}
