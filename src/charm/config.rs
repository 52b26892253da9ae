//! The charm's config options, read and checked in one place; a bad value
//! blocks the unit with a message that says what to set.

use anyhow::{Context as _, Result};
use serde::Deserialize;

use super::outcome::Blocked;
use crate::juju::HookTools;
use crate::postgres::conf::Profile;

/// The options of config.yaml, as the charm uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharmConfig {
    pub profile: Profile,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Raw {
    profile: Option<String>,
}

impl CharmConfig {
    pub fn load(tools: &dyn HookTools) -> Result<Self> {
        let raw = tools
            .config_get()
            .context("cannot read the charm's config")?;
        let raw: Raw = serde_json::from_value(serde_json::Value::Object(raw))
            .context("the charm's config does not match config.yaml")?;
        let profile = Profile::parse(raw.profile.as_deref().unwrap_or("production"))
            .map_err(|err| Blocked(format!("{err:#}")))?;
        Ok(Self { profile })
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
    fn the_default_is_production() {
        let tools = FakeTools::new("postgresql/0", true);
        assert_eq!(
            CharmConfig::load(&tools).unwrap().profile,
            Profile::Production
        );
    }
}
