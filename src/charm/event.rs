//! What Juju asked for: `JUJU_DISPATCH_PATH` turned into an event.

use std::fmt;

/// The charm's relation endpoints, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `database-peers`: the cluster's own units.
    Peers,
    /// `s3-parameters`: the object store for backups.
    S3,
    /// `certificates`: TLS certificates.
    Certificates,
    Other(String),
}

/// The endpoint names, as metadata.yaml declares them.
pub const PEERS_ENDPOINT: &str = "database-peers";
pub const S3_ENDPOINT: &str = "s3-parameters";
pub const CERTIFICATES_ENDPOINT: &str = "certificates";

impl Endpoint {
    fn parse(name: &str) -> Self {
        match name {
            PEERS_ENDPOINT => Self::Peers,
            S3_ENDPOINT => Self::S3,
            CERTIFICATES_ENDPOINT => Self::Certificates,
            other => Self::Other(other.to_owned()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationEvent {
    Created,
    Joined,
    Changed,
    Departed,
    Broken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretEvent {
    Changed,
    Rotate,
    Expired,
    Remove,
}

/// The charm's actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateBackup,
    ListBackups,
    DeleteBackup,
    ExpireBackups,
    VerifyBackup,
    Restore,
    GetPrimary,
    PromoteToPrimary,
    GetPassword,
    SetPassword,
    Unknown(String),
}

/// One hook or action run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Install,
    Start,
    Stop,
    Remove,
    ConfigChanged,
    UpgradeCharm,
    UpdateStatus,
    LeaderElected,
    LeaderSettingsChanged,
    Relation(Endpoint, RelationEvent),
    Secret(SecretEvent),
    StorageAttached(String),
    StorageDetaching(String),
    Action(Action),
    Unknown(String),
}

impl Event {
    /// Reads `hooks/<name>` or `actions/<name>`.
    pub fn from_dispatch_path(path: &str) -> Self {
        if let Some(name) = path.strip_prefix("actions/") {
            return Self::Action(match name {
                "create-backup" => Action::CreateBackup,
                "list-backups" => Action::ListBackups,
                "delete-backup" => Action::DeleteBackup,
                "expire-backups" => Action::ExpireBackups,
                "verify-backup" => Action::VerifyBackup,
                "restore" => Action::Restore,
                "get-primary" => Action::GetPrimary,
                "promote-to-primary" => Action::PromoteToPrimary,
                "get-password" => Action::GetPassword,
                "set-password" => Action::SetPassword,
                other => Action::Unknown(other.to_owned()),
            });
        }
        let name = path.strip_prefix("hooks/").unwrap_or(path);
        match name {
            "install" => Self::Install,
            "start" => Self::Start,
            "stop" => Self::Stop,
            "remove" => Self::Remove,
            "config-changed" => Self::ConfigChanged,
            "upgrade-charm" => Self::UpgradeCharm,
            "update-status" => Self::UpdateStatus,
            "leader-elected" => Self::LeaderElected,
            "leader-settings-changed" => Self::LeaderSettingsChanged,
            "secret-changed" => Self::Secret(SecretEvent::Changed),
            "secret-rotate" => Self::Secret(SecretEvent::Rotate),
            "secret-expired" => Self::Secret(SecretEvent::Expired),
            "secret-remove" => Self::Secret(SecretEvent::Remove),
            _ => Self::parse_suffixed(name).unwrap_or_else(|| Self::Unknown(name.to_owned())),
        }
    }

    fn parse_suffixed(name: &str) -> Option<Self> {
        const RELATION: [(&str, RelationEvent); 5] = [
            ("-relation-created", RelationEvent::Created),
            ("-relation-joined", RelationEvent::Joined),
            ("-relation-changed", RelationEvent::Changed),
            ("-relation-departed", RelationEvent::Departed),
            ("-relation-broken", RelationEvent::Broken),
        ];
        for (suffix, kind) in RELATION {
            if let Some(endpoint) = name.strip_suffix(suffix) {
                return Some(Self::Relation(Endpoint::parse(endpoint), kind));
            }
        }
        if let Some(storage) = name.strip_suffix("-storage-attached") {
            return Some(Self::StorageAttached(storage.to_owned()));
        }
        name.strip_suffix("-storage-detaching")
            .map(|s| Self::StorageDetaching(s.to_owned()))
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_kind_of_dispatch_path() {
        let cases = [
            ("hooks/install", Event::Install),
            ("hooks/update-status", Event::UpdateStatus),
            ("hooks/leader-elected", Event::LeaderElected),
            (
                "hooks/database-peers-relation-changed",
                Event::Relation(Endpoint::Peers, RelationEvent::Changed),
            ),
            (
                "hooks/s3-parameters-relation-broken",
                Event::Relation(Endpoint::S3, RelationEvent::Broken),
            ),
            (
                "hooks/certificates-relation-joined",
                Event::Relation(Endpoint::Certificates, RelationEvent::Joined),
            ),
            (
                "hooks/pgdata-storage-attached",
                Event::StorageAttached("pgdata".into()),
            ),
            ("hooks/secret-changed", Event::Secret(SecretEvent::Changed)),
            ("actions/get-password", Event::Action(Action::GetPassword)),
            ("actions/create-backup", Event::Action(Action::CreateBackup)),
            (
                "actions/frobnicate",
                Event::Action(Action::Unknown("frobnicate".into())),
            ),
            (
                "hooks/collect-metrics",
                Event::Unknown("collect-metrics".into()),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(Event::from_dispatch_path(path), want, "{path}");
        }
    }
}
