//! End to end: retention and delete-backup, under juju-local with a real
//! PostgreSQL server and juju-local's S3 server. With two full backups to
//! keep, four chains of full + incremental leave the two newest: the older
//! chains' objects and the WAL only they needed are gone from the S3
//! server's directory, and a point in time inside the window still
//! restores with every row committed by then. delete-backup of a full with
//! an incremental on it is refused and changes nothing, then removes both
//! when asked. verify-backup passes on what is left, then names the object
//! with one byte flipped, and the WAL segment removed. A page corrupted on
//! disk is named, with its block, by the next backup, which warns.

mod support;

use std::path::Path;
use std::time::Duration;

use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::{address, backup, password, settled, Model};

/// The file names under `dir`, recursively.
fn names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The backup ids listed, in order.
fn listed(model: &Model) -> Vec<String> {
    let task = model.run_action("postgresql/0", "list-backups", &[]);
    assert_eq!(task["status"], "completed", "{task:#}");
    let table = task["results"]["backups"].as_str().unwrap();
    table
        .lines()
        .filter(|l| l.contains(" | ") && !l.starts_with("backup-id"))
        .filter(|l| !l.contains("| restore "))
        .map(|l| l.split(" | ").next().unwrap().trim().to_owned())
        .collect()
}

/// The WAL segment a backup starts from, from its backup_label.
fn first_segment(repository: &Path, id: &str) -> String {
    let label =
        std::fs::read_to_string(repository.join("backups").join(id).join("backup_label")).unwrap();
    let line = label
        .lines()
        .find(|l| l.starts_with("START WAL LOCATION"))
        .unwrap();
    line.split("(file ").nth(1).unwrap()[..24].to_owned()
}

fn now(db: &Db) -> String {
    db.query_text(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .unwrap()
}

#[test]
fn two_full_backups_kept_over_four_chains_delete_backup_and_verify_backup() {
    let model = &Model::new();
    model.ok(&[
        "deploy",
        support::build().charm.to_str().unwrap(),
        "--config",
        "profile=testing",
        "--config",
        "backup-retention-full=2",
    ]);
    model.ok(&["deploy", "s3-integrator"]);
    model.ok(&["integrate", "postgresql:s3-parameters", "s3-integrator"]);
    settled(model, "postgresql", 1, Duration::from_secs(60));
    let repository = support::served(model).join("juju-local/local.postgresql");
    let operator = password(model, "postgresql");
    let db = Db::remote(address(model, "postgresql/0"), "operator", &operator).unwrap();
    db.execute("CREATE TABLE t (id serial PRIMARY KEY, chain int, at timestamptz DEFAULT clock_timestamp())")
        .unwrap();

    // Four chains: rows, a full, rows, an incremental; each chain's WAL
    // switched out so that it lands in its own segments.
    let mut chains = Vec::new();
    let mut inside_window = None;
    for chain in 1..=4 {
        db.execute(&format!("INSERT INTO t (chain) SELECT {chain} FROM generate_series(1, 100); SELECT pg_switch_wal()"))
            .unwrap();
        let full = backup(model, "postgresql/0", "full");
        db.execute(&format!(
            "INSERT INTO t (chain) SELECT {chain} FROM generate_series(1, 50)"
        ))
        .unwrap();
        if chain == 3 {
            inside_window = Some((
                now(&db),
                db.query_text("SELECT count(*)::text FROM t").unwrap(),
            ));
        }
        db.execute(&format!("INSERT INTO t (chain) SELECT {chain} FROM generate_series(1, 50); SELECT pg_switch_wal()"))
            .unwrap();
        let incremental = backup(model, "postgresql/0", "incremental");
        chains.push((full, incremental));
    }

    // The two oldest chains are gone, from the catalog and from S3.
    let kept: Vec<String> = chains[2..]
        .iter()
        .flat_map(|(f, i)| [f.clone(), i.clone()])
        .collect();
    assert_eq!(listed(model), kept);
    // (The S3 server keeps a directory per prefix: empty ones hold no objects.)
    let objects = |id: &str| names(&repository.join("backups").join(id));
    for (full, incremental) in &chains[..2] {
        assert_eq!(objects(full), Vec::<String>::new());
        assert_eq!(objects(incremental), Vec::<String>::new());
    }
    assert!(objects(&chains[2].0).contains(&"record.json".to_owned()));

    // So is the WAL only they needed; the WAL the kept ones need is there.
    let first = first_segment(&repository, &chains[2].0);
    let wal = names(&repository.join("wal"));
    let segments: Vec<&String> = wal.iter().filter(|n| !n.contains(".history")).collect();
    assert!(
        segments.iter().all(|n| n[8..24] >= first[8..]),
        "WAL before {first} is left: {segments:?}"
    );
    assert!(
        segments.iter().any(|n| n.starts_with(&first)),
        "{first} is missing: {segments:?}"
    );

    // A point in time inside the window still restores, with every row.
    let (time, rows) = inside_window.unwrap();
    let task = model.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("restore-to-time={time}")],
    );
    assert_eq!(task["status"], "completed", "{task:#}");
    assert_eq!(
        task["results"]["backup-id"],
        chains[2].0.as_str(),
        "{task:#}"
    );
    let db = Db::remote(address(model, "postgresql/0"), "operator", &operator).unwrap();
    assert_eq!(db.query_text("SELECT count(*)::text FROM t").unwrap(), rows);
    settled(model, "postgresql", 1, Duration::from_secs(60));

    // delete-backup of a full with an incremental on it: refused, nothing changed.
    let (full, incremental) = &chains[3];
    let before = names(&repository);
    let task = model.run_action(
        "postgresql/0",
        "delete-backup",
        &[&format!("backup-id={full}")],
    );
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(
        task["message"],
        format!(
            "backup {full} has 1 backup(s) built on it ({incremental}), which cannot be \
             restored without it: run delete-backup backup-id={full} delete-dependants=true \
             to delete them together, or delete those first"
        )
    );
    assert_eq!(names(&repository), before);

    // Then with its dependants.
    let task = model.run_action(
        "postgresql/0",
        "delete-backup",
        &[&format!("backup-id={full}"), "delete-dependants=true"],
    );
    assert_eq!(task["status"], "completed", "{task:#}");
    assert_eq!(
        task["results"]["deleted-backups"],
        format!("{full}, {incremental}")
    );
    assert_eq!(listed(model), [chains[2].0.clone(), chains[2].1.clone()]);
    assert_eq!(objects(full), Vec::<String>::new());
    assert_eq!(objects(incremental), Vec::<String>::new());

    // An id that is not there.
    let task = model.run_action(
        "postgresql/0",
        "delete-backup",
        &["backup-id=2020-01-01T00:00:00Z"],
    );
    assert_eq!(
        task["message"],
        "Invalid backup-id: 2020-01-01T00:00:00Z (no backup has this id; list-backups shows them)"
    );

    // verify-backup: the chain left passes.
    let (full, incremental) = &chains[2];
    let task = model.run_action("postgresql/0", "verify-backup", &[]);
    assert_eq!(task["status"], "completed", "{task:#}");
    let verified = task["results"]["verified"].as_str().unwrap().to_owned();
    assert!(
        verified.starts_with(&format!("{full}: ok ("))
            && verified.contains(&format!("\n{incremental}: ok (")),
        "{verified}"
    );

    // One byte of the full's largest object flipped: named.
    let data = repository.join("backups").join(full).join("data");
    let mut files = Vec::new();
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files.push((entry.metadata().unwrap().len(), entry.path()));
            }
        }
    }
    let (_, largest) = files.into_iter().max().unwrap();
    let original = std::fs::read(&largest).unwrap();
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&largest, &flipped).unwrap();
    let key = largest
        .strip_prefix(&repository)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let task = model.run_action(
        "postgresql/0",
        "verify-backup",
        &[&format!("backup-id={full}")],
    );
    assert_eq!(task["status"], "failed", "{task:#}");
    let message = task["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("verification failed: {full}: FAILED: {key}")),
        "{message}"
    );
    std::fs::write(&largest, &original).unwrap();

    // A WAL segment the incremental needs, removed: named.
    let first = first_segment(&repository, incremental);
    let dir = repository.join("wal").join(&first[..16]);
    let object = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{first}-"))
        })
        .unwrap()
        .path();
    std::fs::remove_file(&object).unwrap();
    let task = model.run_action("postgresql/0", "verify-backup", &[]);
    assert_eq!(task["status"], "failed", "{task:#}");
    let message = task["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "{incremental}: FAILED: WAL segment {first} is not in the archive"
        )),
        "{message}"
    );
    assert!(!message.contains(&format!("{full}: FAILED")), "{message}");

    // A page corrupted on disk under a running server: the backup warns,
    // naming the file and the block, and records it.
    let db = Db::remote(address(model, "postgresql/0"), "operator", &operator).unwrap();
    db.execute(
        "CREATE TABLE damaged AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g;
         CHECKPOINT;",
    )
    .unwrap();
    let relation = db
        .query_text("SELECT pg_relation_filepath('damaged')")
        .unwrap();
    let file = support::storage(model, "postgresql/0")
        .join("data")
        .join(&relation);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8192 + 5000] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let task = model.run_action("postgresql/0", "create-backup", &["type=full"]);
    assert_eq!(task["status"], "completed", "{task:#}");
    let warning = task["results"]["warnings"].as_str().unwrap_or_default();
    assert!(
        warning.starts_with(&format!(
            "WARNING: page checksum failures in 1 file(s): {relation} (blocks 1)"
        )),
        "{task:#}"
    );
    let id = task["results"]["backup-id"].as_str().unwrap();
    let record: Value = serde_json::from_slice(
        &std::fs::read(repository.join("backups").join(id).join("record.json")).unwrap(),
    )
    .unwrap();
    let damaged = record["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == relation.as_str())
        .unwrap();
    assert_eq!(damaged["bad-pages"], serde_json::json!([1]));
}
