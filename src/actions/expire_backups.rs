//! `expire-backups`: the retention policy applied now, as create-backup
//! applies it after every backup; on any unit.

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use super::backups::{policy, repository};
use crate::backup::expire::{self, Policy};
use crate::backup::lock::{self, Holder};
use crate::backup::outage;
use crate::charm::archiving::{self, runtime};
use crate::charm::config::CharmConfig;
use crate::charm::peers::Peers;
use crate::charm::workload::Workload;
use crate::juju::{action, Context, HookTools};

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    expire_now(ctx, tools).map_err(outage::explain)
}

fn expire_now(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // The repository must be set up and this cluster's.
    let (s3_state, _, repo) = repository(ctx, tools)?;
    let config = CharmConfig::load(tools)?;
    let workload = Workload::load(ctx, tools, &config)?;
    if let Some(problem) = archiving::check(ctx, &workload.server, &s3_state)? {
        bail!(problem);
    }

    // The policy, which must say something.
    let policy = policy(tools, &config)?;
    if policy == Policy::default() {
        bail!(
            "no retention policy is set: set backup-retention-full or backup-retention-days, \
             or delete-older-than-days on the s3-integrator"
        );
    }

    // Under the backup lock: the backups it lets go, then their WAL.
    let rt = runtime()?;
    let peers = Peers::load(tools, ctx)?.context("the peer relation does not exist yet")?;
    let members = peers.units(ctx);
    let now = chrono::Utc::now();
    let holder = Holder {
        unit: ctx.unit.clone(),
        backup: "expire".into(),
        since: now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    rt.block_on(lock::acquire(&repo, &holder, &members))?;
    let expired = rt.block_on(expire::apply(&repo, policy, now));
    if let Err(err) = rt.block_on(lock::release(&repo, &holder)) {
        tracing::warn!("cannot release the backup lock: {err:#}");
    }
    let expired = expired?;

    let describe = |n: Option<u32>| n.map_or("no limit".to_owned(), |n| n.to_string());
    action::set_results(
        tools,
        &json!({
            "policy": format!(
                "full backups: {}, days: {}",
                describe(policy.full),
                describe(policy.days)
            ),
            "expired-backups": if expired.backups.is_empty() {
                "none".to_owned()
            } else {
                expired.backups.join(", ")
            },
            "objects-removed": expired.objects,
            "wal-objects-removed": expired.wal,
        }),
    )
}
