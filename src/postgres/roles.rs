//! The system roles: what each may do, and setting one (created or altered)
//! from a password, with its grants.

use anyhow::{Context as _, Result};

use super::sql::Db;

/// A system role's attributes and the grants it needs.
pub struct RoleSpec {
    pub name: &'static str,
    pub attributes: &'static str,
    pub grants: &'static [&'static str],
}

/// The roles the charm manages, `operator` first (initdb creates it).
pub const ROLES: [RoleSpec; 5] = [
    RoleSpec { name: "operator", attributes: "SUPERUSER LOGIN", grants: &[] },
    RoleSpec { name: "replication", attributes: "LOGIN REPLICATION", grants: &[] },
    RoleSpec {
        name: "rewind",
        attributes: "LOGIN",
        // What pg_rewind needs of a source server, per its documentation.
        grants: &[
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO rewind",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO rewind",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO rewind",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO rewind",
        ],
    },
    RoleSpec { name: "monitoring", attributes: "LOGIN", grants: &["GRANT pg_monitor TO monitoring"] },
    RoleSpec {
        name: "backup",
        attributes: "LOGIN REPLICATION",
        grants: &[
            "GRANT pg_monitor TO backup",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_backup_start(text, boolean) TO backup",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_backup_stop(boolean) TO backup",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO backup",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_create_restore_point(text) TO backup",
        ],
    },
];

/// The spec of a role by name.
pub fn spec(name: &str) -> Result<&'static RoleSpec> {
    ROLES
        .iter()
        .find(|r| r.name == name)
        .with_context(|| format!("{name} is not a system role"))
}

/// Creates or updates the role with this password, then its grants.
pub fn apply(db: &Db, name: &str, password: &str) -> Result<()> {
    let spec = spec(name)?;
    db.set_role(spec.name, spec.attributes, password)?;
    for grant in spec.grants {
        db.execute(grant)
            .with_context(|| format!("cannot grant {name} what it needs"))?;
    }
    Ok(())
}
