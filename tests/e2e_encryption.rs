//! End to end: encryption at rest, under juju-local with a real PostgreSQL
//! server and juju-local's S3 server. The key is a user secret
//! (add-secret, grant-secret) named by `backup-encryption-secret`, with lz4
//! compression. A table full of a random marker is backed up and its WAL
//! archived: the marker is in the live data directory but in no object of
//! the S3 server's directory, whose data objects all start with the
//! encrypted header, and repository.json names the key's id. A restore
//! with the key brings the rows back. Then, with another key configured,
//! the unit is blocked with both key ids and a restore is refused before
//! anything changes; with no key at all, likewise, verify-backup names the
//! encrypted objects it cannot read, and wal-fetch fails with its abort
//! code rather than "not found"; the cluster serves its data throughout.
//! The first key configured again, the unit is active again.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postgresql_charm::backup::cipher::{Key, MAGIC};
use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::{address, backup, password, settled, storage, Model};

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// The files under `dir` that contain `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::thread_rng(), &mut raw[..]);
    hex::encode(raw)
}

/// Adds a user secret holding `key` and grants it to postgresql; its URI.
fn key_secret(model: &Model, name: &str, key: &str) -> String {
    let uri = model
        .ok(&["add-secret", name, &format!("key={key}")])
        .trim()
        .to_owned();
    assert!(uri.starts_with("secret:"), "{uri}");
    model.ok(&["grant-secret", name, "postgresql"]);
    uri
}

fn unit_status(model: &Model) -> (String, String) {
    let status = model.status();
    let unit = &status["applications"]["postgresql"]["units"]["postgresql/0"]["workload-status"];
    (
        unit["current"].as_str().unwrap_or_default().to_owned(),
        unit["message"].as_str().unwrap_or_default().to_owned(),
    )
}

const CHECKSUM: &str = "SELECT md5(string_agg(id || v, ',' ORDER BY id)) FROM marked";

#[test]
fn an_encrypted_repository_holds_no_plaintext_and_restores_only_with_its_key() {
    let model = &Model::new();
    let started = Instant::now();
    model.ok(&[
        "deploy",
        support::build().charm.to_str().unwrap(),
        "--config",
        "profile=testing",
        "--config",
        "backup-compression=lz4",
    ]);
    let key = random_hex(32);
    let key_id = Key::from_hex(&key).unwrap().id().to_string();
    let uri = key_secret(model, "backup-key", &key);
    model.ok(&[
        "config",
        "postgresql",
        &format!("backup-encryption-secret={uri}"),
    ]);
    model.ok(&["deploy", "s3-integrator"]);
    model.ok(&["integrate", "postgresql:s3-parameters", "s3-integrator"]);
    settled(model, "postgresql", 1, Duration::from_secs(60));

    let repository = support::served(model).join("juju-local/local.postgresql");
    let owner: Value =
        serde_json::from_slice(&std::fs::read(repository.join("repository.json")).unwrap())
            .unwrap();
    assert_eq!(owner["encryption-key-id"], key_id.as_str(), "{owner:#}");

    // A table of a random marker, on disk and in the WAL.
    let marker = random_hex(20);
    let operator = password(model, "postgresql");
    let db = Db::remote(address(model, "postgresql/0"), "operator", &operator).unwrap();
    db.execute(&format!(
        "CREATE TABLE marked (id int PRIMARY KEY, v text); \
         INSERT INTO marked SELECT i, '{marker}' FROM generate_series(1, 2000) i; CHECKPOINT"
    ))
    .unwrap();
    let checksum = db.query_text(CHECKSUM).unwrap();
    let data = storage(model, "postgresql/0").join("data");
    assert!(
        !holding(&data.join("base"), marker.as_bytes()).is_empty(),
        "the marker is not in the live data directory: the search is broken"
    );

    // A full backup, its WAL archived: nothing stored holds the marker.
    let id = backup(model, "postgresql/0", "full");
    let last = db
        .query_text("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .unwrap();
    db.execute("SELECT pg_switch_wal()").unwrap();
    support::eventually("the WAL with the rows is archived", || {
        db.query_text("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            .is_ok_and(|archived| archived >= last)
    });
    let stored = files(&repository);
    let data_objects: Vec<&PathBuf> = stored
        .iter()
        .filter(|f| {
            let name = f.to_string_lossy();
            name.ends_with(".lz4") || name.ends_with("backup_label") || name.ends_with("manifest")
        })
        .collect();
    assert!(data_objects.len() > 100, "{} objects", data_objects.len());
    for object in &data_objects {
        let bytes = std::fs::read(object).unwrap();
        assert!(
            bytes.starts_with(&MAGIC),
            "{} is not encrypted",
            object.display()
        );
    }
    let leaks = holding(&repository, marker.as_bytes());
    assert!(
        leaks.is_empty(),
        "plaintext rows in the repository: {leaks:?}"
    );
    assert!(
        holding(&repository, &key.as_bytes()[..32]).is_empty(),
        "the key is in the repository"
    );

    eprintln!("deployed, backed up, scanned: {:?}", started.elapsed());

    // Rows the restore takes back out; then the restore, with the key.
    db.execute("DELETE FROM marked WHERE id > 1000").unwrap();
    let task = model.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={id}")],
    );
    assert_eq!(task["status"], "completed", "{task:#}");
    settled(model, "postgresql", 1, Duration::from_secs(60));
    let db = Db::remote(address(model, "postgresql/0"), "operator", &operator).unwrap();
    assert_eq!(db.query_text(CHECKSUM).unwrap(), checksum);

    eprintln!("restored with the key: {:?}", started.elapsed());

    // Another key: blocked with both ids, and a restore refused at once.
    let other = random_hex(32);
    let other_id = Key::from_hex(&other).unwrap().id().to_string();
    let other_uri = key_secret(model, "other-key", &other);
    model.ok(&[
        "config",
        "postgresql",
        &format!("backup-encryption-secret={other_uri}"),
    ]);
    let wrong_key = format!(
        "the S3 repository juju-local/local.postgresql is encrypted with key {key_id}; the \
         configured secret holds key {other_id}: set backup-encryption-secret to the secret \
         holding key {key_id}, or use another bucket or path for a repository encrypted with \
         the new key"
    );
    assert_eq!(unit_status(model), ("blocked".into(), wrong_key.clone()));
    let task = model.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={id}")],
    );
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(task["message"], format!("cannot restore: {wrong_key}"));
    assert_eq!(db.query_text(CHECKSUM).unwrap(), checksum);

    // No key: blocked; verify-backup names what it cannot read.
    model.ok(&[
        "config",
        "postgresql",
        "--reset",
        "backup-encryption-secret",
    ]);
    let no_key = format!(
        "the S3 repository juju-local/local.postgresql is encrypted with key {key_id} and no \
         encryption key is configured: set backup-encryption-secret to the secret holding that \
         key"
    );
    assert_eq!(unit_status(model), ("blocked".into(), no_key.clone()));
    let task = model.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={id}")],
    );
    assert_eq!(task["message"], format!("cannot restore: {no_key}"));
    let task = model.run_action(
        "postgresql/0",
        "verify-backup",
        &[&format!("backup-id={id}")],
    );
    assert_eq!(task["message"], format!("cannot verify: {no_key}"));

    // wal-fetch without the key: the abort code, never "not found".
    let unit_storage = storage(model, "postgresql/0");
    let mut settings: Value =
        serde_json::from_slice(&std::fs::read(unit_storage.join("s3-repository.json")).unwrap())
            .unwrap();
    settings.as_object_mut().unwrap().remove("encryption-key");
    let scratch = tempfile::tempdir().unwrap();
    let keyless = scratch.path().join("settings.json");
    std::fs::write(&keyless, settings.to_string()).unwrap();
    let segment = files(&repository.join("wal"))
        .into_iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .find(|n| n.len() > 25 && n.as_bytes()[24] == b'-')
        .map(|n| n[..24].to_owned())
        .expect("an archived segment");
    let out = Command::new(unit_storage.join("bin/postgresql-charm"))
        .args(["wal-fetch", "--settings"])
        .arg(&keyless)
        .arg(&segment)
        .arg(scratch.path().join("RECOVERYXLOG"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(200), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "is encrypted (key {key_id}) and no encryption key"
        )),
        "{stderr}"
    );
    assert!(!scratch.path().join("RECOVERYXLOG").exists());
    assert_eq!(db.query_text(CHECKSUM).unwrap(), checksum);

    // The key back: active again.
    model.ok(&[
        "config",
        "postgresql",
        &format!("backup-encryption-secret={uri}"),
    ]);
    settled(model, "postgresql", 1, Duration::from_secs(30));

    // A secret not granted to the application blocks, plainly.
    let ungranted = model
        .ok(&[
            "add-secret",
            "not-granted",
            &format!("key={}", random_hex(32)),
        ])
        .trim()
        .to_owned();
    model.ok(&[
        "config",
        "postgresql",
        &format!("backup-encryption-secret={ungranted}"),
    ]);
    assert_eq!(
        unit_status(model),
        (
            "blocked".into(),
            format!(
                "cannot read the secret {ungranted} that backup-encryption-secret names \
                 (permission denied): check it exists (juju secrets) and is granted to this \
                 application (juju grant-secret <name> postgresql)"
            )
        )
    );
    assert_eq!(db.query_text(CHECKSUM).unwrap(), checksum);
    eprintln!("encryption end to end: {:?}", started.elapsed());
}
