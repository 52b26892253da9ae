//! Who owns the repository: `repository.json` records the cluster that
//! writes into it (PostgreSQL system identifier and version, model, app).
//! A cluster writes WAL or backups only into a repository it owns, so two
//! clusters never mix their histories in one place.

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
}

/// What the repository said about its owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    /// This cluster owns it (now, if it had no owner).
    Ours,
    /// Another cluster does.
    Theirs(Owner),
}

/// Claims the repository for `me` when it has no owner; reports who owns it.
pub async fn claim(repo: &Repo, me: &Owner) -> Result<Ownership> {
    let path = ObjectPath::from(OWNER);
    let current = match repo.store.get(&path).await {
        Ok(found) => {
            let bytes = found
                .bytes()
                .await
                .context("cannot read the repository's owner")?;
            Some(
                serde_json::from_slice::<Owner>(&bytes)
                    .context("the repository's owner record is not valid")?,
            )
        }
        Err(object_store::Error::NotFound { .. }) => None,
        Err(err) => return Err(err).context("cannot read the repository's owner"),
    };
    match current {
        Some(owner) if owner.system_identifier == me.system_identifier => Ok(Ownership::Ours),
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

/// The blocked-status message for a repository owned by another cluster.
pub fn foreign_message(owner: &Owner, location: &str) -> String {
    format!(
        "the S3 repository {location} has backups from another cluster (system identifier {}, {} in model {}): \
         use another bucket or path for this cluster, or restore from it",
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
        assert!(
            foreign_message(&owner("1"), "b/p").contains("another cluster (system identifier 1")
        );
    }
}
