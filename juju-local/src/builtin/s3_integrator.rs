//! The s3-integrator stand-in. Credentials set by `sync-s3-credentials` are
//! kept in its peer app bag, as the real charm keeps them; until both are
//! there every unit is `blocked` `Missing parameters: [...]`. On every hook
//! (and after the action) the leader publishes, in its app bag on each
//! `s3-credentials` relation, what the config option `track` selects:
//!
//! - track 1 (v0 library): every key in plain text, `attributes` and
//!   `tls-ca-chain` as JSON lists, the bucket from config or else the one
//!   the requirer asked for in its app bag;
//! - track 2 (v1 library): `lib-version` = `1.0`, and once the requirer has
//!   sent `lib-version` and a bucket is known, the connection keys
//!   (`attributes` comma-separated) with the credentials in an app-owned
//!   secret per relation (`secret-extra`, granted to the relation) when the
//!   requirer listed them in `requested-secrets`, else in plain text. New
//!   credentials are a new revision of that secret.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use serde_json::Value;

use super::hookenv::Env;

const ENDPOINT: &str = "s3-credentials";
const PEER: &str = "s3-integrator-peers";
const CREDENTIALS: [&str; 2] = ["access-key", "secret-key"];
/// Config options handed over under the same name.
const PLAIN: [&str; 7] = [
    "endpoint",
    "region",
    "path",
    "s3-uri-style",
    "storage-class",
    "s3-api-version",
    "bucket",
];
/// Every key the stand-in may write in a requirer-facing app bag.
const MANAGED: [&str; 14] = [
    "access-key",
    "secret-key",
    "bucket",
    "endpoint",
    "region",
    "path",
    "s3-uri-style",
    "storage-class",
    "s3-api-version",
    "delete-older-than-days",
    "attributes",
    "tls-ca-chain",
    "lib-version",
    "secret-extra",
];

type Bag = BTreeMap<String, String>;

pub fn hook(env: &mut Env) -> Result<()> {
    if env.is_leader()? {
        publish_all(env)?;
    }
    update_status(env)
}

pub fn action(env: &mut Env, name: &str) -> Result<()> {
    match name {
        "sync-s3-credentials" => {
            if !env.is_leader()? {
                return env.action_fail("The action can be run only on leader unit.");
            }
            let access = param(env, "access-key")?;
            let secret = param(env, "secret-key")?;
            let peer = peer_relation(env)?.context("the peer relation is missing")?;
            let settings = [("access-key", access), ("secret-key", secret)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            env.relation_set_app(&peer, &settings)?;
            publish_all(env)?;
            update_status(env)?;
            env.action_set(&[("ok", "Credentials successfully updated.")])
        }
        "get-s3-credentials" => {
            let creds = credentials(env)?;
            if CREDENTIALS.iter().any(|k| !creds.contains_key(*k)) {
                return env.action_fail("Credentials are not set!");
            }
            let r: Vec<(&str, &str)> = creds
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            env.action_set(&r)
        }
        "get-s3-connection-info" => {
            let info = connection(env)?;
            if info.plain.is_empty() {
                return env.action_fail("Credentials are not set!");
            }
            let r: Vec<(&str, &str)> = info
                .plain
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            env.action_set(&r)
        }
        other => env.action_fail(&format!("unknown action {other:?}")),
    }
}

fn param(env: &mut Env, key: &str) -> Result<String> {
    let v = env.json("action-get", &[key])?;
    Ok(v.as_str().unwrap_or_default().trim().to_string())
}

/// The peer relation; gone only while the unit is torn down.
fn peer_relation(env: &mut Env) -> Result<Option<String>> {
    Ok(env.relation_ids(PEER)?.into_iter().next())
}

/// The credentials kept in the peer app bag (only the keys that are set).
fn credentials(env: &mut Env) -> Result<Bag> {
    let Some(peer) = peer_relation(env)? else {
        return Ok(Bag::new());
    };
    let app = env.app();
    let bag = env.relation_get(&peer, &app, true)?;
    Ok(bag
        .into_iter()
        .filter(|(k, v)| CREDENTIALS.contains(&k.as_str()) && !v.is_empty())
        .collect())
}

fn update_status(env: &mut Env) -> Result<()> {
    let creds = credentials(env)?;
    let missing: Vec<String> = CREDENTIALS
        .iter()
        .filter(|k| !creds.contains_key(**k))
        .map(|k| format!("'{k}'"))
        .collect();
    if !missing.is_empty() {
        return env.status(
            "blocked",
            &format!("Missing parameters: [{}]", missing.join(", ")),
        );
    }
    if !matches!(env.config_str("track")?.as_str(), "1" | "2") {
        return env.status("blocked", "invalid config: track must be 1 or 2");
    }
    env.status("active", "")
}

/// The connection settings from config (set options only).
struct Connection {
    /// Options handed over as they are, plus `delete-older-than-days`.
    plain: Bag,
    attributes: Vec<String>,
    ca_chain: Vec<String>,
}

fn connection(env: &mut Env) -> Result<Connection> {
    let mut plain = Bag::new();
    for k in PLAIN {
        let v = env.config_str(k)?;
        if !v.is_empty() {
            plain.insert(k.to_string(), v);
        }
    }
    let days = env.config_str("experimental-delete-older-than-days")?;
    if !days.is_empty() {
        plain.insert("delete-older-than-days".into(), days);
    }
    let attrs = env.config_str("attributes")?;
    let attributes = if attrs.is_empty() {
        Vec::new()
    } else {
        attrs.split(',').map(str::to_string).collect()
    };
    let chain = env.config_str("tls-ca-chain")?;
    let ca_chain = if chain.is_empty() {
        Vec::new()
    } else {
        match decode_chain(&chain) {
            Ok(c) => c,
            Err(e) => {
                env.log("ERROR", &format!("ignoring tls-ca-chain: {e:#}"));
                Vec::new()
            }
        }
    };
    Ok(Connection {
        plain,
        attributes,
        ca_chain,
    })
}

/// base64 of PEM certificates -> one PEM string per certificate.
fn decode_chain(b64: &str) -> Result<Vec<String>> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .context("tls-ca-chain is not base64")?;
    let text = String::from_utf8(raw).context("tls-ca-chain is not text")?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let stop = start + len + END.len();
        out.push(rest[start..stop].to_string());
        rest = &rest[stop..];
    }
    if out.is_empty() {
        anyhow::bail!("no certificate found in tls-ca-chain");
    }
    Ok(out)
}

fn json_list(v: &[String]) -> String {
    Value::from(v.to_vec()).to_string()
}

fn publish_all(env: &mut Env) -> Result<()> {
    let track = env.config_str("track")?;
    if !matches!(track.as_str(), "1" | "2") || peer_relation(env)?.is_none() {
        return Ok(());
    }
    let creds = credentials(env)?;
    let conn = connection(env)?;
    let broken = env.hook_name().ends_with("-relation-broken");
    for rid in env.relation_ids(ENDPOINT)? {
        if broken && env.hook_relation() == rid.rsplit(':').next().and_then(|n| n.parse().ok()) {
            continue;
        }
        let remote = env.remote_app(&rid)?;
        let theirs = if remote.is_empty() {
            Bag::new()
        } else {
            env.relation_get(&rid, &remote, true)?
        };
        let desired = if track == "2" {
            track2(env, &rid, &creds, &conn, &theirs)?
        } else {
            track1(&creds, &conn, &theirs)
        };
        write(env, &rid, desired)?;
    }
    Ok(())
}

/// The bucket: the config's, else the one the requirer asked for.
fn bucket(conn: &Connection, theirs: &Bag) -> Option<String> {
    conn.plain
        .get("bucket")
        .or(theirs.get("bucket"))
        .filter(|b| !b.is_empty())
        .cloned()
}

fn track1(creds: &Bag, conn: &Connection, theirs: &Bag) -> Bag {
    let mut b = conn.plain.clone();
    b.extend(creds.clone());
    if let Some(bucket) = bucket(conn, theirs) {
        b.insert("bucket".into(), bucket);
    }
    if !conn.attributes.is_empty() {
        b.insert("attributes".into(), json_list(&conn.attributes));
    }
    if !conn.ca_chain.is_empty() {
        b.insert("tls-ca-chain".into(), json_list(&conn.ca_chain));
    }
    b
}

fn track2(env: &mut Env, rid: &str, creds: &Bag, conn: &Connection, theirs: &Bag) -> Result<Bag> {
    let mut b = Bag::new();
    b.insert("lib-version".into(), "1.0".into());
    let Some(bucket) = bucket(conn, theirs) else {
        return Ok(b);
    };
    if !theirs.contains_key("lib-version") {
        return Ok(b);
    }
    b.extend(conn.plain.clone());
    b.insert("bucket".into(), bucket);
    if !conn.attributes.is_empty() {
        b.insert("attributes".into(), conn.attributes.join(","));
    }
    if !conn.ca_chain.is_empty() {
        b.insert("tls-ca-chain".into(), json_list(&conn.ca_chain));
    }
    let requested: Vec<String> = theirs
        .get("requested-secrets")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let in_secret = CREDENTIALS.iter().any(|k| requested.iter().any(|r| r == k));
    if !in_secret {
        b.extend(creds.clone());
    } else if CREDENTIALS.iter().all(|k| creds.contains_key(*k)) {
        b.insert("secret-extra".into(), credentials_secret(env, rid, creds)?);
    }
    Ok(b)
}

/// The relation's credentials secret, made, updated and granted; its URI.
fn credentials_secret(env: &mut Env, rid: &str, creds: &Bag) -> Result<String> {
    let label = format!("{}.extra.secret", rid.replace(':', "."));
    let uri = match env.secret_id_by_label(&label)? {
        Some(id) => {
            env.secret_set(&id, creds)?;
            id
        }
        None => env.secret_add(&label, creds)?,
    };
    env.call("secret-grant", &["-r", rid, &uri])?;
    Ok(env.secret_uri(&uri))
}

/// Sets the managed keys of our app bag on `rid` to `desired`, deleting the others.
fn write(env: &mut Env, rid: &str, desired: Bag) -> Result<()> {
    let app = env.app();
    let current = env.relation_get(rid, &app, true)?;
    let mut settings = Bag::new();
    for k in MANAGED {
        let want = desired.get(k).cloned().unwrap_or_default();
        if current.get(k).cloned().unwrap_or_default() != want {
            settings.insert(k.to_string(), want);
        }
    }
    if settings.is_empty() {
        return Ok(());
    }
    env.relation_set_app(rid, &settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_splits_into_certificates() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        let chain = decode_chain(&b64).unwrap();
        assert_eq!(chain.len(), 2);
        assert!(chain[1].contains("BBB") && chain[1].ends_with("-----"));
        assert!(decode_chain("bm90IGEgY2VydA==").is_err());
    }

    #[test]
    fn track1_bag_has_plain_keys_and_json_lists() {
        let conn = Connection {
            plain: [("endpoint".to_string(), "http://s3".to_string())].into(),
            attributes: vec!["a:1".into(), "b:2".into()],
            ca_chain: vec![],
        };
        let creds: Bag = [("access-key".to_string(), "AK".to_string())].into();
        let theirs: Bag = [("bucket".to_string(), "relation-3".to_string())].into();
        let b = track1(&creds, &conn, &theirs);
        assert_eq!(b["bucket"], "relation-3");
        assert_eq!(b["attributes"], r#"["a:1","b:2"]"#);
        assert_eq!(b["access-key"], "AK");
        assert!(!b.contains_key("tls-ca-chain"));
    }
}
