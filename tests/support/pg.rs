//! PostgreSQL's own programs against a unit, as the end-to-end tests run
//! them: pgbench as load, and the checks a restored cluster must pass
//! (pgbench's balance invariant, `pg_amcheck`).

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};

use postgresql_charm::postgres::{binaries, sql::Db};

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
