//! What a restore recovers to, decided before anything is touched: the
//! `restore` action's parameters parsed ([`requested`]), the repository's
//! timelines read from the archived history files ([`timelines`]) and how far
//! the archive reaches ([`archive_end`]), and from those and the catalog the
//! [`Plan`]: the base backup, the recovery target and the timeline to follow.
//!
//! Pure but for the two reads of the repository, so every rule is tested
//! without PostgreSQL. The rule that matters most: a time is reached on the
//! timeline that was live at that time, never on `latest` (after a restore
//! to an earlier point created timeline 2 at wall time W, a time before W
//! follows timeline 1, and a time after W timeline 2).

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{anyhow, bail, Context as _, Result};
use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone as _, Utc,
};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStoreExt as _};

use super::catalog::{BackupKind, BackupRecord};
use super::codec;
use super::repo::Repo;
use crate::postgres::sql::parse_lsn;

/// The anchor's message when neither parameter is given.
const NO_PARAMETERS: &str =
    "Either backup-id or restore-to-time parameters need to be provided to be able to do restore";

/// What restore-to-time accepts, for the message that refuses anything else.
const TIME_FORMATS: &str = "expected latest, YYYY-MM-DD HH:MM:SS[.ffffff][±TZ] with TZ as Z, \
     +02, +0200 or +02:00 (UTC when absent), or ISO 8601 such as 2026-11-22T10:00:00Z";

/// What the user asked for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// `backup-id` alone: that backup, recovered to its own end.
    Backup(String),
    /// `restore-to-time` alone: that moment, from the nearest backup before it.
    Time(DateTime<Utc>),
    /// Both: that moment, from that backup (or on the timeline of that
    /// restore row).
    BackupAndTime(String, DateTime<Utc>),
    /// `restore-to-time=latest`: the latest backup and all the archived WAL.
    Latest,
}

/// Parses the restore action's `backup-id` and `restore-to-time`; empty or
/// blank values count as absent.
pub fn requested(backup_id: Option<&str>, restore_to_time: Option<&str>) -> Result<Requested> {
    let (backup_id, time) = (given(backup_id), given(restore_to_time));
    if let Some(id) = backup_id {
        check_backup_id(id)?;
    }
    let time = match time {
        None => None,
        Some(text) if text.eq_ignore_ascii_case("latest") => {
            if let Some(id) = backup_id {
                bail!(
                    "restore-to-time=latest cannot be combined with backup-id ({id}): latest \
                     restores the latest backup and all the archived WAL; give a time with \
                     backup-id, or drop backup-id"
                );
            }
            return Ok(Requested::Latest);
        }
        Some(text) => Some(
            parse_time(text)
                .ok_or_else(|| anyhow!("Bad restore-to-time format: {text} ({TIME_FORMATS})"))?,
        ),
    };
    Ok(match (backup_id, time) {
        (None, None) => bail!(NO_PARAMETERS),
        (Some(id), None) => Requested::Backup(id.to_owned()),
        (None, Some(t)) => Requested::Time(t),
        (Some(id), Some(t)) => Requested::BackupAndTime(id.to_owned(), t),
    })
}

/// A parameter's value, trimmed; `None` when absent or blank.
fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// A backup id has the form `YYYY-MM-DDTHH:MM:SSZ`.
fn check_backup_id(id: &str) -> Result<()> {
    let valid = id.len() == 20
        && NaiveDateTime::parse_from_str(id, ID_FORMAT)
            .is_ok_and(|t| t.format(ID_FORMAT).to_string() == id);
    if !valid {
        bail!(
            "Invalid backup-id: {id} (backup ids have the form YYYY-MM-DDTHH:MM:SSZ; \
             list-backups shows them)"
        );
    }
    Ok(())
}

/// How backup ids and record times are written.
const ID_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// `YYYY-MM-DD{ |T}HH:MM:SS[.f{1,9}][TZ]`; the `T` form needs a TZ.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if !text.is_ascii() || text.len() < 19 {
        return None;
    }
    let (date, rest) = text.split_at(10);
    let (sep, rest) = rest.split_at(1);
    let (clock, mut rest) = rest.split_at(8);
    if sep != " " && sep != "T" {
        return None;
    }
    let num = |s: &str| -> Option<u32> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let d = date.as_bytes();
    let c = clock.as_bytes();
    if d[4] != b'-' || d[7] != b'-' || c[2] != b':' || c[5] != b':' {
        return None;
    }
    let day =
        NaiveDate::from_ymd_opt(num(&date[..4])? as i32, num(&date[5..7])?, num(&date[8..])?)?;
    let mut nanos = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = num(&fraction[..digits])? * 10u32.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    let time = NaiveTime::from_hms_nano_opt(
        num(&clock[..2])?,
        num(&clock[3..5])?,
        num(&clock[6..])?,
        nanos,
    )?;
    let offset = match rest {
        "" if sep == " " => FixedOffset::east_opt(0)?,
        "Z" => FixedOffset::east_opt(0)?,
        zone => parse_offset(zone)?,
    };
    let local = NaiveDateTime::new(day, time);
    Some(
        offset
            .from_local_datetime(&local)
            .single()?
            .with_timezone(&Utc),
    )
}

/// `+HH`, `+HHMM` or `+HH:MM` (or `-`).
fn parse_offset(zone: &str) -> Option<FixedOffset> {
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = &zone[1..];
    let (hours, minutes) = match digits.len() {
        2 => (digits, "00"),
        4 => digits.split_at(2),
        5 if digits.as_bytes()[2] == b':' => (&digits[..2], &digits[3..]),
        _ => return None,
    };
    if !(hours.bytes().chain(minutes.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 15 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// One timeline of the repository's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    pub id: u32,
    /// When it began (its history file's archive time); `None` for the first
    /// timeline, or one whose history file is not in the repository.
    pub started: Option<DateTime<Utc>>,
    /// Its ancestors, oldest first: (timeline, LSN where this line left it).
    pub parents: Vec<(u32, u64)>,
}

/// Parses a timeline history file (`NNNNNNNN.history`): one line per
/// ancestor, `parentTLI<tab>X/Y<tab>reason`, oldest first; `#` comments and
/// blank lines are skipped. Returns the ancestors with their switch points.
pub fn parse_history(text: &str) -> Result<Vec<(u32, u64)>> {
    let mut parents: Vec<(u32, u64)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "line {} of the timeline history is not valid: {line:?}",
                n + 1
            )
        };
        let mut fields = line.split_whitespace();
        let tli: u32 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(bad)?;
        let lsn = parse_lsn(fields.next().with_context(bad)?).with_context(bad)?;
        if let Some(&(last, _)) = parents.last() {
            if tli <= last {
                bail!(
                    "line {} of the timeline history is not valid: timeline {tli} does not \
                     follow timeline {last}",
                    n + 1
                );
            }
        }
        parents.push((tli, lsn));
    }
    Ok(parents)
}

/// The repository's timelines, by id: one per archived history file (read,
/// decompressed and checked against the SHA-256 its key names; of several
/// objects for one timeline, the first stored), plus the ancestors they name
/// that have none (the first timeline always, `started` None). With no
/// history file at all, timeline 1 alone. Timelines only the catalog knows
/// (history never archived) are added by [`plan`] from the backup records.
pub async fn timelines(repo: &Repo) -> Result<Vec<Timeline>> {
    let listing = repo
        .store
        .list_with_delimiter(Some(&ObjectPath::from("wal")))
        .await
        .context("cannot list wal/ in the repository")?;
    let mut histories: BTreeMap<u32, (ObjectMeta, String)> = BTreeMap::new();
    for meta in listing.objects {
        let Some((tli, sha)) = meta.location.filename().and_then(history_name) else {
            continue;
        };
        let first = match histories.get(&tli) {
            Some((kept, _)) => {
                (meta.last_modified, &meta.location) < (kept.last_modified, &kept.location)
            }
            None => true,
        };
        if first {
            histories.insert(tli, (meta, sha));
        }
    }
    let read: Vec<Timeline> = futures::stream::iter(histories)
        .map(|(id, (meta, sha))| async move {
            let parents = read_history(repo, &meta.location, &sha).await?;
            Ok::<_, anyhow::Error>(Timeline {
                id,
                started: Some(meta.last_modified),
                parents,
            })
        })
        .buffered(8)
        .try_collect()
        .await?;

    let mut all: BTreeMap<u32, Timeline> = read.iter().map(|t| (t.id, t.clone())).collect();
    for timeline in &read {
        for (i, &(ancestor, _)) in timeline.parents.iter().enumerate() {
            all.entry(ancestor).or_insert_with(|| Timeline {
                id: ancestor,
                started: None,
                parents: timeline.parents[..i].to_vec(),
            });
        }
    }
    if all.is_empty() {
        all.insert(
            1,
            Timeline {
                id: 1,
                started: None,
                parents: Vec::new(),
            },
        );
    }
    Ok(all.into_values().collect())
}

/// `NNNNNNNN.history-<sha256>.<zst|lz4|raw>` → (timeline, sha256).
fn history_name(file: &str) -> Option<(u32, String)> {
    let (tli, rest) = file.split_once(".history-")?;
    let sha = codec::Compression::strip_suffix(rest)?;
    let hex = tli.len() == 8 && tli.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || !codec::is_sha256_hex(sha) {
        return None;
    }
    Some((u32::from_str_radix(tli, 16).ok()?, sha.to_owned()))
}

async fn read_history(repo: &Repo, key: &ObjectPath, sha: &str) -> Result<Vec<(u32, u64)>> {
    let packed = repo
        .store
        .get(key)
        .await
        .with_context(|| format!("cannot download {key}"))?
        .bytes()
        .await
        .with_context(|| format!("cannot download {key}"))?;
    let (text, digest) = repo
        .format
        .read_to_vec(key.as_ref(), &packed)
        .with_context(|| format!("cannot read {key}"))?;
    if digest.sha256 != sha {
        bail!(
            "{key} is corrupt: its content has sha256 {} but its name says {sha}",
            digest.sha256
        );
    }
    let text = String::from_utf8(text).with_context(|| format!("{key} is not text"))?;
    parse_history(&text).with_context(|| format!("{key} is not a timeline history"))
}

/// When the newest WAL segment of `timeline`'s line was archived: the
/// greatest `wal/<timeline+log>/` directory of the timeline itself (or, when
/// it has none yet, of its latest parent that has one), and the newest object
/// in it. Two listings, never all of `wal/`. `None` when nothing is archived
/// on that line. For [`plan`]'s check, pass the newest timeline (the greatest
/// id): a time after its archive end is after all the archived WAL.
pub async fn archive_end(repo: &Repo, timeline: &Timeline) -> Result<Option<DateTime<Utc>>> {
    let listing = repo
        .store
        .list_with_delimiter(Some(&ObjectPath::from("wal")))
        .await
        .context("cannot list wal/ in the repository")?;
    let dirs: Vec<(u32, u64, &ObjectPath)> = listing
        .common_prefixes
        .iter()
        .filter_map(|dir| {
            let name = dir.filename()?;
            let hex = name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit());
            let (tli, log) = (hex.then_some(name)?).split_at(8);
            Some((
                u32::from_str_radix(tli, 16).ok()?,
                u64::from_str_radix(log, 16).ok()?,
                dir,
            ))
        })
        .collect();
    let newest_of = |tli: u32| {
        dirs.iter()
            .filter(|(t, _, _)| *t == tli)
            .max_by_key(|(_, log, _)| *log)
    };
    let chosen = std::iter::once(timeline.id)
        .chain(timeline.parents.iter().rev().map(|(p, _)| *p))
        .find_map(newest_of);
    let Some((_, _, dir)) = chosen else {
        return Ok(None);
    };
    let inside = repo
        .store
        .list_with_delimiter(Some(dir))
        .await
        .with_context(|| format!("cannot list {dir} in the repository"))?;
    Ok(inside.objects.iter().map(|m| m.last_modified).max())
}

/// The plan a restore follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The finished backup whose files are put back.
    pub backup: BackupRecord,
    pub target: Target,
    /// `recovery_target_timeline`.
    pub timeline: TimelineChoice,
}

/// Where recovery stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The backup's own end: `recovery_target = 'immediate'`.
    BackupEnd,
    /// `recovery_target_time` (see [`pg_timestamp`]).
    Time(DateTime<Utc>),
    /// The end of the archive: no recovery target.
    Latest,
}

/// The timeline recovery follows (`recovery_target_timeline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineChoice {
    Number(u32),
    Latest,
}

impl fmt::Display for TimelineChoice {
    /// As `recovery_target_timeline` takes it: `2` or `latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Latest => f.write_str("latest"),
        }
    }
}

/// A time as `recovery_target_time` takes it, to the microsecond:
/// `2026-11-22 10:00:00.123456+00`.
pub fn pg_timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// Decides what the restore recovers to. `timelines` as [`timelines`]
/// returned them; `archive_end` as [`archive_end`] returned it for the newest
/// timeline (no time after it can be reached). Only finished backups are
/// ever the base: never a failed one, never a restore row.
pub fn plan(
    records: &[BackupRecord],
    timelines: &[Timeline],
    requested: &Requested,
    archive_end: Option<DateTime<Utc>>,
) -> Result<Plan> {
    plan_at(records, timelines, requested, archive_end, Utc::now())
}

fn plan_at(
    records: &[BackupRecord],
    timelines: &[Timeline],
    requested: &Requested,
    archive_end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Plan> {
    let timelines = with_catalog_timelines(timelines, records);
    match requested {
        Requested::Backup(id) => {
            let backup = base_backup(records, id)?;
            Ok(Plan {
                target: Target::BackupEnd,
                timeline: TimelineChoice::Number(timeline_of(backup)?),
                backup: backup.clone(),
            })
        }
        Requested::Time(t) => to_time(records, &timelines, *t, archive_end, now),
        Requested::BackupAndTime(id, t) => {
            reachable(*t, archive_end, now)?;
            let row = named(records, id)?;
            if row.kind == BackupKind::Restore {
                // A restore row names its timeline: the time must be on it.
                let created = timeline_of(row)?;
                let plan = to_time(records, &timelines, *t, archive_end, now)?;
                if plan.timeline != TimelineChoice::Number(created) {
                    bail!(
                        "restore {id} created timeline {created}, but timeline {} was live at \
                         {}: choose a time while timeline {created} was live, or restore-to-time \
                         alone",
                        plan.timeline,
                        show(t)
                    );
                }
                return Ok(plan);
            }
            let backup = base_backup(records, id)?;
            let ended = finish_of(backup)?;
            if *t < ended {
                bail!(
                    "restore-to-time {} is before backup {id} ended ({}): choose an earlier \
                     backup or a later time",
                    show(t),
                    show(&ended)
                );
            }
            let live = live_at(&timelines, *t).context("no timeline is known")?;
            if !on_line(records, backup, live) {
                bail!(
                    "backup {id} is on timeline {}, which is not on the line of timeline {}, \
                     the one live at {}: choose a backup of timeline {}'s line, or \
                     restore-to-time alone",
                    timeline_of(backup)?,
                    live.id,
                    show(t),
                    live.id
                );
            }
            Ok(Plan {
                backup: backup.clone(),
                target: Target::Time(*t),
                timeline: TimelineChoice::Number(live.id),
            })
        }
        Requested::Latest => {
            let newest = timelines
                .iter()
                .max_by_key(|t| t.id)
                .context("no timeline is known")?;
            let backup = latest_on_line(records, newest, None).ok_or_else(|| {
                if records.iter().any(BackupRecord::is_finished_backup) {
                    anyhow!(
                        "no finished backup is on the line of timeline {}, the latest: give a \
                         backup-id and a restore-to-time instead",
                        newest.id
                    )
                } else {
                    anyhow!("there is no finished backup to restore: take a backup first")
                }
            })?;
            Ok(Plan {
                backup: backup.clone(),
                target: Target::Latest,
                timeline: TimelineChoice::Latest,
            })
        }
    }
}

/// The timeline live at `t`: the one that began last at or before it (one
/// without a start counts as begun at the beginning of time; among those, the
/// greatest id).
pub fn live_at(timelines: &[Timeline], t: DateTime<Utc>) -> Option<&Timeline> {
    timelines
        .iter()
        .filter(|tl| tl.started.is_none_or(|s| s <= t))
        .max_by_key(|tl| (tl.started, tl.id))
}

/// `timelines` plus those of the catalog's rows that no history file names
/// (the cluster's first timeline when it was not 1, or history never
/// archived), as begun at the beginning of time.
fn with_catalog_timelines(timelines: &[Timeline], records: &[BackupRecord]) -> Vec<Timeline> {
    let mut all = timelines.to_vec();
    for id in records
        .iter()
        .filter(|r| r.is_finished())
        .filter_map(|r| r.timeline)
    {
        if !all.iter().any(|t| t.id == id) {
            all.push(Timeline {
                id,
                started: None,
                parents: Vec::new(),
            });
        }
    }
    all
}

/// The plan for `Time(t)`: the latest backup ended by `t` on the line of the
/// timeline live at `t`.
fn to_time(
    records: &[BackupRecord],
    timelines: &[Timeline],
    t: DateTime<Utc>,
    archive_end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Plan> {
    reachable(t, archive_end, now)?;
    let anchor = format!(
        "Can't find the nearest timeline before timestamp {} to restore",
        show(&t)
    );
    let live = live_at(timelines, t)
        .ok_or_else(|| anyhow!("{anchor} (the repository has no timeline)"))?;
    let Some(backup) = latest_on_line(records, live, Some(t)) else {
        let earliest = records
            .iter()
            .filter(|r| r.is_finished_backup())
            .filter_map(BackupRecord::finished_at)
            .min();
        match earliest {
            None => bail!("{anchor} (there is no finished backup: take a backup first)"),
            Some(e) if e > t => bail!(
                "{anchor} (the earliest finished backup ended at {}: choose a later time)",
                show(&e)
            ),
            Some(_) => bail!(
                "{anchor} (no finished backup that ended by then is on the line of timeline {}, \
                 the one live at that time)",
                live.id
            ),
        }
    };
    Ok(Plan {
        backup: backup.clone(),
        target: Target::Time(t),
        timeline: TimelineChoice::Number(live.id),
    })
}

/// Refuses a time in the future or past the archived WAL.
fn reachable(
    t: DateTime<Utc>,
    archive_end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<()> {
    if t > now {
        bail!(
            "restore-to-time {} is in the future (it is now {})",
            show(&t),
            show(&now)
        );
    }
    if let Some(end) = archive_end {
        if t > end {
            bail!(
                "restore-to-time {} is after the last archived WAL ({}): the WAL to reach it is \
                 not in the repository yet; choose a time up to {}, or wait for more WAL to be \
                 archived",
                show(&t),
                show(&end),
                show(&end)
            );
        }
    }
    Ok(())
}

/// The latest finished backup on `line` (ended by `by`, when given).
fn latest_on_line<'a>(
    records: &'a [BackupRecord],
    line: &Timeline,
    by: Option<DateTime<Utc>>,
) -> Option<&'a BackupRecord> {
    records
        .iter()
        .filter(|r| r.is_finished_backup() && on_line(records, r, line))
        .filter_map(|r| Some((r.finished_at()?, r)))
        .filter(|(end, _)| by.is_none_or(|by| *end <= by))
        .max_by(|(a, ra), (b, rb)| (a, &ra.id).cmp(&(b, &rb.id)))
        .map(|(_, r)| r)
}

/// Whether recovery can go from `backup` along `line`: the backup is on the
/// line's own timeline, or on an ancestor and ended before the line left it
/// (and is of the same cluster: after a restore from another cluster's
/// backup, timeline 1 of this repository is not the new timeline's parent).
fn on_line(records: &[BackupRecord], backup: &BackupRecord, line: &Timeline) -> bool {
    let Some(tli) = backup.timeline else {
        return false;
    };
    if tli == line.id {
        return true;
    }
    if let (Some(theirs), Some(ours)) = (lineage(records, line.id), &backup.system_identifier) {
        if theirs != ours {
            return false;
        }
    }
    let Some(&(_, switch)) = line.parents.iter().find(|(p, _)| *p == tli) else {
        return false;
    };
    backup
        .stop_lsn
        .as_deref()
        .and_then(|lsn| parse_lsn(lsn).ok())
        .is_some_and(|stop| stop <= switch)
}

/// The system identifier of the cluster whose history `timeline` is: that of
/// the backup the restore which created it restored, else that of the
/// backups taken on it; `None` when the catalog does not say.
fn lineage(records: &[BackupRecord], timeline: u32) -> Option<&str> {
    let on = |r: &&BackupRecord| r.is_finished() && r.timeline == Some(timeline);
    let creator = records
        .iter()
        .filter(on)
        .find(|r| r.kind == BackupKind::Restore);
    creator
        .or_else(|| records.iter().filter(on).find(|r| r.kind.is_backup()))
        .and_then(|r| r.system_identifier.as_deref())
}

/// The row `id` names, or the anchor's message.
fn named<'a>(records: &'a [BackupRecord], id: &str) -> Result<&'a BackupRecord> {
    let row = records.iter().find(|r| r.id == id).ok_or_else(|| {
        anyhow!("Invalid backup-id: {id} (no backup has this id; list-backups shows them)")
    })?;
    if !row.is_finished() {
        let what = if row.kind.is_backup() {
            "backup"
        } else {
            "restore"
        };
        bail!("Invalid backup-id: {id} (this {what} failed; choose a finished backup)");
    }
    Ok(row)
}

/// The finished backup `id` names; a restore row needs a time.
fn base_backup<'a>(records: &'a [BackupRecord], id: &str) -> Result<&'a BackupRecord> {
    let row = named(records, id)?;
    if !row.kind.is_backup() {
        bail!(
            "Cannot restore to the timeline without restore-to-time parameter ({id} is a \
             restore, not a backup: add restore-to-time to recover its timeline to a point \
             in time)"
        );
    }
    Ok(row)
}

fn timeline_of(row: &BackupRecord) -> Result<u32> {
    row.timeline
        .with_context(|| format!("the record of {} has no timeline", row.id))
}

fn finish_of(row: &BackupRecord) -> Result<DateTime<Utc>> {
    row.finished_at()
        .with_context(|| format!("the record of backup {} has no valid finish time", row.id))
}

/// A time as messages show it: `2026-11-22T10:00:00Z` (with a fraction when
/// it has one).
fn show(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests;
