//! Built-in stand-in charms: `deploy self-signed-certificates` and `deploy
//! s3-integrator` need no charm directory. Their metadata, config and
//! actions are embedded and written out as the app's charm directory, so
//! that integrate, config and run validate against them as for any charm;
//! their hooks and actions run inside juju-local (no dispatch process),
//! calling the same hook tools a charm would, so that bags and secrets
//! commit, and hooks fire on the other side, exactly as for a real charm.

mod certificates;
mod hookenv;
mod pki;
mod s3_integrator;

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::context::HookContext;
use crate::model::{Model, ModelDir};
use crate::runner::RunResult;

pub use hookenv::Env;

/// The names `deploy` takes as built-ins.
pub const NAMES: &[&str] = &["self-signed-certificates", "s3-integrator"];

/// A built-in charm's files: (metadata.yaml, config.yaml, actions.yaml).
fn files(name: &str) -> Option<[(&'static str, &'static str); 3]> {
    macro_rules! charm {
        ($dir:literal) => {
            [
                (
                    "metadata.yaml",
                    include_str!(concat!("charms/", $dir, "/metadata.yaml")),
                ),
                (
                    "config.yaml",
                    include_str!(concat!("charms/", $dir, "/config.yaml")),
                ),
                (
                    "actions.yaml",
                    include_str!(concat!("charms/", $dir, "/actions.yaml")),
                ),
            ]
        };
    }
    match name {
        "self-signed-certificates" => Some(charm!("self-signed-certificates")),
        "s3-integrator" => Some(charm!("s3-integrator")),
        _ => None,
    }
}

/// True when `deploy <arg>` means a built-in: one of [`NAMES`] that is not a path.
pub fn is_builtin_arg(arg: &str) -> bool {
    NAMES.contains(&arg) && !Path::new(arg).exists()
}

/// Writes the built-in charm `name` as a charm directory at `dest`.
pub fn write_charm(name: &str, dest: &Path) -> Result<()> {
    let files = files(name).with_context(|| format!("no built-in charm {name:?}"))?;
    crate::fsutil::create_dir_shared(dest)?;
    for (file, text) in files {
        let p = dest.join(file);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// The built-in charm a unit runs, if it is one.
pub fn of_unit(model: &Model, unit: &str) -> Option<String> {
    let app = crate::model::unit_app(unit);
    model.apps.get(app).and_then(|a| a.builtin.clone())
}

/// Runs the hook or action of `ctx` for built-in `name`, as dispatch would:
/// exit 0 on success, 1 with the error on stderr otherwise.
pub fn run(md: &ModelDir, mut ctx: HookContext, name: &str) -> RunResult {
    let start = Instant::now();
    let dir = md.unit_dir(&ctx.unit).join("charm").display().to_string();
    let action = ctx.action.as_ref().map(|a| a.name.clone());
    let result = {
        let mut env = Env::new(&mut ctx, dir);
        dispatch(&mut env, name, action.as_deref())
    };
    let (code, stderr) = match result {
        Ok(()) => (0, String::new()),
        Err(e) => (1, format!("ERROR {e:#}\n")),
    };
    RunResult {
        ctx,
        code,
        wall: start.elapsed(),
        max_rss_kib: 0,
        stdout: String::new(),
        stderr,
    }
}

fn dispatch(env: &mut Env, name: &str, action: Option<&str>) -> Result<()> {
    match (name, action) {
        ("self-signed-certificates", None) => certificates::hook(env),
        ("self-signed-certificates", Some(a)) => certificates::action(env, a),
        ("s3-integrator", None) => s3_integrator::hook(env),
        ("s3-integrator", Some(a)) => s3_integrator::action(env, a),
        _ => bail!("no built-in charm {name:?}"),
    }
}
