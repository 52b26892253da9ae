//! Typed relation databags: one serde struct per bag, read from and written
//! to Juju's string-to-string maps. Strings stay as they are; other values are
//! JSON-encoded; a field that became `None` is deleted (written as "").

use anyhow::{Context as _, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::tools::{Bag, Fields, HookTools, RelationId};

/// Decodes a databag into its struct. Values that are JSON documents (numbers,
/// lists, objects) are decoded as such when the field is not a string.
pub fn decode<T: DeserializeOwned>(fields: &Fields) -> Result<T> {
    let object: Map<String, Value> = fields
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    match serde_json::from_value(Value::Object(object.clone())) {
        Ok(value) => Ok(value),
        // A second try with JSON-decoded values, for non-string fields.
        Err(first) => {
            let decoded: Map<String, Value> = object
                .into_iter()
                .map(|(k, v)| {
                    let s = v.as_str().unwrap_or_default();
                    let parsed = serde_json::from_str(s).unwrap_or(Value::String(s.to_owned()));
                    (k, parsed)
                })
                .collect();
            serde_json::from_value(Value::Object(decoded))
                .with_context(|| format!("the databag does not hold what was expected: {first}"))
        }
    }
}

/// Encodes a struct as a databag; `None` fields become "" (delete).
pub fn encode<T: Serialize>(value: &T) -> Result<Fields> {
    let Value::Object(object) = serde_json::to_value(value).context("cannot encode the databag")?
    else {
        anyhow::bail!("a databag must encode as a map of fields");
    };
    Ok(object
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::Null => String::new(),
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// Reads one databag of a relation as its struct.
pub fn read<T: DeserializeOwned>(
    tools: &dyn HookTools,
    relation: &RelationId,
    bag: Bag<'_>,
) -> Result<T> {
    let fields = tools
        .relation_get(relation, bag.clone())
        .with_context(|| format!("cannot read the {bag:?} databag of {relation}"))?;
    decode(&fields).with_context(|| format!("cannot decode the {bag:?} databag of {relation}"))
}

/// Writes this unit's bag (or the app's, leader only) from its struct,
/// sending only the fields that differ from what is there.
pub fn write<T: Serialize>(
    tools: &dyn HookTools,
    relation: &RelationId,
    app: bool,
    current: &Fields,
    value: &T,
) -> Result<()> {
    let mut changes = encode(value)?;
    changes.retain(|k, v| current.get(k).map_or(!v.is_empty(), |old| old != v));
    if changes.is_empty() {
        return Ok(());
    }
    let whose = if app { "application" } else { "unit" };
    tools
        .relation_set(relation, app, &changes)
        .with_context(|| format!("cannot write the {whose} databag of {relation}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Sample {
        name: Option<String>,
        members: Option<Vec<String>>,
        port: Option<u16>,
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trips_strings_lists_and_numbers() {
        let value = Sample {
            name: Some("[not json]".into()),
            members: Some(vec!["a/0".into(), "a/1".into()]),
            port: Some(5432),
        };
        let encoded = encode(&value).unwrap();
        assert_eq!(encoded["name"], "[not json]");
        assert_eq!(encoded["members"], r#"["a/0","a/1"]"#);
        assert_eq!(encoded["port"], "5432");
        assert_eq!(decode::<Sample>(&encoded).unwrap(), value);
    }

    #[test]
    fn a_missing_or_empty_field_is_none_and_none_deletes() {
        let decoded: Sample = decode(&fields(&[("name", ""), ("other", "x")])).unwrap();
        assert_eq!(decoded, Sample::default());
        assert_eq!(encode(&Sample::default()).unwrap()["name"], "");
    }

    #[test]
    fn a_field_of_the_wrong_shape_is_an_error_naming_it() {
        let err = decode::<Sample>(&fields(&[("port", "fifty")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("port") || format!("{err:#}").contains("u16"),
            "{err:#}"
        );
    }
}
