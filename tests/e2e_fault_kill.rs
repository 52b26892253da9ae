//! End to end: the charm process killed (SIGKILL) at random points of
//! `create-backup`, over many trials of full, incremental and differential
//! backups. After each kill the action ends (failed, or completed when the
//! kill came too late) and never hangs; list-backups shows a backup as
//! finished only when verify-backup passes on it, a cut-off one as failed;
//! no backup stays in progress on the server; the next backup succeeds,
//! taking over the lock the dead process left (and saying so). At the end a
//! backup taken around the kills is restored and the data proven by row
//! counts and checksums.
//!
//! `FAULT_KILL_TRIALS` sets the number of trials (at least the default);
//! `FAULT_KILL_SEED` replays the kill points of an earlier run.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::Db;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::{address, password, Model};

/// Trials in a run; `FAULT_KILL_TRIALS` may ask for more.
const TRIALS: usize = 10;
const UNIT: &str = "postgresql/0";
const KINDS: [&str; 3] = ["full", "incremental", "differential"];
/// The row a backup cut off before its record shows.
const CUT_OFF: &str = "failed: the backup did not finish: it has no record";
/// What the next backup logs when it takes over a dead process's lock.
const TAKEOVER: &str = "taking over a stale backup lock held by postgresql/0";

/// The data, as counted and summed: what a restore must bring back.
fn snapshot(db: &Db) -> String {
    db.query_text(
        "SELECT (SELECT count(*) FROM filler) || ' filler rows, md5 ' || \
                (SELECT md5(string_agg(a || b, '' ORDER BY i)) FROM filler) || '; ' || \
                (SELECT count(*) FROM churn) || ' churn rows, md5 ' || \
                (SELECT coalesce(md5(string_agg(payload, '' ORDER BY id)), '-') FROM churn)",
    )
    .unwrap()
}

/// New, poorly compressible rows, so that every kind of backup has work.
fn churn(db: &Db, rows: u32) {
    db.execute(&format!(
        "INSERT INTO churn (payload) SELECT md5(random()::text) || md5(random()::text) || \
         md5(random()::text) FROM generate_series(1, {rows})"
    ))
    .unwrap();
}

/// One row of list-backups: id, action and status.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: String,
    action: String,
    status: String,
}

fn listed(model: &Model) -> BTreeMap<String, Row> {
    let task = model.run_action(UNIT, "list-backups", &[]);
    assert_eq!(task["status"], "completed", "{task:#}");
    task["results"]["backups"]
        .as_str()
        .unwrap()
        .lines()
        .skip(2)
        .filter(|line| line.contains(" | ") && !line.starts_with("backup-id "))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
            let row = Row {
                id: cells[0].to_owned(),
                action: cells[1].to_owned(),
                status: cells[2].to_owned(),
            };
            (row.id.clone(), row)
        })
        .collect()
}

fn verify(model: &Model, id: &str) {
    let task = model.run_action(UNIT, "verify-backup", &[&format!("backup-id={id}")]);
    assert_eq!(task["status"], "completed", "verify-backup {id}: {task:#}");
    let verified = task["results"]["verified"].as_str().unwrap();
    assert!(verified.starts_with(&format!("{id}: ok (")), "{verified}");
}

/// `create-backup` in the background, as a user's `juju run` would be.
fn spawn_backup(model: &Model, kind: &str) -> Child {
    Command::new(&support::build().juju_local)
        .args(["run", UNIT, "create-backup", &format!("type={kind}")])
        .args(["--format", "json"])
        .env("JUJU_LOCAL_MODEL", model.dir().join("model"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The task juju-local reports for a background action; it must come
/// within `limit`, whatever happened to the charm.
fn task_of(child: Child, limit: Duration) -> Value {
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: signalling the juju-local process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("juju-local did not report the action within {limit:?}");
        }
    };
    let tasks: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "create-backup printed no JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    tasks[UNIT].clone()
}

/// The process of the unit's charm binary that runs `action`, if any: its
/// executable is `charm_bin` and its environment names the action.
fn action_process(charm_bin: &Path, action: &str) -> Option<libc::pid_t> {
    let wanted = format!("JUJU_ACTION_NAME={action}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
            runs(pid, charm_bin, &wanted).then_some(pid)
        })
}

fn runs(pid: libc::pid_t, charm_bin: &Path, env_line: &str) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    std::fs::read_link(proc.join("exe")).is_ok_and(|exe| exe == charm_bin)
        && std::fs::read(proc.join("environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == env_line.as_bytes()))
}

/// Sleeps until `at`, then SIGKILLs the charm process running
/// create-backup, if it still runs; whether a signal was sent.
fn kill_at(charm_bin: &Path, child: &mut Child, at: Instant) -> bool {
    let wanted = "JUJU_ACTION_NAME=create-backup";
    let mut pid = None;
    loop {
        if pid.is_none() {
            pid = action_process(charm_bin, "create-backup");
        }
        if Instant::now() >= at {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5).min(at - Instant::now()));
    }
    let pid = pid.or_else(|| action_process(charm_bin, "create-backup"));
    // Checked once more just before: the process may have ended meanwhile.
    match pid {
        // SAFETY: a plain signal to a process checked to be the charm's action.
        Some(pid) if runs(pid, charm_bin, wanted) => unsafe { libc::kill(pid, libc::SIGKILL) == 0 },
        _ => false,
    }
}

/// Waits until the wall clock is past the second of backup `id`: backup
/// ids are whole seconds.
fn after(id: Option<&str>) {
    let Some(id) = id else { return };
    let second = chrono::NaiveDateTime::parse_from_str(id, "%Y-%m-%dT%H:%M:%SZ")
        .unwrap()
        .and_utc();
    let next = second + chrono::Duration::milliseconds(1020);
    if let Ok(wait) = (next - chrono::Utc::now()).to_std() {
        std::thread::sleep(wait);
    }
}

/// Sessions still in a backup started by the charm (their last query).
fn backups_in_progress(db: &Db) -> i64 {
    db.query_i64(
        "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
         AND query ILIKE 'SELECT pg_backup_start(%'",
    )
    .unwrap()
}

/// What one trial left.
struct Trial {
    kind: &'static str,
    delay: Duration,
    killed: bool,
    /// The trial's own backup as listed (absent when killed before it
    /// stored anything), and the follow-up backup's id.
    row: Option<Row>,
    follow_up: String,
    data: String,
}

#[test]
fn killing_the_charm_mid_backup_leaves_nothing_half_done() {
    let started = Instant::now();
    let trials = std::env::var("FAULT_KILL_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(TRIALS)
        .max(TRIALS);
    let seed = support::seed("FAULT_KILL_SEED");
    eprintln!("kill points from FAULT_KILL_SEED={seed}, {trials} trials");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let model = &Model::new();
    support::deploy_with_s3(model);
    let deployed = started.elapsed();
    let lock = support::served(model).join("juju-local/local.postgresql/locks/backup.json");
    let charm_bin = model
        .dir()
        .join("model/units/postgresql-0/charm/bin/postgresql-charm")
        .canonicalize()
        .unwrap();

    // About 45 MiB that compresses poorly, and a table each trial adds to.
    let operator = password(model, "postgresql");
    let db = Db::remote(address(model, UNIT), "operator", &operator).unwrap();
    db.execute(
        "CREATE TABLE filler AS SELECT i, md5(random()::text) || md5(random()::text) AS a, \
         md5(random()::text) || md5(random()::text) AS b FROM generate_series(1, 150000) i",
    )
    .unwrap();
    db.execute("CREATE TABLE churn (id bigserial PRIMARY KEY, payload text NOT NULL)")
        .unwrap();
    let loaded = started.elapsed() - deployed;

    // One backup left alone: how long each kind takes, and the first reference.
    let mut typical: BTreeMap<&str, Duration> = BTreeMap::new();
    let begun = Instant::now();
    let task = task_of(spawn_backup(model, "full"), Duration::from_secs(120));
    assert_eq!(task["status"], "completed", "{task:#}");
    let full_took = begun.elapsed();
    for kind in KINDS {
        typical.insert(kind, full_took);
    }
    let first = task["results"]["backup-id"].as_str().unwrap().to_owned();
    let mut known = listed(model);
    assert_eq!(known[&first].status, "finished");
    verify(model, &first);

    let mut done: Vec<Trial> = Vec::new();
    for n in 0..trials {
        let kind = KINDS[n % KINDS.len()];
        churn(&db, 20_000);
        let data = snapshot(&db);
        let takeovers_before = model.debug_log().matches(TAKEOVER).count();

        // The backup, and a kill somewhere in its usual span (or after it).
        after(known.keys().last().map(String::as_str));
        let delay = typical[kind].mul_f64(rng.gen_range(0.0..1.2));
        let begun = Instant::now();
        let mut child = spawn_backup(model, kind);
        let killed = kill_at(&charm_bin, &mut child, begun + delay);
        let task = task_of(child, Duration::from_secs(120));
        let took = begun.elapsed();
        let status = task["status"].as_str().unwrap().to_owned();
        let trial_id = task_id(&task).map(str::to_owned);
        match status.as_str() {
            "completed" => {
                typical.insert(kind, took);
            }
            "failed" => {
                assert!(killed, "trial {n}: failed without a kill: {task:#}");
                assert_eq!(task["message"], "exit status 137", "{task:#}");
            }
            other => panic!("trial {n}: create-backup ended {other}: {task:#}"),
        }

        // Nothing of it runs on: no charm process, no backup on the server.
        assert_eq!(action_process(&charm_bin, "create-backup"), None);
        support::eventually("the killed backup's session ends on the server", || {
            backups_in_progress(&db) == 0
        });
        let lock_left = lock.exists();
        assert!(!lock_left || status == "failed", "trial {n}: lock kept");

        // The next backup succeeds, taking over the lock if one was left.
        after(listed(model).keys().last().map(String::as_str));
        let task = model.run_action(UNIT, "create-backup", &["type=incremental"]);
        assert_eq!(
            task["status"], "completed",
            "trial {n}: next backup: {task:#}"
        );
        let follow_up = task["results"]["backup-id"].as_str().unwrap().to_owned();
        assert!(
            !lock.exists(),
            "trial {n}: the lock outlived the next backup"
        );
        let takeovers = model.debug_log().matches(TAKEOVER).count();
        assert_eq!(
            takeovers,
            takeovers_before + usize::from(lock_left),
            "trial {n}: lock left: {lock_left}"
        );

        // Listed: what was there, unchanged; the follow-up finished; the
        // trial's own backup finished, or cut off when killed.
        let now = listed(model);
        for (id, row) in &known {
            assert_eq!(now.get(id), Some(row), "trial {n}: {id} changed");
        }
        assert_eq!(now[&follow_up].status, "finished", "trial {n}");
        let new: Vec<&Row> = now
            .values()
            .filter(|r| !known.contains_key(&r.id) && r.id != follow_up)
            .collect();
        assert!(new.len() <= 1, "trial {n}: {new:?}");
        let row = new.first().map(|r| (*r).clone());
        match (&row, status.as_str()) {
            (Some(r), "completed") => {
                assert_eq!(trial_id.as_deref(), Some(r.id.as_str()), "trial {n}");
                assert_eq!(r.status, "finished", "trial {n}");
            }
            (None, "completed") => panic!("trial {n}: a completed backup is not listed"),
            (Some(r), _) => assert!(
                r.status == "finished" || r.status == CUT_OFF,
                "trial {n}: {r:?}"
            ),
            (None, _) => {}
        }
        for r in now.values().filter(|r| !known.contains_key(&r.id)) {
            if r.status == "finished" {
                verify(model, &r.id);
            }
        }
        eprintln!(
            "trial {n}: {kind} killed after {delay:?} of a usual {:?}: {status}, {}; \
             the trial took {:?}",
            typical[kind],
            row.as_ref().map_or("nothing stored", |r| r.status.as_str()),
            begun.elapsed()
        );
        known = now;
        done.push(Trial {
            kind,
            delay,
            killed: status == "failed",
            row,
            follow_up,
            data,
        });
    }

    // The count adds up: the first backup, every follow-up, every completed
    // trial; a killed one is finished, cut off, or absent.
    let finished = known.values().filter(|r| r.status == "finished").count();
    let failed = known.values().filter(|r| r.status != "finished").count();
    let killed = done.iter().filter(|t| t.killed).count();
    let killed_finished = done
        .iter()
        .filter(|t| t.killed && t.row.as_ref().is_some_and(|r| r.status == "finished"))
        .count();
    let cut_off = done
        .iter()
        .filter(|t| t.row.as_ref().is_some_and(|r| r.status == CUT_OFF))
        .count();
    assert!(killed >= 1, "no trial was killed mid-backup");
    assert_eq!(
        (finished, failed),
        (1 + trials + (trials - killed) + killed_finished, cut_off),
        "{known:#?}"
    );
    assert!(cut_off <= killed);
    assert!(known.values().all(|r| r.action.ends_with("backup")));
    let task = model.run_action(UNIT, "verify-backup", &[]);
    assert_eq!(task["status"], "completed", "{task:#}");

    // A backup from around the kills, restored: the data as it was then.
    let (restored, expected) = done
        .iter()
        .rev()
        .find_map(|t| {
            let r = t
                .row
                .as_ref()
                .filter(|r| t.killed && r.status == "finished")?;
            Some((r.id.clone(), t.data.clone()))
        })
        .or_else(|| {
            let t = done.iter().rev().find(|t| t.killed)?;
            Some((t.follow_up.clone(), t.data.clone()))
        })
        .unwrap();
    churn(&db, 1_000);
    assert_ne!(snapshot(&db), expected);
    let restore_started = Instant::now();
    let task = model.run_action(UNIT, "restore", &[&format!("backup-id={restored}")]);
    let restore_took = restore_started.elapsed();
    assert_eq!(task["status"], "completed", "{task:#}");
    let db = Db::remote(address(model, UNIT), "operator", &operator).unwrap();
    assert_eq!(snapshot(&db), expected, "restored {restored}");

    let kinds: Vec<String> = done
        .iter()
        .map(|t| {
            format!(
                "{}@{:.2}s{}",
                t.kind,
                t.delay.as_secs_f64(),
                if t.killed { "!" } else { "" }
            )
        })
        .collect();
    eprintln!(
        "seed {seed}: deployed in {deployed:?}, loaded in {loaded:?}, full backup {full_took:?}; \
         {trials} trials ({killed} killed, {cut_off} cut off, {killed_finished} finished \
         despite the kill): {}; restored {restored} in {restore_took:?}; whole test {:?}",
        kinds.join(" "),
        started.elapsed()
    );
}

/// The backup id a completed trial's task reports.
fn task_id(task: &Value) -> Option<&str> {
    task["results"]["backup-id"].as_str()
}
