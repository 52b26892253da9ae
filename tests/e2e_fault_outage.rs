//! End to end: the model's S3 server stopped for a minute while pgbench and
//! a one-row-per-transaction writer run against the primary. During the
//! outage the archive is really blocked (archive_command fails, `.ready`
//! segments pile up); once S3 is back the archive catches up within a
//! bounded time, up to the segment closed at the end of the load, with no
//! `.ready` file left; and a restore of the full backup taken before the
//! load to `latest` brings back every row whose commit was acknowledged,
//! with pgbench's balances agreeing and `pg_amcheck` clean.

mod support;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::Db;
use support::pg::{assert_amcheck_clean, assert_balanced, finished, pgbench};
use support::{address, backup, password, settled, Model};

/// How long S3 is down.
const OUTAGE: Duration = Duration::from_secs(60);
/// How long the load runs before S3 stops.
const LEAD: Duration = Duration::from_secs(5);
/// How long the load goes on after S3 is back.
const TAIL: Duration = Duration::from_secs(15);
/// How long the archive may take to catch up once the load has ended.
const CATCH_UP: Duration = Duration::from_secs(60);
/// pgbench's scale (100,000 accounts each).
const SCALE: &str = "5";
/// WAL segments switched during the outage, besides what the load fills.
const SWITCHES: usize = 4;

/// The archiver as the server sees it.
#[derive(Debug)]
struct Archiver {
    failed: i64,
    last_archived: String,
    ready: i64,
}

fn archiver(db: &Db) -> Archiver {
    let row = db
        .query_row(
            "SELECT failed_count::text, coalesce(last_archived_wal, ''), \
                    (SELECT count(*) FROM pg_ls_archive_statusdir() \
                      WHERE name LIKE '%.ready')::text \
               FROM pg_stat_archiver",
        )
        .unwrap();
    let field = |i: usize| row[i].clone().unwrap_or_default();
    Archiver {
        failed: field(0).parse().unwrap(),
        last_archived: field(1),
        ready: field(2).parse().unwrap(),
    }
}

/// Closes the current WAL segment (after a write, so there is one to
/// close) and returns its name.
fn switch_wal(db: &Db) -> String {
    db.execute("SELECT pg_current_xact_id()").unwrap();
    db.query_text("SELECT pg_walfile_name(pg_switch_wal() - 1)")
        .unwrap()
}

/// What the writer saw: the highest id whose commit was acknowledged, and
/// the first error, if any.
struct Written {
    highest: i64,
    error: Option<String>,
}

/// Inserts 1, 2, 3… into commit_log, one autocommitted transaction each,
/// until `stop` is set.
fn writer(host: IpAddr, operator: String, stop: Arc<AtomicBool>) -> JoinHandle<Written> {
    std::thread::spawn(move || {
        let db = Db::remote(host, "operator", &operator).unwrap();
        let mut written = Written {
            highest: 0,
            error: None,
        };
        while !stop.load(Ordering::Relaxed) {
            let id = written.highest + 1;
            match db.execute(&format!("INSERT INTO commit_log (id) VALUES ({id})")) {
                Ok(()) => written.highest = id,
                Err(err) => {
                    written.error = Some(format!("{err:#}"));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        written
    })
}

/// What the load left: pgbench's history and commit_log, counted and summed.
const TOTALS: &str = "SELECT (SELECT count(*) FROM pgbench_history)::text, \
                             (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::text, \
                             (SELECT count(*) FROM commit_log)::text, \
                             (SELECT coalesce(max(id), 0) FROM commit_log)::text";

#[test]
fn a_minute_without_s3_under_load_loses_no_acknowledged_commit() {
    let started = Instant::now();
    let model = &Model::new();
    support::deploy_with_s3(model);
    settled(model, "postgresql", 1, Duration::from_secs(60));
    let operator = password(model, "postgresql");
    let host = address(model, "postgresql/0");
    let db = Db::remote(host, "operator", &operator).unwrap();
    let deployed = started.elapsed();

    // pgbench's tables, the commit log, and a full backup before any load.
    finished(
        pgbench(host, &operator, &["-i", "-s", SCALE, "-q"]),
        "pgbench -i",
    );
    db.execute("CREATE TABLE commit_log (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        .unwrap();
    let full = backup(model, "postgresql/0", "full");
    let prepared = started.elapsed();

    // The load: pgbench and the writer, for the whole outage and a margin.
    let seconds = (LEAD + OUTAGE + TAIL).as_secs().to_string();
    let load = pgbench(
        host,
        &operator,
        &["-n", "-c", "3", "-j", "2", "-R", "150", "-T", &seconds],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let written = writer(host, operator.clone(), stop.clone());
    std::thread::sleep(LEAD);

    // S3 down: segments close (the load's and ours) and none can be archived.
    let before = archiver(&db);
    model.ok(&["s3-server", "stop"]);
    let outage_started = Instant::now();
    let mut during = Vec::new();
    for _ in 0..SWITCHES {
        std::thread::sleep(OUTAGE / (SWITCHES as u32 + 1));
        switch_wal(&db);
        during.push(archiver(&db));
    }
    std::thread::sleep(OUTAGE.saturating_sub(outage_started.elapsed()));
    let blocked = archiver(&db);
    model.ok(&["s3-server", "start"]);
    let outage = outage_started.elapsed();
    let restarted = Instant::now();
    assert!(
        blocked.failed > before.failed && blocked.ready >= SWITCHES as i64,
        "the archive was not blocked during the outage: before {before:?}, during {during:?}, \
         at the end {blocked:?}"
    );
    assert_eq!(
        blocked.last_archived, during[0].last_archived,
        "a segment was archived while S3 was down: {during:?} then {blocked:?}"
    );

    // The load ends; the writer stops; the last segment closes.
    finished(load, "pgbench under the outage");
    stop.store(true, Ordering::Relaxed);
    let written = written.join().unwrap();
    assert_eq!(written.error, None, "a commit failed during the outage");
    assert!(written.highest > 1000, "only {} commits", written.highest);
    let last_segment = switch_wal(&db);

    // The archive catches up: the last segment archived, nothing left ready.
    let catching_up = Instant::now();
    let caught_up = loop {
        let now = archiver(&db);
        if now.last_archived >= last_segment && now.ready == 0 {
            break now;
        }
        assert!(
            catching_up.elapsed() < CATCH_UP,
            "the archive did not catch up with {last_segment} within {CATCH_UP:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let caught_up_after = (restarted.elapsed(), catching_up.elapsed());
    let totals = db.query_row(TOTALS).unwrap();
    drop(db);

    // The full backup restored to the end of the archive.
    let restore_started = Instant::now();
    let task = model.run_action("postgresql/leader", "restore", &["restore-to-time=latest"]);
    let restore_took = restore_started.elapsed();
    assert_eq!(task["status"], "completed", "{task:#}");
    assert_eq!(task["results"]["restore-status"], "restored", "{task:#}");
    assert_eq!(task["results"]["backup-id"], full.as_str(), "{task:#}");

    // Every acknowledged commit is back, and the load's data with it.
    let db = Db::remote(host, "operator", &operator).unwrap();
    let highest = written.highest;
    assert_eq!(
        db.query_i64(&format!(
            "SELECT count(*) FROM commit_log WHERE id BETWEEN 1 AND {highest}"
        ))
        .unwrap(),
        highest,
        "acknowledged commits are missing after the restore"
    );
    assert_eq!(
        db.query_i64("SELECT max(id) FROM commit_log").unwrap(),
        highest
    );
    assert_eq!(db.query_row(TOTALS).unwrap(), totals);
    assert_balanced(&db);
    assert_amcheck_clean(host, &operator);
    db.execute("INSERT INTO commit_log (id) VALUES (0)")
        .unwrap();

    eprintln!(
        "deployed in {deployed:?}, pgbench -i and full backup in {:?}; S3 down {outage:?} \
         ({} archive failures, {} segments ready at the end); {highest} commits logged; archive \
         caught up {:?} after S3 came back, {:?} after the load ended (to {}); restore to latest {restore_took:?}; \
         whole test {:?}",
        prepared - deployed,
        blocked.failed - before.failed,
        blocked.ready,
        caught_up_after.0,
        caught_up_after.1,
        caught_up.last_archived,
        started.elapsed()
    );
}
