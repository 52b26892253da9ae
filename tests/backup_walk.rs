//! The backup building blocks against a real PostgreSQL: our manifest
//! renderer writes, line for line, what pg_basebackup writes, and
//! pg_verifybackup accepts its checksum; a backup made by copying what the
//! walk lists between pg_backup_start and pg_backup_stop (temporary and
//! unlogged relations left out, a tablespace followed) verifies, fails
//! verification once a byte is changed or a file is gone, and starts as a
//! consistent server with the rows, which pg_amcheck finds sound.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use postgresql_charm::backup::pgmanifest::{
    sha256_file, FileChecksum, ManifestBuilder, Sha256Reader, WalRange,
};
use postgresql_charm::backup::walk::{walk, Entry, Kind};
use postgresql_charm::postgres::conf::{self, Profile, ServerSettings};
use postgresql_charm::postgres::os_user::{current_user_name, ServerUser};
use postgresql_charm::postgres::server::{Layout, Server};
use postgresql_charm::postgres::sql::{literal, parse_lsn};
use postgresql_charm::postgres::{binaries, sql::Db};

const PASSWORD: &str = "operator-password";

/// A loopback address of its own, so the test's servers can use port 5432.
fn address(last: u8) -> IpAddr {
    let second = 200 + (std::process::id() % 50) as u8;
    format!("127.{second}.78.{last}").parse().unwrap()
}

fn server(root: &Path, name: &str) -> Server {
    let bin = binaries::find().unwrap().expect("PostgreSQL is installed");
    Server::new(
        bin,
        Layout::new(root.join(name)),
        ServerUser::detect().unwrap(),
    )
}

fn configure(server: &Server, ip: IpAddr) {
    let (socket, logs) = (server.layout.socket_dir(), server.layout.log_dir());
    let settings = ServerSettings {
        listen_address: ip,
        socket_dir: &socket,
        log_dir: &logs,
        profile: Profile::Testing,
        memory_bytes: 0,
        archive_command: "/bin/true",
        standby: None,
        tls: None,
        recovery: None,
    };
    let conf = conf::render_postgresql_conf(&settings) + "autovacuum = off\n";
    server.write_config("postgresql.conf", &conf).unwrap();
    server
        .write_config("pg_hba.conf", &conf::render_pg_hba(&[ip], false))
        .unwrap();
    let ident = conf::render_pg_ident(&current_user_name().unwrap());
    server.write_config("pg_ident.conf", &ident).unwrap();
}

/// A started primary with the operator's password set.
fn primary(root: &Path, name: &str, ip: IpAddr) -> (Server, Db) {
    let server = server(root, name);
    server.initdb("operator", PASSWORD).unwrap();
    configure(&server, ip);
    server.start().unwrap();
    let db = Db::remote(ip, "operator", PASSWORD).unwrap();
    (server, db)
}

fn scratch_root(prefix: &str) -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

struct StopOnDrop(Vec<Server>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = s.stop();
        }
    }
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn verify(server: &Server, dir: &Path, parse_wal: bool) -> Output {
    let mut cmd = Command::new(server.bin.program("pg_verifybackup"));
    if !parse_wal {
        cmd.arg("-n");
    }
    output(cmd.arg(dir))
}

fn must_verify(server: &Server, dir: &Path, parse_wal: bool) {
    let out = verify(server, dir, parse_wal);
    assert!(
        out.status.success(),
        "pg_verifybackup refused {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn must_not_verify(server: &Server, dir: &Path, why: &str) {
    let out = verify(server, dir, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pg_verifybackup accepted it");
    assert!(stderr.contains(why), "{stderr}");
}

/// The manifest lines that describe one file or WAL range, trailing comma off.
fn entry_lines(manifest: &str) -> BTreeSet<String> {
    manifest
        .lines()
        .filter(|l| {
            ["{ \"Path\"", "{ \"Encoded-Path\"", "{ \"Timeline\""]
                .iter()
                .any(|start| l.starts_with(start))
        })
        .map(|l| l.trim_end_matches(',').to_owned())
        .collect()
}

#[test]
fn our_manifest_matches_pg_basebackups() {
    let root = scratch_root("pg-walk-bb-");
    let ip = address(1);
    let (server, db) = primary(root.path(), "primary", ip);
    let _guard = StopOnDrop(vec![server.clone()]);
    db.set_role("replication", "LOGIN REPLICATION", "replication-password")
        .unwrap();
    for sql in [
        "CREATE TABLE t AS SELECT generate_series(1, 5000) AS i",
        "CREATE UNLOGGED TABLE u AS SELECT generate_series(1, 100) AS i",
        "VACUUM",
        "CHECKPOINT",
    ] {
        db.execute(sql).unwrap();
    }

    let backup = root.path().join("basebackup");
    let out = output(
        Command::new(server.bin.program("pg_basebackup"))
            .arg("-D")
            .arg(&backup)
            .args(["--manifest-checksums=CRC32C", "--checkpoint=fast"])
            .args(["--wal-method=stream", "--no-password", "-U", "replication"])
            .arg(format!("--host={ip}"))
            .env("PGPASSWORD", "replication-password"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the walk lists now is what pg_basebackup copied, its own
    // backup_label aside.
    let walked: BTreeSet<String> = walk(&server.layout.data())
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.path.to_string_lossy().into_owned())
        .collect();

    let theirs = std::fs::read_to_string(backup.join("backup_manifest")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&theirs).unwrap();
    let mut builder = ManifestBuilder::new();
    let mut listed = BTreeSet::new();
    for file in json["Files"].as_array().unwrap().iter().rev() {
        let path = file["Path"].as_str().unwrap();
        let mtime = chrono::NaiveDateTime::parse_from_str(
            file["Last-Modified"].as_str().unwrap(),
            "%Y-%m-%d %H:%M:%S GMT",
        )
        .unwrap()
        .and_utc()
        .timestamp();
        assert_eq!(file["Checksum-Algorithm"], "CRC32C");
        let crc: [u8; 4] = hex::decode(file["Checksum"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let size = file["Size"].as_u64().unwrap();
        // Our own CRC of the file, checked against theirs by the comparison below.
        let ours = crc32c::crc32c(&std::fs::read(backup.join(path)).unwrap());
        assert_eq!(ours, u32::from_ne_bytes(crc), "{path}");
        builder
            .add_file(Path::new(path), size, mtime, FileChecksum::Crc32c(ours))
            .unwrap();
        if path != "backup_label" {
            listed.insert(path.to_owned());
        }
    }
    assert_eq!(
        walked, listed,
        "the walk and pg_basebackup copy the same files"
    );
    // Names pg_verifybackup must read back: escaped, and hex-encoded.
    for name in [&b"we\"ird\\na\tme"[..], b"caf\xe9"] {
        let name = Path::new(std::ffi::OsStr::from_bytes(name));
        std::fs::write(backup.join(name), b"odd").unwrap();
        let (size, sha) = sha256_file(&backup.join(name)).unwrap();
        builder
            .add_file(name, size, 0, FileChecksum::Sha256(sha))
            .unwrap();
    }
    for range in json["WAL-Ranges"].as_array().unwrap() {
        builder.add_wal_range(WalRange {
            timeline: range["Timeline"].as_u64().unwrap() as u32,
            start_lsn: parse_lsn(range["Start-LSN"].as_str().unwrap()).unwrap(),
            end_lsn: parse_lsn(range["End-LSN"].as_str().unwrap()).unwrap(),
        });
    }
    let ours = String::from_utf8(builder.render().unwrap()).unwrap();
    let odd = |l: &String| l.contains("we\\\"ird") || l.contains("636166e9");
    assert_eq!(entry_lines(&ours).iter().filter(|l| odd(l)).count(), 2);
    assert_eq!(
        entry_lines(&ours)
            .into_iter()
            .filter(|l| !odd(l))
            .collect::<BTreeSet<_>>(),
        entry_lines(&theirs),
        "every line as PostgreSQL writes it"
    );
    assert!(theirs.starts_with(&ours[..ours.find("\n{ \"Path\"").unwrap()]));

    // pg_verifybackup takes ours instead of theirs, WAL included; and it does
    // check the manifest's checksum.
    std::fs::write(backup.join("backup_manifest"), &ours).unwrap();
    must_verify(&server, &backup, true);
    let tampered = ours.replacen("\"Size\": ", "\"Size\":  ", 1);
    std::fs::write(backup.join("backup_manifest"), tampered).unwrap();
    must_not_verify(&server, &backup, "manifest checksum mismatch");
}

/// Copies what the walk lists into `dest`, tablespaces to `tablespaces`
/// (as a restore remaps them); returns the manifest so far.
fn copy_backup(data: &Path, entries: &[Entry], dest: &Path, tablespaces: &Path) -> ManifestBuilder {
    let mut manifest = ManifestBuilder::new();
    std::fs::create_dir_all(dest).unwrap();
    for entry in entries {
        let to = dest.join(&entry.path);
        match &entry.kind {
            Kind::Dir => std::fs::create_dir_all(&to).unwrap(),
            Kind::Symlink { .. } if entry.path.starts_with("pg_tblspc") => {
                let place = tablespaces.join(entry.path.file_name().unwrap());
                std::fs::create_dir_all(&place).unwrap();
                std::os::unix::fs::symlink(&place, &to).unwrap();
            }
            Kind::Symlink { target } => std::os::unix::fs::symlink(target, &to).unwrap(),
            Kind::File => {
                let from = match std::fs::File::open(data.join(&entry.path)) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    from => from.unwrap(),
                };
                let mut reader = Sha256Reader::new(from);
                let mut file = std::fs::File::create(&to).unwrap();
                std::io::copy(&mut reader, &mut file).unwrap();
                let (size, sha) = reader.finish();
                manifest
                    .add_file(&entry.path, size, entry.mtime, FileChecksum::Sha256(sha))
                    .unwrap();
            }
        }
        if !matches!(entry.kind, Kind::Symlink { .. }) {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(entry.mode)).unwrap();
        }
    }
    manifest
}

/// Writes a file of the backup that is not in the data directory
/// (backup_label, tablespace_map) and lists it.
fn add_written(manifest: &mut ManifestBuilder, dir: &Path, name: &str, contents: &str) {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    let size = contents.len() as u64;
    let crc = crc32c::crc32c(contents.as_bytes());
    let mtime = chrono::Utc::now().timestamp();
    manifest
        .add_file(Path::new(name), size, mtime, FileChecksum::Crc32c(crc))
        .unwrap();
}

fn chown_tree(user: &ServerUser, path: &Path) {
    user.chown(path).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for child in std::fs::read_dir(path).unwrap() {
            chown_tree(user, &child.unwrap().path());
        }
    }
}

fn has(entries: &[Entry], path: &str) -> bool {
    entries.iter().any(|e| e.path == Path::new(path))
}

#[test]
fn a_backup_of_the_walk_verifies_and_restores() {
    let root = scratch_root("pg-walk-");
    let (ip, restored_ip) = (address(2), address(3));
    let (source, db) = primary(root.path(), "source", ip);
    let restored = server(root.path(), "restored");
    let _guard = StopOnDrop(vec![source.clone(), restored.clone()]);

    let space = root.path().join("space");
    source.user.create_dir(&space, 0o700).unwrap();
    let location = literal(&space.to_string_lossy());
    for sql in [
        format!("CREATE TABLESPACE space LOCATION {location}"),
        "CREATE TABLE t AS SELECT generate_series(1, 10000) AS i".into(),
        "CREATE TABLE s TABLESPACE space AS SELECT generate_series(1, 300) AS i".into(),
        "CREATE UNLOGGED TABLE u AS SELECT generate_series(1, 500) AS i".into(),
        "CREATE INDEX u_i ON u(i)".into(),
        "VACUUM".into(),
    ] {
        db.execute(&sql).unwrap();
    }
    let path_of = |db: &Db, rel: &str| {
        db.query_text(&format!("SELECT pg_relation_filepath('{rel}')"))
            .unwrap()
    };
    let (t_file, u_file) = (path_of(&db, "t"), path_of(&db, "u"));
    let temp_session = Db::remote(ip, "operator", PASSWORD).unwrap();
    temp_session
        .execute("CREATE TEMP TABLE tmp AS SELECT generate_series(1, 1000) AS i")
        .unwrap();
    let tmp_file = path_of(&temp_session, "tmp");
    assert!(source.layout.data().join(&tmp_file).exists(), "{tmp_file}");

    // The backup: start, the walk and its copy, stop.
    let start = db
        .query_text("SELECT pg_backup_start('walk-test', true)::text")
        .unwrap();
    let data = source.layout.data();
    let entries = walk(&data).unwrap();
    assert!(
        !has(&entries, &tmp_file),
        "a temporary relation is left out"
    );
    assert!(
        !has(&entries, &u_file),
        "an unlogged relation's main fork is left out"
    );
    assert!(
        has(&entries, &format!("{u_file}_init")),
        "its init fork is kept"
    );
    assert!(has(&entries, &t_file));
    assert!(!entries.iter().any(|e| {
        let name = e.path.file_name().unwrap().to_string_lossy();
        name == "postmaster.pid" || name.starts_with("pg_internal.init")
    }));
    assert_eq!(entries.last().unwrap().path, Path::new("global/pg_control"));
    let link = entries
        .iter()
        .find(|e| e.path.starts_with("pg_tblspc") && matches!(e.kind, Kind::Symlink { .. }))
        .expect("the tablespace's link");
    assert_eq!(
        link.kind,
        Kind::Symlink {
            target: space.clone()
        }
    );
    let spc_oid = link
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(entries
        .iter()
        .any(|e| e.path.starts_with(&link.path) && e.kind == Kind::File));

    let backup = restored.layout.data();
    let restored_space = root.path().join("restored-space");
    let mut manifest = copy_backup(&data, &entries, &backup, &restored_space);
    let stop = db
        .query_text("SELECT row_to_json(s)::text FROM pg_backup_stop(true) AS s")
        .unwrap();
    let stop: serde_json::Value = serde_json::from_str(&stop).unwrap();
    let label = stop["labelfile"].as_str().unwrap();
    let spcmap = stop["spcmapfile"].as_str().unwrap();
    assert!(spcmap.starts_with(&format!("{spc_oid} ")), "{spcmap}");
    add_written(&mut manifest, &backup, "backup_label", label);
    add_written(&mut manifest, &backup, "tablespace_map", spcmap);
    let end = parse_lsn(stop["lsn"].as_str().unwrap()).unwrap();
    manifest.add_wal_range(WalRange::from_backup_label(label, end).unwrap());
    std::fs::write(backup.join("backup_manifest"), manifest.render().unwrap()).unwrap();
    must_verify(&source, &backup, false);

    // One changed byte, or one file missing, and it no longer verifies.
    let table = backup.join(&t_file);
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&table, &bytes).unwrap();
    must_not_verify(&source, &backup, "checksum mismatch");
    bytes[100] ^= 0xff;
    std::fs::write(&table, &bytes).unwrap();
    must_verify(&source, &backup, false);
    let aside = root.path().join("PG_VERSION.aside");
    std::fs::rename(backup.join("PG_VERSION"), &aside).unwrap();
    must_not_verify(&source, &backup, "present in the manifest but not on disk");
    std::fs::rename(&aside, backup.join("PG_VERSION")).unwrap();

    // With the WAL from start to stop, pg_verifybackup checks the WAL
    // range too, and the copy starts as a server.
    let segment = |lsn: &str| {
        db.query_text(&format!("SELECT pg_walfile_name('{lsn}')"))
            .unwrap()
    };
    let (first, last) = (segment(&start), segment(stop["lsn"].as_str().unwrap()));
    let mut copied = 0;
    for item in std::fs::read_dir(data.join("pg_wal")).unwrap() {
        let name = item.unwrap().file_name().to_string_lossy().into_owned();
        if name.len() == 24 && name >= first && name <= last {
            std::fs::copy(
                data.join("pg_wal").join(&name),
                backup.join("pg_wal").join(&name),
            )
            .unwrap();
            copied += 1;
        }
    }
    assert!(copied >= 1, "no segment between {first} and {last}");
    must_verify(&source, &backup, true);
    drop(temp_session);

    // A restore remaps the tablespace to its new place.
    let remapped = format!("{spc_oid} {}\n", restored_space.join(&spc_oid).display());
    std::fs::write(backup.join("tablespace_map"), remapped).unwrap();
    restored.prepare_dirs().unwrap();
    chown_tree(&restored.user, &restored.layout.storage);
    chown_tree(&restored.user, &restored_space);
    std::fs::set_permissions(&backup, std::fs::Permissions::from_mode(0o700)).unwrap();
    configure(&restored, restored_ip);
    restored.start().unwrap();
    let rdb = Db::remote(restored_ip, "operator", PASSWORD).unwrap();
    assert!(!rdb.is_in_recovery().unwrap(), "consistent and promoted");
    assert_eq!(rdb.query_i64("SELECT count(*) FROM t").unwrap(), 10000);
    assert_eq!(
        rdb.query_i64("SELECT sum(i) FROM s").unwrap(),
        300 * 301 / 2
    );
    assert_eq!(
        rdb.query_i64("SELECT count(*) FROM u").unwrap(),
        0,
        "unlogged: empty"
    );
    let link = std::fs::read_link(backup.join("pg_tblspc").join(&spc_oid)).unwrap();
    assert!(link.starts_with(&restored_space), "{}", link.display());
    let out = output(
        Command::new(restored.bin.program("pg_amcheck"))
            .args([
                "--all",
                "--install-missing",
                "--heapallindexed",
                "-U",
                "operator",
            ])
            .arg(format!("--host={restored_ip}"))
            .env("PGPASSWORD", PASSWORD),
    );
    assert!(
        out.status.success(),
        "pg_amcheck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    restored.stop().unwrap();
    source.stop().unwrap();
}
