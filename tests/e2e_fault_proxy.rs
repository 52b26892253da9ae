//! End to end: the repository behind a flaky proxy (seeded: requests
//! delayed, answered `503 Slow Down` or `500 InternalError`, or dropped
//! without an answer). Backups through it either complete, and then pass
//! verify-backup, or fail with a message naming S3; WAL keeps being
//! archived; `wal-fetch`, PostgreSQL's restore_command, called many times
//! for archived segments, returns each one intact or fails in a way that
//! aborts recovery, and never answers "not in the archive" (exit 1) for a
//! segment that is there; a restore to the latest point through the proxy
//! (the newest backup taken through it, then the WAL archived through it)
//! brings back every committed row (commit log, checksums, pgbench's
//! invariant, pg_amcheck).
//!
//! `FAULT_PROXY_SEED` replays the proxy's choices of an earlier run.

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::flaky::{Proxy, Shares};
use support::pg::{assert_amcheck_clean, assert_balanced, pg_tool};
use support::{address, password, settled, storage, Model};

const UNIT: &str = "postgresql/0";

/// About one request in eight fails, one in ten is late.
const FLAKY: Shares = Shares {
    delay: 0.10,
    slow_down: 0.05,
    internal: 0.04,
    drop: 0.04,
};

/// For restores, which fetch a thousand files two at a time: as many
/// failures, fewer late answers.
const RESTORING: Shares = Shares {
    delay: 0.01,
    slow_down: 0.05,
    internal: 0.04,
    drop: 0.04,
};

/// Harsher, for wal-fetch: about one request in four fails.
const HARSH: Shares = Shares {
    delay: 0.10,
    slow_down: 0.10,
    internal: 0.08,
    drop: 0.08,
};

/// wal-fetch's "not in the archive", which ends recovery.
const NOT_FOUND: i32 = 1;

/// pgbench's transaction, which also logs each commit.
const LOGGED_TPCB: &str = "\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO commit_log (at) VALUES (clock_timestamp());
END;
";

fn pgbench(host: IpAddr, operator: &str, args: &[&str]) {
    let out = pg_tool("pgbench")
        .args(args)
        .args(["-h", &host.to_string(), "-U", "operator", "postgres"])
        .env("PGPASSWORD", operator)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The data, counted and summed: what a restore must bring back.
fn snapshot(db: &Db) -> String {
    db.query_text(
        "SELECT (SELECT count(*) FROM commit_log) || ' commits; accounts md5 ' || \
                (SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) \
                 FROM pgbench_accounts) || '; ' || \
                (SELECT count(*) FROM pgbench_history) || ' history rows, md5 ' || \
                (SELECT coalesce(md5(string_agg(tid || ':' || aid || ':' || delta, ',' \
                 ORDER BY mtime, tid, aid, delta)), '-') FROM pgbench_history)",
    )
    .unwrap()
}

/// Every archived WAL segment of the repository, with the file that holds it.
fn archived_segments(repository: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for dir in std::fs::read_dir(repository.join("wal")).unwrap().flatten() {
        if !dir.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if let Some((segment, rest)) = name.split_once('-') {
                if segment.len() == 24 && rest.ends_with(".zst") {
                    found.push((segment.to_owned(), file.path()));
                }
            }
        }
    }
    found.sort();
    found
}

/// One wal-fetch as PostgreSQL's restore_command runs it: exit code,
/// stderr, and the file when it wrote one.
fn wal_fetch(
    charm_bin: &Path,
    settings: &Path,
    segment: &str,
    dir: &Path,
) -> (i32, String, Option<Vec<u8>>) {
    let dest = dir.join("RECOVERYXLOG");
    let _ = std::fs::remove_file(&dest);
    let out = Command::new(charm_bin)
        .arg("wal-fetch")
        .arg("--settings")
        .arg(settings)
        .arg(segment)
        .arg(&dest)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read(&dest).ok(),
    )
}

/// Takes a backup of `kind` through the proxy; its id when it completed,
/// else the message it failed with, which must name S3.
fn backup(model: &Model, kind: &str) -> Result<String, String> {
    std::thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    let task = model.run_action(UNIT, "create-backup", &[&format!("type={kind}")]);
    eprintln!("{kind} backup through the proxy: {:?}", started.elapsed());
    match task["status"].as_str() {
        Some("completed") => Ok(task["results"]["backup-id"].as_str().unwrap().to_owned()),
        Some("failed") => Err(task["message"].as_str().unwrap().to_owned()),
        _ => panic!("create-backup: {task:#}"),
    }
}

/// A backup's failure message: the anchor's prefix, then a lowercase
/// reason that names S3.
fn assert_clear_failure(message: &str) {
    let reason = message
        .strip_prefix("Failed to backup PostgreSQL with error: ")
        .unwrap_or_else(|| panic!("{message}"));
    assert!(
        reason.starts_with(|c: char| c.is_ascii_lowercase()) && reason.contains("S3"),
        "{message}"
    );
}

fn restore(model: &Model, params: &[&str]) -> Value {
    let started = Instant::now();
    let task = model.run_action("postgresql/leader", "restore", params);
    eprintln!(
        "restore {params:?} through the proxy: {:?}",
        started.elapsed()
    );
    task
}

/// The archiver's count of segments archived.
fn archived_count(db: &Db) -> i64 {
    db.query_i64("SELECT archived_count FROM pg_stat_archiver")
        .unwrap()
}

#[test]
fn a_flaky_s3_never_loses_wal_nor_passes_off_a_broken_backup() {
    let started = Instant::now();
    let seed = support::seed("FAULT_PROXY_SEED");
    eprintln!("proxy choices from FAULT_PROXY_SEED={seed}");
    let model = &Model::new();
    support::deploy_with_s3(model);
    // Uploads overlap, so that late answers do not add up.
    model.ok(&["config", "postgresql", "backup-upload-concurrency=8"]);
    settled(model, "postgresql", 1, Duration::from_secs(60));
    let deployed = started.elapsed();
    let state: Value =
        serde_json::from_slice(&std::fs::read(model.dir().join("model/model.json")).unwrap())
            .unwrap();
    let repository = support::served(model).join("juju-local/local.postgresql");
    let unit_storage = storage(model, UNIT);
    let settings = unit_storage.join("s3-repository.json");
    let charm_bin = unit_storage.join("bin/postgresql-charm");

    // pgbench's tables and a log of commits.
    let operator = password(model, "postgresql");
    let host = address(model, UNIT);
    let db = Db::remote(host, "operator", &operator).unwrap();
    pgbench(host, &operator, &["-i", "-s", "2", "-q"]);
    db.execute("CREATE TABLE commit_log (at timestamptz NOT NULL)")
        .unwrap();
    let script = model.dir().join("logged-tpcb.sql");
    std::fs::write(&script, LOGGED_TPCB).unwrap();
    let load = |seconds: &str| {
        pgbench(
            host,
            &operator,
            &[
                "-n",
                "-s",
                "2",
                "-T",
                seconds,
                "-f",
                script.to_str().unwrap(),
            ],
        )
    };

    // The s3-integrator pointed at the proxy, still honest; the unit
    // active again, its archive programs set to the proxy.
    let proxy = Proxy::start(
        state["s3_server"]["endpoint"].as_str().unwrap(),
        seed,
        Shares::default(),
    );
    model.ok(&[
        "config",
        "s3-integrator",
        &format!("endpoint={}", proxy.endpoint()),
    ]);
    settled(model, "postgresql", 1, Duration::from_secs(60));
    let written: Value = serde_json::from_slice(&std::fs::read(&settings).unwrap()).unwrap();
    assert_eq!(written["endpoint"], proxy.endpoint().as_str());
    let archived_before = archived_count(&db);

    // Backups through the flaky proxy: each completes or fails naming S3.
    proxy.set_shares(FLAKY);
    let mut taken = Vec::new();
    let mut failures = Vec::new();
    for planned in ["full", "incremental", "incremental"] {
        // Until a full backup completes, an incremental one has nothing to build on.
        let kind = if taken.is_empty() { "full" } else { planned };
        load("2");
        match backup(model, kind) {
            Ok(id) => taken.push(id),
            Err(message) => {
                eprintln!("{kind} backup failed: {message}");
                assert_clear_failure(&message);
                failures.push(message);
            }
        }
    }
    let through_backups = proxy.counts();
    assert!(
        !taken.is_empty(),
        "no backup completed through the proxy: {failures:#?}"
    );

    // WAL keeps being archived through it.
    let segment = db
        .query_text("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    let archiving = Instant::now();
    while db
        .query_text("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        .unwrap()
        < segment
    {
        assert!(
            archiving.elapsed() < Duration::from_secs(90),
            "{segment} was not archived through the proxy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(archived_count(&db) > archived_before);

    // Every completed backup is whole (read back without faults).
    proxy.set_shares(Shares::default());
    for id in &taken {
        let task = model.run_action(UNIT, "verify-backup", &[&format!("backup-id={id}")]);
        assert_eq!(task["status"], "completed", "verify-backup {id}: {task:#}");
    }

    // wal-fetch under harsher faults: an archived segment comes back whole,
    // or the fetch aborts recovery; it is never "not in the archive".
    proxy.set_shares(HARSH);
    let before_fetches = proxy.counts();
    let segments = archived_segments(&repository);
    assert!(segments.len() >= 4, "{segments:?}");
    let scratch = tempfile::tempdir_in("/tmp").unwrap();
    let mut fetched = 0;
    let mut aborted = Vec::new();
    let fetching = Instant::now();
    for n in 0..40 {
        let (segment, object) = &segments[n % segments.len()];
        let (code, stderr, file) = wal_fetch(&charm_bin, &settings, segment, scratch.path());
        assert_ne!(code, NOT_FOUND, "{segment} reported missing: {stderr}");
        if code == 0 {
            let stored = zstd::decode_all(std::fs::File::open(object).unwrap()).unwrap();
            assert!(file.as_deref() == Some(&stored[..]), "{segment} differs");
            fetched += 1;
        } else {
            assert!(code > 125, "{segment}: exit {code}: {stderr}");
            assert!(file.is_none());
            aborted.push(stderr);
        }
    }
    // A segment that is not there is still said to be missing.
    let (code, stderr, _) = wal_fetch(
        &charm_bin,
        &settings,
        "00000001000000FF000000FE",
        scratch.path(),
    );
    assert_eq!(code, NOT_FOUND, "{stderr}");
    let fetches_took = fetching.elapsed();
    let during_fetches = proxy.counts();
    assert!(
        during_fetches.failed() - before_fetches.failed() >= 10,
        "{before_fetches:?} {during_fetches:?}"
    );

    // Committed rows, then a restore to the latest point through the proxy.
    proxy.set_shares(FLAKY);
    load("3");
    let latest = snapshot(&db);
    proxy.set_shares(RESTORING);
    let task = restore(model, &["restore-to-time=latest"]);
    assert_eq!(task["status"], "completed", "{task:#}");
    assert_eq!(task["results"]["backup-id"], taken.last().unwrap().as_str());
    let db = Db::remote(host, "operator", &operator).unwrap();
    assert_eq!(snapshot(&db), latest);
    assert_balanced(&db);
    assert_amcheck_clean(host, &operator);

    let counts = proxy.counts();
    assert!(
        counts.delayed > 0 && counts.slow_down > 0 && counts.internal > 0 && counts.dropped > 0
    );

    eprintln!(
        "seed {seed}: deployed in {deployed:?}; {} of 3 backups completed through the proxy \
         ({through_backups:?}), failures: {failures:?}; wal-fetch: {fetched} of 40 fetched, \
         {} aborted, in {fetches_took:?}; proxy in all: {counts:?} ({} requests); whole test {:?}",
        taken.len(),
        aborted.len(),
        counts.total(),
        started.elapsed()
    );
}
