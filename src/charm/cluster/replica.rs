//! A replica's unit: seed itself when it has no standby data directory
//! (from a recent backup in the repository, else by base backup from the
//! primary; see `seed`), or rewind its data onto the primary's history
//! when it was the primary before (see `rejoin`), then stream from the
//! primary through its slot, reading the archive for what the primary no
//! longer has; follow a new primary by changing `primary_conninfo`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::{rejoin, seed, Cluster};
use crate::charm::outcome::Waiting;
use crate::charm::passwords::SystemUser;
use crate::charm::peers::PeerUnitData;
use crate::charm::tls::TlsPaths;
use crate::charm::workload::slot_name;
use crate::juju::{Status, StatusKind};
use crate::postgres::conf::{Standby, PORT};
use crate::postgres::sql::Db;

/// Streams from `primary`, seeding first if needed.
pub fn reconcile(c: &mut Cluster<'_>, primary: &str) -> Result<Status> {
    let server = &c.workload.server;
    let me = &c.ctx.unit;

    // Where the primary is, and the password to reach it.
    let primary_data = &c.peers.members[primary];
    let Some(address) = primary_data
        .address
        .as_deref()
        .and_then(|a| a.parse::<IpAddr>().ok())
    else {
        return Err(Waiting(format!(
            "waiting for the primary {primary} to publish its address"
        ))
        .into());
    };
    let new_password = c
        .workload
        .write_passfile(c.passwords.get(SystemUser::Replication)?)?;
    let slot = slot_name(me);
    // Over TLS, verified against the cluster's CA, when the primary serves it.
    let ca = TlsPaths::of(server).ca;
    let sslmode = match primary_data.tls {
        Some(true) if ca.exists() => "verify-ca",
        Some(true) => "require",
        _ => "prefer",
    };
    let conninfo = format!(
        "host={address} port={PORT} user=replication passfile={} application_name={slot} \
         connect_timeout=10 sslmode={sslmode} sslrootcert={}",
        server.layout.passfile().display(),
        ca.display()
    );
    let ssl_env = [
        ("PGSSLMODE", sslmode.to_owned()),
        ("PGSSLROOTCERT", ca.display().to_string()),
    ];
    let standby = || Standby {
        primary_conninfo: &conninfo,
        slot: &slot,
        restore_command: c.workload.restore_command.as_deref(),
    };

    // The primary admits this unit (pg_hba.conf, slot) once it serves.
    let admitted = primary_data
        .admitted
        .as_ref()
        .is_some_and(|a| a.contains(me));
    // Data from before the cluster's last restore has another history.
    let restore = c.peers.app_data.restore.clone();
    let predates_restore = restore.is_some() && c.peers.mine.restored != restore;
    if !server.is_initialised() || !server.is_standby() || predates_restore {
        let upstream = seed::Upstream {
            unit: primary,
            address,
            slot: &slot,
            ssl_env: &ssl_env,
        };
        // A former primary of this cluster catches up by pg_rewind, when
        // that applies (it reads the archive until its slot exists); any
        // other unit is seeded through its slot.
        let former_primary = server.is_initialised() && !predates_restore;
        if !(former_primary && rejoin::by_rewind(c, &upstream, standby())?) {
            if !admitted {
                return Err(Waiting(format!(
                    "waiting for the primary {primary} to admit this unit"
                ))
                .into());
            }
            server.stop()?;
            let set_aside = seed::seed(c, &upstream, standby())?;
            // The old data goes only once the new server runs on its copy.
            if let Some(old) = set_aside {
                std::fs::remove_dir_all(&old)
                    .with_context(|| format!("cannot remove {}", old.display()))?;
            }
        }
        if predates_restore {
            let mine = PeerUnitData {
                restored: restore,
                ..c.peers.mine.clone()
            };
            c.peers.save_mine(c.tools, mine)?;
        }
    } else {
        // Follow the current primary (a reload restarts the WAL receiver).
        let changed = c.workload.configure(&c.peers, Some(standby()))?;
        if !server.is_running()? {
            server.start()?;
        } else if changed {
            server.reload()?;
        } else if new_password {
            reconnect(&Db::local_peer(&server.layout.socket_dir())?)?;
            tracing::info!("reconnected to the primary with the new replication password");
        }
    }

    // A server that just started or re-pointed takes a moment to connect
    // to a primary that serves (one that has admitted this unit).
    let db = Db::local_peer(&server.layout.socket_dir())?;
    if admitted {
        wait_streaming(&db, Duration::from_secs(15))?;
    }
    status(&db)
}

fn wait_streaming(db: &Db, limit: Duration) -> Result<()> {
    let started = Instant::now();
    while !db.is_streaming()? && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A replica's status: streaming or not.
pub fn status(db: &Db) -> Result<Status> {
    Ok(if db.is_streaming()? {
        Status::new(StatusKind::Active, "Replica, streaming")
    } else {
        Status::new(
            StatusKind::Waiting,
            "Replica, not streaming from the primary yet",
        )
    })
}

/// Reconnects the WAL receiver (after the replication password changed).
pub fn reconnect(db: &Db) -> Result<()> {
    db.restart_wal_receiver()
}
