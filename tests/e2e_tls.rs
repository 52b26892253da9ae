//! End to end: TLS over the certificates relation with juju-local's
//! self-signed-certificates. Each unit serves a certificate for its own
//! address that a client verifies against the CA (verify-full), plain
//! connections are refused, replication runs over TLS; removing the
//! relation turns TLS off cleanly with replication still streaming.

mod support;

use postgresql_charm::postgres::sql::Db;
use support::{address, eventually, Model};

const UNITS: [&str; 2] = ["postgresql/0", "postgresql/1"];

fn ssl_setting(db: &Db) -> String {
    db.query_text("SHOW ssl").unwrap()
}

#[test]
fn certificates_turn_tls_on_and_off() {
    let model = Model::new();
    model.ok(&[
        "deploy",
        support::build().charm.to_str().unwrap(),
        "-n",
        "2",
    ]);
    model.ok(&["deploy", "self-signed-certificates"]);
    let operator = model.run_action("postgresql/leader", "get-password", &[]);
    let operator = operator["results"]["password"].as_str().unwrap().to_owned();

    // Without the relation the servers do not offer TLS.
    for unit in UNITS {
        let db = Db::remote(address(&model, unit), "operator", &operator).unwrap();
        assert_eq!(ssl_setting(&db), "off", "{unit}");
    }

    // With it, every unit serves a certificate for its address, signed by the CA.
    model.ok(&[
        "integrate",
        "postgresql:certificates",
        "self-signed-certificates:certificates",
    ]);
    let ca = model.run_action("self-signed-certificates/leader", "get-ca-certificate", &[]);
    let ca_pem = ca["results"]["ca-certificate"]
        .as_str()
        .expect("the CA certificate")
        .to_owned();
    let ca_file = model.dir().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    for unit in UNITS {
        let addr = address(&model, unit);
        let db = Db::remote_tls(addr, "operator", &operator, Some(&ca_file))
            .unwrap_or_else(|e| panic!("{unit}: a verify-full connection failed: {e:#}"));
        assert_eq!(ssl_setting(&db), "on", "{unit}");
        assert_eq!(
            db.query_text("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .unwrap(),
            "true"
        );
        let plain = Db::remote(addr, "operator", &operator);
        assert!(plain.is_err(), "{unit} still takes connections without TLS");
    }

    // The replica streams from the primary over TLS, verified against the CA.
    let primary = Db::remote_tls(
        address(&model, "postgresql/0"),
        "operator",
        &operator,
        Some(&ca_file),
    )
    .unwrap();
    eventually("the replica streams over TLS", || {
        primary
            .query_text(
                "SELECT coalesce(string_agg(s.ssl::text, ','), '') FROM pg_stat_replication r \
                 JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming'",
            )
            .unwrap()
            == "true"
    });
    let status = model.status();
    for unit in UNITS {
        let state = &status["applications"]["postgresql"]["units"][unit]["workload-status"];
        assert_eq!(state["current"], "active", "{unit}: {state}");
    }

    // Removing the relation turns TLS off; replication keeps streaming.
    model.ok(&[
        "remove-relation",
        "postgresql:certificates",
        "self-signed-certificates:certificates",
    ]);
    for unit in UNITS {
        let db = Db::remote(address(&model, unit), "operator", &operator).unwrap();
        assert_eq!(ssl_setting(&db), "off", "{unit}");
    }
    let primary = Db::remote(address(&model, "postgresql/0"), "operator", &operator).unwrap();
    primary
        .execute("CREATE TABLE after_tls (i int); INSERT INTO after_tls VALUES (1)")
        .unwrap();
    let replica = Db::remote(address(&model, "postgresql/1"), "operator", &operator).unwrap();
    eventually("the replica still follows", || {
        replica
            .query_i64("SELECT count(*) FROM pg_tables WHERE tablename = 'after_tls'")
            .unwrap()
            == 1
    });
}
