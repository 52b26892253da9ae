//! The s3-parameters relation: what the provider (s3-integrator) publishes,
//! on either of its tracks, turned into repository settings, with the
//! anchor's message when something required is missing. Track 1 sends the
//! keys in plain text in its app bag; track 2 sends them in a secret named
//! by `secret-extra`, which this side asks for with `requested-secrets`.

use anyhow::{Context as _, Result};
use serde::Deserialize;

use super::event::S3_ENDPOINT;
use crate::backup::settings::{RepoSettings, UriStyle};
use crate::juju::{databag, Bag, Context, Fields, HookTools, RelationId, SecretRead};

/// What this side asks of a track-2 provider.
const REQUESTED_SECRETS: &str = r#"["access-key", "secret-key"]"#;
/// Keys the backup engine cannot do without, in the anchor's order.
const REQUIRED: [&str; 3] = ["bucket", "access-key", "secret-key"];

/// The state of the relation, as the rest of the charm needs it.
#[derive(Debug)]
pub enum S3State {
    /// No s3-parameters relation: backups off, WAL not archived.
    NotRelated,
    /// Related, but the user must fix something first; the message says what.
    Incomplete(String),
    /// Everything needed to open the repository.
    Ready(Box<RepoSettings>),
}

/// The provider's app bag, as both tracks write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ProviderBag {
    access_key: Option<String>,
    secret_key: Option<String>,
    bucket: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    path: Option<String>,
    s3_uri_style: Option<String>,
    storage_class: Option<String>,
    tls_ca_chain: Option<String>,
    secret_extra: Option<String>,
    delete_older_than_days: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SecretExtra {
    access_key: Option<String>,
    secret_key: Option<String>,
}

/// Reads the relation (and asks a track-2 provider for the secret).
pub fn load(ctx: &Context, tools: &dyn HookTools, leader: bool) -> Result<S3State> {
    let broken = format!("hooks/{S3_ENDPOINT}-relation-broken");
    let relation = tools
        .relation_ids(S3_ENDPOINT)
        .context("cannot list the s3-parameters relations")?
        .into_iter()
        .find(|id| ctx.dispatch_path != broken || ctx.relation.as_ref().map(|r| &r.id) != Some(id));
    let Some(relation) = relation else {
        return Ok(S3State::NotRelated);
    };
    ask_for_secrets(ctx, tools, &relation, leader)?;

    let provider = tools.relation_remote_app(&relation)?;
    let raw = tools.relation_get(&relation, Bag::App(&provider))?;
    let bag: ProviderBag =
        databag::decode(&raw).context("the s3-parameters databag is not valid")?;
    let mut access_key = clean(&bag.access_key);
    let mut secret_key = clean(&bag.secret_key);
    if let Some(uri) = clean(&bag.secret_extra) {
        let label = format!("{S3_ENDPOINT}.{}.extra.secret", relation.number);
        let content = tools
            .secret_get(Some(&uri), Some(&label), SecretRead::Refresh)
            .context("cannot read the S3 credentials secret the s3 provider shared")?;
        let extra: SecretExtra =
            databag::decode(&content).context("the S3 credentials secret is not valid")?;
        access_key = clean(&extra.access_key).or(access_key);
        secret_key = clean(&extra.secret_key).or(secret_key);
    }

    let bucket = clean(&bag.bucket);
    let present = [bucket.is_some(), access_key.is_some(), secret_key.is_some()];
    let missing: Vec<String> = REQUIRED
        .iter()
        .zip(present)
        .filter(|(_, p)| !p)
        .map(|(k, _)| format!("'{k}'"))
        .collect();
    if !missing.is_empty() {
        return Ok(S3State::Incomplete(format!(
            "Missing S3 parameters: [{}]",
            missing.join(", ")
        )));
    }
    let uri_style = match clean(&bag.s3_uri_style).as_deref() {
        None | Some("host") => UriStyle::Host,
        Some("path") => UriStyle::Path,
        Some(other) => {
            return Ok(S3State::Incomplete(format!(
                "invalid s3-uri-style {other:?} in the s3-parameters relation: set it to \"host\" or \"path\""
            )))
        }
    };
    let tls_ca_chain = match clean(&bag.tls_ca_chain) {
        None => Vec::new(),
        Some(json) => match serde_json::from_str::<Vec<String>>(&json) {
            Ok(chain) => chain,
            Err(_) => return Ok(S3State::Incomplete(
                "the s3-parameters relation's tls-ca-chain is not a JSON list of PEM certificates"
                    .into(),
            )),
        },
    };
    let endpoint = clean(&bag.endpoint).unwrap_or_else(|| "https://s3.amazonaws.com".into());
    let path = clean(&bag.path)
        .map(|p| p.trim_matches('/').to_owned())
        .unwrap_or_default();
    let bucket = bucket.unwrap_or_default();
    if let Some(problem) = invalid(&endpoint, &bucket, &path, &tls_ca_chain) {
        return Ok(S3State::Incomplete(problem));
    }
    Ok(S3State::Ready(Box::new(RepoSettings {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        region: clean(&bag.region),
        bucket,
        path: if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        },
        uri_style,
        tls_ca_chain,
        storage_class: clean(&bag.storage_class),
        access_key: access_key.unwrap_or_default(),
        secret_key: secret_key.unwrap_or_default(),
        repository: format!("{}.{}", ctx.model_name, ctx.app),
        compression: Default::default(),
        encryption_key: None,
    })))
}

/// What is wrong with the relation's endpoint, bucket, path or CA chain,
/// said so that the user knows what to set in the s3-integrator's config.
fn invalid(endpoint: &str, bucket: &str, path: &str, chain: &[String]) -> Option<String> {
    let host = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"));
    if host.is_none_or(|h| h.trim_end_matches('/').is_empty() || h.contains(char::is_whitespace)) {
        return Some(format!(
            "invalid endpoint {endpoint:?} in the s3-parameters relation: set the s3-integrator's \
             endpoint to a URL with its scheme, e.g. https://s3.example.com"
        ));
    }
    // Legacy regions still serve names with capitals and underscores.
    let bucket_ok = (1..=255).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !bucket_ok {
        return Some(format!(
            "invalid bucket {bucket:?} in the s3-parameters relation: a bucket name has only \
             letters, digits, dots, hyphens and underscores"
        ));
    }
    if path.split('/').any(|part| part == ".." || part == ".") {
        return Some(format!(
            "invalid path {path:?} in the s3-parameters relation: a path cannot contain \".\" or \"..\""
        ));
    }
    for (n, pem) in chain.iter().enumerate() {
        let parsed = x509_parser::pem::parse_x509_pem(pem.as_bytes());
        let is_certificate =
            parsed.is_ok_and(|(_, pem)| pem.label == "CERTIFICATE" && pem.parse_x509().is_ok());
        if !is_certificate {
            return Some(format!(
                "the s3-parameters relation's tls-ca-chain entry {} is not a PEM certificate: set \
                 the s3-integrator's tls-ca-chain to the base64 of the CA's PEM certificates",
                n + 1
            ));
        }
    }
    None
}

/// The provider's `delete-older-than-days`, when it sets a valid one (its
/// default, 9999999, keeps everything for as long as it matters).
pub fn delete_older_than_days(tools: &dyn HookTools) -> Result<Option<u32>> {
    let Some(relation) = tools
        .relation_ids(S3_ENDPOINT)
        .context("cannot list the s3-parameters relations")?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let provider = tools.relation_remote_app(&relation)?;
    let raw = tools.relation_get(&relation, Bag::App(&provider))?;
    let bag: ProviderBag =
        databag::decode(&raw).context("the s3-parameters databag is not valid")?;
    match clean(&bag.delete_older_than_days) {
        None => Ok(None),
        Some(text) => match text.parse::<u32>() {
            Ok(days) if days > 0 => Ok(Some(days)),
            _ => anyhow::bail!(
                "the s3-parameters relation's delete-older-than-days {text:?} is not a whole \
                 number of days: fix it in the s3-integrator's config, or set \
                 backup-retention-days"
            ),
        },
    }
}

/// Track 2: ask for the credentials as a secret (harmless to track 1).
fn ask_for_secrets(
    ctx: &Context,
    tools: &dyn HookTools,
    relation: &RelationId,
    leader: bool,
) -> Result<()> {
    let want = |bag: &Fields, keys: &[(&str, &str)]| -> Fields {
        keys.iter()
            .filter(|(k, v)| bag.get(*k).map(String::as_str) != Some(*v))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mine = tools.relation_get(relation, Bag::Unit(&ctx.unit))?;
    let unit_changes = want(&mine, &[("requested-secrets", REQUESTED_SECRETS)]);
    if !unit_changes.is_empty() {
        tools.relation_set(relation, false, &unit_changes)?;
    }
    if leader {
        let ours = tools.relation_get(relation, Bag::App(&ctx.app))?;
        let app_changes = want(
            &ours,
            &[
                ("requested-secrets", REQUESTED_SECRETS),
                ("lib-version", "1.0"),
            ],
        );
        if !app_changes.is_empty() {
            tools.relation_set(relation, true, &app_changes)?;
        }
    }
    Ok(())
}

/// A value as the provider meant it: trimmed, and absent when empty.
fn clean(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::testing::context;
    use crate::juju::fake::FakeTools;

    fn related(bag: &[(&str, &str)]) -> FakeTools {
        let tools = FakeTools::new("postgresql/0", true);
        let rel = tools.add_relation("s3-parameters:7", "s3-integrator", &["s3-integrator/0"]);
        let fields: Fields = bag
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tools
            .state
            .borrow_mut()
            .bags
            .insert((rel, "s3-integrator".into()), fields);
        tools
    }

    fn ready(state: S3State) -> RepoSettings {
        match state {
            S3State::Ready(settings) => *settings,
            other => panic!("not ready: {other:?}"),
        }
    }

    #[test]
    fn missing_keys_get_the_anchor_message() {
        let tools = related(&[("access-key", "a"), ("secret-key", "s")]);
        match load(&context("postgresql/0", "x"), &tools, true).unwrap() {
            S3State::Incomplete(msg) => assert_eq!(msg, "Missing S3 parameters: ['bucket']"),
            other => panic!("{other:?}"),
        }
        let tools = related(&[("bucket", "  ")]);
        match load(&context("postgresql/0", "x"), &tools, true).unwrap() {
            S3State::Incomplete(msg) => {
                assert_eq!(
                    msg,
                    "Missing S3 parameters: ['bucket', 'access-key', 'secret-key']"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_are_trimmed_and_defaulted() {
        let tools = related(&[
            ("access-key", " a "),
            ("secret-key", "s"),
            ("bucket", "b"),
            ("path", "/team/pg/"),
            ("endpoint", "http://127.0.0.1:9000/"),
        ]);
        let s = ready(load(&context("postgresql/0", "x"), &tools, true).unwrap());
        assert_eq!(s.access_key, "a");
        assert_eq!(s.endpoint, "http://127.0.0.1:9000");
        assert_eq!(s.path, "/team/pg");
        assert_eq!(s.uri_style, UriStyle::Host);
        let tools = related(&[("access-key", "a"), ("secret-key", "s"), ("bucket", "b")]);
        let s = ready(load(&context("postgresql/0", "x"), &tools, true).unwrap());
        assert_eq!(s.endpoint, "https://s3.amazonaws.com");
        assert_eq!(s.path, "");
    }

    #[test]
    fn track_two_credentials_come_from_the_shared_secret() {
        let tools = related(&[
            ("bucket", "b"),
            ("secret-extra", "secret://model/s0"),
            ("lib-version", "1.0"),
        ]);
        let content: Fields = [("access-key", "from-secret"), ("secret-key", "shh")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tools
            .state
            .borrow_mut()
            .secrets
            .insert("secret://model/s0".into(), (None, content));
        let s = ready(load(&context("postgresql/0", "x"), &tools, true).unwrap());
        assert_eq!(
            (s.access_key.as_str(), s.secret_key.as_str()),
            ("from-secret", "shh")
        );
        // And this side asked for it, in its app and unit bags.
        let state = tools.state.borrow();
        let rel: RelationId = "s3-parameters:7".parse().unwrap();
        assert_eq!(
            state.bags[&(rel.clone(), "postgresql".into())]["lib-version"],
            "1.0"
        );
        assert_eq!(
            state.bags[&(rel, "postgresql/0".into())]["requested-secrets"],
            REQUESTED_SECRETS
        );
    }

    #[test]
    fn a_bad_uri_style_says_what_to_set() {
        let tools = related(&[
            ("access-key", "a"),
            ("secret-key", "s"),
            ("bucket", "b"),
            ("s3-uri-style", "virtual"),
        ]);
        match load(&context("postgresql/0", "x"), &tools, true).unwrap() {
            S3State::Incomplete(msg) => assert!(msg.contains("\"host\" or \"path\""), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn endpoint_bucket_path_and_ca_chain_are_checked() {
        let chain = |pem: &str| vec![pem.to_owned()];
        assert_eq!(
            invalid("https://s3.example.com", "backups", "pg", &[]),
            None
        );
        assert_eq!(
            invalid("http://127.0.0.1:9000/", "My_Bucket.1", "a/b", &[]),
            None
        );
        let endpoint = invalid("s3.example.com", "b", "", &[]).unwrap();
        assert_eq!(
            endpoint,
            "invalid endpoint \"s3.example.com\" in the s3-parameters relation: set the \
             s3-integrator's endpoint to a URL with its scheme, e.g. https://s3.example.com"
        );
        assert!(invalid("ftp://host", "b", "", &[])
            .unwrap()
            .starts_with("invalid endpoint"));
        assert!(invalid("https://", "b", "", &[])
            .unwrap()
            .starts_with("invalid endpoint"));
        let bucket = invalid("https://h", "my bucket/x", "", &[]).unwrap();
        assert!(
            bucket.starts_with("invalid bucket \"my bucket/x\""),
            "{bucket}"
        );
        let path = invalid("https://h", "b", "pg/../other", &[]).unwrap();
        assert!(path.starts_with("invalid path \"pg/../other\""), "{path}");
        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        let ca = invalid("https://h", "b", "", &chain(garbage)).unwrap();
        assert!(
            ca.contains("tls-ca-chain entry 1 is not a PEM certificate"),
            "{ca}"
        );
        let real = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let pem = real.cert.pem();
        assert_eq!(invalid("https://h", "b", "", &chain(&pem)), None);
        let two = vec![pem, "junk".to_owned()];
        assert!(invalid("https://h", "b", "", &two)
            .unwrap()
            .contains("entry 2"));
    }
}
