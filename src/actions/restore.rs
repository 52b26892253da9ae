//! `restore backup-id=… [restore-to-time=…]` or `restore restore-to-time=…|latest`:
//! the cluster, at any size, back to a backup or a point in time. The
//! leader restores into its own unit beside the live data, recovers and
//! promotes; the result comes once the restored primary accepts writes.
//! The data directory it replaced goes to the unit's trash then, and is
//! deleted after the result. The other units re-seed from it by themselves
//! afterwards.
//!
//! A backup of another cluster under the same bucket and path (a
//! migration) is restored the same way, read from that cluster's
//! repository, which is never written to; this cluster goes on archiving
//! into its own. See `backup::owner` for when a restore may take over a
//! repository another cluster owns.

use anyhow::{bail, Result};
use chrono::{SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::json;

use super::backups::{key_problem, repository};
use crate::backup::catalog::{self, BackupKind, BackupRecord, BackupStatus};
use crate::backup::lock::{self, Holder};
use crate::backup::outage;
use crate::backup::owner::{self, Owner, Succession};
use crate::backup::pending;
use crate::backup::repo::Repo;
use crate::backup::settings::RepoSettings;
use crate::backup::siblings;
use crate::backup::target::{self, Plan, Requested, Target, TimelineChoice};
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
    #[serde(default)]
    take_over_repository: bool,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    restore_as_asked(ctx, tools).map_err(outage::explain)
}

fn restore_as_asked(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // What to restore to, as asked.
    let params: Params = action::params(tools)?;
    let (from, backup_id) = match params.backup_id.as_deref() {
        Some(given) => {
            let (from, id) = siblings::qualified(given)?;
            (from, Some(id))
        }
        None => (None, None),
    };
    let requested = target::requested(backup_id, params.restore_to_time.as_deref())?;

    // The leader coordinates; the repository must be there.
    if !tools.is_leader()? {
        bail!("Unit cannot restore backup as it was not elected the leader unit yet");
    }
    let (_, settings, repo) = repository(ctx, tools)?;
    let mut unit = Restorer::load(ctx, tools)?;
    check_ready(&unit)?;
    let rt = runtime()?;

    // This cluster archives into its own repository afterwards: another
    // cluster's only when the user hands it over.
    let before = rt.block_on(owner::read(&repo))?;
    if let Some(problem) = key_problem(&rt, &settings, &repo)? {
        bail!("cannot restore: {problem}");
    }
    check_succession(
        before.as_ref(),
        &unit.owner()?,
        &settings,
        params.take_over_repository,
    )?;

    // What an S3 outage left owed to the repository, written first.
    let pending_dir = pending::dir(&unit.workload.server.layout.storage);
    let location = pending::location(&settings);
    if let Err(err) = rt.block_on(pending::flush(&repo, &location, &pending_dir)) {
        tracing::warn!("cannot write what an earlier backup owes the repository: {err:#}");
    }

    // The archive brought up to now, so any time until now is reachable.
    unit.archive_now();

    // Where the backup is: this cluster's repository, or another's.
    let source = match (from, &requested) {
        (Some(name), _) if name == settings.repository => None,
        (Some(name), _) => Some(rt.block_on(siblings::named(&settings, name))?),
        (None, Requested::Backup(id) | Requested::BackupAndTime(id, _)) => {
            rt.block_on(siblings::holding(&settings, &repo, id))?
        }
        (None, _) => None,
    };
    let source_repo = source.as_ref().map_or(&repo, |s| &s.repo);

    // Which backup, which target, which timeline.
    let records = rt.block_on(catalog::list(source_repo))?;
    let timelines = rt.block_on(target::timelines(source_repo))?;
    let archive_end = match timelines.iter().max_by_key(|t| t.id) {
        Some(newest) => rt.block_on(target::archive_end(source_repo, newest))?,
        None => None,
    };
    let plan = target::plan(&records, &timelines, &requested, archive_end)?;
    same_major(&plan, unit.workload.server.bin.major)?;
    let shown_id = match &source {
        Some(s) => format!("{}/{}", s.name, plan.backup.id),
        None => plan.backup.id.clone(),
    };
    action::log(
        tools,
        &format!("restoring backup {shown_id} to {}", describe(&plan)),
    );

    // One backup or restore at a time across the cluster.
    let started = Utc::now();
    let id = started.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let holder = Holder {
        unit: ctx.unit.clone(),
        backup: format!("restore {id}"),
        since: id.clone(),
    };
    let members = unit.peers.units(ctx);
    rt.block_on(lock::acquire(&repo, &holder, &members))?;
    let from = source.as_ref().map(|s| (&s.repo, &s.settings));
    let restored = restore(&mut unit, &rt, (&repo, &settings), from, &plan);
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

    // The repository is this cluster's, whatever data it now has.
    let now_owner = Owner {
        encryption_key_id: settings.encryption_key.as_ref().map(|k| k.id().to_string()),
        ..unit.owner()?
    };
    if before.as_ref() != Some(&now_owner) {
        if let Err(err) = rt.block_on(owner::transfer(&repo, &now_owner)) {
            tracing::warn!("{err:#}");
        }
    }

    // The restore in the catalog, and the cluster told to follow it.
    let record = restore_record(&id, &shown_id, &plan, timeline, &unit, started);
    if let Err(err) = rt.block_on(catalog::save(&repo, &record)) {
        tracing::warn!("cannot record the restore in the repository: {err:#}");
    }
    unit.announce(&id)?;
    cluster::reconcile(ctx, tools)?;

    action::set_results(
        tools,
        &json!({
            "restore-status": "restored",
            "backup-id": shown_id,
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
/// `own` is this cluster's repository; `from` another cluster's, when the
/// backup is there.
fn restore(
    unit: &mut Restorer<'_>,
    rt: &tokio::runtime::Runtime,
    own: (&Repo, &RepoSettings),
    from: Option<(&Repo, &RepoSettings)>,
    plan: &Plan,
) -> Result<(u32, Option<String>)> {
    let tools = unit.tools;
    let status = |message: &str| {
        let _ = tools.status_set(false, &Status::new(StatusKind::Maintenance, message));
    };

    // The backup's files beside the live data, checked.
    status(&format!("restoring backup {}", plan.backup.id));
    action::log(tools, "fetching the backup's files");
    let repo = from.map_or(own.0, |(repo, _)| repo);
    let incoming = unit.fetch(rt, repo, &plan.backup, &|line| action::log(tools, line))?;
    action::log(tools, "the files match the backup's manifest");

    // Writes stop on the primary; the restored data replays the archive.
    let fenced = unit.fence_primary()?;
    let recovery = Recovery {
        restore_command: unit.use_repository(own.1, from.map(|(_, settings)| settings))?,
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
    let recovered = unit.recover(&incoming, recovery, &mut progress);
    unit.forget_source();
    let (old, outcome) = match recovered {
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

/// Refuses a restore that would make this cluster the owner of a repository
/// another cluster holds, unless the user said to take it over.
fn check_succession(
    before: Option<&Owner>,
    me: &Owner,
    settings: &RepoSettings,
    take_over: bool,
) -> Result<()> {
    if let Succession::Held(holder) = owner::succession(before, me) {
        if !take_over {
            bail!(
                "this cluster archives into the S3 repository {}, which belongs to another \
                 cluster (system identifier {}, {} in model {}), and a restore would make this \
                 cluster its owner: if that cluster is gone for good, run the restore again \
                 with take-over-repository=true; otherwise deploy this cluster under another \
                 application name, so that it has a repository of its own",
                pending::location(settings),
                holder.system_identifier,
                holder.app,
                holder.model_uuid
            );
        }
        tracing::info!(
            "taking over the repository of system {} ({} in model {}), as asked",
            holder.system_identifier,
            holder.app,
            holder.model_uuid
        );
    }
    Ok(())
}

/// Refuses a backup of another PostgreSQL major version.
fn same_major(plan: &Plan, major: u32) -> Result<()> {
    match plan.backup.pg_version {
        Some(version) if version != major => bail!(
            "backup {} was taken by PostgreSQL {version} and this cluster runs PostgreSQL \
             {major}: restore it into a cluster of PostgreSQL {version}",
            plan.backup.id
        ),
        _ => Ok(()),
    }
}

fn restore_record(
    id: &str,
    shown_id: &str,
    plan: &Plan,
    timeline: u32,
    unit: &Restorer<'_>,
    started: chrono::DateTime<Utc>,
) -> BackupRecord {
    BackupRecord {
        id: id.to_owned(),
        kind: BackupKind::Restore,
        reference: Some(shown_id.to_owned()),
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
        scheduled: None,
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

    #[test]
    fn another_clusters_repository_needs_the_users_word_and_versions_must_match() {
        let me = Owner {
            system_identifier: "1".into(),
            pg_version: 15,
            model_uuid: "new-model".into(),
            app: "postgresql".into(),
            encryption_key_id: None,
        };
        let gone = Owner {
            model_uuid: "old-model".into(),
            system_identifier: "9".into(),
            ..me.clone()
        };
        let settings = crate::backup::settings::tests::sample();
        let refused = check_succession(Some(&gone), &me, &settings, false).unwrap_err();
        let text = format!("{refused:#}");
        assert!(
            text.contains("which belongs to another cluster (system identifier 9, postgresql in model old-model)")
                && text.contains("take-over-repository=true"),
            "{text}"
        );
        check_succession(Some(&gone), &me, &settings, true).unwrap();
        check_succession(None, &me, &settings, false).unwrap();
        let redeployed = Owner {
            system_identifier: "9".into(),
            ..me.clone()
        };
        check_succession(Some(&redeployed), &me, &settings, false).unwrap();

        let mut backup =
            crate::backup::catalog::tests::record("2026-11-22T10:00:00Z", BackupKind::Full, true);
        backup.pg_version = Some(14);
        let plan = Plan {
            backup,
            target: Target::BackupEnd,
            timeline: TimelineChoice::Number(1),
        };
        assert_eq!(
            format!("{:#}", same_major(&plan, 15).unwrap_err()),
            "backup 2026-11-22T10:00:00Z was taken by PostgreSQL 14 and this cluster runs \
             PostgreSQL 15: restore it into a cluster of PostgreSQL 14"
        );
        assert!(same_major(&plan, 14).is_ok());
    }
}
