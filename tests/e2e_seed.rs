//! End to end: how a new unit gets its data. With no backup in the
//! repository it copies the primary's data by `pg_basebackup`; once a
//! recent backup exists, a unit added under write load restores that backup
//! from juju-local's S3 server, replays the archive, and streams only the
//! tail from the primary: what it received from the primary (from
//! `pg_stat_wal_receiver`'s start to the primary's position) is under 10 %
//! of the database, and it ends up streaming with every row and pgbench's
//! balances, as the primary has them.

mod support;

use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::parse_lsn;
use support::pg::{assert_balanced, caught_up, connect, database_bytes, finished, pgbench};
use support::{address, backup, settled, Model};

/// Every row of pgbench's tables, as one comparable line.
const CONTENT: &str = "SELECT (SELECT count(*) FROM pgbench_accounts)::text || '/' || \
     (SELECT sum(abalance) FROM pgbench_accounts)::text || '/' || \
     (SELECT count(*) FROM pgbench_history)::text || '/' || \
     (SELECT sum(delta) FROM pgbench_history)::text || '/' || \
     (SELECT sum(tbalance) FROM pgbench_tellers)::text || '/' || \
     (SELECT count(*) FROM marks)::text";

#[test]
fn a_new_unit_restores_a_recent_backup_and_streams_only_the_tail() {
    let model = Model::new();
    let support::Primary {
        operator,
        host,
        db: primary,
    } = support::primary_with_pgbench(&model, &["-i", "-s", "30", "-q"]);

    // No backup yet: the first replica copies the primary's data.
    model.ok(&["add-unit", "postgresql"]);
    settled(&model, "postgresql", 2, Duration::from_secs(120));
    assert!(
        !model.logged("postgresql/1", "by pg_basebackup").is_empty(),
        "postgresql/1 did not say it copied the primary's data"
    );

    // A full backup, then writes it does not hold.
    let id = backup(&model, "postgresql/0", "full");
    finished(
        pgbench(host, &operator, &["-c", "2", "-j", "2", "-T", "8"]),
        "pgbench",
    );
    primary
        .execute("INSERT INTO marks VALUES ('after the backup')")
        .unwrap();

    // A unit added now restores that backup and streams the rest.
    // (-n: a run that vacuums first also empties pgbench_history.)
    let load = pgbench(host, &operator, &["-n", "-c", "1", "-T", "20", "-R", "50"]);
    let added = Instant::now();
    model.ok(&["add-unit", "postgresql"]);
    settled(&model, "postgresql", 3, Duration::from_secs(180));
    eprintln!("third unit active after {:?}", added.elapsed());
    let seeded = model.logged("postgresql/2", "seeded this unit from backup");
    assert!(
        seeded.iter().any(|l| l.contains(&id)),
        "postgresql/2 did not seed itself from backup {id}: {seeded:?}\n{}",
        model.logged("postgresql/2", "seed").join("\n")
    );
    finished(load, "pgbench during the seed");
    primary
        .execute("INSERT INTO marks VALUES ('last')")
        .unwrap();

    // It streams, and has everything the primary has.
    let replica = connect(address(&model, "postgresql/2"), &operator);
    assert!(
        replica.is_streaming().unwrap(),
        "postgresql/2 is not streaming"
    );
    caught_up(&primary, &replica, "postgresql/2");
    assert_balanced(&primary);
    let want = primary.query_text(CONTENT).unwrap();
    assert_eq!(replica.query_text(CONTENT).unwrap(), want, "rows differ");
    assert_balanced(&replica);

    // What it took from the primary: its WAL from where streaming began.
    let started_at = replica
        .query_text("SELECT receive_start_lsn::text FROM pg_stat_wal_receiver")
        .unwrap();
    let now = primary
        .query_text("SELECT pg_current_wal_lsn()::text")
        .unwrap();
    let streamed = parse_lsn(&now).unwrap() - parse_lsn(&started_at).unwrap();
    let database = database_bytes(&primary);
    eprintln!(
        "streamed {:.1} MB from the primary for a database of {:.1} MB",
        streamed as f64 / 1e6,
        database as f64 / 1e6
    );
    assert!(
        streamed * 10 <= database,
        "postgresql/2 streamed {streamed} bytes from the primary (from {started_at} to {now}), \
         more than 10 % of the database's {database}"
    );
}
