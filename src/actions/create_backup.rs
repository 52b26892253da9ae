//! `create-backup [type=full|differential|incremental]`: a physical backup
//! of the cluster into the repository, from the unit the TLS rule picks.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::json;

use super::backups::repository;
use crate::backup::catalog::{self, BackupKind};
use crate::backup::engine::{self, Request};
use crate::backup::lock::{self, Holder};
use crate::charm::archiving;
use crate::charm::cluster;
use crate::charm::config::CharmConfig;
use crate::charm::passwords;
use crate::charm::peers::Peers;
use crate::charm::tls::TlsPaths;
use crate::charm::workload::Workload;
use crate::juju::{action, Context, HookTools, Status, StatusKind};
use crate::postgres::sql::Db;

/// Files uploaded at once.
const CONCURRENCY: usize = 4;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(rename = "type")]
    kind: String,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // The type must be one the engine knows.
    let params: Params = action::params(tools)?;
    let kind: BackupKind = params.kind.parse()?;

    // The repository must be set up, reachable and this cluster's.
    let (s3_state, settings, repo) = repository(ctx, tools)?;
    let config = CharmConfig::load(tools)?;
    let workload = Workload::load(ctx, tools, &config)?;
    let server = &workload.server;
    if let Some(problem) = archiving::check(ctx, server, &s3_state)? {
        bail!(problem);
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

    // What it builds on.
    let rt = engine::runtime(CONCURRENCY)?;
    let system_identifier = server.system_identifier()?;
    let records = rt.block_on(catalog::list(&repo))?;
    let reference = catalog::reference_for(kind, &records, &system_identifier)?
        .and_then(|id| records.iter().find(|r| r.id == id).cloned());

    // One backup at a time across the cluster.
    let id = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let holder = Holder {
        unit: ctx.unit.clone(),
        backup: id.clone(),
        since: id.clone(),
    };
    let mut members: Vec<String> = peers.members.keys().cloned().collect();
    members.push(ctx.unit.clone());
    rt.block_on(lock::acquire(&repo, &holder, &members))?;

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
    let progress = |line: &str| action::log(tools, line);
    let request = Request {
        id: id.clone(),
        kind,
        reference,
        unit: ctx.unit.clone(),
        data_dir: server.layout.data(),
        pg_version: server.bin.major,
        system_identifier,
        concurrency: CONCURRENCY,
        primary: primary.as_ref(),
        progress: &progress,
    };
    let taken = engine::take(&rt, &repo, &db, &request);
    let _ = rt.block_on(lock::release(&repo, &holder));
    let _ = cluster::update_status(ctx, tools);
    let record =
        taken.map_err(|err| anyhow::anyhow!("Failed to backup PostgreSQL with error: {err:#}"))?;
    tracing::info!("backup {} created in {}", record.id, settings.bucket);

    action::set_results(
        tools,
        &json!({ "backup-status": "backup created", "backup-id": record.id }),
    )
}
