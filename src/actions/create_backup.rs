//! `create-backup [type=full|differential|incremental]`: a physical backup
//! of the cluster into the repository, from the unit the TLS rule picks;
//! [`take`] is the backup itself, which scheduled backups run as well.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::json;

use super::backups::{self, repository};
use crate::backup::catalog::{self, BackupKind, BackupRecord};
use crate::backup::engine::{self, Request};
use crate::backup::expire::{self, Expiry};
use crate::backup::lock::{self, Holder};
use crate::backup::outage;
use crate::backup::pending::{self, Note};
use crate::backup::schedule::{self, Due};
use crate::charm::archiving;
use crate::charm::cluster;
use crate::charm::config::CharmConfig;
use crate::charm::passwords;
use crate::charm::peers::Peers;
use crate::charm::tls::TlsPaths;
use crate::charm::workload::Workload;
use crate::juju::{action, Context, HookTools, Status, StatusKind};
use crate::postgres::sql::Db;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(rename = "type")]
    kind: String,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    create(ctx, tools).map_err(outage::explain)
}

fn create(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // The type must be one the engine knows.
    let params: Params = action::params(tools)?;
    let kind: BackupKind = params.kind.parse()?;

    // Take it, with progress in the action's log.
    let progress = |line: &str| action::log(tools, line);
    let order = Order {
        kind,
        scheduled: None,
        progress: &progress,
    };
    let Taken::Backup { record, expiry } = take(ctx, tools, &order)? else {
        bail!("the backup was not taken");
    };

    // What it stored, what it warns of, what retention removed.
    let mut results = json!({ "backup-status": "backup created", "backup-id": record.id });
    if let Some(warning) = engine::bad_pages(&record.files) {
        results["warnings"] = warning.into();
    }
    match expiry {
        Some(Ok(expired)) if !expired.backups.is_empty() => {
            results["expired-backups"] = expired.backups.join(", ").into();
        }
        Some(Err(err)) => {
            results["retention-error"] = format!("{err:#}").into();
        }
        _ => {}
    }
    action::set_results(tools, &results)
}

/// What to take, and for whom.
pub struct Order<'a> {
    pub kind: BackupKind,
    /// The schedule's occurrence, for a scheduled backup: it is not taken
    /// when another unit's scheduled backup covered it in the meantime.
    pub scheduled: Option<&'a Due>,
    /// Progress for whoever waits.
    pub progress: &'a dyn Fn(&str),
}

/// What [`take`] did.
pub enum Taken {
    /// The backup, finished, and what retention did after it.
    Backup {
        record: Box<BackupRecord>,
        expiry: Option<Result<Expiry>>,
    },
    /// Nothing: a scheduled backup another unit took while this one waited.
    Covered,
}

/// Takes a backup on this unit, under the cluster's backup lock, then
/// applies retention; a failed backup is an error with the anchor's message.
pub fn take(ctx: &Context, tools: &dyn HookTools, order: &Order<'_>) -> Result<Taken> {
    // The repository must be set up, reachable and this cluster's.
    let (s3_state, settings, repo) = repository(ctx, tools)?;
    let config = CharmConfig::load(tools)?;
    let workload = Workload::load(ctx, tools, &config)?;
    let server = &workload.server;
    if let Some(problem) = archiving::check(ctx, server, &s3_state)? {
        bail!(problem);
    }

    // What an earlier backup on this unit could not tell the repository.
    let concurrency = config.backup.upload_concurrency;
    let rt = engine::runtime(concurrency)?;
    let location = pending::location(&settings);
    let pending_dir = pending::dir(&server.layout.storage);
    if let Err(err) = rt.block_on(pending::flush(&repo, &location, &pending_dir)) {
        tracing::warn!("{:#}", outage::explain(err));
    }

    // This unit must be the one the TLS rule picks.
    if !server.is_initialised() || !server.is_ready()? {
        bail!("Unit cannot perform backups as the database seems to be offline");
    }
    let peers = Peers::load(tools, ctx)?.context("the peer relation does not exist yet")?;
    let on_primary = !server.is_standby();
    let tls = TlsPaths::of(server).installed();
    if on_primary && !peers.members.is_empty() && tls {
        bail!("Unit cannot perform backups as it is the cluster primary");
    }
    if !on_primary && !tls {
        bail!("Unit cannot perform backups as TLS is not enabled");
    }

    // What it builds on; a schedule's first differential or incremental
    // backup is a full one, as there is nothing to build on yet.
    let system_identifier = server.system_identifier()?;
    let records = rt.block_on(catalog::list(&repo))?;
    let reference = match catalog::reference_for(order.kind, &records, &system_identifier) {
        Err(_) if order.scheduled.is_some() => None,
        found => found?,
    };
    let kind = if reference.is_none() {
        BackupKind::Full
    } else {
        order.kind
    };
    let reference = reference.and_then(|id| records.iter().find(|r| r.id == id).cloned());

    // One backup at a time across the cluster.
    let id = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let holder = Holder {
        unit: ctx.unit.clone(),
        backup: id.clone(),
        since: id.clone(),
    };
    let members = peers.units(ctx);
    rt.block_on(lock::acquire(&repo, &holder, &members))?;

    // A scheduled backup another unit took while this one was deciding.
    if let Some(due) = order.scheduled {
        let covered = rt
            .block_on(catalog::list(&repo))
            .map(|now| schedule::covered(&now, due.kind, due.occurrence));
        if !matches!(covered, Ok(false)) {
            rt.block_on(lock::release(&repo, &holder))?;
            covered?;
            return Ok(Taken::Covered);
        }
    }

    // Take it: from a replica, through the primary for the WAL switch.
    tools.status_set(
        false,
        &Status::new(StatusKind::Maintenance, "creating backup"),
    )?;
    let db = Db::local_peer(&server.layout.socket_dir())?;
    let primary = if on_primary {
        None
    } else {
        let passwords = passwords::load(tools, &peers.app_data)?;
        Some(cluster::connect_primary(ctx, &peers, &passwords)?)
    };
    let request = Request {
        id: id.clone(),
        kind,
        reference,
        unit: ctx.unit.clone(),
        data_dir: server.layout.data(),
        pg_version: server.bin.major,
        system_identifier,
        concurrency,
        primary: primary.as_ref(),
        progress: order.progress,
        scheduled: order
            .scheduled
            .map(|due| schedule::format_time(due.occurrence)),
        rewound_at: server.layout.rewound_at(),
    };
    let taken = engine::take(&rt, &repo, &db, &request);

    // Retention, still under the lock: what the policy lets go now.
    let expiry = taken.is_ok().then(|| {
        backups::policy(tools, &config)
            .and_then(|policy| rt.block_on(expire::apply(&repo, policy, chrono::Utc::now())))
            .map_err(outage::explain)
    });
    let released = rt.block_on(lock::release(&repo, &holder));
    let _ = cluster::update_status(ctx, tools);

    // What S3 could not take now is kept on this unit, for later.
    let owed = Note {
        repository: location,
        record: taken
            .as_ref()
            .err()
            .and_then(|f| f.unrecorded.as_deref().cloned()),
        lock: released.is_err().then(|| holder.clone()),
    };
    let kept = (!owed.is_empty()).then(|| pending::keep(&pending_dir, &id, &owed));
    let record = match taken {
        Ok(record) => record,
        Err(failed) => {
            let mut message = format!("Failed to backup PostgreSQL with error: {:#}", failed.error);
            match kept.filter(|_| failed.unrecorded.is_some()) {
                Some(Ok(_)) => message.push_str(&format!(
                    " (backup {id} is kept on this unit as failed and recorded in the \
                     repository at the next create-backup or list-backups)"
                )),
                Some(Err(err)) => message.push_str(&format!(
                    " (and backup {id} could not be recorded as failed: {err:#})"
                )),
                None => {}
            }
            bail!(message);
        }
    };
    if let Some(Err(err)) = kept {
        tracing::warn!("the backup lock stays held by {}: {err:#}", ctx.unit);
    }
    tracing::info!("backup {} created in {}", record.id, settings.bucket);
    if let Some(warning) = engine::bad_pages(&record.files) {
        tracing::warn!("backup {}: {warning}", record.id);
    }
    if let Some(Err(err)) = &expiry {
        tracing::warn!("retention after backup {id}: {err:#}");
    }
    Ok(Taken::Backup {
        record: Box::new(record),
        expiry,
    })
}
