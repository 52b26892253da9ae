//! End to end: the repository over HTTPS, with a private CA given as the
//! s3-integrator's `tls-ca-chain`, as most deployments have it. The model's
//! S3 server sits behind the test proxy terminating TLS with a certificate
//! for 127.0.0.1 signed by a CA of the test's own (no faults injected).
//!
//! With the chain of another CA, the unit is blocked with the charm's exact
//! message, which names the untrusted certificate, and nothing is written
//! to the bucket (every handshake refused, no request made). With the right
//! chain the unit goes active and everything goes through the proxy over
//! HTTPS: a full backup completes, is listed finished and passes
//! verify-backup, WAL is archived without a failure, and a restore of the
//! backup by id brings back the table as it was (row count and md5).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::flaky::{Ca, Proxy, Shares};
use support::{address, password, settled, storage, Model};

const UNIT: &str = "postgresql/0";

/// What the s3-integrator's `tls-ca-chain` takes: the base64 of PEM text.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The table's row count and an md5 of its rows in order.
fn fingerprint(db: &Db) -> (i64, String) {
    let count = db.query_i64("SELECT count(*) FROM items").unwrap();
    let md5 = db
        .query_text("SELECT md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM items")
        .unwrap();
    (count, md5)
}

/// Every file under `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                todo.push(entry.path());
            } else {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// The unit's workload status, once it is `want`, nudged by update-status.
fn status_once(model: &Model, want: &str) -> Value {
    let started = Instant::now();
    loop {
        let status = model.status();
        let unit = &status["applications"]["postgresql"]["units"][UNIT]["workload-status"];
        if unit["current"] == want {
            return unit.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{UNIT} never {want}: {status:#}"
        );
        let _ = model.juju(&["run-hook", UNIT, "update-status"]);
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn backups_and_restore_over_https_with_a_private_ca() {
    let started = Instant::now();
    let model = &Model::new();
    model.ok(&[
        "deploy",
        support::build().charm.to_str().unwrap(),
        "--config",
        "profile=testing",
    ]);
    model.ok(&["deploy", "s3-integrator"]);
    settled(model, "postgresql", 1, Duration::from_secs(60));
    let deployed = started.elapsed();
    let state: Value =
        serde_json::from_slice(&std::fs::read(model.dir().join("model/model.json")).unwrap())
            .unwrap();
    let bucket = support::served(model).join("juju-local");
    let settings_file = storage(model, UNIT).join("s3-repository.json");

    // Some rows.
    let operator = password(model, "postgresql");
    let host = address(model, UNIT);
    let db = Db::remote(host, "operator", &operator).unwrap();
    db.execute(
        "CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL); \
         INSERT INTO items SELECT n, md5(n::text) FROM generate_series(1, 20000) n",
    )
    .unwrap();

    // The S3 server over HTTPS, its certificate signed by `ca`.
    let ca = Ca::new("e2e S3 CA");
    let stranger = Ca::new("e2e another CA");
    let proxy = Proxy::start_tls(
        state["s3_server"]["endpoint"].as_str().unwrap(),
        0,
        Shares::default(),
        &ca,
    );
    assert!(proxy.endpoint().starts_with("https://127.0.0.1:"));

    // The chain of another CA: blocked, naming the certificate; nothing written.
    model.ok(&[
        "config",
        "s3-integrator",
        &format!("endpoint={}", proxy.endpoint()),
        &format!("tls-ca-chain={}", base64(stranger.pem().as_bytes())),
    ]);
    model.ok(&["integrate", "postgresql:s3-parameters", "s3-integrator"]);
    let blocked = status_once(model, "blocked");
    let untrusted_at = started.elapsed();
    assert_eq!(
        blocked["message"],
        format!(
            "cannot use the S3 repository juju-local/local.postgresql at {}: the S3 endpoint's \
             TLS certificate is not signed by a CA the unit trusts; set the s3-integrator's \
             tls-ca-chain to the base64 of the PEM certificate of the CA that signed it",
            proxy.endpoint()
        )
    );
    assert_eq!(files(&bucket), Vec::<String>::new());
    assert_eq!(proxy.counts().total(), 0, "a request got through");
    let (_, refused) = proxy.handshakes();
    assert!(refused > 0, "the unit never tried the proxy");

    // The right chain: active, and the archive programs set to HTTPS.
    model.ok(&[
        "config",
        "s3-integrator",
        &format!("tls-ca-chain={}", base64(ca.pem().as_bytes())),
    ]);
    settled(model, "postgresql", 1, Duration::from_secs(60));
    let trusted_at = started.elapsed();
    let written: Value = serde_json::from_slice(&std::fs::read(&settings_file).unwrap()).unwrap();
    assert_eq!(written["endpoint"], proxy.endpoint().as_str());
    assert_eq!(
        written["tls-ca-chain"][0].as_str().map(str::trim),
        Some(ca.pem().trim())
    );

    // A full backup, listed finished, read back whole.
    let before = fingerprint(&db);
    assert_eq!(before.0, 20000);
    let id = support::backup(model, UNIT, "full");
    let task = model.run_action(UNIT, "list-backups", &[]);
    let table = task["results"]["backups"].as_str().unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not in:\n{table}"));
    assert!(
        row.contains("| full backup         | finished | None "),
        "{table}"
    );
    let task = model.run_action(UNIT, "verify-backup", &[&format!("backup-id={id}")]);
    assert_eq!(task["status"], "completed", "verify-backup {id}: {task:#}");

    // WAL archived through it, without a failure.
    let segment = db
        .query_text("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    support::eventually(&format!("{segment} archived"), || {
        db.query_text("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            .unwrap()
            >= segment
    });
    assert_eq!(
        db.query_i64("SELECT failed_count FROM pg_stat_archiver")
            .unwrap(),
        0
    );

    // The table changed, then the backup restored: the table as it was.
    db.execute("DELETE FROM items WHERE id % 3 = 0").unwrap();
    assert_ne!(fingerprint(&db), before);
    let restoring = Instant::now();
    let task = model.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={id}")],
    );
    let restore_took = restoring.elapsed();
    assert_eq!(task["status"], "completed", "restore {id}: {task:#}");
    let db = Db::remote(host, "operator", &operator).unwrap();
    assert_eq!(fingerprint(&db), before);
    assert_eq!(
        db.query_i64("SELECT failed_count FROM pg_stat_archiver")
            .unwrap(),
        0
    );

    // All of it went through the proxy, over TLS.
    let counts = proxy.counts();
    let (handshakes, refused) = proxy.handshakes();
    assert!(counts.forwarded > 0 && handshakes > 0, "{counts:?}");
    assert!(!files(&bucket).is_empty());

    eprintln!(
        "deployed in {deployed:?}; untrusted CA blocked at {untrusted_at:?}, right CA active at \
         {trusted_at:?}; restore {restore_took:?}; proxy: {} HTTPS requests over {handshakes} \
         handshakes, {refused} refused; whole test {:?}",
        counts.total(),
        started.elapsed()
    );
}
