//! The Juju layer: the hook context, the hook tools behind one trait, typed
//! databags, action plumbing and tracing to `juju-log`. Nothing here knows
//! about PostgreSQL.

pub mod action;
pub mod context;
pub mod databag;
#[cfg(test)]
pub mod fake;
pub mod log;
pub mod process;
pub mod tools;

pub use context::Context;
pub use process::ProcessTools;
pub use tools::{
    Bag, Fields, HookTools, LogLevel, RelationId, SecretRead, Status, StatusKind, ToolError,
};
