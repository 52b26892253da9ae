//! Where the repository is and how to reach it: the settings the charm
//! derives from the s3-parameters relation and its config (compression,
//! and the encryption key from the secret `backup-encryption-secret` names),
//! kept for the programs that run outside any hook (wal-push, wal-fetch) in
//! a file in the unit's storage, mode 0600, owned by the server's OS user,
//! replaced atomically, never logged (its `Debug` hides the keys).

use std::fmt;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::cipher::Key;
use super::codec::Compression;
use super::object::Format;
use crate::postgres::os_user::ServerUser;

/// Path-style (`endpoint/bucket/key`) or virtual-host-style addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UriStyle {
    Host,
    Path,
}

/// Everything needed to open the repository.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RepoSettings {
    /// `https://s3.amazonaws.com` unless the relation says otherwise.
    pub endpoint: String,
    pub region: Option<String>,
    pub bucket: String,
    /// The relation's path, `""` or `/` + the path without slashes around it.
    pub path: String,
    pub uri_style: UriStyle,
    /// PEM certificates to trust for the endpoint, besides the system's.
    #[serde(default)]
    pub tls_ca_chain: Vec<String>,
    pub storage_class: Option<String>,
    pub access_key: String,
    pub secret_key: String,
    /// This cluster's directory under the path: `<model>.<app>`.
    pub repository: String,
    /// How objects are compressed (`backup-compression`, `-level`).
    #[serde(default)]
    pub compression: Compression,
    /// The key objects are encrypted with (`backup-encryption-secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<Key>,
}

impl fmt::Debug for RepoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepoSettings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("uri_style", &self.uri_style)
            .field("repository", &self.repository)
            .field("compression", &self.compression)
            .field(
                "encryption_key_id",
                &self.encryption_key.as_ref().map(Key::id),
            )
            .finish_non_exhaustive()
    }
}

impl RepoSettings {
    /// The key prefix of this cluster's repository inside the bucket.
    pub fn prefix(&self) -> String {
        let path = self.path.trim_matches('/');
        if path.is_empty() {
            self.repository.clone()
        } else {
            format!("{path}/{}", self.repository)
        }
    }

    /// How objects are written to the repository.
    pub fn format(&self) -> Format {
        Format {
            compression: self.compression,
            key: self.encryption_key.clone(),
        }
    }

    /// Writes the settings for the server's OS user, readable by it alone.
    pub fn save(&self, path: &Path, user: &ServerUser) -> Result<bool> {
        let body =
            serde_json::to_vec_pretty(self).context("cannot encode the repository settings")?;
        if std::fs::read(path).ok().as_deref() == Some(body.as_slice()) {
            return Ok(false);
        }
        user.write_file(path, &body, 0o600)?;
        Ok(true)
    }

    /// Reads the settings the charm wrote.
    pub fn load(path: &Path) -> Result<Self> {
        let body = std::fs::read(path).with_context(|| {
            format!(
                "cannot read the repository settings {}: is the s3-parameters relation set up?",
                path.display()
            )
        })?;
        serde_json::from_slice(&body).with_context(|| format!("{} is not valid", path.display()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> RepoSettings {
        RepoSettings {
            endpoint: "http://127.0.0.1:9000".into(),
            region: None,
            bucket: "backups".into(),
            path: "/team/pg".into(),
            uri_style: UriStyle::Path,
            tls_ca_chain: vec![],
            storage_class: None,
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI-secret".into(),
            repository: "local.postgresql".into(),
            compression: Compression::default(),
            encryption_key: None,
        }
    }

    #[test]
    fn debug_never_shows_the_keys() {
        let key = Key::from_bytes([0xab; 32]);
        let settings = RepoSettings {
            encryption_key: Some(key.clone()),
            ..sample()
        };
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("AKIDEXAMPLE"),
            "{shown}"
        );
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains(&key.id().to_string()), "{shown}");
    }

    #[test]
    fn the_key_and_compression_reach_the_archive_programs() {
        let settings = RepoSettings {
            encryption_key: Some(Key::from_bytes([7; 32])),
            compression: Compression::Lz4,
            ..sample()
        };
        let text = serde_json::to_string(&settings).unwrap();
        let back: RepoSettings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, settings);
        assert_eq!(back.format().key, Some(Key::from_bytes([7; 32])));
        // Settings written before these options read as zstd, unencrypted.
        let old = serde_json::to_value(sample()).unwrap();
        let mut old = old.as_object().unwrap().clone();
        old.remove("compression");
        let back: RepoSettings = serde_json::from_value(old.into()).unwrap();
        assert_eq!(back.format(), Format::default());
    }

    #[test]
    fn the_prefix_joins_path_and_repository() {
        assert_eq!(sample().prefix(), "team/pg/local.postgresql");
        let bare = RepoSettings {
            path: String::new(),
            ..sample()
        };
        assert_eq!(bare.prefix(), "local.postgresql");
    }

    #[test]
    fn saved_settings_are_private_and_round_trip() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repository.json");
        let user = ServerUser::detect().unwrap();
        assert!(sample().save(&file, &user).unwrap());
        assert!(
            !sample().save(&file, &user).unwrap(),
            "unchanged settings are not rewritten"
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(RepoSettings::load(&file).unwrap(), sample());
    }
}
