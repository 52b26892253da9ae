//! `HookTools` over the real hook-tool executables on `PATH`, with the argv
//! of Juju's reference and JSON output; a failing tool becomes a `ToolError`
//! carrying its exit code and stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::tools::{
    Bag, Fields, HookTools, LogLevel, NetworkInfo, RelationId, SecretRead, Status, StatusKind,
    ToolError,
};

/// Runs each hook tool as a process, as Juju expects a charm to.
#[derive(Debug, Clone, Default)]
pub struct ProcessTools;

impl ProcessTools {
    fn run(&self, tool: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut cmd = Command::new(tool);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run the hook tool {tool}"))?;
        if let Some(input) = stdin {
            // Dropping the handle after the write closes the pipe.
            let mut pipe = child.stdin.take().context("hook tool stdin is not piped")?;
            pipe.write_all(input)
                .with_context(|| format!("cannot write to {tool}'s stdin"))?;
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("cannot wait for {tool}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.trim().trim_start_matches("ERROR ").to_owned();
            return Err(ToolError {
                tool: tool.to_owned(),
                code: out.status.code().unwrap_or(-1),
                stderr,
            }
            .into());
        }
        Ok(out.stdout)
    }

    fn json<T: DeserializeOwned>(&self, tool: &str, args: &[&str]) -> Result<T> {
        let out = self.run(tool, args, None)?;
        serde_json::from_slice(&out)
            .with_context(|| format!("{tool} printed something that is not the expected JSON"))
    }

    /// Sends a map as YAML-compatible JSON on stdin (`--file -`).
    fn with_file(&self, tool: &str, args: &[&str], data: &Fields) -> Result<()> {
        let body = serde_json::to_vec(data).context("cannot encode the data for the hook tool")?;
        self.run(tool, args, Some(&body)).map(drop)
    }
}

fn bool_flag(name: &str, value: bool) -> String {
    format!("--{name}={}", if value { "True" } else { "False" })
}

/// Secret content goes through files (`key#file=path`) in a private
/// directory, so no value ever shows in a process listing.
struct SecretFiles {
    // Held so that the files live until the tool has read them.
    _dir: tempfile::TempDir,
    args: Vec<String>,
}

impl SecretFiles {
    fn write(content: &Fields) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("charm-secret-")
            .tempdir()
            .context("cannot create a private directory for secret content")?;
        let mut args = Vec::with_capacity(content.len());
        for (i, (key, value)) in content.iter().enumerate() {
            let path = dir.path().join(i.to_string());
            std::fs::write(&path, value).context("cannot write secret content to its file")?;
            args.push(format!("{key}#file={}", path.display()));
        }
        Ok(Self { _dir: dir, args })
    }

    fn args(&self) -> impl Iterator<Item = &str> {
        self.args.iter().map(String::as_str)
    }
}

impl HookTools for ProcessTools {
    fn config_get(&self) -> Result<Map<String, Value>> {
        self.json("config-get", &["--format=json"])
    }

    fn is_leader(&self) -> Result<bool> {
        self.json("is-leader", &["--format=json"])
    }

    fn relation_ids(&self, endpoint: &str) -> Result<Vec<RelationId>> {
        let ids: Option<Vec<String>> = self.json("relation-ids", &[endpoint, "--format=json"])?;
        ids.unwrap_or_default()
            .iter()
            .map(|id| id.parse())
            .collect()
    }

    fn relation_list(&self, relation: &RelationId) -> Result<Vec<String>> {
        let rel = relation.to_string();
        let units: Option<Vec<String>> =
            self.json("relation-list", &["--format=json", "-r", &rel])?;
        Ok(units.unwrap_or_default())
    }

    fn relation_remote_app(&self, relation: &RelationId) -> Result<String> {
        let rel = relation.to_string();
        self.json("relation-list", &["--format=json", "--app", "-r", &rel])
    }

    fn relation_get(&self, relation: &RelationId, bag: Bag<'_>) -> Result<Fields> {
        let rel = relation.to_string();
        let data: Option<Fields> = match bag {
            Bag::Unit(unit) => {
                self.json("relation-get", &["--format=json", "-r", &rel, "-", unit])?
            }
            Bag::App(app) => self.json(
                "relation-get",
                &["--format=json", "-r", &rel, "--app", "-", app],
            )?,
        };
        Ok(data.unwrap_or_default())
    }

    fn relation_set(&self, relation: &RelationId, app: bool, data: &Fields) -> Result<()> {
        let rel = relation.to_string();
        let app_flag = bool_flag("app", app);
        self.with_file(
            "relation-set",
            &["-r", &rel, &app_flag, "--file", "-"],
            data,
        )
    }

    fn status_set(&self, app: bool, status: &Status) -> Result<()> {
        let app_flag = bool_flag("application", app);
        let args = [&app_flag, status.kind.as_str(), "--", &status.message];
        self.run("status-set", &args, None).map(drop)
    }

    fn status_get(&self, app: bool) -> Result<Status> {
        #[derive(serde::Deserialize)]
        struct Reply {
            status: StatusKind,
            #[serde(default)]
            message: String,
        }
        let app_flag = bool_flag("application", app);
        let reply: Reply = self.json(
            "status-get",
            &["--include-data", "--format=json", &app_flag],
        )?;
        Ok(Status::new(reply.status, reply.message))
    }

    fn juju_log(&self, level: LogLevel, message: &str) -> Result<()> {
        self.run(
            "juju-log",
            &["--log-level", level.as_str(), "--", message],
            None,
        )
        .map(drop)
    }

    fn application_version_set(&self, version: &str) -> Result<()> {
        self.run("application-version-set", &["--", version], None)
            .map(drop)
    }

    fn action_get(&self) -> Result<Map<String, Value>> {
        let params: Option<Map<String, Value>> = self.json("action-get", &["--format=json"])?;
        Ok(params.unwrap_or_default())
    }

    fn action_set(&self, results: &[(String, String)]) -> Result<()> {
        let pairs: Vec<String> = results.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let args: Vec<&str> = pairs.iter().map(String::as_str).collect();
        self.run("action-set", &args, None).map(drop)
    }

    fn action_fail(&self, message: &str) -> Result<()> {
        self.run("action-fail", &["--", message], None).map(drop)
    }

    fn action_log(&self, message: &str) -> Result<()> {
        self.run("action-log", &["--", message], None).map(drop)
    }

    fn secret_add(&self, label: Option<&str>, content: &Fields) -> Result<String> {
        let mut args = vec!["--owner", "application"];
        if let Some(label) = label {
            args.extend(["--label", label]);
        }
        let files = SecretFiles::write(content)?;
        args.extend(files.args());
        let out = self.run("secret-add", &args, None)?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }

    fn secret_get(
        &self,
        id: Option<&str>,
        label: Option<&str>,
        read: SecretRead,
    ) -> Result<Fields> {
        let mut args = vec!["--format=json"];
        args.extend(id);
        if let Some(label) = label {
            args.extend(["--label", label]);
        }
        match read {
            SecretRead::Tracked => {}
            SecretRead::Refresh => args.push("--refresh"),
            SecretRead::Peek => args.push("--peek"),
        }
        self.json("secret-get", &args)
    }

    fn secret_set(&self, id: &str, content: &Fields) -> Result<()> {
        let files = SecretFiles::write(content)?;
        let mut args = vec!["--owner", "application", id];
        args.extend(files.args());
        self.run("secret-set", &args, None).map(drop)
    }

    fn secret_grant(&self, id: &str, relation: &RelationId) -> Result<()> {
        let rel = relation.to_string();
        self.run("secret-grant", &["-r", &rel, id], None).map(drop)
    }

    fn secret_remove(&self, id: &str) -> Result<()> {
        self.run("secret-remove", &[id], None).map(drop)
    }

    fn secret_ids(&self) -> Result<Vec<String>> {
        let ids: Option<Vec<String>> = self.json("secret-ids", &["--format=json"])?;
        Ok(ids.unwrap_or_default())
    }

    fn state_get(&self, key: &str) -> Result<Option<String>> {
        self.json("state-get", &["--format=json", key])
    }

    fn state_set(&self, data: &Fields) -> Result<()> {
        self.with_file("state-set", &["--file", "-"], data)
    }

    fn state_delete(&self, key: &str) -> Result<()> {
        self.run("state-delete", &[key], None).map(drop)
    }

    fn storage_list(&self, name: &str) -> Result<Vec<String>> {
        let ids: Option<Vec<String>> = self.json("storage-list", &["--format=json", name])?;
        Ok(ids.unwrap_or_default())
    }

    fn storage_get(&self, storage_id: &str) -> Result<PathBuf> {
        let location: String = self.json(
            "storage-get",
            &["--format=json", "-s", storage_id, "location"],
        )?;
        Ok(PathBuf::from(location))
    }

    fn network_get(&self, binding: &str) -> Result<NetworkInfo> {
        self.json("network-get", &["--format=json", binding])
    }

    fn open_port(&self, port: u16) -> Result<()> {
        self.run("open-port", &[&format!("{port}/tcp")], None)
            .map(drop)
    }

    fn close_port(&self, port: u16) -> Result<()> {
        self.run("close-port", &[&format!("{port}/tcp")], None)
            .map(drop)
    }
}
