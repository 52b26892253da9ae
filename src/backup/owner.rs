//! Who owns the repository: `repository.json` records the cluster that
//! writes into it (PostgreSQL system identifier and version, model, app).
//! A cluster writes WAL or backups only into a repository it owns, so two
//! clusters never mix their histories in one place.
//!
//! A cluster is the same only when all three agree: a new application of
//! the same name, or a cluster restored from another's backup (which then
//! has that cluster's system identifier), is not the owner. Ownership moves
//! only through a restore ([`succession`]): to the application that owned
//! it before under the same name in the same model (Juju names one
//! application once per model, so the old one is gone), or when the user
//! says so for any other owner; never on its own otherwise.
//!
//! The record also names the key the repository is encrypted with (its id,
//! never the key), once a cluster writes into it with a key configured: a
//! unit configured with no key or another one then writes nothing there
//! ([`key_problem`]), so no repository mixes keys, nor plaintext into an
//! encrypted one. Objects stored before encryption was turned on stay
//! plaintext and readable.

use anyhow::{Context as _, Result};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::repo::Repo;

const OWNER: &str = "repository.json";

/// The cluster a repository belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Owner {
    pub system_identifier: String,
    pub pg_version: u32,
    pub model_uuid: String,
    pub app: String,
    /// The id of the key the repository's objects are encrypted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_id: Option<String>,
}

/// What the repository said about its owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    /// This cluster owns it (now, if it had no owner).
    Ours,
    /// Another cluster does.
    Theirs(Owner),
}

impl Owner {
    /// The same cluster: system identifier, model and application.
    pub fn is(&self, other: &Owner) -> bool {
        self.system_identifier == other.system_identifier
            && self.model_uuid == other.model_uuid
            && self.app == other.app
    }

    /// The same Juju application (perhaps with another system identifier,
    /// after a restore or after being removed and deployed again).
    pub fn same_application(&self, other: &Owner) -> bool {
        self.model_uuid == other.model_uuid && self.app == other.app
    }
}

/// Whether a restore may make this cluster the owner of the repository it
/// archives into.
#[derive(Debug, PartialEq, Eq)]
pub enum Succession {
    /// Nobody owns it, or this application does: it may go ahead.
    Free,
    /// Another cluster owns it; only the user can hand it over.
    Held(Owner),
}

/// The rule for a restore into a repository `current` owns (`None`: no owner).
pub fn succession(current: Option<&Owner>, me: &Owner) -> Succession {
    match current {
        Some(owner) if !owner.same_application(me) => Succession::Held(owner.clone()),
        _ => Succession::Free,
    }
}

/// The repository's owner record, if it has one.
pub async fn read(repo: &Repo) -> Result<Option<Owner>> {
    let path = ObjectPath::from(OWNER);
    match repo.store.get(&path).await {
        Ok(found) => {
            let bytes = found
                .bytes()
                .await
                .context("cannot read the repository's owner")?;
            serde_json::from_slice::<Owner>(&bytes)
                .map(Some)
                .context("the repository's owner record is not valid")
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err).context("cannot read the repository's owner"),
    }
}

/// Records `me` as the owner, whoever owned it before (after a restore that
/// [`succession`] allowed).
pub async fn transfer(repo: &Repo, me: &Owner) -> Result<()> {
    let body = serde_json::to_vec_pretty(me).context("cannot encode the owner record")?;
    repo.store
        .put(&ObjectPath::from(OWNER), body.into())
        .await
        .context("cannot record the repository's new owner")?;
    Ok(())
}

/// Claims the repository for `me` when it has no owner; reports who owns it.
pub async fn claim(repo: &Repo, me: &Owner) -> Result<Ownership> {
    let path = ObjectPath::from(OWNER);
    match read(repo).await? {
        Some(owner) if owner.is(me) => Ok(Ownership::Ours),
        Some(owner) => Ok(Ownership::Theirs(owner)),
        None => {
            let body = serde_json::to_vec_pretty(me).context("cannot encode the owner record")?;
            if repo
                .create(&path, body)
                .await
                .context("cannot record the repository's owner")?
            {
                Ok(Ownership::Ours)
            } else {
                // Another cluster claimed it a moment ago: ask again.
                Box::pin(claim(repo, me)).await
            }
        }
    }
}

/// What the repository's recorded key says of the configured one (by
/// id): None when this unit may write into it (the same key, or a
/// repository that was not encrypted until now), else the reason.
pub fn key_problem(
    recorded: Option<&str>,
    configured: Option<&str>,
    location: &str,
) -> Option<String> {
    match (recorded, configured) {
        (Some(theirs), None) => Some(format!(
            "the S3 repository {location} is encrypted with key {theirs} and no encryption key \
             is configured: set backup-encryption-secret to the secret holding that key"
        )),
        (Some(theirs), Some(ours)) if theirs != ours => Some(format!(
            "the S3 repository {location} is encrypted with key {theirs}; the configured \
             secret holds key {ours}: set backup-encryption-secret to the secret holding key \
             {theirs}, or use another bucket or path for a repository encrypted with the new key"
        )),
        _ => None,
    }
}

/// The blocked-status message for a repository owned by another cluster.
pub fn foreign_message(owner: &Owner, me: &Owner, location: &str) -> String {
    let restore = match succession(Some(owner), me) {
        Succession::Free => "or restore one of its backups",
        Succession::Held(_) => {
            "or, if that cluster is gone, restore one of its backups with take-over-repository=true"
        }
    };
    format!(
        "the S3 repository {location} has backups from another cluster (system identifier {}, {} in model {}): \
         use another bucket or path for this cluster, {restore}",
        owner.system_identifier, owner.app, owner.model_uuid
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    fn owner(id: &str) -> Owner {
        Owner {
            system_identifier: id.into(),
            pg_version: 15,
            model_uuid: "m".into(),
            app: "postgresql".into(),
            encryption_key_id: None,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_first_cluster_owns_it_and_a_second_is_refused() {
        let repo = Repo::new(Arc::new(InMemory::new()));
        assert_eq!(claim(&repo, &owner("1")).await.unwrap(), Ownership::Ours);
        assert_eq!(claim(&repo, &owner("1")).await.unwrap(), Ownership::Ours);
        assert_eq!(
            claim(&repo, &owner("2")).await.unwrap(),
            Ownership::Theirs(owner("1"))
        );
        let message = foreign_message(&owner("1"), &owner("2"), "b/p");
        assert!(message.contains("another cluster (system identifier 1"));
        assert!(
            message.ends_with("or restore one of its backups"),
            "{message}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_restored_cluster_is_another_cluster_until_ownership_moves() {
        let repo = Repo::new(Arc::new(InMemory::new()));
        let elsewhere = Owner {
            model_uuid: "other-model".into(),
            ..owner("1")
        };
        claim(&repo, &elsewhere).await.unwrap();

        // Same system identifier (restored from its backup), another model.
        assert_eq!(
            claim(&repo, &owner("1")).await.unwrap(),
            Ownership::Theirs(elsewhere.clone())
        );
        assert_eq!(
            succession(Some(&elsewhere), &owner("1")),
            Succession::Held(elsewhere.clone())
        );
        assert!(foreign_message(&elsewhere, &owner("1"), "b/p")
            .ends_with("restore one of its backups with take-over-repository=true"));

        // The same application under its name in the same model may take it.
        assert_eq!(succession(Some(&owner("7")), &owner("1")), Succession::Free);
        assert_eq!(succession(None, &owner("1")), Succession::Free);

        transfer(&repo, &owner("1")).await.unwrap();
        assert_eq!(claim(&repo, &owner("1")).await.unwrap(), Ownership::Ours);
        assert_eq!(read(&repo).await.unwrap(), Some(owner("1")));
    }

    #[test]
    fn a_repository_encrypted_with_a_key_takes_that_key_only() {
        let at = "b/p/m.pg";
        assert_eq!(key_problem(None, None, at), None);
        assert_eq!(key_problem(None, Some("aa"), at), None);
        assert_eq!(key_problem(Some("aa"), Some("aa"), at), None);
        assert_eq!(
            key_problem(Some("aa"), None, at).unwrap(),
            "the S3 repository b/p/m.pg is encrypted with key aa and no encryption key is \
             configured: set backup-encryption-secret to the secret holding that key"
        );
        assert_eq!(
            key_problem(Some("aa"), Some("bb"), at).unwrap(),
            "the S3 repository b/p/m.pg is encrypted with key aa; the configured secret holds \
             key bb: set backup-encryption-secret to the secret holding key aa, or use another \
             bucket or path for a repository encrypted with the new key"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_key_id_is_recorded_and_read_back_and_old_records_have_none() {
        let repo = Repo::new(Arc::new(InMemory::new()));
        let keyed = Owner {
            encryption_key_id: Some("0123456789abcdef".into()),
            ..owner("1")
        };
        assert_eq!(claim(&repo, &keyed).await.unwrap(), Ownership::Ours);
        assert_eq!(read(&repo).await.unwrap(), Some(keyed));
        let old =
            br#"{"system-identifier":"1","pg-version":15,"model-uuid":"m","app":"postgresql"}"#;
        repo.store
            .put(&ObjectPath::from(OWNER), old.to_vec().into())
            .await
            .unwrap();
        assert_eq!(read(&repo).await.unwrap(), Some(owner("1")));
    }
}
