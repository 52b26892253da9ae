//! `list-backups`: the backups and restores in the repository, as the
//! anchor's table under the `backups` key; on any unit. Below it, the
//! backups of the other clusters whose repositories are under the same
//! bucket and path, which `restore` can migrate from.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::json;

use super::backups::repository;
use crate::backup::catalog::{self, BackupKind, BackupRecord, BackupStatus};
use crate::backup::owner::Owner;
use crate::backup::settings::RepoSettings;
use crate::backup::{outage, pending, siblings};
use crate::charm::archiving::runtime;
use crate::charm::config::CharmConfig;
use crate::charm::workload::Workload;
use crate::juju::{action, Context, HookTools};

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // The repository the relation points at.
    let (_, settings, repo) = repository(ctx, tools)?;
    let rt = runtime()?;

    // What an earlier backup on this unit could not tell the repository.
    let workload = Workload::load(ctx, tools, &CharmConfig::load(tools)?)?;
    let location = pending::location(&settings);
    let pending_dir = pending::dir(&workload.server.layout.storage);
    if let Err(err) = rt.block_on(pending::flush(&repo, &location, &pending_dir)) {
        tracing::warn!("{:#}", outage::explain(err));
    }

    // Every record in it, sorted by id.
    let records = rt.block_on(catalog::list(&repo)).map_err(outage::explain)?;

    // The other clusters' backups, when there are any to read.
    let others = rt.block_on(others(&settings));

    action::set_results(
        tools,
        &json!({ "backups": table(&settings, &records, &others) }),
    )
}

/// Another cluster's repository and its records.
pub struct Other {
    pub name: String,
    pub owner: Owner,
    pub records: Vec<BackupRecord>,
}

/// The other repositories under the path; one that cannot be read is left
/// out (a warning in the log), never fails the listing of our own.
async fn others(settings: &RepoSettings) -> Vec<Other> {
    let siblings = match siblings::list(settings).await {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!("cannot list the other repositories: {err:#}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for sibling in siblings {
        match catalog::list(&sibling.repo).await {
            Ok(records) => out.push(Other {
                name: sibling.name,
                owner: sibling.owner,
                records,
            }),
            Err(err) => tracing::warn!("cannot list the backups in {}: {err:#}", sibling.name),
        }
    }
    out
}

/// The anchor's format: a header, then one row per backup or restore (a
/// restore has no backup-path; its reference is the backup it restored).
pub fn table(settings: &RepoSettings, records: &[BackupRecord], others: &[Other]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Storage bucket name: {}", settings.bucket);
    let _ = writeln!(
        out,
        "Backups base path: {}/{}/\n",
        settings.path, settings.repository
    );
    rows(
        &mut out,
        records.iter().map(|r| (settings.repository.as_str(), r)),
    );
    if others.iter().all(|o| o.records.is_empty()) {
        return out;
    }
    let _ = writeln!(
        out,
        "\nBackups of other clusters under {}/ (restore one by its backup-id; their \
         repositories are only read):",
        settings.path
    );
    for other in others.iter().filter(|o| !o.records.is_empty()) {
        let _ = writeln!(
            out,
            "  {}: {} in model {}, system identifier {}, PostgreSQL {}",
            other.name,
            other.owner.app,
            other.owner.model_uuid,
            other.owner.system_identifier,
            other.owner.pg_version
        );
    }
    let _ = writeln!(out);
    rows(
        &mut out,
        others
            .iter()
            .flat_map(|o| o.records.iter().map(|r| (o.name.as_str(), r))),
    );
    out
}

/// The header and one row per record, each with its repository's name.
fn rows<'a>(out: &mut String, records: impl Iterator<Item = (&'a str, &'a BackupRecord)>) {
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
    for (repository, r) in records {
        let status = match (&r.status, &r.error) {
            (BackupStatus::Finished, _) => "finished".to_owned(),
            (BackupStatus::Failed, Some(error)) => format!("failed: {error}"),
            (BackupStatus::Failed, None) => "failed".to_owned(),
        };
        let lsn = match (&r.start_lsn, &r.stop_lsn) {
            (Some(start), Some(stop)) => format!("{start} / {stop}"),
            _ => "n/a".to_owned(),
        };
        let path = match r.kind {
            BackupKind::Restore => "n/a".to_owned(),
            BackupKind::Full | BackupKind::Differential | BackupKind::Incremental => {
                format!("/{repository}/{}", catalog::backup_dir(&r.id))
            }
        };
        let _ = writeln!(
            out,
            "{:<20} | {:<19} | {:<8} | {:<20} | {:<23} | {:<20} | {:<20} | {:<8} | {}",
            r.id,
            r.kind.action(),
            status,
            r.reference.as_deref().unwrap_or("None"),
            lsn,
            r.start_time,
            r.finish_time.as_deref().unwrap_or("n/a"),
            r.timeline.map_or("n/a".to_owned(), |t| t.to_string()),
            path
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::settings::UriStyle;

    fn settings() -> RepoSettings {
        RepoSettings {
            endpoint: "https://s3.amazonaws.com".into(),
            region: None,
            bucket: "bucket".into(),
            path: "/pg".into(),
            uri_style: UriStyle::Path,
            tls_ca_chain: Vec::new(),
            storage_class: None,
            access_key: "a".into(),
            secret_key: "s".into(),
            repository: "model.postgresql".into(),
            compression: Default::default(),
            encryption_key: None,
        }
    }

    fn row(id: &str, kind: BackupKind) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            kind,
            reference: None,
            status: BackupStatus::Finished,
            error: None,
            start_lsn: Some("0/2000028".into()),
            stop_lsn: Some("0/2000100".into()),
            start_time: id.into(),
            finish_time: Some(id.into()),
            timeline: Some(1),
            unit: "postgresql/0".into(),
            pg_version: Some(15),
            system_identifier: Some("42".into()),
            database_bytes: 0,
            stored_bytes: 0,
            files: Vec::new(),
            scheduled: None,
        }
    }

    /// The table's cells, without the padding.
    fn cells(line: &str) -> Vec<&str> {
        line.split(" | ").map(str::trim).collect()
    }

    #[test]
    fn backups_have_a_path_and_restores_do_not() {
        let mut restore = row("2023-01-01T11:00:00Z", BackupKind::Restore);
        restore.reference = Some("2023-01-01T10:00:00Z".into());
        restore.start_lsn = None;
        restore.stop_lsn = None;
        restore.finish_time = None;
        restore.timeline = Some(2);
        let records = [row("2023-01-01T10:00:00Z", BackupKind::Full), restore];
        let text = table(&settings(), &records, &[]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Storage bucket name: bucket");
        assert_eq!(lines[1], "Backups base path: /pg/model.postgresql/");
        assert!(lines[3].starts_with("backup-id"), "{text}");
        assert_eq!(
            cells(lines[5]),
            [
                "2023-01-01T10:00:00Z",
                "full backup",
                "finished",
                "None",
                "0/2000028 / 0/2000100",
                "2023-01-01T10:00:00Z",
                "2023-01-01T10:00:00Z",
                "1",
                "/model.postgresql/backups/2023-01-01T10:00:00Z"
            ]
        );
        assert_eq!(
            cells(lines[6]),
            [
                "2023-01-01T11:00:00Z",
                "restore",
                "finished",
                "2023-01-01T10:00:00Z",
                "n/a",
                "2023-01-01T11:00:00Z",
                "n/a",
                "2",
                "n/a"
            ]
        );
    }

    #[test]
    fn other_clusters_backups_follow_with_their_repository_in_the_path() {
        let own = [row("2023-01-01T10:00:00Z", BackupKind::Full)];
        let owner = Owner {
            system_identifier: "7".into(),
            pg_version: 15,
            model_uuid: "uuid-a".into(),
            app: "postgresql".into(),
            encryption_key_id: None,
        };
        let others = [
            Other {
                name: "old.postgresql".into(),
                owner: owner.clone(),
                records: vec![row("2022-05-05T05:05:05Z", BackupKind::Full)],
            },
            Other {
                name: "empty.postgresql".into(),
                owner,
                records: Vec::new(),
            },
        ];
        let text = table(&settings(), &own, &others);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 13, "{text}");
        assert_eq!(
            lines[7],
            "Backups of other clusters under /pg/ (restore one by its backup-id; their \
             repositories are only read):"
        );
        assert_eq!(
            lines[8],
            "  old.postgresql: postgresql in model uuid-a, system identifier 7, PostgreSQL 15"
        );
        assert!(lines[10].starts_with("backup-id"), "{text}");
        assert_eq!(
            cells(lines[12]).last().copied(),
            Some("/old.postgresql/backups/2022-05-05T05:05:05Z")
        );
        assert!(!text.contains("empty.postgresql"), "{text}");
        assert_eq!(table(&settings(), &own, &others[1..]).lines().count(), 6);
    }
}
