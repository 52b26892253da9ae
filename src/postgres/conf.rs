//! The server's configuration as the charm renders it: `postgresql.conf`
//! (everything the charm decides; initdb's file is replaced whole) and
//! `pg_hba.conf` (only the cluster's units and the charm, scram-sha-256).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use super::recovery::Recovery;

/// The port every unit listens on.
pub const PORT: u16 = 5432;

/// How much of the machine the server may use (the `profile` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A dedicated machine: a quarter of its memory for shared buffers.
    Production,
    /// Small, so that several units share one machine.
    Testing,
}

impl Profile {
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        match value {
            "production" => Ok(Self::Production),
            "testing" => Ok(Self::Testing),
            other => anyhow::bail!(
                "invalid profile {other:?}: use \"production\" or \"testing\" (juju config postgresql profile=testing)"
            ),
        }
    }
}

/// Everything `postgresql.conf` depends on.
#[derive(Debug, Clone)]
pub struct ServerSettings<'a> {
    pub listen_address: IpAddr,
    pub socket_dir: &'a Path,
    pub log_dir: &'a Path,
    pub profile: Profile,
    /// Total memory of the machine, for the production profile.
    pub memory_bytes: u64,
    pub archive_command: &'a str,
    /// Present on a replica: where to stream from.
    pub standby: Option<Standby<'a>>,
    /// Present when the unit has its certificate.
    pub tls: Option<TlsFiles<'a>>,
    /// Present while a restored data directory replays the archive.
    pub recovery: Option<&'a Recovery>,
}

#[derive(Debug, Clone)]
pub struct Standby<'a> {
    pub primary_conninfo: &'a str,
    pub slot: &'a str,
    /// With a repository: how to fetch archived WAL, so a replica that is
    /// behind (or seeded from a backup) catches up from the archive and
    /// streams only what is not archived yet.
    pub restore_command: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
}

/// A configuration string value, quoted as PostgreSQL reads it.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// Renders the whole `postgresql.conf`.
pub fn render_postgresql_conf(s: &ServerSettings<'_>) -> String {
    let (shared_buffers_mb, max_connections) = match s.profile {
        Profile::Testing => (32, 50),
        Profile::Production => ((s.memory_bytes / 4 / (1 << 20)).max(128), 200),
    };
    let mut out = String::from("# Rendered by the postgresql charm; edits are overwritten.\n");
    let mut set = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    set("listen_addresses", quote(&s.listen_address.to_string()));
    set("port", PORT.to_string());
    set("unix_socket_directories", path(s.socket_dir));
    set("max_connections", max_connections.to_string());
    set("shared_buffers", format!("'{shared_buffers_mb}MB'"));
    set("password_encryption", quote("scram-sha-256"));

    set("wal_level", quote("replica"));
    set("wal_log_hints", "on".into());
    set("max_wal_senders", "16".into());
    set("max_replication_slots", "16".into());
    set("wal_keep_size", "'256MB'".into());
    // A restore replays without taking connections (see recovery.rs).
    let hot_standby = if s.recovery.is_some() { "off" } else { "on" };
    set("hot_standby", hot_standby.into());
    set("hot_standby_feedback", "on".into());
    set("wal_retrieve_retry_interval", "'1s'".into());
    set("archive_mode", "on".into());
    set("archive_command", quote(s.archive_command));
    set("archive_timeout", "60".into());

    set("logging_collector", "on".into());
    set("log_directory", path(s.log_dir));
    set("log_filename", quote("postgresql-%a.log"));
    set("log_truncate_on_rotation", "on".into());
    set("log_rotation_age", "'1d'".into());
    set("log_line_prefix", quote("%m [%p] %q%u@%d "));
    set("log_statement", quote("none"));

    if let Some(standby) = &s.standby {
        set("primary_conninfo", quote(standby.primary_conninfo));
        set("primary_slot_name", quote(standby.slot));
        if let Some(command) = standby.restore_command {
            set("restore_command", quote(command));
        }
    }
    match &s.tls {
        Some(tls) => {
            set("ssl", "on".into());
            set("ssl_cert_file", path(tls.cert));
            set("ssl_key_file", path(tls.key));
            set("ssl_ca_file", path(tls.ca));
        }
        None => set("ssl", "off".into()),
    }
    if let Some(recovery) = s.recovery {
        for (key, value) in recovery.settings() {
            set(key, value);
        }
    }
    out
}

/// Renders `pg_hba.conf`: the charm over the unit's socket, the system
/// users from the cluster's units, and nothing else. Units on loopback
/// addresses (several on one machine) connect from 127.0.0.1, the kernel's
/// source address for all of 127/8, so that address is admitted with them.
/// With `tls`, units must connect over TLS (`hostssl`).
pub fn render_pg_hba(units: &[IpAddr], tls: bool) -> String {
    let mut sources: Vec<IpAddr> = units.to_vec();
    if units.iter().any(IpAddr::is_loopback) {
        sources.push(IpAddr::from([127, 0, 0, 1]));
    }
    sources.sort();
    sources.dedup();
    let mut out = String::from("# Rendered by the postgresql charm; edits are overwritten.\n");
    out.push_str("# TYPE  DATABASE     USER         ADDRESS              METHOD\n");
    out.push_str("local   all          operator                          peer map=charm\n");
    out.push_str("local   all          all                               scram-sha-256\n");
    let kind = if tls { "hostssl" } else { "host" };
    for ip in &sources {
        let cidr = match ip {
            IpAddr::V4(_) => format!("{ip}/32"),
            IpAddr::V6(_) => format!("{ip}/128"),
        };
        for (database, user) in [
            ("replication", "replication"),
            ("all", "operator"),
            ("all", "rewind"),
            ("all", "monitoring"),
            ("all", "backup"),
        ] {
            let _ = writeln!(
                out,
                "{kind:<7} {database:<12} {user:<12} {cidr:<20} scram-sha-256"
            );
        }
    }
    out
}

/// Renders `pg_ident.conf`: the charm's OS user may connect as `operator`
/// over the unit's socket without a password (peer authentication).
pub fn render_pg_ident(charm_os_user: &str) -> String {
    format!("# Rendered by the postgresql charm; edits are overwritten.\ncharm   {charm_os_user}   operator\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(socket: &'a Path, logs: &'a Path) -> ServerSettings<'a> {
        ServerSettings {
            listen_address: "127.9.1.1".parse().unwrap(),
            socket_dir: socket,
            log_dir: logs,
            profile: Profile::Testing,
            memory_bytes: 8 << 30,
            archive_command: "/bin/true",
            standby: None,
            tls: None,
            recovery: None,
        }
    }

    #[test]
    fn a_primary_listens_on_its_address_and_archives() {
        let (socket, logs) = (Path::new("/s/run"), Path::new("/s/logs"));
        let conf = render_postgresql_conf(&settings(socket, logs));
        assert!(conf.contains("listen_addresses = '127.9.1.1'\n"), "{conf}");
        assert!(conf.contains("unix_socket_directories = '/s/run'\n"));
        assert!(conf.contains("wal_level = 'replica'\n"));
        assert!(conf.contains("archive_mode = on\n"));
        assert!(conf.contains("ssl = off\n"));
        assert!(!conf.contains("primary_conninfo"));
    }

    #[test]
    fn a_replica_streams_from_its_primary_through_a_slot() {
        let (socket, logs) = (Path::new("/s/run"), Path::new("/s/logs"));
        let mut s = settings(socket, logs);
        s.standby = Some(Standby {
            primary_conninfo: "host=127.9.1.1 user=replication",
            slot: "postgresql_1",
            restore_command: None,
        });
        let conf = render_postgresql_conf(&s);
        assert!(
            conf.contains("primary_conninfo = 'host=127.9.1.1 user=replication'\n"),
            "{conf}"
        );
        assert!(conf.contains("primary_slot_name = 'postgresql_1'\n"));
        assert!(!conf.contains("restore_command"), "{conf}");

        // With a repository, it also reads the archive.
        s.standby = Some(Standby {
            primary_conninfo: "host=127.9.1.1 user=replication",
            slot: "postgresql_1",
            restore_command: Some("'/bin/charm' wal-fetch %f %p"),
        });
        let conf = render_postgresql_conf(&s);
        assert!(
            conf.contains("restore_command = '''/bin/charm'' wal-fetch %f %p'\n"),
            "{conf}"
        );
    }

    #[test]
    fn production_sizes_for_the_machine() {
        let (socket, logs) = (Path::new("/s"), Path::new("/l"));
        let mut s = settings(socket, logs);
        s.profile = Profile::Production;
        assert!(render_postgresql_conf(&s).contains("shared_buffers = '2048MB'"));
    }

    #[test]
    fn values_are_quoted_for_postgresql() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn hba_admits_only_the_units_with_scram() {
        let hba = render_pg_hba(
            &["127.9.1.1".parse().unwrap(), "127.9.1.2".parse().unwrap()],
            false,
        );
        assert!(
            hba.contains("host    replication  replication  127.9.1.2/32"),
            "{hba}"
        );
        assert!(!hba.contains("trust") && !hba.contains("md5") && !hba.contains("0.0.0.0"));
        // Only the charm's own OS user gets in without a password.
        let peer = "local   all          operator                          peer map=charm";
        assert!(hba
            .lines()
            .filter(|l| !l.starts_with('#') && *l != peer)
            .all(|l| l.ends_with("scram-sha-256")));
        assert_eq!(hba.matches("peer").count(), 1);
        assert!(
            hba.contains("127.0.0.1/32"),
            "loopback units connect from 127.0.0.1"
        );
        let remote = render_pg_hba(&["10.1.2.3".parse().unwrap()], false);
        let tls = render_pg_hba(&["10.1.2.3".parse().unwrap()], true);
        assert!(
            tls.contains("hostssl replication  replication  10.1.2.3/32"),
            "{tls}"
        );
        assert!(!tls.contains("\nhost "), "{tls}");
        assert!(!remote.contains("127.0.0.1"), "{remote}");
    }

    #[test]
    fn profile_names_are_checked() {
        assert_eq!(Profile::parse("testing").unwrap(), Profile::Testing);
        assert!(Profile::parse("big")
            .unwrap_err()
            .to_string()
            .contains("invalid profile \"big\""));
    }
}
