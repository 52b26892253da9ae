//! End to end: bad input of every kind a user can give, each with the exact
//! message the user reads and proof that nothing changed: malformed action
//! parameters, unknown backup ids, restore targets out of range, bad config
//! values, and bad s3-parameters relation data (an endpoint without its
//! scheme, a CA chain that is not a certificate, ...). One cluster with one
//! full backup serves every case; after each, the repository's backups and
//! owner record, the table's rows and the data directory's identity are as
//! before, and a bad config or relation value, once put back, leaves the
//! unit active again.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::{address, backup, password, settled, Model};

/// How a case is given.
enum Input {
    /// An action on the leader with these parameters.
    Action(&'static str, &'static [&'static str]),
    /// A config value for postgresql; the unit's status message is read.
    Config(&'static str),
    /// A config value for the s3-integrator; postgresql's status is read.
    Relation(&'static str),
}

struct Case {
    input: Input,
    /// The exact message; one ending in `*` is a prefix (the rest names
    /// the time of the run).
    message: &'static str,
}

const fn action(
    name: &'static str,
    params: &'static [&'static str],
    message: &'static str,
) -> Case {
    Case {
        input: Input::Action(name, params),
        message,
    }
}

const fn config(value: &'static str, message: &'static str) -> Case {
    Case {
        input: Input::Config(value),
        message,
    }
}

const fn relation(value: &'static str, message: &'static str) -> Case {
    Case {
        input: Input::Relation(value),
        message,
    }
}

/// A CA chain whose one "certificate" is not one, base64 as the
/// s3-integrator's config takes it.
const BAD_CHAIN: &str =
    "tls-ca-chain=LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmJtOTBJR0VnWTJWeWRBPT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";

/// A password over the 256 characters accepted.
const LONG_PASSWORD: &str = concat!(
    "password=",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "x"
);

const CASES: &[Case] = &[
    // Action parameters the charm checks.
    action(
        "restore",
        &["backup-id=2020-01-01T00:00:00Z"],
        "Invalid backup-id: 2020-01-01T00:00:00Z (no backup has this id; list-backups shows them)",
    ),
    action(
        "restore",
        &["backup-id=latest"],
        "Invalid backup-id: latest (backup ids have the form YYYY-MM-DDTHH:MM:SSZ; list-backups shows them)",
    ),
    action(
        "restore",
        &["restore-to-time=yesterday"],
        "Bad restore-to-time format: yesterday (expected latest, YYYY-MM-DD HH:MM:SS[.ffffff][±TZ] \
         with TZ as Z, +02, +0200 or +02:00 (UTC when absent), or ISO 8601 such as 2026-11-22T10:00:00Z)",
    ),
    action(
        "restore",
        &["restore-to-time=2026-02-30 10:00:00"],
        "Bad restore-to-time format: 2026-02-30 10:00:00 (expected latest, YYYY-MM-DD HH:MM:SS[.ffffff][±TZ] \
         with TZ as Z, +02, +0200 or +02:00 (UTC when absent), or ISO 8601 such as 2026-11-22T10:00:00Z)",
    ),
    action(
        "restore",
        &["restore-to-time=2999-01-01T00:00:00Z"],
        "restore-to-time 2999-01-01T00:00:00Z is in the future (it is now *",
    ),
    action(
        "restore",
        &["restore-to-time=2000-01-01T00:00:00Z"],
        "Can't find the nearest timeline before timestamp 2000-01-01T00:00:00Z to restore \
         (the earliest finished backup ended at *",
    ),
    action(
        "restore",
        &[],
        "Either backup-id or restore-to-time parameters need to be provided to be able to do restore",
    ),
    action(
        "restore",
        &["backup-id=other.postgresql/2020-01-01T00:00:00Z"],
        "Invalid backup-id: no repository other.postgresql under the S3 path (there is none; \
         list-backups shows them)",
    ),
    action(
        "delete-backup",
        &["backup-id=2020-01-01T00:00:00Z"],
        "Invalid backup-id: 2020-01-01T00:00:00Z (no backup has this id; list-backups shows them)",
    ),
    action(
        "delete-backup",
        &["backup-id=''"],
        "backup-id is empty: give the id of the backup to delete, as list-backups shows it",
    ),
    action(
        "verify-backup",
        &["backup-id=2020-01-01T00:00:00Z"],
        "Invalid backup-id: 2020-01-01T00:00:00Z (no backup has this id; list-backups shows them)",
    ),
    action(
        "set-password",
        &["username=operator", "password=''"],
        "the password is empty: give a password, or leave the parameter out to generate one",
    ),
    action(
        "set-password",
        &["username=operator", LONG_PASSWORD],
        "the password is 257 characters long: at most 256 are accepted",
    ),
    // Action parameters the schema refuses before the charm runs.
    action(
        "create-backup",
        &["type=weekly"],
        "ERROR validation failed: (root).type : must match one of the enum values \
         [\"full\",\"differential\",\"incremental\"], given \"weekly\"",
    ),
    action(
        "create-backup",
        &["type=full", "compress=yes"],
        "ERROR validation failed: (root) : additional property \"compress\" is not allowed, \
         given {\"compress\":\"yes\",\"type\":\"full\"}",
    ),
    action(
        "restore",
        &["take-over-repository=maybe"],
        "ERROR validation failed: (root).take-over-repository : must be of type boolean, given \"maybe\"",
    ),
    action(
        "delete-backup",
        &[],
        "ERROR validation failed: (root) : \"backup-id\" property is missing and required, given {}",
    ),
    action(
        "delete-backup",
        &["backup-id=x", "delete-dependants=sure"],
        "ERROR validation failed: (root).delete-dependants : must be of type boolean, given \"sure\"",
    ),
    action(
        "get-password",
        &["username=root"],
        "ERROR validation failed: (root).username : must match one of the enum values \
         [\"operator\",\"replication\",\"rewind\",\"monitoring\",\"backup\"], given \"root\"",
    ),
    // Config values.
    config(
        "profile=huge",
        "invalid profile \"huge\": use \"production\" or \"testing\" (juju config postgresql profile=testing)",
    ),
    config(
        "backup-retention-full=-1",
        "invalid backup-retention-full=-1: set a whole number of 1 or more, or 0 for no limit",
    ),
    config(
        "backup-retention-days=-3",
        "invalid backup-retention-days=-3: set a whole number of 1 or more, or 0 for no limit",
    ),
    config(
        "backup-retention-full=two",
        "ERROR option \"backup-retention-full\" expected int, got \"two\": invalid digit found in string",
    ),
    config(
        "backup-schedule-full=hourly",
        "invalid backup-schedule-full: \"hourly\" has 1 fields, not the five of a cron expression \
         (minute hour day-of-month month day-of-week, in UTC), e.g. \"0 3 * * *\"",
    ),
    config(
        "backup-schedule-incremental=61 * * * *",
        "invalid backup-schedule-incremental: \"61 * * * *\" is not a cron expression: \
         component error: number out of bounds",
    ),
    config(
        "backup-schedule-differential=0 3 31 2 *",
        "invalid backup-schedule-differential: \"0 3 31 2 *\" never occurs: no date matches it",
    ),
    // s3-parameters relation data, through the s3-integrator's config.
    relation(
        "endpoint=s3.example.com",
        "invalid endpoint \"s3.example.com\" in the s3-parameters relation: set the s3-integrator's \
         endpoint to a URL with its scheme, e.g. https://s3.example.com",
    ),
    relation(
        "endpoint=ftp://s3.example.com",
        "invalid endpoint \"ftp://s3.example.com\" in the s3-parameters relation: set the \
         s3-integrator's endpoint to a URL with its scheme, e.g. https://s3.example.com",
    ),
    relation(
        BAD_CHAIN,
        "the s3-parameters relation's tls-ca-chain entry 1 is not a PEM certificate: set the \
         s3-integrator's tls-ca-chain to the base64 of the CA's PEM certificates",
    ),
    relation(
        "s3-uri-style=diagonal",
        "invalid s3-uri-style \"diagonal\" in the s3-parameters relation: set it to \"host\" or \"path\"",
    ),
    relation(
        "bucket=my bucket",
        "invalid bucket \"my bucket\" in the s3-parameters relation: a bucket name has only \
         letters, digits, dots, hyphens and underscores",
    ),
    relation(
        "path=pg/../other",
        "invalid path \"pg/../other\" in the s3-parameters relation: a path cannot contain \".\" or \"..\"",
    ),
];

/// What must not change: every object of the repository but its WAL (the
/// server may archive a segment meanwhile), the rows, and the system
/// identifier of the data directory.
#[derive(Debug, PartialEq)]
struct State {
    objects: BTreeMap<String, u64>,
    rows: String,
    system: String,
}

fn objects(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            if name.starts_with("wal") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(name, entry.metadata().unwrap().len());
            }
        }
    }
    out
}

fn state(repository: &Path, db: &Db) -> State {
    State {
        objects: objects(repository),
        rows: db
            .query_text("SELECT count(*) || ':' || sum(hashtext(v)) FROM t")
            .unwrap(),
        system: db
            .query_text("SELECT system_identifier::text FROM pg_control_system()")
            .unwrap(),
    }
}

fn unit_status(model: &Model) -> (String, String) {
    let status = model.status();
    let unit = &status["applications"]["postgresql"]["units"]["postgresql/0"]["workload-status"];
    (
        unit["current"].as_str().unwrap_or_default().to_owned(),
        unit["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Gives the input; returns the message the user reads.
fn give(model: &Model, input: &Input) -> String {
    match input {
        Input::Action(name, params) => {
            let mut args = vec!["run", "postgresql/leader", name, "--format", "json"];
            args.extend_from_slice(params);
            let out = model.juju(&args);
            let Ok(tasks) = serde_json::from_slice::<Value>(&out.stdout) else {
                // Refused before the charm ran: Juju's own message.
                let stderr = String::from_utf8_lossy(&out.stderr);
                return stderr.lines().next().unwrap_or_default().to_owned();
            };
            let task = tasks.as_object().and_then(|t| t.values().next()).unwrap();
            assert_eq!(task["status"], "failed", "{name} {params:?}: {task:#}");
            task["message"].as_str().unwrap_or_default().to_owned()
        }
        Input::Config(value) => {
            let out = model.juju(&["config", "postgresql", value]);
            if !out.status.success() {
                return String::from_utf8_lossy(&out.stderr).trim().to_owned();
            }
            let _ = model.juju(&["run-hook", "postgresql", "update-status"]);
            let (kind, message) = unit_status(model);
            assert_eq!(kind, "blocked", "{value}: {message}");
            message
        }
        Input::Relation(value) => {
            model.ok(&["config", "s3-integrator", value]);
            let _ = model.juju(&["run-hook", "postgresql", "update-status"]);
            let (kind, message) = unit_status(model);
            assert_eq!(kind, "blocked", "{value}: {message}");
            message
        }
    }
}

/// Puts a config or relation value back as it was in `original`.
fn put_back(model: &Model, input: &Input, original: &serde_yaml::Value) {
    let (app, value) = match input {
        Input::Action(..) => return,
        Input::Config(value) => ("postgresql", value),
        Input::Relation(value) => ("s3-integrator", value),
    };
    let key = value.split_once('=').unwrap().0;
    let before = original[app][key].as_str().filter(|v| !v.is_empty());
    match before {
        Some(before) => model.ok(&["config", app, &format!("{key}={before}")]),
        None => model.ok(&["config", app, "--reset", key]),
    };
    settled(model, "postgresql", 1, Duration::from_secs(60));
}

#[test]
fn every_bad_input_gets_its_message_and_changes_nothing() {
    let model = &Model::new();
    support::deploy_with_s3(model);
    settled(model, "postgresql", 1, Duration::from_secs(60));
    let repository = support::served(model).join("juju-local/local.postgresql");
    let operator = password(model, "postgresql");
    let db = Db::remote(address(model, "postgresql/0"), "operator", &operator).unwrap();
    db.execute("CREATE TABLE t (v text); INSERT INTO t SELECT md5(i::text) FROM generate_series(1, 1000) i")
        .unwrap();
    backup(model, "postgresql/0", "full");
    assert!(CASES.len() >= 30);

    let mut original = serde_yaml::Mapping::new();
    for app in ["postgresql", "s3-integrator"] {
        let config: serde_yaml::Value = serde_yaml::from_str(&model.ok(&["config", app])).unwrap();
        original.insert(app.into(), config);
    }
    let original = serde_yaml::Value::Mapping(original);
    let mut wrong = Vec::new();
    for case in CASES {
        let before = state(&repository, &db);
        let message = give(model, &case.input);
        put_back(model, &case.input, &original);
        let after = state(&repository, &db);
        assert_eq!(before, after, "{message}");
        let matches = match case.message.strip_suffix('*') {
            Some(prefix) => message.starts_with(prefix),
            None => message == case.message,
        };
        if !matches {
            wrong.push(format!(
                "{}\n   got: {message:?}\n  want: {:?}",
                describe(&case.input),
                case.message
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} messages differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(unit_status(model).0, "active");
}

fn describe(input: &Input) -> String {
    match input {
        Input::Action(name, params) => format!("{name} {}", params.join(" ")),
        Input::Config(value) => format!("config postgresql {value}"),
        Input::Relation(value) => format!("config s3-integrator {value}"),
    }
}
