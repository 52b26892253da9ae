//! End to end: the restore target's disk fills up in the middle of a
//! restore. The unit's storage is a small tmpfs holding the cluster, with a
//! ballast file leaving room for about half of the backup's files: the
//! restore fails saying the storage is full and what to do, the partial
//! copy is gone (the space is free again), the unit is not left in
//! maintenance, and the cluster serves its previous data (same rows, same
//! checksum, same system identifier, same timeline). With the ballast
//! removed the same restore succeeds and the table changed after the
//! backup is back to what it held then.

mod support;

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postgresql_charm::postgres::sql::Db;
use serde_json::Value;
use support::pg::assert_amcheck_clean;
use support::{address, backup, password, settled, storage, Model};

/// The size of the unit's storage: the charm's archive program (a debug
/// build, about 150 MiB), the cluster (about 190 MiB), and room for a
/// restore beside it, with the replaced data directory still in the trash.
const DISK_MIB: u64 = 640;
/// Rows in the test's table (about 45 MiB on disk).
const ROWS: u64 = 300_000;

/// A tmpfs mounted on a directory, unmounted when dropped (after the model
/// that used it is destroyed: see `Unit`), then the model's leftovers
/// removed, since the mount point kept the model's directory from going.
struct Tmpfs {
    dir: PathBuf,
    leftovers: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, mib: u64, leftovers: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir: dir.to_owned(),
            leftovers: leftovers.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |args: &[&str]| {
            Command::new("umount")
                .args(args)
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success())
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !umount(&[]) {
            if Instant::now() > deadline {
                eprintln!("{} is busy: detaching it lazily", self.dir.display());
                umount(&["--lazy"]);
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = std::fs::remove_dir_all(&self.leftovers);
    }
}

/// The model, and the tmpfs its unit's storage lives on; fields drop in
/// order, so the model is destroyed before the tmpfs goes.
struct Unit {
    model: Model,
    disk: Tmpfs,
}

/// One unit whose storage (`pgdata-0`, the model's first) is a tmpfs of
/// `mib` MiB, and an s3-integrator on juju-local's S3 server (off that tmpfs).
fn deploy_on_tmpfs(mib: u64) -> Unit {
    let model = Model::new();
    let dir = model
        .dir()
        .join("model/units/postgresql-0/storage/pgdata-0");
    let disk = Tmpfs::mount(&dir, mib, model.dir());
    let unit = Unit { model, disk };
    let model = &unit.model;
    support::deploy_with_s3(model);
    settled(model, "postgresql", 1, Duration::from_secs(60));
    assert_eq!(storage(model, "postgresql/0"), unit.disk.dir);
    unit
}

/// Free bytes on the filesystem holding `dir`, as an unprivileged user sees them.
fn free_bytes(dir: &Path) -> u64 {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs fills the struct we own from a NUL-terminated path.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
    stat.f_bavail * stat.f_frsize
}

/// Writes `bytes` of real (not sparse) data into `path`.
fn ballast(path: &Path, bytes: u64) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    file.sync_all().unwrap();
}

/// The bytes of the files a backup holds, from its record in the repository.
fn backup_bytes(model: &Model, id: &str) -> u64 {
    let record = support::served(model)
        .join("juju-local/local.postgresql/backups")
        .join(id)
        .join("record.json");
    let record: Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    record["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "file")
        .map(|f| f["size"].as_u64().unwrap_or(0))
        .sum()
}

/// The names in a directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// What identifies the data and its content: rows, checksum, system
/// identifier, timeline (the checksum's sort kept in memory, off the full disk).
#[derive(Debug, PartialEq, Eq)]
struct State {
    rows: i64,
    checksum: String,
    system_identifier: String,
    timeline: String,
}

fn state(host: IpAddr, operator: &str) -> State {
    let db = Db::remote(host, "operator", operator).unwrap();
    db.execute("SET work_mem = '64MB'").unwrap();
    let row = db
        .query_row(
            "SELECT (SELECT count(*) FROM t)::text, \
                    (SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t), \
                    (SELECT system_identifier::text FROM pg_control_system()), \
                    substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
        )
        .unwrap();
    let field = |i: usize| row[i].clone().unwrap_or_default();
    State {
        rows: field(0).parse().unwrap(),
        checksum: field(1),
        system_identifier: field(2),
        timeline: field(3),
    }
}

fn workload_status(model: &Model) -> Value {
    model.status()["applications"]["postgresql"]["units"]["postgresql/0"]["workload-status"].clone()
}

#[test]
fn a_restore_that_fills_the_disk_fails_clearly_and_changes_nothing() {
    let started = Instant::now();
    let unit = deploy_on_tmpfs(DISK_MIB);
    let model = &unit.model;
    let disk = unit.disk.dir.clone();
    let operator = password(model, "postgresql");
    let host = address(model, "postgresql/0");
    let db = Db::remote(host, "operator", &operator).unwrap();
    let deployed = started.elapsed();

    // A table, a full backup, then a change the restore is to undo.
    db.execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, {ROWS}) i"
    ))
    .unwrap();
    let full = backup(model, "postgresql/0", "full");
    let at_backup = state(host, &operator);
    db.execute(
        "DELETE FROM t WHERE id % 3 = 0; \
         INSERT INTO t SELECT i, 'after the backup' FROM generate_series(1000001, 1020000) i",
    )
    .unwrap();
    drop(db);
    let before = state(host, &operator);
    assert_ne!(before.rows, at_backup.rows);

    // The ballast: room for about half of the backup's files, no more.
    let need = backup_bytes(model, &full);
    let free = free_bytes(&disk);
    assert!(
        free > need,
        "the disk cannot hold the backup beside the cluster: {free} bytes free, {need} needed"
    );
    let ballast_path = disk.join("ballast");
    ballast(&ballast_path, free - need / 2);
    let free_with_ballast = free_bytes(&disk);
    let listed = entries(&disk);

    // The restore runs out of space: a clear failure, nothing changed.
    let failing = Instant::now();
    let task = model.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={full}")],
    );
    let failed_after = failing.elapsed();
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(
        task["message"],
        format!(
            "cannot restore backup {full}: no space left on the unit's storage ({}) for the \
             backup's files, which need {} MiB beside the live data; the partial copy was \
             removed and the cluster is unchanged: free space on the storage or give the unit \
             larger storage, then run the restore again",
            disk.display(),
            need.div_ceil(1 << 20)
        ),
        "{task:#}"
    );
    let log = task["log"].to_string();
    assert!(
        log.contains("fetching the backup's files") && !log.contains("the files match"),
        "{task:#}"
    );

    // No partial copy left: the same entries, the space free again (but
    // for a WAL segment or so the server may have added meanwhile).
    assert_eq!(entries(&disk), listed);
    let free_after = free_bytes(&disk);
    assert!(
        free_after + (24 << 20) >= free_with_ballast,
        "{} MiB free before the restore, {} MiB after",
        free_with_ballast >> 20,
        free_after >> 20
    );

    // Not stuck in maintenance; the previous data serves as before.
    let status = workload_status(model);
    assert_eq!(status["current"], "active", "{status:#}");
    assert_eq!(state(host, &operator), before);
    Db::remote(host, "operator", &operator)
        .unwrap()
        .execute("INSERT INTO t VALUES (2000001, 'still writable')")
        .unwrap();

    // With room again, the same restore succeeds and undoes the change.
    std::fs::remove_file(&ballast_path).unwrap();
    let restoring = Instant::now();
    let task = model.run_action(
        "postgresql/leader",
        "restore",
        &[&format!("backup-id={full}")],
    );
    let restored_after = restoring.elapsed();
    assert_eq!(task["status"], "completed", "{task:#}");
    assert_eq!(task["results"]["backup-id"], full.as_str(), "{task:#}");
    let restored = state(host, &operator);
    assert_eq!(restored.rows, at_backup.rows);
    assert_eq!(restored.checksum, at_backup.checksum);
    assert_eq!(restored.system_identifier, before.system_identifier);
    assert_ne!(restored.timeline, before.timeline);
    assert_amcheck_clean(host, &operator);
    let status = workload_status(model);
    assert_eq!(status["current"], "active", "{status:#}");

    eprintln!(
        "deployed on a {DISK_MIB} MiB tmpfs in {deployed:?}; backup of {} MiB, {} MiB left free \
         by the ballast; the restore failed after {failed_after:?}; with room it took \
         {restored_after:?}; whole test {:?}",
        need >> 20,
        free_with_ballast >> 20,
        started.elapsed()
    );
}
