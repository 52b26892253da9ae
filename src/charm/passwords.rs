//! The system users and their passwords: generated with the OS's CSPRNG,
//! kept in one app-owned Juju secret whose URI lives in the peer app bag.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::Rng;

use super::peers::{PeerAppData, Peers};
use crate::juju::{Fields, HookTools, SecretRead};

/// The label of the secret, as the owner knows it.
pub const SECRET_LABEL: &str = "system-users";
/// Length of a generated password: 32 characters of 62, about 190 bits.
pub const GENERATED_LENGTH: usize = 32;
/// The longest password `set-password` accepts.
pub const MAX_LENGTH: usize = 256;

/// The users the charm creates and manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemUser {
    Operator,
    Replication,
    Rewind,
    Monitoring,
    Backup,
}

impl SystemUser {
    pub const ALL: [Self; 5] = [
        Self::Operator,
        Self::Replication,
        Self::Rewind,
        Self::Monitoring,
        Self::Backup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Replication => "replication",
            Self::Rewind => "rewind",
            Self::Monitoring => "monitoring",
            Self::Backup => "backup",
        }
    }

    /// The key of this user's password in the secret.
    fn secret_key(self) -> String {
        format!("{}-password", self.as_str())
    }
}

impl fmt::Display for SystemUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SystemUser {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match Self::ALL.into_iter().find(|u| u.as_str() == s) {
            Some(user) => Ok(user),
            None => {
                let all: Vec<&str> = Self::ALL.iter().map(|u| u.as_str()).collect();
                bail!(
                    "The action can be run only for users used by the charm: {} not {s}",
                    all.join(", ")
                )
            }
        }
    }
}

/// A new password from the OS's CSPRNG.
pub fn generate() -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(GENERATED_LENGTH)
        .map(char::from)
        .collect()
}

/// Checks a password a user asked for; the message says what to change.
pub fn validate(password: &str) -> Result<()> {
    if password.is_empty() {
        bail!("the password is empty: give a password, or leave the parameter out to generate one");
    }
    let length = password.chars().count();
    if length > MAX_LENGTH {
        bail!("the password is {length} characters long: at most {MAX_LENGTH} are accepted");
    }
    if password.chars().any(char::is_control) {
        bail!("the password contains control characters (such as a newline): use printable characters only");
    }
    Ok(())
}

/// The system users' passwords, as one revision of the secret holds them.
#[derive(Clone)]
pub struct Passwords(Fields);

impl Passwords {
    pub fn get(&self, user: SystemUser) -> Result<&str> {
        self.0
            .get(&user.secret_key())
            .map(String::as_str)
            .with_context(|| format!("the secret of the system users has no password for {user}"))
    }
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passwords(..)")
    }
}

/// On the leader: makes sure the secret exists with a password for every
/// system user, and that the peer app bag points at it.
pub fn ensure(tools: &dyn HookTools, peers: &mut Peers) -> Result<Passwords> {
    let Some(id) = peers.app_data.system_users_secret.clone() else {
        let content: Fields = SystemUser::ALL
            .iter()
            .map(|u| (u.secret_key(), generate()))
            .collect();
        let id = tools
            .secret_add(Some(SECRET_LABEL), &content)
            .context("cannot create the secret for the system users' passwords")?;
        tracing::info!("generated the system users' passwords");
        let data = PeerAppData {
            system_users_secret: Some(id),
            ..peers.app_data.clone()
        };
        peers.save_app_data(tools, data)?;
        return Ok(Passwords(content));
    };
    let mut content = read_all(tools, &id)?;
    let missing: Vec<String> = SystemUser::ALL
        .iter()
        .map(|u| u.secret_key())
        .filter(|k| !content.contains_key(k))
        .collect();
    if !missing.is_empty() {
        for key in missing {
            content.insert(key, generate());
        }
        tools
            .secret_set(&id, &content)
            .context("cannot add the missing passwords to the secret")?;
    }
    Ok(Passwords(content))
}

/// The passwords, from the latest revision of the secret.
pub fn load(tools: &dyn HookTools, app_data: &PeerAppData) -> Result<Passwords> {
    let Some(id) = &app_data.system_users_secret else {
        bail!("the system users' passwords are not generated yet: the leader generates them when it is elected; try again in a moment");
    };
    read_all(tools, id).map(Passwords)
}

/// Replaces one user's password in the secret (leader only); returns the
/// passwords as they now are.
pub fn set(
    tools: &dyn HookTools,
    app_data: &PeerAppData,
    user: SystemUser,
    password: &str,
) -> Result<Passwords> {
    let Some(id) = &app_data.system_users_secret else {
        bail!("the system users' passwords are not generated yet: try again once the leader has settled");
    };
    let mut content = read_all(tools, id)?;
    content.insert(user.secret_key(), password.to_owned());
    tools
        .secret_set(id, &content)
        .with_context(|| format!("cannot store the new password of {user}"))?;
    Ok(Passwords(content))
}

fn read_all(tools: &dyn HookTools, id: &str) -> Result<Fields> {
    tools
        .secret_get(Some(id), None, SecretRead::Refresh)
        .context("cannot read the secret of the system users' passwords")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_alphanumeric_and_distinct() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), GENERATED_LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn unknown_users_get_the_anchor_message() {
        assert_eq!("rewind".parse::<SystemUser>().unwrap(), SystemUser::Rewind);
        let err = "postgres".parse::<SystemUser>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "The action can be run only for users used by the charm: operator, replication, rewind, monitoring, backup not postgres"
        );
    }

    #[test]
    fn the_leader_creates_the_secret_once_and_the_bag_points_at_it() {
        use crate::actions::testing::context;
        use crate::juju::fake::FakeTools;

        let tools = FakeTools::new("postgresql/0", true);
        tools.add_relation("database-peers:0", "postgresql", &[]);
        let ctx = context("postgresql/0", "get-password");
        let mut peers = Peers::load(&tools, &ctx).unwrap().unwrap();
        let first = ensure(&tools, &mut peers).unwrap();
        let mut peers = Peers::load(&tools, &ctx).unwrap().unwrap();
        let second = ensure(&tools, &mut peers).unwrap();

        assert_eq!(
            tools.state.borrow().secrets.len(),
            1,
            "a second run adds no secret"
        );
        assert!(peers.app_data.system_users_secret.is_some());
        for user in SystemUser::ALL {
            assert!(first.get(user).unwrap().len() >= 32);
            assert_eq!(first.get(user).unwrap(), second.get(user).unwrap());
        }
        assert_eq!(
            format!("{first:?}"),
            "Passwords(..)",
            "Debug never shows a password"
        );
    }

    #[test]
    fn refuses_empty_long_and_control_passwords() {
        assert!(validate("correct horse battery staple").is_ok());
        assert!(validate("").unwrap_err().to_string().contains("empty"));
        assert!(validate(&"x".repeat(MAX_LENGTH + 1))
            .unwrap_err()
            .to_string()
            .contains("at most"));
        assert!(validate("a\nb")
            .unwrap_err()
            .to_string()
            .contains("control"));
    }
}
