//! The self-signed-certificates stand-in. Its leader keeps a CA (key and
//! certificate in an app-owned secret, made on its first hook and remade when
//! `ca-common-name` or `root-ca-validity` change) and, on every hook, answers
//! each related requirer: for every `certificate_signing_requests` entry in
//! the requirer's unit bags (and app bag) it keeps or issues a certificate in
//! its own app bag's `certificates` list, dropping entries whose CSR is no
//! longer requested. A bag with an entry that lacks `ca` is ignored whole, as
//! the current tls-certificates library does.

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hookenv::Env;
use super::pki::{self, Ca};

const ENDPOINT: &str = "certificates";
/// The label of the app-owned secret holding the CA.
const CA_LABEL: &str = "self-signed-ca";

/// One entry of the provider's `certificates` list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Issued {
    ca: String,
    certificate_signing_request: String,
    certificate: String,
    #[serde(default)]
    chain: Vec<String>,
}

/// One requested certificate.
struct Request {
    csr: String,
    is_ca: bool,
}

pub fn hook(env: &mut Env) -> Result<()> {
    if !env.is_leader()? {
        return env.status("active", "");
    }
    let ca = ensure_ca(env)?;
    let validity = pki::parse_validity(&env.config_str("certificate-validity")?)
        .context("invalid certificate-validity")?;
    let broken = env.hook_name().ends_with("-relation-broken");
    for rid in env.relation_ids(ENDPOINT)? {
        if broken && env.hook_relation() == relation_number(&rid) {
            continue;
        }
        answer(env, &rid, &ca, validity)?;
    }
    env.status("active", "")
}

pub fn action(env: &mut Env, name: &str) -> Result<()> {
    match name {
        "get-ca-certificate" => match env.secret_by_label(CA_LABEL)? {
            Some(c) => {
                let pem = c.get("ca-certificate").cloned().unwrap_or_default();
                env.action_set(&[("ca-certificate", pem.as_str())])
            }
            None => env.action_fail("CA certificate not available yet"),
        },
        other => env.action_fail(&format!("unknown action {other:?}")),
    }
}

fn relation_number(rid: &str) -> Option<u64> {
    rid.rsplit(':').next()?.parse().ok()
}

/// The CA, made or remade as the config asks.
fn ensure_ca(env: &mut Env) -> Result<Ca> {
    let cn = env.config_str("ca-common-name")?;
    let validity = env.config_str("root-ca-validity")?;
    let current = env.secret_by_label(CA_LABEL)?;
    if let Some(c) = &current {
        let same = c.get("common-name") == Some(&cn) && c.get("validity") == Some(&validity);
        if same {
            return Ok(Ca {
                cert_pem: c.get("ca-certificate").cloned().unwrap_or_default(),
                key_pem: c.get("private-key").cloned().unwrap_or_default(),
            });
        }
    }
    let d = pki::parse_validity(&validity).context("invalid root-ca-validity")?;
    let ca = pki::new_ca(&cn, d)?;
    let content = [
        ("ca-certificate", ca.cert_pem.clone()),
        ("private-key", ca.key_pem.clone()),
        ("common-name", cn.clone()),
        ("validity", validity),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    match env.secret_id_by_label(CA_LABEL)? {
        Some(id) => {
            env.secret_set(&id, &content)?;
            env.log("INFO", &format!("renewed the CA certificate ({cn})"));
        }
        None => {
            env.secret_add(CA_LABEL, &content)?;
            env.log("INFO", &format!("generated the CA certificate ({cn})"));
        }
    }
    Ok(ca)
}

/// Parses one bag's `certificate_signing_requests`; `None` when the bag
/// must be ignored (not JSON, or an entry without `ca`).
fn requests_of(bag: &std::collections::BTreeMap<String, String>) -> Option<Vec<Request>> {
    let raw = bag.get("certificate_signing_requests")?;
    let list: Vec<Value> = serde_json::from_str(raw).ok()?;
    let mut out = Vec::new();
    for e in list {
        let csr = e.get("certificate_signing_request")?.as_str()?.to_string();
        let is_ca = e.get("ca")?.as_bool()?;
        out.push(Request { csr, is_ca });
    }
    Some(out)
}

/// Brings one relation's `certificates` up to date with what is requested.
fn answer(env: &mut Env, rid: &str, ca: &Ca, validity: std::time::Duration) -> Result<()> {
    let app = env.app();
    let mut requests = Vec::new();
    let mut bags = Vec::new();
    for unit in env.relation_list(rid)? {
        bags.push((unit.clone(), env.relation_get(rid, &unit, false)?));
    }
    let remote = env.remote_app(rid)?;
    if !remote.is_empty() {
        bags.push((remote.clone(), env.relation_get(rid, &remote, true)?));
    }
    for (who, bag) in &bags {
        match requests_of(bag) {
            Some(r) => requests.extend(r),
            None if bag.contains_key("certificate_signing_requests") => env.log(
                "WARNING",
                &format!("ignoring the certificate requests of {who}: an entry lacks \"ca\""),
            ),
            None => {}
        }
    }
    let mine = env.relation_get(rid, &app, true)?;
    let current: Vec<Issued> = mine
        .get("certificates")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let mut next: Vec<Issued> = Vec::new();
    for r in requests {
        let body = pki::pem_body(&r.csr);
        if next
            .iter()
            .any(|e| pki::pem_body(&e.certificate_signing_request) == body)
        {
            continue;
        }
        let kept = current.iter().find(|e| {
            pki::pem_body(&e.certificate_signing_request) == body
                && e.ca == ca.cert_pem
                && issued_as_ca(&e.certificate) == Some(r.is_ca)
        });
        if let Some(e) = kept {
            next.push(e.clone());
            continue;
        }
        match pki::issue(ca, &r.csr, r.is_ca, validity) {
            Ok(cert) => next.push(Issued {
                ca: ca.cert_pem.clone(),
                certificate_signing_request: r.csr.clone(),
                chain: vec![cert.clone(), ca.cert_pem.clone()],
                certificate: cert,
            }),
            Err(e) => env.log("ERROR", &format!("cannot issue a certificate: {e:#}")),
        }
    }
    if next == current && (mine.contains_key("certificates") || next.is_empty()) {
        return Ok(());
    }
    let text = serde_json::to_string(&next).context("cannot encode certificates")?;
    let settings = [("certificates".to_string(), text)].into_iter().collect();
    env.relation_set_app(rid, &settings)
}

/// Whether an issued certificate has BasicConstraints CA set.
fn issued_as_ca(pem: &str) -> Option<bool> {
    let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = der.parse_x509().ok()?;
    Some(cert.is_ca())
}
