//! The agent side of the hook tools: one request in, one response out, with
//! Juju's flag handling, outputs, exit codes (2 for usage errors, 1 for run
//! errors) and messages. Each submodule owns a family of tools.

mod action;
mod misc;
mod relation;
pub(crate) mod secret;

pub use secret::parse_id as secret_id;

use serde_json::Value;

use crate::client::{Request, Response};
use crate::context::HookContext;
use crate::flags::{self, Parsed, Spec};
use crate::format;

/// A tool's failure: exit code and message (printed as `ERROR <msg>`).
#[derive(Debug)]
pub struct Fail {
    pub code: i32,
    pub msg: String,
}

/// A usage error (exit 2).
pub fn usage(msg: impl Into<String>) -> Fail {
    Fail {
        code: 2,
        msg: msg.into(),
    }
}

/// A run error (exit 1).
pub fn fail(msg: impl Into<String>) -> Fail {
    Fail {
        code: 1,
        msg: msg.into(),
    }
}

pub type Out = Result<String, Fail>;

/// Answers one tool request in `ctx`.
pub fn handle(ctx: &mut HookContext, req: &Request) -> Response {
    if req.context_id != ctx.id {
        return Response {
            code: 1,
            stdout: String::new(),
            stderr: format!(
                "ERROR bad request: unknown context id {:?}\n",
                req.context_id
            ),
        };
    }
    let r = match req.command.as_str() {
        "action-get" | "action-set" | "action-fail" | "action-log" => action::run(ctx, req),
        "relation-ids" | "relation-list" | "relation-get" | "relation-set" => {
            relation::run(ctx, req)
        }
        c if c.starts_with("secret-") => secret::run(ctx, req),
        _ => misc::run(ctx, req),
    };
    match r {
        Ok(stdout) => Response {
            code: 0,
            stdout,
            stderr: String::new(),
        },
        Err(f) => Response {
            code: f.code,
            stdout: String::new(),
            stderr: format!("ERROR {}\n", f.msg),
        },
    }
}

/// Parses flags; a parse error is a usage error.
pub fn parse(spec: &Spec, args: &[String]) -> Result<Parsed, Fail> {
    flags::parse(spec, args).map_err(usage)
}

/// Renders `value` with the `--format` given (default `default`), accepting `allowed`.
pub fn output(p: &Parsed, default: &str, allowed: &[&str], value: Option<&Value>) -> Out {
    let f = p.value("format").unwrap_or(default);
    format::check(f, allowed).map_err(usage)?;
    format::render(f, value).map_err(fail)
}

/// Checks that a format value is valid before running (gnuflag rejects it at parse time).
pub fn check_format(p: &Parsed, allowed: &[&str]) -> Result<(), Fail> {
    match p.value("format") {
        Some(f) => format::check(f, allowed).map_err(usage),
        None => Ok(()),
    }
}

pub const SMART: &[&str] = &["smart", "json", "yaml"];
pub const YAML_JSON: &[&str] = &["yaml", "json"];

/// No more positional arguments allowed (Juju's cmd.CheckEmpty).
pub fn check_empty(args: &[String]) -> Result<(), Fail> {
    if args.is_empty() {
        return Ok(());
    }
    let quoted: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    Err(usage(format!("unrecognized args: [{}]", quoted.join(" "))))
}

/// Parses `key=value` arguments (values split at the first `=`).
pub fn key_values(args: &[String]) -> Result<Vec<(String, String)>, Fail> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(usage(format!("expected \"key=value\", got {a:?}"))),
        })
        .collect()
}

/// Reads a YAML or JSON map of settings (from `--file`), values as strings.
pub fn settings_from_yaml(text: &str) -> Result<Vec<(String, String)>, Fail> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value =
        serde_yaml::from_str(text).map_err(|e| fail(format!("cannot parse settings: {e}")))?;
    let Value::Object(map) = v else {
        if v.is_null() {
            return Ok(Vec::new());
        }
        return Err(fail("settings must be a map"));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, s)
        })
        .collect())
}

/// Reads `--file` content: `-` is the request's stdin, else a path relative to the caller's dir.
pub fn read_file_arg(req: &Request, path: &str) -> Result<String, Fail> {
    if path == "-" {
        return Ok(req.stdin.clone());
    }
    let p = std::path::Path::new(&req.dir).join(path);
    std::fs::read_to_string(&p).map_err(|e| fail(format!("open {}: {e}", p.display())))
}
