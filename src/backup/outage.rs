//! An S3 repository that cannot be reached, told apart from one that
//! answered with an error, and said plainly: what failed, that the
//! repository could not be reached, and what to check. Only the S3 client's
//! own transport errors count (refused or lost connections, timeouts, after
//! its retries), so a PostgreSQL connection error is never taken for one.

use object_store::client::{HttpError, HttpErrorKind};

/// What the user should check when the repository cannot be reached.
pub const HINT: &str = "check the S3 endpoint and that the storage is up";

/// True when asking again may help: the repository could not be reached,
/// or it answered with a server error (`503 Slow Down`, `500`) through
/// every retry of the S3 client, which object_store reports as `Generic`
/// (a missing object, a refused permission and the like have their own
/// variants and are not transient).
pub fn is_transient(err: &anyhow::Error) -> bool {
    is_unreachable(err)
        || err.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<object_store::Error>(),
                Some(object_store::Error::Generic { .. })
            )
        })
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
/// `err` is an unreachable repository (the client's details go to the log);
/// otherwise `err` as it is.
pub fn explain(err: anyhow::Error) -> anyhow::Error {
    if !is_unreachable(&err) {
        return err;
    }
    tracing::warn!("the S3 repository could not be reached: {err:#}");
    // The outermost message says what failed, unless it is the client's own.
    let outermost = err.chain().next();
    let what = match outermost.and_then(|e| e.downcast_ref::<object_store::Error>()) {
        Some(_) => "cannot use the S3 repository".to_owned(),
        None => err.to_string(),
    };
    anyhow::anyhow!("{what}: the S3 repository could not be reached; {HINT}")
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
