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
    let env: HashMap<String, String> = std::env::vars().collect();
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

    charm::run(&ctx, &ProcessTools)
}
