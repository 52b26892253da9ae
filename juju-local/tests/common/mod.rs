//! Shared helpers for the hook-tool conformance suite.
//!
//! Every test builds its own [`Model`]: a fresh model directory under `/tmp`
//! driven through the `juju-local` binary with `--model`, destroyed (with
//! `destroy-model --force`) when the `Model` is dropped. Tests therefore run in
//! parallel without sharing any state.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one `juju-local` command may take before the test gives up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// The fixture charm every test deploys.
pub fn fixture_charm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tool-charm")
}

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code, 0,
            "{what} exited {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// True when some line of stderr is exactly `line`.
    pub fn stderr_has_line(&self, line: &str) -> bool {
        self.stderr.lines().any(|l| l.trim_end() == line)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Asserts `out` exited `code` with `line` as one whole line of its stderr.
#[track_caller]
pub fn assert_fails_with(out: &Out, code: i32, line: &str) {
    assert_eq!(
        out.code, code,
        "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr_has_line(line),
        "expected stderr line {line:?}\n--- stderr\n{}",
        out.stderr
    );
}

/// Asserts `out` exited non-zero and its stderr contains every one of `parts`.
#[track_caller]
pub fn assert_fails_containing(out: &Out, parts: &[&str]) {
    assert_ne!(
        out.code, 0,
        "expected a failure\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout, out.stderr
    );
    for part in parts {
        assert!(
            out.stderr.contains(part),
            "expected stderr to contain {part:?}\n--- stderr\n{}",
            out.stderr
        );
    }
}

/// A juju-local model in its own temporary directory.
pub struct Model {
    /// Holds the parent directory; removed after the model is destroyed.
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Model {
    /// A model that does not exist yet: the first `deploy` creates it.
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("juju-local-conformance-")
            .tempdir_in("/tmp")
            .expect("create a temporary directory under /tmp");
        let dir = tmp.path().join("model");
        Model { _tmp: tmp, dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `juju-local <sub> --model DIR <args...>`.
    pub fn cli(&self, sub: &str, args: &[&str]) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_juju-local"));
        cmd.arg(sub).arg("--model").arg(&self.dir).args(args);
        cmd.env("JUJU_LOCAL_MODEL", &self.dir);
        run_with_timeout(cmd, &format!("juju-local {sub} {args:?}"))
    }

    /// `cli`, asserting exit 0.
    #[track_caller]
    pub fn cli_ok(&self, sub: &str, args: &[&str]) -> Out {
        self.cli(sub, args)
            .ok(&format!("juju-local {sub} {}", args.join(" ")))
    }

    /// Deploys the fixture charm as `app` with `n` units.
    #[track_caller]
    pub fn deploy(&self, app: &str, n: usize) {
        self.deploy_with(app, n, &[]);
    }

    /// Deploys the fixture charm as `app` with `n` units and extra arguments.
    #[track_caller]
    pub fn deploy_with(&self, app: &str, n: usize, extra: &[&str]) {
        let charm = fixture_charm();
        let n = n.to_string();
        let mut args = vec![charm.to_str().unwrap(), app, "-n", &n];
        args.extend_from_slice(extra);
        self.cli_ok("deploy", &args);
    }

    #[track_caller]
    pub fn integrate(&self, a: &str, b: &str) {
        self.cli_ok("integrate", &[a, b]);
    }

    /// Runs `sh -c script` in a hook context of `unit` (`juju-local exec`),
    /// with `extra` exec flags such as `["--relation", "db:2"]`.
    pub fn exec(&self, unit: &str, extra: &[&str], script: &str) -> (i32, String, String) {
        let out = self.exec_out(unit, extra, script);
        (out.code, out.stdout, out.stderr)
    }

    /// `exec`, as an [`Out`].
    pub fn exec_out(&self, unit: &str, extra: &[&str], script: &str) -> Out {
        let mut args = vec!["--unit", unit];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        self.cli("exec", &args)
    }

    /// `exec` with no extra flags, asserting exit 0; returns stdout.
    #[track_caller]
    pub fn sh(&self, unit: &str, script: &str) -> String {
        self.exec_out(unit, &[], script)
            .ok(&format!("exec on {unit}: {script}"))
            .stdout
    }

    /// `sh`, parsing stdout as JSON.
    #[track_caller]
    pub fn sh_json(&self, unit: &str, script: &str) -> Value {
        let out = self.sh(unit, script);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("output of {script:?} on {unit} is not JSON ({e}): {out}"))
    }

    /// `juju-local status --format json`.
    #[track_caller]
    pub fn status(&self) -> Value {
        self.cli_ok("status", &["--format", "json"]).json()
    }

    /// The leader unit of `app`, as `status` reports it.
    #[track_caller]
    pub fn leader(&self, app: &str) -> String {
        let status = self.status();
        let units = status["applications"][app]["units"]
            .as_object()
            .unwrap_or_else(|| panic!("no units for {app} in status: {status}"));
        let leaders: Vec<&String> = units
            .iter()
            .filter(|(_, u)| u["leader"] == Value::Bool(true))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(leaders.len(), 1, "expected one leader of {app}: {status}");
        leaders[0].clone()
    }

    /// A unit of `app` that is not its leader.
    #[track_caller]
    pub fn non_leader(&self, app: &str) -> String {
        let leader = self.leader(app);
        let status = self.status();
        status["applications"][app]["units"]
            .as_object()
            .unwrap()
            .keys()
            .find(|u| **u != leader)
            .unwrap_or_else(|| panic!("{app} has no non-leader unit: {status}"))
            .clone()
    }

    /// The only relation id of `endpoint` as seen from `unit` (`ep:N`).
    #[track_caller]
    pub fn relation_id(&self, unit: &str, endpoint: &str) -> String {
        let ids = self.sh_json(unit, &format!("relation-ids {endpoint} --format=json"));
        let ids = ids.as_array().expect("relation-ids prints a JSON list");
        assert_eq!(
            ids.len(),
            1,
            "expected one {endpoint} relation on {unit}: {ids:?}"
        );
        ids[0]
            .as_str()
            .expect("relation ids are strings")
            .to_string()
    }

    /// The unit's charm directory (`units/<app>-<n>/charm`).
    pub fn charm_dir(&self, unit: &str) -> PathBuf {
        self.dir
            .join("units")
            .join(unit.replace('/', "-"))
            .join("charm")
    }

    /// The dispatch paths the fixture charm recorded on `unit`, in order.
    pub fn dispatch_log(&self, unit: &str) -> Vec<String> {
        std::fs::read_to_string(self.charm_dir(unit).join("dispatch.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `juju-local run <args...> --format json`: the task object of `unit`.
    pub fn run_json(&self, unit: &str, action: &str, params: &[&str]) -> (Out, Value) {
        let mut args = vec![unit, action];
        args.extend_from_slice(params);
        args.extend_from_slice(&["--format", "json"]);
        let out = self.cli("run", &args);
        let task = serde_json::from_str::<Value>(out.stdout.trim())
            .map(|v| v[unit].clone())
            .unwrap_or(Value::Null);
        (out, task)
    }

    /// Runs the fixture's `exec` action with `cmd` (string args), as JSON.
    pub fn run_exec_action(&self, unit: &str, cmd: &str) -> (Out, Value) {
        let param = format!("cmd={cmd}");
        self.run_json(unit, "exec", &[&param, "--string-args"])
    }
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if self.dir.exists() {
            let out = self.cli("destroy-model", &["--force"]);
            if out.code != 0 && !thread::panicking() {
                eprintln!("destroy-model --force exited {}: {}", out.code, out.stderr);
            }
        }
    }
}

fn run_with_timeout(mut cmd: Command, what: &str) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child: Child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = so.read_to_end(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = se.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {COMMAND_TIMEOUT:?}");
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    // A process killed by a signal has no code; report it as 128 + signal.
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    Out {
        code,
        stdout,
        stderr,
    }
}
