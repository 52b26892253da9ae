//! The peer relation (`database-peers`) and its typed application bag, which
//! the leader writes and every unit reads.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::event::PEERS_ENDPOINT;
use crate::juju::{databag, Bag, Context, Fields, HookTools, RelationId};

/// The cluster's shared facts, in the peer app bag (leader-written).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerAppData {
    /// The URI of the app-owned secret holding the system users' passwords.
    pub system_users_secret: Option<String>,
    /// The unit whose PostgreSQL is the primary.
    pub primary: Option<String>,
    /// The last restore (its id): units whose data predates it re-seed.
    pub restore: Option<String>,
}

/// What each unit tells its peers, in its own unit bag.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerUnitData {
    /// The address this unit's server listens on.
    pub address: Option<String>,
    /// Written by the primary's unit: the peers its pg_hba.conf admits and
    /// for which it holds a replication slot, so they may seed from it.
    pub admitted: Option<Vec<String>>,
    /// True when this unit serves TLS with a certificate from the relation.
    pub tls: Option<bool>,
    /// The restore this unit's data comes from (see `PeerAppData::restore`).
    pub restored: Option<String>,
}

/// The peer relation as this hook sees it: the app bag, this unit's bag,
/// and every other unit's bag.
#[derive(Debug, Clone)]
pub struct Peers {
    pub relation: RelationId,
    pub app_data: PeerAppData,
    raw_app: Fields,
    pub mine: PeerUnitData,
    raw_mine: Fields,
    /// The other units (not this one), with what they published.
    pub members: BTreeMap<String, PeerUnitData>,
}

impl Peers {
    /// Every unit of the cluster: the peers and this one.
    pub fn units(&self, ctx: &Context) -> Vec<String> {
        let mut units: Vec<String> = self.members.keys().cloned().collect();
        units.push(ctx.unit.clone());
        units
    }

    /// Reads the peer relation; `None` before Juju has created it.
    pub fn load(tools: &dyn HookTools, ctx: &Context) -> Result<Option<Self>> {
        let ids = tools
            .relation_ids(PEERS_ENDPOINT)
            .context("cannot list the peer relations")?;
        let Some(relation) = ids.into_iter().next() else {
            return Ok(None);
        };
        let raw_app = tools
            .relation_get(&relation, Bag::App(&ctx.app))
            .context("cannot read the peer application databag")?;
        let app_data =
            databag::decode(&raw_app).context("the peer application databag is not valid")?;
        let raw_mine = tools
            .relation_get(&relation, Bag::Unit(&ctx.unit))
            .context("cannot read this unit's peer databag")?;
        let mine = databag::decode(&raw_mine).context("this unit's peer databag is not valid")?;
        let mut members = BTreeMap::new();
        for other in tools
            .relation_list(&relation)
            .context("cannot list the peer units")?
        {
            let data = databag::read(tools, &relation, Bag::Unit(&other))?;
            members.insert(other, data);
        }
        Ok(Some(Self {
            relation,
            app_data,
            raw_app,
            mine,
            raw_mine,
            members,
        }))
    }

    /// Writes this unit's bag, sending only what changed.
    pub fn save_mine(&mut self, tools: &dyn HookTools, data: PeerUnitData) -> Result<()> {
        databag::write(tools, &self.relation, false, &self.raw_mine, &data)?;
        self.raw_mine = databag::encode(&data)?;
        self.mine = data;
        Ok(())
    }

    /// Writes the app bag (leader only), sending only what changed.
    pub fn save_app_data(&mut self, tools: &dyn HookTools, data: PeerAppData) -> Result<()> {
        databag::write(tools, &self.relation, true, &self.raw_app, &data)?;
        self.raw_app = databag::encode(&data)?;
        self.app_data = data;
        Ok(())
    }
}
