//! The other clusters' repositories under the same bucket and path: what
//! `list-backups` shows beside this cluster's own backups, and where
//! `restore` looks for a backup id this cluster does not have (migrating
//! from another cluster). They are only ever read.

use anyhow::{bail, Context as _, Result};
use futures::{StreamExt as _, TryStreamExt as _};

use super::catalog;
use super::owner::{self, Owner};
use super::repo::Repo;
use super::settings::RepoSettings;

/// Another cluster's repository.
pub struct Sibling {
    /// Its directory under the path: `<model>.<app>`.
    pub name: String,
    pub owner: Owner,
    pub settings: RepoSettings,
    pub repo: Repo,
}

/// Every repository under the relation's path but this cluster's own, by
/// name; a directory without an owner record is not a repository.
pub async fn list(settings: &RepoSettings) -> Result<Vec<Sibling>> {
    let parent = Repo::open_path(settings)?;
    let listing = parent
        .store
        .list_with_delimiter(None)
        .await
        .context("cannot list the repositories under the S3 path")?;
    let names: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .filter(|name| *name != settings.repository)
        .collect();
    let mut found: Vec<Sibling> = futures::stream::iter(names)
        .map(|name| async move {
            let settings = RepoSettings {
                repository: name.clone(),
                ..settings.clone()
            };
            let repo = Repo::open(&settings)?;
            let owner = owner::read(&repo)
                .await
                .with_context(|| format!("cannot read the repository {name}"))?;
            Ok::<_, anyhow::Error>(owner.map(|owner| Sibling {
                name,
                owner,
                settings,
                repo,
            }))
        })
        .buffer_unordered(8)
        .try_filter_map(|s| async move { Ok(s) })
        .try_collect()
        .await?;
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Splits `<repository>/<id>` (a backup of the named repository) from a
/// bare `<id>`.
pub fn qualified(backup_id: &str) -> Result<(Option<&str>, &str)> {
    let Some((name, id)) = backup_id.trim().rsplit_once('/') else {
        return Ok((None, backup_id));
    };
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        bail!(
            "Invalid backup-id: {backup_id} (give a backup id, or <repository>/<backup id> for \
             a backup of another cluster, as list-backups shows them)"
        );
    }
    Ok((Some(name), id))
}

/// Which repository holds backup `id`: `Ok(None)` for this cluster's own
/// (when it has the id, or when no other has it, so the usual message
/// answers), else the one other repository that has it.
pub async fn holding(settings: &RepoSettings, own: &Repo, id: &str) -> Result<Option<Sibling>> {
    if catalog::load(own, id).await?.is_some() {
        return Ok(None);
    }
    let mut holders = Vec::new();
    for sibling in list(settings).await? {
        if catalog::load(&sibling.repo, id).await?.is_some() {
            holders.push(sibling);
        }
    }
    if holders.len() > 1 {
        let names: Vec<&str> = holders.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "backup {id} is in more than one repository under the S3 path ({}): name the one \
             to restore from as backup-id=<repository>/{id}",
            names.join(", ")
        );
    }
    Ok(holders.pop())
}

/// The repository `name` names, which must be another cluster's.
pub async fn named(settings: &RepoSettings, name: &str) -> Result<Sibling> {
    let siblings = list(settings).await?;
    let known: Vec<&str> = siblings.iter().map(|s| s.name.as_str()).collect();
    let listed = if known.is_empty() {
        "there is none".to_owned()
    } else {
        format!("there are {}", known.join(", "))
    };
    siblings
        .into_iter()
        .find(|s| s.name == name)
        .with_context(|| {
            format!(
                "Invalid backup-id: no repository {name} under the S3 path ({listed}; \
                 list-backups shows them)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_id_may_name_its_repository() {
        assert_eq!(
            qualified("2026-11-22T10:00:00Z").unwrap(),
            (None, "2026-11-22T10:00:00Z")
        );
        assert_eq!(
            qualified("staging.postgresql/2026-11-22T10:00:00Z").unwrap(),
            (Some("staging.postgresql"), "2026-11-22T10:00:00Z")
        );
        for bad in ["/2026-11-22T10:00:00Z", "../2026-11-22T10:00:00Z", "a b/x"] {
            let err = qualified(bad).unwrap_err().to_string();
            assert!(err.starts_with("Invalid backup-id: "), "{err}");
        }
    }
}
