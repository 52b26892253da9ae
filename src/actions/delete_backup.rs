//! `delete-backup backup-id=… [delete-dependants=true]`: one backup out of
//! the repository (with the backups built on it, when asked), then the WAL
//! no remaining backup needs; on any unit.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::json;

use super::backups::repository;
use crate::backup::catalog::{self, BackupRecord};
use crate::backup::expire;
use crate::backup::lock::{self, Holder};
use crate::backup::outage;
use crate::backup::target;
use crate::charm::archiving::{self, runtime};
use crate::charm::config::CharmConfig;
use crate::charm::peers::Peers;
use crate::charm::workload::Workload;
use crate::juju::{action, Context, HookTools};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    backup_id: String,
    #[serde(default)]
    delete_dependants: bool,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    delete(ctx, tools).map_err(outage::explain)
}

fn delete(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // A backup id, of the form list-backups shows.
    let params: Params = action::params(tools)?;
    let id = params.backup_id.trim().to_owned();
    if id.is_empty() {
        bail!("backup-id is empty: give the id of the backup to delete, as list-backups shows it");
    }
    target::requested(Some(&id), None)?;

    // The repository must be set up and this cluster's.
    let (s3_state, _, repo) = repository(ctx, tools)?;
    let workload = Workload::load(ctx, tools, &CharmConfig::load(tools)?)?;
    if let Some(problem) = archiving::check(ctx, &workload.server, &s3_state)? {
        bail!(problem);
    }

    // The backup, and what would break without it.
    let rt = runtime()?;
    let records = rt.block_on(catalog::list(&repo))?;
    let doomed = chosen(&records, &id, params.delete_dependants)?;

    // No backup or restore runs meanwhile.
    let peers = Peers::load(tools, ctx)?.context("the peer relation does not exist yet")?;
    let members = peers.units(ctx);
    let holder = Holder {
        unit: ctx.unit.clone(),
        backup: format!("delete {id}"),
        since: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    rt.block_on(lock::acquire(&repo, &holder, &members))?;

    // The backups, then the WAL that only they needed.
    let removed = rt.block_on(async {
        let objects = expire::remove_backups(&repo, &records, &doomed).await?;
        action::log(tools, &format!("deleted {}", doomed.join(", ")));
        let kept: Vec<&BackupRecord> = records.iter().filter(|r| !doomed.contains(&r.id)).collect();
        let wal = expire::prune_wal(&repo, &kept).await?;
        anyhow::Ok((objects, wal))
    });
    if let Err(err) = rt.block_on(lock::release(&repo, &holder)) {
        tracing::warn!("cannot release the backup lock: {err:#}");
    }
    let (objects, wal) = removed?;

    action::set_results(
        tools,
        &json!({
            "deleted-backups": doomed.join(", "),
            "objects-removed": objects,
            "wal-objects-removed": wal,
        }),
    )
}

/// The ids to delete: `id` and, when asked, what builds on it; refused
/// when something builds on it and the user did not ask.
fn chosen(records: &[BackupRecord], id: &str, with_dependants: bool) -> Result<Vec<String>> {
    let Some(record) = records.iter().find(|r| r.id == id) else {
        bail!("Invalid backup-id: {id} (no backup has this id; list-backups shows them)");
    };
    if !record.kind.is_backup() {
        bail!("{id} is a restore, not a backup: there is nothing to delete");
    }
    let dependants: Vec<String> = expire::dependants(records, id)
        .iter()
        .map(|r| r.id.clone())
        .collect();
    if !dependants.is_empty() && !with_dependants {
        bail!(
            "backup {id} has {} backup(s) built on it ({}), which cannot be restored without \
             it: run delete-backup backup-id={id} delete-dependants=true to delete them \
             together, or delete those first",
            dependants.len(),
            dependants.join(", ")
        );
    }
    Ok(std::iter::once(id.to_owned()).chain(dependants).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::catalog::{tests::record, BackupKind};

    #[test]
    fn a_backup_with_dependants_goes_only_with_them() {
        let full = record("2026-01-01T00:00:00Z", BackupKind::Full, true);
        let mut incr = record("2026-01-01T01:00:00Z", BackupKind::Incremental, true);
        incr.reference = Some(full.id.clone());
        let mut restore = record("2026-01-01T02:00:00Z", BackupKind::Restore, true);
        restore.reference = Some(full.id.clone());
        let records = [full, incr, restore];
        assert_eq!(
            chosen(&records, "2026-01-01T00:00:00Z", false)
                .unwrap_err()
                .to_string(),
            "backup 2026-01-01T00:00:00Z has 1 backup(s) built on it (2026-01-01T01:00:00Z), \
             which cannot be restored without it: run delete-backup \
             backup-id=2026-01-01T00:00:00Z delete-dependants=true to delete them together, \
             or delete those first"
        );
        assert_eq!(
            chosen(&records, "2026-01-01T00:00:00Z", true).unwrap(),
            ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"]
        );
        assert_eq!(
            chosen(&records, "2026-01-01T01:00:00Z", false).unwrap(),
            ["2026-01-01T01:00:00Z"]
        );
        assert!(chosen(&records, "2026-01-01T02:00:00Z", true)
            .unwrap_err()
            .to_string()
            .contains("is a restore, not a backup"));
        assert!(chosen(&records, "2026-01-01T03:00:00Z", true)
            .unwrap_err()
            .to_string()
            .starts_with("Invalid backup-id: 2026-01-01T03:00:00Z"));
    }
}
