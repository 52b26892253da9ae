//! The backup engine: the repository in S3 and its settings, WAL archiving,
//! backups and their catalog. Knows nothing of Juju; talks to PostgreSQL
//! through `crate::postgres`.

pub mod archive_cli;
pub mod catalog;
pub mod cipher;
pub mod codec;
pub mod copy;
pub mod delta;
pub mod engine;
pub mod expire;
pub mod lock;
pub mod lz4frame;
pub mod object;
pub mod outage;
pub mod owner;
pub mod pages;
pub mod pending;
pub mod pgmanifest;
pub mod repo;
pub mod restore;
pub mod schedule;
pub mod settings;
pub mod siblings;
pub mod target;
pub mod throttle;
pub mod upload;
pub mod verify;
pub mod wal;
pub mod wal_ahead;
pub mod walk;

/// What the engine's unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// Runs a future to completion on a runtime of its own.
    pub fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }
}
