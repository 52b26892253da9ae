//! Output formats of hook tools, as Juju's cmd.Output writes them: `smart`
//! (strings raw, bools True/False, lists one item per line, the rest as
//! YAML), `json` (one line, `null` for nil) and `yaml`.

use serde_json::Value;

/// Renders `value` in `format`; `None` is Go's nil. Always ends with a newline
/// when anything is printed.
pub fn render(format: &str, value: Option<&Value>) -> Result<String, String> {
    let out = match format {
        "json" => match value {
            None => "null".to_string(),
            Some(v) => serde_json::to_string(v).map_err(|e| e.to_string())?,
        },
        "yaml" => match value {
            None => String::new(),
            Some(v) => yaml(v),
        },
        "smart" => match value {
            None => String::new(),
            Some(v) => smart(v),
        },
        other => return Err(format!("unknown format {other:?}")),
    };
    if out.is_empty() || out.ends_with('\n') {
        Ok(out)
    } else {
        Ok(out + "\n")
    }
}

/// Checks a `--format` value against the ones a tool accepts.
pub fn check(format: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&format) {
        Ok(())
    } else {
        Err(format!(
            "invalid value {format:?} for option --format: unknown format {format:?}"
        ))
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => yaml(other),
    }
}

fn smart(v: &Value) -> String {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| format!("{}\n", scalar(i).trim_end_matches('\n')))
            .collect(),
        Value::Object(_) => yaml(v),
        other => scalar(other),
    }
}

/// YAML as Go's yaml.v2 prints a map: no document marker.
pub fn yaml(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}\n".into(),
        Value::Array(a) if a.is_empty() => "[]\n".into(),
        _ => {
            let s = serde_yaml::to_string(v).unwrap_or_default();
            s.strip_prefix("---\n").unwrap_or(&s).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smart_formats() {
        assert_eq!(render("smart", Some(&json!("abc"))).unwrap(), "abc\n");
        assert_eq!(render("smart", Some(&json!(true))).unwrap(), "True\n");
        assert_eq!(render("smart", Some(&json!(false))).unwrap(), "False\n");
        assert_eq!(render("smart", Some(&json!(["a", "b"]))).unwrap(), "a\nb\n");
        assert_eq!(render("smart", Some(&json!({"k": "v"}))).unwrap(), "k: v\n");
        assert_eq!(render("smart", Some(&json!(3))).unwrap(), "3\n");
        assert_eq!(render("smart", None).unwrap(), "");
    }

    #[test]
    fn json_formats() {
        assert_eq!(render("json", None).unwrap(), "null\n");
        assert_eq!(
            render("json", Some(&json!({"a": "b"}))).unwrap(),
            "{\"a\":\"b\"}\n"
        );
        assert_eq!(render("json", Some(&json!([]))).unwrap(), "[]\n");
    }

    #[test]
    fn unknown_format() {
        assert!(check("xml", &["smart", "json", "yaml"]).is_err());
    }
}
