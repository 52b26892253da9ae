//! The s3-integrator stand-in (not built yet: `deploy` refuses it).

use anyhow::{bail, Result};

use super::hookenv::Env;

pub fn hook(_env: &mut Env) -> Result<()> {
    bail!("the s3-integrator stand-in is not available yet")
}

pub fn action(_env: &mut Env, _name: &str) -> Result<()> {
    bail!("the s3-integrator stand-in is not available yet")
}
