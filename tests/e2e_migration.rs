//! End to end: moving a cluster to another model by restoring its backup
//! (seed 001), under juju-local with real PostgreSQL servers and one S3
//! server. The new model points its s3-integrator at the old model's bucket
//! and path: list-backups shows the old cluster's backups, restore brings
//! one back with the data as it was at the backup's end, and the new cluster
//! then takes writes with its own passwords (the old ones are refused),
//! archives into its own repository and backs up there, while the old
//! cluster's repository is only read. A third cluster whose repository
//! name is the old one's (the same application name in a model of the same
//! name) may restore from it only when told to take that repository over.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::{address, backup, password, settled, Model};

/// The old model's S3 server: where it serves from, and how to reach it.
struct S3 {
    dir: PathBuf,
    endpoint: String,
    access_key: String,
    secret_key: String,
}

fn s3_of(model: &Model) -> S3 {
    let state: Value =
        serde_json::from_slice(&std::fs::read(model.dir().join("model/model.json")).unwrap())
            .unwrap();
    let server = &state["s3_server"];
    let text = |key: &str| server[key].as_str().unwrap().to_owned();
    S3 {
        dir: PathBuf::from(text("dir")),
        endpoint: text("endpoint"),
        access_key: text("access_key"),
        secret_key: text("secret_key"),
    }
}

/// One unit of the charm, and an s3-integrator: juju-local's own S3 server
/// when `s3` is None, else that server, with its keys.
fn deploy(model: &Model, s3: Option<&S3>) {
    let started = Instant::now();
    model.ok(&[
        "deploy",
        support::build().charm.to_str().unwrap(),
        "--config",
        "profile=testing",
    ]);
    match s3 {
        None => {
            model.ok(&["deploy", "s3-integrator"]);
        }
        Some(s3) => {
            model.ok(&[
                "deploy",
                "s3-integrator",
                "--config",
                &format!("endpoint={}", s3.endpoint),
                "--config",
                "bucket=juju-local",
                "--config",
                "region=us-east-1",
                "--config",
                "s3-uri-style=path",
            ]);
            model.ok(&[
                "run",
                "s3-integrator/leader",
                "sync-s3-credentials",
                &format!("access-key={}", s3.access_key),
                &format!("secret-key={}", s3.secret_key),
            ]);
        }
    }
    model.ok(&["integrate", "postgresql:s3-parameters", "s3-integrator"]);
    eprintln!("deploy: {:?}", started.elapsed());
}

/// Every object under `dir` with its content's length and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(path, (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    out
}

/// The owner record of a repository, as stored.
fn owner_of(repository: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(repository.join("repository.json")).unwrap()).unwrap()
}

fn model_uuid(model: &Model) -> String {
    model.status()["model"]["model-uuid"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn list_backups(model: &Model) -> String {
    let task = model.run_action("postgresql/0", "list-backups", &[]);
    assert_eq!(task["status"], "completed", "{task:#}");
    task["results"]["backups"].as_str().unwrap().to_owned()
}

/// A checksum of every row of `t`.
fn checksum(db: &Db) -> String {
    db.query_text(
        "SELECT count(*) || ':' || md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t",
    )
    .unwrap()
}

#[test]
fn a_second_model_restores_the_first_models_backup_with_its_own_passwords() {
    // The old cluster, with data, a full backup, and rows written after it.
    let old = &Model::new();
    deploy(old, None);
    settled(old, "postgresql", 1, Duration::from_secs(60));
    let old_operator = password(old, "postgresql");
    let old_db = Db::remote(address(old, "postgresql/0"), "operator", &old_operator).unwrap();
    old_db
        .execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g;",
        )
        .unwrap();
    let at_backup = checksum(&old_db);
    let id = backup(old, "postgresql/0", "full");
    old_db
        .execute("INSERT INTO t SELECT g, 'after' FROM generate_series(5001, 5100) g")
        .unwrap();
    let s3 = s3_of(old);
    let old_repository = s3.dir.join("juju-local/local.postgresql");
    let old_owner = owner_of(&old_repository);

    // The new cluster, in a model of another name, on the same bucket and path.
    let new = &Model::named("recovery");
    deploy(new, Some(&s3));
    settled(new, "postgresql", 1, Duration::from_secs(60));
    let new_operator = password(new, "postgresql");
    assert_ne!(new_operator, old_operator);
    let new_repository = s3.dir.join("juju-local/recovery.postgresql");
    assert_eq!(owner_of(&new_repository)["model-uuid"], model_uuid(new));

    // A backup and a restore of its own first: its repository then has a
    // timeline 2 the old one does not know, and the timeline the migration
    // creates must be new in both.
    let own_backup = backup(new, "postgresql/0", "full");
    let task = new.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={own_backup}")],
    );
    assert_eq!(task["results"]["timeline"], "2", "{task:#}");
    settled(new, "postgresql", 1, Duration::from_secs(60));

    // It lists the old cluster's backups, below its own.
    let table = list_backups(new);
    assert!(
        table.contains("Backups of other clusters under /")
            && table.contains("  local.postgresql: postgresql in model "),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{table}"));
    assert!(
        row.ends_with(&format!("/local.postgresql/backups/{id}")),
        "{row}"
    );

    // Restored by the backup's id alone.
    let before = snapshot(&old_repository);
    let started = Instant::now();
    let task = new.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={id}")],
    );
    eprintln!("restore: {:?}", started.elapsed());
    assert_eq!(task["status"], "completed", "{task:#}");
    let results = &task["results"];
    assert_eq!(results["restore-status"], "restored", "{task:#}");
    assert_eq!(results["backup-id"], format!("local.postgresql/{id}"));
    let timeline: u32 = results["timeline"].as_str().unwrap().parse().unwrap();
    assert_eq!(timeline, 3, "{task:#}");

    // The data as it was at the backup's end, writable, with the new
    // cluster's password; the old cluster's password is refused.
    let new_db = Db::remote(address(new, "postgresql/0"), "operator", &new_operator).unwrap();
    assert_eq!(checksum(&new_db), at_backup);
    new_db
        .execute("INSERT INTO t VALUES (9999, 'new')")
        .unwrap();
    let refused = Db::remote(address(new, "postgresql/0"), "operator", &old_operator)
        .err()
        .expect("the old cluster's operator password must not work");
    assert!(
        format!("{refused:#}").contains("password authentication failed"),
        "{refused:#}"
    );
    settled(new, "postgresql", 1, Duration::from_secs(60));

    // It archives into its own repository and backs up there; the new
    // timeline is its own, and the repository keeps its owner, now with the
    // restored system identifier.
    new_db.execute("SELECT pg_switch_wal()").unwrap();
    let history = format!("{timeline:08X}.history");
    support::eventually("the new timeline's history archived", || {
        std::fs::read_dir(new_repository.join("wal"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&history))
    });
    let owner = owner_of(&new_repository);
    assert_eq!(owner["model-uuid"], model_uuid(new));
    assert_eq!(owner["system-identifier"], old_owner["system-identifier"]);
    let new_backup = backup(new, "postgresql/0", "full");
    let table = list_backups(new);
    let own_part = table.split("Backups of other clusters").next().unwrap();
    let restore_row: Vec<&str> = own_part
        .lines()
        .find(|l| l.contains(&format!("local.postgresql/{id}")))
        .unwrap_or_else(|| panic!("no restore row:\n{table}"))
        .split(" | ")
        .map(str::trim)
        .collect();
    assert_eq!(
        restore_row[1..4],
        ["restore", "finished", &format!("local.postgresql/{id}")]
    );
    assert!(
        own_part.contains(&format!("/recovery.postgresql/backups/{new_backup}")),
        "{table}"
    );

    // The old repository was only read: its objects are as they were, but
    // for what the old cluster archived itself since (new WAL objects).
    let after = snapshot(&old_repository);
    for (path, was) in &before {
        assert_eq!(after.get(path), Some(was), "{} changed", path.display());
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        let name = path.to_string_lossy();
        assert!(
            name.contains("/wal/00000001") && !name.contains(".history"),
            "the old repository gained {name}"
        );
    }
    assert_eq!(owner_of(&old_repository), old_owner);

    // A cluster whose repository would be the old one's (postgresql in a
    // model also named local) is refused until told to take it over.
    let heir = &Model::new();
    deploy(heir, Some(&s3));
    let task = heir.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={id}")],
    );
    assert_eq!(task["status"], "failed", "{task:#}");
    let message = task["message"].as_str().unwrap();
    assert!(
        message.starts_with("this cluster archives into the S3 repository")
            && message.contains("which belongs to another cluster")
            && message.contains("take-over-repository=true"),
        "{message}"
    );
    assert_eq!(owner_of(&old_repository), old_owner);
    assert!(!old_repository.join("locks/backup.json").exists());

    let task = heir.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={id}"), "take-over-repository=true"],
    );
    assert_eq!(task["status"], "completed", "{task:#}");
    let heir_db = Db::remote(
        address(heir, "postgresql/0"),
        "operator",
        &password(heir, "postgresql"),
    )
    .unwrap();
    assert_eq!(checksum(&heir_db), at_backup);
    assert_eq!(owner_of(&old_repository)["model-uuid"], model_uuid(heir));
    settled(heir, "postgresql", 1, Duration::from_secs(60));
}
