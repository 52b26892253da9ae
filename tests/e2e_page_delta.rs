//! End to end: page-level incrementals are right in the cases that broke
//! other tools. Between a full backup (taken under pgbench, so pages change
//! while it reads them) and an incremental, and again before
//! a second incremental (so files carry two page deltas): TRUNCATE, VACUUM
//! FULL, CLUSTER, CREATE DATABASE with `STRATEGY = WAL_LOG` and
//! `FILE_COPY`, a table dropped and re-created under its name, a relation
//! cut by VACUUM, large TOASTed values updated, an unlogged table written,
//! a table grown past its first 1 GiB segment, and pgbench. Each
//! incremental is restored into a scratch directory (the charm's restore
//! code, `pg_verifybackup`, recovery from the archive) and must pass
//! `pg_checksums --check` and `pg_amcheck`, keep pgbench's balances, leave
//! the unlogged table empty, and dump exactly as every database dumped at
//! the backup's end. The backups' records must show the deltas at work:
//! the big table's first segment stored as one, then two, small layers;
//! new files (the copied database, the truncated table) stored whole.

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use postgresql_charm::backup::settings::RepoSettings;
use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::pg::{assert_amcheck_clean_by, assert_balanced, finished, pg_tool, pgbench};
use support::scratch::Scratch;
use support::{address, backup, password, settled, storage, Model};

/// The databases whose dumps are compared.
const DATABASES: [&str; 3] = ["postgres", "d_wal", "d_copy"];

/// A row of the big table: with its fillfactor of 10, one to a page, so
/// that 131 072 rows fill the first 1 GiB segment with little WAL.
const BIG_ROW: &str = "repeat('x', 700)";

/// Where to reach a server with pg_dump and pg_amcheck.
enum Reach<'a> {
    /// A unit, over TCP with the operator's password.
    Unit(IpAddr, &'a str),
    /// A scratch server, over its socket (peer authentication).
    Socket(&'a Path),
}

impl Reach<'_> {
    fn apply(&self, command: &mut Command) {
        match self {
            Reach::Unit(host, operator) => {
                command
                    .args(["-h", &host.to_string()])
                    .env("PGPASSWORD", operator);
            }
            Reach::Socket(dir) => {
                command.arg("-h").arg(dir);
            }
        }
        command.args(["-p", "5432", "-U", "operator"]);
    }
}

/// `pg_dump --no-unlogged-table-data` of each database, in order.
fn dumps(reach: &Reach<'_>) -> Vec<String> {
    DATABASES
        .iter()
        .map(|db| {
            let mut command = pg_tool("pg_dump");
            reach.apply(&mut command);
            let out = command
                // A fixed key: pg_dump would pick a random one for each dump.
                .args(["--no-unlogged-table-data", "--restrict-key=delta", "-d", db])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pg_dump {db}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .collect()
}

fn amcheck_clean(reach: &Reach<'_>) {
    let mut command = pg_tool("pg_amcheck");
    reach.apply(&mut command);
    assert_amcheck_clean_by(command);
}

/// The record of backup `id`, read from the S3 server's own directory.
fn record(model: &Model, id: &str) -> Value {
    fn find(dir: &Path, tail: &str) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if let Some(found) = find(&path, tail) {
                    return Some(found);
                }
            } else if path.to_string_lossy().ends_with(tail) {
                return Some(path);
            }
        }
        None
    }
    let tail = format!("backups/{id}/record.json");
    let path = find(&support::served(model), &tail)
        .unwrap_or_else(|| panic!("no {tail} in the S3 server's directory"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A file's entry in a backup record.
fn entry<'a>(record: &'a Value, path: &str) -> &'a Value {
    record["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("backup {} has no {path}", record["id"]))
}

fn layers(record: &Value, path: &str) -> usize {
    entry(record, path)["layers"].as_array().map_or(0, Vec::len)
}

/// Runs `sql` in database `db` of the unit, through psql.
fn psql(host: IpAddr, operator: &str, db: &str, sql: &str) {
    let out = pg_tool("psql")
        .args(["-h", &host.to_string(), "-U", "operator", "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", operator)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql} in {db}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exec(db: &Db, sql: &str) {
    db.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e:#}"));
}

fn file_path(db: &Db, relation: &str) -> String {
    db.query_text(&format!("SELECT pg_relation_filepath('{relation}')"))
        .unwrap()
}

/// A restored backup, checked whole and against the dumps at its end.
fn assert_restores(dir: &Path, settings: &RepoSettings, id: &str, n: u8, want: &[String]) {
    let ip: IpAddr = format!("127.{}.9.{n}", 200 + std::process::id() % 50)
        .parse()
        .unwrap();
    let started = Instant::now();
    let scratch = Scratch::restore(dir, settings, id, ip);
    eprintln!(
        "backup {id} restored and recovered in {:?}",
        started.elapsed()
    );
    scratch.assert_checksums();
    let socket = scratch.server.layout.socket_dir();
    let reach = Reach::Socket(&socket);
    let got = dumps(&reach);
    for (i, db) in DATABASES.iter().enumerate() {
        if got[i] != want[i] {
            let (g, w): (Vec<&str>, Vec<&str>) =
                (got[i].lines().collect(), want[i].lines().collect());
            let at = g
                .iter()
                .zip(&w)
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(w.len()));
            panic!(
                "database {db} restored from backup {id} does not dump as it did at the backup's \
                 end: line {} is {:?}, was {:?} ({} lines, were {})",
                at + 1,
                g.get(at),
                w.get(at),
                g.len(),
                w.len()
            );
        }
    }
    let db = scratch.db();
    assert_balanced(&db);
    assert_eq!(
        db.query_text("SELECT count(*)::text FROM t_unlogged")
            .unwrap(),
        "0",
        "the unlogged table came back with rows"
    );
    let big = file_path(&db, "t_big");
    assert!(
        scratch.data.join(format!("{big}.1")).exists(),
        "the big table's second segment is not in backup {id}"
    );
    amcheck_clean(&reach);
}

#[test]
fn incrementals_of_pages_restore_exactly_through_every_kind_of_rewrite() {
    let model = Model::new();
    support::deploy_with_s3(&model);
    settled(&model, "postgresql", 1, std::time::Duration::from_secs(60));
    let operator = password(&model, "postgresql");
    let host = address(&model, "postgresql/0");
    let db = Db::remote(host, "operator", &operator).unwrap();

    // Before the full backup: every table the cases rewrite.
    let started = Instant::now();
    finished(
        pgbench(host, &operator, &["-i", "-s", "5", "-q"]),
        "pgbench -i",
    );
    for sql in [
        "CREATE TABLE t_trunc AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
        "CREATE TABLE t_vacfull AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 40000) g",
        "CREATE TABLE t_cluster AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 40000) g",
        "CREATE INDEX t_cluster_v ON t_cluster (v)",
        "CREATE TABLE t_recreate AS SELECT g AS id, 'old ' || g AS v FROM generate_series(1, 20000) g",
        "CREATE TABLE t_vactrunc WITH (autovacuum_enabled = off) AS \
           SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g",
        "CREATE TABLE t_toast (id int PRIMARY KEY, v text)",
        "INSERT INTO t_toast SELECT g, (SELECT string_agg(md5(g::text || i::text), '') \
           FROM generate_series(1, 5000) i) FROM generate_series(1, 40) g",
        "CREATE UNLOGGED TABLE t_unlogged AS SELECT g AS id FROM generate_series(1, 10000) g",
        "CREATE TABLE t_big (id int, pad text) WITH (autovacuum_enabled = off, fillfactor = 10)",
    ] {
        exec(&db, sql);
    }
    exec(
        &db,
        &format!("INSERT INTO t_big SELECT g, {BIG_ROW} FROM generate_series(1, 120000) g"),
    );
    // Hinted and frozen now, so that reading it later changes no page.
    exec(&db, "VACUUM (FREEZE) t_big");
    exec(&db, "CREATE DATABASE tmpl");
    psql(
        host,
        &operator,
        "tmpl",
        "CREATE TABLE copied AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g",
    );
    eprintln!("set up in {:?}", started.elapsed());
    // The full backup under load: pages change while it reads them, and the
    // next backup must take every page changed since it began.
    let load = pgbench(host, &operator, &["-n", "-c", "2", "-j", "2", "-T", "12"]);
    let full = backup(&model, "postgresql/0", "full");
    finished(load, "pgbench during the full backup");

    // Round one: every case.
    for sql in [
        "TRUNCATE t_trunc",
        "INSERT INTO t_trunc SELECT g, 'after truncate ' || g FROM generate_series(1, 5000) g",
        "UPDATE t_vacfull SET v = upper(v) WHERE id % 3 = 0",
        "VACUUM FULL t_vacfull",
        "CLUSTER t_cluster USING t_cluster_v",
        "DROP TABLE t_recreate",
        "CREATE TABLE t_recreate AS SELECT g AS id, 'new ' || g AS v FROM generate_series(1, 15000) g",
        "DELETE FROM t_vactrunc WHERE id > 30000",
        "VACUUM t_vactrunc",
        "UPDATE t_toast SET v = reverse(v) WHERE id % 2 = 0",
        "INSERT INTO t_unlogged SELECT g FROM generate_series(10001, 20000) g",
        "UPDATE t_big SET pad = repeat('y', 1800) WHERE id % 5000 = 0",
        "CREATE DATABASE d_wal STRATEGY = WAL_LOG",
        "CREATE DATABASE d_copy TEMPLATE tmpl STRATEGY = FILE_COPY",
    ] {
        exec(&db, sql);
    }
    exec(
        &db,
        &format!("INSERT INTO t_big SELECT g, {BIG_ROW} FROM generate_series(120001, 135000) g"),
    );
    psql(
        host,
        &operator,
        "d_wal",
        "CREATE TABLE w AS SELECT g AS id FROM generate_series(1, 30000) g",
    );
    finished(
        pgbench(host, &operator, &["-n", "-c", "2", "-j", "2", "-T", "5"]),
        "pgbench",
    );
    let big = file_path(&db, "t_big");
    let truncated = file_path(&db, "t_trunc");
    let copied_db = db
        .query_text("SELECT oid::text FROM pg_database WHERE datname = 'd_copy'")
        .unwrap();
    let reach = Reach::Unit(host, &operator);
    let at_first = dumps(&reach);
    let first = backup(&model, "postgresql/0", "incremental");

    // Round two: the same files change again.
    for sql in [
        "TRUNCATE t_trunc",
        "INSERT INTO t_trunc SELECT g, 'second truncate ' || g FROM generate_series(1, 3000) g",
        "DELETE FROM t_vactrunc WHERE id > 10000",
        "VACUUM t_vactrunc",
        "UPDATE t_toast SET v = upper(v) WHERE id % 3 = 0",
        "UPDATE t_big SET pad = repeat('z', 1800) WHERE id % 7000 = 1",
        "INSERT INTO t_unlogged SELECT g FROM generate_series(20001, 25000) g",
    ] {
        exec(&db, sql);
    }
    exec(
        &db,
        &format!("INSERT INTO t_big SELECT g, {BIG_ROW} FROM generate_series(135001, 140000) g"),
    );
    finished(
        pgbench(host, &operator, &["-n", "-c", "2", "-j", "2", "-T", "3"]),
        "pgbench",
    );
    let at_second = dumps(&reach);
    let second = backup(&model, "postgresql/0", "incremental");

    // The records: small deltas where files changed in place, whole new files.
    let (r1, r2) = (record(&model, &first), record(&model, &second));
    assert_eq!(r1["reference"], full.as_str());
    assert_eq!(
        layers(&r1, &big),
        1,
        "the big table's first segment in {first}"
    );
    assert_eq!(
        layers(&r2, &big),
        2,
        "the big table's first segment in {second}"
    );
    let segment = entry(&r1, &big)["size"].as_u64().unwrap();
    for r in [&r1, &r2] {
        let stored = entry(r, &big)["layers"].as_array().unwrap().last().unwrap()["stored"]
            .as_u64()
            .unwrap();
        assert!(
            stored * 20 < segment,
            "a delta of the big table's first segment stored {stored} bytes of {segment}"
        );
    }
    assert_eq!(
        layers(&r1, &format!("{big}.1")),
        0,
        "a new segment is stored whole"
    );
    assert_eq!(
        layers(&r2, &format!("{big}.1")),
        1,
        "the second segment, grown"
    );
    assert_eq!(layers(&r1, &truncated), 0, "the truncated table's new file");
    let copied: Vec<&Value> = r1["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .starts_with(&format!("base/{copied_db}/"))
        })
        .collect();
    assert!(!copied.is_empty(), "no file of d_copy in {first}");
    assert!(
        copied.iter().all(|f| f["layers"].is_null()),
        "a file of the copied database was stored as a delta"
    );
    for r in [&r1, &r2] {
        let (stored, total) = (
            r["stored-bytes"].as_u64().unwrap(),
            r["database-bytes"].as_u64().unwrap(),
        );
        assert!(
            stored * 10 < total,
            "backup {} stored {stored} bytes of a {total}-byte database",
            r["id"]
        );
    }

    // Each incremental restores to exactly what it saw.
    let settings =
        RepoSettings::load(&storage(&model, "postgresql/0").join("s3-repository.json")).unwrap();
    assert_restores(&model.dir().join("first"), &settings, &first, 1, &at_first);
    assert_restores(
        &model.dir().join("second"),
        &settings,
        &second,
        2,
        &at_second,
    );
}
