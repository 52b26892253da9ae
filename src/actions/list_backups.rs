//! `list-backups`: the backups and restores in the repository, as the
//! anchor's table under the `backups` key; on any unit.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::json;

use super::backups::repository;
use crate::backup::catalog::{self, BackupRecord, BackupStatus};
use crate::backup::settings::RepoSettings;
use crate::charm::archiving::runtime;
use crate::juju::{action, Context, HookTools};

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // The repository the relation points at.
    let (_, settings, repo) = repository(ctx, tools)?;

    // Every record in it, sorted by id.
    let records = runtime()?.block_on(catalog::list(&repo))?;

    action::set_results(tools, &json!({ "backups": table(&settings, &records) }))
}

/// The anchor's format: a header, then one row per backup.
pub fn table(settings: &RepoSettings, records: &[BackupRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Storage bucket name: {}", settings.bucket);
    let _ = writeln!(
        out,
        "Backups base path: {}/{}/\n",
        settings.path, settings.repository
    );
    let header = format!(
        "{:<20} | {:<19} | {:<8} | {:<20} | {:<23} | {:<20} | {:<20} | {:<8} | backup-path",
        "backup-id",
        "action",
        "status",
        "reference-backup-id",
        "LSN start/stop",
        "start-time",
        "finish-time",
        "timeline"
    );
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{}", "-".repeat(header.len() + 12));
    for r in records {
        let status = match (&r.status, &r.error) {
            (BackupStatus::Finished, _) => "finished".to_owned(),
            (BackupStatus::Failed, Some(error)) => format!("failed: {error}"),
            (BackupStatus::Failed, None) => "failed".to_owned(),
        };
        let lsn = match (&r.start_lsn, &r.stop_lsn) {
            (Some(start), Some(stop)) => format!("{start} / {stop}"),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<20} | {:<19} | {:<8} | {:<20} | {:<23} | {:<20} | {:<20} | {:<8} | /{}/{}",
            r.id,
            r.kind.action(),
            status,
            r.reference.as_deref().unwrap_or("None"),
            lsn,
            r.start_time,
            r.finish_time.as_deref().unwrap_or("n/a"),
            r.timeline.map_or("n/a".to_owned(), |t| t.to_string()),
            settings.repository,
            catalog::backup_dir(&r.id)
        );
    }
    out
}
