//! The charm's config options, read and checked in one place; a bad value
//! blocks the unit with a message that says what to set.

use anyhow::{Context as _, Result};
use serde::Deserialize;

use super::backup_options::BackupOptions;
use super::outcome::Blocked;
use crate::backup::catalog::BackupKind;
use crate::backup::schedule::{Schedule, Schedules};
use crate::juju::HookTools;
use crate::postgres::conf::Profile;

/// The options of config.yaml, as the charm uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharmConfig {
    pub profile: Profile,
    /// `backup-retention-full`: full backups (with what builds on them) to keep.
    pub retention_full: Option<u32>,
    /// `backup-retention-days`: days of point-in-time recovery to keep,
    /// over the s3-integrator's `delete-older-than-days`.
    pub retention_days: Option<u32>,
    /// `backup-schedule-*`: when backups are taken without an action.
    pub schedules: Schedules,
    /// How backups are written: compression, concurrency, bandwidth, key.
    pub backup: BackupOptions,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Raw {
    profile: Option<String>,
    backup_retention_full: Option<i64>,
    backup_retention_days: Option<i64>,
    backup_schedule_full: Option<String>,
    backup_schedule_differential: Option<String>,
    backup_schedule_incremental: Option<String>,
}

impl CharmConfig {
    pub fn load(tools: &dyn HookTools) -> Result<Self> {
        let raw = tools
            .config_get()
            .context("cannot read the charm's config")?;
        let backup = BackupOptions::parse(&raw)?;
        let raw: Raw = serde_json::from_value(serde_json::Value::Object(raw))
            .context("the charm's config does not match config.yaml")?;
        let profile = Profile::parse(raw.profile.as_deref().unwrap_or("production"))
            .map_err(|err| Blocked(format!("{err:#}")))?;
        Ok(Self {
            profile,
            retention_full: count("backup-retention-full", raw.backup_retention_full)?,
            retention_days: count("backup-retention-days", raw.backup_retention_days)?,
            schedules: schedules([
                (BackupKind::Full, raw.backup_schedule_full),
                (BackupKind::Differential, raw.backup_schedule_differential),
                (BackupKind::Incremental, raw.backup_schedule_incremental),
            ])?,
            backup,
        })
    }
}

/// A count option: 0 (or unset) is "no limit", a negative one blocks.
fn count(name: &str, value: Option<i64>) -> Result<Option<u32>> {
    match value.unwrap_or(0) {
        0 => Ok(None),
        n if n > 0 && n <= i64::from(u32::MAX) => Ok(Some(n as u32)),
        n => Err(Blocked(format!(
            "invalid {name}={n}: set a whole number of 1 or more, or 0 for no limit"
        ))
        .into()),
    }
}

/// The schedule options, each a cron expression or empty; a bad one blocks.
fn schedules<const N: usize>(options: [(BackupKind, Option<String>); N]) -> Result<Schedules> {
    let mut schedules = Vec::new();
    for (kind, value) in options {
        let expression = value.unwrap_or_default();
        if expression.trim().is_empty() {
            continue;
        }
        let schedule = Schedule::parse(kind, &expression)
            .map_err(|err| Blocked(format!("invalid backup-schedule-{kind}: {err:#}")))?;
        schedules.push(schedule);
    }
    Ok(Schedules::new(schedules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::juju::fake::FakeTools;
    use serde_json::json;

    #[test]
    fn a_bad_profile_blocks_with_what_to_set() {
        let tools = FakeTools::new("postgresql/0", true);
        tools.state.borrow_mut().config = json!({"profile": "huge"}).as_object().unwrap().clone();
        let err = CharmConfig::load(&tools).unwrap_err();
        let blocked = err.downcast_ref::<Blocked>().expect("a bad value blocks");
        assert!(blocked.0.contains("profile=testing"), "{}", blocked.0);
    }

    #[test]
    fn retention_counts_must_not_be_negative() {
        let tools = FakeTools::new("postgresql/0", true);
        tools.state.borrow_mut().config =
            json!({"backup-retention-full": 2, "backup-retention-days": 0})
                .as_object()
                .unwrap()
                .clone();
        let config = CharmConfig::load(&tools).unwrap();
        assert_eq!(
            (config.retention_full, config.retention_days),
            (Some(2), None)
        );
        tools.state.borrow_mut().config = json!({"backup-retention-days": -3})
            .as_object()
            .unwrap()
            .clone();
        let err = CharmConfig::load(&tools).unwrap_err();
        assert_eq!(
            err.downcast_ref::<Blocked>().expect("a bad value blocks").0,
            "invalid backup-retention-days=-3: set a whole number of 1 or more, or 0 for no limit"
        );
    }

    #[test]
    fn a_bad_schedule_blocks_with_what_is_wrong() {
        let tools = FakeTools::new("postgresql/0", true);
        tools.state.borrow_mut().config = json!({
            "backup-schedule-full": "0 3 * * 0",
            "backup-schedule-incremental": "*/15 * * * *",
            "backup-schedule-differential": ""
        })
        .as_object()
        .unwrap()
        .clone();
        let config = CharmConfig::load(&tools).unwrap();
        assert_eq!(
            config.schedules.describe(),
            "full=0 3 * * 0; incremental=*/15 * * * *"
        );
        tools.state.borrow_mut().config = json!({"backup-schedule-incremental": "hourly"})
            .as_object()
            .unwrap()
            .clone();
        let err = CharmConfig::load(&tools).unwrap_err();
        assert_eq!(
            err.downcast_ref::<Blocked>().expect("a bad value blocks").0,
            "invalid backup-schedule-incremental: \"hourly\" has 1 fields, not the five of a \
             cron expression (minute hour day-of-month month day-of-week, in UTC), e.g. \"0 3 * * *\""
        );
    }

    #[test]
    fn the_default_is_production() {
        let tools = FakeTools::new("postgresql/0", true);
        assert_eq!(
            CharmConfig::load(&tools).unwrap().profile,
            Profile::Production
        );
    }
}
