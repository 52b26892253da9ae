//! The charm binary that Juju's `dispatch` runs for every hook and action:
//! read the Juju context, route tracing to `juju-log`, run, exit.

use std::collections::HashMap;
use std::process::ExitCode;

use postgresql_charm::charm;
use postgresql_charm::juju::log::JujuLogLayer;
use postgresql_charm::juju::{Context, ProcessTools};
use tracing_subscriber::layer::SubscriberExt;

fn main() -> ExitCode {
    // archive_command and restore_command: no Juju context, no juju-log.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = postgresql_charm::backup::archive_cli::dispatch(&args) {
        return code;
    }
    // The trash's detached deleter: no Juju context either.
    if let Some(code) = charm::trash::dispatch(&args) {
        return code;
    }
    // The backup timer: no Juju context; it has Juju run the ticks.
    if let Some(code) = charm::timer::dispatch(&args) {
        return code;
    }
    let mut env: HashMap<String, String> = std::env::vars().collect();
    // The backup timer's tick, which Juju runs through juju-exec: a hook
    // context without a dispatch path.
    let tick = match charm::timer::tick_args(&args) {
        Some(Ok(at)) => Some(at),
        Some(Err(err)) => {
            eprintln!("ERROR {err:#}");
            return ExitCode::from(2);
        }
        None => None,
    };
    if tick.is_some() {
        env.entry("JUJU_DISPATCH_PATH".into())
            .or_insert_with(|| charm::timer::TICK.into());
    }
    let ctx = match Context::from_env(&env) {
        Ok(ctx) => ctx,
        Err(err) => {
            eprintln!("ERROR {err:#}");
            return ExitCode::from(2);
        }
    };
    let subscriber =
        tracing_subscriber::registry().with(JujuLogLayer::new(ProcessTools, tracing::Level::INFO));
    // Only fails if a subscriber is already set, which nothing here does.
    let _ = tracing::subscriber::set_global_default(subscriber);

    match tick {
        Some(at) => charm::tick(&ctx, &ProcessTools, at),
        None => charm::run(&ctx, &ProcessTools),
    }
}
