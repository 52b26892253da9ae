//! The built-in self-signed-certificates stand-in, seen from a requirer:
//! CSRs in the requirer's unit bag come back as certificates in the
//! provider's app bag that verify against `get-ca-certificate`, carry the
//! CSR's subject and SANs and the requested CA flag; entries go when their
//! CSR does, and a bag with an entry lacking `ca` is ignored.

mod common;

use std::path::Path;

use common::Model;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{json, Value};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

const PROVIDER: &str = "self-signed-certificates";

fn requirer_charm() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/builtin-requirer")
        .display()
        .to_string()
}

/// A model with the stand-in related to one requirer unit `req/0`; the relation id.
fn setup() -> (Model, String) {
    let m = Model::new();
    m.cli_ok("deploy", &[PROVIDER]);
    m.cli_ok("deploy", &[&requirer_charm(), "req"]);
    m.integrate("req:certificates", PROVIDER);
    let rid = m.relation_id("req/0", "certificates");
    (m, rid)
}

/// A PEM CSR for `cn` with the given IP and DNS SANs.
fn csr(cn: &str, sans: &[&str]) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 45]),
        "5f0c3b9e-1d2a-4c1b-9e6f-7a8b9c0d1e2f",
    );
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// Writes `certificate_signing_requests` = `entries` in req/0's unit bag.
fn request(m: &Model, rid: &str, entries: Value) {
    let file = m.dir().with_extension("csrs.json");
    let bag = json!({"certificate_signing_requests": entries.to_string()});
    std::fs::write(&file, bag.to_string()).unwrap();
    m.sh(
        "req/0",
        &format!("relation-set -r {rid} --file {}", file.display()),
    );
    std::fs::remove_file(&file).unwrap();
}

/// The provider's `certificates` list as req/0 reads it.
fn issued(m: &Model, rid: &str) -> Vec<Value> {
    let bag = m.sh_json(
        "req/0",
        &format!("relation-get -r {rid} --app --format=json - {PROVIDER}"),
    );
    match bag.get("certificates").and_then(Value::as_str) {
        Some(s) => serde_json::from_str(s).unwrap(),
        None => Vec::new(),
    }
}

fn der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn ca_from_action(m: &Model) -> String {
    let (out, task) = m.run_json(&format!("{PROVIDER}/0"), "get-ca-certificate", &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    task["results"]["ca-certificate"]
        .as_str()
        .unwrap_or_else(|| panic!("no ca-certificate in {task}"))
        .to_string()
}

#[test]
fn csr_gets_a_certificate_that_verifies_and_goes_with_its_csr() {
    let (m, rid) = setup();
    assert!(issued(&m, &rid).is_empty());
    let ca_pem = ca_from_action(&m);
    let ca_der = der(&ca_pem);
    let ca = parse(&ca_der);
    assert!(ca.is_ca());
    assert!(ca
        .subject()
        .to_string()
        .contains("CN=self-signed-certificates-operator"));

    let leaf_csr = csr("req-0", &["127.0.0.1", "req-0.example"]);
    request(
        &m,
        &rid,
        json!([{"certificate_signing_request": leaf_csr, "ca": false}]),
    );
    let got = issued(&m, &rid);
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    assert_eq!(e["certificate_signing_request"], json!(leaf_csr));
    assert_eq!(e["ca"], json!(ca_pem));
    let cert_pem = e["certificate"].as_str().unwrap();
    assert_eq!(e["chain"], json!([cert_pem, ca_pem]));
    let cert_der = der(cert_pem);
    let cert = parse(&cert_der);
    cert.verify_signature(Some(ca.public_key()))
        .expect("the certificate verifies against the CA");
    assert!(!cert.is_ca());
    assert_eq!(cert.issuer(), ca.subject());
    let subject = cert.subject().to_string();
    assert!(subject.contains("CN=req-0"), "{subject}");
    assert!(
        subject.contains("5f0c3b9e-1d2a-4c1b-9e6f-7a8b9c0d1e2f"),
        "{subject}"
    );
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!("{ip:?}"),
            other => format!("{other}"),
        })
        .collect();
    assert!(names.contains(&"req-0.example".to_string()), "{names:?}");
    assert!(names.contains(&"[127, 0, 0, 1]".to_string()), "{names:?}");
    let sig = cert.signature_algorithm.algorithm.to_id_string();
    assert_eq!(sig, "1.2.840.10045.4.3.2", "ecdsa-with-SHA256");
    let log = std::fs::read_to_string(m.charm_dir("req/0").join("hooks.log")).unwrap();
    assert!(
        log.contains(&format!("hooks/certificates-relation-changed {rid} - -")),
        "the app bag change fires relation-changed with no remote unit:\n{log}"
    );

    // A second request, for a CA: the first certificate is kept as it was.
    let ca_csr = csr("intermediate", &["req-0.example"]);
    request(
        &m,
        &rid,
        json!([
            {"certificate_signing_request": leaf_csr, "ca": false},
            {"certificate_signing_request": ca_csr, "ca": true},
        ]),
    );
    let got = issued(&m, &rid);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["certificate"], json!(cert_pem));
    let inter_der = der(got[1]["certificate"].as_str().unwrap());
    assert!(parse(&inter_der).is_ca());

    // Dropping the first CSR drops its entry.
    request(
        &m,
        &rid,
        json!([{"certificate_signing_request": ca_csr, "ca": true}]),
    );
    let got = issued(&m, &rid);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["certificate_signing_request"], json!(ca_csr));

    // A bag with an entry lacking `ca` is ignored whole.
    request(
        &m,
        &rid,
        json!([
            {"certificate_signing_request": ca_csr, "ca": true},
            {"certificate_signing_request": leaf_csr},
        ]),
    );
    assert!(issued(&m, &rid).is_empty());
    m.cli_ok("destroy-model", &[]);
}

#[test]
fn status_config_and_ca_rotation() {
    let (m, rid) = setup();
    let st = m.status();
    let app = &st["applications"][PROVIDER];
    assert_eq!(app["application-status"]["current"], json!("active"));
    assert_eq!(
        app["units"][format!("{PROVIDER}/0")]["workload-status"]["current"],
        json!("active")
    );
    let leaf_csr = csr("req-0", &["127.0.0.1"]);
    request(
        &m,
        &rid,
        json!([{"certificate_signing_request": leaf_csr, "ca": false}]),
    );
    let before = issued(&m, &rid);
    m.cli_ok("config", &[PROVIDER, "ca-common-name=demo-ca"]);
    let ca_pem = ca_from_action(&m);
    let ca_der = der(&ca_pem);
    assert!(parse(&ca_der).subject().to_string().contains("CN=demo-ca"));
    let after = issued(&m, &rid);
    assert_eq!(after.len(), 1);
    assert_ne!(after[0]["certificate"], before[0]["certificate"]);
    assert_eq!(after[0]["ca"], json!(ca_pem));
    m.cli_ok("remove-relation", &["req", PROVIDER]);
    m.cli_ok("destroy-model", &[]);
}
