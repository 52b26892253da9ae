//! Switchover (leader only): another unit takes over as the primary while
//! the current one is still there, without losing a committed transaction.
//! The primary is fenced (read-only, client sessions ended, a checkpoint),
//! the target must receive all its WAL, and only then is the target
//! recorded as the primary and promoted (over SQL: Juju shows the record to
//! the other units only once the action ends). The former primary rejoins
//! as a replica by `pg_rewind` (see `rejoin`): here when it is the leader's
//! own unit, else on its own hook.
//!
//! Nothing changes when the target cannot take over: a target that is not
//! a streaming replica is refused before the fence, and one that does not
//! catch up in time lifts the fence again.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::{connect_unit, Cluster};
use crate::charm::peers::PeerAppData;
use crate::juju::{Status, StatusKind};
use crate::postgres::sql::{format_lsn, Db};

/// How long the target gets to receive the primary's last WAL.
const CATCH_UP: Duration = Duration::from_secs(60);
/// How long the target's promotion may take.
const PROMOTION: Duration = Duration::from_secs(120);

/// What a switchover did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    pub primary: String,
    pub former: String,
    /// The former primary's last WAL position, which the new one has.
    pub fenced_at: String,
}

/// Makes `target` the primary in place of the current one.
pub fn run(c: &mut Cluster<'_>, target: &str) -> Result<Switched> {
    let me = c.ctx.unit.clone();

    // Who is the primary now, and is the target one of this cluster's units?
    let Some(former) = c.peers.app_data.primary.clone() else {
        bail!("the cluster has no primary yet: wait until the leader has initialised it");
    };
    if former == target {
        bail!("{target} is already the primary: nothing to do");
    }
    if former != me && !c.peers.members.contains_key(&former) {
        bail!("the primary {former} has left: wait for the leader to promote a replica");
    }
    if target != me && !c.peers.members.contains_key(target) {
        let mut units: Vec<&str> = c.peers.members.keys().map(String::as_str).collect();
        units.push(&me);
        units.sort();
        bail!(
            "{target} is not a unit of this application: choose one of {}",
            units.join(", ")
        );
    }

    // The target must be a replica that streams now.
    let candidate = connect(c, target)?;
    if !candidate.is_in_recovery()? || !candidate.is_streaming()? {
        bail!(
            "{target} is not streaming from the primary, so it may lack recent transactions: \
             wait until its status says \"Replica, streaming\", then run the action again"
        );
    }

    // Stop writes on the primary, and wait until the target has all its WAL.
    let primary = connect(c, &former)?;
    if let Err(err) = primary.fence() {
        let _ = primary.unfence();
        return Err(err.context(format!("cannot switch over to {target}: nothing changed")));
    }
    let fenced_at = primary
        .execute("CHECKPOINT")
        .and_then(|()| primary.wal_position());
    let caught_up = fenced_at.and_then(|at| wait_for(&candidate, at).map(|ok| (at, ok)));
    let fenced_at = match caught_up {
        Ok((at, true)) => at,
        failed => {
            primary.unfence()?;
            let why = match failed {
                Err(err) => format!("{err:#}"),
                Ok(_) => format!("it did not receive the primary's last WAL within {CATCH_UP:?}"),
            };
            bail!(
                "cannot switch over to {target}: {why}; nothing changed and {former} takes \
                 writes again"
            );
        }
    };
    tracing::info!(
        "switching over from {former} to {target}: it has all WAL up to {}",
        format_lsn(fenced_at)
    );

    // Record the new primary, and promote it.
    let data = PeerAppData {
        primary: Some(target.to_owned()),
        ..c.peers.app_data.clone()
    };
    c.peers.save_app_data(c.tools, data)?;
    if target == me {
        let status = c.role_step()?;
        c.tools.status_set(false, &status)?;
    } else {
        // Its hooks see the new record only once this action ends.
        promote(&candidate, target)?;
    }

    // The former primary rejoins as a replica: here when it is this unit,
    // whose hooks wait for the action to end; else on its own hook.
    if former == me {
        let status = c.role_step().unwrap_or_else(|err| {
            tracing::info!("this unit rejoins {target} on a later hook: {err:#}");
            Status::new(
                StatusKind::Waiting,
                format!("rejoining {target} as a replica"),
            )
        });
        c.tools.status_set(false, &status)?;
    }
    Ok(Switched {
        primary: target.to_owned(),
        former,
        fenced_at: format_lsn(fenced_at),
    })
}

/// A connection as `operator` to `unit`'s server.
fn connect(c: &Cluster<'_>, unit: &str) -> Result<Db> {
    connect_unit(c.ctx, &c.peers, &c.passwords, unit)
        .with_context(|| format!("cannot connect to {unit}'s server"))
}

/// Waits until `db` has received WAL up to `lsn`; false after `CATCH_UP`.
fn wait_for(db: &Db, lsn: u64) -> Result<bool> {
    let started = Instant::now();
    while db.wal_position()? < lsn {
        if started.elapsed() > CATCH_UP {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(true)
}

/// Promotes the target's server from here; its own next hook does the
/// rest of a primary's work (configuration, slots, admitting the peers).
fn promote(db: &Db, target: &str) -> Result<()> {
    let sql = format!("SELECT pg_promote(true, {})::text", PROMOTION.as_secs());
    match db.query_text(&sql).as_deref() {
        Ok("true") => Ok(()),
        Ok(_) => bail!(
            "{target} is recorded as the primary but did not finish its promotion within \
             {PROMOTION:?}: it promotes itself on its next hook; see its status"
        ),
        Err(err) => bail!(
            "{target} is recorded as the primary but could not be promoted ({err:#}): it \
             promotes itself on its next hook; see its status"
        ),
    }
}
