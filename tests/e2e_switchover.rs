//! End to end: a switchover and the former primary's return. On a
//! two-unit cluster with S3, `promote-to-primary` refuses bad requests,
//! then moves the primary to the replica without losing a committed row;
//! the former primary (the leader, rejoining inside the action) comes back
//! as a streaming replica by `pg_rewind`, moving less than 10 % of the
//! database: what pg_rewind copied (its own count, in the unit's log) plus
//! the WAL it then streamed (from `pg_stat_wal_receiver`'s start to the
//! primary's position). Then back again, so that a non-leader former
//! primary rejoins on its own hook. Rows, pgbench's balances and
//! `pg_amcheck` are checked on both units.

mod support;

use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::{parse_lsn, Db};
use support::pg::{
    assert_amcheck_clean, assert_balanced, caught_up, connect, database_bytes, finished, lsn,
    pgbench,
};
use support::{address, settled, storage, Model};

/// Every row of pgbench's tables and the marks, as one comparable line.
const CONTENT: &str = "SELECT (SELECT count(*) FROM pgbench_accounts)::text || '/' || \
     (SELECT sum(abalance) FROM pgbench_accounts)::text || '/' || \
     (SELECT count(*) FROM pgbench_history)::text || '/' || \
     (SELECT sum(tbalance) FROM pgbench_tellers)::text || '/' || \
     (SELECT string_agg(at, ',' ORDER BY at) FROM marks)";

/// Waits until `replica` streams and has replayed all the primary wrote.
fn streaming_and_caught_up(primary: &Db, replica: &Db, name: &str) {
    caught_up(primary, replica, name);
    support::eventually(&format!("{name} streams"), || {
        replica.is_streaming().unwrap()
    });
}

/// Runs `promote-to-primary` on `on`; returns the task.
fn promote(model: &Model, on: &str, params: &[&str]) -> serde_json::Value {
    let started = Instant::now();
    let task = model.run_action(on, "promote-to-primary", params);
    eprintln!(
        "promote-to-primary {params:?} on {on}: {:?}",
        started.elapsed()
    );
    task
}

/// What `unit` moved to rejoin `primary`: what pg_rewind copied (its own
/// count, from the unit's log) and the WAL from where its recovery starts
/// (the backup label pg_rewind wrote, also logged) to the primary's
/// position now, fetched from the archive or streamed.
fn moved_to_rejoin(model: &Model, unit: &str, primary: &Db) -> (u64, u64) {
    let said = model.logged(unit, "as a replica by pg_rewind: copied");
    let line = said.last().unwrap_or_else(|| {
        panic!(
            "{unit} did not rejoin by pg_rewind:\n{}",
            rejoin_log(model, unit)
        )
    });
    let after = |marker: &str| {
        line.split(marker)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {marker:?} in {line:?}"))
            .to_owned()
    };
    let copied_kb: u64 = after("copied ").parse().unwrap();
    let replay_from = parse_lsn(&after("replaying WAL from ")).unwrap();
    let wal = lsn(primary, "SELECT pg_current_wal_lsn()::text") - replay_from;
    (copied_kb * 1024, wal)
}

/// What `unit` said about rejoining, and the end of its server's logs.
fn rejoin_log(model: &Model, unit: &str) -> String {
    let mut said: Vec<String> = ["rewind", "seed", "pg_basebackup", "rejoin"]
        .iter()
        .flat_map(|w| model.logged(unit, w))
        .collect();
    let logs = storage(model, unit).join("logs");
    for entry in std::fs::read_dir(logs).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        said.push(format!("--- {}", entry.path().display()));
        said.extend(
            lines[lines.len().saturating_sub(60)..]
                .iter()
                .map(|l| l.to_string()),
        );
    }
    said.join("\n")
}

/// Checks that `former` rejoined `primary` by pg_rewind, with everything,
/// moving less than a tenth of the database, and not by a whole copy (it
/// still says it seeded itself `copies` times, as before the switchover).
fn assert_rejoined(model: &Model, former: &str, primary: &Db, operator: &str, copies: usize) {
    let replica = connect(address(model, former), operator);
    assert!(
        replica.is_in_recovery().unwrap(),
        "{former} is not a replica"
    );
    streaming_and_caught_up(primary, &replica, former);
    assert_eq!(
        replica.query_text(CONTENT).unwrap(),
        primary.query_text(CONTENT).unwrap(),
        "{former} does not have the primary's rows"
    );
    assert_balanced(&replica);
    let said = model.logged(former, "seeded this unit");
    assert_eq!(
        said.len(),
        copies,
        "{former} copied the data whole: {said:?}\n{}",
        rejoin_log(model, former)
    );
    let (copied, wal) = moved_to_rejoin(model, former, primary);
    let database = database_bytes(primary);
    eprintln!(
        "{former} rejoined: pg_rewind copied {:.1} MB and it replayed {:.1} MB of WAL, for a \
         database of {:.1} MB",
        copied as f64 / 1e6,
        wal as f64 / 1e6,
        database as f64 / 1e6
    );
    assert!(
        (copied + wal) * 10 < database,
        "{former} moved {copied} + {wal} bytes to rejoin, not under 10 % of the \
         database's {database}"
    );
    assert!(
        storage(model, former).join("rewound-at").exists(),
        "{former} did not note its rewind, so its next backup could take unsound deltas"
    );
}

#[test]
fn a_switchover_loses_nothing_and_the_former_primary_rejoins_by_rewind() {
    let model = Model::new();
    let support::Primary {
        operator,
        host: h0,
        db: db0,
    } = support::primary_with_pgbench(&model, &["-i", "-s", "100", "--init-steps=dtGvp"]);
    model.ok(&["add-unit", "postgresql"]);
    settled(&model, "postgresql", 2, Duration::from_secs(120));
    let h1 = address(&model, "postgresql/1");
    let load = ["-n", "-c", "2", "-j", "2", "-t", "300"];
    finished(pgbench(h0, &operator, &load), "pgbench");
    db0.execute("INSERT INTO marks VALUES ('1 before the switchover')")
        .unwrap();
    let db1 = connect(h1, &operator);
    caught_up(&db0, &db1, "postgresql/1");

    // Bad requests change nothing.
    for (on, params, want) in [
        (
            "postgresql/0",
            vec!["unit=postgresql/0"],
            "already the primary",
        ),
        (
            "postgresql/0",
            vec!["unit=postgresql/7"],
            "not a unit of this application",
        ),
        (
            "postgresql/0",
            vec!["unit=mysql/1"],
            "not a unit of postgresql",
        ),
        (
            "postgresql/1",
            vec![],
            "juju run postgresql/leader promote-to-primary unit=postgresql/1",
        ),
    ] {
        let task = promote(&model, on, &params);
        assert_eq!(task["status"], "failed", "{params:?} on {on}: {task:#}");
        let message = task["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{params:?} on {on}: {message}");
    }
    let primary = model.run_action("postgresql/0", "get-primary", &[]);
    assert_eq!(primary["results"]["primary"], "postgresql/0");
    db0.execute("INSERT INTO marks VALUES ('2 after the refusals')")
        .unwrap();
    let before = db0.query_text(CONTENT).unwrap();

    // Over to postgresql/1: it has every committed row.
    let copies = |unit| model.logged(unit, "seeded this unit").len();
    let (copies0, copies1) = (copies("postgresql/0"), copies("postgresql/1"));
    let task = promote(&model, "postgresql/0", &["unit=postgresql/1"]);
    assert_eq!(task["status"], "completed", "{task:#}");
    assert_eq!(task["results"]["primary"], "postgresql/1", "{task:#}");
    assert_eq!(
        task["results"]["former-primary"], "postgresql/0",
        "{task:#}"
    );
    let primary = model.run_action("postgresql/0", "get-primary", &[]);
    assert_eq!(primary["results"]["primary"], "postgresql/1");
    let db1 = connect(h1, &operator);
    assert!(
        !db1.is_in_recovery().unwrap(),
        "postgresql/1 was not promoted"
    );
    assert_eq!(db1.query_text(CONTENT).unwrap(), before, "rows were lost");

    // postgresql/0, the leader, rejoined inside the action, by pg_rewind;
    // then it follows the new primary's writes.
    settled(&model, "postgresql", 2, Duration::from_secs(120));
    assert_rejoined(&model, "postgresql/0", &db1, &operator, copies0);
    db1.execute("INSERT INTO marks VALUES ('3 on the new primary')")
        .unwrap();
    finished(pgbench(h1, &operator, &load), "pgbench on postgresql/1");
    let db0 = connect(h0, &operator);
    caught_up(&db1, &db0, "postgresql/0");
    assert_eq!(
        db0.query_text(CONTENT).unwrap(),
        db1.query_text(CONTENT).unwrap()
    );

    // And back: the leader takes over; postgresql/1 rejoins on its hook.
    let task = promote(&model, "postgresql/0", &[]);
    assert_eq!(task["status"], "completed", "{task:#}");
    assert_eq!(task["results"]["primary"], "postgresql/0", "{task:#}");
    let db0 = connect(h0, &operator);
    assert!(
        !db0.is_in_recovery().unwrap(),
        "postgresql/0 was not promoted"
    );
    settled(&model, "postgresql", 2, Duration::from_secs(120));
    assert_rejoined(&model, "postgresql/1", &db0, &operator, copies1);
    db0.execute("INSERT INTO marks VALUES ('4 back on postgresql/0')")
        .unwrap();
    finished(pgbench(h0, &operator, &load), "pgbench on postgresql/0");
    let db1 = connect(h1, &operator);
    caught_up(&db0, &db1, "postgresql/1");
    assert_eq!(
        db1.query_text(CONTENT).unwrap(),
        db0.query_text(CONTENT).unwrap()
    );
    assert_eq!(
        db0.query_text("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
            .unwrap(),
        "00000003",
        "two promotions make two new timelines"
    );
    assert_balanced(&db0);
    assert_amcheck_clean(h0, &operator);
}
