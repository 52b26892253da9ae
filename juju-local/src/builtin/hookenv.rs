//! What a built-in stand-in sees of its hook: the same hook tools a real
//! charm calls, answered in-process by the agent side of juju-local
//! (`crate::tools::handle`) over the hook context. Going through the tools
//! keeps their rules (leader-only writes, buffered commits, secret grants)
//! identical to what a charm's dispatch process gets.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::client::Request;
use crate::context::HookContext;

/// The hook environment of one built-in run.
pub struct Env<'a> {
    pub ctx: &'a mut HookContext,
    /// The unit's charm directory (the `dir` a tool request carries).
    dir: String,
}

impl<'a> Env<'a> {
    pub fn new(ctx: &'a mut HookContext, dir: String) -> Env<'a> {
        Env { ctx, dir }
    }

    /// Calls hook tool `command` with `args` and `stdin`; its stdout, or an
    /// error carrying its message.
    pub fn call_with(&mut self, command: &str, args: &[&str], stdin: &str) -> Result<String> {
        let req = Request {
            context_id: self.ctx.id.clone(),
            dir: self.dir.clone(),
            command: command.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: stdin.to_string(),
        };
        let resp = crate::tools::handle(self.ctx, &req);
        if resp.code != 0 {
            let msg = resp.stderr.trim().trim_start_matches("ERROR ").to_string();
            bail!("{command} failed: {msg}");
        }
        Ok(resp.stdout)
    }

    pub fn call(&mut self, command: &str, args: &[&str]) -> Result<String> {
        self.call_with(command, args, "")
    }

    /// Calls a tool with `--format=json` and parses its answer.
    pub fn json(&mut self, command: &str, args: &[&str]) -> Result<Value> {
        let mut a = vec!["--format=json"];
        a.extend_from_slice(args);
        let out = self.call(command, &a)?;
        serde_json::from_str(out.trim()).with_context(|| format!("cannot parse {command}'s answer"))
    }

    /// The hook's name (empty in an action).
    pub fn hook_name(&self) -> String {
        self.ctx.hook.name.clone()
    }

    /// The relation the hook is about, as `endpoint:id`, if any.
    pub fn hook_relation(&self) -> Option<u64> {
        self.ctx.hook.relation
    }

    pub fn app(&self) -> String {
        self.ctx.app().to_string()
    }

    pub fn is_leader(&mut self) -> Result<bool> {
        Ok(self.json("is-leader", &[])? == Value::Bool(true))
    }

    /// A config option as text (`""` when unset).
    pub fn config_str(&mut self, key: &str) -> Result<String> {
        Ok(match self.json("config-get", &[key])? {
            Value::Null => String::new(),
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    pub fn status(&mut self, status: &str, message: &str) -> Result<()> {
        self.call("status-set", &[status, "--", message])
            .map(|_| ())
    }

    pub fn log(&mut self, level: &str, message: &str) {
        let _ = self.call("juju-log", &["--log-level", level, "--", message]);
    }

    /// `endpoint:id` of every relation on `endpoint`.
    pub fn relation_ids(&mut self, endpoint: &str) -> Result<Vec<String>> {
        let v = self.json("relation-ids", &[endpoint])?;
        Ok(strings(&v))
    }

    /// The remote units of a relation (`relation-list`).
    pub fn relation_list(&mut self, rid: &str) -> Result<Vec<String>> {
        let v = self.json("relation-list", &["-r", rid])?;
        Ok(strings(&v))
    }

    /// The remote application of a relation (`relation-list --app`).
    pub fn remote_app(&mut self, rid: &str) -> Result<String> {
        let v = self.json("relation-list", &["-r", rid, "--app"])?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// A unit's bag, or with `app` an application's bag.
    pub fn relation_get(
        &mut self,
        rid: &str,
        who: &str,
        app: bool,
    ) -> Result<BTreeMap<String, String>> {
        let mut args = vec!["-r", rid];
        if app {
            args.push("--app");
        }
        args.extend_from_slice(&["-", who]);
        let v = self.json("relation-get", &args)?;
        let mut out = BTreeMap::new();
        if let Value::Object(m) = v {
            for (k, v) in m {
                if let Value::String(s) = v {
                    out.insert(k, s);
                }
            }
        }
        Ok(out)
    }

    /// Writes the app bag: each key to its value, `""` deleting it.
    pub fn relation_set_app(
        &mut self,
        rid: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<()> {
        let text = serde_json::to_string(settings).context("cannot encode relation settings")?;
        self.call_with("relation-set", &["-r", rid, "--app", "--file", "-"], &text)
            .map(|_| ())
    }

    /// The content of a secret this unit can read, by label, if it exists.
    pub fn secret_by_label(&mut self, label: &str) -> Result<Option<BTreeMap<String, String>>> {
        match self.json("secret-get", &["--label", label]) {
            Ok(Value::Object(m)) => Ok(Some(
                m.into_iter()
                    .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                    .collect(),
            )),
            Ok(_) => Ok(None),
            Err(e) if e.to_string().contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id of an owned secret with `label`, if it exists.
    pub fn secret_id_by_label(&mut self, label: &str) -> Result<Option<String>> {
        match self.json("secret-info-get", &["--label", label]) {
            Ok(Value::Object(m)) => Ok(m.keys().next().cloned()),
            Ok(_) => Ok(None),
            Err(e) if e.to_string().contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds an app-owned secret; its URI.
    pub fn secret_add(
        &mut self,
        label: &str,
        content: &BTreeMap<String, String>,
    ) -> Result<String> {
        let kv: Vec<String> = content.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["--owner", "application", "--label", label];
        args.extend(kv.iter().map(String::as_str));
        Ok(self.call("secret-add", &args)?.trim().to_string())
    }

    /// Sets a new revision of an owned secret (none when the content is the same).
    pub fn secret_set(&mut self, id: &str, content: &BTreeMap<String, String>) -> Result<()> {
        let kv: Vec<String> = content.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["--owner", "application", id];
        args.extend(kv.iter().map(String::as_str));
        self.call("secret-set", &args).map(|_| ())
    }

    /// The secret's URI (`secret://<model-uuid>/<id>`) for any form of its id.
    pub fn secret_uri(&self, id: &str) -> String {
        let bare = crate::tools::secret_id(id).unwrap_or_else(|| id.to_string());
        self.ctx.work.secret_uri(&bare)
    }

    pub fn action_set(&mut self, results: &[(&str, &str)]) -> Result<()> {
        let kv: Vec<String> = results.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let args: Vec<&str> = kv.iter().map(String::as_str).collect();
        self.call("action-set", &args).map(|_| ())
    }

    pub fn action_fail(&mut self, message: &str) -> Result<()> {
        self.call("action-fail", &["--", message]).map(|_| ())
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
