//! The charm's SQL connection to a server (its own over the Unix socket, or
//! another unit's over TCP) and the statements it runs: roles with
//! client-side SCRAM verifiers, replication slots, replication state.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, Config, NoTls};

use super::conf::PORT;

/// A blocking connection: the charm's hooks are sequential, so a
/// current-thread runtime per connection is all it needs.
pub struct Db {
    rt: Runtime,
    client: Client,
}

/// A replica as the primary's `pg_stat_replication` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    pub application_name: String,
    pub client_addr: Option<IpAddr>,
    pub state: String,
}

impl Db {
    /// Connects to this unit's server as `operator` by peer authentication:
    /// the charm's OS user is mapped to it, so no password is needed.
    pub fn local_peer(socket_dir: &Path) -> Result<Self> {
        let mut config = Config::new();
        config.host_path(socket_dir).port(PORT);
        Self::connect(config, "operator", None).with_context(|| {
            format!(
                "cannot connect to the local server through {}",
                socket_dir.display()
            )
        })
    }

    /// Connects to another unit's server, over TLS verified against `ca`
    /// (the server's certificate must name its address) when one is given.
    pub fn remote(host: IpAddr, user: &str, password: &str) -> Result<Self> {
        Self::remote_tls(host, user, password, None)
    }

    pub fn remote_tls(host: IpAddr, user: &str, password: &str, ca: Option<&Path>) -> Result<Self> {
        let mut config = Config::new();
        config.host(host.to_string()).port(PORT);
        let tls = match ca {
            None => None,
            Some(ca) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(tls_connector(ca)?)
            }
        };
        Self::connect_with(config, user, Some(password), tls)
            .with_context(|| format!("cannot connect to the server at {host}:{PORT}"))
    }

    fn connect(config: Config, user: &str, password: Option<&str>) -> Result<Self> {
        Self::connect_with(config, user, password, None)
    }

    fn connect_with(
        mut config: Config,
        user: &str,
        password: Option<&str>,
        tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Result<Self> {
        if let Some(password) = password {
            config.password(password);
        }
        config
            .user(user)
            .dbname("postgres")
            .application_name("postgresql-charm")
            .connect_timeout(Duration::from_secs(10));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let client = rt.block_on(async {
            let client = match tls {
                None => {
                    let (client, connection) = config.connect(NoTls).await?;
                    tokio::spawn(connection);
                    client
                }
                Some(tls) => {
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(connection);
                    client
                }
            };
            Ok::<_, tokio_postgres::Error>(client)
        })?;
        Ok(Self { rt, client })
    }

    pub fn execute(&self, sql: &str) -> Result<()> {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .with_context(|| format!("statement failed: {}", first_words(sql)))
    }

    /// Runs a query that returns one text value.
    pub fn query_text(&self, sql: &str) -> Result<String> {
        let row = self
            .rt
            .block_on(self.client.query_one(sql, &[]))
            .with_context(|| format!("query failed: {}", first_words(sql)))?;
        row.try_get(0)
            .with_context(|| format!("the query did not return text: {}", first_words(sql)))
    }

    /// Runs a query that returns one row; each column as text (or NULL).
    pub fn query_row(&self, sql: &str) -> Result<Vec<Option<String>>> {
        let row = self
            .rt
            .block_on(self.client.query_one(sql, &[]))
            .with_context(|| format!("query failed: {}", first_words(sql)))?;
        Ok((0..row.len())
            .map(|i| row.get::<_, Option<String>>(i))
            .collect())
    }

    /// Runs a query that returns one bigint.
    pub fn query_i64(&self, sql: &str) -> Result<i64> {
        let row = self.rt.block_on(self.client.query_one(sql, &[]))?;
        Ok(row.get(0))
    }

    /// Whether the server is a replica (in recovery).
    pub fn is_in_recovery(&self) -> Result<bool> {
        let row = self
            .rt
            .block_on(self.client.query_one("SELECT pg_is_in_recovery()", &[]))?;
        Ok(row.get(0))
    }

    /// Creates the role, or sets its password, from a verifier computed here
    /// so the plain text never reaches the server or its logs.
    pub fn set_role(&self, role: &str, attributes: &str, password: &str) -> Result<()> {
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let exists = self
            .rt
            .block_on(
                self.client
                    .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role]),
            )?
            .is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        self.execute(&format!(
            "{verb} ROLE {} WITH {attributes} PASSWORD {}",
            ident(role),
            literal(&verifier)
        ))
        .with_context(|| format!("cannot set the role {role}"))
    }

    /// Names of the physical replication slots.
    pub fn slots(&self) -> Result<Vec<String>> {
        let rows = self.rt.block_on(self.client.query(
            "SELECT slot_name::text FROM pg_replication_slots WHERE slot_type = 'physical'",
            &[],
        ))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub fn create_slot(&self, name: &str) -> Result<()> {
        self.rt
            .block_on(
                self.client
                    .execute("SELECT pg_create_physical_replication_slot($1)", &[&name]),
            )
            .with_context(|| format!("cannot create the replication slot {name}"))
            .map(drop)
    }

    /// Drops a slot, first ending the session that streams through it (its
    /// unit has left); true if it was there.
    pub fn drop_slot(&self, name: &str) -> Result<bool> {
        let started = std::time::Instant::now();
        loop {
            self.rt.block_on(self.client.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND active",
                &[&name],
            ))?;
            let dropped = self.rt.block_on(self.client.query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[&name],
            ));
            match dropped {
                Ok(rows) if !rows.is_empty() => return Ok(true),
                Ok(_) if !self.slots()?.iter().any(|s| s == name) => return Ok(false),
                // Still active (the walsender is exiting) or raced: try again.
                _ if started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(_) => bail!("the replication slot {name} is still in use after 10 s"),
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("cannot drop the replication slot {name}"))
                }
            }
        }
    }

    /// The replicas streaming from this server.
    pub fn replication(&self) -> Result<Vec<ReplicaState>> {
        let rows = self.rt.block_on(self.client.query(
            "SELECT application_name, host(client_addr), state FROM pg_stat_replication",
            &[],
        ))?;
        Ok(rows
            .iter()
            .map(|r| ReplicaState {
                application_name: r.get(0),
                client_addr: r.get::<_, Option<String>>(1).and_then(|a| a.parse().ok()),
                state: r.get::<_, Option<String>>(2).unwrap_or_default(),
            })
            .collect())
    }

    /// Whether this replica's WAL receiver is streaming.
    pub fn is_streaming(&self) -> Result<bool> {
        let row = self.rt.block_on(self.client.query_opt(
            "SELECT status FROM pg_stat_wal_receiver WHERE status = 'streaming'",
            &[],
        ))?;
        Ok(row.is_some())
    }

    /// The last WAL position this server has (primary: written; replica:
    /// received, or replayed when nothing was streamed), as a number.
    pub fn wal_position(&self) -> Result<u64> {
        let row = self.rt.block_on(self.client.query_one(
            "SELECT (CASE WHEN pg_is_in_recovery() \
               THEN greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) \
               ELSE pg_current_wal_lsn() END)::text",
            &[],
        ))?;
        parse_lsn(&row.get::<_, Option<String>>(0).unwrap_or_default())
    }

    /// Stops writes on a primary: new transactions are read-only (kept in
    /// postgresql.auto.conf, so a restart does not lift it) and client
    /// sessions are ended.
    pub fn fence(&self) -> Result<()> {
        // One statement each: ALTER SYSTEM refuses to run in the implicit
        // transaction of a multi-statement query.
        self.execute_each(&[
            "ALTER SYSTEM SET default_transaction_read_only = on",
            "SELECT pg_reload_conf()",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
               WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        ])
        .context("cannot stop writes on the primary")
    }

    /// Lifts `fence`.
    pub fn unfence(&self) -> Result<()> {
        self.execute_each(&[
            "ALTER SYSTEM RESET default_transaction_read_only",
            "SELECT pg_reload_conf()",
        ])
        .context("cannot allow writes on the primary again")
    }

    /// Runs statements one at a time, each in its own transaction.
    fn execute_each(&self, statements: &[&str]) -> Result<()> {
        statements.iter().try_for_each(|sql| self.execute(sql))
    }

    /// On a primary: commits a transaction (so that recovery to any time
    /// until now has a commit to stop at), closes the current WAL segment
    /// and waits up to `limit` for the archiver to have it; true when it has.
    pub fn archive_now(&self, limit: Duration) -> Result<bool> {
        self.execute("SELECT pg_current_xact_id()")?;
        let segment = self.query_text("SELECT pg_walfile_name(pg_switch_wal() - 1)")?;
        let started = std::time::Instant::now();
        loop {
            let done = self.query_text(&format!(
                "SELECT (coalesce(last_archived_wal, '') >= {}\
                   AND length(coalesce(last_archived_wal, '')) = 24)::text FROM pg_stat_archiver",
                literal(&segment)
            ))?;
            if done == "true" {
                return Ok(true);
            }
            if started.elapsed() > limit {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The timeline the server writes (or replays) on.
    pub fn timeline(&self) -> Result<u32> {
        let name = self.query_text(
            "SELECT pg_walfile_name(CASE WHEN pg_is_in_recovery() \
               THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)",
        )?;
        u32::from_str_radix(name.get(..8).unwrap_or_default(), 16)
            .with_context(|| format!("{name:?} is not a WAL file name"))
    }

    /// Makes the WAL receiver reconnect (with the current password file).
    pub fn restart_wal_receiver(&self) -> Result<()> {
        self.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_wal_receiver")
    }
}

/// A TLS connector that trusts only the cluster's CA and checks that the
/// server's certificate names the address connected to.
fn tls_connector(ca: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?
    {
        let cert = cert.with_context(|| format!("{} holds a bad certificate", ca.display()))?;
        roots
            .add(cert)
            .context("the CA certificate is not usable")?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Parses an LSN (`16/B374D848`) into a number.
pub fn parse_lsn(text: &str) -> Result<u64> {
    let (hi, lo) = text
        .split_once('/')
        .with_context(|| format!("{text:?} is not an LSN"))?;
    let hi = u64::from_str_radix(hi, 16).with_context(|| format!("{text:?} is not an LSN"))?;
    let lo = u64::from_str_radix(lo, 16).with_context(|| format!("{text:?} is not an LSN"))?;
    Ok(hi << 32 | lo)
}

/// Formats a WAL position as PostgreSQL writes it (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// A quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted SQL string literal (standard_conforming_strings is on).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The start of a statement, for error messages: never its literals.
fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_compare_as_numbers() {
        assert_eq!(parse_lsn("0/3000000").unwrap(), 0x3000000);
        assert!(parse_lsn("1/0").unwrap() > parse_lsn("0/FFFFFFFF").unwrap());
        assert!(parse_lsn("nope").is_err());
        for lsn in ["0/3000000", "16/B374D848", "0/0"] {
            assert_eq!(format_lsn(parse_lsn(lsn).unwrap()), lsn);
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn error_context_never_carries_a_password() {
        assert_eq!(
            first_words("ALTER ROLE \"x\" WITH LOGIN PASSWORD 'SCRAM...'"),
            "ALTER ROLE \"x\""
        );
    }
}
