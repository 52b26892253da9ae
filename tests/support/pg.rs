//! PostgreSQL's own programs against a unit, as the end-to-end tests run
//! them: pgbench as load, and the checks a restored cluster must pass
//! (pgbench's balance invariant, `pg_amcheck`); connections, and waiting
//! for a replica to catch up.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postgresql_charm::postgres::binaries;
use postgresql_charm::postgres::sql::{parse_lsn, Db};

/// One of PostgreSQL's programs, from the installed version.
pub fn pg_tool(name: &str) -> Command {
    Command::new(binaries::find().unwrap().unwrap().program(name))
}

/// pgbench against a server, with its output checked when it ends.
pub fn pgbench(host: IpAddr, operator: &str, args: &[&str]) -> Child {
    pg_tool("pgbench")
        .args(args)
        .args(["-h", &host.to_string(), "-U", "operator", "postgres"])
        .env("PGPASSWORD", operator)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a program started by [`pgbench`]; it must have succeeded.
pub fn finished(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// pgbench's invariant: every balance sum equals the sum of the history.
pub fn assert_balanced(db: &Db) {
    let sums = db
        .query_row(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts)::text, \
                    (SELECT sum(tbalance) FROM pgbench_tellers)::text, \
                    (SELECT sum(bbalance) FROM pgbench_branches)::text, \
                    (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::text",
        )
        .unwrap();
    assert!(
        sums.iter().all(|s| s == &sums[0]),
        "pgbench's balances disagree: {sums:?}"
    );
}

/// `pg_amcheck --all` finds nothing wrong.
pub fn assert_amcheck_clean(host: IpAddr, operator: &str) {
    let mut command = pg_tool("pg_amcheck");
    command
        .args(["-h", &host.to_string(), "-U", "operator"])
        .env("PGPASSWORD", operator);
    assert_amcheck_clean_by(command);
}

/// `pg_amcheck --all` through `command` (`pg_amcheck` with how to connect)
/// finds nothing wrong.
pub fn assert_amcheck_clean_by(mut command: Command) {
    let out = command
        .args([
            "--all",
            "--install-missing",
            "--heapallindexed",
            "-d",
            "postgres",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "pg_amcheck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A connection as `operator` to a unit's server.
pub fn connect(host: IpAddr, operator: &str) -> Db {
    Db::remote(host, "operator", operator).unwrap()
}

/// A position in the WAL, as a number, from a query that returns one.
pub fn lsn(db: &Db, sql: &str) -> u64 {
    parse_lsn(&db.query_text(sql).unwrap()).unwrap()
}

/// Waits (at most a minute) until `replica`, named `name`, has replayed
/// everything the primary wrote so far.
pub fn caught_up(primary: &Db, replica: &Db, name: &str) {
    let target = lsn(primary, "SELECT pg_current_wal_lsn()::text");
    let started = Instant::now();
    loop {
        let replayed = lsn(
            replica,
            "SELECT coalesce(pg_last_wal_replay_lsn(), '0/0')::text",
        );
        if replayed >= target {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} replayed only to {replayed:X} of the primary's {target:X}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The size of every database of a server, in bytes.
pub fn database_bytes(db: &Db) -> u64 {
    db.query_text("SELECT sum(pg_database_size(oid))::text FROM pg_database")
        .unwrap()
        .parse()
        .unwrap()
}
