//! The charm's config options, read and checked in one place; a bad value
//! blocks the unit with a message that says what to set.

use anyhow::{Context as _, Result};
use serde::Deserialize;

use super::backup_options::BackupOptions;
use super::outcome::Blocked;
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
    /// How backups are written: compression, concurrency, bandwidth, key.
    pub backup: BackupOptions,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Raw {
    profile: Option<String>,
    backup_retention_full: Option<i64>,
    backup_retention_days: Option<i64>,
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
    fn the_default_is_production() {
        let tools = FakeTools::new("postgresql/0", true);
        assert_eq!(
            CharmConfig::load(&tools).unwrap().profile,
            Profile::Production
        );
    }
}
