//! End to end: scheduled backups under juju-local, its clock driven minute
//! by minute. With a full backup every three minutes and an incremental
//! every minute, each minute gets exactly one backup (the first one full,
//! as there is nothing to build on), taken by the primary (no TLS), while a
//! replica is added and the leader's unit (the primary) is removed; a tick
//! repeated inside a minute takes nothing; no two backups overlap; they list
//! like manual ones. With S3 stopped, the failed tick shows in the status
//! of the unit that should have taken it, until the next scheduled backup
//! succeeds. Every unit runs its backup timer, whose own juju-exec calls
//! juju-local refuses while its clock is driven.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{settled, storage, Model};

const TICK: &str = "bin/postgresql-charm backup-tick --at {time}";

/// What the test reads of a backup's record.
#[derive(Debug)]
struct Row {
    id: String,
    scheduled: String,
    kind: String,
    unit: String,
    start: String,
    finish: String,
    status: String,
}

/// Every record in the repository, by start time.
fn records(model: &Model) -> Vec<Row> {
    let backups = support::served(model).join("juju-local/local.postgresql/backups");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut out: Vec<_> = std::fs::read_dir(&backups)
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| std::fs::read(e.path().join("record.json")).ok())
        .map(|body| {
            let r: Value = serde_json::from_slice(&body).unwrap();
            Row {
                id: text(&r["id"]),
                scheduled: text(&r["scheduled"]),
                kind: text(&r["kind"]),
                unit: text(&r["unit"]),
                start: text(&r["start-time"]),
                finish: text(&r["finish-time"]),
                status: text(&r["status"]),
            }
        })
        .collect();
    out.sort_by(|a, b| a.start.cmp(&b.start));
    out
}

/// Advances the driven clock by `minutes`, ticking on every unit.
fn advance(model: &Model, minutes: u32) -> String {
    let mut args = vec!["clock", "advance"];
    let minutes = format!("{minutes}m");
    args.extend([minutes.as_str(), "postgresql", "--"]);
    args.extend(TICK.split(' '));
    model.ok(&args)
}

fn primary(model: &Model) -> String {
    let task = model.run_action("postgresql/leader", "get-primary", &[]);
    task["results"]["primary"].as_str().unwrap().to_owned()
}

fn message(model: &Model, unit: &str) -> String {
    model.status()["applications"]["postgresql"]["units"][unit]["workload-status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn scheduled_backups_follow_the_clock_across_unit_and_leader_changes() {
    let model = &Model::new();
    model.ok(&[
        "deploy",
        support::build().charm.to_str().unwrap(),
        "-n",
        "2",
        "--config",
        "profile=testing",
    ]);
    model.ok(&["deploy", "s3-integrator"]);
    model.ok(&["integrate", "postgresql:s3-parameters", "s3-integrator"]);
    settled(model, "postgresql", 2, Duration::from_secs(120));
    model.ok(&["clock", "set", "2030-01-01T00:00:00Z"]);
    model.ok(&[
        "config",
        "postgresql",
        "backup-schedule-full=*/3 * * * *",
        "backup-schedule-incremental=* * * * *",
    ]);

    // Each unit runs its timer; juju-local refuses the timer's own calls.
    for unit in ["postgresql/0", "postgresql/1"] {
        assert!(storage(model, unit).join("backup-timer.json").exists());
        let pattern = format!("backup-timer {unit} ");
        support::eventually(&format!("{unit}'s timer runs"), || {
            std::process::Command::new("pgrep")
                .args(["-f", &pattern])
                .output()
                .unwrap()
                .status
                .success()
        });
    }
    let refused = std::process::Command::new(model.dir().join("model/bin/juju-exec"))
        .args(["-u", "postgresql/1", "true"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the model's clock is driven"),
        "{refused:?}"
    );

    // Two minutes, two backups: the first full, then an incremental.
    assert_eq!(primary(model), "postgresql/0");
    advance(model, 2);
    // A tick again inside the minute takes nothing more.
    model.ok(&[
        "exec",
        "--unit",
        "postgresql/0",
        "--",
        "bin/postgresql-charm",
        "backup-tick",
        "--at",
        "2030-01-01T00:02:40Z",
    ]);
    let taken = records(model);
    let got: Vec<(&str, &str, &str)> = taken
        .iter()
        .map(|r| (r.scheduled.as_str(), r.kind.as_str(), r.unit.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("2030-01-01T00:01:00Z", "full", "postgresql/0"),
            ("2030-01-01T00:02:00Z", "incremental", "postgresql/0"),
        ],
        "{taken:#?}"
    );

    // A replica is added: the full backup of minute 3 still comes, once.
    model.ok(&["add-unit", "postgresql"]);
    settled(model, "postgresql", 3, Duration::from_secs(120));
    advance(model, 1);

    // The leader's unit, the primary, goes: the new primary takes minute 4.
    model.ok(&["remove-unit", "postgresql/0"]);
    settled(model, "postgresql", 2, Duration::from_secs(120));
    let new_primary = primary(model);
    assert_ne!(new_primary, "postgresql/0");
    advance(model, 1);

    // S3 stopped: minute 5 fails, and the primary's status says so.
    model.ok(&["s3-server", "stop"]);
    advance(model, 1);
    let failed = message(model, &new_primary);
    assert!(
        failed.contains("scheduled backups cannot run")
            && failed.contains("the S3 repository could not be reached"),
        "{failed}"
    );
    // Back: minute 6's full backup succeeds and the status is clear again.
    model.ok(&["s3-server", "start"]);
    advance(model, 1);
    assert_eq!(message(model, &new_primary), "Primary");

    let taken = records(model);
    let got: Vec<(&str, &str, &str, &str)> = taken
        .iter()
        .map(|r| {
            (
                r.scheduled.as_str(),
                r.kind.as_str(),
                r.unit.as_str(),
                r.status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2030-01-01T00:01:00Z", "full", "postgresql/0", "finished"),
            (
                "2030-01-01T00:02:00Z",
                "incremental",
                "postgresql/0",
                "finished"
            ),
            ("2030-01-01T00:03:00Z", "full", "postgresql/0", "finished"),
            (
                "2030-01-01T00:04:00Z",
                "incremental",
                new_primary.as_str(),
                "finished"
            ),
            (
                "2030-01-01T00:06:00Z",
                "full",
                new_primary.as_str(),
                "finished"
            ),
        ],
        "{taken:#?}"
    );
    // Never two at once: each starts after the one before has finished.
    for pair in taken.windows(2) {
        assert!(pair[1].start >= pair[0].finish, "overlap: {pair:#?}");
    }
    // They list like manual backups.
    let task = model.run_action(&new_primary, "list-backups", &[]);
    let table = task["results"]["backups"].as_str().unwrap();
    for record in &taken {
        assert!(
            table.contains(&record.id),
            "{} not listed:\n{table}",
            record.id
        );
    }
}
