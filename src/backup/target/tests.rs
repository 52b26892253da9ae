//! The restore target's rules: the parameters, the timeline live at a time,
//! the base backup on its line, and the repository reads.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::*;
use crate::backup::catalog::BackupStatus;
use crate::backup::wal;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    at("2026-01-02T00:00:00Z")
}

fn record(id: &str, kind: BackupKind, timeline: u32, stop_lsn: &str, finish: &str) -> BackupRecord {
    BackupRecord {
        id: id.into(),
        kind,
        reference: None,
        status: BackupStatus::Finished,
        error: None,
        start_lsn: Some("0/1000028".into()),
        stop_lsn: Some(stop_lsn.into()),
        start_time: id.into(),
        finish_time: Some(finish.into()),
        timeline: Some(timeline),
        unit: "postgresql/0".into(),
        pg_version: Some(15),
        system_identifier: Some("42".into()),
        database_bytes: 0,
        stored_bytes: 0,
        files: Vec::new(),
        scheduled: None,
    }
}

const A: &str = "2026-01-01T09:50:00Z";
const B: &str = "2026-01-01T11:50:00Z";
const RESTORE: &str = "2026-01-01T14:00:00Z";
const C: &str = "2026-01-01T15:50:00Z";
const FAILED: &str = "2026-01-01T16:20:00Z";

/// Timeline 1: full A ends 10:00 at 0/3000000, incremental B ends 12:00 at
/// 0/9000000. At 14:00 a restore to 11:00 (0/5000000 on timeline 1) made
/// timeline 2; full C on it ends 16:00; a backup failed at 16:30.
fn history() -> (Vec<BackupRecord>, Vec<Timeline>) {
    let mut restore = record(
        RESTORE,
        BackupKind::Restore,
        2,
        "0/5000000",
        "2026-01-01T14:05:00Z",
    );
    restore.reference = Some(A.into());
    let mut failed = record(
        FAILED,
        BackupKind::Full,
        2,
        "0/B000000",
        "2026-01-01T16:30:00Z",
    );
    failed.status = BackupStatus::Failed;
    failed.error = Some("disk full".into());
    let records = vec![
        record(A, BackupKind::Full, 1, "0/3000000", "2026-01-01T10:00:00Z"),
        record(
            B,
            BackupKind::Incremental,
            1,
            "0/9000000",
            "2026-01-01T12:00:00Z",
        ),
        restore,
        record(C, BackupKind::Full, 2, "0/A000000", "2026-01-01T16:00:00Z"),
        failed,
    ];
    let timelines = vec![
        Timeline {
            id: 1,
            started: None,
            parents: vec![],
        },
        Timeline {
            id: 2,
            started: Some(at("2026-01-01T14:00:00Z")),
            parents: vec![(1, 0x5000000)],
        },
    ];
    (records, timelines)
}

fn plan_for(requested: &Requested) -> Result<Plan> {
    let (records, timelines) = history();
    plan_at(&records, &timelines, requested, None, now())
}

fn time(text: &str) -> Requested {
    Requested::Time(at(text))
}

fn both(id: &str, text: &str) -> Requested {
    Requested::BackupAndTime(id.into(), at(text))
}

fn chosen(plan: &Plan) -> (&str, Target, TimelineChoice) {
    (plan.backup.id.as_str(), plan.target, plan.timeline)
}

fn message(result: Result<impl fmt::Debug>) -> String {
    format!("{:#}", result.unwrap_err())
}

// --- the parameters -------------------------------------------------------

#[test]
fn no_parameter_is_the_anchor_message() {
    for (id, t) in [(None, None), (Some(""), Some("  ")), (Some(" "), None)] {
        assert_eq!(message(requested(id, t)), NO_PARAMETERS);
    }
    assert_eq!(
        NO_PARAMETERS,
        "Either backup-id or restore-to-time parameters need to be provided to be able to do restore"
    );
}

#[test]
fn every_accepted_time_format_parses() {
    let ten = at("2026-11-22T10:00:00Z");
    for (text, expected) in [
        ("2026-11-22 10:00:00", ten),
        ("2026-11-22 10:00:00Z", ten),
        ("2026-11-22 12:00:00+02", ten),
        ("2026-11-22 12:00:00+0200", ten),
        ("2026-11-22 12:00:00+02:00", ten),
        ("2026-11-22 06:30:00-03:30", ten),
        ("2026-11-22 10:00:00.5", at("2026-11-22T10:00:00.5Z")),
        (
            "2026-11-22 10:00:00.123456+00",
            at("2026-11-22T10:00:00.123456Z"),
        ),
        ("2026-11-22T10:00:00Z", ten),
        (
            "2026-11-22T11:00:00.123+01:00",
            at("2026-11-22T10:00:00.123Z"),
        ),
        ("2026-11-22T11:00:00+0100", ten),
        ("  2026-11-22 10:00:00  ", ten),
    ] {
        assert_eq!(
            requested(None, Some(text)).unwrap(),
            Requested::Time(expected),
            "{text}"
        );
    }
    for text in ["latest", "LATEST", " latest "] {
        assert_eq!(requested(None, Some(text)).unwrap(), Requested::Latest);
    }
}

#[test]
fn anything_else_is_a_bad_format_that_says_what_is_accepted() {
    for text in [
        "yesterday",
        "2026-11-22",
        "2026-11-22 10:00",
        "2026-11-22T10:00:00",
        "2026/11/22 10:00:00",
        "2026-11-22_10:00:00",
        "2026-02-30 10:00:00",
        "2026-11-22 24:00:00",
        "2026-11-22 10:00:00.",
        "2026-11-22 10:00:00.1234567890",
        "2026-11-22 10:00:00+2",
        "2026-11-22 10:00:00+02:0",
        "2026-11-22 10:00:00+16",
        "2026-11-22 10:00:00 UTC",
        "2026-11-22 10:00:00Z+01",
        "2026-11-22 1é:00:00",
        "1732269600",
    ] {
        let text_message = message(requested(None, Some(text)));
        assert_eq!(
            text_message,
            format!(
                "Bad restore-to-time format: {} ({TIME_FORMATS})",
                text.trim()
            ),
            "{text}"
        );
    }
    assert!(TIME_FORMATS.contains("YYYY-MM-DD HH:MM:SS"));
}

#[test]
fn backup_ids_must_look_like_ids() {
    assert_eq!(
        requested(Some("2026-01-01T10:00:00Z"), None).unwrap(),
        Requested::Backup("2026-01-01T10:00:00Z".into())
    );
    assert_eq!(
        requested(Some("2026-01-01T10:00:00Z"), Some("2026-01-01 11:00:00")).unwrap(),
        both("2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z")
    );
    for id in [
        "latest",
        "2026-01-01 10:00:00",
        "2026-01-01T10:00:00",
        "2026-1-01T10:00:00Z",
        "2026-01-01T10:00:00+00",
        "2026-13-01T10:00:00Z",
        "../2026-01-01T10:00:00Z",
    ] {
        assert_eq!(
            message(requested(Some(id), None)),
            format!(
                "Invalid backup-id: {id} (backup ids have the form YYYY-MM-DDTHH:MM:SSZ; \
                 list-backups shows them)"
            )
        );
    }
    // The id is checked before the time.
    assert!(message(requested(Some("x"), Some("nope"))).starts_with("Invalid backup-id: x"));
}

#[test]
fn backup_id_with_latest_is_refused() {
    let text = message(requested(Some("2026-01-01T10:00:00Z"), Some("latest")));
    assert_eq!(
        text,
        "restore-to-time=latest cannot be combined with backup-id (2026-01-01T10:00:00Z): \
         latest restores the latest backup and all the archived WAL; give a time with \
         backup-id, or drop backup-id"
    );
}

// --- a backup by id ----------------------------------------------------------

#[test]
fn a_backup_alone_recovers_to_its_own_end_on_its_timeline() {
    let plan = plan_for(&Requested::Backup(B.into())).unwrap();
    assert_eq!(
        chosen(&plan),
        (B, Target::BackupEnd, TimelineChoice::Number(1))
    );
    let plan = plan_for(&Requested::Backup(C.into())).unwrap();
    assert_eq!(
        chosen(&plan),
        (C, Target::BackupEnd, TimelineChoice::Number(2))
    );
}

#[test]
fn unknown_failed_and_restore_ids_are_refused_with_the_reason() {
    let unknown = "2025-01-01T00:00:00Z";
    assert_eq!(
        message(plan_for(&Requested::Backup(unknown.into()))),
        format!("Invalid backup-id: {unknown} (no backup has this id; list-backups shows them)")
    );
    assert_eq!(
        message(plan_for(&Requested::Backup(FAILED.into()))),
        format!("Invalid backup-id: {FAILED} (this backup failed; choose a finished backup)")
    );
    assert_eq!(
        message(plan_for(&both(FAILED, "2026-01-01T17:00:00Z"))),
        format!("Invalid backup-id: {FAILED} (this backup failed; choose a finished backup)")
    );
    assert_eq!(
        message(plan_for(&Requested::Backup(RESTORE.into()))),
        format!(
            "Cannot restore to the timeline without restore-to-time parameter ({RESTORE} is a \
             restore, not a backup: add restore-to-time to recover its timeline to a point in \
             time)"
        )
    );
    let (mut records, timelines) = history();
    records[2].status = BackupStatus::Failed;
    let failed_restore = both(RESTORE, "2026-01-01T15:00:00Z");
    assert_eq!(
        message(plan_at(&records, &timelines, &failed_restore, None, now())),
        format!("Invalid backup-id: {RESTORE} (this restore failed; choose a finished backup)")
    );
}

// --- a time: the timeline live then ----------------------------------------

#[test]
fn before_the_restore_a_time_follows_the_first_timeline() {
    let plan = plan_for(&time("2026-01-01T11:00:00Z")).unwrap();
    assert_eq!(
        chosen(&plan),
        (
            A,
            Target::Time(at("2026-01-01T11:00:00Z")),
            TimelineChoice::Number(1)
        )
    );
    // B ended by 13:00 on timeline 1, past the point timeline 2 left it: it
    // is the base for a time on timeline 1.
    let plan = plan_for(&time("2026-01-01T13:00:00Z")).unwrap();
    assert_eq!(
        chosen(&plan),
        (
            B,
            Target::Time(at("2026-01-01T13:00:00Z")),
            TimelineChoice::Number(1)
        )
    );
}

#[test]
fn after_the_restore_a_time_follows_the_new_timeline_from_a_backup_before_the_switch() {
    // B is past the switch point (0/9000000 > 0/5000000): excluded; A is not.
    let plan = plan_for(&time("2026-01-01T15:00:00Z")).unwrap();
    assert_eq!(
        chosen(&plan),
        (
            A,
            Target::Time(at("2026-01-01T15:00:00Z")),
            TimelineChoice::Number(2)
        )
    );
    // Once C ended, it is the nearest; the failed backup never is.
    let plan = plan_for(&time("2026-01-01T17:00:00Z")).unwrap();
    assert_eq!(
        chosen(&plan),
        (
            C,
            Target::Time(at("2026-01-01T17:00:00Z")),
            TimelineChoice::Number(2)
        )
    );
    // The switch point itself is still on the line.
    let (mut records, timelines) = history();
    records[1].stop_lsn = Some("0/5000000".into());
    let plan = plan_at(
        &records,
        &timelines,
        &time("2026-01-01T15:00:00Z"),
        None,
        now(),
    );
    assert_eq!(plan.unwrap().backup.id, B);
}

#[test]
fn after_a_migration_the_new_timeline_does_not_follow_the_old_cluster() {
    // Timeline 2 came from restoring another cluster's backup (system 7):
    // this repository's timeline 1 (system 42) is not its past, whatever
    // the history file says.
    let (mut records, timelines) = history();
    records[2].system_identifier = Some("7".into());
    let plan = plan_at(
        &records,
        &timelines,
        &time("2026-01-01T15:00:00Z"),
        None,
        now(),
    );
    assert!(message(plan)
        .contains("no finished backup that ended by then is on the line of timeline 2"),);
    // After C (system 7 too, taken on timeline 2) it is the base.
    records[3].system_identifier = Some("7".into());
    let plan = plan_at(
        &records,
        &timelines,
        &time("2026-01-01T17:00:00Z"),
        None,
        now(),
    );
    assert_eq!(plan.unwrap().backup.id, C);
    // Before the restore, timeline 1 is this cluster's own past.
    let plan = plan_at(
        &records,
        &timelines,
        &time("2026-01-01T13:00:00Z"),
        None,
        now(),
    );
    assert_eq!(plan.unwrap().backup.id, B);
    let plan = plan_at(
        &records,
        &timelines,
        &both(A, "2026-01-01T15:00:00Z"),
        None,
        now(),
    );
    assert!(message(plan).contains("not on the line of timeline 2"));
}

#[test]
fn a_backup_ends_by_the_second_its_record_says() {
    let plan = plan_for(&time("2026-01-01T10:00:00Z")).unwrap();
    assert_eq!(plan.backup.id, A);
    let err = message(plan_for(&time("2026-01-01T09:59:59.999Z")));
    assert_eq!(
        err,
        "Can't find the nearest timeline before timestamp 2026-01-01T09:59:59.999Z to restore \
         (the earliest finished backup ended at 2026-01-01T10:00:00Z: choose a later time)"
    );
}

#[test]
fn no_backup_on_the_line_or_none_at_all_says_why() {
    let (records, timelines) = history();
    // Only B on timeline 1 remains: past the switch, so none for timeline 2.
    let err = message(plan_at(
        &records[1..3],
        &timelines,
        &time("2026-01-01T15:00:00Z"),
        None,
        now(),
    ));
    assert_eq!(
        err,
        "Can't find the nearest timeline before timestamp 2026-01-01T15:00:00Z to restore (no \
         finished backup that ended by then is on the line of timeline 2, the one live at that \
         time)"
    );
    let err = message(plan_at(
        &[],
        &timelines,
        &time("2026-01-01T15:00:00Z"),
        None,
        now(),
    ));
    assert_eq!(
        err,
        "Can't find the nearest timeline before timestamp 2026-01-01T15:00:00Z to restore \
         (there is no finished backup: take a backup first)"
    );
}

#[test]
fn a_time_in_the_future_or_past_the_archive_is_refused() {
    let (records, timelines) = history();
    let err = message(plan_at(
        &records,
        &timelines,
        &time("2026-01-02T00:00:01Z"),
        None,
        now(),
    ));
    assert_eq!(
        err,
        "restore-to-time 2026-01-02T00:00:01Z is in the future (it is now 2026-01-02T00:00:00Z)"
    );
    let end = Some(at("2026-01-01T18:00:00Z"));
    let err = message(plan_at(
        &records,
        &timelines,
        &time("2026-01-01T18:00:01Z"),
        end,
        now(),
    ));
    assert_eq!(
        err,
        "restore-to-time 2026-01-01T18:00:01Z is after the last archived WAL \
         (2026-01-01T18:00:00Z): the WAL to reach it is not in the repository yet; choose a \
         time up to 2026-01-01T18:00:00Z, or wait for more WAL to be archived"
    );
    let at_end = plan_at(
        &records,
        &timelines,
        &time("2026-01-01T18:00:00Z"),
        end,
        now(),
    );
    assert_eq!(at_end.unwrap().backup.id, C);
    let with_backup = both(C, "2026-01-01T18:00:01Z");
    let err = message(plan_at(&records, &timelines, &with_backup, end, now()));
    assert!(err.contains("after the last archived WAL"), "{err}");
    let err = message(plan_for(&both(C, "2026-01-03T00:00:00Z")));
    assert!(err.contains("is in the future"), "{err}");
}

#[test]
fn timelines_only_the_catalog_knows_are_lines_of_their_own() {
    // Archiving began on timeline 3, no history file: the backups still count.
    let records = [record(
        A,
        BackupKind::Full,
        3,
        "0/3000000",
        "2026-01-01T10:00:00Z",
    )];
    let first = [Timeline {
        id: 1,
        started: None,
        parents: vec![],
    }];
    let plan = plan_at(&records, &first, &time("2026-01-01T11:00:00Z"), None, now()).unwrap();
    assert_eq!(chosen(&plan).2, TimelineChoice::Number(3));
    let plan = plan_at(&records, &first, &Requested::Latest, None, now()).unwrap();
    assert_eq!(plan.backup.id, A);
}

#[test]
fn the_live_timeline_is_the_last_begun() {
    let (_, mut timelines) = history();
    timelines.push(Timeline {
        id: 3,
        started: Some(at("2026-01-01T20:00:00Z")),
        parents: vec![(1, 0x5000000), (2, 0xC000000)],
    });
    let live = |t: &str| live_at(&timelines, at(t)).unwrap().id;
    assert_eq!(live("2026-01-01T13:59:59Z"), 1);
    assert_eq!(live("2026-01-01T14:00:00Z"), 2);
    assert_eq!(live("2026-01-01T19:00:00Z"), 2);
    assert_eq!(live("2026-01-01T20:00:00Z"), 3);
    assert!(live_at(&[], now()).is_none());
}

// --- a backup and a time ----------------------------------------------------

#[test]
fn a_backup_and_a_time_follow_the_timeline_live_then() {
    let plan = plan_for(&both(A, "2026-01-01T13:00:00Z")).unwrap();
    assert_eq!(
        chosen(&plan),
        (
            A,
            Target::Time(at("2026-01-01T13:00:00Z")),
            TimelineChoice::Number(1)
        )
    );
    let plan = plan_for(&both(A, "2026-01-01T15:00:00Z")).unwrap();
    assert_eq!(
        chosen(&plan),
        (
            A,
            Target::Time(at("2026-01-01T15:00:00Z")),
            TimelineChoice::Number(2)
        )
    );
    let plan = plan_for(&both(B, "2026-01-01T12:00:00Z")).unwrap();
    assert_eq!(chosen(&plan).2, TimelineChoice::Number(1));
}

#[test]
fn a_backup_past_the_switch_or_a_time_before_its_end_is_refused() {
    assert_eq!(
        message(plan_for(&both(B, "2026-01-01T15:00:00Z"))),
        format!(
            "backup {B} is on timeline 1, which is not on the line of timeline 2, the one live \
             at 2026-01-01T15:00:00Z: choose a backup of timeline 2's line, or restore-to-time \
             alone"
        )
    );
    assert_eq!(
        message(plan_for(&both(C, "2026-01-01T15:00:00Z"))),
        format!(
            "restore-to-time 2026-01-01T15:00:00Z is before backup {C} ended \
             (2026-01-01T16:00:00Z): choose an earlier backup or a later time"
        )
    );
    assert!(message(plan_for(&both(
        "2025-01-01T00:00:00Z",
        "2026-01-01T15:00:00Z"
    )))
    .starts_with("Invalid backup-id: 2025-01-01T00:00:00Z (no backup"));
}

#[test]
fn a_restore_and_a_time_recover_its_timeline() {
    let plan = plan_for(&both(RESTORE, "2026-01-01T17:00:00Z")).unwrap();
    assert_eq!(
        chosen(&plan),
        (
            C,
            Target::Time(at("2026-01-01T17:00:00Z")),
            TimelineChoice::Number(2)
        )
    );
    assert_eq!(
        message(plan_for(&both(RESTORE, "2026-01-01T13:00:00Z"))),
        format!(
            "restore {RESTORE} created timeline 2, but timeline 1 was live at \
             2026-01-01T13:00:00Z: choose a time while timeline 2 was live, or restore-to-time \
             alone"
        )
    );
}

// --- latest -------------------------------------------------------------------

#[test]
fn latest_takes_the_latest_backup_on_the_newest_line() {
    let plan = plan_for(&Requested::Latest).unwrap();
    assert_eq!(chosen(&plan), (C, Target::Latest, TimelineChoice::Latest));
    // Without C: A, never B (past the switch), nor the failed one, nor the restore.
    let (records, timelines) = history();
    let without_c: Vec<_> = records.iter().filter(|r| r.id != C).cloned().collect();
    let plan = plan_at(&without_c, &timelines, &Requested::Latest, None, now()).unwrap();
    assert_eq!(plan.backup.id, A);
}

#[test]
fn latest_without_a_backup_on_the_line_says_why() {
    let (records, timelines) = history();
    assert_eq!(
        message(plan_at(
            &records[1..3],
            &timelines,
            &Requested::Latest,
            None,
            now()
        )),
        "no finished backup is on the line of timeline 2, the latest: give a backup-id and a \
         restore-to-time instead"
    );
    assert_eq!(
        message(plan_at(
            &records[2..3],
            &timelines,
            &Requested::Latest,
            None,
            now()
        )),
        "there is no finished backup to restore: take a backup first"
    );
}

#[test]
fn settings_render_as_postgresql_takes_them() {
    assert_eq!(TimelineChoice::Number(2).to_string(), "2");
    assert_eq!(TimelineChoice::Latest.to_string(), "latest");
    assert_eq!(
        pg_timestamp(&at("2026-11-22T10:00:00.123Z")),
        "2026-11-22 10:00:00.123000+00"
    );
}

// --- history files ------------------------------------------------------------

#[test]
fn history_files_parse_as_postgresql_writes_them() {
    let text = "1\t0/5000000\tbefore 2026-01-01 11:00:00+00\n\n# a comment\n\
                2\t1/A0000028\tno recovery target specified\n";
    assert_eq!(
        parse_history(text).unwrap(),
        vec![(1, 0x5000000), (2, 0x1_A000_0028)]
    );
    assert_eq!(parse_history("").unwrap(), vec![]);
    assert_eq!(parse_history("3\t0/100").unwrap(), vec![(3, 0x100)]);
    for bad in [
        "x\t0/1\tr",
        "1\tnope\tr",
        "1",
        "2\t0/1\n1\t0/2",
        "1\t0/1\n1\t0/2",
    ] {
        let err = message(parse_history(bad));
        assert!(err.starts_with("line "), "{bad:?}: {err}");
    }
}

use crate::backup::testing::run;

/// Archives `name` with `content` as archive_command would.
fn push(repo: &Repo, dir: &FsPath, name: &str, content: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    run(wal::push(repo, &path)).unwrap();
    std::fs::remove_file(path).unwrap();
    // Distinct archive times.
    std::thread::sleep(std::time::Duration::from_millis(5));
}

fn modified(store: &InMemory, key: &str) -> DateTime<Utc> {
    run(store.head(&ObjectPath::from(key)))
        .unwrap()
        .last_modified
}

fn key_of(name: &str, content: &[u8]) -> String {
    wal::object_key(name, &codec::sha256_hex(content))
        .unwrap()
        .to_string()
}

const HISTORY_2: &[u8] = b"1\t0/5000000\tbefore 2026-01-01 11:00:00+00\n";
const HISTORY_3: &[u8] = b"1\t0/5000000\tbefore 2026-01-01 11:00:00+00\n\
                           2\t0/C000000\tno recovery target specified\n";

#[test]
fn timelines_come_from_the_archived_history_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemory::new());
    let repo = Repo::new(store.clone());
    assert_eq!(
        run(timelines(&repo)).unwrap(),
        vec![Timeline {
            id: 1,
            started: None,
            parents: vec![]
        }]
    );

    push(&repo, dir.path(), "000000010000000000000001", b"segment");
    push(&repo, dir.path(), "00000003.history", HISTORY_3);
    push(
        &repo,
        dir.path(),
        "000000010000000000000001.00000028.backup",
        b"label",
    );
    let found = run(timelines(&repo)).unwrap();
    // Timeline 2's history is not archived: its line is known from 3's.
    assert_eq!(
        found,
        vec![
            Timeline {
                id: 1,
                started: None,
                parents: vec![]
            },
            Timeline {
                id: 2,
                started: None,
                parents: vec![(1, 0x5000000)]
            },
            Timeline {
                id: 3,
                started: Some(modified(&store, &key_of("00000003.history", HISTORY_3))),
                parents: vec![(1, 0x5000000), (2, 0xC000000)]
            },
        ]
    );

    push(&repo, dir.path(), "00000002.history", HISTORY_2);
    let found = run(timelines(&repo)).unwrap();
    assert_eq!(
        found[1].started,
        Some(modified(&store, &key_of("00000002.history", HISTORY_2)))
    );
    assert_eq!(found.len(), 3);
}

#[test]
fn of_two_objects_for_one_history_the_first_stored_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemory::new());
    let repo = Repo::new(store.clone());
    push(&repo, dir.path(), "00000002.history", HISTORY_2);
    // A second copy stored later (a lost race), with other content.
    let other = b"1\t0/7000000\tanother history\n";
    let (packed, _) = codec::compress_to_vec(&other[..]).unwrap();
    let late = key_of("00000002.history", other);
    run(store.put(&ObjectPath::from(late), PutPayload::from(packed))).unwrap();
    let found = run(timelines(&repo)).unwrap();
    assert_eq!(found[1].parents, vec![(1, 0x5000000)]);
}

#[test]
fn a_corrupt_or_invalid_history_file_is_an_error() {
    let store = Arc::new(InMemory::new());
    let repo = Repo::new(store.clone());
    let key = key_of("00000002.history", HISTORY_2);
    let (wrong, _) = codec::compress_to_vec(&b"1\t0/6000000\tx\n"[..]).unwrap();
    run(store.put(&ObjectPath::from(key.clone()), PutPayload::from(wrong))).unwrap();
    let err = message(run(timelines(&repo)));
    assert!(err.contains(&format!("{key} is corrupt")), "{err}");

    let store = Arc::new(InMemory::new());
    let repo = Repo::new(store.clone());
    let garbage = b"not a history\n";
    let (packed, _) = codec::compress_to_vec(&garbage[..]).unwrap();
    let key = key_of("00000002.history", garbage);
    run(store.put(&ObjectPath::from(key.clone()), PutPayload::from(packed))).unwrap();
    let err = message(run(timelines(&repo)));
    assert!(err.contains("is not a timeline history"), "{err}");
}

#[test]
fn the_archive_ends_at_the_newest_segment_of_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemory::new());
    let repo = Repo::new(store.clone());
    let line = |id: u32, parents: Vec<(u32, u64)>| Timeline {
        id,
        started: None,
        parents,
    };
    assert_eq!(run(archive_end(&repo, &line(1, vec![]))).unwrap(), None);

    push(&repo, dir.path(), "000000010000000000000005", b"a");
    push(&repo, dir.path(), "0000000100000001000000FF", b"b");
    push(&repo, dir.path(), "000000020000000000000005", b"c");
    push(&repo, dir.path(), "000000020000000000000006.partial", b"d");
    // Written last, in an older directory of timeline 1: not the newest segment.
    push(&repo, dir.path(), "000000010000000000000006", b"e");
    push(&repo, dir.path(), "00000003.history", HISTORY_3);

    let one = run(archive_end(&repo, &line(1, vec![]))).unwrap();
    assert_eq!(
        one,
        Some(modified(&store, &key_of("0000000100000001000000FF", b"b")))
    );
    let two = run(archive_end(&repo, &line(2, vec![(1, 0x5000000)]))).unwrap();
    assert_eq!(
        two,
        Some(modified(
            &store,
            &key_of("000000020000000000000006.partial", b"d")
        ))
    );
    // Timeline 3 has no segment yet: its latest parent with one answers.
    let three = line(3, vec![(1, 0x5000000), (2, 0xC000000)]);
    assert_eq!(run(archive_end(&repo, &three)).unwrap(), two);
    // A line with nothing archived.
    assert_eq!(run(archive_end(&repo, &line(4, vec![]))).unwrap(), None);
}
