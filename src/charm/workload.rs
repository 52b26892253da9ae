//! This unit's workload as the charm drives it: where its storage is, the
//! server over it, its address, and the configuration rendered from the
//! cluster's facts. What is costly to find out (storage location, binaries)
//! is cached in a file in the unit's charm directory.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::config::CharmConfig;
use super::outcome::Waiting;
use super::peers::Peers;
use super::tls::TlsPaths;
use crate::juju::{Context, HookTools};
use crate::postgres::binaries::{self, Binaries};
use crate::postgres::conf::{self, ServerSettings, Standby, TlsFiles};
use crate::postgres::os_user::{current_user_name, ServerUser};
use crate::postgres::recovery::Recovery;
use crate::postgres::server::{Layout, Server};

/// The storage the data directory lives in, as metadata.yaml names it.
pub const STORAGE: &str = "pgdata";
/// The binding whose address the server listens on.
const BINDING: &str = "database-peers";
/// Until backups configure WAL archiving, completed segments are let go.
pub const NO_ARCHIVE: &str = "/bin/true";

/// What the charm remembers between hooks on this unit.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct UnitCache {
    storage: Option<PathBuf>,
    bindir: Option<PathBuf>,
    major: Option<u32>,
}

impl UnitCache {
    fn path(charm_dir: &Path) -> PathBuf {
        charm_dir.join(".unit-state.json")
    }

    fn load(charm_dir: &Path) -> Self {
        std::fs::read(Self::path(charm_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn save(&self, charm_dir: &Path) -> Result<()> {
        let body = serde_json::to_vec_pretty(self).context("cannot encode the unit cache")?;
        std::fs::write(Self::path(charm_dir), body).context("cannot write the unit cache")
    }
}

/// The unit's server and what its configuration is rendered from.
pub struct Workload {
    pub server: Server,
    pub address: IpAddr,
    /// True when this unit has its certificate installed and serves TLS.
    pub tls: bool,
    /// The archive_command, once the repository may be written to.
    pub archive_command: Option<String>,
    /// The restore_command a replica reads the archive with, likewise.
    pub restore_command: Option<String>,
    /// Set while a restored data directory replays the archive.
    pub recovery: Option<Recovery>,
    config: CharmConfig,
    charm_user: String,
}

impl Workload {
    /// Finds the storage, the binaries (installing them on first use) and
    /// the unit's address.
    pub fn load(ctx: &Context, tools: &dyn HookTools, config: &CharmConfig) -> Result<Self> {
        let mut cache = UnitCache::load(&ctx.charm_dir);
        let before = serde_json::to_string(&cache).unwrap_or_default();

        let storage = match (&cache.storage, &ctx.storage) {
            (_, Some(attached)) if attached.id.starts_with(STORAGE) => attached.location.clone(),
            (Some(cached), _) => cached.clone(),
            _ => locate_storage(tools)?,
        };
        cache.storage = Some(storage.clone());

        let bin = match (&cache.bindir, cache.major) {
            (Some(dir), Some(major)) if dir.join("postgres").exists() => Binaries {
                bindir: dir.clone(),
                major,
            },
            _ => binaries::find_or_install()?,
        };
        cache.bindir = Some(bin.bindir.clone());
        cache.major = Some(bin.major);
        if serde_json::to_string(&cache).unwrap_or_default() != before {
            cache.save(&ctx.charm_dir)?;
        }

        let network = tools
            .network_get(BINDING)
            .context("cannot read the unit's address")?;
        let address = network
            .ingress_addresses
            .first()
            .context("the unit has no ingress address")?
            .parse()
            .context("the unit's ingress address is not an IP address")?;

        Ok(Self {
            server: Server::new(bin, Layout::new(storage), ServerUser::detect()?),
            address,
            tls: false,
            archive_command: None,
            restore_command: None,
            recovery: None,
            config: config.clone(),
            charm_user: current_user_name()?,
        })
    }

    /// The storage's location, when a hook has found it before.
    pub fn cached_storage(ctx: &Context) -> Option<PathBuf> {
        UnitCache::load(&ctx.charm_dir).storage
    }

    /// What the cache knows without asking Juju: the storage, the binaries
    /// and the server's OS user; None before the first full hook.
    pub fn cached(ctx: &Context) -> Result<Option<(PathBuf, Binaries, ServerUser)>> {
        let cache = UnitCache::load(&ctx.charm_dir);
        match (cache.storage, cache.bindir, cache.major) {
            (Some(storage), Some(bindir), Some(major)) => Ok(Some((
                storage,
                Binaries { bindir, major },
                ServerUser::detect()?,
            ))),
            _ => Ok(None),
        }
    }

    /// Renders and writes postgresql.conf, pg_hba.conf and pg_ident.conf;
    /// true when any of them changed.
    pub fn configure(&self, peers: &Peers, standby: Option<Standby<'_>>) -> Result<bool> {
        let layout = &self.server.layout;
        let (socket, logs) = (layout.socket_dir(), layout.log_dir());
        let tls = TlsPaths::of(&self.server);
        let settings = ServerSettings {
            listen_address: self.address,
            socket_dir: &socket,
            log_dir: &logs,
            profile: self.config.profile,
            memory_bytes: total_memory(),
            archive_command: self.archive_command.as_deref().unwrap_or(NO_ARCHIVE),
            standby,
            tls: self.tls.then(|| TlsFiles {
                cert: &tls.cert,
                key: &tls.key,
                ca: &tls.ca,
            }),
            recovery: self.recovery.as_ref(),
        };
        let mut units: BTreeSet<IpAddr> = peers
            .members
            .values()
            .filter_map(|m| m.address.as_deref()?.parse().ok())
            .collect();
        units.insert(self.address);
        let units: Vec<IpAddr> = units.into_iter().collect();

        let mut changed = self
            .server
            .write_config("postgresql.conf", &conf::render_postgresql_conf(&settings))?;
        changed |= self
            .server
            .write_config("pg_hba.conf", &conf::render_pg_hba(&units, self.tls))?;
        changed |= self
            .server
            .write_config("pg_ident.conf", &conf::render_pg_ident(&self.charm_user))?;
        Ok(changed)
    }

    /// Writes the password file the server's replication connections use;
    /// true when the password in it changed.
    pub fn write_passfile(&self, replication_password: &str) -> Result<bool> {
        Self::write_passfile_for(&self.server, replication_password)
    }

    pub fn write_passfile_for(server: &Server, replication_password: &str) -> Result<bool> {
        let line = passfile_line("replication", replication_password);
        let path = server.layout.passfile();
        if std::fs::read_to_string(&path).ok().as_deref() == Some(line.as_str()) {
            return Ok(false);
        }
        server.user.write_file(&path, line.as_bytes(), 0o600)?;
        Ok(true)
    }
}

/// A libpq password file's line giving `user`'s password for any host and
/// database on the server's port (`host:port:database:user:password`, with
/// `:` and `\` escaped).
pub fn passfile_line(user: &str, password: &str) -> String {
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:{}:*:{user}:{escaped}\n", conf::PORT)
}

/// The slot a replica streams through, named after its unit.
pub fn slot_name(unit: &str) -> String {
    unit.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn locate_storage(tools: &dyn HookTools) -> Result<PathBuf> {
    let ids = tools
        .storage_list(STORAGE)
        .context("cannot list the unit's storage")?;
    let Some(id) = ids.first() else {
        return Err(Waiting(format!("waiting for the {STORAGE} storage to be attached")).into());
    };
    let location = tools
        .storage_get(id)
        .with_context(|| format!("cannot locate the storage {id}"))?;
    if location.as_os_str().is_empty() {
        bail!("the storage {id} has no location");
    }
    Ok(location)
}

fn total_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(1 << 30, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_valid_postgresql_slot_names() {
        assert_eq!(slot_name("postgresql/12"), "postgresql_12");
        assert_eq!(slot_name("My-App/0"), "my_app_0");
    }

    #[test]
    fn memory_is_read_from_the_kernel() {
        assert!(total_memory() > 64 << 20);
    }
}
