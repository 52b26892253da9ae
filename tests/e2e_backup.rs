//! End to end: backups of a three-unit cluster to juju-local's S3 server,
//! taken by the packed charm. The unit rule and its messages, full then
//! differential then incremental with their references, less stored for a
//! small change, and every backup restored into a scratch directory that
//! `pg_verifybackup` accepts and a server recovers from, rows and all.

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use postgresql_charm::backup::settings::RepoSettings;
use postgresql_charm::backup::{catalog, repo::Repo};
use postgresql_charm::postgres::{binaries, sql::Db};
use serde_json::Value;
use support::scratch::Scratch;
use support::{address, eventually, storage, Model};

/// Every row of the test's tables.
const ROWS: &str = "SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM recent)";

fn backup(model: &Model, unit: &str, kind: &str) -> Value {
    model.run_action(unit, "create-backup", &[&format!("type={kind}")])
}

/// Three units of the packed charm and an s3-integrator, not yet related.
fn deploy_cluster_and_integrator(model: &Model) {
    model.ok(&[
        "deploy",
        support::build().charm.to_str().unwrap(),
        "-n",
        "3",
    ]);
    model.ok(&["deploy", "s3-integrator"]);
}

#[test]
fn backups_on_juju_locals_s3_server() {
    let model = &Model::new();
    deploy_cluster_and_integrator(model);

    // Before the relation: the anchor's message.
    let task = backup(model, "postgresql/0", "full");
    assert_eq!(
        task["message"],
        "Relation with s3-integrator charm missing, cannot create/restore backup."
    );

    backup_cycle(model, 88);
}

/// The same, against a second, independent S3 implementation (moto).
#[test]
fn backups_on_moto() {
    let moto = Moto::start();
    let model = &Model::new();
    deploy_cluster_and_integrator(model);
    let endpoint = format!("endpoint=http://{}", moto.address);
    model.ok(&[
        "config",
        "s3-integrator",
        &endpoint,
        "bucket=pg-backups",
        "s3-uri-style=path",
        "region=us-east-1",
    ]);
    model.ok(&[
        "run",
        "s3-integrator/leader",
        "sync-s3-credentials",
        "access-key=moto",
        "secret-key=moto-secret",
    ]);
    backup_cycle(model, 89);
}

/// Full, differential and incremental backups on the primary; the TLS rule;
/// an incremental on a replica; WAL under load; every backup restored.
/// `lane` keeps the restored servers' addresses apart between tests.
fn backup_cycle(model: &Model, lane: u8) {
    model.ok(&["integrate", "postgresql:s3-parameters", "s3-integrator"]);
    let status = model.status();
    for (unit, u) in status["applications"]["postgresql"]["units"]
        .as_object()
        .unwrap()
    {
        assert_eq!(u["workload-status"]["current"], "active", "{unit}: {u:#}");
    }

    // Some data, then the unit rule without TLS: the primary only.
    let operator = model.run_action("postgresql/leader", "get-password", &[])["results"]
        ["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = Db::remote(address(model, "postgresql/0"), "operator", &operator).unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY, pad text); INSERT INTO t SELECT i, md5(i::text) || md5((-i)::text) FROM generate_series(1, 100000) i; CREATE TABLE recent (id int PRIMARY KEY, note text)")
        .unwrap();
    let task = backup(model, "postgresql/1", "full");
    assert_eq!(
        task["message"],
        "Unit cannot perform backups as TLS is not enabled"
    );
    let task = backup(model, "postgresql/0", "differential");
    assert_eq!(
        task["message"],
        "Invalid backup type: differential. No previous full backup to reference."
    );

    // Full, then a small change and a differential, then an incremental.
    let mut ids = Vec::new();
    let mut counts = Vec::new();
    for (kind, new_rows) in [("full", 0), ("differential", 10), ("incremental", 5)] {
        if new_rows > 0 {
            let from = 100_000 + counts.len() as i64 * 100;
            db.execute(&format!(
                "INSERT INTO recent SELECT i, 'new' FROM generate_series({}, {}) i",
                from + 1,
                from + new_rows
            ))
            .unwrap();
        }
        // (Counting `t` again would set hint bits and so change its file.)
        counts.push(100_000 + db.query_i64("SELECT count(*) FROM recent").unwrap());
        // Backup ids are whole seconds.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let task = backup(model, "postgresql/0", kind);
        assert_eq!(task["status"], "completed", "{kind}: {task:#}");
        assert_eq!(task["results"]["backup-status"], "backup created");
        ids.push(task["results"]["backup-id"].as_str().unwrap().to_owned());
    }

    let settings =
        RepoSettings::load(&storage(model, "postgresql/0").join("s3-repository.json")).unwrap();

    // list-backups, on any unit: three rows with their types and references.
    let task = model.run_action("postgresql/2", "list-backups", &[]);
    let table = task["results"]["backups"].as_str().unwrap().to_owned();
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in:\n{table}"))
            .to_owned()
    };
    assert!(
        table.starts_with(&format!("Storage bucket name: {}\n", settings.bucket)),
        "{table}"
    );
    assert!(
        row(&ids[0]).contains("| full backup         | finished | None "),
        "{table}"
    );
    assert!(
        row(&ids[1]).contains(&format!("| differential backup | finished | {} ", ids[0])),
        "{table}"
    );
    assert!(
        row(&ids[2]).contains(&format!("| incremental backup  | finished | {} ", ids[1])),
        "{table}"
    );

    // A small change (to a small table) stores far less than the whole database.
    let repo = Repo::open(&settings).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored = |id: &str| {
        rt.block_on(catalog::load(&repo, id))
            .unwrap()
            .unwrap()
            .stored_bytes
    };
    let full = stored(&ids[0]);
    assert!(full > 4 << 20, "the full backup stored only {full} bytes");
    for id in &ids[1..] {
        let small = stored(id);
        assert!(
            small * 5 < full,
            "backup {id} stored {small} bytes against {full} for the full one"
        );
    }

    // With TLS, backups run on replicas and the primary refuses them.
    model.ok(&["deploy", "self-signed-certificates"]);
    model.ok(&[
        "integrate",
        "postgresql:certificates",
        "self-signed-certificates:certificates",
    ]);
    let task = backup(model, "postgresql/0", "incremental");
    assert_eq!(
        task["message"],
        "Unit cannot perform backups as it is the cluster primary"
    );
    let plain = Db::remote(address(model, "postgresql/1"), "operator", &operator);
    assert!(
        plain.is_err(),
        "the cluster still takes connections without TLS"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let task = backup(model, "postgresql/1", "incremental");
    assert_eq!(
        task["status"], "completed",
        "a backup on a replica: {task:#}"
    );
    ids.push(task["results"]["backup-id"].as_str().unwrap().to_owned());
    counts.push(*counts.last().unwrap());

    // WAL keeps flowing to the repository under a pgbench load.
    let primary = Db::remote_tls(address(model, "postgresql/0"), "operator", &operator, None);
    assert!(primary.is_err(), "TLS is required");
    let ca = storage(model, "postgresql/0").join("tls/ca.pem");
    let primary = Db::remote_tls(
        address(model, "postgresql/0"),
        "operator",
        &operator,
        Some(&ca),
    )
    .unwrap();
    let archived = |db: &Db| {
        db.query_i64("SELECT archived_count FROM pg_stat_archiver")
            .unwrap()
    };
    let before = archived(&primary);
    pgbench(model, &operator, &ca, &["-i", "-s", "2"]);
    pgbench(model, &operator, &ca, &["-T", "5", "-c", "2"]);
    primary.execute("SELECT pg_switch_wal()").unwrap();
    let started = std::time::Instant::now();
    while archived(&primary) < before + 3 {
        assert!(
            started.elapsed().as_secs() < 180,
            "the WAL of the load was not archived"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(
        primary
            .query_i64("SELECT failed_count FROM pg_stat_archiver")
            .unwrap(),
        0
    );

    // Each backup comes back: pg_verifybackup accepts it, and a server
    // recovers from it with the archived WAL and has the rows.
    for (i, id) in ids.iter().enumerate() {
        let rows = restore_and_count(model, &settings, id, (lane, i as u8 + 10));
        assert_eq!(rows, counts[i], "backup {id} came back with other rows");
    }
}

/// pgbench against the primary, over TLS verified against the cluster's CA.
fn pgbench(model: &Model, operator: &str, ca: &Path, args: &[&str]) {
    let bin = binaries::find().unwrap().unwrap();
    let out = Command::new(bin.program("pgbench"))
        .args(args)
        .args([
            "-h",
            &address(model, "postgresql/0").to_string(),
            "-U",
            "operator",
            "postgres",
        ])
        .env("PGPASSWORD", operator)
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A moto S3 server on loopback with one bucket, stopped when dropped.
struct Moto {
    child: std::process::Child,
    address: String,
}

impl Moto {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs (moto: pip install 'moto[server]')");
        let moto = Self {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        eventually("moto listens", || {
            std::net::TcpStream::connect(&moto.address).is_ok()
        });
        // moto does not check signatures: a plain PUT creates the bucket.
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&moto.address).unwrap();
        write!(stream, "PUT /pg-backups HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", moto.address).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "moto did not create the bucket: {reply}"
        );
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Restores a backup into a scratch directory, checks it, starts a server on
/// it with the archive as restore_command, and counts the rows of `t`.
fn restore_and_count(
    model: &Model,
    settings: &RepoSettings,
    id: &str,
    (lane, last_octet): (u8, u8),
) -> i64 {
    let ip: IpAddr = format!(
        "127.{}.{lane}.{last_octet}",
        200 + (std::process::id() % 50)
    )
    .parse()
    .unwrap();
    let dir = model.dir().join(format!("restore-{last_octet}"));
    let scratch = Scratch::restore(&dir, settings, id, ip);
    scratch.db().query_i64(ROWS).unwrap()
}

#[test]
fn bad_s3_settings_block_with_the_reason_and_clear_when_fixed() {
    let model = &Model::new();
    model.ok(&["deploy", support::build().charm.to_str().unwrap()]);
    model.ok(&["deploy", "s3-integrator"]);
    let unit_status = |model: &Model| {
        let status = model.status();
        status["applications"]["postgresql"]["units"]["postgresql/0"]["workload-status"].clone()
    };

    // Credentials the server refuses: blocked, naming the repository.
    let wrong = ["access-key=nobody", "secret-key=not-the-secret"];
    model.ok(&[
        "run",
        "s3-integrator/leader",
        "sync-s3-credentials",
        wrong[0],
        wrong[1],
    ]);
    model.ok(&["integrate", "postgresql:s3-parameters", "s3-integrator"]);
    let status = unit_status(model);
    assert_eq!(status["current"], "blocked", "{status:#}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot use the S3 repository juju-local/local.postgresql"),
        "{message}"
    );
    assert!(
        !message.contains("not-the-secret"),
        "the secret key is in the status"
    );
    let task = backup(model, "postgresql/0", "full");
    assert_eq!(task["status"], "failed");
    assert!(
        task["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot use the S3 repository"),
        "{task:#}"
    );
    let (access, secret) = server_keys(model);
    let right = [
        format!("access-key={access}"),
        format!("secret-key={secret}"),
    ];
    model.ok(&[
        "run",
        "s3-integrator/leader",
        "sync-s3-credentials",
        &right[0],
        &right[1],
    ]);

    // A bad URI style: blocked, saying what to set.
    model.ok(&[
        "config",
        "s3-integrator",
        "bucket=juju-local",
        "s3-uri-style=sideways",
    ]);
    let status = unit_status(model);
    assert_eq!(status["current"], "blocked", "{status:#}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("\"host\" or \"path\""),
        "{status:#}"
    );

    // Fixed: the status clears and a backup works.
    model.ok(&["config", "s3-integrator", "s3-uri-style=path"]);
    let status = unit_status(model);
    assert_eq!(status["current"], "active", "{status:#}");
    let task = backup(model, "postgresql/0", "full");
    assert_eq!(task["status"], "completed", "{task:#}");
}

/// The keys juju-local's S3 server was given.
fn server_keys(model: &Model) -> (String, String) {
    let state: Value =
        serde_json::from_slice(&std::fs::read(model.dir().join("model/model.json")).unwrap())
            .unwrap();
    let key = |k: &str| {
        state["s3_server"][k]
            .as_str()
            .expect("the model's S3 server")
            .to_owned()
    };
    (key("access_key"), key("secret_key"))
}
