//! Action plumbing: typed parameters from `action-get`, nested results
//! flattened to `action-set`'s dotted keys, and progress to `action-log`.

use anyhow::{Context as _, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::tools::HookTools;

/// Reads the action's parameters (defaults already filled in by Juju) into
/// the action's own struct.
pub fn params<T: DeserializeOwned>(tools: &dyn HookTools) -> Result<T> {
    let raw = tools
        .action_get()
        .context("cannot read the action's parameters")?;
    serde_json::from_value(Value::Object(raw)).context("the action's parameters are not valid")
}

/// Sets the action's results from a JSON object; nested objects become
/// dotted keys, scalars their text.
pub fn set_results(tools: &dyn HookTools, results: &Value) -> Result<()> {
    let mut pairs = Vec::new();
    flatten("", results, &mut pairs);
    if pairs.is_empty() {
        return Ok(());
    }
    tools
        .action_set(&pairs)
        .context("cannot set the action's results")
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&key(k), v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// Reports progress to whoever runs the action; a failure to report is not
/// a failure of the action.
pub fn log(tools: &dyn HookTools, message: &str) {
    if let Err(err) = tools.action_log(message) {
        tracing::warn!("cannot report action progress: {err:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_results_become_dotted_keys() {
        let mut pairs = Vec::new();
        flatten(
            "",
            &json!({"restore-status": "restored", "target": {"time": "t", "timeline": 2}, "none": null}),
            &mut pairs,
        );
        pairs.sort();
        assert_eq!(
            pairs,
            [
                ("restore-status".to_owned(), "restored".to_owned()),
                ("target.time".to_owned(), "t".to_owned()),
                ("target.timeline".to_owned(), "2".to_owned()),
            ]
        );
    }
}
