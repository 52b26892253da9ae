//! action-get, action-set, action-fail and action-log: the running
//! action's parameters, results tree, failure message and progress log.

use regex::Regex;
use serde_json::{Map, Value};

use super::{check_format, fail, output, parse, usage, Out, SMART};
use crate::client::Request;
use crate::context::HookContext;
use crate::flags::Spec;

const RESERVED: &[&str] = &["stdout", "stdout-encoding", "stderr", "stderr-encoding"];

pub fn run(ctx: &mut HookContext, req: &Request) -> Out {
    let spec = match req.command.as_str() {
        "action-get" => Spec::new().format(),
        _ => Spec::new(),
    };
    let p = parse(&spec, &req.args)?;
    let model_dir = ctx.model_dir.clone();
    let unit = ctx.unit.clone();
    let action = ctx.action.as_mut();
    let no_action = || fail("not running an action");
    match req.command.as_str() {
        "action-get" => {
            check_format(&p, SMART)?;
            let action = action.ok_or_else(no_action)?;
            let params = Value::Object(action.params.clone());
            if p.args.is_empty() {
                return output(&p, "smart", SMART, Some(&params));
            }
            if p.args.len() > 1 {
                return Err(usage(format!(
                    "unrecognized args: [{}]",
                    p.args[1..]
                        .iter()
                        .map(|a| format!("{a:?}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )));
            }
            let mut cur = Some(&params);
            for seg in p.args[0].split('.') {
                cur = cur.and_then(|v| v.get(seg));
            }
            output(&p, "smart", SMART, cur)
        }
        "action-set" => {
            let re =
                Regex::new("^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$").map_err(|e| fail(e.to_string()))?;
            let mut pairs = Vec::new();
            for a in &p.args {
                let Some((k, v)) = a.split_once('=') else {
                    return Err(usage(format!(
                        "argument {a:?} must be of the form key...=value"
                    )));
                };
                for seg in k.split('.') {
                    if !re.is_match(seg) {
                        return Err(usage(format!(
                            "key {seg:?} must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"
                        )));
                    }
                    if RESERVED.contains(&seg) {
                        return Err(usage(format!("cannot set reserved action key {seg:?}")));
                    }
                }
                pairs.push((k.to_string(), v.to_string()));
            }
            let action = action.ok_or_else(no_action)?;
            for (k, v) in pairs {
                set_dotted(&mut action.results, &k, v);
            }
            Ok(String::new())
        }
        "action-fail" => {
            let msg = if p.args.is_empty() {
                "action failed without reason given, check action for errors".to_string()
            } else {
                p.args.join(" ")
            };
            action.ok_or_else(no_action)?.failed = Some(msg);
            Ok(String::new())
        }
        _ => {
            if p.args.is_empty() {
                return Err(usage("no message specified"));
            }
            let msg = p.args.join(" ");
            let action = action.ok_or_else(no_action)?;
            let t = crate::fsutil::hms_now();
            if action.stream {
                eprintln!("{t} {msg}");
            }
            action.logs.push((t, msg.clone()));
            crate::debuglog::append(
                &model_dir,
                &unit,
                "INFO",
                &format!("unit.{unit}.action-log"),
                &msg,
            );
            Ok(String::new())
        }
    }
}

/// Sets `a.b.c` = value in a nested map, merging with what is there.
pub fn set_dotted(map: &mut Map<String, Value>, key: &str, value: String) {
    let mut segs: Vec<&str> = key.split('.').collect();
    let last = segs.pop().unwrap_or(key);
    let mut cur = map;
    for s in segs {
        let entry = cur
            .entry(s.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        cur = next;
    }
    cur.insert(last.to_string(), Value::String(value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_keys_nest_and_merge() {
        let mut m = Map::new();
        set_dotted(&mut m, "a.b", "1".into());
        set_dotted(&mut m, "a.c", "2".into());
        set_dotted(&mut m, "d", "x=y".into());
        assert_eq!(
            Value::Object(m),
            json!({"a": {"b": "1", "c": "2"}, "d": "x=y"})
        );
    }
}
