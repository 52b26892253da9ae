//! Continuous WAL archiving with real parts: a PostgreSQL 15 server whose
//! archive_command is the charm binary, archiving into juju-local's embedded
//! S3 server. Segments land under their names with the SHA-256 of what
//! PostgreSQL wrote, `wal-fetch` brings each back byte for byte, an absent one
//! is "not found" (exit 1), and while S3 is down `wal-push` fails (the server
//! keeps the segment and counts failures) until S3 is back. A backlog is
//! pushed ahead: one call stores the ready segments after its own, and the
//! archiver's later calls for them are answered by their markers, with no
//! S3 at all, unless the bytes changed.

mod support;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use postgresql_charm::backup::repo::Repo;
use postgresql_charm::backup::settings::{RepoSettings, UriStyle};
use postgresql_charm::backup::{codec, wal};
use postgresql_charm::postgres::conf::{self, Profile, ServerSettings};
use postgresql_charm::postgres::os_user::{current_user_name, ServerUser};
use postgresql_charm::postgres::server::{Layout, Server};
use postgresql_charm::postgres::{binaries, sql::Db};

const ACCESS_KEY: &str = "wal-archive-access";
const SECRET_KEY: &str = "wal-archive-secret-never-shown-0123456789";
const BUCKET: &str = "walarchive";

/// juju-local, from the tests' own build.
fn juju_local() -> PathBuf {
    support::build().juju_local.clone()
}

/// juju-local's S3 server, stopped when dropped.
struct S3 {
    bin: PathBuf,
    dir: PathBuf,
    address: String,
    child: Option<Child>,
}

impl S3 {
    fn start(bin: &Path, dir: &Path, address: &str) -> Self {
        let mut s3 = S3 {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            address: address.to_owned(),
            child: None,
        };
        s3.restart();
        s3
    }

    /// Starts the server (again) on the same directory and address.
    fn restart(&mut self) {
        let mut child = Command::new(&self.bin)
            .args(["s3-server", "--dir"])
            .arg(&self.dir)
            .args(["--address", &self.address, "--bucket", BUCKET])
            .env("JUJU_LOCAL_S3_ACCESS_KEY", ACCESS_KEY)
            .env("JUJU_LOCAL_S3_SECRET_KEY", SECRET_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.child = Some(child);
        let address = line
            .trim()
            .strip_prefix("S3 server listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line from the S3 server: {line:?}"));
        self.address = address.to_owned();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling the child we started, by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

struct StopOnDrop(Server);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

/// A loopback address of its own, so the server can use port 5432.
fn address() -> IpAddr {
    let second = 200 + (std::process::id() % 50) as u8;
    format!("127.{second}.79.1").parse().unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes some rows and switches WAL; returns the completed segment's name
/// and a copy of its bytes, taken before the server can recycle it.
fn switch(db: &Db, data: &Path, copies: &Path) -> (String, Vec<u8>) {
    db.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
        .unwrap();
    let name = db
        .query_text("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    let bytes = std::fs::read(data.join("pg_wal").join(&name)).unwrap();
    std::fs::write(copies.join(&name), &bytes).unwrap();
    (name, bytes)
}

fn archived_count(db: &Db) -> i64 {
    db.query_i64("SELECT archived_count FROM pg_stat_archiver")
        .unwrap()
}

fn failed_count(db: &Db) -> i64 {
    db.query_i64("SELECT failed_count FROM pg_stat_archiver")
        .unwrap()
}

fn is_archived(db: &Db, name: &str) -> bool {
    let last = db
        .query_text("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        .unwrap();
    last.as_str() >= name
}

/// Every key in the repository.
fn keys(settings: &RepoSettings) -> Vec<String> {
    let repo = Repo::open(settings).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut keys: Vec<String> = rt.block_on(
        repo.store
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect(),
    );
    keys.sort();
    keys
}

/// The repository the tests archive into, on `s3`.
fn repo_settings(s3: &S3) -> RepoSettings {
    RepoSettings {
        endpoint: format!("http://{}", s3.address),
        region: None,
        bucket: BUCKET.into(),
        path: "/archive".into(),
        uri_style: UriStyle::Path,
        tls_ca_chain: vec![],
        storage_class: None,
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        repository: "test.postgresql".into(),
        compression: Default::default(),
        encryption_key: None,
    }
}

/// Runs `wal-fetch` as the server's user, as restore_command would.
fn wal_fetch(server: &Server, bin: &Path, settings: &Path, name: &str, dest: &Path) -> i32 {
    let out = server
        .user
        .command(bin)
        .arg("wal-fetch")
        .arg("--settings")
        .arg(settings)
        .arg(name)
        .arg(dest)
        .output()
        .unwrap();
    out.status.code().unwrap_or(-1)
}

#[test]
fn the_charm_binary_archives_and_restores_wal_through_s3() {
    let root = tempfile::Builder::new()
        .prefix("wal-archive-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let user = ServerUser::detect().unwrap();

    let mut s3 = S3::start(&juju_local(), &root.path().join("s3"), "127.0.0.1:0");
    let settings = repo_settings(&s3);
    let settings_file = root.path().join("repository.json");
    settings.save(&settings_file, &user).unwrap();

    // The charm binary where the postgres user can run it.
    let bin_dir = root.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let charm = bin_dir.join("postgresql-charm");
    std::fs::copy(env!("CARGO_BIN_EXE_postgresql-charm"), &charm).unwrap();
    std::fs::set_permissions(&charm, std::fs::Permissions::from_mode(0o755)).unwrap();

    let bin = binaries::find().unwrap().expect("PostgreSQL is installed");
    let server = Server::new(bin, Layout::new(root.path().join("pg")), user.clone());
    let _stop = StopOnDrop(server.clone());
    server.initdb("operator", "wal-archive-operator").unwrap();
    let ip = address();
    let (socket, logs) = (server.layout.socket_dir(), server.layout.log_dir());
    let archive_command = wal::archive_command(&charm, &settings_file);
    let rendered = conf::render_postgresql_conf(&ServerSettings {
        listen_address: ip,
        socket_dir: &socket,
        log_dir: &logs,
        profile: Profile::Testing,
        memory_bytes: 0,
        archive_command: &archive_command,
        standby: None,
        tls: None,
        recovery: None,
    });
    server.write_config("postgresql.conf", &rendered).unwrap();
    server
        .write_config("pg_hba.conf", &conf::render_pg_hba(&[ip], false))
        .unwrap();
    let ident = conf::render_pg_ident(&current_user_name().unwrap());
    server.write_config("pg_ident.conf", &ident).unwrap();
    server.start().unwrap();
    let db = Db::local_peer(&socket).unwrap();
    db.execute("CREATE TABLE t(i int, s text)").unwrap();

    // A few segments, each archived under its name and content hash.
    let copies = root.path().join("copies");
    std::fs::create_dir(&copies).unwrap();
    let mut segments = Vec::new();
    for _ in 0..3 {
        segments.push(switch(&db, &server.layout.data(), &copies));
    }
    let last = segments.last().unwrap().0.clone();
    wait_for(
        "the segments to be archived",
        Duration::from_secs(60),
        || is_archived(&db, &last),
    );
    assert_eq!(failed_count(&db), 0, "no archiving failure while S3 is up");
    let stored = keys(&settings);
    for (name, bytes) in &segments {
        let key = format!(
            "wal/{}/{name}-{}.zst",
            &name[..16],
            codec::sha256_hex(bytes)
        );
        assert!(stored.contains(&key), "{key} is not in {stored:#?}");
    }

    // wal-fetch, as the postgres user, brings each back byte for byte.
    let restore = root.path().join("restore");
    user.create_dir(&restore, 0o700).unwrap();
    for (name, bytes) in &segments {
        let dest = restore.join("RECOVERYXLOG");
        assert_eq!(wal_fetch(&server, &charm, &settings_file, name, &dest), 0);
        assert!(std::fs::read(&dest).unwrap() == *bytes, "{name} differs");
    }
    let dest = restore.join("RECOVERYHISTORY");
    let absent = wal_fetch(&server, &charm, &settings_file, "00000009.history", &dest);
    assert_eq!(absent, 1, "an absent file is 'not found'");
    assert!(!dest.exists());

    // S3 down: wal-push fails, the server keeps the segment and retries.
    s3.stop();
    let failed_before = failed_count(&db);
    let archived_before = archived_count(&db);
    let (held, held_bytes) = switch(&db, &server.layout.data(), &copies);
    wait_for("an archiving failure", Duration::from_secs(240), || {
        failed_count(&db) > failed_before
    });
    assert_eq!(archived_count(&db), archived_before);
    assert!(server.layout.data().join("pg_wal").join(&held).exists());

    // S3 back: the held segment is archived.
    s3.restart();
    wait_for("archiving to resume", Duration::from_secs(240), || {
        is_archived(&db, &held)
    });
    let dest = restore.join("RECOVERYXLOG");
    assert_eq!(wal_fetch(&server, &charm, &settings_file, &held, &dest), 0);
    assert!(
        std::fs::read(&dest).unwrap() == held_bytes,
        "{held} differs"
    );

    // The failure was one line naming the segment, and no secret was logged.
    server.stop().unwrap();
    let mut log = String::new();
    for entry in std::fs::read_dir(&logs).unwrap() {
        log.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    assert!(
        log.contains(&format!("wal-push: cannot archive {held}: ")),
        "the server's log has no wal-push failure for {held}:\n{log}"
    );
    assert!(!log.contains(SECRET_KEY), "the secret key is in the log");
}

/// Runs `wal-push` on `file` as archive_command would (from the directory
/// above pg_wal); returns its exit code.
fn wal_push(settings: &Path, cwd: &Path, file: &str) -> i32 {
    let out = Command::new(env!("CARGO_BIN_EXE_postgresql-charm"))
        .arg("wal-push")
        .arg("--settings")
        .arg(settings)
        .arg(file)
        .current_dir(cwd)
        .output()
        .unwrap();
    out.status.code().unwrap_or(-1)
}

#[test]
fn a_backlog_is_pushed_ahead_and_the_markers_answer_for_it() {
    let root = tempfile::Builder::new()
        .prefix("wal-ahead-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut s3 = S3::start(&juju_local(), &root.path().join("s3"), "127.0.0.1:0");
    let settings = repo_settings(&s3);
    let settings_file = root.path().join("repository.json");
    std::fs::write(&settings_file, serde_json::to_vec(&settings).unwrap()).unwrap();

    // A pg_wal with segments 1 to 5; 1 is being archived, 2 to 5 are ready.
    let data = root.path().join("data");
    let status = data.join("pg_wal/archive_status");
    std::fs::create_dir_all(&status).unwrap();
    let names: Vec<String> = (1..=5)
        .map(|n| format!("0000000100000000000000{n:02X}"))
        .collect();
    let mut contents = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let bytes: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i % (97 + n as u32)) as u8)
            .collect();
        std::fs::write(data.join("pg_wal").join(name), &bytes).unwrap();
        if n > 0 {
            std::fs::write(status.join(format!("{name}.ready")), b"").unwrap();
        }
        contents.push(bytes);
    }

    // One call stores its own segment and the four after it.
    let first = format!("pg_wal/{}", names[0]);
    assert_eq!(wal_push(&settings_file, &data, &first), 0);
    let stored = keys(&settings);
    for (name, bytes) in names.iter().zip(&contents) {
        let key = format!(
            "wal/{}/{name}-{}.zst",
            &name[..16],
            codec::sha256_hex(bytes)
        );
        assert!(stored.contains(&key), "{key} is not in {stored:#?}");
    }
    let markers = data.join("pg_wal/charm-pushed");
    assert_eq!(std::fs::read_dir(&markers).unwrap().count(), 4);

    // With S3 down, the archiver's calls for 2 and 3 succeed on their
    // markers; 4, whose bytes changed since, needs S3 and fails.
    s3.stop();
    for name in &names[1..3] {
        assert_eq!(
            wal_push(&settings_file, &data, &format!("pg_wal/{name}")),
            0,
            "{name}"
        );
    }
    let changed = data.join("pg_wal").join(&names[3]);
    let mut bytes = contents[3].clone();
    bytes[1234] ^= 0xff;
    std::fs::write(&changed, &bytes).unwrap();
    assert_eq!(
        wal_push(&settings_file, &data, &format!("pg_wal/{}", names[3])),
        1
    );

    // Markers are used once: 2 again needs S3.
    assert_eq!(
        wal_push(&settings_file, &data, &format!("pg_wal/{}", names[1])),
        1
    );
    // And the markers before the last call's segment are gone.
    let left: Vec<_> = std::fs::read_dir(&markers)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, [names[4].clone()]);
}
