//! The backup engine: the repository in S3 and its settings, WAL archiving,
//! backups and their catalog. Knows nothing of Juju; talks to PostgreSQL
//! through `crate::postgres`.

pub mod archive_cli;
pub mod catalog;
pub mod codec;
pub mod engine;
pub mod expire;
pub mod lock;
pub mod outage;
pub mod owner;
pub mod pages;
pub mod pending;
pub mod pgmanifest;
pub mod repo;
pub mod restore;
pub mod settings;
pub mod siblings;
pub mod target;
pub mod upload;
pub mod verify;
pub mod wal;
pub mod walk;
