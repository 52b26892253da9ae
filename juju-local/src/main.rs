//! juju-local: a Juju model on one machine (see docs/juju-local.md).

fn main() {
    eprintln!("ERROR juju-local is not built yet");
    std::process::exit(1);
}
