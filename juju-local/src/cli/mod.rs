//! The `juju-local` command line: global `--model DIR`, one function per
//! command (see docs/juju-local.md), and turning a settle's hook failures
//! into `ERROR hook "<name>" failed on <unit>: exit status N` and exit 1.

mod action;
mod clock;
mod deploy;
mod destroy;
mod exec;
mod s3;
mod secret;
mod status;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::flags::{self, Parsed, Spec};
use crate::model::{Model, ModelDir};

const USAGE: &str = "usage: juju-local [--model DIR] <command> [args]

commands:
  deploy <charm-dir, .charm, self-signed-certificates or s3-integrator> [app] [-n N] [--config k=v ...]
  add-unit <app> [-n N]
  remove-unit <app>/<n> ...
  config <app> [k=v ...] [--reset k]
  integrate <app>[:<ep>] <app>[:<ep>]
  remove-relation <app>[:<ep>] <app>[:<ep>]
  run <unit or app/leader> <action> [k=v ...] [--params FILE] [--string-args] [--format plain|yaml|json]
  exec --unit <unit> [--relation <ep>:<id>] [--remote-unit <unit>] [--remote-app <app>] [--] <cmd> [args ...]
  run-hook <unit or app> <hook> [--repeat N] [--timings]
  status [--format tabular|json|yaml]
  debug-log [--replay] [--include <unit>] [--level LEVEL] [--lines N]
  resolve <unit> [--no-retry]
  destroy-model [--force]
  s3-server [--dir D] [--address 127.0.0.1:0] [--access-key K --secret-key S] [--bucket B ...]
  s3-server stop|start
  clock [set <time> | real | advance <N>m <app> -- <cmd> [args ... {time} ...]]
  add-secret <name> [--info TEXT] k=v ...
  update-secret <name or uri> k=v ...
  grant-secret <name or uri> <app>[,<app>...]
  revoke-secret <name or uri> <app>[,<app>...]
  remove-secret <name or uri>
";

/// Runs the CLI; returns the process exit code.
pub fn main(args: Vec<String>) -> i32 {
    match dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("ERROR {msg}");
            1
        }
    }
}

/// The model directory: `--model`, `$JUJU_LOCAL_MODEL`, then the default.
fn default_model() -> PathBuf {
    if let Ok(m) = std::env::var("JUJU_LOCAL_MODEL") {
        if !m.is_empty() {
            return PathBuf::from(m);
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/juju-local/default");
    }
    let data = std::env::var("XDG_DATA_HOME")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
                .join(".local/share")
        });
    data.join("juju-local/default")
}

/// The name a machine's processes run commands in a unit's hook context by.
pub const JUJU_EXEC: &str = "juju-exec";

/// True when started as `juju-exec` (the symlink in `<model>/bin`).
pub fn is_juju_exec(argv0: &str) -> bool {
    Path::new(argv0).file_name().and_then(|n| n.to_str()) == Some(JUJU_EXEC)
}

/// `juju-exec`: the model is the one whose `bin` holds the link it was
/// started by (found on `PATH` when started by name alone).
pub fn juju_exec(argv0: &str, args: Vec<String>) -> i32 {
    let link = if argv0.contains('/') {
        Some(PathBuf::from(argv0))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(JUJU_EXEC))
                .find(|link| link.exists())
        })
    };
    let model = link
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .filter(|model| model.join("model.json").exists());
    let result = match model {
        Some(model) => exec::juju_exec(model, &args),
        None => Err(anyhow::anyhow!(
            "cannot find the model: juju-exec runs from a model's bin directory"
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ERROR {e:#}");
            1
        }
    }
}

/// Splits `--model DIR` (anywhere before a `--`) from the rest.
fn take_model(args: Vec<String>) -> Result<(PathBuf, Vec<String>)> {
    let mut model = None;
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--" {
            rest.push(a);
            rest.extend(it.by_ref());
            break;
        }
        if a == "--model" || a == "-m" {
            match it.next() {
                Some(v) => model = Some(PathBuf::from(v)),
                None => bail!("option needs an argument: --model"),
            }
        } else if let Some(v) = a.strip_prefix("--model=") {
            model = Some(PathBuf::from(v));
        } else {
            rest.push(a);
        }
    }
    Ok((model.unwrap_or_else(default_model), rest))
}

/// Parses a command's flags.
pub fn parse(spec: &Spec, args: &[String]) -> Result<Parsed> {
    flags::parse(spec, args).map_err(|e| anyhow::anyhow!(e))
}

/// Prints hook failures from a settle; the exit code they mean.
pub fn report(errors: &[String]) -> i32 {
    for e in errors {
        eprintln!("ERROR {e}");
    }
    if errors.is_empty() {
        0
    } else {
        1
    }
}

/// Opens an existing model, loads it and settles it after `f` changed it.
pub fn with_model(
    dir: &std::path::Path,
    f: impl FnOnce(&ModelDir, &mut Model) -> Result<()>,
) -> Result<i32> {
    let md = ModelDir::open(dir, false)?;
    let mut model = md.load()?;
    f(&md, &mut model)?;
    md.save(&model)?;
    let errors = crate::settle::settle(&md, &mut model)?;
    Ok(report(&errors))
}

fn dispatch(args: Vec<String>) -> Result<i32> {
    let (dir, args) = take_model(args)?;
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(2);
    };
    let rest = rest.to_vec();
    match cmd.as_str() {
        "deploy" => deploy::deploy(&dir, &rest),
        "add-unit" => deploy::add_unit(&dir, &rest),
        "remove-unit" => deploy::remove_unit(&dir, &rest),
        "config" => deploy::config(&dir, &rest),
        "integrate" | "relate" => deploy::integrate(&dir, &rest),
        "remove-relation" => deploy::remove_relation(&dir, &rest),
        "run" => action::run(&dir, &rest),
        "exec" => exec::exec(&dir, &rest),
        "run-hook" => exec::run_hook(&dir, &rest),
        "status" => status::status(&dir, &rest),
        "debug-log" => status::debug_log(&dir, &rest),
        "resolve" | "resolved" => destroy::resolve(&dir, &rest),
        "destroy-model" => destroy::destroy(&dir, &rest),
        "s3-server" => s3::s3_server(&dir, &rest),
        "clock" => clock::clock(&dir, &rest),
        "add-secret" => secret::add(&dir, &rest),
        "update-secret" => secret::update(&dir, &rest),
        "grant-secret" => secret::grant(&dir, &rest, true),
        "revoke-secret" => secret::grant(&dir, &rest, false),
        "remove-secret" => secret::remove(&dir, &rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command {other:?}")
        }
    }
}

/// The `-n N` flag's value (default 1).
pub fn count(p: &Parsed) -> Result<u32> {
    match p.value("n") {
        None => Ok(1),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("invalid value {v:?} for option -n: must be a positive number"),
        },
    }
}
