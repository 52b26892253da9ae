//! A page delta's object on its way to the writer: downloaded into an
//! unnamed file in the restore's directory as fast as it arrives, and read
//! back from there as far as the merge needs it.
//!
//! The merge takes a delta's pages only when the base reaches their
//! blocks: a delta whose pages lie near the end of its file (a table that
//! grows by appends) is not read again until most of the base is written.
//! Held in a bounded channel, its download would stand still all that
//! time, and S3 servers and the client's read timeout drop a connection
//! nobody reads from; held in memory, a chain could take as much as its
//! base. On disk it costs its stored size, for as long as the file takes,
//! and the download never waits for the writer.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use tokio::sync::mpsc;

use super::merge::Chunks;

/// The most read back at a time.
const READ: usize = 256 << 10;

/// What the download tells the reader.
enum Progress {
    Appended(u64),
    End,
}

/// The download's end: appends what arrives.
pub struct Spool {
    file: Arc<File>,
    written: u64,
    tx: mpsc::UnboundedSender<Progress>,
}

/// The writer's end: reads what was appended, waiting for more.
pub struct Unspool {
    file: Arc<File>,
    key: ObjectPath,
    rx: mpsc::UnboundedReceiver<Progress>,
    available: u64,
    read: u64,
    ended: bool,
}

/// A spool for object `key` in directory `dir` (a file with no name,
/// gone once both ends are dropped).
pub fn spool(dir: &Path, key: &ObjectPath) -> Result<(Spool, Unspool)> {
    let file = Arc::new(
        tempfile::tempfile_in(dir)
            .with_context(|| format!("cannot create a spool file in {}", dir.display()))?,
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let spool = Spool {
        file: file.clone(),
        written: 0,
        tx,
    };
    let unspool = Unspool {
        file,
        key: key.clone(),
        rx,
        available: 0,
        read: 0,
        ended: false,
    };
    Ok((spool, unspool))
}

impl Spool {
    /// Appends a piece of the object. False once the reader is gone.
    pub fn append(&mut self, chunk: &[u8]) -> Result<bool> {
        self.file
            .write_all_at(chunk, self.written)
            .context("cannot write to the spool file")?;
        self.written += chunk.len() as u64;
        Ok(self.tx.send(Progress::Appended(chunk.len() as u64)).is_ok())
    }

    /// Marks the object's end.
    pub fn end(self) {
        let _ = self.tx.send(Progress::End);
    }
}

impl Chunks for Unspool {
    fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.read < self.available {
                let n = (self.available - self.read).min(READ as u64) as usize;
                let mut buf = vec![0; n];
                self.file
                    .read_exact_at(&mut buf, self.read)
                    .with_context(|| {
                        format!("cannot read {} back from its spool file", self.key)
                    })?;
                self.read += n as u64;
                return Ok(Some(Bytes::from(buf)));
            }
            if self.ended {
                return Ok(None);
            }
            match self.rx.blocking_recv() {
                Some(Progress::Appended(n)) => self.available += n,
                Some(Progress::End) => self.ended = true,
                None => bail!("the download of {} stopped before its end", self.key),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_appended_comes_back_in_order_and_an_unended_download_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let key = ObjectPath::from("b/f.delta.zst");
        let (mut spool, mut unspool) = super::spool(dir.path(), &key).unwrap();
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 241) as u8).collect();
        let writer = std::thread::spawn(move || {
            for piece in data.chunks(100_000) {
                assert!(spool.append(piece).unwrap());
            }
            spool.end();
            data
        });
        let mut back = Vec::new();
        while let Some(chunk) = unspool.next_chunk().unwrap() {
            assert!(chunk.len() <= READ);
            back.extend_from_slice(&chunk);
        }
        assert!(back == writer.join().unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let (mut spool, mut unspool) = super::spool(dir.path(), &key).unwrap();
        assert!(spool.append(b"abc").unwrap());
        drop(spool);
        assert_eq!(unspool.next_chunk().unwrap().unwrap(), &b"abc"[..]);
        let err = unspool.next_chunk().unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "the download of b/f.delta.zst stopped before its end"
        );
        drop(unspool);
        let (mut spool, _) = super::spool(dir.path(), &key).unwrap();
        assert!(!spool.append(b"x").unwrap(), "the reader is gone");
    }
}
