//! `exec` (a command in a unit's hook context, as `juju exec`) and
//! `run-hook` (one hook on one unit or all units of an app, optionally
//! repeated with wall-time and peak-RSS timings).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::report;
use crate::model::{Model, ModelDir};
use crate::queue::QueuedHook;
use crate::runner::{self, Output, Program};

/// exec's (flag, value) pairs and the command with its arguments.
type ExecArgs = (Vec<(String, String)>, Vec<String>);

/// Parses exec's flags up to the first positional (the command keeps its own flags).
fn exec_args(args: &[String]) -> Result<ExecArgs> {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            return Ok((flags, args[i + 1..].to_vec()));
        }
        let Some(name) = a
            .strip_prefix("--")
            .or_else(|| a.strip_prefix('-').filter(|_| a.len() > 1))
        else {
            return Ok((flags, args[i..].to_vec()));
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                i += 1;
                let v = args
                    .get(i)
                    .with_context(|| format!("option needs an argument: {a}"))?;
                (name.to_string(), v.clone())
            }
        };
        if !["unit", "u", "relation", "r", "remote-unit", "remote-app"].contains(&name.as_str()) {
            bail!("option provided but not defined: {a}");
        }
        flags.push((name, value));
        i += 1;
    }
    Ok((flags, Vec::new()))
}

pub fn exec(dir: &Path, args: &[String]) -> Result<i32> {
    let (flags, command) = exec_args(args)?;
    let get = |names: &[&str]| {
        flags
            .iter()
            .rev()
            .find(|(n, _)| names.contains(&n.as_str()))
            .map(|(_, v)| v.clone())
    };
    let unit = get(&["unit", "u"]).context("no unit specified (--unit)")?;
    if command.is_empty() {
        bail!("no command specified");
    }
    let md = ModelDir::open(dir, false)?;
    let mut model = md.load()?;
    model.unit(&unit)?;
    let mut hook = QueuedHook::simple(&unit, "");
    if let Some(r) = get(&["relation", "r"]) {
        let id: u64 = r
            .rsplit(':')
            .next()
            .and_then(|x| x.parse().ok())
            .with_context(|| format!("invalid relation id {r:?}"))?;
        let rel = model
            .relations
            .get(&id)
            .with_context(|| format!("relation {r:?} not found"))?;
        let app = crate::model::unit_app(&unit);
        if !rel.has_app(app) {
            bail!("unit {unit:?} is not in relation {r:?}");
        }
        hook.relation = Some(id);
        hook.remote_app = rel.remote_app(app);
    }
    if let Some(u) = get(&["remote-unit"]) {
        if hook.remote_app.is_none() {
            hook.remote_app = Some(crate::model::unit_app(&u).to_string());
        }
        hook.remote_unit = Some(u);
    }
    if let Some(a) = get(&["remote-app"]) {
        hook.remote_app = Some(a);
    }
    run_in(&md, &mut model, hook, command)
}

/// Runs `command` in the hook context `hook` describes, then settles; the
/// command's exit code, else settling's.
pub fn run_in(
    md: &ModelDir,
    model: &mut Model,
    hook: QueuedHook,
    command: Vec<String>,
) -> Result<i32> {
    let ctx = crate::settle::context(md, model, hook)?;
    let r = runner::run(md, ctx, Program::Command(command), Output::Inherit)?;
    let base = std::mem::take(model);
    *model = r.ctx.finish(base, r.code == 0);
    md.save(model)?;
    let errors = crate::settle::settle(md, model)?;
    let settled = report(&errors);
    Ok(if r.code != 0 { r.code } else { settled })
}

/// `juju-exec [-u] <unit> <command> [args ...]`, as a machine's processes
/// run it (the charm's own timers): refused while the model's clock is
/// driven, as `juju-local clock advance` stands in for the machine's time.
pub fn juju_exec(dir: &Path, args: &[String]) -> Result<i32> {
    let (unit, command) = match args {
        [flag, unit, command @ ..] if flag == "-u" => (unit, command),
        [unit, command @ ..] if !unit.starts_with('-') => (unit, command),
        _ => bail!("usage: juju-exec [-u] <unit-name> <commands>"),
    };
    if command.is_empty() {
        bail!("no commands specified");
    }
    let md = ModelDir::open(dir, false)?;
    let mut model = md.load()?;
    if let Some(clock) = &model.clock {
        bail!(
            "the model's clock is driven (at {clock}): commands run at its times through \
             `juju-local clock advance`, not from the units' own timers"
        );
    }
    model.unit(unit)?;
    run_in(
        &md,
        &mut model,
        QueuedHook::simple(unit, ""),
        command.to_vec(),
    )
}

/// Units named by `target`: a unit, or every unit of an app.
fn targets(model: &Model, target: &str) -> Result<Vec<String>> {
    if target.contains('/') {
        model.unit(target)?;
        return Ok(vec![target.to_string()]);
    }
    model.app(target)?;
    Ok(model.units_of(target))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run_hook(dir: &Path, args: &[String]) -> Result<i32> {
    let spec = crate::flags::Spec::new()
        .flag(&["repeat"], crate::flags::Kind::Value)
        .flag(&["timings"], crate::flags::Kind::Bool);
    let p = super::parse(&spec, args)?;
    let [target, hook] = p.args.as_slice() else {
        bail!("usage: run-hook <unit or app> <hook> [--repeat N] [--timings]");
    };
    let repeat: u32 = match p.value("repeat") {
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("invalid value {v:?} for option --repeat"))?,
        None => 1,
    };
    let md = ModelDir::open(dir, false)?;
    let mut model = md.load()?;
    let mut errors = crate::settle::settle(&md, &mut model)?;
    let units = targets(&model, target)?;
    for unit in &units {
        let mut runs: Vec<(Duration, i64)> = Vec::new();
        for i in 0..repeat {
            let o = crate::settle::run_hook(&md, &mut model, QueuedHook::simple(unit, hook))?;
            md.save(&model)?;
            if p.on("timings") {
                println!(
                    "{hook} on {unit}: run {}: wall {:.1} ms, peak rss {:.1} MiB, exit {}",
                    i + 1,
                    ms(o.wall),
                    o.max_rss_kib as f64 / 1024.0,
                    o.code
                );
            }
            runs.push((o.wall, o.max_rss_kib));
            if let Some(e) = o.error {
                errors.push(e);
                break;
            }
            errors.extend(crate::settle::settle(&md, &mut model)?);
        }
        if p.on("timings") && !runs.is_empty() {
            let mut walls: Vec<f64> = runs.iter().map(|(w, _)| ms(*w)).collect();
            walls.sort_by(|a, b| a.total_cmp(b));
            let n = walls.len();
            let median = if n % 2 == 1 {
                walls[n / 2]
            } else {
                (walls[n / 2 - 1] + walls[n / 2]) / 2.0
            };
            let rss = runs.iter().map(|(_, r)| *r).max().unwrap_or(0) as f64 / 1024.0;
            println!(
                "{hook} on {unit}: {n} runs, wall median {median:.1} ms (min {:.1}, max {:.1}), peak rss max {rss:.1} MiB",
                walls[0],
                walls[n - 1]
            );
        }
    }
    Ok(report(&errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_flags_stop_at_command() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (f, c) = exec_args(&s(&["--unit", "a/0", "sh", "-c", "x"])).unwrap();
        assert_eq!(f, [("unit".to_string(), "a/0".to_string())]);
        assert_eq!(c, ["sh", "-c", "x"]);
        let (f, c) = exec_args(&s(&["--unit=a/0", "--relation", "db:1", "--", "-x"])).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(c, ["-x"]);
        assert!(exec_args(&s(&["--bogus", "x"])).is_err());
    }
}
