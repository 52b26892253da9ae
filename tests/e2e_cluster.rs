//! End to end: a real replicated PostgreSQL cluster under juju-local, run
//! by the packed charm's hooks. Rows reach every replica; passwords change
//! without a plain text anywhere and without breaking replication; units
//! come and go; removing the primary's unit promotes a replica and loses
//! no committed row.

mod support;

use postgresql_charm::postgres::binaries;
use postgresql_charm::postgres::os_user::ServerUser;
use postgresql_charm::postgres::server::{Layout, Server};
use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::{address, eventually, Model};

fn password(model: &Model, user: &str) -> String {
    let task = model.run_action(
        "postgresql/leader",
        "get-password",
        &[&format!("username={user}")],
    );
    assert_eq!(task["status"], "completed", "{task:#}");
    task["results"]["password"].as_str().unwrap().to_owned()
}

fn primary(model: &Model) -> String {
    let task = model.run_action("postgresql/leader", "get-primary", &[]);
    assert_eq!(task["status"], "completed", "{task:#}");
    task["results"]["primary"].as_str().unwrap().to_owned()
}

fn connect(model: &Model, unit: &str, operator: &str) -> Db {
    Db::remote(address(model, unit), "operator", operator).unwrap()
}

fn count(db: &Db) -> i64 {
    db.query_i64("SELECT count(*) FROM rows").unwrap()
}

/// The rows in `rows` on a replica, once it has replayed the table's
/// creation (until then the query fails).
fn replayed(db: &Db) -> Option<i64> {
    db.query_i64("SELECT count(*) FROM rows").ok()
}

fn units(model: &Model) -> Vec<(String, Value)> {
    let status = model.status();
    let units = status["applications"]["postgresql"]["units"]
        .as_object()
        .unwrap();
    units.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn assert_healthy(model: &Model, expected_units: usize) {
    let units = units(model);
    assert_eq!(units.len(), expected_units);
    let messages: Vec<String> = units
        .iter()
        .map(|(_, u)| {
            assert_eq!(u["workload-status"]["current"], "active", "{u:#}");
            u["workload-status"]["message"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        messages.iter().filter(|m| *m == "Primary").count(),
        1,
        "{messages:?}"
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| *m == "Replica, streaming")
            .count(),
        expected_units - 1,
        "{messages:?}"
    );
}

#[test]
fn a_cluster_replicates_changes_passwords_and_survives_its_primary_leaving() {
    let model = Model::new();
    model.ok(&[
        "deploy",
        support::build().charm.to_str().unwrap(),
        "-n",
        "3",
    ]);
    assert_healthy(&model, 3);
    assert_eq!(primary(&model), "postgresql/0");

    // A row written on the primary is read on both replicas.
    let operator = password(&model, "operator");
    let db = connect(&model, "postgresql/0", &operator);
    db.execute(
        "CREATE TABLE rows (id int PRIMARY KEY); INSERT INTO rows SELECT generate_series(1, 1000)",
    )
    .unwrap();
    for replica in ["postgresql/1", "postgresql/2"] {
        let rdb = connect(&model, replica, &operator);
        eventually(&format!("{replica} has the rows"), || {
            replayed(&rdb) == Some(1000)
        });
    }
    let streaming = db
        .replication()
        .unwrap()
        .iter()
        .filter(|r| r.state == "streaming")
        .count();
    assert_eq!(streaming, 2, "pg_stat_replication on the primary");

    // set-password: the new password works and the old one is refused.
    let task = model.run_action("postgresql/leader", "set-password", &["username=operator"]);
    assert_eq!(task["status"], "completed", "{task:#}");
    let new_operator = password(&model, "operator");
    assert_ne!(new_operator, operator);
    assert_eq!(task["results"]["password"], new_operator.as_str());
    let refused = Db::remote(address(&model, "postgresql/0"), "operator", &operator).err();
    assert!(refused.is_some(), "the old operator password still works");
    let db = connect(&model, "postgresql/0", &new_operator);

    // A new replication password: replicas reconnect with it and stream.
    let old_replication = password(&model, "replication");
    let task = model.run_action(
        "postgresql/leader",
        "set-password",
        &["username=replication"],
    );
    assert_eq!(task["status"], "completed", "{task:#}");
    for replica in ["postgresql/1", "postgresql/2"] {
        // Force a reconnection: it can only succeed with the new password.
        connect(&model, replica, &new_operator)
            .restart_wal_receiver()
            .unwrap();
    }
    db.execute("INSERT INTO rows SELECT generate_series(1001, 2000)")
        .unwrap();
    eventually(
        "both replicas stream again after the password change",
        || {
            db.replication()
                .unwrap()
                .iter()
                .filter(|r| r.state == "streaming")
                .count()
                == 2
        },
    );

    // Bad requests fail clearly and change nothing.
    let task = model.run_action("postgresql/1", "set-password", &["username=operator"]);
    assert_eq!(
        task["message"],
        "The action can be run only on leader unit."
    );
    let task = model.run_action(
        "postgresql/leader",
        "set-password",
        &["username=operator", "password=\"\""],
    );
    assert_eq!(task["status"], "failed");
    assert!(
        task["message"].as_str().unwrap().contains("empty"),
        "{task:#}"
    );
    assert_eq!(password(&model, "operator"), new_operator);

    // No password in the debug log or in any server's log.
    let new_replication = password(&model, "replication");
    let mut logs = model.debug_log();
    for entry in walk(&model.dir().join("model/units")) {
        if entry.to_string_lossy().contains("/logs/") {
            logs.push_str(&std::fs::read_to_string(&entry).unwrap_or_default());
        }
    }
    for secret in [&operator, &new_operator, &old_replication, &new_replication] {
        assert!(!logs.contains(secret.as_str()), "a password is in a log");
    }

    // A fourth unit becomes a streaming replica with every row.
    model.ok(&["add-unit", "postgresql"]);
    assert_healthy(&model, 4);
    let fourth = connect(&model, "postgresql/3", &new_operator);
    eventually("the new replica has every row", || {
        replayed(&fourth) == Some(2000)
    });

    // Removing a replica drops its slot.
    assert!(db.slots().unwrap().contains(&"postgresql_3".to_owned()));
    model.ok(&["remove-unit", "postgresql/3"]);
    assert_healthy(&model, 3);
    assert!(
        !db.slots().unwrap().contains(&"postgresql_3".to_owned()),
        "{:?}",
        db.slots()
    );

    // Removing the primary's unit promotes a replica, with every row.
    db.execute("INSERT INTO rows SELECT generate_series(2001, 3000)")
        .unwrap();
    drop(db);
    model.ok(&["remove-unit", "postgresql/0"]);
    let new_primary = primary(&model);
    assert_ne!(new_primary, "postgresql/0");
    assert_healthy(&model, 2);
    let db = connect(&model, &new_primary, &new_operator);
    assert_eq!(count(&db), 3000, "a committed row was lost in the failover");
    db.execute("INSERT INTO rows SELECT generate_series(3001, 3500)")
        .unwrap();
    let other = if new_primary == "postgresql/1" {
        "postgresql/2"
    } else {
        "postgresql/1"
    };
    let rdb = connect(&model, other, &new_operator);
    eventually("the remaining replica follows the new primary", || {
        count(&rdb) == 3500
    });

    // update-status brings a stopped server back.
    server_of(&model, other).stop().unwrap();
    assert!(Db::remote(address(&model, other), "operator", &new_operator).is_err());
    model.ok(&["run-hook", other, "update-status"]);
    let rdb = connect(&model, other, &new_operator);
    eventually("the restarted replica streams again", || {
        count(&rdb) == 3500
    });
    assert_healthy(&model, 2);

    // A leader change alone does not move the primary.
    model.ok(&["add-unit", "postgresql"]);
    let leader = leader(&model);
    // (The leader elected the most advanced replica, itself not preferred.)
    assert_ne!(leader, new_primary, "the leader is a replica here");
    model.ok(&["remove-unit", &leader]);
    assert_ne!(self::leader(&model), leader);
    assert_eq!(
        primary(&model),
        new_primary,
        "the primary moved with the leadership"
    );
    assert_healthy(&model, 2);
}

fn leader(model: &Model) -> String {
    units(model)
        .into_iter()
        .find(|(_, u)| u["leader"] == Value::Bool(true))
        .map(|(name, _)| name)
        .expect("a leader")
}

/// The server of a unit, driven directly (as an operator's mistake would).
fn server_of(model: &Model, unit: &str) -> Server {
    let storage = model
        .dir()
        .join("model/units")
        .join(unit.replace('/', "-"))
        .join("storage");
    let dir = std::fs::read_dir(&storage)
        .unwrap()
        .flatten()
        .next()
        .expect("a storage")
        .path();
    let bin = binaries::find().unwrap().unwrap();
    Server::new(bin, Layout::new(dir), ServerUser::detect().unwrap())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
