//! Hook-tool conformance: secret-add, secret-get, secret-set, secret-ids,
//! secret-info-get and secret-remove for application-owned secrets (Juju 3).

mod common;

use common::{assert_fails_containing, Model};
use regex::Regex;
use serde_json::{json, Value};

/// A model with `alpha` (2 units): (model, leader, non-leader).
fn setup() -> (Model, String, String) {
    let m = Model::new();
    m.deploy("alpha", 2);
    let leader = m.leader("alpha");
    let other = m.non_leader("alpha");
    (m, leader, other)
}

/// The 20-character id at the end of a secret URI (either form).
fn xid(uri: &str) -> String {
    let re = Regex::new(r"^secret:(?://[0-9a-f-]+/)?([0-9a-v]{20})$").unwrap();
    re.captures(uri)
        .unwrap_or_else(|| panic!("not a secret URI: {uri:?}"))[1]
        .to_string()
}

/// The id in anything `secret-ids` may print: a URI of either form or the id.
fn any_xid(id: &str) -> String {
    let re = Regex::new(r"^(?:secret:(?://[0-9a-f-]+/)?)?([0-9a-v]{20})$").unwrap();
    re.captures(id)
        .unwrap_or_else(|| panic!("not a secret id: {id:?}"))[1]
        .to_string()
}

/// Adds an app-owned secret from the leader; returns its URI.
fn add_secret(m: &Model, leader: &str, args: &str) -> String {
    let out = m.sh(leader, &format!("secret-add --owner application {args}"));
    let uri = out.trim().to_string();
    xid(&uri);
    uri
}

#[test]
fn secret_add_prints_a_uri_in_the_models_namespace() {
    let (m, leader, _) = setup();
    let out = m.sh(
        &leader,
        r#"echo "$JUJU_MODEL_UUID"; secret-add --owner application --label pw password=s3cret"#,
    );
    let mut lines = out.lines();
    let uuid = lines.next().unwrap();
    let uri = lines.next().expect("secret-add prints the URI");
    assert_eq!(lines.next(), None, "{out}");
    let new_form = Regex::new(r"^secret://([0-9a-f-]{36})/[0-9a-v]{20}$").unwrap();
    let old_form = Regex::new(r"^secret:[0-9a-v]{20}$").unwrap();
    if let Some(c) = new_form.captures(uri) {
        assert_eq!(&c[1], uuid, "the URI carries the model UUID");
    } else {
        assert!(old_form.is_match(uri), "not a secret URI: {uri:?}");
    }
    // Secrets get distinct ids.
    let second = add_secret(&m, &leader, "password=other");
    assert_ne!(xid(uri), xid(&second));
}

#[test]
fn secret_get_by_id_and_by_label_from_leader_and_non_leader() {
    let (m, leader, other) = setup();
    let uri = add_secret(&m, &leader, "--label pw password=s3cret user=admin");
    let content = json!({"password": "s3cret", "user": "admin"});
    for unit in [&leader, &other] {
        assert_eq!(
            m.sh_json(unit, &format!("secret-get --format=json {uri}")),
            content,
            "{unit} by id"
        );
        // The other accepted spellings of the id.
        let id = xid(&uri);
        assert_eq!(
            m.sh_json(unit, &format!("secret-get --format=json secret:{id}")),
            content
        );
        assert_eq!(
            m.sh_json(unit, &format!("secret-get --format=json {id}")),
            content
        );
    }
    assert_eq!(
        m.sh_json(&leader, "secret-get --format=json --label pw"),
        content,
        "leader by label"
    );
    assert_eq!(
        m.sh_json(&other, "secret-get --format=json --label pw"),
        content,
        "non-leader by the owner's label"
    );
    // One key.
    assert_eq!(m.sh(&other, &format!("secret-get {uri} user")), "admin\n");
}

#[test]
fn secret_add_for_the_application_is_leader_only() {
    let (m, leader, other) = setup();
    let out = m.exec_out(
        &other,
        &[],
        "secret-add --owner application --label nl password=s3cret",
    );
    assert_ne!(
        out.code, 0,
        "a non-leader added an app secret: {}",
        out.stdout
    );
    assert!(out.stderr.starts_with("ERROR "), "{}", out.stderr);
    assert_eq!(m.sh_json(&leader, "secret-ids --format=json"), json!([]));
    let out = m.exec_out(&leader, &[], "secret-get --format=json --label nl");
    assert_fails_containing(&out, &["not found"]);
}

#[test]
fn secret_add_rejects_invalid_keys() {
    let (m, leader, _) = setup();
    for key in ["Bad_Key", "ab", "1abc", "trailing-"] {
        let out = m.exec_out(
            &leader,
            &[],
            &format!("secret-add --owner application {key}=value"),
        );
        assert_fails_containing(&out, &[&format!("\"{key}\"")]);
    }
    assert_eq!(m.sh_json(&leader, "secret-ids --format=json"), json!([]));
}

#[test]
fn secret_revisions_refresh_and_peek() {
    let (m, leader, other) = setup();
    let uri = add_secret(&m, &leader, "--label pw password=one");
    // The observer reads revision 1 and so tracks it.
    assert_eq!(
        m.sh_json(&other, &format!("secret-get --format=json {uri}")),
        json!({"password": "one"})
    );
    m.sh(&leader, &format!("secret-set {uri} password=two"));
    let info = m.sh_json(&leader, &format!("secret-info-get --format=json {uri}"));
    let entry = info
        .as_object()
        .and_then(|o| o.values().next())
        .unwrap_or_else(|| panic!("secret-info-get prints one entry: {info}"));
    assert_eq!(entry["revision"], json!(2), "{info}");
    assert_eq!(entry["label"], json!("pw"), "{info}");
    // By label too.
    let by_label = m.sh_json(&leader, "secret-info-get --format=json --label pw");
    assert_eq!(by_label, info);

    // The observer was told...
    assert!(
        m.dispatch_log(&other)
            .contains(&"hooks/secret-changed".to_string()),
        "{:?}",
        m.dispatch_log(&other)
    );
    assert!(
        !m.dispatch_log(&leader)
            .contains(&"hooks/secret-changed".to_string()),
        "the writer is not told of its own change: {:?}",
        m.dispatch_log(&leader)
    );
    // ...but keeps seeing its revision until it refreshes.
    let get = format!("secret-get --format=json {uri}");
    assert_eq!(m.sh_json(&other, &get), json!({"password": "one"}));
    assert_eq!(
        m.sh_json(&other, &format!("{get} --peek")),
        json!({"password": "two"})
    );
    assert_eq!(
        m.sh_json(&other, &get),
        json!({"password": "one"}),
        "--peek does not move the tracked revision"
    );
    assert_eq!(
        m.sh_json(&other, &format!("{get} --refresh")),
        json!({"password": "two"})
    );
    assert_eq!(
        m.sh_json(&other, &get),
        json!({"password": "two"}),
        "--refresh moves the tracked revision"
    );
    // --peek and --refresh together are refused.
    let out = m.exec_out(&other, &[], &format!("{get} --peek --refresh"));
    assert_ne!(out.code, 0);
}

#[test]
fn secret_not_found() {
    let (m, leader, other) = setup();
    let missing = "d0s1q2r3t4u5v6a7b8c9";
    for unit in [&leader, &other] {
        let out = m.exec_out(
            unit,
            &[],
            &format!("secret-get --format=json secret:{missing}"),
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.starts_with("ERROR ")
                && out.stderr.contains("secret \"")
                && out.stderr.contains(missing)
                && out.stderr.trim_end().ends_with("not found"),
            "expected `secret \"…\" not found`: {}",
            out.stderr
        );
        let out = m.exec_out(unit, &[], "secret-get --format=json --label no-such-label");
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.trim_end().ends_with("not found"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn secret_ids_and_secret_remove() {
    let (m, leader, other) = setup();
    let a = add_secret(&m, &leader, "--label first password=one");
    let b = add_secret(&m, &leader, "--label second password=two");
    let ids = m.sh_json(&leader, "secret-ids --format=json");
    let mut got: Vec<String> = ids
        .as_array()
        .unwrap_or_else(|| panic!("secret-ids prints a list: {ids}"))
        .iter()
        .map(|v| any_xid(v.as_str().unwrap()))
        .collect();
    got.sort();
    let mut want = vec![xid(&a), xid(&b)];
    want.sort();
    assert_eq!(got, want);

    m.sh(&leader, &format!("secret-remove {a}"));
    let ids = m.sh_json(&leader, "secret-ids --format=json");
    let got: Vec<String> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| any_xid(v.as_str().unwrap()))
        .collect();
    assert_eq!(got, vec![xid(&b)]);
    for unit in [&leader, &other] {
        let out = m.exec_out(unit, &[], &format!("secret-get --format=json {a}"));
        assert_fails_containing(&out, &["not found"]);
    }
    assert_eq!(
        m.sh_json(&other, "secret-get --format=json --label second"),
        json!({"password": "two"})
    );
}

#[test]
fn secret_changes_are_dropped_after_a_failed_hook() {
    let (m, leader, other) = setup();
    let uri = add_secret(&m, &leader, "--label keep password=one");

    // A hook sees its own pending secret...
    let (code, out, err) = m.exec(
        &leader,
        &[],
        "u=$(secret-add --owner application --label lost password=gone) && \
         secret-get --format=json \"$u\"; exit 1",
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).expect(&out),
        json!({"password": "gone"})
    );
    // ...which does not survive the failure.
    let ids = m.sh_json(&leader, "secret-ids --format=json");
    assert_eq!(ids.as_array().map(Vec::len), Some(1), "{ids}");
    let out = m.exec_out(&leader, &[], "secret-get --format=json --label lost");
    assert_fails_containing(&out, &["not found"]);

    // secret-set and secret-remove are dropped too.
    let (code, _, _) = m.exec(
        &leader,
        &[],
        &format!("secret-set {uri} password=two; exit 1"),
    );
    assert_eq!(code, 1);
    let (code, _, _) = m.exec(&leader, &[], &format!("secret-remove {uri}; exit 1"));
    assert_eq!(code, 1);
    assert_eq!(
        m.sh_json(&other, &format!("secret-get --format=json {uri} --peek")),
        json!({"password": "one"})
    );
    let info = m.sh_json(&leader, &format!("secret-info-get --format=json {uri}"));
    let entry = info.as_object().and_then(|o| o.values().next()).cloned();
    assert_eq!(
        entry.map(|e| e["revision"].clone()),
        Some(json!(1)),
        "{info}"
    );
}

#[test]
fn secret_set_is_leader_only() {
    let (m, leader, other) = setup();
    let uri = add_secret(&m, &leader, "--label pw password=one");
    let out = m.exec_out(&other, &[], &format!("secret-set {uri} password=two"));
    assert_ne!(out.code, 0, "a non-leader updated an app secret");
    assert!(out.stderr.starts_with("ERROR "), "{}", out.stderr);
    let out = m.exec_out(&other, &[], &format!("secret-remove {uri}"));
    assert_ne!(out.code, 0, "a non-leader removed an app secret");
    assert_eq!(
        m.sh_json(&other, &format!("secret-get --format=json {uri} --peek")),
        json!({"password": "one"})
    );
}

#[test]
fn secret_add_reads_values_from_files() {
    let (m, leader, _) = setup();
    let uri = m
        .sh(
            &leader,
            "printf 'line one\\nline two' > cert.pem && \
             secret-add --owner application cert#file=cert.pem user=admin; rc=$?; rm -f cert.pem; exit $rc",
        )
        .trim()
        .to_string();
    xid(&uri);
    assert_eq!(
        m.sh_json(&leader, &format!("secret-get --format=json {uri}")),
        json!({"cert": "line one\nline two", "user": "admin"})
    );
}

#[test]
fn secrets_are_shared_with_a_related_app_by_grant() {
    let m = Model::new();
    m.deploy("alpha", 1);
    m.deploy("beta", 1);
    m.integrate("alpha:db", "beta:api");
    let db = m.relation_id("alpha/0", "db");
    let leader = m.leader("alpha");
    let uri = add_secret(&m, &leader, "password=shared");
    let get = format!("secret-get --format=json {uri}");

    let out = m.exec_out("beta/0", &[], &get);
    assert_ne!(out.code, 0, "beta read a secret it was not granted");
    assert!(!out.stdout.contains("shared"), "{}", out.stdout);

    m.sh(&leader, &format!("secret-grant -r {db} {uri}"));
    assert_eq!(m.sh_json("beta/0", &get), json!({"password": "shared"}));
    // A consumer may give the secret its own label, then read it by that.
    assert_eq!(
        m.sh_json("beta/0", &format!("{get} --label theirs")),
        json!({"password": "shared"})
    );
    assert_eq!(
        m.sh_json("beta/0", "secret-get --format=json --label theirs"),
        json!({"password": "shared"})
    );

    m.sh(&leader, &format!("secret-revoke -r {db} {uri}"));
    let out = m.exec_out("beta/0", &[], &get);
    assert_ne!(out.code, 0, "beta still reads a revoked secret");
}
