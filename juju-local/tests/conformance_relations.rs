//! Hook-tool conformance: relation-ids, relation-list, relation-get and
//! relation-set, with Juju's databag access rules.
//!
//! The usual topology: `alpha` (2 units) requires `db`, `beta` (1 unit)
//! provides `api`, integrated as `alpha:db beta:api`; both have the `peers`
//! peer relation.

mod common;

use common::{assert_fails_containing, assert_fails_with, Model};
use serde_json::{json, Map, Value};

/// Keys Juju itself puts in every unit bag; tests ignore them.
const AUTOMATIC_KEYS: [&str; 3] = ["private-address", "ingress-address", "egress-subnets"];

fn without_automatic_keys(v: Value) -> Value {
    let mut map: Map<String, Value> = v
        .as_object()
        .unwrap_or_else(|| panic!("a relation bag is a JSON object: {v}"))
        .clone();
    for k in AUTOMATIC_KEYS {
        map.remove(k);
    }
    Value::Object(map)
}

struct Topology {
    m: Model,
    /// `db:N` as alpha sees it; beta sees the same relation as `api:N`.
    db: String,
    api: String,
    alpha_peers: String,
    leader: String,
    other: String,
}

fn topology() -> Topology {
    let m = Model::new();
    m.deploy("alpha", 2);
    m.deploy("beta", 1);
    m.integrate("alpha:db", "beta:api");
    let db = m.relation_id("alpha/0", "db");
    let api = m.relation_id("beta/0", "api");
    let alpha_peers = m.relation_id("alpha/0", "peers");
    let leader = m.leader("alpha");
    let other = m.non_leader("alpha");
    Topology {
        m,
        db,
        api,
        alpha_peers,
        leader,
        other,
    }
}

fn rel_num(id: &str) -> u64 {
    id.split_once(':')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("relation id {id:?} is not <endpoint>:<N>"))
}

// ------------------------------------------------ relation-ids / relation-list

#[test]
fn relation_ids_and_relation_list() {
    let t = topology();
    let m = &t.m;
    assert!(t.db.starts_with("db:"), "{}", t.db);
    assert!(t.api.starts_with("api:"), "{}", t.api);
    assert_eq!(rel_num(&t.db), rel_num(&t.api), "one relation, one id");
    assert_eq!(t.m.relation_id("alpha/1", "db"), t.db);
    // An endpoint with no relation: an empty list.
    assert_eq!(
        m.sh_json("alpha/0", "relation-ids api --format=json"),
        json!([])
    );

    for unit in ["alpha/0", "alpha/1"] {
        assert_eq!(
            m.sh_json(unit, &format!("relation-list --format=json -r {}", t.db)),
            json!(["beta/0"])
        );
        assert_eq!(
            m.sh(unit, &format!("relation-list --app -r {}", t.db)),
            "beta\n"
        );
    }
    assert_eq!(
        m.sh_json(
            "beta/0",
            &format!("relation-list --format=json -r {}", t.api)
        ),
        json!(["alpha/0", "alpha/1"])
    );
    assert_eq!(
        m.sh("beta/0", &format!("relation-list -r {} --app", t.api)),
        "alpha\n"
    );

    // Peers: the other units, never self; the remote app is our own.
    assert_eq!(
        m.sh_json(
            "alpha/0",
            &format!("relation-list --format=json -r {}", t.alpha_peers)
        ),
        json!(["alpha/1"])
    );
    assert_eq!(
        m.sh_json(
            "alpha/1",
            &format!("relation-list --format=json -r {}", t.alpha_peers)
        ),
        json!(["alpha/0"])
    );
    assert_eq!(
        m.sh(
            "alpha/0",
            &format!("relation-list --app -r {}", t.alpha_peers)
        ),
        "alpha\n"
    );
    let beta_peers = m.relation_id("beta/0", "peers");
    assert_eq!(
        m.sh_json(
            "beta/0",
            &format!("relation-list --format=json -r {beta_peers}")
        ),
        json!([])
    );
    // Smart format: one unit per line.
    assert_eq!(
        m.sh("beta/0", &format!("relation-list -r {}", t.api)),
        "alpha/0\nalpha/1\n"
    );
}

#[test]
fn relation_ids_are_sorted_as_strings() {
    let m = Model::new();
    m.deploy("alpha", 1);
    m.deploy("b1", 1);
    m.integrate("alpha:db", "b1:api");
    // Burn relation ids (each application's peer relation takes one) so the
    // next relation's id has more digits than the first one's.
    for i in 2..=9 {
        m.deploy(&format!("b{i}"), 1);
    }
    m.integrate("alpha:db", "b9:api");
    let ids = m.sh_json("alpha/0", "relation-ids db --format=json");
    let ids: Vec<String> = ids
        .as_array()
        .expect("a JSON list")
        .iter()
        .map(|v| v.as_str().expect("strings").to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let mut numeric = ids.clone();
    numeric.sort_by_key(|id| rel_num(id));
    let mut textual = ids.clone();
    textual.sort();
    assert_ne!(
        numeric, textual,
        "precondition: the ids {ids:?} sort differently as numbers and as strings"
    );
    assert_eq!(ids, textual, "relation-ids sorts as strings");
    // The smart format lists one per line, in the same order.
    assert_eq!(
        m.sh("alpha/0", "relation-ids db"),
        format!("{}\n", ids.join("\n"))
    );
}

// ------------------------------------------------------ relation-set / get

#[test]
fn unit_bags_are_written_by_their_unit_and_read_by_anyone() {
    let t = topology();
    let m = &t.m;
    let db = &t.db;
    m.sh(
        "alpha/0",
        &format!("relation-set -r {db} a=1 b=two url=x=y"),
    );
    // YAML and JSON maps on stdin.
    m.sh(
        "alpha/0",
        &format!("printf 'c: \"3\"\\nd: four\\n' | relation-set -r {db} --file -"),
    );
    m.sh(
        "alpha/0",
        &format!("printf '{{\"e\": \"5\"}}' | relation-set -r {db} --file -"),
    );
    // An empty value deletes the key.
    m.sh("alpha/0", &format!("relation-set -r {db} a="));

    let expected = json!({"b": "two", "url": "x=y", "c": "3", "d": "four", "e": "5"});
    for (reader, rel) in [("beta/0", &t.api), ("alpha/1", db), ("alpha/0", db)] {
        let bag = m.sh_json(
            reader,
            &format!("relation-get --format=json -r {rel} - alpha/0"),
        );
        assert_eq!(
            without_automatic_keys(bag),
            expected,
            "alpha/0's bag as {reader} reads it"
        );
    }
    // One key: raw in the smart format, a JSON string with --format=json.
    assert_eq!(
        m.sh("beta/0", &format!("relation-get -r {} d alpha/0", t.api)),
        "four\n"
    );
    assert_eq!(
        m.sh(
            "beta/0",
            &format!("relation-get --format=json -r {} url alpha/0", t.api)
        ),
        "\"x=y\"\n"
    );
    // The remote side saw the change.
    assert!(
        m.dispatch_log("beta/0")
            .contains(&"hooks/api-relation-changed".to_string()),
        "{:?}",
        m.dispatch_log("beta/0")
    );
}

#[test]
fn relation_context_supplies_default_relation_and_remote_unit() {
    let t = topology();
    let m = &t.m;
    m.sh("beta/0", &format!("relation-set -r {} from=beta", t.api));
    let out = m
        .exec_out(
            "alpha/0",
            &["--relation", &t.db, "--remote-unit", "beta/0"],
            r#"echo "$JUJU_RELATION|$JUJU_RELATION_ID|$JUJU_REMOTE_UNIT|$JUJU_REMOTE_APP"; relation-get from; relation-list --format=json"#,
        )
        .ok("exec in a relation context");
    assert_eq!(
        out.stdout,
        format!("db|{}|beta/0|beta\nbeta\n[\"beta/0\"]\n", t.db)
    );
}

#[test]
fn application_bags() {
    let t = topology();
    let m = &t.m;
    let (db, api, peers) = (&t.db, &t.api, &t.alpha_peers);

    // The leader writes the app bag with --app.
    m.sh(&t.leader, &format!("relation-set -r {db} --app ak=av"));
    // The remote app's bag is readable by every unit of the other side.
    assert_eq!(
        m.sh_json(
            "beta/0",
            &format!("relation-get --format=json -r {api} --app - alpha")
        ),
        json!({"ak": "av"})
    );
    assert_eq!(
        m.sh(
            "beta/0",
            &format!("relation-get -r {api} --app=true ak alpha")
        ),
        "av\n"
    );
    // The leader reads its own app bag.
    assert_eq!(
        m.sh_json(
            &t.leader,
            &format!("relation-get --format=json -r {db} --app - alpha")
        ),
        json!({"ak": "av"})
    );
    // A non-leader cannot write it...
    let out = m.exec_out(&t.other, &[], &format!("relation-set -r {db} --app no=way"));
    assert_fails_with(&out, 1, "ERROR cannot write relation settings");
    // ...nor read its own app's bag outside a peer relation.
    let out = m.exec_out(
        &t.other,
        &[],
        &format!("relation-get --format=json -r {db} --app - alpha"),
    );
    assert_ne!(
        out.code, 0,
        "a non-leader read its own app bag in a non-peer relation: {}",
        out.stdout
    );
    assert!(!out.stdout.contains("av"), "{}", out.stdout);

    // In a peer relation every unit reads its own app's bag.
    m.sh(&t.leader, &format!("relation-set -r {peers} --app pk=pv"));
    assert_eq!(
        m.sh_json(
            &t.other,
            &format!("relation-get --format=json -r {peers} --app - alpha")
        ),
        json!({"pk": "pv"})
    );
    // An empty value deletes an app key too.
    m.sh(&t.leader, &format!("relation-set -r {peers} --app pk="));
    assert_eq!(
        m.sh_json(
            &t.other,
            &format!("relation-get --format=json -r {peers} --app - alpha")
        ),
        json!({})
    );
}

#[test]
fn relation_get_errors() {
    let t = topology();
    let m = &t.m;
    let out = m.exec_out("alpha/0", &[], "relation-get --format=json -r 99 - beta/0");
    assert_fails_with(
        &out,
        2,
        r#"ERROR invalid value "99" for option -r: relation not found"#,
    );
    let out = m.exec_out(
        "alpha/0",
        &[],
        "relation-get --format=json -r db:99 - beta/0",
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("relation not found"), "{}", out.stderr);

    let out = m.exec_out(
        "alpha/0",
        &[],
        &format!("relation-get --format=json -r {} - beta", t.db),
    );
    assert_fails_containing(
        &out,
        &[r#"expected unit name, got application name "beta""#],
    );

    let out = m.exec_out("alpha/0", &[], "relation-list --format=json -r 99");
    assert_fails_with(
        &out,
        2,
        r#"ERROR invalid value "99" for option -r: relation not found"#,
    );
    // relation-set is just as strict about the relation id.
    let out = m.exec_out("alpha/0", &[], "relation-set -r 99 k=v");
    assert_fails_with(
        &out,
        2,
        r#"ERROR invalid value "99" for option -r: relation not found"#,
    );
}

#[test]
fn relation_writes_commit_on_success_only_and_are_visible_to_the_hook() {
    let t = topology();
    let m = &t.m;
    let db = &t.db;
    // Own pending writes are visible (unit and app bags) within the hook.
    let out = m.sh(
        &t.leader,
        &format!(
            "relation-set -r {db} p=1 && relation-set -r {db} --app q=2 && \
             relation-get -r {db} p {leader} && relation-get -r {db} --app q alpha",
            leader = t.leader
        ),
    );
    assert_eq!(out, "1\n2\n");

    // A failed hook's writes are dropped.
    let (code, _, err) = m.exec(
        &t.leader,
        &[],
        &format!("relation-set -r {db} dropped=yes p=9 && relation-set -r {db} --app q=9; exit 3"),
    );
    assert_eq!(code, 3, "{err}");
    let bag = m.sh_json(
        "beta/0",
        &format!("relation-get --format=json -r {} - {}", t.api, t.leader),
    );
    assert_eq!(without_automatic_keys(bag), json!({"p": "1"}));
    assert_eq!(
        m.sh_json(
            "beta/0",
            &format!("relation-get --format=json -r {} --app - alpha", t.api)
        ),
        json!({"q": "2"})
    );
}

#[test]
fn peer_relation_exists_from_install() {
    let m = Model::new();
    m.deploy("alpha", 1);
    let log = m.dispatch_log("alpha/0");
    let install = log.iter().position(|h| h == "hooks/install");
    let created = log.iter().position(|h| h == "hooks/peers-relation-created");
    assert!(
        install.is_some() && created.is_some() && install < created,
        "{log:?}"
    );
    let peers = m.relation_id("alpha/0", "peers");
    assert!(peers.starts_with("peers:"), "{peers}");
    m.sh("alpha/0", &format!("relation-set -r {peers} solo=yes"));
    let bag = m.sh_json(
        "alpha/0",
        &format!("relation-get --format=json -r {peers} - alpha/0"),
    );
    assert_eq!(without_automatic_keys(bag), json!({"solo": "yes"}));
}
