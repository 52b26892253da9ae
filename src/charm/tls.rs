//! TLS for the server over the `certificates` relation (tls-certificates
//! interface): this unit's private key, made here and never sent anywhere;
//! a CSR for the unit's address in its unit bag; the certificate the
//! provider signs, checked against the key and installed where the server
//! reads it. The unit "has TLS" exactly when that certificate is installed.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, SanType};
use serde::{Deserialize, Serialize};

use super::event::CERTIFICATES_ENDPOINT;
use crate::juju::{Bag, Context, Fields, HookTools, RelationId};
use crate::postgres::server::Server;

/// The requirer's unit-bag key.
const CSR_KEY: &str = "certificate_signing_requests";
/// The provider's app-bag key.
const CERTS_KEY: &str = "certificates";
/// x500UniqueIdentifier, which makes each CSR unique.
const UNIQUE_ID_OID: [u64; 4] = [2, 5, 4, 45];

#[derive(Debug, Serialize, Deserialize)]
struct CsrEntry {
    certificate_signing_request: String,
    ca: bool,
}

#[derive(Debug, Deserialize)]
struct IssuedEntry {
    ca: String,
    certificate_signing_request: String,
    certificate: String,
    #[serde(default)]
    revoked: bool,
}

/// Where the server's TLS files are.
pub struct TlsPaths {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub ca: PathBuf,
    csr: PathBuf,
    csr_address: PathBuf,
}

impl TlsPaths {
    pub fn of(server: &Server) -> Self {
        let dir = server.layout.tls_dir();
        Self {
            key: dir.join("key.pem"),
            cert: dir.join("cert.pem"),
            ca: dir.join("ca.pem"),
            csr: dir.join("csr.pem"),
            csr_address: dir.join("csr.address"),
        }
    }

    /// True when a certificate is installed (and so served).
    pub fn installed(&self) -> bool {
        self.cert.exists() && self.ca.exists() && self.key.exists()
    }
}

/// Converges this unit's TLS on the relation; true when the unit has its
/// certificate installed. `broken` is the relation going away in this hook.
pub fn reconcile(
    ctx: &Context,
    tools: &dyn HookTools,
    server: &Server,
    address: IpAddr,
    broken: Option<&RelationId>,
) -> Result<bool> {
    let paths = TlsPaths::of(server);
    let relation = tools
        .relation_ids(CERTIFICATES_ENDPOINT)
        .context("cannot list the certificates relations")?
        .into_iter()
        .find(|id| Some(id) != broken);

    // No relation: TLS off, and nothing of the old certificate left.
    let Some(relation) = relation else {
        for file in [&paths.cert, &paths.ca, &paths.csr, &paths.csr_address] {
            remove_if_there(file)?;
        }
        return Ok(false);
    };

    // This unit's key, made once, and a CSR for its current address.
    server.prepare_dirs()?;
    let key = load_or_make_key(server, &paths)?;
    let csr = load_or_make_csr(ctx, server, &paths, &key, address)?;

    // Ask for the certificate.
    let wanted = serde_json::to_string(&[CsrEntry {
        certificate_signing_request: csr.clone(),
        ca: false,
    }])
    .context("cannot encode the certificate request")?;
    let mine = tools.relation_get(&relation, Bag::Unit(&ctx.unit))?;
    if mine.get(CSR_KEY) != Some(&wanted) {
        let request = Fields::from([(CSR_KEY.to_owned(), wanted)]);
        tools
            .relation_set(&relation, false, &request)
            .context("cannot publish the certificate request")?;
    }

    // Install what the provider issued for this CSR, if it fits our key.
    let provider = tools.relation_remote_app(&relation)?;
    let issued = tools.relation_get(&relation, Bag::App(&provider))?;
    let entries: Vec<IssuedEntry> = match issued.get(CERTS_KEY) {
        Some(json) => {
            serde_json::from_str(json).context("the provider's certificates are not valid JSON")?
        }
        None => Vec::new(),
    };
    let Some(entry) = entries
        .into_iter()
        .find(|e| !e.revoked && same_pem(&e.certificate_signing_request, &csr))
    else {
        // Nothing for this CSR yet: keep serving a certificate still in place.
        return Ok(paths.installed());
    };
    check_certificate(&entry.certificate, &key)?;
    write_if_changed(server, &paths.cert, &entry.certificate, 0o644)?;
    write_if_changed(server, &paths.ca, &entry.ca, 0o644)?;
    Ok(true)
}

fn load_or_make_key(server: &Server, paths: &TlsPaths) -> Result<KeyPair> {
    if let Ok(pem) = std::fs::read_to_string(&paths.key) {
        return KeyPair::from_pem(&pem).context("the unit's TLS key is not readable");
    }
    let key = KeyPair::generate().context("cannot generate the unit's TLS key")?;
    server
        .user
        .write_file(&paths.key, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(key)
}

fn load_or_make_csr(
    ctx: &Context,
    server: &Server,
    paths: &TlsPaths,
    key: &KeyPair,
    address: IpAddr,
) -> Result<String> {
    let made_for = std::fs::read_to_string(&paths.csr_address).unwrap_or_default();
    if made_for == address.to_string() {
        if let Ok(pem) = std::fs::read_to_string(&paths.csr) {
            return Ok(pem);
        }
    }
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, ctx.unit.replace('/', "-"));
    let unique: u128 = rand::random();
    subject.push(
        DnType::CustomDnType(UNIQUE_ID_OID.to_vec()),
        format!("{unique:032x}"),
    );
    params.distinguished_name = subject;
    params.subject_alt_names = vec![SanType::IpAddress(address)];
    let pem = params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .context("cannot make the certificate request")?;
    server.user.write_file(&paths.csr, pem.as_bytes(), 0o644)?;
    server
        .user
        .write_file(&paths.csr_address, address.to_string().as_bytes(), 0o644)?;
    Ok(pem)
}

/// The certificate must be a leaf for our own key.
fn check_certificate(pem: &str, key: &KeyPair) -> Result<()> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the issued certificate is not PEM: {e}"))?;
    let cert = parsed
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("the issued certificate is not valid: {e}"))?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        anyhow::bail!("the issued certificate is not for this unit's key: the provider answered another request");
    }
    if cert.is_ca() {
        anyhow::bail!("the issued certificate is a CA certificate, not a server certificate");
    }
    Ok(())
}

/// PEM documents compared by their content, as DER would be.
fn same_pem(a: &str, b: &str) -> bool {
    let body = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.trim().chars())
            .collect()
    };
    body(a) == body(b)
}

fn write_if_changed(
    server: &Server,
    path: &std::path::Path,
    contents: &str,
    mode: u32,
) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    server.user.write_file(path, contents.as_bytes(), mode)
}

fn remove_if_there(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_documents_compare_by_content() {
        let a =
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\nBBBB\n-----END CERTIFICATE REQUEST-----\n";
        let b =
            "-----BEGIN CERTIFICATE REQUEST-----\r\nAAAABBBB\r\n-----END CERTIFICATE REQUEST-----";
        assert!(same_pem(a, b));
        assert!(!same_pem(a, &a.replace("BBBB", "CCCC")));
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let ours = KeyPair::generate().unwrap();
        let theirs = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&theirs)
            .unwrap();
        let err = check_certificate(&cert.pem(), &ours).unwrap_err();
        assert!(err.to_string().contains("not for this unit's key"), "{err}");
        let mine = CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&ours)
            .unwrap();
        check_certificate(&mine.pem(), &ours).unwrap();
    }
}
