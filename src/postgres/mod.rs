//! The workload: PostgreSQL's programs, one unit's server and its files, the
//! configuration the charm renders, the OS user it runs as, `pg_rewind`, and
//! the SQL the charm runs. Nothing here knows about Juju.

pub mod binaries;
pub mod conf;
pub mod os_user;
pub mod recovery;
pub mod rewind;
pub mod roles;
pub mod server;
pub mod sql;
