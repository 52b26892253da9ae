//! The repository: an object store scoped to this cluster's prefix, the
//! names of what lives in it, and how objects are written to it (the
//! [`Format`]: compression and encryption key) and how fast (the bandwidth
//! limit, for backups and restores). Everything else in the engine sees only
//! the `ObjectStore` trait, so tests run the same code on `InMemory`.
//!
//! ```text
//! <path>/<model>.<app>/
//!   repository.json                    the owner cluster (and its encryption key's id)
//!   wal/<timeline+log>/<segment>-<sha256>.<zst|lz4|raw>
//!   wal/<timeline>.history-<sha256>.<zst|lz4|raw>
//!   backups/<id>/...                   one backup; its record is written last
//! ```

use std::sync::Arc;

use anyhow::{Context as _, Result};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::object::Format;
use super::settings::{RepoSettings, UriStyle};
use super::throttle::Throttle;

/// Makes ring the process's TLS provider, which the S3 client's rustls
/// uses (the build gives it none of its own); once per process is enough.
fn install_tls_provider() {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// This cluster's view of the bucket.
#[derive(Clone)]
pub struct Repo {
    pub store: Arc<dyn ObjectStore>,
    /// How objects are written (and, for encrypted ones, the key to read them).
    pub format: Format,
    /// The bandwidth limit backups and restores share, if any.
    pub throttle: Option<Arc<Throttle>>,
}

impl Repo {
    /// Wraps any store (tests use `InMemory`), with the default format.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            format: Format::default(),
            throttle: None,
        }
    }

    /// The same repository, written in `format`.
    pub fn with_format(self, format: Format) -> Self {
        Self { format, ..self }
    }

    /// The same repository, its transfers limited to `mib_per_second`
    /// (`None`: unlimited).
    pub fn with_bandwidth(self, mib_per_second: Option<u32>) -> Self {
        Self {
            throttle: mib_per_second.map(|limit| Arc::new(Throttle::new(limit))),
            ..self
        }
    }

    /// Writes `body` at `path` only if nothing is there yet; false when
    /// something is. Stores without conditional writes get check-then-write.
    pub async fn create(&self, path: &ObjectPath, body: Vec<u8>) -> Result<bool> {
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from(body.clone()), create)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => match self.store.head(path).await {
                Ok(_) => Ok(false),
                Err(object_store::Error::NotFound { .. }) => {
                    self.store
                        .put(path, PutPayload::from(body))
                        .await
                        .with_context(|| format!("cannot write {path}"))?;
                    Ok(true)
                }
                Err(err) => Err(err).with_context(|| format!("cannot read {path}")),
            },
            Err(err) => Err(err).with_context(|| format!("cannot write {path}")),
        }
    }

    /// Opens the S3 repository the settings describe.
    pub fn open(settings: &RepoSettings) -> Result<Self> {
        let scoped = PrefixStore::new(client(settings)?, settings.prefix());
        Ok(Self::new(Arc::new(scoped)).with_format(settings.format()))
    }

    /// The relation's path in the bucket, where every cluster's repository
    /// is a directory (read-only use: listing the other repositories).
    pub fn open_path(settings: &RepoSettings) -> Result<Self> {
        let path = settings.path.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if path.is_empty() {
            Arc::new(client(settings)?)
        } else {
            Arc::new(PrefixStore::new(client(settings)?, path))
        };
        Ok(Self::new(store).with_format(settings.format()))
    }
}

/// How long a request may go without a byte from the server: until its
/// response starts (a part or a segment uploading, so at least 140 KB/s for
/// the 8 MiB parts), and between two pieces of its body. There is no limit
/// on the whole request: the client's default one (30 s from the request
/// to the body's end) failed any download slower than that, as a restore's
/// 1 GiB relation file is at a bandwidth limit or onto a slow disk, and its
/// retries start over from the same clock.
pub const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The S3 client for the relation's endpoint, bucket and keys.
fn client(settings: &RepoSettings) -> Result<object_store::aws::AmazonS3> {
    install_tls_provider();
    let mut options = client_options(&settings.endpoint);
    for pem in &settings.tls_ca_chain {
        let certs = object_store::Certificate::from_pem_bundle(pem.as_bytes())
            .context("the S3 CA chain (tls-ca-chain) is not valid PEM")?;
        for cert in certs {
            options = options.with_root_certificate(cert);
        }
    }
    if let Some(class) = &settings.storage_class {
        let mut headers = http::HeaderMap::new();
        let value = class
            .parse()
            .context("the S3 storage class is not a valid header value")?;
        headers.insert("x-amz-storage-class", value);
        options = options.with_default_headers(headers);
    }
    AmazonS3Builder::new()
        .with_endpoint(&settings.endpoint)
        .with_bucket_name(&settings.bucket)
        .with_region(settings.region.as_deref().unwrap_or("us-east-1"))
        .with_access_key_id(&settings.access_key)
        .with_secret_access_key(&settings.secret_key)
        .with_virtual_hosted_style_request(settings.uri_style == UriStyle::Host)
        .with_client_options(options)
        // Over TLS the channel already guards the body, and every object's
        // content is checked against its own checksum when read back: the
        // request need not hash the body a second time to sign it. Over
        // plain HTTP the signature keeps covering it.
        .with_unsigned_payload(settings.endpoint.starts_with("https://"))
        // Callers retry on their own terms (wal-fetch, actions): fail fast.
        .with_retry(object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(30),
            ..Default::default()
        })
        .build()
        .context("cannot set up the S3 client from the relation's settings")
}

/// The HTTP client's options: plain HTTP only for an `http://` endpoint,
/// and [`STALL_TIMEOUT`] in place of a deadline.
fn client_options(endpoint: &str) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(endpoint.starts_with("http://"))
        .with_timeout_disabled()
        .with_read_timeout(STALL_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ClientConfigKey;

    #[test]
    fn a_request_has_no_deadline_only_a_limit_on_silence() {
        let options = client_options("https://s3.example:9000");
        assert_eq!(options.get_config_value(&ClientConfigKey::Timeout), None);
        assert_eq!(
            options.get_config_value(&ClientConfigKey::ReadTimeout),
            Some("1m".into())
        );
        assert_eq!(
            options.get_config_value(&ClientConfigKey::AllowHttp),
            Some("false".into())
        );
    }
}
