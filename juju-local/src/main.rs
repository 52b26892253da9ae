//! juju-local: a Juju model on one machine (see docs/juju-local.md).
//!
//! One multi-call binary: started under a hook tool's name (through the
//! symlinks in `<model>/bin`) it is the tool client and does nothing else;
//! otherwise it is the `juju-local` command line.

mod builtin;
mod charm;
mod charmzip;
mod cli;
mod client;
mod context;
mod debuglog;
mod flags;
mod format;
mod fsutil;
mod model;
mod net;
mod queue;
mod runner;
mod s3server;
mod schema;
mod settle;
mod tools;

fn main() {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    if let Some(tool) = client::tool_name(&argv0) {
        std::process::exit(client::run(tool, args.collect()));
    }
    if cli::is_juju_exec(&argv0) {
        std::process::exit(cli::juju_exec(&argv0, args.collect()));
    }
    std::process::exit(cli::main(args.collect()));
}
