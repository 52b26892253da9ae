//! The Juju context of one hook or action run: every `JUJU_*` variable the
//! agent sets, parsed once from a passed-in map (the process environment in
//! production, a literal map in tests).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use super::RelationId;

/// What Juju told this process about the run it is part of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// `hooks/<name>` or `actions/<name>`.
    pub dispatch_path: String,
    /// This unit, e.g. `postgresql/0`.
    pub unit: String,
    /// This unit's application, e.g. `postgresql`.
    pub app: String,
    pub model_name: String,
    pub model_uuid: String,
    pub charm_dir: PathBuf,
    pub juju_version: String,
    pub relation: Option<RelationContext>,
    pub action: Option<ActionContext>,
    pub secret: Option<SecretContext>,
    pub storage: Option<StorageContext>,
}

/// Set in `<endpoint>-relation-*` hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationContext {
    pub id: RelationId,
    pub remote_app: String,
    /// Empty in `-relation-created`, `-relation-broken` and app-bag changes.
    pub remote_unit: Option<String>,
    /// Set in `-relation-departed`.
    pub departing_unit: Option<String>,
}

/// Set when the run is an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionContext {
    pub name: String,
    pub id: String,
}

/// Set in `secret-*` hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretContext {
    pub id: String,
    pub label: Option<String>,
    pub revision: Option<u32>,
}

/// Set in `<storage>-storage-*` hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageContext {
    /// `pgdata/0`.
    pub id: String,
    pub location: PathBuf,
}

impl Context {
    /// Parses the variables Juju sets for every hook and action.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self> {
        let get = |key: &str| env.get(key).map(String::as_str).filter(|v| !v.is_empty());
        let require = |key: &str| {
            get(key).map(str::to_owned).with_context(|| {
                format!(
                    "{key} is not set: this program is run by Juju through the charm's dispatch"
                )
            })
        };

        let unit = require("JUJU_UNIT_NAME")?;
        let Some((app, number)) = unit.split_once('/') else {
            bail!("JUJU_UNIT_NAME {unit:?} is not of the form <app>/<number>");
        };
        if number.parse::<u32>().is_err() {
            bail!("JUJU_UNIT_NAME {unit:?} is not of the form <app>/<number>");
        }

        let relation = match get("JUJU_RELATION_ID") {
            None => None,
            Some(id) => Some(RelationContext {
                id: id.parse()?,
                remote_app: get("JUJU_REMOTE_APP").unwrap_or_default().to_owned(),
                remote_unit: get("JUJU_REMOTE_UNIT").map(str::to_owned),
                departing_unit: get("JUJU_DEPARTING_UNIT").map(str::to_owned),
            }),
        };
        let action = get("JUJU_ACTION_NAME").map(|name| ActionContext {
            name: name.to_owned(),
            id: get("JUJU_ACTION_UUID").unwrap_or_default().to_owned(),
        });
        let secret = get("JUJU_SECRET_ID").map(|id| SecretContext {
            id: id.to_owned(),
            label: get("JUJU_SECRET_LABEL").map(str::to_owned),
            revision: get("JUJU_SECRET_REVISION").and_then(|r| r.parse().ok()),
        });
        let storage = get("JUJU_STORAGE_ID").map(|id| StorageContext {
            id: id.to_owned(),
            location: PathBuf::from(get("JUJU_STORAGE_LOCATION").unwrap_or_default()),
        });

        Ok(Self {
            dispatch_path: require("JUJU_DISPATCH_PATH")?,
            app: app.to_owned(),
            unit: unit.clone(),
            model_name: get("JUJU_MODEL_NAME").unwrap_or_default().to_owned(),
            model_uuid: get("JUJU_MODEL_UUID").unwrap_or_default().to_owned(),
            charm_dir: PathBuf::from(
                get("JUJU_CHARM_DIR")
                    .or_else(|| get("CHARM_DIR"))
                    .unwrap_or("."),
            ),
            juju_version: get("JUJU_VERSION").unwrap_or_default().to_owned(),
            relation,
            action,
            secret,
            storage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_a_relation_hook() {
        let ctx = Context::from_env(&env(&[
            (
                "JUJU_DISPATCH_PATH",
                "hooks/database-peers-relation-changed",
            ),
            ("JUJU_UNIT_NAME", "postgresql/2"),
            ("JUJU_MODEL_NAME", "local"),
            ("JUJU_RELATION_ID", "database-peers:3"),
            ("JUJU_REMOTE_APP", "postgresql"),
            ("JUJU_REMOTE_UNIT", ""),
        ]))
        .unwrap();
        assert_eq!(ctx.app, "postgresql");
        let rel = ctx.relation.unwrap();
        assert_eq!(rel.id.to_string(), "database-peers:3");
        assert_eq!(
            rel.remote_unit, None,
            "an empty remote unit means an app-bag change"
        );
        assert!(ctx.action.is_none());
    }

    #[test]
    fn parses_an_action() {
        let ctx = Context::from_env(&env(&[
            ("JUJU_DISPATCH_PATH", "actions/get-password"),
            ("JUJU_UNIT_NAME", "postgresql/0"),
            ("JUJU_ACTION_NAME", "get-password"),
            ("JUJU_ACTION_UUID", "7"),
        ]))
        .unwrap();
        assert_eq!(
            ctx.action,
            Some(ActionContext {
                name: "get-password".into(),
                id: "7".into()
            })
        );
    }

    #[test]
    fn refuses_a_run_outside_juju() {
        let err = Context::from_env(&env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("JUJU_UNIT_NAME is not set"),
            "{err}"
        );
        let err = Context::from_env(&env(&[
            ("JUJU_DISPATCH_PATH", "hooks/install"),
            ("JUJU_UNIT_NAME", "postgresql"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("<app>/<number>"), "{err}");
    }
}
