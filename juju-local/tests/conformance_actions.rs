//! Hook-tool conformance: action-get, action-set, action-fail, action-log and
//! `run`'s validation of parameters against actions.yaml.
//!
//! The fixture's `exec` action evaluates its `cmd` parameter, so each test
//! runs the tools inside a real action; `params` and `noop` print what
//! `action-get --format=json` gives them.

mod common;

use common::{assert_fails_with, Model};
use regex::Regex;
use serde_json::{json, Value};

fn results(task: &Value) -> &Value {
    &task["results"]
}

#[track_caller]
fn stdout_json(task: &Value) -> Value {
    let s = results(task)["stdout"]
        .as_str()
        .unwrap_or_else(|| panic!("results.stdout: {task}"));
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

// ---------------------------------------------------------------- action-get

#[test]
fn action_get_fills_in_defaults() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let (out, task) = m.run_json("alpha/0", "params", &[]);
    let out = out.ok("run params");
    assert_eq!(task["status"], "completed", "{}", out.stdout);
    assert_eq!(stdout_json(&task), json!({"mode": "fast", "count": 3}));

    let (out, task) = m.run_json(
        "alpha/0",
        "params",
        &["mode=slow", "count=7", "label=x", "nested.level=deep"],
    );
    out.ok("run params with values");
    assert_eq!(
        stdout_json(&task),
        json!({"mode": "slow", "count": 7, "label": "x", "nested": {"level": "deep"}})
    );
}

#[test]
fn action_get_with_no_params_is_an_empty_object() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let (out, task) = m.run_json("alpha/0", "noop", &[]);
    out.ok("run noop");
    assert_eq!(results(&task)["stdout"], json!("{}\n"), "{task}");
}

#[test]
fn action_get_by_key_and_dotted_key() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let (out, task) = m.run_json(
        "alpha/0",
        "exec",
        &[
            "cmd=action-get opts.level; action-get --format=json opts; action-get --format=json",
            "opts.level=deep",
            "--string-args",
        ],
    );
    out.ok("run exec");
    let stdout = results(&task)["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("deep"), "{stdout}");
    let opts: Value = serde_json::from_str(lines.next().unwrap_or("")).unwrap();
    assert_eq!(opts, json!({"level": "deep"}));
    let all: Value = serde_json::from_str(lines.next().unwrap_or("")).unwrap();
    assert_eq!(all["opts"], json!({"level": "deep"}));
    assert!(
        all["cmd"].as_str().unwrap().starts_with("action-get"),
        "{all}"
    );
}

#[test]
fn action_tools_outside_an_action() {
    let m = Model::new();
    m.deploy("alpha", 1);
    for tool in [
        "action-get",
        "action-get --format=json",
        "action-set a=b",
        "action-fail -- nope",
        "action-log -- nope",
    ] {
        let out = m.exec_out("alpha/0", &[], tool);
        assert_fails_with(&out, 1, "ERROR not running an action");
    }
}

#[test]
fn action_environment() {
    let m = Model::new();
    m.deploy("alpha", 2);
    let leader = m.leader("alpha");
    // app/leader resolves to the leader unit.
    let cmd = r#"echo "$JUJU_DISPATCH_PATH|$JUJU_ACTION_NAME|$JUJU_HOOK_NAME|$JUJU_UNIT_NAME"; echo "$JUJU_ACTION_UUID|$JUJU_ACTION_TAG""#;
    let out = m.cli(
        "run",
        &[
            "alpha/leader",
            "exec",
            &format!("cmd={cmd}"),
            "--string-args",
            "--format",
            "json",
        ],
    );
    let out = out.ok("run alpha/leader");
    let v = out.json();
    let task = &v[leader.as_str()];
    assert_eq!(task["status"], "completed", "{v}");
    let id = task["id"]
        .as_str()
        .unwrap_or_else(|| panic!("task id: {v}"));
    assert_eq!(
        results(task)["stdout"],
        json!(format!("actions/exec|exec||{leader}\n{id}|action-{id}\n")),
        "{v}"
    );
    assert_eq!(results(task)["return-code"], json!(0), "{v}");
}

// ---------------------------------------------------------------- action-set

#[test]
fn action_set_nests_splits_and_merges() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let (out, task) = m.run_exec_action(
        "alpha/0",
        "action-set a=1 b.c=x=y num=5 && action-set b.d=2 a=3 deep.er.key=v",
    );
    out.ok("run exec");
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["unit"], "alpha/0", "{task}");
    let id = task["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id is a string: {task}"));
    assert!(id.parse::<u64>().is_ok(), "{task}");
    let r = results(&task);
    assert_eq!(r["a"], json!("3"), "later calls win: {task}");
    assert_eq!(r["b"], json!({"c": "x=y", "d": "2"}), "{task}");
    assert_eq!(r["deep"], json!({"er": {"key": "v"}}), "{task}");
    assert_eq!(r["num"], json!("5"), "values are strings: {task}");
    assert_eq!(r["return-code"], json!(0), "{task}");

    // Plain output: the results as YAML on stdout.
    let out = m
        .cli(
            "run",
            &[
                "alpha/0",
                "exec",
                "cmd=action-set greeting=hi",
                "--string-args",
            ],
        )
        .ok("run exec (plain)");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("plain results are YAML ({e}): {}", out.stdout));
    assert_eq!(
        serde_json::to_value(yaml).unwrap(),
        json!({"greeting": "hi"}),
        "plain output omits return-code/stdout/stderr"
    );
}

#[test]
fn action_set_rejects_bad_and_reserved_keys() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let (out, task) = m.run_exec_action(
        "alpha/0",
        r#"action-set Bad=1; echo "rc=$?"; action-set ok.Seg=1; echo "rc=$?"; action-set lead-=1; echo "rc=$?"; action-set good=1"#,
    );
    out.ok("run exec");
    let r = results(&task);
    assert_eq!(r["stdout"], json!("rc=2\nrc=2\nrc=2\n"), "{task}");
    let stderr = r["stderr"].as_str().unwrap_or_default();
    assert!(
        stderr.lines().any(|l| l
            == r#"ERROR key "Bad" must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"#),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains(
                "must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"
            ))
            .count()
            >= 2,
        "{stderr}"
    );
    assert_eq!(r["good"], json!("1"));
    assert!(r.get("Bad").is_none() && r.get("ok").is_none(), "{task}");

    for key in ["stdout", "stdout-encoding", "stderr", "stderr-encoding"] {
        let (out, task) =
            m.run_exec_action("alpha/0", &format!(r#"action-set {key}=x; echo "rc=$?""#));
        out.ok("run exec");
        let r = results(&task);
        assert_eq!(r["stdout"], json!("rc=2\n"), "{key}: {task}");
        let stderr = r["stderr"].as_str().unwrap_or_default();
        let want = format!(r#"ERROR cannot set reserved action key "{key}""#);
        assert!(stderr.lines().any(|l| l == want), "{key}: {stderr}");
    }
}

// --------------------------------------------------------------- action-fail

#[test]
fn action_fail_default_and_last_message() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let (_, task) = m.run_exec_action("alpha/0", "action-fail");
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(
        task["message"],
        json!("action failed without reason given, check action for errors"),
        "{task}"
    );
    assert_eq!(results(&task)["return-code"], json!(0), "{task}");

    let (_, task) = m.run_exec_action(
        "alpha/0",
        "action-fail -- first; action-set partial=yes; action-fail -- second",
    );
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["message"], json!("second"), "{task}");
    assert_eq!(results(&task)["partial"], json!("yes"), "{task}");

    // Plain output announces the failure.
    let out = m.cli(
        "run",
        &[
            "alpha/0",
            "exec",
            "cmd=action-fail -- plain-boom",
            "--string-args",
        ],
    );
    let re = Regex::new(r"(?m)^Action id \d+ failed: plain-boom$").unwrap();
    assert!(
        re.is_match(&out.stdout) || re.is_match(&out.stderr),
        "expected `Action id N failed: plain-boom`\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn buffered_writes_survive_action_fail_but_not_a_failed_exit() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let peers = m.relation_id("alpha/0", "peers");

    let (_, task) = m.run_exec_action(
        "alpha/0",
        &format!("relation-set -r {peers} kept=yes && state-set kept=yes && action-fail -- soft"),
    );
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["message"], json!("soft"), "{task}");
    assert_eq!(
        m.sh("alpha/0", &format!("relation-get -r {peers} kept alpha/0")),
        "yes\n"
    );
    assert_eq!(m.sh("alpha/0", "state-get kept"), "yes\n");

    let (out, task) = m.run_exec_action(
        "alpha/0",
        &format!("relation-set -r {peers} dropped=yes && state-set dropped=yes; exit 1"),
    );
    assert_eq!(
        out.code, 1,
        "a non-zero return code fails `run`: {}",
        out.stderr
    );
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["message"], json!("exit status 1"), "{task}");
    assert_eq!(results(&task)["return-code"], json!(1), "{task}");
    assert_eq!(
        m.sh(
            "alpha/0",
            &format!("relation-get --format=json -r {peers} dropped alpha/0")
        ),
        "null\n"
    );
    assert!(
        !m.sh_json("alpha/0", "state-get --format=json")
            .as_object()
            .unwrap()
            .contains_key("dropped"),
        "state-set of a failed action was kept"
    );

    // Plain output of a non-zero return code.
    let out = m.cli("run", &["alpha/0", "exec", "cmd=exit 1", "--string-args"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr_has_line("ERROR the following task failed:"),
        "{}",
        out.stderr
    );
    let re = Regex::new(r#"(?m)^ - id "\d+" with return code 1$"#).unwrap();
    assert!(re.is_match(&out.stderr), "{}", out.stderr);
}

// ---------------------------------------------------------------- action-log

#[test]
fn action_log_is_streamed_to_runs_stderr() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let out = m
        .cli(
            "run",
            &[
                "alpha/0",
                "exec",
                "cmd=action-log -- hello from the action; action-log second line",
                "--string-args",
            ],
        )
        .ok("run exec");
    let re = Regex::new(r"(?m)^\d{2}:\d{2}:\d{2} hello from the action$").unwrap();
    assert!(re.is_match(&out.stderr), "{}", out.stderr);
    let re = Regex::new(r"(?m)^\d{2}:\d{2}:\d{2} second line$").unwrap();
    assert!(re.is_match(&out.stderr), "{}", out.stderr);
    let first = out.stderr.find("hello from the action").unwrap();
    let second = out.stderr.find("second line").unwrap();
    assert!(first < second, "{}", out.stderr);
    assert!(
        out.stderr.contains("Running operation "),
        "progress on stderr: {}",
        out.stderr
    );
    // The task keeps the log.
    let (_, task) = m.run_exec_action("alpha/0", "action-log -- kept in the task log");
    let log = task["log"]
        .as_array()
        .unwrap_or_else(|| panic!("log is a list: {task}"));
    assert!(
        log.iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.ends_with("kept in the task log"))),
        "{task}"
    );
}

// ------------------------------------------------ parameter validation by run

fn actions_ran(m: &Model) -> Vec<String> {
    m.dispatch_log("alpha/0")
        .into_iter()
        .filter(|h| h.starts_with("actions/"))
        .collect()
}

#[track_caller]
fn assert_rejected(m: &Model, action: &str, params: &[&str]) {
    let before = actions_ran(m);
    let mut args = vec!["alpha/0", action];
    args.extend_from_slice(params);
    let out = m.cli("run", &args);
    assert_ne!(
        out.code, 0,
        "run {action} {params:?} was accepted\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("validation failed"),
        "run {action} {params:?}: {}",
        out.stderr
    );
    let ran = actions_ran(m);
    assert_eq!(ran, before, "the charm ran the rejected action");
}

#[test]
fn run_validates_params_before_the_charm_runs() {
    let m = Model::new();
    m.deploy("alpha", 1);
    assert_rejected(&m, "params", &["mode=bogus"]);
    assert_rejected(&m, "params", &["unknown-key=1"]);
    assert_rejected(&m, "params", &["count=many"]);
    assert_rejected(&m, "params", &["count=0"]);
    assert_rejected(&m, "exec", &[]);
    assert_rejected(&m, "noop", &["anything=1"]);
    // Values are YAML: 5 is an integer, not the string a nested property wants.
    assert_rejected(&m, "params", &["nested.level=5"]);

    assert!(actions_ran(&m).is_empty());

    // The control: valid params run the charm.
    m.cli_ok("run", &["alpha/0", "params", "mode=slow"]);
    assert_eq!(
        m.dispatch_log("alpha/0")
            .iter()
            .filter(|h| h.starts_with("actions/"))
            .collect::<Vec<_>>(),
        vec!["actions/params"]
    );
}

#[test]
fn run_takes_params_from_a_file_and_values_as_yaml() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let file = m.dir().with_file_name("params.yaml");
    std::fs::write(&file, "mode: slow\nnested:\n  level: \"5\"\n").unwrap();
    let (out, task) = m.run_json(
        "alpha/0",
        "params",
        &["--params", file.to_str().unwrap(), "count=12"],
    );
    out.ok("run params --params FILE");
    assert_eq!(
        stdout_json(&task),
        json!({"mode": "slow", "count": 12, "nested": {"level": "5"}})
    );
    // --string-args keeps "12" a string, which the schema refuses.
    assert_rejected(&m, "params", &["count=12", "--string-args"]);
}
