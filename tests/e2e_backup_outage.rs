//! End to end: an S3 outage in the middle of a full backup. The model's own
//! S3 server is stopped while the backup's files are being uploaded: the
//! action fails saying the repository could not be reached, the unit keeps
//! the failed record and writes it once S3 is back, list-backups shows that
//! backup as failed with the same reason, no lock is left behind, and the
//! next backup succeeds.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::{address, storage, Model};

/// What a failed copy says, in the action's message and in the backup's row.
const REASON: &str = "cannot copy the data files: the S3 repository could not be reached; \
                      check the S3 endpoint and that the storage is up";

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The only backup directory in the repository, once it holds a data object.
fn backup_with_objects(backups: &Path) -> Option<(String, usize)> {
    std::fs::read_dir(backups)
        .ok()?
        .flatten()
        .find_map(|entry| {
            let objects = files(&entry.path().join("data")).len();
            (objects > 0).then(|| (entry.file_name().to_string_lossy().into_owned(), objects))
        })
}

fn list_backups(model: &Model) -> String {
    let task = model.run_action("postgresql/0", "list-backups", &[]);
    assert_eq!(task["status"], "completed", "{task:#}");
    task["results"]["backups"].as_str().unwrap().to_owned()
}

fn row(table: &str, id: &str) -> String {
    table
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not in:\n{table}"))
        .to_owned()
}

#[test]
fn an_s3_outage_mid_backup_fails_clearly_and_the_next_backup_succeeds() {
    let started = Instant::now();
    let model = &Model::new();
    support::deploy_with_s3(model);
    let deployed = started.elapsed();
    let served = support::served(model);
    let repository = served.join("juju-local/local.postgresql");
    let backups = repository.join("backups");
    let lock = repository.join("locks/backup.json");
    let pending = storage(model, "postgresql/0").join("backup-pending");

    // Enough data (about 200 MiB, poorly compressible) for a full backup to take seconds.
    let operator = model.run_action("postgresql/leader", "get-password", &[])["results"]
        ["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = Db::remote(address(model, "postgresql/0"), "operator", &operator).unwrap();
    db.execute(
        "CREATE TABLE filler AS SELECT i, md5(random()::text) || md5(random()::text) AS a, \
         md5(random()::text) || md5(random()::text) AS b FROM generate_series(1, 1200000) i",
    )
    .unwrap();
    let loaded = started.elapsed() - deployed;

    // The backup in the background; S3 stopped once its first objects are stored.
    let mut action = Command::new(&support::build().juju_local)
        .args([
            "run",
            "postgresql/0",
            "create-backup",
            "type=full",
            "--format",
            "json",
        ])
        .env("JUJU_LOCAL_MODEL", model.dir().join("model"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let backup_started = Instant::now();
    let (id, stored_before) = loop {
        if let Some(found) = backup_with_objects(&backups) {
            break found;
        }
        if let Some(status) = action.try_wait().unwrap() {
            let out = action.wait_with_output().unwrap();
            panic!(
                "the backup ended ({status}) before any object was stored:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            backup_started.elapsed() < Duration::from_secs(120),
            "no object of the backup was stored"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    model.ok(&["s3-server", "stop"]);
    let stopped_after = backup_started.elapsed();

    // The action fails, saying S3 could not be reached; its log shows the copy under way.
    let out = action.wait_with_output().unwrap();
    let tasks: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "create-backup printed no JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let task = tasks["postgresql/0"].clone();
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(
        task["message"],
        format!(
            "Failed to backup PostgreSQL with error: {REASON} (backup {id} is kept on this \
             unit as failed and recorded in the repository at the next create-backup or \
             list-backups)"
        ),
        "{task:#}"
    );
    let log = task["log"].to_string();
    assert!(
        log.contains(&format!("backup {id} started at LSN")),
        "{log}"
    );
    let copying = log
        .split("copying ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no copy progress in the log: {log}"));

    // Cut off mid-upload: some of its objects, no manifest, no record; the
    // lock left in S3 and the failure kept on the unit.
    let stored = files(&backups.join(&id).join("data")).len();
    assert!(
        stored >= stored_before && stored < copying,
        "{stored} of {copying} files stored"
    );
    assert!(!backups.join(&id).join("backup_manifest").exists());
    assert!(!backups.join(&id).join("record.json").exists());
    assert!(lock.exists(), "the lock was released while S3 was down");
    assert!(pending.join(format!("{id}.json")).exists());

    // While S3 is down, list-backups says so too.
    let task = model.run_action("postgresql/0", "list-backups", &[]);
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(
        task["message"],
        "cannot list the backups in the repository: the S3 repository could not be \
         reached; check the S3 endpoint and that the storage is up"
    );

    // S3 back: list-backups writes the kept record first, and releases the lock.
    model.ok(&["s3-server", "start"]);
    let table = list_backups(model);
    assert!(
        row(&table, &id).contains(&format!("| full backup         | failed: {REASON} | None ")),
        "{table}"
    );
    assert!(!pending.join(format!("{id}.json")).exists());
    assert!(!lock.exists(), "the lock stayed after S3 came back");

    // The next backup succeeds and is listed as finished.
    let next_started = Instant::now();
    let task = model.run_action("postgresql/0", "create-backup", &["type=full"]);
    let next_took = next_started.elapsed();
    assert_eq!(task["status"], "completed", "{task:#}");
    let next = task["results"]["backup-id"].as_str().unwrap().to_owned();
    assert_ne!(next, id);
    let table = list_backups(model);
    assert!(
        row(&table, &next).contains("| full backup         | finished | None "),
        "{table}"
    );
    assert!(row(&table, &id).contains(&format!("failed: {REASON}")));
    assert!(!lock.exists());
    eprintln!(
        "deployed in {deployed:?}, loaded in {loaded:?}; S3 stopped {stopped_after:?} into the \
         backup with {stored_before} objects stored ({stored} of {copying} at the end); the next \
         backup took {next_took:?}; whole test {:?}",
        started.elapsed()
    );
}
