//! An S3 repository that cannot be reached, told apart from one that
//! answered with an error, and said plainly: what failed, that the
//! repository could not be reached, and what to check. Only the S3 client's
//! own transport errors count (refused or lost connections, timeouts, after
//! its retries), so a PostgreSQL connection error is never taken for one.
//! A repository reached but whose TLS certificate the unit refuses is said
//! as such, with the setting that fixes it (most often `tls-ca-chain`).

use object_store::client::{HttpError, HttpErrorKind};

/// What the user should check when the repository cannot be reached.
pub const HINT: &str = "check the S3 endpoint and that the storage is up";

/// True when asking again may help: the repository could not be reached,
/// or it answered with a server error (`503 Slow Down`, `500`) through
/// every retry of the S3 client, which object_store reports as `Generic`
/// (a missing object, a refused permission and the like have their own
/// variants and are not transient). Nor is a refused TLS certificate:
/// asking again meets the same one.
pub fn is_transient(err: &anyhow::Error) -> bool {
    if tls_problem(err).is_some() {
        return false;
    }
    is_unreachable(err)
        || err.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<object_store::Error>(),
                Some(object_store::Error::Generic { .. })
            )
        })
}

/// What is wrong with the S3 endpoint's TLS, with what to set, when `err`
/// comes from a refused certificate or a failed TLS handshake.
pub fn tls_problem(err: &anyhow::Error) -> Option<String> {
    use rustls::CertificateError as Cert;
    let tls = err.chain().find_map(find_rustls)?;
    Some(match tls {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
            "the S3 endpoint's TLS certificate is not signed by a CA the unit trusts; set the \
             s3-integrator's tls-ca-chain to the base64 of the PEM certificate of the CA that \
             signed it"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => "the S3 endpoint's TLS certificate is not valid for the endpoint's host; set the \
              s3-integrator's endpoint to a name or address the certificate lists"
            .to_owned(),
        rustls::Error::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => "the S3 endpoint's TLS certificate has expired or is not valid yet; renew it, or \
              check the unit's clock"
            .to_owned(),
        rustls::Error::InvalidCertificate(other) => format!(
            "the S3 endpoint's TLS certificate is not valid ({other:?}); check the endpoint's \
             certificate and the s3-integrator's tls-ca-chain"
        ),
        other => format!(
            "the TLS handshake with the S3 endpoint failed ({other}); check that the endpoint \
             serves HTTPS, and the s3-integrator's tls-ca-chain"
        ),
    })
}

/// The rustls error in `cause` or beneath it; an `io::Error` hides the
/// error it wraps from `source()`, so it is looked into as well.
fn find_rustls<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(cause);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = find_rustls(inner) {
                return Some(tls);
            }
        }
        next = cause.source();
    }
    None
}

/// True when `err` comes from an S3 repository that could not be reached.
pub fn is_unreachable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<HttpError>().is_some_and(|http| {
            matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Request
                    | HttpErrorKind::Interrupted
            )
        })
    })
}

/// `<what failed>: the S3 repository could not be reached; <hint>` when
/// `err` is an unreachable repository, `<what failed>: <the TLS problem>;
/// <what to set>` when its certificate was refused (the client's details
/// go to the log); otherwise `err` as it is.
pub fn explain(err: anyhow::Error) -> anyhow::Error {
    let tls = tls_problem(&err);
    if tls.is_none() && !is_unreachable(&err) {
        return err;
    }
    tracing::warn!("the S3 repository could not be reached: {err:#}");
    // The outermost message says what failed, unless it is the client's own.
    let outermost = err.chain().next();
    let what = match outermost.and_then(|e| e.downcast_ref::<object_store::Error>()) {
        Some(_) => "cannot use the S3 repository".to_owned(),
        None => err.to_string(),
    };
    match tls {
        Some(problem) => anyhow::anyhow!("{what}: {problem}"),
        None => anyhow::anyhow!("{what}: the S3 repository could not be reached; {HINT}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    /// The error the S3 client gives when nothing listens at the endpoint.
    fn refused() -> object_store::Error {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(HttpErrorKind::Connect, io)),
        }
    }

    #[test]
    fn a_refused_connection_says_what_failed_and_what_to_check() {
        let err = Err::<(), _>(refused())
            .context("cannot upload backups/x/data/base/1/1259.zst")
            .context("cannot copy the data files")
            .unwrap_err();
        assert!(is_unreachable(&err));
        assert_eq!(
            format!("{:#}", explain(err)),
            "cannot copy the data files: the S3 repository could not be reached; \
             check the S3 endpoint and that the storage is up"
        );
        let bare = anyhow::Error::from(refused());
        assert_eq!(
            explain(bare).to_string(),
            "cannot use the S3 repository: the S3 repository could not be reached; \
             check the S3 endpoint and that the storage is up"
        );
    }

    #[test]
    fn server_errors_and_unreachable_stores_are_transient_a_missing_object_is_not() {
        assert!(is_transient(&anyhow::Error::from(refused()).context("x")));
        let slow_down = object_store::Error::Generic {
            store: "S3",
            source: "503 Slow Down".into(),
        };
        assert!(is_transient(&anyhow::Error::from(slow_down).context("x")));
        let missing = object_store::Error::NotFound {
            path: "k".into(),
            source: "404".into(),
        };
        assert!(!is_transient(&anyhow::Error::from(missing).context("x")));
        assert!(!is_transient(&anyhow::anyhow!(
            "k does not match its checksum"
        )));
    }

    /// A CA and an HTTPS listener on loopback whose certificate (for
    /// 127.0.0.1) it signs; each connection is closed after the handshake.
    fn https_listener(ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>) -> u16 {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, ca)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
            .unwrap();
        let config = std::sync::Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
                while conn.is_handshaking() && conn.complete_io(&mut stream).is_ok() {}
            }
        });
        port
    }

    fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    }

    /// What the S3 client says when it reads an object at `port` trusting `trusted`.
    fn read_trusting(port: u16, trusted: &str) -> anyhow::Error {
        let settings = crate::backup::settings::RepoSettings {
            endpoint: format!("https://127.0.0.1:{port}"),
            tls_ca_chain: vec![trusted.to_owned()],
            ..crate::backup::settings::tests::sample()
        };
        let repo = crate::backup::repo::Repo::open(&settings).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path = object_store::path::Path::from("repository.json");
        use object_store::ObjectStoreExt as _;
        let err = rt.block_on(repo.store.head(&path)).unwrap_err();
        anyhow::Error::from(err).context("cannot read the repository's owner")
    }

    #[test]
    fn a_certificate_from_an_untrusted_ca_is_named_with_what_to_set() {
        let server_ca = ca("server CA");
        let port = https_listener(&server_ca);
        let err = read_trusting(port, &ca("another CA").pem());
        let expected = "the S3 endpoint's TLS certificate is not signed by a CA the unit \
                        trusts; set the s3-integrator's tls-ca-chain to the base64 of the PEM \
                        certificate of the CA that signed it";
        assert_eq!(tls_problem(&err).as_deref(), Some(expected), "{err:#}");
        assert!(!is_transient(&err));
        assert_eq!(
            format!("{:#}", explain(err)),
            format!("cannot read the repository's owner: {expected}")
        );
        // Trusting the right CA, the handshake passes: whatever fails next
        // is not a TLS problem.
        let err = read_trusting(port, &server_ca.pem());
        assert_eq!(tls_problem(&err), None, "{err:#}");
    }

    #[test]
    fn each_refused_certificate_says_what_to_change() {
        use rustls::CertificateError as Cert;
        let said = |tls: rustls::Error| {
            // As the HTTP client hands it over: inside an io::Error.
            let io = std::io::Error::other(tls);
            tls_problem(&anyhow::Error::from(io).context("cannot read k")).unwrap()
        };
        assert_eq!(
            said(rustls::Error::InvalidCertificate(Cert::NotValidForName)),
            "the S3 endpoint's TLS certificate is not valid for the endpoint's host; set the \
             s3-integrator's endpoint to a name or address the certificate lists"
        );
        assert_eq!(
            said(rustls::Error::InvalidCertificate(Cert::Expired)),
            "the S3 endpoint's TLS certificate has expired or is not valid yet; renew it, or \
             check the unit's clock"
        );
        assert_eq!(
            said(rustls::Error::InvalidCertificate(Cert::NotValidYet)),
            said(rustls::Error::InvalidCertificate(Cert::Expired))
        );
        assert!(said(rustls::Error::InvalidCertificate(Cert::Revoked))
            .starts_with("the S3 endpoint's TLS certificate is not valid (Revoked); check"));
        assert!(said(rustls::Error::DecryptError)
            .starts_with("the TLS handshake with the S3 endpoint failed"));
    }

    #[test]
    fn answers_and_other_failures_are_left_as_they_are() {
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "403 Forbidden".into(),
        };
        let err = anyhow::Error::from(denied).context("cannot write k");
        assert!(!is_unreachable(&err));
        assert!(format!("{:#}", explain(err)).contains("403 Forbidden"));
        // A PostgreSQL server that refuses is not the repository.
        let db = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            .context("cannot switch WAL on the primary");
        assert!(!is_unreachable(&db));
    }
}
