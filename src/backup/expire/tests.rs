//! The removal rules: dependants, what each policy keeps, the guard against
//! removing files a kept backup uses, and the removal of backups and WAL.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::*;
use crate::backup::catalog::{BackupStatus, FileRecord, Layer};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A finished backup that ended at `id` (ids are times), on `reference`.
fn backup(id: &str, kind: BackupKind, reference: Option<&str>) -> BackupRecord {
    let mut record = catalog::tests::record(id, kind, true);
    record.reference = reference.map(str::to_owned);
    record.finish_time = Some(id.to_owned());
    record
}

/// Four chains a day apart: full, differential on it, incremental on that.
fn four_chains() -> Vec<BackupRecord> {
    let mut records = Vec::new();
    for day in 1..=4 {
        let full = format!("2026-01-0{day}T00:00:00Z");
        let diff = format!("2026-01-0{day}T06:00:00Z");
        let incr = format!("2026-01-0{day}T12:00:00Z");
        records.push(backup(&full, BackupKind::Full, None));
        records.push(backup(&diff, BackupKind::Differential, Some(&full)));
        records.push(backup(&incr, BackupKind::Incremental, Some(&diff)));
    }
    records
}

fn day(n: u32) -> Vec<String> {
    ["00", "06", "12"]
        .iter()
        .map(|h| format!("2026-01-0{n}T{h}:00:00Z"))
        .collect()
}

#[test]
fn dependants_are_everything_built_on_a_backup() {
    let records = four_chains();
    let ids = |found: Vec<&BackupRecord>| found.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(dependants(&records, &day(2)[0])), day(2)[1..].to_vec());
    assert_eq!(ids(dependants(&records, &day(2)[1])), day(2)[2..].to_vec());
    assert!(dependants(&records, &day(2)[2]).is_empty());
}

#[test]
fn keeping_two_fulls_drops_the_two_oldest_chains() {
    let records = four_chains();
    let now = at("2026-01-05T00:00:00Z");
    let policy = Policy {
        full: Some(2),
        days: None,
    };
    assert_eq!(expired(&records, policy, now), [day(1), day(2)].concat());
    // The newest chain always stays, and no policy removes nothing.
    let policy = Policy {
        full: Some(0),
        days: None,
    };
    assert_eq!(
        expired(&records, policy, now),
        [day(1), day(2), day(3)].concat()
    );
    assert!(expired(&records, Policy::default(), now).is_empty());
}

#[test]
fn a_window_of_days_keeps_the_chain_that_ended_before_it() {
    let records = four_chains();
    // The window starts on day 3 at 12:00: the day-3 full ended before it
    // and is the base for the window's first hours; days 1 and 2 go.
    let policy = Policy {
        full: None,
        days: Some(2),
    };
    let now = at("2026-01-05T12:00:00Z");
    assert_eq!(expired(&records, policy, now), [day(1), day(2)].concat());
    // With a count as well, a chain stays when either rule keeps it.
    let both = Policy {
        full: Some(3),
        days: Some(2),
    };
    assert_eq!(expired(&records, both, now), day(1));
    // A window longer than the history keeps everything.
    let long = Policy {
        full: None,
        days: Some(30),
    };
    assert!(expired(&records, long, now).is_empty());
}

#[test]
fn old_failed_backups_go_newer_ones_and_restore_rows_stay() {
    let mut records = four_chains();
    let mut failed_old = backup("2026-01-01T18:00:00Z", BackupKind::Full, None);
    failed_old.status = BackupStatus::Failed;
    let mut failed_new = backup("2026-01-04T18:00:00Z", BackupKind::Full, None);
    failed_new.status = BackupStatus::Failed;
    let mut failed_incr = backup(
        "2026-01-01T20:00:00Z",
        BackupKind::Incremental,
        Some(&day(1)[2]),
    );
    failed_incr.status = BackupStatus::Failed;
    let restore = backup(
        "2026-01-02T18:00:00Z",
        BackupKind::Restore,
        Some(&day(1)[0]),
    );
    records.extend([failed_old, failed_new, failed_incr, restore]);
    records.sort_by(|a, b| a.id.cmp(&b.id));
    let policy = Policy {
        full: Some(2),
        days: None,
    };
    let gone = expired(&records, policy, at("2026-01-05T00:00:00Z"));
    let mut want = [day(1), day(2)].concat();
    want.extend(["2026-01-01T18:00:00Z".into(), "2026-01-01T20:00:00Z".into()]);
    want.sort();
    assert_eq!(gone, want);
}

#[test]
fn files_a_kept_backup_uses_are_never_removed() {
    let mut records = four_chains();
    records[1].files.push(FileRecord {
        path: "base/1/1259".into(),
        kind: "file".into(),
        size: 8192,
        mode: 0o600,
        mtime: 0,
        sha256: None,
        crc32c: None,
        object: Some(format!("backups/{}/data/base/1/1259.zst", day(1)[0])),
        stored: 100,
        target: None,
        ..Default::default()
    });
    let err = check_removable(&records, &[day(1)[0].clone()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "backup {} uses files of backup {} (base/1/1259): remove it too, or keep {}",
            day(1)[1],
            day(1)[0],
            day(1)[0]
        )
    );
    check_removable(&records, &day(1)).unwrap();

    // A page delta the incremental lays over its file is a file it uses too.
    let mut records = four_chains();
    records[2].files.push(FileRecord {
        path: "base/1/16384".into(),
        kind: "file".into(),
        object: Some(format!("backups/{}/data/base/1/16384.zst", day(1)[0])),
        layers: vec![Layer {
            object: format!("backups/{}/data/base/1/16384.delta.zst", day(1)[1]),
            stored: 10,
            sha256: "ab".repeat(32),
            crc32c: None,
            pages: 1,
        }],
        ..Default::default()
    });
    let err = check_removable(&records, &[day(1)[1].clone()]).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "backup {} uses files of backup {} (base/1/16384)",
            day(1)[2],
            day(1)[1]
        )),
        "{err}"
    );
}

use crate::backup::testing::run;

async fn put(repo: &Repo, key: &str, body: &str) {
    repo.store
        .put(&ObjectPath::from(key), PutPayload::from(body.to_owned()))
        .await
        .unwrap();
}

async fn keys(repo: &Repo) -> Vec<String> {
    let mut all: Vec<String> = repo
        .store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    all.sort();
    all
}

#[test]
fn removing_a_chain_takes_its_objects_and_the_wal_only_it_needed() {
    let repo = Repo::new(Arc::new(InMemory::new()));
    let (old, new) = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z");
    let records = vec![
        backup(old, BackupKind::Full, None),
        backup(new, BackupKind::Full, None),
    ];
    run(async {
        for (id, start) in [
            (old, "000000010000000000000002"),
            (new, "000000020000000100000004"),
        ] {
            put(&repo, &format!("backups/{id}/record.json"), "{}").await;
            put(&repo, &format!("backups/{id}/data/base/1/1259.zst"), "x").await;
            let label = format!(
                "START WAL LOCATION: 0/4000028 (file {start})\nCHECKPOINT LOCATION: 0/4000060\n"
            );
            put(&repo, &format!("backups/{id}/backup_label"), &label).await;
        }
        for segment in [
            "0000000100000000/000000010000000000000002-aa.zst",
            "0000000100000001/000000010000000100000003-aa.zst",
            "0000000100000001/000000010000000100000004-aa.zst",
            "0000000200000001/000000020000000100000003.partial-aa.zst",
            "0000000200000001/000000020000000100000004-aa.zst",
            "0000000200000001/000000020000000100000005-aa.zst",
            "000000010000000000000002.00000028.backup-aa.zst",
            "00000002.history-aa.zst",
        ] {
            put(&repo, &format!("wal/{segment}"), "w").await;
        }

        let removed = remove_backups(&repo, &records, &[old.to_owned()])
            .await
            .unwrap();
        assert_eq!(removed, 2, "data and label; the record went first");
        let kept: Vec<&BackupRecord> = records.iter().filter(|r| r.id == new).collect();
        assert_eq!(prune_wal(&repo, &kept).await.unwrap(), 4);
        assert_eq!(
            keys(&repo).await,
            [
                format!("backups/{new}/backup_label"),
                format!("backups/{new}/data/base/1/1259.zst"),
                format!("backups/{new}/record.json"),
                "wal/0000000100000001/000000010000000100000004-aa.zst".into(),
                "wal/00000002.history-aa.zst".into(),
                "wal/0000000200000001/000000020000000100000004-aa.zst".into(),
                "wal/0000000200000001/000000020000000100000005-aa.zst".into(),
            ]
        );
        // With no finished backup kept, no WAL goes.
        assert_eq!(prune_wal(&repo, &[]).await.unwrap(), 0);
    });
}
