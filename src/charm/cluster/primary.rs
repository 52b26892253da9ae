//! The primary's unit: initialise the cluster (leader, once), serve as the
//! primary (promoting itself when it was elected from the replicas), and
//! admit the peers: their addresses in pg_hba.conf, a slot for each.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};

use super::Cluster;
use crate::charm::outcome::Blocked;
use crate::charm::passwords::SystemUser;
use crate::charm::peers::{PeerAppData, PeerUnitData};
use crate::charm::workload::slot_name;
use crate::juju::{Status, StatusKind};
use crate::postgres::roles;
use crate::postgres::sql::Db;

pub const STATUS: &str = "Primary";

/// The first primary: initdb, start, create the system roles, record itself.
pub fn bootstrap(c: &mut Cluster<'_>) -> Result<Status> {
    let server = &c.workload.server;

    // A data directory with checksums, the operator as bootstrap superuser.
    if !server.is_initialised() {
        c.tools.status_set(
            false,
            &Status::new(StatusKind::Maintenance, "initialising the database cluster"),
        )?;
        server.initdb(
            SystemUser::Operator.as_str(),
            c.passwords.get(SystemUser::Operator)?,
        )?;
    }
    c.workload.configure(&c.peers, None)?;
    server.start()?;

    // The other system roles, with their passwords.
    let db = Db::local_peer(&server.layout.socket_dir())?;
    for user in SystemUser::ALL {
        if user != SystemUser::Operator {
            roles::apply(&db, user.as_str(), c.passwords.get(user)?)?;
        }
    }

    // Tell the peers who the primary is.
    let data = PeerAppData {
        primary: Some(c.ctx.unit.clone()),
        ..c.peers.app_data.clone()
    };
    c.peers.save_app_data(c.tools, data)?;
    tracing::info!("initialised the cluster; this unit is its primary");
    reconcile(c)
}

/// Serves as the primary and admits the peers.
pub fn reconcile(c: &mut Cluster<'_>) -> Result<Status> {
    let server = &c.workload.server;
    if !server.is_initialised() {
        return Err(Blocked(format!(
            "{} is the recorded primary but has no data directory: restore from a backup, or remove this unit so a replica is promoted",
            c.ctx.unit
        ))
        .into());
    }

    // Configuration first: pg_hba.conf must admit the peers before they come.
    let changed = c.workload.configure(&c.peers, None)?;
    if !server.is_running()? {
        server.start()?;
    } else if changed {
        server.reload()?;
    }

    // A replica elected to lead ends its recovery.
    let db = Db::local_peer(&server.layout.socket_dir())?;
    if db.is_in_recovery()? {
        server.promote()?;
        tracing::info!("promoted this unit's server to primary");
    }

    // One slot per peer; the slots of units that left go.
    let wanted: BTreeSet<String> = c.peers.members.keys().map(|u| slot_name(u)).collect();
    let existing: BTreeSet<String> = db.slots()?.into_iter().collect();
    for slot in wanted.difference(&existing) {
        db.create_slot(slot)?;
    }
    let ours = slot_name(&format!("{}/", c.ctx.app));
    for slot in existing
        .difference(&wanted)
        .filter(|s| s.starts_with(&ours))
    {
        if db.drop_slot(slot)? {
            tracing::info!("dropped the replication slot {slot} of a unit that left");
        }
    }

    // Peers with an address are in pg_hba.conf and have a slot: admitted.
    let admitted: Vec<String> = c
        .peers
        .members
        .iter()
        .filter(|(_, m)| m.address.is_some())
        .map(|(u, _)| u.clone())
        .collect();
    if c.peers.mine.admitted.as_ref() != Some(&admitted) {
        let mine = PeerUnitData {
            admitted: Some(admitted),
            ..c.peers.mine.clone()
        };
        c.peers
            .save_mine(c.tools, mine)
            .context("cannot tell the peers they are admitted")?;
    }
    Ok(Status::new(StatusKind::Active, STATUS))
}
