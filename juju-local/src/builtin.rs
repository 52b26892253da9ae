//! Built-in stand-in charms (`deploy s3-integrator`, `deploy
//! self-signed-certificates`) will live here: charms that need no charm
//! directory and speak their real relation interfaces. Not built yet;
//! `deploy` refuses those names until they are.
