//! Writing one restored file, on a blocking thread of its own, from the
//! objects its downloads hand over: each decrypted (nothing
//! unauthenticated is written) and decompressed. A whole file is written
//! as it streams. A file kept as a base and page deltas is rebuilt in one
//! pass as the base streams, its deltas (spooled beside, see `spool`)
//! decoded alongside as far as each block needs (see `merge`). Either way the file written is checked
//! against the SHA-256 of the file the backup read (see `hashing`): for a
//! rebuilt file that covers its base and every page its deltas gave, so
//! these are not hashed on their own (verify-backup checks each object).
//! The file is also checked against the CRC-32C of PostgreSQL's manifest,
//! computed on the way at next to no cost, so that `pg_verifybackup` need
//! not read it again.
//! Then its mode and owner are set and it is synced to disk.

use std::fs::{File, Permissions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use tokio::sync::mpsc;

use super::hashing::Hashed;
use super::merge::{Check, Chunks, Layer, Merge};
use super::spool::Unspool;
use crate::backup::catalog::FileRecord;
use crate::backup::object::Format;

/// The writer's buffer in front of each file.
const WRITE_BUFFER: usize = 256 << 10;

/// What one file's writer needs, owned so it can move to a blocking thread.
pub struct Target {
    pub path: PathBuf,
    /// The file's path in the backup and the backup's id, for messages.
    pub name: String,
    pub backup: String,
    pub plan: Plan,
    /// The whole file's size, SHA-256 and, in records that have it, the
    /// CRC-32C PostgreSQL's manifest gives it.
    pub size: u64,
    pub sha256: String,
    pub crc32c: Option<u32>,
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
    pub format: Format,
}

/// How a file is rebuilt from its objects.
pub enum Plan {
    Whole(ObjectPath),
    /// A base and its page deltas, oldest first, each with its check.
    Chain {
        base: ObjectPath,
        layers: Vec<(ObjectPath, Check)>,
    },
}

impl Plan {
    /// The plan for a file's entry.
    pub fn of(entry: &FileRecord) -> Result<Self> {
        let base = ObjectPath::from(
            entry
                .object
                .as_deref()
                .context("a file without an object")?,
        );
        let layers = entry
            .layers
            .iter()
            .map(|layer| {
                let check = match &layer.crc32c {
                    Some(hex) => {
                        Check::Crc32c(u32::from_str_radix(hex, 16).with_context(|| {
                            format!("the page delta {} has a malformed CRC-32C", layer.object)
                        })?)
                    }
                    None => Check::Sha256(layer.sha256.clone()),
                };
                Ok((ObjectPath::from(layer.object.as_str()), check))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(match layers.is_empty() {
            true => Self::Whole(base),
            false => Self::Chain { base, layers },
        })
    }

    /// The object the file streams from, and its deltas' (oldest first).
    pub fn objects(&self) -> (&ObjectPath, Vec<ObjectPath>) {
        match self {
            Self::Whole(base) => (base, Vec::new()),
            Self::Chain { base, layers } => (base, layers.iter().map(|(k, _)| k.clone()).collect()),
        }
    }
}

/// What the base's download hands the writer.
pub enum Piece {
    Chunk(Bytes),
    /// The object ended.
    End,
}

/// The pieces of the base as they arrive.
pub struct Feed {
    pub rx: mpsc::Receiver<Piece>,
    pub key: ObjectPath,
}

impl Chunks for Feed {
    fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        match self.rx.blocking_recv() {
            Some(Piece::Chunk(chunk)) => Ok(Some(chunk)),
            Some(Piece::End) => Ok(None),
            None => bail!("the download of {} stopped before its end", self.key),
        }
    }
}

/// Writes the file from what arrives (the base from `base`, a chain's
/// deltas from `layers`, oldest first), checks it, sets its mode and owner
/// and syncs it.
pub fn write_file(mut base: Feed, layers: Vec<Unspool>, target: Target) -> Result<()> {
    let Target {
        path,
        name,
        backup,
        plan,
        size,
        sha256,
        crc32c,
        mode,
        owner,
        format,
    } = target;
    let created =
        File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let out = Hashed::new(BufWriter::with_capacity(WRITE_BUFFER, created), size);
    let (out, digest) = match &plan {
        Plan::Whole(_) => decode(&format, &mut base, out),
        Plan::Chain {
            layers: sources, ..
        } => {
            let layers = sources
                .iter()
                .zip(layers)
                .map(|((key, check), spooled)| {
                    Layer::new(&format, key.as_ref(), check.clone(), spooled)
                })
                .collect::<Result<Vec<_>>>()?;
            decode(&format, &mut base, Merge::new(layers, out)?)
                .and_then(Merge::finish)
                .map_err(|err| err.context(format!("cannot rebuild {name} from its page deltas")))
        }
    }
    .with_context(|| format!("cannot restore {name} of backup {backup}"))?
    .finish()
    .with_context(|| format!("cannot write {}", path.display()))?;
    if digest.sha256 != sha256 {
        bail!(match &plan {
            Plan::Whole(key) =>
                format!("{name} does not match its checksum in backup {backup} (object {key})"),
            Plan::Chain { layers, .. } => format!(
                "{name} rebuilt from its {} page delta(s) does not match its checksum in backup \
                 {backup}: its base or a delta is damaged (verify-backup names which)",
                layers.len()
            ),
        });
    }
    if crc32c.is_some_and(|crc| crc != digest.crc32c) {
        bail!("{name} does not match its CRC-32C in backup {backup}'s backup_manifest");
    }
    let file = out
        .into_inner()
        .map_err(|err| err.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {} to uid {uid}", path.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("cannot sync {} to disk", path.display()))
}

/// Decodes the object `feed` brings into `out` (its content is checked
/// further on, as the file written); returns `out`.
fn decode<W: Write>(format: &Format, feed: &mut Feed, out: W) -> Result<W> {
    let key = feed.key.clone();
    let mut reader = format.unhashed_reader(key.as_ref(), out)?;
    while let Some(chunk) = feed.next_chunk()? {
        reader.write_all(&chunk)?;
    }
    let (out, _) = reader
        .finish()
        .with_context(|| format!("{key} is truncated"))?;
    Ok(out)
}
