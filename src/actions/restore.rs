//! `restore backup-id=… [restore-to-time=…]` or `restore restore-to-time=…|latest`:
//! the cluster, at any size, back to a backup or a point in time. The
//! leader restores into its own unit beside the live data, recovers and
//! promotes; the result comes once the restored primary accepts writes.
//! The data directory it replaced goes to the unit's trash then, and is
//! deleted after the result. The other units re-seed from it by themselves
//! afterwards.

use anyhow::{bail, Result};
use chrono::{SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::json;

use super::backups::repository;
use crate::backup::catalog::{self, BackupKind, BackupRecord, BackupStatus};
use crate::backup::lock::{self, Holder};
use crate::backup::pending;
use crate::backup::target::{self, Plan, Target, TimelineChoice};
use crate::charm::archiving::runtime;
use crate::charm::cluster;
use crate::charm::restore::{check_ready, Restorer};
use crate::charm::trash;
use crate::juju::{action, Context, HookTools, Status, StatusKind};
use crate::postgres::recovery::{Recovery, StopAt};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    backup_id: Option<String>,
    restore_to_time: Option<String>,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // What to restore to, as asked.
    let params: Params = action::params(tools)?;
    let requested = target::requested(
        params.backup_id.as_deref(),
        params.restore_to_time.as_deref(),
    )?;

    // The leader coordinates; the repository must be there.
    if !tools.is_leader()? {
        bail!("Unit cannot restore backup as it was not elected the leader unit yet");
    }
    let (_, settings, repo) = repository(ctx, tools)?;
    let mut unit = Restorer::load(ctx, tools)?;
    check_ready(&unit)?;
    let rt = runtime()?;

    // What an S3 outage left owed to the repository, written first.
    let pending_dir = pending::dir(&unit.workload.server.layout.storage);
    let location = pending::location(&settings);
    if let Err(err) = rt.block_on(pending::flush(&repo, &location, &pending_dir)) {
        tracing::warn!("cannot write what an earlier backup owes the repository: {err:#}");
    }

    // The archive brought up to now, so any time until now is reachable.
    unit.archive_now();

    // Which backup, which target, which timeline.
    let records = rt.block_on(catalog::list(&repo))?;
    let timelines = rt.block_on(target::timelines(&repo))?;
    let archive_end = match timelines.iter().max_by_key(|t| t.id) {
        Some(newest) => rt.block_on(target::archive_end(&repo, newest))?,
        None => None,
    };
    let plan = target::plan(&records, &timelines, &requested, archive_end)?;
    action::log(
        tools,
        &format!("restoring backup {} to {}", plan.backup.id, describe(&plan)),
    );

    // One backup or restore at a time across the cluster.
    let started = Utc::now();
    let id = started.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let holder = Holder {
        unit: ctx.unit.clone(),
        backup: format!("restore {id}"),
        since: id.clone(),
    };
    let mut members: Vec<String> = unit.peers.members.keys().cloned().collect();
    members.push(ctx.unit.clone());
    rt.block_on(lock::acquire(&repo, &holder, &members))?;
    let restored = restore(&mut unit, &rt, &repo, &settings, &plan);
    if let Err(err) = rt.block_on(lock::release(&repo, &holder)) {
        tracing::warn!("cannot release the backup lock: {err:#}");
    }
    let (timeline, reached) = match restored {
        Ok(done) => done,
        Err(err) => {
            // The unit is back on its previous data: say how it is now.
            if let Err(status) = cluster::reconcile(ctx, tools) {
                tracing::warn!("after the failed restore: {status:#}");
            }
            return Err(err);
        }
    };

    // The restore in the catalog, and the cluster told to follow it.
    let record = restore_record(&id, &plan, timeline, &unit, started);
    if let Err(err) = rt.block_on(catalog::save(&repo, &record)) {
        tracing::warn!("cannot record the restore in the repository: {err:#}");
    }
    unit.announce(&id)?;
    cluster::reconcile(ctx, tools)?;

    action::set_results(
        tools,
        &json!({
            "restore-status": "restored",
            "backup-id": plan.backup.id,
            "target": describe(&plan),
            "reached": reached.unwrap_or_else(|| "the end of the backup".into()),
            "timeline": timeline,
            "restore-id": id,
        }),
    )?;

    // The replaced data directory is deleted once the result is out.
    trash::empty_in_background(&unit.workload.server.layout.storage);
    Ok(())
}

/// Fetch, fence, swap, recover, settle: the restore proper. Returns the new
/// timeline and the commit time of the last transaction replayed.
fn restore(
    unit: &mut Restorer<'_>,
    rt: &tokio::runtime::Runtime,
    repo: &crate::backup::repo::Repo,
    settings: &crate::backup::settings::RepoSettings,
    plan: &Plan,
) -> Result<(u32, Option<String>)> {
    let tools = unit.tools;
    let status = |message: &str| {
        let _ = tools.status_set(false, &Status::new(StatusKind::Maintenance, message));
    };

    // The backup's files beside the live data, checked.
    status(&format!("restoring backup {}", plan.backup.id));
    action::log(tools, "fetching the backup's files");
    let incoming = unit.fetch(rt, repo, &plan.backup, &|line| action::log(tools, line))?;
    action::log(tools, "the files match the backup's manifest");

    // Writes stop on the primary; the restored data replays the archive.
    let fenced = unit.fence_primary()?;
    let recovery = Recovery {
        restore_command: unit.use_repository(settings)?,
        stop_at: match &plan.target {
            Target::BackupEnd => StopAt::Consistent,
            Target::Time(time) => StopAt::Time(target::pg_timestamp(time)),
            Target::Latest => StopAt::End,
        },
        timeline: match plan.timeline {
            TimelineChoice::Number(n) => Some(n),
            TimelineChoice::Latest => None,
        },
    };
    action::log(tools, "recovering from the archive");
    let mut progress = |line: &str| action::log(tools, line);
    let (old, outcome) = match unit.recover(&incoming, recovery, &mut progress) {
        Ok(done) => done,
        Err(err) => {
            unit.unfence(fenced);
            let _ = std::fs::remove_dir_all(&incoming);
            return Err(err);
        }
    };

    // This cluster's passwords; the data set aside is no longer needed
    // (the restored primary has promoted): to the trash, deleted later.
    let timeline = unit.settle()?;
    if let Some(old) = old {
        if let Err(err) = trash::put(&unit.workload.server.layout.storage, &old) {
            tracing::warn!("cannot put the old data directory in the trash: {err:#}");
        }
    }
    action::log(tools, &format!("promoted on timeline {timeline}"));
    Ok((timeline, outcome.last_commit))
}

fn describe(plan: &Plan) -> String {
    match &plan.target {
        Target::BackupEnd => format!("the end of backup {}", plan.backup.id),
        Target::Time(time) => time.to_rfc3339_opts(SecondsFormat::Micros, true),
        Target::Latest => "the end of the archive".into(),
    }
}

fn restore_record(
    id: &str,
    plan: &Plan,
    timeline: u32,
    unit: &Restorer<'_>,
    started: chrono::DateTime<Utc>,
) -> BackupRecord {
    BackupRecord {
        id: id.to_owned(),
        kind: BackupKind::Restore,
        reference: Some(plan.backup.id.clone()),
        status: BackupStatus::Finished,
        error: None,
        start_lsn: None,
        stop_lsn: None,
        start_time: started.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        finish_time: Some(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        timeline: Some(timeline),
        unit: unit.ctx.unit.clone(),
        pg_version: Some(unit.workload.server.bin.major),
        system_identifier: plan.backup.system_identifier.clone(),
        database_bytes: 0,
        stored_bytes: 0,
        files: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::testing::context;
    use crate::juju::fake::FakeTools;

    fn run_with(leader: bool, params: serde_json::Value) -> String {
        let tools = FakeTools::new("postgresql/1", leader);
        tools.state.borrow_mut().params = params.as_object().unwrap().clone();
        let err = run(&context("postgresql/1", "restore"), &tools).unwrap_err();
        format!("{err:#}")
    }

    #[test]
    fn bad_params_a_follower_and_no_repository_get_the_anchor_messages() {
        assert_eq!(
            run_with(true, json!({})),
            "Either backup-id or restore-to-time parameters need to be provided to be able to do restore"
        );
        assert!(run_with(true, json!({"restore-to-time": "yesterday"}))
            .starts_with("Bad restore-to-time format"));
        assert!(run_with(true, json!({"backup-id": "last"})).starts_with("Invalid backup-id: last"));
        assert_eq!(
            run_with(false, json!({"backup-id": "2026-11-22T10:00:00Z"})),
            "Unit cannot restore backup as it was not elected the leader unit yet"
        );
        assert_eq!(
            run_with(true, json!({"restore-to-time": "latest"})),
            "Relation with s3-integrator charm missing, cannot create/restore backup."
        );
    }
}
