//! The built-in s3-integrator stand-in, seen from a requirer: blocked until
//! `sync-s3-credentials`, the exact track-1 app-bag keys, and the track-2
//! secret flow with rotation firing `secret-changed` on the requirer.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::Model;
use serde_json::{json, Value};

const S3: &str = "s3-integrator";

fn requirer_charm() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/builtin-requirer")
        .display()
        .to_string()
}

/// The stand-in's app bag on the relation, as req/0 reads it.
fn provider_bag(m: &Model, rid: &str) -> BTreeMap<String, String> {
    let v = m.sh_json(
        "req/0",
        &format!("relation-get -r {rid} --app --format=json - {S3}"),
    );
    serde_json::from_value(v).unwrap()
}

fn workload(m: &Model, unit: &str) -> (String, String) {
    let st = m.status();
    let ws = &st["applications"][S3]["units"][unit]["workload-status"];
    (
        ws["current"].as_str().unwrap_or_default().to_string(),
        ws["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn hooks_log(m: &Model, unit: &str) -> String {
    std::fs::read_to_string(m.charm_dir(unit).join("hooks.log")).unwrap_or_default()
}

fn sync(m: &Model, unit: &str, access: &str, secret: &str) -> (common::Out, Value) {
    let a = format!("access-key={access}");
    let s = format!("secret-key={secret}");
    m.run_json(unit, "sync-s3-credentials", &[&a, &s])
}

#[test]
fn track1_blocked_until_synced_then_plain_keys() {
    let m = Model::new();
    // No endpoint would start the embedded S3 server: give one.
    m.cli_ok(
        "deploy",
        &[S3, "-n", "2", "--config", "endpoint=http://127.0.0.1:9"],
    );
    let blocked = (
        "blocked".to_string(),
        "Missing parameters: ['access-key', 'secret-key']".to_string(),
    );
    assert_eq!(workload(&m, "s3-integrator/0"), blocked);
    assert_eq!(workload(&m, "s3-integrator/1"), blocked);
    let plain = m.cli_ok("status", &[]).stdout;
    assert!(
        plain.contains("Missing parameters: ['access-key', 'secret-key']"),
        "{plain}"
    );

    m.cli_ok("deploy", &[&requirer_charm(), "req"]);
    m.integrate("req", S3);
    let rid = m.relation_id("req/0", "s3-parameters");
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    let chain = format!("{ca}\n{ca}\n");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, chain);
    let tls = format!("tls-ca-chain={b64}");
    m.cli_ok(
        "config",
        &[
            S3,
            "region=eu-west-1",
            "path=pg/backups",
            "s3-uri-style=path",
            "storage-class=STANDARD",
            "s3-api-version=4",
            "attributes=a:1,b:2",
            "experimental-delete-older-than-days=7",
            &tls,
        ],
    );

    let (_, task) = sync(&m, "s3-integrator/1", "AK", "SK");
    assert_eq!(task["status"], json!("failed"));
    assert_eq!(
        task["message"],
        json!("The action can be run only on leader unit.")
    );

    let (out, task) = sync(&m, "s3-integrator/0", "AK1", "SK1");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        task["results"]["ok"],
        json!("Credentials successfully updated.")
    );
    let plain = m
        .cli_ok(
            "run",
            &[
                "s3-integrator/leader",
                "sync-s3-credentials",
                "access-key=AK",
                "secret-key=SK",
            ],
        )
        .stdout;
    assert_eq!(plain, "ok: Credentials successfully updated.\n");

    let want: BTreeMap<String, String> = [
        ("access-key", "AK".to_string()),
        ("secret-key", "SK".to_string()),
        ("bucket", "requested-bucket".to_string()),
        ("endpoint", "http://127.0.0.1:9".to_string()),
        ("region", "eu-west-1".to_string()),
        ("path", "pg/backups".to_string()),
        ("s3-uri-style", "path".to_string()),
        ("storage-class", "STANDARD".to_string()),
        ("s3-api-version", "4".to_string()),
        ("attributes", r#"["a:1","b:2"]"#.to_string()),
        ("delete-older-than-days", "7".to_string()),
        ("tls-ca-chain", json!([ca, ca]).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(provider_bag(&m, &rid), want);
    assert_eq!(workload(&m, "s3-integrator/0").0, "active");
    assert_eq!(workload(&m, "s3-integrator/1").0, "active");

    // The config's bucket wins over the requested one.
    m.cli_ok("config", &[S3, "bucket=configured"]);
    assert_eq!(provider_bag(&m, &rid)["bucket"], "configured");

    // Removing the leader: the new leader keeps publishing; teardown hooks pass.
    m.cli_ok("remove-unit", &["s3-integrator/0"]);
    assert_eq!(provider_bag(&m, &rid)["access-key"], "AK");
    m.cli_ok("destroy-model", &[]);
}

#[test]
fn track2_secret_flow_and_rotation() {
    let m = Model::new();
    m.cli_ok(
        "deploy",
        &[
            S3,
            "--config",
            "track=2",
            "--config",
            "endpoint=http://127.0.0.1:9",
        ],
    );
    m.cli_ok("deploy", &[&requirer_charm(), "req"]);
    m.integrate("req", S3);
    let rid = m.relation_id("req/0", "s3-parameters");

    // The requirer sent requested-secrets, lib-version and a bucket: without
    // credentials there is no secret yet.
    let bag = provider_bag(&m, &rid);
    assert_eq!(bag["lib-version"], "1.0");
    assert_eq!(bag["bucket"], "requested-bucket");
    assert!(!bag.contains_key("secret-extra"), "{bag:?}");

    sync(&m, "s3-integrator/0", "AK1", "SK1").0.ok("sync");
    let bag = provider_bag(&m, &rid);
    let keys: Vec<&str> = bag.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["bucket", "endpoint", "lib-version", "secret-extra"],
        "{bag:?}"
    );
    let uri = bag["secret-extra"].clone();
    assert!(uri.starts_with("secret://"), "{uri}");
    let label = format!("{}.extra.secret", rid.replace(':', "."));
    let get = format!("secret-get {uri} --label {label} --refresh --format=json");
    assert_eq!(
        m.sh_json("req/0", &get),
        json!({"access-key": "AK1", "secret-key": "SK1"})
    );

    // Rotation: a new revision of the same secret fires secret-changed.
    sync(&m, "s3-integrator/0", "AK2", "SK2").0.ok("sync again");
    assert_eq!(provider_bag(&m, &rid)["secret-extra"], uri);
    let log = hooks_log(&m, "req/0");
    assert!(
        log.lines()
            .any(|l| l == format!("hooks/secret-changed - - {uri}")),
        "secret-changed on the requirer:\n{log}"
    );
    let refreshed = m.sh_json(
        "req/0",
        &format!("secret-get --label {label} --refresh --format=json"),
    );
    assert_eq!(refreshed, json!({"access-key": "AK2", "secret-key": "SK2"}));

    // Back to track 1: plain keys again, no secret reference.
    m.cli_ok("config", &[S3, "track=1"]);
    let bag = provider_bag(&m, &rid);
    assert_eq!(bag["access-key"], "AK2");
    assert!(!bag.contains_key("secret-extra") && !bag.contains_key("lib-version"));
    m.cli_ok("destroy-model", &[]);
}
