//! A former primary rejoining as a replica: after a switchover its data
//! directory has gone past the point where the new primary's history
//! forked (at least by its shutdown checkpoint), so it cannot simply
//! follow. `pg_rewind` brings it back onto the new primary's history by
//! copying the blocks it changed after the split, the primary's WAL and
//! the files that are not relation data, instead of the whole database.
//!
//! Only a data directory of this cluster (no restore since) is rewound,
//! and only from a primary that has left recovery and checkpointed since:
//! pg_rewind reads the source's timeline from its control file, and a
//! source whose control file still names the old timeline looks like "no
//! rewind needed". A dry run proves the rewind applies before anything is
//! written. Whatever fails, the caller seeds the unit instead, keeping
//! this directory aside until the new copy runs.
//!
//! Afterwards the unit notes the time of the rewind (`Layout::rewound_at`):
//! a rewound file keeps its inode while its pages may go back to older
//! LSNs, so no backup may take page deltas against a reference older than
//! the rewind (see `backup::copy::DeltaSince`).

use anyhow::{Context as _, Result};

use super::seed::Upstream;
use super::Cluster;
use crate::charm::outcome::Waiting;
use crate::charm::passwords::SystemUser;
use crate::charm::workload::passfile_line;
use crate::juju::{Status, StatusKind};
use crate::postgres::conf::{Standby, PORT};
use crate::postgres::rewind::{self, Rewound, Source};
use crate::postgres::sql::Db;

/// Rewinds this unit's former-primary data directory onto the primary's
/// history and starts it as a standby; false (with the reason logged)
/// when that could not be done and the unit must be seeded. Waits (an
/// error) while the primary has not left recovery.
pub fn by_rewind(c: &Cluster<'_>, upstream: &Upstream<'_>, standby: Standby<'_>) -> Result<bool> {
    // The source must be the new primary already, on its new timeline; a
    // checkpoint puts that timeline in its control file, which pg_rewind
    // reads (until then, it would see the old one and rewind nothing).
    let promoted = super::connect_primary(c.ctx, &c.peers, &c.passwords).and_then(|db| {
        let promoted = !db.is_in_recovery()?;
        if promoted {
            db.execute("CHECKPOINT")?;
        }
        Ok(promoted)
    });
    if !matches!(promoted, Ok(true)) {
        return Err(Waiting(format!(
            "waiting for {} to serve as the primary before rejoining it",
            upstream.unit
        ))
        .into());
    }
    Ok(match rewind_onto(c, upstream, standby) {
        Ok((rewound, replay_from)) => {
            let mib = |kb: u64| kb as f64 / 1024.0;
            match rewound {
                Rewound::NotNeeded => tracing::info!(
                    "rejoined {} as a replica by pg_rewind: no rewind was needed, copied 0 kB",
                    upstream.unit
                ),
                Rewound::Copied {
                    copied_kb,
                    source_kb,
                } => tracing::info!(
                    "rejoined {} as a replica by pg_rewind: copied {copied_kb} kB \
                     ({:.1} MiB of the primary's {:.1} MiB); replaying WAL from {}",
                    upstream.unit,
                    mib(copied_kb),
                    mib(source_kb),
                    replay_from.as_deref().unwrap_or("?")
                ),
            }
            true
        }
        Err(err) => {
            tracing::warn!(
                "cannot rejoin {} by pg_rewind ({err:#}): copying its data instead",
                upstream.unit
            );
            false
        }
    })
}

fn rewind_onto(
    c: &Cluster<'_>,
    upstream: &Upstream<'_>,
    standby: Standby<'_>,
) -> Result<(Rewound, Option<String>)> {
    let server = &c.workload.server;
    c.tools.status_set(
        false,
        &Status::new(
            StatusKind::Maintenance,
            format!("rewinding this unit onto the history of {}", upstream.unit),
        ),
    )?;
    server.stop()?;

    // The rewind user's password, in a file only for this run; the
    // standby's settings, so that pg_rewind finds the restore_command.
    let passfile = server.layout.storage.join("rewind.pgpass");
    let line = passfile_line("rewind", c.passwords.get(SystemUser::Rewind)?);
    server.user.write_file(&passfile, line.as_bytes(), 0o600)?;
    let result = (|| {
        c.workload.configure(&c.peers, Some(standby.clone()))?;
        let conninfo = format!(
            "host={} port={PORT} user=rewind dbname=postgres connect_timeout=10",
            upstream.address
        );
        let mut env: Vec<(&str, String)> = upstream.ssl_env.to_vec();
        env.push(("PGPASSFILE", passfile.display().to_string()));
        let source = Source {
            conninfo: &conninfo,
            env: &env,
            restore_target_wal: standby.restore_command.is_some(),
        };

        // Prove it applies, note it, then rewind.
        rewind::run(server, &source, true).context("the dry run failed")?;
        server.layout.note_rewind()?;
        rewind::run(server, &source, false)
    })();
    let _ = std::fs::remove_file(&passfile);
    let rewound = result?;

    // Where its recovery starts (the last checkpoint before the histories
    // split), as the backup label pg_rewind wrote says.
    let replay_from = std::fs::read_to_string(server.layout.data().join("backup_label"))
        .ok()
        .and_then(|label| start_location(&label));

    // The old primary's slots would hold WAL on the standby forever.
    clear_slots(&server.layout.data())?;

    // A standby, with this unit's own settings again (pg_rewind copied the
    // primary's), and no longer fenced.
    server
        .user
        .write_file(&server.layout.data().join("standby.signal"), b"", 0o600)?;
    c.workload.configure(&c.peers, Some(standby))?;
    server.start()?;
    let db = Db::local_peer(&server.layout.socket_dir())?;
    db.unfence()
        .context("cannot lift the fence the switchover put on this unit")?;
    Ok((rewound, replay_from))
}

/// The `START WAL LOCATION` of a backup label.
fn start_location(label: &str) -> Option<String> {
    let rest = label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// Removes every replication slot of a stopped server.
fn clear_slots(data: &std::path::Path) -> Result<()> {
    let dir = data.join("pg_replslot");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove the slot {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_where_recovery_starts_from_the_backup_label() {
        let label = "START WAL LOCATION: 0/1B0000D8 (file 00000001000000000000001B)\n\
            CHECKPOINT LOCATION: 0/1B000110\n\
            BACKUP METHOD: pg_rewind\n\
            BACKUP FROM: standby\n";
        assert_eq!(start_location(label).as_deref(), Some("0/1B0000D8"));
        assert_eq!(start_location("BACKUP METHOD: pg_rewind\n"), None);
    }
}
