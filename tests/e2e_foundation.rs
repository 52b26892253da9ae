//! End to end: the packed charm under juju-local. Hooks arrive in Juju's
//! order, leadership moves when the leader's unit goes, actions reach the
//! charm through dispatch with schema-filled params, bad params never do,
//! and the system users' passwords live in one secret every unit reads.

mod support;

use serde_json::Value;
use support::Model;

const DEPLOY_ORDER: [&str; 6] = [
    "pgdata-storage-attached",
    "install",
    "database-peers-relation-created",
    "LEADERSHIP",
    "config-changed",
    "start",
];

fn leader_of(status: &Value) -> Vec<String> {
    let units = status["applications"]["postgresql"]["units"]
        .as_object()
        .unwrap();
    units
        .iter()
        .filter(|(_, u)| u["leader"] == Value::Bool(true))
        .map(|(n, _)| n.clone())
        .collect()
}

fn completed(task: &Value) -> &Value {
    assert_eq!(task["status"], "completed", "{task:#}");
    &task["results"]
}

#[test]
fn a_three_unit_deploy_runs_the_charm_as_juju_would() {
    let model = Model::new();
    let charm = support::build().charm.to_str().unwrap();
    model.ok(&["deploy", charm, "-n", "3"]);

    // Each unit ran the deploy hooks in Juju's order, then met its peers.
    for (n, leadership) in [
        (0, "leader-elected"),
        (1, "leader-settings-changed"),
        (2, "leader-settings-changed"),
    ] {
        let unit = format!("postgresql/{n}");
        let ran = model.ran(&unit);
        let want: Vec<&str> = DEPLOY_ORDER
            .iter()
            .map(|h| if *h == "LEADERSHIP" { leadership } else { h })
            .collect();
        assert_eq!(&ran[..6], &want[..], "{unit} ran {ran:?}");
        // Juju follows each -joined with -changed for the same remote unit.
        let peers_met: Vec<usize> = (6..ran.len())
            .filter(|&i| ran[i] == "database-peers-relation-joined")
            .collect();
        assert_eq!(peers_met.len(), 2, "{unit} should meet two peers: {ran:?}");
        for i in peers_met {
            assert_eq!(
                ran.get(i + 1).map(String::as_str),
                Some("database-peers-relation-changed")
            );
        }
    }

    // Three units, one leader, each saying what it runs.
    let status = model.status();
    let units = status["applications"]["postgresql"]["units"]
        .as_object()
        .unwrap();
    assert_eq!(units.len(), 3, "{status:#}");
    assert_eq!(leader_of(&status), ["postgresql/0"]);
    for (name, unit) in units {
        assert_eq!(unit["workload-status"]["current"], "active", "{unit:#}");
        let want = if name == "postgresql/0" {
            "Primary"
        } else {
            "Replica, streaming"
        };
        assert_eq!(unit["workload-status"]["message"], want, "{unit:#}");
    }

    // get-password reaches the charm with the schema's default user filled in
    // (the charm refuses params without it), and every unit reads one secret.
    let operator = completed(&model.run_action("postgresql/leader", "get-password", &[]))
        ["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(operator.len(), 32);
    let from_replica = model.run_action("postgresql/2", "get-password", &["username=operator"]);
    assert_eq!(completed(&from_replica)["password"], operator.as_str());
    let replication = model.run_action("postgresql/1", "get-password", &["username=replication"]);
    assert_ne!(completed(&replication)["password"], operator.as_str());

    // The charm logged through juju-log, each line naming its hook, and no
    // password reached the log.
    let log = model.debug_log();
    let logged = log
        .lines()
        .find(|l| l.contains("generated the system users' passwords"));
    assert!(logged.is_some_and(|l| l.contains("juju-log [")), "{log}");
    assert!(
        !log.contains(&operator),
        "a password leaked into the debug log"
    );

    // Bad params are refused before the charm runs.
    let actions_before = model.ran("postgresql/0").len();
    for params in [
        &["username=postgres"][..],
        &["frobnicate=1"],
        &["username=5"],
    ] {
        let mut args = vec!["run", "postgresql/leader", "get-password"];
        args.extend_from_slice(params);
        let out = model.juju(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{params:?} was accepted");
        assert!(stderr.contains("validation failed"), "{params:?}: {stderr}");
    }
    let out = model.juju(&["run", "postgresql/leader", "set-password"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("validation failed"));
    assert_eq!(
        model.ran("postgresql/0").len(),
        actions_before,
        "the charm ran a refused action"
    );

    // set-password is the leader's; a non-leader says so and changes nothing.
    let refused = model.run_action(
        "postgresql/1",
        "set-password",
        &["username=operator", "password=abc"],
    );
    assert_eq!(refused["status"], "failed", "{refused:#}");
    assert_eq!(
        refused["message"],
        "The action can be run only on leader unit."
    );

    // Removing the leader's unit elects another, which can change passwords.
    model.ok(&["remove-unit", "postgresql/0"]);
    let status = model.status();
    assert_eq!(
        status["applications"]["postgresql"]["units"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(leader_of(&status), ["postgresql/1"]);
    assert_eq!(
        model
            .ran("postgresql/1")
            .iter()
            .filter(|h| *h == "leader-elected")
            .count(),
        1
    );
    let new = completed(&model.run_action(
        "postgresql/leader",
        "set-password",
        &["username=operator", "password=a-new-password-for-operator"],
    ))["password"]
        .clone();
    assert_eq!(new, "a-new-password-for-operator");
    let seen = model.run_action("postgresql/2", "get-password", &[]);
    assert_eq!(completed(&seen)["password"], new);
}

#[test]
fn backup_actions_check_their_params_and_say_what_is_missing() {
    let model = Model::new();
    model.ok(&["deploy", support::build().charm.to_str().unwrap()]);

    let task = model.run_action("postgresql/0", "create-backup", &[]);
    assert_eq!(task["status"], "failed");
    assert_eq!(
        task["message"],
        "Relation with s3-integrator charm missing, cannot create/restore backup."
    );

    let task = model.run_action("postgresql/0", "restore", &[]);
    assert_eq!(task["status"], "failed");
    assert_eq!(
        task["message"],
        "Either backup-id or restore-to-time parameters need to be provided to be able to do restore"
    );
}
