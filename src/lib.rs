//! The PostgreSQL charm, as a library the `postgresql-charm` binary runs.
//!
//! - [`juju`]: the hook context, the hook tools behind one trait, typed databags,
//!   actions, tracing to `juju-log`. Knows nothing of PostgreSQL.
//! - [`charm`]: events → handlers; typed peer state; status; the reconcile step;
//!   the one place that turns a handler's result into an exit code, a status or
//!   an action failure.
//! - [`actions`]: one module per action, each `run()` a narrated list of steps.
//! - [`postgres`]: the workload: binaries, the server and its files, rendered
//!   configuration, the OS user it runs as, SQL. Knows nothing of Juju.

pub mod actions;
pub mod backup;
pub mod charm;
pub mod juju;
pub mod postgres;
