//! The JSON Schema (draft 4) subset Juju applies to action parameters, with
//! the wording of the validator Juju uses: each error is
//! `<context> : <description>, given <value>`, joined with `; ` after
//! `validation failed: `. Also inserts the schema's defaults as Juju does.

use regex::Regex;
use serde_json::{Map, Value};

/// Validates `params` against `schema`; `Err` is the full `validation failed: ...` text.
pub fn validate(schema: &Value, params: &Value) -> Result<(), String> {
    let mut errors = Vec::new();
    walk(schema, params, "(root)", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("validation failed: {}", errors.join("; ")))
    }
}

/// Inserts defaults from the schema's properties, recursively and without overwriting.
pub fn insert_defaults(schema: &Value, into: &mut Map<String, Value>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, sub) in props {
        if let Some(existing) = into.get_mut(name) {
            if let Value::Object(inner) = existing {
                insert_defaults(sub, inner);
            }
            continue;
        }
        if let Some(d) = sub.get("default") {
            into.insert(name.clone(), d.clone());
        } else if sub.get("properties").is_some() {
            let mut inner = Map::new();
            insert_defaults(sub, &mut inner);
            if !inner.is_empty() {
                into.insert(name.clone(), Value::Object(inner));
            }
        }
    }
}

fn json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Go's formatting of a number in a validation message: integers plain, else %g.
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e18 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn push(errors: &mut Vec<String>, ctx: &str, desc: String, given: &Value) {
    errors.push(format!("{ctx} : {desc}, given {}", json(given)));
}

fn types_of(schema: &Value) -> Vec<String> {
    match schema.get("type") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

fn type_ok(types: &[String], v: &Value) -> bool {
    if types.is_empty() {
        return true;
    }
    let has = |t: &str| types.iter().any(|x| x == t);
    match v {
        Value::Null => has("null"),
        Value::Bool(_) => has("boolean"),
        Value::String(_) => has("string"),
        Value::Array(_) => has("array"),
        Value::Object(_) => has("object"),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            has("number") || (f.fract() == 0.0 && has("integer"))
        }
    }
}

fn walk(schema: &Value, v: &Value, ctx: &str, errors: &mut Vec<String>) {
    let types = types_of(schema);
    if !type_ok(&types, v) {
        let t = if types.len() == 1 {
            types[0].clone()
        } else {
            format!("[{}]", types.join(","))
        };
        push(errors, ctx, format!("must be of type {t}"), v);
        return;
    }
    if let Value::Object(map) = v {
        object(schema, map, v, ctx, errors);
    }
    if let Value::Number(n) = v {
        number(schema, n.as_f64().unwrap_or(0.0), ctx, errors);
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.iter().any(|o| o == v) {
            let list: Vec<String> = options.iter().map(json).collect();
            push(
                errors,
                ctx,
                format!("must match one of the enum values [{}]", list.join(",")),
                v,
            );
        }
    }
    if let Value::String(s) = v {
        string(schema, s, v, ctx, errors);
    }
    if let Value::Object(map) = v {
        if let Some(Value::Object(props)) = schema.get("properties") {
            for (name, sub) in props {
                if let Some(child) = map.get(name) {
                    walk(sub, child, &format!("{ctx}.{name}"), errors);
                }
            }
        }
    }
}

fn object(
    schema: &Value,
    map: &Map<String, Value>,
    v: &Value,
    ctx: &str,
    errors: &mut Vec<String>,
) {
    if let Some(Value::Array(req)) = schema.get("required") {
        for r in req.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                push(
                    errors,
                    ctx,
                    format!("\"{r}\" property is missing and required"),
                    v,
                );
            }
        }
    }
    if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
        let props = schema.get("properties").and_then(Value::as_object);
        for k in map.keys() {
            if !props.is_some_and(|p| p.contains_key(k)) {
                push(
                    errors,
                    ctx,
                    format!("additional property \"{k}\" is not allowed"),
                    v,
                );
            }
        }
    }
}

fn number(schema: &Value, f: f64, ctx: &str, errors: &mut Vec<String>) {
    let given = Value::String(number_text(f));
    let excl = |k: &str| schema.get(k) == Some(&Value::Bool(true));
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        // The validator's own wording: "lower than" for an inclusive maximum.
        if excl("exclusiveMaximum") && f >= max {
            let d = format!("must be lower than or equal to {}", number_text(max));
            push(errors, ctx, d, &given);
        } else if !excl("exclusiveMaximum") && f > max {
            push(
                errors,
                ctx,
                format!("must be lower than {}", number_text(max)),
                &given,
            );
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if excl("exclusiveMinimum") && f <= min {
            let d = format!("must be greater than or equal to {}", number_text(min));
            push(errors, ctx, d, &given);
        } else if !excl("exclusiveMinimum") && f < min {
            push(
                errors,
                ctx,
                format!("must be greater than {}", number_text(min)),
                &given,
            );
        }
    }
}

fn string(schema: &Value, s: &str, v: &Value, ctx: &str, errors: &mut Vec<String>) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if len < min {
            let d = format!("string length must be greater or equal to {min}");
            push(errors, ctx, d, v);
        }
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if len > max {
            push(
                errors,
                ctx,
                format!("string length must be lower or equal to {max}"),
                v,
            );
        }
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        if let Ok(re) = Regex::new(p) {
            if !re.is_match(s) {
                push(errors, ctx, format!("does not match pattern '{p}'"), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "username": {"type": "string", "enum": ["operator", "replication"], "default": "operator"},
                "count": {"type": "integer", "minimum": 1, "maximum": 5},
                "name": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$"},
                "nested": {"type": "object", "properties": {"depth": {"type": "integer", "default": 3}}}
            },
            "required": ["username"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_valid() {
        assert!(validate(&schema(), &json!({"username": "operator", "count": 3})).is_ok());
    }

    #[test]
    fn enum_message() {
        let e = validate(&schema(), &json!({"username": "bob"})).unwrap_err();
        assert_eq!(
            e,
            "validation failed: (root).username : must match one of the enum values [\"operator\",\"replication\"], given \"bob\""
        );
    }

    #[test]
    fn required_and_additional() {
        let e = validate(&schema(), &json!({"foo": 1})).unwrap_err();
        assert_eq!(
            e,
            "validation failed: (root) : \"username\" property is missing and required, given {\"foo\":1}; (root) : additional property \"foo\" is not allowed, given {\"foo\":1}"
        );
    }

    #[test]
    fn type_and_bounds() {
        let e = validate(&schema(), &json!({"username": "operator", "count": "x"})).unwrap_err();
        assert!(
            e.ends_with("(root).count : must be of type integer, given \"x\""),
            "{e}"
        );
        let e = validate(&schema(), &json!({"username": "operator", "count": 9})).unwrap_err();
        assert!(
            e.ends_with("(root).count : must be lower than 5, given \"9\""),
            "{e}"
        );
        let e = validate(&schema(), &json!({"username": "operator", "count": 0})).unwrap_err();
        assert!(
            e.ends_with("(root).count : must be greater than 1, given \"0\""),
            "{e}"
        );
        let e = validate(&schema(), &json!({"username": "operator", "name": "A"})).unwrap_err();
        assert_eq!(
            e,
            "validation failed: (root).name : string length must be greater or equal to 2, given \"A\"; (root).name : does not match pattern '^[a-z]+$', given \"A\""
        );
    }

    #[test]
    fn defaults() {
        let mut m = Map::new();
        m.insert("nested".into(), json!({}));
        insert_defaults(&schema(), &mut m);
        assert_eq!(
            Value::Object(m),
            json!({"username": "operator", "nested": {"depth": 3}})
        );
    }
}
