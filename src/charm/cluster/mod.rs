//! The cluster: which unit is the primary, and what this unit does about
//! it. The leader initialises the cluster and records the primary in the
//! peer app bag; the primary's unit admits its peers; every other unit
//! becomes a streaming replica of it.

mod failover;
mod primary;
mod rejoin;
mod replica;
mod seed;
mod switchover;

use anyhow::{Context as _, Result};

use super::archiving;
use super::config::CharmConfig;
use super::encryption;
use super::event::CERTIFICATES_ENDPOINT;
use super::outcome::Waiting;
use super::passwords::{self, Passwords, SystemUser};
use super::peers::{PeerUnitData, Peers};
use super::s3::{self, S3State};
use super::scheduled;
use super::timer;
use super::tls::{self, TlsPaths};
use super::workload::Workload;
use crate::backup::settings::RepoSettings;
use crate::juju::{Context, HookTools, Status, StatusKind};
use crate::postgres::server::{Layout, Server};
use crate::postgres::sql::Db;

/// What a role step works with.
pub(crate) struct Cluster<'a> {
    pub ctx: &'a Context,
    pub tools: &'a dyn HookTools,
    pub leader: bool,
    pub peers: Peers,
    pub workload: Workload,
    pub passwords: Passwords,
    /// The S3 repository, when related and usable.
    pub repository: Option<RepoSettings>,
}

/// Converges this unit on its role in the cluster, and says how it is.
pub fn reconcile(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    let (mut cluster, repository_problem) = Cluster::load(ctx, tools)?;
    let storage = cluster.workload.server.layout.storage.clone();

    // Act on this unit's role.
    let status = match (cluster.role_step()?, repository_problem) {
        // The cluster serves, but the user has the repository to fix.
        (status, Some(problem)) if status.kind == StatusKind::Active => {
            Status::new(StatusKind::Blocked, problem)
        }
        (status, _) => status,
    };
    remember_outcome(ctx, status.kind == StatusKind::Active);
    tools.status_set(false, &scheduled::with_notice(&storage, status))
}

/// Promotes `target` in place of the current primary (leader only; see
/// `switchover`).
pub fn switchover(
    ctx: &Context,
    tools: &dyn HookTools,
    target: &str,
) -> Result<switchover::Switched> {
    let (mut cluster, _) = Cluster::load(ctx, tools)?;
    switchover::run(&mut cluster, target)
}

impl<'a> Cluster<'a> {
    /// Everything a role step needs, with this unit's configuration,
    /// certificate and peer data brought up to date; and what is wrong
    /// with the repository, if anything.
    fn load(ctx: &'a Context, tools: &'a dyn HookTools) -> Result<(Self, Option<String>)> {
        // The config must be valid before anything is built on it.
        let config = CharmConfig::load(tools)?;

        // The peer relation carries the cluster's shared facts.
        let mut peers = Peers::load(tools, ctx)?
            .ok_or_else(|| Waiting("waiting for Juju to create the peer relation".into()))?;

        // The leader owns the passwords; the others wait for them.
        let leader = tools.is_leader()?;
        let passwords = if leader {
            passwords::ensure(tools, &mut peers)?
        } else if peers.app_data.system_users_secret.is_some() {
            passwords::load(tools, &peers.app_data)?
        } else {
            return Err(Waiting(
                "waiting for the leader to generate the system users' passwords".into(),
            )
            .into());
        };

        // This unit's server, its certificate, and what the peers need to know.
        let mut workload = Workload::load(ctx, tools, &config)?;
        let storage = workload.server.layout.storage.clone();
        timer::arm(&storage, &config.schedules)?;
        let broken = ctx.relation.as_ref().map(|r| &r.id).filter(|_| {
            ctx.dispatch_path == format!("hooks/{CERTIFICATES_ENDPOINT}-relation-broken")
        });
        workload.tls = tls::reconcile(ctx, tools, &workload.server, workload.address, broken)?;
        let mine = PeerUnitData {
            address: Some(workload.address.to_string()),
            tls: Some(workload.tls),
            ..peers.mine.clone()
        };
        if peers.mine != mine {
            peers.save_mine(tools, mine)?;
        }

        // The repository: WAL goes to it only once it is reachable and ours.
        let s3 = encryption::complete(ctx, tools, &config.backup, s3::load(ctx, tools, leader)?)?;
        let repository_problem = archiving::check(ctx, &workload.server, &s3)?;
        workload.archive_command =
            archiving::command(ctx, &workload.server, &s3, repository_problem.is_none())?;
        if workload.archive_command.is_some() {
            workload.restore_command = Some(archiving::fetch_command(ctx, &workload.server)?);
        }
        // A new unit may seed itself from the repository's backups.
        let repository = match s3 {
            S3State::Ready(settings) if repository_problem.is_none() => Some(*settings),
            _ => None,
        };

        let cluster = Cluster {
            ctx,
            tools,
            leader,
            peers,
            workload,
            passwords,
            repository,
        };
        Ok((cluster, repository_problem))
    }

    fn role_step(&mut self) -> Result<Status> {
        let me = self.ctx.unit.clone();
        match self.peers.app_data.primary.clone() {
            None if self.leader => primary::bootstrap(self),
            None => Err(Waiting("waiting for the leader to initialise the cluster".into()).into()),
            Some(p) if p == me => primary::reconcile(self),
            Some(p) if !self.peers.members.contains_key(&p) => {
                if !self.leader {
                    return Err(Waiting(format!(
                        "the primary {p} has left: waiting for the leader to promote a replica"
                    ))
                    .into());
                }
                failover::elect(self, &p)?;
                self.role_step()
            }
            Some(p) => replica::reconcile(self, &p),
        }
    }
}

/// The periodic check: bring a stopped server back, and report the truth
/// about it. Cheap when all is well: a primary's health is read from its
/// postmaster.pid, a replica's streaming from SQL, and the only hook tool
/// is `status-set`.
pub fn update_status(ctx: &Context, tools: &dyn HookTools) -> Result<()> {
    let Some(server) = cached_server(ctx)? else {
        return reconcile(ctx, tools);
    };
    // Anything not plainly healthy goes through the whole reconcile step,
    // as does a unit whose last hook ended blocked, waiting or failed (a bad
    // config value must stay in the status until it is fixed).
    if unsettled(ctx)
        || !server.is_initialised()
        || !server.is_ready()?
        || !archiving::verified(&server)
    {
        return reconcile(ctx, tools);
    }
    let status = if server.is_standby() {
        replica::status(&Db::local_peer(&server.layout.socket_dir())?)?
    } else {
        Status::new(StatusKind::Active, primary::STATUS)
    };
    let status = scheduled::with_notice(&server.layout.storage, status);
    tools.status_set(false, &status)
}

/// Where a unit notes that its last hook did not end well.
fn unsettled_path(ctx: &Context) -> std::path::PathBuf {
    ctx.charm_dir.join(".unsettled")
}

fn unsettled(ctx: &Context) -> bool {
    unsettled_path(ctx).exists()
}

/// Notes whether this unit ended its hook active (or blocked, waiting, or
/// failed), for the next update-status.
pub fn remember_outcome(ctx: &Context, ok: bool) {
    let path = unsettled_path(ctx);
    let noted = if ok {
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    } else {
        std::fs::write(&path, b"")
    };
    if let Err(err) = noted {
        tracing::warn!(
            "cannot note the hook's outcome in {}: {err}",
            path.display()
        );
    }
}

/// Stops this unit's server, if it has one (stop hook, or leaving the cluster).
pub fn stop(ctx: &Context) -> Result<()> {
    match cached_server(ctx)? {
        Some(server) => server
            .stop()
            .context("cannot stop the server as the unit leaves"),
        None => Ok(()),
    }
}

/// A connection to the primary's server as `operator`: over the socket when
/// it is this unit's, else over the network with the operator's password.
pub fn connect_primary(ctx: &Context, peers: &Peers, passwords: &Passwords) -> Result<Db> {
    let primary = peers
        .app_data
        .primary
        .as_deref()
        .context("the cluster has no primary yet: wait until the leader has initialised it")?;
    connect_unit(ctx, peers, passwords, primary)
        .with_context(|| format!("cannot connect to the primary {primary}"))
}

/// A connection to `unit`'s server as `operator`: over the socket when it
/// is this unit, else over the network with the operator's password.
pub(crate) fn connect_unit(
    ctx: &Context,
    peers: &Peers,
    passwords: &Passwords,
    unit: &str,
) -> Result<Db> {
    if unit == ctx.unit {
        let server = cached_server(ctx)?.context("this unit's server is not set up yet")?;
        return Db::local_peer(&server.layout.socket_dir());
    }
    let data = peers
        .members
        .get(unit)
        .with_context(|| format!("{unit} is not among the peers"))?;
    let address = data
        .address
        .as_deref()
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("{unit} has not published its address"))?;
    let ca = remote_ca(ctx, data.tls == Some(true))?;
    let operator = passwords.get(SystemUser::Operator)?;
    Db::remote_tls(
        address,
        SystemUser::Operator.as_str(),
        operator,
        ca.as_deref(),
    )
}

/// The CA to verify a peer's server with: when that peer serves TLS and this
/// unit has the cluster's CA.
pub(crate) fn remote_ca(ctx: &Context, peer_tls: bool) -> Result<Option<std::path::PathBuf>> {
    let Some(server) = cached_server(ctx)? else {
        return Ok(None);
    };
    let paths = TlsPaths::of(&server);
    Ok((peer_tls && paths.ca.exists()).then_some(paths.ca))
}

/// After a password change: a replica whose replication password changed
/// reconnects with the new one.
pub fn follow_password_change(ctx: &Context, passwords: &Passwords) -> Result<()> {
    let Some(server) = cached_server(ctx)? else {
        return Ok(());
    };
    let workload_passfile_changed =
        Workload::write_passfile_for(&server, passwords.get(SystemUser::Replication)?)?;
    if workload_passfile_changed && server.is_standby() && server.is_running()? {
        replica::reconnect(&Db::local_peer(&server.layout.socket_dir())?)?;
        tracing::info!("reconnected to the primary with the new replication password");
    }
    Ok(())
}

fn cached_server(ctx: &Context) -> Result<Option<Server>> {
    Workload::cached(ctx).map(|cached| {
        cached.map(|(storage, bin, user)| Server::new(bin, Layout::new(storage), user))
    })
}
