//! The workload layer against a real PostgreSQL: initdb with checksums,
//! idempotent start and stop, roles set from client-side SCRAM verifiers
//! (the old password refused, no plain text in the server's log), and a
//! replica seeded by base backup through its slot, streaming.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use postgresql_charm::postgres::conf::{self, Profile, ServerSettings, Standby};
use postgresql_charm::postgres::os_user::{current_user_name, ServerUser};
use postgresql_charm::postgres::server::{Layout, Server};
use postgresql_charm::postgres::{binaries, sql::Db};

/// A loopback address of its own, so the test's servers can use port 5432.
fn address(last: u8) -> IpAddr {
    let second = 200 + (std::process::id() % 50) as u8;
    format!("127.{second}.77.{last}").parse().unwrap()
}

fn server(root: &std::path::Path, name: &str) -> Server {
    let bin = binaries::find().unwrap().expect("PostgreSQL is installed");
    Server::new(
        bin,
        Layout::new(root.join(name)),
        ServerUser::detect().unwrap(),
    )
}

fn configure(server: &Server, ip: IpAddr, units: &[IpAddr], standby: Option<Standby<'_>>) {
    let (socket, logs) = (server.layout.socket_dir(), server.layout.log_dir());
    let settings = ServerSettings {
        listen_address: ip,
        socket_dir: &socket,
        log_dir: &logs,
        profile: Profile::Testing,
        memory_bytes: 0,
        archive_command: "/bin/true",
        standby,
        tls: None,
        recovery: None,
    };
    server
        .write_config("postgresql.conf", &conf::render_postgresql_conf(&settings))
        .unwrap();
    server
        .write_config("pg_hba.conf", &conf::render_pg_hba(units, false))
        .unwrap();
    let charm_user = current_user_name().unwrap();
    server
        .write_config("pg_ident.conf", &conf::render_pg_ident(&charm_user))
        .unwrap();
}

struct StopOnDrop(Vec<Server>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = s.stop();
        }
    }
}

#[test]
fn a_primary_and_a_streaming_replica() {
    let root = tempfile::Builder::new()
        .prefix("pg-server-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (p_ip, r_ip) = (address(1), address(2));
    let primary = server(root.path(), "primary");
    let replica = server(root.path(), "replica");
    let _guard = StopOnDrop(vec![primary.clone(), replica.clone()]);

    // initdb with checksums, the operator as bootstrap superuser.
    primary
        .initdb("operator", "first-operator-password")
        .unwrap();
    configure(&primary, p_ip, &[p_ip, r_ip], None);
    primary.start().unwrap();
    primary.start().expect("start is idempotent");
    let db = Db::remote(p_ip, "operator", "first-operator-password").unwrap();
    db.execute("SELECT 1").unwrap();
    assert!(!db.is_in_recovery().unwrap());
    // The charm's own OS user gets in as operator with no password.
    Db::local_peer(&primary.layout.socket_dir())
        .unwrap()
        .execute("SELECT 1")
        .unwrap();

    // Roles from verifiers: the new password works, the old one is refused.
    db.set_role("replication", "LOGIN REPLICATION", "replication-password")
        .unwrap();
    db.set_role("operator", "SUPERUSER LOGIN", "second-operator-password")
        .unwrap();
    let refused = Db::remote(p_ip, "operator", "first-operator-password")
        .err()
        .expect("the old password is refused");
    assert!(
        format!("{refused:#}").contains("password authentication failed"),
        "{refused:#}"
    );
    let db = Db::remote(p_ip, "operator", "second-operator-password").unwrap();
    db.execute("CREATE TABLE t(i int); INSERT INTO t SELECT generate_series(1, 1000)")
        .unwrap();

    // The replica: a slot on the primary, a base backup, streaming.
    db.create_slot("postgresql_1").unwrap();
    let passfile = format!("{p_ip}:5432:*:replication:replication-password\n");
    replica.prepare_dirs().unwrap();
    replica
        .user
        .write_file(&replica.layout.passfile(), passfile.as_bytes(), 0o600)
        .unwrap();
    let old = replica.seed_from(p_ip, "postgresql_1", &[]).unwrap();
    assert!(old.is_none(), "nothing was there before");
    let conninfo = format!(
        "host={p_ip} port=5432 user=replication passfile={} application_name=postgresql_1",
        replica.layout.passfile().display()
    );
    configure(
        &replica,
        r_ip,
        &[p_ip, r_ip],
        Some(Standby {
            primary_conninfo: &conninfo,
            slot: "postgresql_1",
            restore_command: None,
        }),
    );
    replica.start().unwrap();

    let rdb = Db::local_peer(&replica.layout.socket_dir()).unwrap();
    assert!(rdb.is_in_recovery().unwrap());
    db.execute("INSERT INTO t SELECT generate_series(1001, 2000)")
        .unwrap();
    let mut streaming = false;
    for _ in 0..100 {
        let states = db.replication().unwrap();
        streaming = states
            .iter()
            .any(|s| s.application_name == "postgresql_1" && s.state == "streaming");
        if streaming {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(streaming, "the replica never streamed");
    assert!(rdb.is_streaming().unwrap());

    // Stop is idempotent; the primary's log never saw a password.
    replica.stop().unwrap();
    replica.stop().unwrap();
    primary.stop().unwrap();
    assert!(!primary.is_running().unwrap());
    let mut logs = String::new();
    for entry in std::fs::read_dir(primary.layout.log_dir()).unwrap() {
        logs.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    for secret in [
        "first-operator-password",
        "second-operator-password",
        "replication-password",
    ] {
        assert!(!logs.contains(secret), "{secret} is in the server's log");
    }
}

/// The backup's page check agrees with PostgreSQL: every page initdb wrote
/// passes, and a page with one byte changed does not.
#[test]
fn page_checksums_as_postgresql_computes_them() {
    use postgresql_charm::backup::pages;
    let root = tempfile::Builder::new()
        .prefix("pg-pages-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = server(root.path(), "pages");
    cluster.initdb("operator", "a-password").unwrap();

    let data = cluster.layout.data();
    let (mut checked, mut relation) = (0, None);
    for dir in ["global", "base/1", "base/5"] {
        for entry in std::fs::read_dir(data.join(dir)).unwrap().flatten() {
            let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
            let Some(first) = pages::first_block(&path) else {
                continue;
            };
            let bytes = std::fs::read(entry.path()).unwrap();
            for (n, page) in bytes.chunks_exact(pages::BLOCK).enumerate() {
                assert!(
                    pages::page_ok(page, first + n as u32, u64::MAX),
                    "{path} block {n}"
                );
                checked += 1;
            }
            if bytes.len() >= 4 * pages::BLOCK && dir == "base/5" {
                relation = Some(bytes);
            }
        }
    }
    assert!(checked > 500, "only {checked} pages");

    let mut bytes = relation.expect("a relation of 4 pages or more");
    let middle = 3 * pages::BLOCK + pages::BLOCK / 2;
    bytes[middle] ^= 0x01;
    let mut reader = pages::Checked::new(&bytes[..], 0, u64::MAX);
    std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
    assert_eq!(reader.failed, [3]);
}
