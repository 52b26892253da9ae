//! Writing one restored file, on a blocking thread of its own, from the
//! objects its download hands over in order: each decrypted (nothing
//! unauthenticated is written), decompressed and checked against the
//! SHA-256 the record gives it. A whole file is written as it streams. A
//! file kept as a base and page deltas is rebuilt in one pass when its
//! deltas are small enough to hold (they come first, into an overlay; the
//! base then streams through it, see `overlay`), else by writing the base
//! and laying each delta over the file in turn; either way the rebuilt
//! file is checked against the SHA-256 of the file the backup read. That
//! check covers the base too, so the base (as large as the file) is not
//! hashed on its own: each delta is, to name a damaged one. Then its mode
//! and owner are set and it is synced to disk.

use std::fs::{File, Permissions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use tokio::sync::mpsc;

use crate::backup::catalog::FileRecord;
use crate::backup::delta::Applier;
use crate::backup::object::Format;
use crate::backup::overlay::{Overlay, Patcher};
use crate::backup::pgmanifest::sha256_file;

/// The writer's buffer in front of each file.
const WRITE_BUFFER: usize = 256 << 10;
/// Pages of a file's deltas held in memory to rebuild it in one pass
/// (64 MiB); a chain that carries more is laid over the file in turn.
pub const ONE_PASS_PAGES: u64 = 8192;

/// What one file's writer needs, owned so it can move to a blocking thread.
pub struct Target {
    pub path: PathBuf,
    /// The file's path in the backup and the backup's id, for messages.
    pub name: String,
    pub backup: String,
    pub plan: Plan,
    /// The SHA-256 of the whole file.
    pub sha256: String,
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
    pub format: Format,
}

/// One object a file is rebuilt from, and the SHA-256 of what it holds.
#[derive(Debug, Clone)]
pub struct Source {
    pub key: ObjectPath,
    pub sha256: String,
}

/// How a file is rebuilt from its objects.
pub enum Plan {
    Whole(Source),
    /// The deltas read first, then the base streamed through them.
    OnePass {
        base: Source,
        layers: Vec<Source>,
    },
    /// The base written, then each delta laid over the file.
    InPlace {
        base: Source,
        layers: Vec<Source>,
    },
}

impl Plan {
    /// The plan for a file's entry.
    pub fn of(entry: &FileRecord) -> Result<Self> {
        let mut sources = entry.sources().into_iter().map(|(key, sha256)| {
            Ok(Source {
                key: ObjectPath::from(key),
                sha256: sha256.context("a file without a checksum")?.to_owned(),
            })
        });
        let base = sources.next().context("a file without an object")??;
        let layers = sources.collect::<Result<Vec<_>>>()?;
        let pages: u64 = entry.layers.iter().map(|l| u64::from(l.pages)).sum();
        Ok(match layers.is_empty() {
            true => Self::Whole(base),
            false if pages <= ONE_PASS_PAGES => Self::OnePass { base, layers },
            false => Self::InPlace { base, layers },
        })
    }

    /// The objects in the order the writer takes them.
    pub fn downloads(&self) -> Vec<ObjectPath> {
        match self {
            Self::Whole(base) => vec![base.key.clone()],
            Self::OnePass { base, layers } => {
                layers.iter().chain([base]).map(|s| s.key.clone()).collect()
            }
            Self::InPlace { base, layers } => [base]
                .into_iter()
                .chain(layers)
                .map(|s| s.key.clone())
                .collect(),
        }
    }
}

/// What the download hands the writer.
pub enum Piece {
    Chunk(Bytes),
    /// The current object ended: the writer may finish it.
    End,
}

/// The pieces of each object as they arrive.
struct Feed<'a> {
    rx: mpsc::Receiver<Piece>,
    name: &'a str,
    backup: &'a str,
}

impl Feed<'_> {
    /// Passes the next object's bytes to `out`, up to its end.
    fn object(&mut self, key: &ObjectPath, out: &mut dyn Write) -> Result<()> {
        loop {
            match self.rx.blocking_recv() {
                Some(Piece::Chunk(chunk)) => out.write_all(&chunk).with_context(|| {
                    format!("cannot restore {} of backup {}", self.name, self.backup)
                })?,
                Some(Piece::End) => return Ok(()),
                None => bail!("the download of {key} stopped before its end"),
            }
        }
    }
}

/// Writes the file from what arrives, checks it, sets its mode and owner
/// and syncs it.
pub fn write_file(rx: mpsc::Receiver<Piece>, target: Target) -> Result<()> {
    let Target {
        path,
        name,
        backup,
        plan,
        sha256,
        mode,
        owner,
        format,
    } = target;
    let mut feed = Feed {
        rx,
        name: &name,
        backup: &backup,
    };
    let created =
        File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let out = BufWriter::with_capacity(WRITE_BUFFER, created);
    let mismatch = |source: &Source| {
        anyhow::anyhow!(
            "{name} does not match its checksum in backup {backup} (object {})",
            source.key
        )
    };
    let file = match &plan {
        Plan::Whole(base) => {
            let (out, digest) = read(&format, &mut feed, base, out)?;
            if digest.sha256 != base.sha256 {
                return Err(mismatch(base));
            }
            into_file(out, &path)?
        }
        Plan::OnePass { base, layers } => {
            let mut overlay = Overlay::default();
            for layer in layers {
                lay(&format, &mut feed, layer, Applier::new(&mut overlay), &name)?;
            }
            let patcher = read_base(&format, &mut feed, base, Patcher::new(overlay, out)?)?;
            let (out, rebuilt) = patcher
                .finish()
                .with_context(|| format!("cannot write {}", path.display()))?;
            if rebuilt.sha256 != sha256 {
                return Err(not_rebuilt(&name, &backup, layers.len()));
            }
            into_file(out, &path)?
        }
        Plan::InPlace { base, layers } => {
            let out = read_base(&format, &mut feed, base, out)?;
            let file = into_file(out, &path)?;
            for layer in layers {
                lay(&format, &mut feed, layer, Applier::new(&file), &name)?;
            }
            let (_, rebuilt) = sha256_file(&path)?;
            if hex::encode(rebuilt) != sha256 {
                return Err(not_rebuilt(&name, &backup, layers.len()));
            }
            file
        }
    };
    file.set_permissions(Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {} to uid {uid}", path.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("cannot sync {} to disk", path.display()))
}

/// Decodes the next object, `source`, into `out`; returns `out` and the
/// digest of what it held.
fn read<W: Write>(
    format: &Format,
    feed: &mut Feed<'_>,
    source: &Source,
    out: W,
) -> Result<(W, crate::backup::codec::Digest)> {
    let mut reader = format.reader(source.key.as_ref(), out)?;
    feed.object(&source.key, &mut reader)?;
    reader
        .finish()
        .with_context(|| format!("{} is truncated", source.key))
}

/// Decodes the next object, the base of a file rebuilt from page deltas,
/// into `out`, without hashing it (the rebuilt file is checked).
fn read_base<W: Write>(format: &Format, feed: &mut Feed<'_>, source: &Source, out: W) -> Result<W> {
    let mut reader = format.unhashed_reader(source.key.as_ref(), out)?;
    feed.object(&source.key, &mut reader)?;
    let (out, _) = reader
        .finish()
        .with_context(|| format!("{} is truncated", source.key))?;
    Ok(out)
}

/// Decodes the next object, the page delta `layer`, into `applier`,
/// checked against its SHA-256 and for being whole.
fn lay<P: crate::backup::delta::Pages>(
    format: &Format,
    feed: &mut Feed<'_>,
    layer: &Source,
    applier: Applier<P>,
    name: &str,
) -> Result<()> {
    let (applier, digest) = read(format, feed, layer, applier)?;
    if digest.sha256 != layer.sha256 {
        bail!(
            "the page delta {} of {name} does not match its checksum in backup {}",
            layer.key,
            feed.backup
        );
    }
    applier
        .finish()
        .with_context(|| format!("cannot lay the page delta {} over {name}", layer.key))?;
    Ok(())
}

fn into_file(out: BufWriter<File>, path: &std::path::Path) -> Result<File> {
    out.into_inner()
        .map_err(|err| err.into_error())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn not_rebuilt(name: &str, backup: &str, layers: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "{name} rebuilt from its {layers} page delta(s) does not match its checksum in backup \
         {backup}: its base or a delta is damaged (verify-backup names which)"
    )
}
