//! The encryption key, from the secret `backup-encryption-secret` names: a
//! user secret (`juju add-secret <name> key=<64 hex digits>`, then `juju
//! grant-secret <name> <app>`), read on every unit with `secret-get` and
//! its latest revision. The key goes into the repository settings (the
//! private file the archive programs read), never into a log, a status or
//! an action's output; only its id (`cipher::KeyId`) is ever shown.
//!
//! A secret that cannot be used (not there, not granted, no `key` field,
//! not 64 hex digits) is the repository's problem, as an incomplete S3
//! relation is: the unit is blocked with what to do, no backup is taken and
//! no WAL is archived (nothing is ever written in plaintext instead), and
//! the cluster goes on serving.

use anyhow::Result;

use super::backup_options::BackupOptions;
use super::s3::S3State;
use crate::backup::cipher::Key;
use crate::juju::{Context, HookTools, SecretRead, ToolError};

/// The field of the secret that holds the key.
const FIELD: &str = "key";

/// The configured key, None without one, or what the user must fix.
pub fn load(
    ctx: &Context,
    tools: &dyn HookTools,
    options: &BackupOptions,
) -> Result<Result<Option<Key>, String>> {
    let Some(uri) = options.encryption_secret.as_deref() else {
        return Ok(Ok(None));
    };
    let content = match tools.secret_get(Some(uri), None, SecretRead::Refresh) {
        Ok(content) => content,
        Err(err) => match err.downcast_ref::<ToolError>() {
            // The secret's owner said no: the user's to fix.
            Some(refused) => {
                let reason = refused.stderr.trim().trim_start_matches("ERROR ").trim();
                return Ok(Err(format!(
                    "cannot read the secret {uri} that backup-encryption-secret names \
                     ({reason}): check it exists (juju secrets) and is granted to this \
                     application (juju grant-secret <name> {})",
                    ctx.app
                )));
            }
            None => return Err(err.context("cannot read the encryption key's secret")),
        },
    };
    let Some(text) = content.get(FIELD) else {
        return Ok(Err(format!(
            "the secret {uri} that backup-encryption-secret names has no \"{FIELD}\" field: \
             set one with juju update-secret <name> {FIELD}=$(openssl rand -hex 32)"
        )));
    };
    Ok(Key::from_hex(text).map(Some).map_err(|err| {
        format!(
            "the \"{FIELD}\" field of the secret {uri} that backup-encryption-secret names is \
             not usable: {err:#}; make one with openssl rand -hex 32"
        )
    }))
}

/// The repository settings with the config's compression and key, or the
/// relation's state made incomplete by a secret that cannot be used.
pub fn complete(
    ctx: &Context,
    tools: &dyn HookTools,
    options: &BackupOptions,
    state: S3State,
) -> Result<S3State> {
    let S3State::Ready(mut settings) = state else {
        return Ok(state);
    };
    settings.compression = options.compression;
    match load(ctx, tools, options)? {
        Ok(key) => {
            settings.encryption_key = key;
            Ok(S3State::Ready(settings))
        }
        Err(problem) => Ok(S3State::Incomplete(problem)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::testing::context;
    use crate::juju::fake::FakeTools;
    use crate::juju::Fields;

    const URI: &str = "secret:d1mq4qvmp25c77bl6ce0";
    const HEX: &str = "8f1c5e0a3b7d29f4c6e1a0b9d8c7f6e5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9";

    fn options() -> BackupOptions {
        BackupOptions::parse(
            serde_json::json!({ "backup-encryption-secret": URI })
                .as_object()
                .unwrap(),
        )
        .unwrap()
    }

    fn with_secret(fields: &[(&str, &str)]) -> FakeTools {
        let tools = FakeTools::new("postgresql/0", true);
        let content: Fields = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tools
            .state
            .borrow_mut()
            .secrets
            .insert(URI.into(), (None, content));
        tools
    }

    fn problem(tools: &FakeTools) -> String {
        load(&context("postgresql/0", "x"), tools, &options())
            .unwrap()
            .unwrap_err()
    }

    #[test]
    fn the_key_comes_from_the_secret_and_only_its_id_shows() {
        let tools = with_secret(&[("key", HEX)]);
        let key = load(&context("postgresql/0", "x"), &tools, &options())
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(key.to_hex(), HEX);
        assert!(!format!("{key:?}").contains(&HEX[..8]));
        let none = BackupOptions::parse(&Default::default()).unwrap();
        let got = load(&context("postgresql/0", "x"), &tools, &none).unwrap();
        assert_eq!(got, Ok(None));
    }

    #[test]
    fn a_secret_that_cannot_be_used_is_said_plainly_without_its_content() {
        let tools = FakeTools::new("postgresql/0", true);
        assert_eq!(
            problem(&tools),
            format!(
                "cannot read the secret {URI} that backup-encryption-secret names (secret \
                 \"{URI}\" not found): check it exists (juju secrets) and is granted to this \
                 application (juju grant-secret <name> postgresql)"
            )
        );
        let tools = with_secret(&[("password", HEX)]);
        assert_eq!(
            problem(&tools),
            format!(
                "the secret {URI} that backup-encryption-secret names has no \"key\" field: set \
                 one with juju update-secret <name> key=$(openssl rand -hex 32)"
            )
        );
        let tools = with_secret(&[("key", "not-a-key-but-a-passphrase")]);
        let text = problem(&tools);
        assert_eq!(
            text,
            format!(
                "the \"key\" field of the secret {URI} that backup-encryption-secret names is \
                 not usable: the key must be 64 hexadecimal digits (32 bytes), not 26 \
                 characters with some that are not hexadecimal; make one with openssl rand -hex \
                 32"
            )
        );
        assert!(!text.contains("passphrase"));
    }
}
