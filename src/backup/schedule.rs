//! Backup schedules: a cron expression (five fields: minute, hour, day of
//! month, month, day of week; UTC) for each kind of backup, and which
//! backup is due at a given minute.
//!
//! A schedule says when backups should exist, not what a timer has done:
//! the backup due at `at` is the latest occurrence of a schedule up to `at`
//! that no scheduled backup in the repository covers yet. A scheduled
//! backup covers an occurrence when it was taken for that occurrence or a
//! later one and is of the same kind or a stronger one (a full backup
//! covers a differential, either covers an incremental). So the question
//! can be asked by any unit, any number of times: a tick that comes twice,
//! late, or on another unit after the leader moved, takes each backup once.
//! A failed backup covers its occurrence too, so a failing backup is not
//! retried every minute; the next occurrence tries again.
//!
//! Occurrences before the schedule started (`since`, a whole minute, which
//! counts) or more than a day old are never due: setting a daily schedule at noon does not take the
//! morning's backup at once, and a unit that was down for a week takes one
//! backup when it is back, not seven.

use anyhow::{Context as _, Result};
use chrono::{DateTime, Duration, Utc};
use croner::Cron;

use super::catalog::{BackupKind, BackupRecord};

/// The furthest back an occurrence can still be due.
const HORIZON: Duration = Duration::days(1);

/// One cron expression, for one kind of backup.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: BackupKind,
    pub expression: String,
    cron: Cron,
}

/// The schedules a cluster has, strongest kind first.
#[derive(Debug, Clone, Default)]
pub struct Schedules(Vec<Schedule>);

/// Two sets of schedules are equal when their expressions are.
impl PartialEq for Schedules {
    fn eq(&self, other: &Self) -> bool {
        self.describe() == other.describe()
    }
}

impl Eq for Schedules {}

/// A backup a schedule wants now: its kind and the occurrence it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub kind: BackupKind,
    pub occurrence: DateTime<Utc>,
}

/// How an occurrence is written in records: RFC 3339, whole minutes, UTC.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses [`format_time`]'s form (or any RFC 3339 time).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{text:?} is not an RFC 3339 time such as 2030-01-01T03:00:00Z"))
}

/// How much a kind covers: a stronger kind covers a weaker one.
fn strength(kind: BackupKind) -> u8 {
    match kind {
        BackupKind::Full => 3,
        BackupKind::Differential => 2,
        BackupKind::Incremental => 1,
        BackupKind::Restore => 0,
    }
}

impl Schedule {
    /// Parses one expression; the error says what is wrong with it.
    pub fn parse(kind: BackupKind, expression: &str) -> Result<Self> {
        let fields = expression.split_whitespace().count();
        if fields != 5 {
            anyhow::bail!(
                "{expression:?} has {fields} fields, not the five of a cron expression \
                 (minute hour day-of-month month day-of-week, in UTC), e.g. \"0 3 * * *\""
            );
        }
        let cron = Cron::new(expression).parse().map_err(|err| {
            let reason = err.to_string().trim_end_matches('.').to_lowercase();
            anyhow::anyhow!("{expression:?} is not a cron expression: {reason}")
        })?;
        // An expression that can never match (31 February) is refused too.
        cron.find_next_occurrence(&Utc::now(), false)
            .map_err(|_| anyhow::anyhow!("{expression:?} never occurs: no date matches it"))?;
        Ok(Self {
            kind,
            expression: expression.trim().to_owned(),
            cron,
        })
    }

    /// The latest occurrence in `(after, at]`, if any.
    fn latest(&self, after: DateTime<Utc>, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut latest = None;
        let mut from = after;
        while let Ok(next) = self.cron.find_next_occurrence(&from, false) {
            if next > at {
                break;
            }
            latest = Some(next);
            from = next;
        }
        latest
    }
}

impl Schedules {
    /// The given schedules, at most one per kind.
    pub fn new(mut schedules: Vec<Schedule>) -> Self {
        schedules.sort_by_key(|s| std::cmp::Reverse(strength(s.kind)));
        Self(schedules)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The schedules as one line, to tell whether they changed.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|s| format!("{}={}", s.kind, s.expression))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The backup due at `at` for schedules started at `since`, given the
    /// repository's records: the strongest kind with an uncovered occurrence.
    pub fn due(
        &self,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
        records: &[BackupRecord],
    ) -> Option<Due> {
        let after = (since - Duration::seconds(1)).max(at - HORIZON);
        self.0.iter().find_map(|schedule| {
            let occurrence = schedule.latest(after, at)?;
            (!covered(records, schedule.kind, occurrence)).then_some(Due {
                kind: schedule.kind,
                occurrence,
            })
        })
    }
}

/// The time a record was scheduled for, if it was a scheduled backup.
pub fn scheduled_for(record: &BackupRecord) -> Option<DateTime<Utc>> {
    record.scheduled.as_deref().and_then(|t| parse_time(t).ok())
}

/// True when a scheduled backup at or after `occurrence`, at least as
/// strong as `kind`, was taken (or tried).
pub fn covered(records: &[BackupRecord], kind: BackupKind, occurrence: DateTime<Utc>) -> bool {
    records.iter().any(|r| {
        strength(r.kind) >= strength(kind) && scheduled_for(r).is_some_and(|t| t >= occurrence)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::catalog::tests::record;

    fn t(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    fn scheduled(id: &str, kind: BackupKind, at: &str, finished: bool) -> BackupRecord {
        BackupRecord {
            scheduled: Some(at.into()),
            ..record(id, kind, finished)
        }
    }

    fn schedules(full: &str, incremental: &str) -> Schedules {
        let mut list = Vec::new();
        for (kind, expression) in [
            (BackupKind::Incremental, incremental),
            (BackupKind::Full, full),
        ] {
            if !expression.is_empty() {
                list.push(Schedule::parse(kind, expression).unwrap());
            }
        }
        Schedules::new(list)
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let err = |e: &str| format!("{:#}", Schedule::parse(BackupKind::Full, e).unwrap_err());
        assert!(
            err("0 3 * *").contains("has 4 fields, not the five"),
            "{}",
            err("0 3 * *")
        );
        assert!(err("0 0 3 * * *").contains("has 6 fields"));
        assert!(
            err("61 3 * * *").contains("is not a cron expression"),
            "{}",
            err("61 3 * * *")
        );
        assert!(
            err("0 3 31 2 *").contains("never occurs"),
            "{}",
            err("0 3 31 2 *")
        );
        assert!(err("every day").contains("has 2 fields"));
        assert!(schedules("", "").is_empty());
    }

    #[test]
    fn the_latest_uncovered_occurrence_is_due_once() {
        let s = schedules("0 * * * *", "");
        let since = t("2030-01-01T00:00:30Z");
        let at = t("2030-01-01T02:00:10Z");
        let due = s.due(at, since, &[]).unwrap();
        assert_eq!(due.kind, BackupKind::Full);
        // The latest occurrence only: 01:00 is not taken late as well.
        assert_eq!(due.occurrence, t("2030-01-01T02:00:00Z"));
        let taken = [scheduled(
            "a",
            BackupKind::Full,
            "2030-01-01T02:00:00Z",
            true,
        )];
        assert_eq!(s.due(at, since, &taken), None);
        assert_eq!(s.due(t("2030-01-01T02:59:59Z"), since, &taken), None);
        // A failed attempt covers its occurrence: the next one retries.
        let failed = [scheduled(
            "a",
            BackupKind::Full,
            "2030-01-01T02:00:00Z",
            false,
        )];
        assert_eq!(s.due(at, since, &failed), None);
        assert!(s.due(t("2030-01-01T03:00:00Z"), since, &failed).is_some());
        // A manual backup covers nothing: the schedule still wants its own.
        let manual = [record("m", BackupKind::Full, true)];
        assert!(s.due(at, since, &manual).is_some());
    }

    #[test]
    fn nothing_before_the_schedule_was_set_or_older_than_a_day() {
        let s = schedules("0 3 * * *", "");
        assert_eq!(
            s.due(t("2030-01-01T12:00:00Z"), t("2030-01-01T11:00:00Z"), &[]),
            None
        );
        let due = s.due(t("2030-01-02T03:00:00Z"), t("2030-01-01T11:00:00Z"), &[]);
        assert_eq!(due.unwrap().occurrence, t("2030-01-02T03:00:00Z"));
        // Down for a week: one backup when back, for the last occurrence.
        let due = s.due(t("2030-01-08T04:10:00Z"), t("2030-01-01T11:00:00Z"), &[]);
        assert_eq!(due.unwrap().occurrence, t("2030-01-08T03:00:00Z"));
        // More than a day since the last occurrence: none is due.
        let weekly = schedules("0 3 * * 1", "");
        assert_eq!(
            weekly.due(t("2030-01-09T03:00:00Z"), t("2029-12-01T00:00:00Z"), &[]),
            None
        );
    }

    #[test]
    fn a_stronger_kind_wins_and_covers_the_weaker() {
        let s = schedules("*/3 * * * *", "* * * * *");
        let since = t("2030-01-01T00:00:00Z");
        let at = t("2030-01-01T00:03:00Z");
        assert_eq!(
            s.due(at, since, &[]),
            Some(Due {
                kind: BackupKind::Full,
                occurrence: at
            })
        );
        let full = [scheduled(
            "f",
            BackupKind::Full,
            "2030-01-01T00:03:00Z",
            true,
        )];
        assert_eq!(s.due(at, since, &full), None);
        let next = t("2030-01-01T00:04:00Z");
        assert_eq!(
            s.due(next, since, &full),
            Some(Due {
                kind: BackupKind::Incremental,
                occurrence: next
            })
        );
        // An incremental never covers a full backup's occurrence.
        let incr = [scheduled(
            "i",
            BackupKind::Incremental,
            "2030-01-01T00:03:00Z",
            true,
        )];
        assert_eq!(s.due(at, since, &incr).unwrap().kind, BackupKind::Full);
        assert_eq!(s.describe(), "full=*/3 * * * *; incremental=* * * * *");
    }
}
