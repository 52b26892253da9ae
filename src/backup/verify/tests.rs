//! Verification against an in-memory repository: a good chain passes, and a
//! flipped byte, a missing object, a missing WAL segment or a broken chain
//! is reported by name.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::PutPayload;

use super::*;
use crate::backup::catalog::FileRecord;
use crate::backup::codec;

use crate::backup::testing::run;

async fn put(repo: &Repo, key: &str, body: Vec<u8>) {
    repo.store
        .put(&ObjectPath::from(key), PutPayload::from(body))
        .await
        .unwrap();
}

/// A backup `id` of one file with `content`, stored compressed, starting in
/// segment 000000010000000000000002 and stopping in ...03.
async fn stored(
    repo: &Repo,
    id: &str,
    kind: BackupKind,
    reference: Option<&str>,
    content: &[u8],
) -> BackupRecord {
    let dir = catalog::backup_dir(id);
    let (compressed, digest) = codec::compress_to_vec(content).unwrap();
    put(repo, &format!("{dir}/data/base/1/1259.zst"), compressed).await;
    put(
        repo,
        &format!("{dir}/backup_label"),
        b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n".to_vec(),
    )
    .await;
    put(repo, &format!("{dir}/backup_manifest"), b"{}".to_vec()).await;
    let mut record = catalog::tests::record(id, kind, true);
    record.reference = reference.map(str::to_owned);
    record.stop_lsn = Some("0/3000100".into());
    record.files = vec![FileRecord {
        path: "base/1/1259".into(),
        kind: "file".into(),
        size: content.len() as u64,
        mtime: 0,
        mode: 0o600,
        sha256: Some(digest.sha256),
        crc32c: None,
        object: Some(format!("{dir}/data/base/1/1259.zst")),
        stored: 0,
        target: None,
        ..Default::default()
    }];
    record
}

async fn segment(repo: &Repo, name: &str) {
    put(
        repo,
        &format!("wal/{}/{name}-ab.zst", &name[..16]),
        b"w".to_vec(),
    )
    .await;
}

const FULL: &str = "2026-01-01T00:00:00Z";
const INCR: &str = "2026-01-01T01:00:00Z";

#[test]
fn a_good_chain_passes_and_each_fault_is_named() {
    run(async {
        let repo = Repo::new(Arc::new(InMemory::new()));
        let full = stored(&repo, FULL, BackupKind::Full, None, b"page one").await;
        let incr = stored(
            &repo,
            INCR,
            BackupKind::Incremental,
            Some(FULL),
            b"page two",
        )
        .await;
        segment(&repo, "000000010000000000000002").await;
        segment(&repo, "000000010000000000000003").await;
        let records = vec![full.clone(), incr.clone()];

        let report = backup(&repo, &records, &incr, 2).await;
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!(
            report.line(),
            "2026-01-01T01:00:00Z: ok (1 files, 0 MiB, WAL 000000010000000000000002 to \
             000000010000000000000003)"
        );

        // One byte of the object flipped.
        let key = format!("backups/{FULL}/data/base/1/1259.zst");
        let (flipped, _) = codec::compress_to_vec(&b"page onE"[..]).unwrap();
        put(&repo, &key, flipped).await;
        let report = backup(&repo, &records, &full, 2).await;
        assert_eq!(
            report.problems,
            [format!("{key} (base/1/1259) does not match its checksum")]
        );

        // A WAL segment gone, and the manifest.
        repo.store
            .delete(&ObjectPath::from(
                "wal/0000000100000000/000000010000000000000003-ab.zst",
            ))
            .await
            .unwrap();
        repo.store
            .delete(&ObjectPath::from(format!("backups/{INCR}/backup_manifest")))
            .await
            .unwrap();
        let report = backup(&repo, &records, &incr, 2).await;
        assert_eq!(
            report.problems,
            [
                "WAL segment 000000010000000000000003 is not in the archive (the backup \
                 needs 000000010000000000000002 to 000000010000000000000003)"
                    .to_owned(),
                format!("backups/{INCR}/backup_manifest is missing"),
            ]
        );
        assert!(report.line().starts_with(&format!("{INCR}: FAILED: ")));

        // The full it builds on gone from the catalog.
        let report = backup(&repo, &records[1..], &incr, 2).await;
        assert!(report.problems.contains(&format!(
            "backup {INCR} builds on backup {FULL}, which is not in the repository"
        )));
    });
}

#[test]
fn segments_run_across_log_files() {
    assert_eq!(
        segments("0000000200000001000000FE", "000000020000000200000001"),
        [
            "0000000200000001000000FE",
            "0000000200000001000000FF",
            "000000020000000200000000",
            "000000020000000200000001"
        ]
    );
}
