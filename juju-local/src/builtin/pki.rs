//! The self-signed-certificates stand-in's certificate authority, on rcgen:
//! a CA key and certificate, and certificates issued from CSRs with the
//! request's subject and SANs copied, signed with ECDSA P-256 / SHA-256 and
//! BasicConstraints CA as requested. Validity strings (`90d`, `12h`, ...).

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

/// A CA: its certificate and private key, both PEM.
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Parses `90d`, `12h`, `30m`, `45s`, `2w`, or a bare number of days.
pub fn parse_validity(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 'd'),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid validity {s:?}"))?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => bail!("invalid validity {s:?}: unknown unit {unit:?}"),
    };
    if n == 0 {
        bail!("invalid validity {s:?}: must be positive");
    }
    Ok(Duration::from_secs(n * secs))
}

fn random_serial() -> SerialNumber {
    use rand::Rng;
    let mut b: [u8; 16] = rand::thread_rng().gen();
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

fn window(validity: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now, now + validity)
}

/// A new self-signed CA named `common_name`, valid for `validity`.
pub fn new_ca(common_name: &str, validity: Duration) -> Result<Ca> {
    let key = KeyPair::generate().context("cannot generate the ca key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.not_before, params.not_after) = window(validity);
    params.serial_number = Some(random_serial());
    let cert = params
        .self_signed(&key)
        .context("cannot sign the ca certificate")?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Signs `csr_pem` with `ca`: the CSR's subject and SANs, CA flag `is_ca`.
pub fn issue(ca: &Ca, csr_pem: &str, is_ca: bool, validity: Duration) -> Result<String> {
    let key = KeyPair::from_pem(&ca.key_pem).context("cannot load the ca key")?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, key).context("cannot load the ca certificate")?;
    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| anyhow::anyhow!("invalid certificate signing request: {e}"))?;
    let p = &mut csr.params;
    (p.not_before, p.not_after) = window(validity);
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
    if is_ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        if p.key_usages.is_empty() {
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
        }
    }
    let cert = csr
        .signed_by(&issuer)
        .context("cannot sign the certificate")?;
    Ok(cert.pem())
}

/// A PEM's base64 body with whitespace removed: equal for the same DER.
pub fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_units() {
        assert_eq!(
            parse_validity("90d").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(
            parse_validity("365").unwrap(),
            Duration::from_secs(365 * 86_400)
        );
        assert_eq!(
            parse_validity("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert!(parse_validity("x").is_err());
        assert!(parse_validity("0d").is_err());
        assert!(parse_validity("3y").is_err());
    }

    #[test]
    fn issues_from_a_csr_with_its_subject_and_sans() {
        let ca = new_ca("test-ca", Duration::from_secs(3600)).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".into(), "db.local".into()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "postgresql-0");
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 45]), "a-uuid");
        params.distinguished_name = dn;
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let pem = issue(&ca, &csr, false, Duration::from_secs(60)).unwrap();
        let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = der.parse_x509().unwrap();
        let subject = cert.subject().to_string();
        assert!(subject.contains("CN=postgresql-0"), "{subject}");
        assert!(subject.contains("a-uuid"), "{subject}");
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 2);
        assert!(!cert.is_ca());
        assert_eq!(pem_body(&csr), pem_body(&format!("\n{csr}\n")));
    }
}
