//! `resolve` (clear a unit's hook error, retrying the hook or not) and
//! `destroy-model` (tear every unit down, kill what is left running in the
//! model's directories, free the address octet, remove the directory).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::{parse, report};
use crate::flags::{Kind, Spec};
use crate::model::ModelDir;
use crate::queue::{self, QueuedHook};

pub fn resolve(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(&Spec::new().flag(&["no-retry"], Kind::Bool), args)?;
    let unit = p.args.first().context("no unit specified")?.clone();
    let md = ModelDir::open(dir, false)?;
    let mut model = md.load()?;
    let u = model.unit_mut(&unit)?;
    if u.agent != "error" {
        bail!("unit {unit:?} is not in an error state");
    }
    u.agent = "idle".into();
    u.agent_message.clear();
    if p.on("no-retry") {
        if let Some(i) = model.queue.iter().position(|h| h.unit == unit) {
            let h = model.queue.remove(i);
            // The hook's membership meaning still holds when it is skipped.
            if h.is_relation("broken")
                || (h.name == "remove" && model.units.get(&unit).is_some_and(|u| u.dying))
            {
                model.queue.insert(i, h);
            }
        }
    }
    md.save(&model)?;
    let errors = crate::settle::settle(&md, &mut model)?;
    Ok(report(&errors))
}

/// Hooks that tear a unit down at model destruction (no departed hooks).
fn teardown(model: &crate::model::Model, unit: &str) -> Vec<QueuedHook> {
    queue::unit_teardown(model, unit)
        .into_iter()
        .filter(|h| h.unit == unit && !h.is_relation("departed"))
        .collect()
}

pub fn destroy(dir: &Path, args: &[String]) -> Result<i32> {
    let p = parse(
        &Spec::new()
            .flag(&["force"], Kind::Bool)
            .flag(&["no-prompt", "y"], Kind::Bool),
        args,
    )?;
    let force = p.on("force");
    let md = ModelDir::open(dir, false)?;
    let mut model = md.load()?;
    model.queue.clear();
    let units: Vec<String> = model.units.keys().cloned().collect();
    for u in &units {
        if let Some(x) = model.units.get_mut(u) {
            x.agent = "idle".into();
        }
        for h in teardown(&model, u) {
            model.queue.push(h);
        }
        if let Some(x) = model.units.get_mut(u) {
            x.dying = true;
        }
    }
    md.save(&model)?;
    let mut errors = Vec::new();
    while !model.queue.is_empty() {
        let h = model.queue.remove(0);
        if !model.units.contains_key(&h.unit) {
            continue;
        }
        let o = crate::settle::run_hook(&md, &mut model, h.clone())?;
        if let Some(e) = o.error {
            if !force {
                md.save(&model)?;
                eprintln!("ERROR {e}");
                bail!("cannot destroy the model: a teardown hook failed (use --force to ignore)");
            }
            errors.push(e);
            // Drop the failed hook and go on as if it had run.
            model.queue.retain(|q| *q != h);
            if let Some(u) = model.units.get_mut(&h.unit) {
                u.agent = "idle".into();
            }
            if h.name == "remove" {
                crate::settle::remove_unit(&md, &mut model, &h.unit);
            }
        }
        // Units being destroyed elect no new leader.
        model.queue.retain(|q| q.name != "leader-elected");
        md.save(&model)?;
    }
    for e in &errors {
        eprintln!("WARNING ignored: {e}");
    }
    super::s3::stop(&model);
    kill_leftovers(&md.root);
    crate::net::release(model.octet);
    std::fs::remove_dir_all(&md.root)
        .with_context(|| format!("cannot remove {}", md.root.display()))?;
    Ok(0)
}

/// Processes whose working directory or command line is inside `root`.
fn leftovers(root: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let root_s = root.display().to_string();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cwd = std::fs::read_link(e.path().join("cwd")).ok();
        let inside = cwd.is_some_and(|c| c.starts_with(root));
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if inside || cmd.contains(&root_s) {
            out.push(pid);
        }
    }
    out
}

/// SIGTERM what the model left running, then SIGKILL what is still there after 10 s.
fn kill_leftovers(root: &Path) {
    let pids = leftovers(root);
    for pid in &pids {
        // SAFETY: sending a signal to a pid has no memory-safety preconditions.
        unsafe { libc::kill(*pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !leftovers(root).is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in leftovers(root) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
