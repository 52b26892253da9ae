//! `clock`: the model's time, for charms that act on time (backup
//! schedules). By default a model runs on the machine's clock and the units'
//! own timers call `juju-exec` as on a Juju machine. `clock set` drives the
//! clock instead: the units' `juju-exec` calls are refused from then on, and
//! `clock advance` moves the time minute by minute, running a command in
//! each unit's hook context at each minute with `{time}` in its arguments
//! replaced by that minute (RFC 3339, UTC). `clock real` goes back.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::exec::run_in;
use crate::model::ModelDir;
use crate::queue::QueuedHook;

const USAGE: &str =
    "usage: clock [set <RFC 3339 time> | real | advance <N>m <app> -- <command> [args ...]]";

pub fn clock(dir: &Path, args: &[String]) -> Result<i32> {
    let md = ModelDir::open(dir, false)?;
    let mut model = md.load()?;
    match args {
        [] => {
            println!("{}", model.clock.as_deref().unwrap_or("real"));
            Ok(0)
        }
        [cmd, time] if cmd == "set" => {
            let time = parse(time)?;
            model.clock = Some(format(time));
            md.save(&model)?;
            Ok(0)
        }
        [cmd] if cmd == "real" => {
            model.clock = None;
            md.save(&model)?;
            Ok(0)
        }
        [cmd, minutes, app, dashes, command @ ..]
            if cmd == "advance" && dashes == "--" && !command.is_empty() =>
        {
            let minutes: u32 = minutes
                .strip_suffix('m')
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .with_context(|| {
                    format!("invalid duration {minutes:?}: give whole minutes, e.g. 3m")
                })?;
            let Some(now) = model.clock.as_deref() else {
                bail!("the model's clock is not driven: `juju-local clock set <time>` first");
            };
            let mut now = parse(now)?;
            model.app(app)?;
            let mut failed = 0;
            for _ in 0..minutes {
                now += Duration::minutes(1);
                model.clock = Some(format(now));
                md.save(&model)?;
                for unit in model.units_of(app) {
                    let at = format(now);
                    let argv: Vec<String> =
                        command.iter().map(|a| a.replace("{time}", &at)).collect();
                    let code = run_in(&md, &mut model, QueuedHook::simple(&unit, ""), argv)?;
                    println!("{at} {unit}: exit {code}");
                    if code != 0 {
                        failed = code;
                    }
                }
            }
            Ok(failed)
        }
        _ => bail!("{USAGE}"),
    }
}

fn parse(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("invalid time {text:?}: give RFC 3339, e.g. 2030-01-01T00:00:00Z"))
}

fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
