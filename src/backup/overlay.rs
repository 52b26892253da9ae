//! Rebuilding a relation file from its base and its page deltas in one
//! pass. The deltas of a file's chain are small (only the pages that
//! changed), so a restore reads them first into an [`Overlay`]: the newest
//! copy of each page they carry, and how far the base still counts after
//! the truncations they record. The base then streams through a
//! [`Patcher`], which writes each block from the overlay or the base (or
//! zeros, where a truncation was followed by growth) and hashes what it
//! writes: the file is written once and checked against the SHA-256 of the
//! file the backup read, with no second read.
//!
//! The result is exactly that of laying each delta over the base in turn
//! (`delta::Applier` on the file): a delta's pages, then its size, which
//! cuts the file or extends it with zeros.

use std::collections::BTreeMap;
use std::io::{self, Write};

use anyhow::Result;
use sha2::{Digest as _, Sha256};

use super::codec::Digest;
use super::delta::Pages;
use super::pages::BLOCK;

/// The pages of a chain of deltas, merged.
#[derive(Debug, Default)]
pub struct Overlay {
    pages: BTreeMap<u32, Vec<u8>>,
    /// Bytes of the base that survive every truncation so far.
    base_limit: Option<u64>,
    /// The file's size after the last delta.
    size: Option<u64>,
}

impl Pages for &mut Overlay {
    fn page(&mut self, block: u32, bytes: &[u8]) -> Result<()> {
        self.pages.insert(block, bytes.to_vec());
        Ok(())
    }

    fn end(&mut self, size: u64) -> Result<()> {
        // Pages (and base bytes) past the new end are cut.
        let block_size = BLOCK as u64;
        self.pages.retain(|&b, _| u64::from(b) * block_size < size);
        if let Some((&last, page)) = self.pages.iter_mut().next_back() {
            let room = size - u64::from(last) * block_size;
            page.truncate(room.min(block_size) as usize);
        }
        self.base_limit = Some(self.base_limit.map_or(size, |l| l.min(size)));
        self.size = Some(size);
        Ok(())
    }
}

/// Writes the base, as it streams in, with the overlay laid over it: each
/// block of the final file once, hashed as written.
pub struct Patcher<W: Write> {
    out: W,
    overlay: Overlay,
    size: u64,
    base_limit: u64,
    /// The base's bytes of the block being gathered.
    block: Vec<u8>,
    next: u32,
    hasher: Sha256,
    crc: u32,
    len: u64,
}

impl<W: Write> Patcher<W> {
    /// A patcher for a file whose chain gave `overlay` (every delta read).
    pub fn new(overlay: Overlay, out: W) -> Result<Self> {
        let (Some(size), Some(base_limit)) = (overlay.size, overlay.base_limit) else {
            anyhow::bail!("no page delta was read into the overlay");
        };
        Ok(Self {
            out,
            overlay,
            size,
            base_limit,
            block: Vec::with_capacity(BLOCK),
            next: 0,
            hasher: Sha256::new(),
            crc: 0,
            len: 0,
        })
    }

    /// Writes block `self.next` of the final file from the base bytes
    /// gathered for it.
    fn emit(&mut self) -> io::Result<()> {
        let start = u64::from(self.next) * BLOCK as u64;
        if start < self.size {
            let end = (start + BLOCK as u64).min(self.size);
            let mut bytes = vec![0u8; (end - start) as usize];
            let from_base = self.base_limit.saturating_sub(start).min(end - start) as usize;
            let from_base = from_base.min(self.block.len());
            bytes[..from_base].copy_from_slice(&self.block[..from_base]);
            if let Some(page) = self.overlay.pages.get(&self.next) {
                bytes[..page.len()].copy_from_slice(page);
            }
            self.hasher.update(&bytes);
            self.crc = crc32c::crc32c_append(self.crc, &bytes);
            self.len += bytes.len() as u64;
            self.out.write_all(&bytes)?;
        }
        self.block.clear();
        self.next += 1;
        Ok(())
    }

    /// Writes what is left (blocks past the base's end come from the
    /// overlay, or are zeros); returns the writer and the final file's digest.
    pub fn finish(mut self) -> io::Result<(W, Digest)> {
        if !self.block.is_empty() {
            self.emit()?;
        }
        while u64::from(self.next) * (BLOCK as u64) < self.size {
            self.emit()?;
        }
        let digest = Digest {
            sha256: hex::encode(self.hasher.finalize()),
            crc32c: self.crc,
            len: self.len,
        };
        Ok((self.out, digest))
    }
}

impl<W: Write> Write for Patcher<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        while !buf.is_empty() {
            let n = (BLOCK - self.block.len()).min(buf.len());
            self.block.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.block.len() == BLOCK {
                self.emit()?;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::delta::{Applier, Writer};

    /// A delta stream of `pages` (block, fill byte, length) ending at `size`.
    fn stream(pages: &[(u32, u8, usize)], size: u64) -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).unwrap();
        for &(block, fill, len) in pages {
            w.page(block, &vec![fill; len]).unwrap();
        }
        w.finish(size).unwrap()
    }

    /// The file laying each stream over `base` in turn gives, on disk.
    fn sequential(base: &[u8], streams: &[Vec<u8>]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, base).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for s in streams {
            let mut applier = Applier::new(&file);
            applier.write_all(s).unwrap();
            applier.finish().unwrap();
        }
        std::fs::read(&path).unwrap()
    }

    /// The same through an overlay and a patcher, base fed in odd pieces.
    fn merged(base: &[u8], streams: &[Vec<u8>]) -> (Vec<u8>, Digest) {
        let mut overlay = Overlay::default();
        for s in streams {
            let mut applier = Applier::new(&mut overlay);
            applier.write_all(s).unwrap();
            applier.finish().unwrap();
        }
        let mut patcher = Patcher::new(overlay, Vec::new()).unwrap();
        for piece in base.chunks(5000) {
            patcher.write_all(piece).unwrap();
        }
        let (out, digest) = patcher.finish().unwrap();
        (out, digest)
    }

    #[test]
    fn a_merged_chain_gives_what_laying_each_delta_in_turn_gives() {
        let b = BLOCK as u64;
        let base: Vec<u8> = (0..10 * BLOCK).map(|i| (i / BLOCK) as u8 + 1).collect();
        let cases: Vec<Vec<Vec<u8>>> = vec![
            // Pages changed in place, twice.
            vec![
                stream(&[(1, 0xa1, BLOCK), (7, 0xa7, BLOCK)], 10 * b),
                stream(&[(1, 0xb1, BLOCK), (3, 0xb3, BLOCK)], 10 * b),
            ],
            // Cut by VACUUM, then grown again: what was cut is zeros unless carried.
            vec![
                stream(&[(2, 0xa2, BLOCK)], 6 * b),
                stream(&[(6, 0xb6, BLOCK), (9, 0xb9, BLOCK)], 11 * b),
            ],
            // A page carried, then cut, then the file grows past it.
            vec![
                stream(&[(8, 0xa8, BLOCK)], 10 * b),
                stream(&[], 5 * b),
                stream(&[(5, 0xc5, BLOCK)], 9 * b),
            ],
            // Grown with a short last block, then that block completed.
            vec![
                stream(&[(10, 0xaa, 100)], 10 * b + 100),
                stream(&[(11, 0xbb, BLOCK)], 12 * b),
            ],
            // Emptied, then grown from nothing.
            vec![stream(&[], 0), stream(&[(0, 0xd0, BLOCK)], b)],
        ];
        for (n, streams) in cases.iter().enumerate() {
            let want = sequential(&base, streams);
            let (got, digest) = merged(&base, streams);
            assert_eq!(got.len(), want.len(), "case {n}");
            assert!(got == want, "case {n}: the merged file differs");
            assert_eq!(digest.sha256, crate::backup::codec::sha256_hex(&want));
            assert_eq!(digest.len, want.len() as u64);
        }
    }

    #[test]
    fn a_patcher_needs_a_delta_read_first() {
        assert!(Patcher::new(Overlay::default(), Vec::new()).is_err());
    }
}
