//! `verify-backup [backup-id=…]`: every finished backup (or the one named)
//! read back from the repository and checked as a restore would need it,
//! without a server; one line per backup, and the action fails naming what
//! is wrong when any check fails. On any unit.

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::json;

use super::backups::{key_problem, repository};
use crate::backup::catalog;
use crate::backup::outage;
use crate::backup::target;
use crate::backup::verify;
use crate::charm::archiving::runtime;
use crate::juju::{action, Context, HookTools};

/// Objects read at once.
const CONCURRENCY: usize = 4;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    backup_id: Option<String>,
}

pub fn run(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    check(ctx, tools).map_err(outage::explain)
}

fn check(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    // Which backups: the one named, or every finished one.
    let params: Params = action::params(tools)?;
    let id = params
        .backup_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty());
    if let Some(id) = id {
        target::requested(Some(id), None)?;
    }
    let (_, settings, repo) = repository(ctx, tools)?;
    let rt = runtime()?;
    if let Some(problem) = key_problem(&rt, &settings, &repo)? {
        bail!("cannot verify: {problem}");
    }
    let records = rt.block_on(catalog::list(&repo))?;
    let chosen: Vec<_> = match id {
        Some(id) => {
            let Some(record) = records.iter().find(|r| r.id == id) else {
                bail!("Invalid backup-id: {id} (no backup has this id; list-backups shows them)");
            };
            if !record.is_finished_backup() {
                bail!("{id} is not a finished backup: only finished backups can be verified");
            }
            vec![record]
        }
        None => records.iter().filter(|r| r.is_finished_backup()).collect(),
    };
    if chosen.is_empty() {
        bail!("there is no finished backup to verify: take a backup first");
    }

    // Each read back and checked, reported as it is done.
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for record in chosen {
        let report = rt.block_on(verify::backup(&repo, &records, record, CONCURRENCY));
        action::log(tools, &report.line());
        if !report.problems.is_empty() {
            failed.push(report.line());
        }
        lines.push(report.line());
    }

    action::set_results(tools, &json!({ "verified": lines.join("\n") }))?;
    if !failed.is_empty() {
        bail!("verification failed: {}", failed.join(" | "));
    }
    Ok(())
}
