//! One backup at a time across the cluster: a lock object in the
//! repository, created only if absent. A lock whose holder is no longer a
//! member of the cluster (or is the caller itself, which runs one action at
//! a time) is stale and taken over.

use anyhow::{Context as _, Result};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::repo::Repo;

const LOCK: &str = "locks/backup.json";

/// The lock is held by a live member: a scheduled backup waits for the
/// next tick, an action fails with this message.
#[derive(Debug, thiserror::Error)]
#[error(
    "another backup ({}) is running on {} since {}: wait for it to finish",
    .0.backup,
    .0.unit,
    .0.since
)]
pub struct Busy(pub Holder);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub unit: String,
    pub backup: String,
    pub since: String,
}

/// Takes the lock for `me`; `members` are the units of the cluster now.
pub async fn acquire(repo: &Repo, me: &Holder, members: &[String]) -> Result<()> {
    let path = ObjectPath::from(LOCK);
    let body = serde_json::to_vec(me).context("cannot encode the backup lock")?;
    if repo
        .create(&path, body.clone())
        .await
        .context("cannot take the backup lock")?
    {
        return Ok(());
    }
    let Some(holder) = current(repo).await? else {
        // Released in between: try once more.
        return Box::pin(acquire(repo, me, members)).await;
    };
    let stale = holder.unit == me.unit || !members.contains(&holder.unit);
    if !stale {
        return Err(Busy(holder).into());
    }
    tracing::warn!("taking over a stale backup lock held by {}", holder.unit);
    repo.store
        .put(&path, PutPayload::from(body))
        .await
        .context("cannot take the backup lock")?;
    Ok(())
}

/// Releases the lock if `me` holds it.
pub async fn release(repo: &Repo, me: &Holder) -> Result<()> {
    if current(repo).await?.as_ref() == Some(me) {
        repo.store
            .delete(&ObjectPath::from(LOCK))
            .await
            .context("cannot release the backup lock")?;
    }
    Ok(())
}

async fn current(repo: &Repo) -> Result<Option<Holder>> {
    match repo.store.get(&ObjectPath::from(LOCK)).await {
        Ok(found) => {
            let bytes = found.bytes().await.context("cannot read the backup lock")?;
            Ok(serde_json::from_slice(&bytes).ok())
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err).context("cannot read the backup lock"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    fn holder(unit: &str) -> Holder {
        Holder {
            unit: unit.into(),
            backup: "b".into(),
            since: "t".into(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_backup_at_a_time() {
        let repo = Repo::new(Arc::new(InMemory::new()));
        let members = vec!["pg/0".to_owned(), "pg/1".to_owned()];
        acquire(&repo, &holder("pg/0"), &members).await.unwrap();
        let err = acquire(&repo, &holder("pg/1"), &members).await.unwrap_err();
        assert!(err.to_string().contains("running on pg/0"), "{err}");
        assert!(err.downcast_ref::<Busy>().is_some());
        release(&repo, &holder("pg/0")).await.unwrap();
        acquire(&repo, &holder("pg/1"), &members).await.unwrap();
        // A holder that left the cluster does not block the others.
        acquire(&repo, &holder("pg/0"), &["pg/0".to_owned()])
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lock_this_unit_left_behind_does_not_block_its_next_backup() {
        // As after an S3 outage that kept the release from reaching the store.
        let repo = Repo::new(Arc::new(InMemory::new()));
        let members = vec!["pg/0".to_owned(), "pg/1".to_owned()];
        acquire(&repo, &holder("pg/0"), &members).await.unwrap();
        let next = Holder {
            backup: "c".into(),
            ..holder("pg/0")
        };
        acquire(&repo, &next, &members).await.unwrap();
        assert_eq!(current(&repo).await.unwrap(), Some(next.clone()));
        // The old holder's release no longer removes the new one's lock.
        release(&repo, &holder("pg/0")).await.unwrap();
        assert_eq!(current(&repo).await.unwrap(), Some(next));
    }
}
