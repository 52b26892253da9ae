//! The charm binary that Juju's dispatch runs for every hook and action.

fn main() {}
