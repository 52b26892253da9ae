//! The options of config.yaml that say how backups are written: compression
//! and its level, files uploaded at once, the bandwidth limit, and which
//! secret holds the encryption key (read in `encryption`). Each is checked
//! here; a bad value blocks the unit with what to set, before anything is
//! changed.

use anyhow::Result;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::outcome::Blocked;
use crate::backup::codec::{Compression, ZSTD_LEVEL};

/// Files uploaded at once when the config does not say: the CPU cores,
/// and no fewer than this (an upload waits on S3 as much as it compresses).
const MIN_DEFAULT_CONCURRENCY: usize = 4;
const MAX_CONCURRENCY: i64 = 64;
/// 100 GiB/s: a limit above that is surely a typo.
const MAX_BANDWIDTH: i64 = 100 * 1024;

/// How backups are written, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupOptions {
    /// `backup-compression` and `backup-compression-level`.
    pub compression: Compression,
    /// `backup-upload-concurrency`: files uploaded at once.
    pub upload_concurrency: usize,
    /// `backup-bandwidth-limit`: MiB/s for backup uploads and restore
    /// downloads together; None for no limit.
    pub bandwidth_limit: Option<u32>,
    /// `backup-encryption-secret`: the URI of the secret holding the key.
    pub encryption_secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Raw {
    backup_compression: Option<String>,
    backup_compression_level: Option<i64>,
    backup_upload_concurrency: Option<i64>,
    backup_bandwidth_limit: Option<i64>,
    backup_encryption_secret: Option<String>,
}

fn blocked(message: String) -> anyhow::Error {
    Blocked(message).into()
}

impl BackupOptions {
    /// The options from config-get's answer.
    pub fn parse(config: &Map<String, Value>) -> Result<Self> {
        let raw: Raw = serde_json::from_value(Value::Object(config.clone())).map_err(|err| {
            blocked(format!(
                "a backup option has a value of the wrong type ({err}): see config.yaml"
            ))
        })?;
        Ok(Self {
            compression: compression(
                raw.backup_compression.as_deref(),
                raw.backup_compression_level,
            )?,
            upload_concurrency: concurrency(raw.backup_upload_concurrency)?,
            bandwidth_limit: bandwidth(raw.backup_bandwidth_limit)?,
            encryption_secret: secret_uri(raw.backup_encryption_secret.as_deref())?,
        })
    }
}

fn compression(name: Option<&str>, level: Option<i64>) -> Result<Compression> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("zstd");
    match (name, level) {
        ("zstd", None) => Ok(Compression::Zstd { level: ZSTD_LEVEL }),
        ("zstd", Some(level @ 1..=19)) => Ok(Compression::Zstd {
            level: level as i32,
        }),
        ("zstd", Some(level)) => Err(blocked(format!(
            "invalid backup-compression-level={level}: zstd takes a level from 1 (fastest) to \
             19 (smallest); {ZSTD_LEVEL} is the default"
        ))),
        ("lz4" | "none", Some(level)) => Err(blocked(format!(
            "backup-compression-level={level} applies to zstd only, not to \
             backup-compression={name}: reset it (juju config <app> --reset \
             backup-compression-level) or set backup-compression=zstd"
        ))),
        ("lz4", None) => Ok(Compression::Lz4),
        ("none", None) => Ok(Compression::None),
        (other, _) => Err(blocked(format!(
            "invalid backup-compression={other:?}: set zstd (the default), lz4 (faster, larger) \
             or none"
        ))),
    }
}

fn concurrency(value: Option<i64>) -> Result<usize> {
    match value {
        None | Some(0) => Ok(std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(MIN_DEFAULT_CONCURRENCY)),
        Some(n @ 1..=MAX_CONCURRENCY) => Ok(n as usize),
        Some(n) => Err(blocked(format!(
            "invalid backup-upload-concurrency={n}: set a number of files from 1 to \
             {MAX_CONCURRENCY}, or 0 for the number of CPU cores (at least \
             {MIN_DEFAULT_CONCURRENCY})"
        ))),
    }
}

fn bandwidth(value: Option<i64>) -> Result<Option<u32>> {
    match value {
        None | Some(0) => Ok(None),
        Some(n @ 1..=MAX_BANDWIDTH) => Ok(Some(n as u32)),
        Some(n) => Err(blocked(format!(
            "invalid backup-bandwidth-limit={n}: set MiB/s from 1 to {MAX_BANDWIDTH}, or 0 for \
             no limit"
        ))),
    }
}

/// A secret URI as Juju gives a `secret` option: `secret:<id>` or
/// `secret://<model>/<id>`; empty is none.
fn secret_uri(value: Option<&str>) -> Result<Option<String>> {
    let Some(uri) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let id = uri
        .strip_prefix("secret://")
        .and_then(|rest| rest.rsplit_once('/').map(|(_, id)| id))
        .or_else(|| uri.strip_prefix("secret:"));
    match id {
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok(Some(uri.to_owned()))
        }
        // The value is not repeated: it may be a key pasted in the wrong place.
        _ => Err(blocked(
            "invalid backup-encryption-secret: it is not a secret URI; set the URI juju \
             add-secret printed (secret:<id>), after juju grant-secret <name> <app>"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<BackupOptions> {
        BackupOptions::parse(value.as_object().unwrap())
    }

    fn blocked_message(value: Value) -> String {
        let err = parse(value).unwrap_err();
        err.downcast_ref::<Blocked>()
            .expect("a bad value blocks")
            .0
            .clone()
    }

    #[test]
    fn defaults_are_zstd_3_the_cores_no_limit_no_key() {
        let options = parse(json!({})).unwrap();
        assert_eq!(options.compression, Compression::Zstd { level: 3 });
        assert!(options.upload_concurrency >= MIN_DEFAULT_CONCURRENCY);
        assert_eq!(options.bandwidth_limit, None);
        assert_eq!(options.encryption_secret, None);
        let options = parse(json!({
            "backup-compression": "zstd",
            "backup-compression-level": 19,
            "backup-upload-concurrency": 2,
            "backup-bandwidth-limit": 50,
            "backup-encryption-secret": "secret:d1mq4qvmp25c77bl6ce0"
        }))
        .unwrap();
        assert_eq!(options.compression, Compression::Zstd { level: 19 });
        assert_eq!(options.upload_concurrency, 2);
        assert_eq!(options.bandwidth_limit, Some(50));
        assert_eq!(
            options.encryption_secret.as_deref(),
            Some("secret:d1mq4qvmp25c77bl6ce0")
        );
        let options = parse(json!({"backup-compression": "lz4"})).unwrap();
        assert_eq!(options.compression, Compression::Lz4);
        let options = parse(json!({"backup-compression": "none"})).unwrap();
        assert_eq!(options.compression, Compression::None);
    }

    #[test]
    fn bad_values_block_with_what_to_set() {
        assert_eq!(
            blocked_message(json!({"backup-compression": "gzip"})),
            "invalid backup-compression=\"gzip\": set zstd (the default), lz4 (faster, larger) \
             or none"
        );
        assert_eq!(
            blocked_message(json!({"backup-compression-level": 22})),
            "invalid backup-compression-level=22: zstd takes a level from 1 (fastest) to 19 \
             (smallest); 3 is the default"
        );
        assert_eq!(
            blocked_message(json!({"backup-compression": "lz4", "backup-compression-level": 5})),
            "backup-compression-level=5 applies to zstd only, not to backup-compression=lz4: \
             reset it (juju config <app> --reset backup-compression-level) or set \
             backup-compression=zstd"
        );
        assert_eq!(
            blocked_message(json!({"backup-upload-concurrency": 65})),
            "invalid backup-upload-concurrency=65: set a number of files from 1 to 64, or 0 for \
             the number of CPU cores (at least 4)"
        );
        assert_eq!(
            blocked_message(json!({"backup-bandwidth-limit": -1})),
            "invalid backup-bandwidth-limit=-1: set MiB/s from 1 to 102400, or 0 for no limit"
        );
        assert_eq!(
            blocked_message(json!({"backup-encryption-secret": "0123abcd"})),
            "invalid backup-encryption-secret: it is not a secret URI; set the URI juju \
             add-secret printed (secret:<id>), after juju grant-secret <name> <app>"
        );
        assert!(
            parse(json!({"backup-encryption-secret": "secret://uuid/d1mq4qvmp25c77bl6ce0"}))
                .is_ok()
        );
    }
}
