//! End-to-end lifecycle of a tiny shell-script charm under juju-local: the
//! hook order of `deploy -n 3` as debug-log shows it, leader re-election when
//! the leader's unit is removed, and an action whose schema default reaches
//! the charm.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Model {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Model {
    fn new() -> (Model, PathBuf) {
        let tmp = tempfile::Builder::new()
            .prefix("juju-local-lifecycle-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let charm = tmp.path().join("charm");
        write_charm(&charm);
        let dir = tmp.path().join("model");
        (Model { _tmp: tmp, dir }, charm)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_juju-local"))
            .arg("--model")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run juju-local")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `(unit, hook)` of every hook run, in order, from debug-log.
    fn hooks(&self) -> Vec<(String, String)> {
        self.ok(&["debug-log", "--replay"])
            .lines()
            .filter(|l| l.contains("juju.worker.uniter.operation ran \""))
            .filter(|l| l.ends_with("(via hook dispatching script: dispatch)"))
            .map(|l| {
                let unit = l.split(':').next().unwrap_or_default().to_string();
                let hook = l.split('"').nth(1).unwrap_or_default().to_string();
                (unit, hook)
            })
            .collect()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let _ = self.run(&["destroy-model", "--force"]);
    }
}

fn write_charm(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("metadata.yaml"),
        "name: tiny\npeers:\n  peers:\n    interface: tiny_peers\nstorage:\n  data:\n    type: filesystem\n",
    )
    .unwrap();
    fs::write(
        dir.join("actions.yaml"),
        "greet:\n  params:\n    word:\n      type: string\n      default: hello\n  additionalProperties: false\n",
    )
    .unwrap();
    fs::write(
        dir.join("config.yaml"),
        "options:\n  mode:\n    type: string\n    default: a\n",
    )
    .unwrap();
    let dispatch = dir.join("dispatch");
    fs::write(
        &dispatch,
        "#!/bin/sh\ncase \"$JUJU_DISPATCH_PATH\" in\n  actions/greet) action-set said=\"$(action-get word)\" leader=\"$(is-leader)\";;\nesac\n",
    )
    .unwrap();
    fs::set_permissions(&dispatch, fs::Permissions::from_mode(0o755)).unwrap();
}

fn of(hooks: &[(String, String)], unit: &str) -> Vec<String> {
    hooks
        .iter()
        .filter(|(u, _)| u == unit)
        .map(|(_, h)| h.clone())
        .collect()
}

#[test]
fn deploy_three_units_runs_hooks_in_juju_order() {
    let (m, charm) = Model::new();
    m.ok(&["deploy", charm.to_str().unwrap(), "-n", "3"]);
    let hooks = m.hooks();
    let setup = |lead: &str| {
        vec![
            "data-storage-attached".to_string(),
            "install".into(),
            "peers-relation-created".into(),
            lead.into(),
            "config-changed".into(),
            "start".into(),
        ]
    };
    for (unit, lead) in [
        ("unit-tiny-0", "leader-elected"),
        ("unit-tiny-1", "leader-settings-changed"),
        ("unit-tiny-2", "leader-settings-changed"),
    ] {
        let got = of(&hooks, unit);
        assert_eq!(got[..6], setup(lead)[..], "{unit}: {got:?}");
        // Then joined followed by changed for each of the two other units.
        assert_eq!(
            got[6..],
            [
                "peers-relation-joined",
                "peers-relation-changed",
                "peers-relation-joined",
                "peers-relation-changed"
            ],
            "{unit}: {got:?}"
        );
    }
    // Every unit has started before any relation joins.
    let first_join = hooks
        .iter()
        .position(|(_, h)| h.ends_with("-joined"))
        .unwrap();
    let last_start = hooks.iter().rposition(|(_, h)| h == "start").unwrap();
    assert!(last_start < first_join, "{hooks:?}");
}

#[test]
fn removing_the_leader_elects_the_lowest_remaining_unit() {
    let (m, charm) = Model::new();
    m.ok(&["deploy", charm.to_str().unwrap(), "-n", "3"]);
    let before = m.hooks().len();
    m.ok(&["remove-unit", "tiny/0"]);
    let after: Vec<(String, String)> = m.hooks().into_iter().skip(before).collect();
    let names: Vec<String> = after.iter().map(|(u, h)| format!("{u} {h}")).collect();
    let pos = |s: &str| {
        names
            .iter()
            .position(|n| n == s)
            .unwrap_or_else(|| panic!("{s} not in {names:?}"))
    };
    assert!(pos("unit-tiny-1 peers-relation-departed") < pos("unit-tiny-0 stop"));
    assert!(pos("unit-tiny-0 stop") < pos("unit-tiny-0 peers-relation-broken"));
    assert!(pos("unit-tiny-0 peers-relation-broken") < pos("unit-tiny-0 data-storage-detaching"));
    assert!(pos("unit-tiny-0 data-storage-detaching") < pos("unit-tiny-0 remove"));
    assert!(pos("unit-tiny-0 remove") < pos("unit-tiny-1 leader-elected"));
    assert!(!names.contains(&"unit-tiny-2 leader-elected".to_string()));

    let status: serde_json::Value =
        serde_json::from_str(&m.ok(&["status", "--format", "json"])).unwrap();
    let units = &status["applications"]["tiny"]["units"];
    assert!(units.get("tiny/0").is_none(), "{units}");
    assert_eq!(units["tiny/1"]["leader"], true);
    assert!(!m.dir.join("units/tiny-0").exists());
}

#[test]
fn action_defaults_reach_the_charm() {
    let (m, charm) = Model::new();
    m.ok(&["deploy", charm.to_str().unwrap(), "-n", "2"]);
    let out = m.ok(&["run", "tiny/leader", "greet"]);
    assert!(out.contains("said: hello"), "{out}");
    assert!(
        out.contains("leader: \"True\"") || out.contains("leader: 'True'"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&m.ok(&["run", "tiny/1", "greet", "word=bye", "--format", "json"]))
            .unwrap();
    assert_eq!(json["tiny/1"]["results"]["said"], "bye");
    assert_eq!(json["tiny/1"]["results"]["leader"], "False");
    assert_eq!(json["tiny/1"]["status"], "completed");

    let bad = m.run(&["run", "tiny/0", "greet", "nope=1"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(
            "ERROR validation failed: (root) : additional property \"nope\" is not allowed"
        ),
        "{err}"
    );
}
