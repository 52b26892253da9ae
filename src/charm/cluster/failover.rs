//! Electing a new primary when the primary's unit has left (leader only):
//! fence the old primary if it still answers, let the replicas catch up
//! with its last WAL, and promote the most advanced one, so that no
//! committed transaction is lost.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{remote_ca, Cluster};
use crate::charm::passwords::SystemUser;
use crate::charm::peers::{PeerAppData, PeerUnitData};
use crate::juju::Bag;
use crate::postgres::sql::Db;

/// How long replicas get to receive the old primary's last WAL.
const CATCH_UP: Duration = Duration::from_secs(60);

/// How to reach another unit's server.
struct Remote {
    addr: IpAddr,
    ca: Option<PathBuf>,
}

/// Records a new primary in the peer app bag.
pub fn elect(c: &mut Cluster<'_>, old: &str) -> Result<()> {
    let operator = c.passwords.get(SystemUser::Operator)?.to_owned();

    // Stop writes on the old primary if it still answers; note its last WAL.
    let fence_at = match old_primary(c, old) {
        Some((addr, tls)) => fence(addr, &operator, remote_ca(c.ctx, tls)?.as_deref()),
        None => None,
    };

    // The candidates: this unit and every peer still here.
    let mut candidates = vec![(c.ctx.unit.clone(), None)];
    for (unit, data) in &c.peers.members {
        if let Some(addr) = data.address.as_deref().and_then(|a| a.parse().ok()) {
            let ca = remote_ca(c.ctx, data.tls == Some(true))?;
            candidates.push((unit.clone(), Some(Remote { addr, ca })));
        }
    }

    // Wait until one has all the old primary's WAL (or the wait is over),
    // then take the most advanced.
    let started = Instant::now();
    let (chosen, position) = loop {
        let best = candidates
            .iter()
            .filter_map(|(unit, remote)| {
                Some((unit.clone(), position(c, remote.as_ref(), &operator)?))
            })
            .max_by_key(|(_, pos)| *pos);
        match (best, fence_at) {
            (Some(best), Some(target)) if best.1 < target && started.elapsed() < CATCH_UP => {
                std::thread::sleep(Duration::from_millis(200));
            }
            (Some(best), _) => break best,
            (None, _) => bail!("no replica answers: cannot elect a new primary for {old}"),
        }
    };
    if fence_at.is_some_and(|target| position < target) {
        tracing::warn!(
            "{chosen} is behind the old primary's last WAL after {CATCH_UP:?}; promoting it anyway"
        );
    }

    tracing::info!("the primary {old} left; electing {chosen}");
    let data = PeerAppData {
        primary: Some(chosen),
        ..c.peers.app_data.clone()
    };
    c.peers.save_app_data(c.tools, data)
}

/// The old primary's address and whether it serves TLS: its bag is still
/// readable while it departs.
fn old_primary(c: &Cluster<'_>, old: &str) -> Option<(IpAddr, bool)> {
    let fields = c
        .tools
        .relation_get(&c.peers.relation, Bag::Unit(old))
        .ok()?;
    let data: PeerUnitData = crate::juju::databag::decode(&fields).ok()?;
    Some((data.address?.parse().ok()?, data.tls == Some(true)))
}

/// Makes the old primary read-only, ends its client sessions and forces
/// its last WAL out; returns its final WAL position, or None if it is gone.
fn fence(addr: IpAddr, operator: &str, ca: Option<&Path>) -> Option<u64> {
    let db = Db::remote_tls(addr, "operator", operator, ca).ok()?;
    let fenced = db.fence().and_then(|()| db.execute("CHECKPOINT"));
    if let Err(err) = fenced {
        tracing::warn!("cannot fence the old primary at {addr}: {err:#}");
    }
    db.wal_position().ok()
}

/// A candidate's WAL position (None when it does not answer).
fn position(c: &Cluster<'_>, remote: Option<&Remote>, operator: &str) -> Option<u64> {
    let db = match remote {
        None => Db::local_peer(&c.workload.server.layout.socket_dir()),
        Some(r) => Db::remote_tls(r.addr, "operator", operator, r.ca.as_deref()),
    };
    db.and_then(|db| db.wal_position()).ok()
}
