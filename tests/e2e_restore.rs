//! End to end: the `restore` action on a live cluster under juju-local,
//! with real PostgreSQL servers and juju-local's S3 server. A point in time
//! between two backups under a pgbench load (every transaction logged with
//! its commit time, pgbench's balance invariant, `pg_amcheck`), restores by
//! id of a full, a differential and an incremental backup compared with
//! checksums taken at their end, the same point restored twice, a time on the first timeline
//! after two later ones exist, and failures that leave the cluster serving
//! on its previous data.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::pg::{assert_amcheck_clean, assert_balanced, finished, pgbench};
use support::{address, backup, password, settled, Model};

/// Deploys `units` units and an s3-integrator (juju-local's S3 server),
/// related, and waits until every unit is active.
fn deploy(model: &Model, units: usize) {
    let started = Instant::now();
    model.ok(&[
        "deploy",
        support::build().charm.to_str().unwrap(),
        "-n",
        &units.to_string(),
    ]);
    model.ok(&["deploy", "s3-integrator"]);
    model.ok(&["integrate", "postgresql:s3-parameters", "s3-integrator"]);
    settled(model, "postgresql", units, Duration::from_secs(60));
    eprintln!("deploy: {:?}", started.elapsed());
}

fn primary_unit(model: &Model) -> String {
    model.run_action("postgresql/leader", "get-primary", &[])["results"]["primary"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn connect(model: &Model, unit: &str, operator: &str) -> Db {
    Db::remote(address(model, unit), "operator", operator).unwrap()
}

fn restore(model: &Model, params: &[&str]) -> Value {
    let started = Instant::now();
    let task = model.run_action("postgresql/leader", "restore", params);
    eprintln!("restore {params:?}: {:?}", started.elapsed());
    task
}

/// The server's clock now, in ISO 8601 with microseconds.
fn now(db: &Db) -> String {
    db.query_text(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .unwrap()
}

/// pgbench's transaction, which also logs its commit time.
const LOGGED_TPCB: &str = "\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO commit_log (at) VALUES (clock_timestamp());
END;
";

/// Every replica streams from the primary on `timeline`.
fn assert_streaming_on(model: &Model, operator: &str, units: usize, timeline: i64) {
    let started = Instant::now();
    loop {
        settled(model, "postgresql", units, Duration::from_secs(180));
        let primary = connect(model, &primary_unit(model), operator);
        let streaming = primary
            .query_i64("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            .unwrap();
        let on_timeline = model.status()["applications"]["postgresql"]["units"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|u| **u != primary_unit(model))
            .filter(|u| {
                connect(model, u, operator)
                    .query_i64(
                        "SELECT coalesce(max(received_tli), 0)::int8 FROM pg_stat_wal_receiver",
                    )
                    .unwrap()
                    == timeline
            })
            .count();
        if streaming as usize == units - 1 && on_timeline == units - 1 {
            eprintln!("streaming again: {:?}", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{streaming} replicas stream, {on_timeline} on timeline {timeline}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn point_in_time_between_two_backups_under_load_on_three_units() {
    let model = &Model::new();
    deploy(model, 3);
    let operator = password(model, "postgresql");
    let leader = primary_unit(model);
    let host = address(model, &leader);
    let db = connect(model, &leader, &operator);

    // pgbench's tables, a log of commits, and a full backup.
    finished(
        pgbench(host, &operator, &["-i", "-s", "1", "-q"]),
        "pgbench -i",
    );
    db.execute("CREATE TABLE commit_log (at timestamptz NOT NULL)")
        .unwrap();
    let script = model.dir().join("logged-tpcb.sql");
    std::fs::write(&script, LOGGED_TPCB).unwrap();
    backup(model, &leader, "full");

    // Under load: an incremental backup, the target time, another one.
    let load = pgbench(
        host,
        &operator,
        &[
            "-n",
            "-s",
            "1",
            "-c",
            "2",
            "-T",
            "20",
            "-f",
            script.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_secs(4));
    let before_target = backup(model, &leader, "incremental");
    std::thread::sleep(Duration::from_secs(2));
    let target = now(&db);
    std::thread::sleep(Duration::from_secs(2));
    backup(model, &leader, "incremental");
    finished(load, "pgbench under load");

    // What the log holds up to the target (with a margin for the time
    // between logging and committing), and in all.
    let count = |db: &Db, cond: &str| {
        db.query_i64(&format!("SELECT count(*) FROM commit_log WHERE {cond}"))
            .unwrap()
    };
    let early = format!("at <= '{target}'::timestamptz - interval '200 milliseconds'");
    let late = format!("at > '{target}'::timestamptz");
    let logged_early = count(&db, &early);
    let logged_late = count(&db, &late);
    assert!(
        logged_early > 100 && logged_late > 100,
        "{logged_early} {logged_late}"
    );

    // The restore, on the three-unit cluster as it is.
    let task = restore(model, &[&format!("restore-to-time={target}")]);
    assert_eq!(task["status"], "completed", "{task:#}");
    let results = &task["results"];
    assert_eq!(results["restore-status"], "restored");
    assert_eq!(results["backup-id"], before_target.as_str());
    let timeline: i64 = results["timeline"].as_str().unwrap().parse().unwrap();
    assert!(timeline >= 2, "{results:#}");

    // Every transaction committed by the target is back, none after it.
    let primary = primary_unit(model);
    let db = connect(model, &primary, &operator);
    assert_eq!(count(&db, &early), logged_early);
    assert_eq!(count(&db, &late), 0);
    assert_balanced(&db);
    assert_amcheck_clean(address(model, &primary), &operator);

    // It takes writes, and the whole cluster streams on the new timeline.
    db.execute("INSERT INTO commit_log VALUES (now())").unwrap();
    assert_streaming_on(model, &operator, 3, timeline);
    let table = model.run_action("postgresql/leader", "list-backups", &[])["results"]["backups"]
        .as_str()
        .unwrap()
        .to_owned();
    let restores: Vec<&str> = table.lines().filter(|l| l.contains("| restore ")).collect();
    assert_eq!(restores.len(), 1, "{table}");
    assert!(
        restores[0].contains(&format!("| {timeline} ")) && restores[0].contains(&before_target),
        "{table}"
    );
}

/// A checksum of every row of `t`.
fn checksum(db: &Db) -> String {
    db.query_text("SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t")
        .unwrap()
}

/// Restores, expects success, returns the new timeline and the primary.
fn restored(model: &Model, operator: &str, params: &[&str]) -> (i64, Db) {
    let task = restore(model, params);
    assert_eq!(task["status"], "completed", "restore {params:?}: {task:#}");
    let timeline = task["results"]["timeline"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let db = connect(model, &primary_unit(model), operator);
    (timeline, db)
}

/// Every object file under the model's S3 server whose path contains `part`.
fn objects(model: &Model, part: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    walk(&model.dir().join("model/s3"), &mut all);
    all.retain(|p| p.to_string_lossy().contains(part));
    all.sort();
    all
}

#[test]
fn by_id_twice_from_one_point_then_back_to_the_first_timeline() {
    let model = &Model::new();
    deploy(model, 2);
    let operator = password(model, "postgresql");
    let leader = primary_unit(model);
    let db = connect(model, &leader, &operator);

    // A full backup, a change and an incremental, a change and a time.
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 20000) i")
        .unwrap();
    let full = backup(model, &leader, "full");
    let at_full = checksum(&db);
    db.execute("UPDATE t SET v = 'changed' WHERE id % 7 = 0; INSERT INTO t SELECT i, 'new' FROM generate_series(20001, 21000) i")
        .unwrap();
    let incremental = backup(model, &leader, "incremental");
    let at_incremental = checksum(&db);
    db.execute("UPDATE t SET v = 'differs' WHERE id % 13 = 0")
        .unwrap();
    let differential = backup(model, &leader, "differential");
    let at_differential = checksum(&db);
    db.execute("DELETE FROM t WHERE id % 11 = 0").unwrap();
    let at_time = checksum(&db);
    std::thread::sleep(Duration::from_millis(1100));
    let time = now(&db);
    std::thread::sleep(Duration::from_millis(1100));
    db.execute("INSERT INTO t SELECT i, 'after' FROM generate_series(30001, 30500) i")
        .unwrap();

    // The full backup, twice from the same point: two new timelines.
    let (first, db) = restored(model, &operator, &[&format!("backup-id={full}")]);
    assert_eq!(checksum(&db), at_full);
    let (second, db) = restored(model, &operator, &[&format!("backup-id={full}")]);
    assert_eq!(checksum(&db), at_full);
    assert!(second > first && first >= 2, "{first} then {second}");

    // A time on the first timeline, which two later ones branched from.
    let (third, db) = restored(model, &operator, &[&format!("restore-to-time={time}")]);
    assert_eq!(checksum(&db), at_time);
    assert!(third > second);

    // The differential and the incremental by id.
    let (_, db) = restored(model, &operator, &[&format!("backup-id={differential}")]);
    assert_eq!(checksum(&db), at_differential);
    let (_, db) = restored(model, &operator, &[&format!("backup-id={incremental}")]);
    assert_eq!(checksum(&db), at_incremental);
    assert_streaming_on(
        model,
        &operator,
        2,
        db.query_i64(
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8",
        )
        .unwrap(),
    );

    // Recovery that cannot reach its target (the WAL after the backup it
    // starts from is gone): the action says how far it got; the data is as before.
    let stop_segment = |id: &str| {
        let record = objects(model, &format!("backups/{id}/record.json"));
        let record: Value = serde_json::from_slice(&std::fs::read(&record[0]).unwrap()).unwrap();
        let stop = record["stop-lsn"].as_str().unwrap().to_owned();
        let (hi, lo) = stop.split_once('/').unwrap();
        let lsn =
            (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
        format!("00000001{:08X}{:08X}", lsn >> 32, (lsn & 0xffff_ffff) >> 24)
    };
    let last_needed = stop_segment(&differential);
    for object in objects(model, "/wal/00000001") {
        let name = object.file_name().unwrap().to_string_lossy().to_string();
        if name[..24] > *last_needed {
            std::fs::remove_file(&object).unwrap();
        }
    }
    let task = restore(model, &[&format!("restore-to-time={time}")]);
    assert_eq!(task["status"], "failed", "{task:#}");
    let message = task["message"].as_str().unwrap();
    assert!(
        message.contains("recovery ended before configured recovery target was reached")
            && message.contains("the previous data is back in place"),
        "{message}"
    );
    let db = connect(model, &primary_unit(model), &operator);
    assert_eq!(checksum(&db), at_incremental);
    db.execute("INSERT INTO t VALUES (99999, 'still writable')")
        .unwrap();

    // A damaged object: the restore names it and changes nothing.
    let files = objects(model, &format!("backups/{full}/"));
    let victim = files
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".json"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(victim, bytes).unwrap();
    let task = restore(model, &[&format!("backup-id={full}")]);
    assert_eq!(task["status"], "failed", "{task:#}");
    let message = task["message"].as_str().unwrap();
    let name = victim.file_name().unwrap().to_string_lossy();
    assert!(
        message.contains(name.as_ref()),
        "{message} does not name {name}"
    );
    let db = connect(model, &primary_unit(model), &operator);
    assert_eq!(
        db.query_i64("SELECT count(*) FROM t WHERE id = 99999")
            .unwrap(),
        1
    );
    settled(model, "postgresql", 2, Duration::from_secs(60));
}
