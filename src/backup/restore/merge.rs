//! Rebuilding a relation file from its base and its chain of page deltas
//! in one streaming pass, with memory bounded whatever the chain's length.
//!
//! Every delta stream lists its pages in ascending block order, so the
//! chain merges like sorted lists: as the base streams in, each of its
//! blocks is settled by decoding every delta only as far as that block.
//! A block of the final file is the base's bytes, then, oldest delta
//! first, the delta's page when it carries one, then the delta's size
//! (which cuts the block, or extends it with zeros). A delta's size comes
//! at the end of its stream; until then its next page says enough: a page
//! further on means the file reached past this block (the stream is
//! refused if a page lies beyond its size). The result is exactly that of
//! laying each delta over the base in turn, written once, with no second
//! read of the file.
//!
//! Each delta is decoded (decrypted, decompressed, parsed) on the caller's
//! thread as the merge needs its pages, from a [`Chunks`] source: a
//! download in flight, while the base streams on another. Only a few
//! decoded pages per delta are held at a time. Each delta is checked
//! whole once its stream ends, by the CRC-32C its record gives (by its
//! SHA-256 in records older than that): the rebuilt file's SHA-256 covers
//! every page that counts, and a CRC-32C, hardware-fast, adds little to a
//! chain's cost where a SHA-256 of every delta doubled its hashing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::rc::Rc;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;

use crate::backup::delta::{Applier, Pages};
use crate::backup::object::{Format, Reader};
use crate::backup::pages::BLOCK;

/// Where a delta's stored bytes come from, a piece at a time.
pub trait Chunks {
    /// The next piece of the object, or `None` once it ended.
    fn next_chunk(&mut self) -> Result<Option<Bytes>>;
}

/// What a delta's decoding has given and the merge not yet taken.
#[derive(Default)]
struct Decoded {
    pages: VecDeque<(u32, Vec<u8>)>,
    /// The file's size after this delta, once its stream ended.
    size: Option<u64>,
}

/// The decoder's end of [`Decoded`].
struct Queue(Rc<RefCell<Decoded>>);

impl Pages for Queue {
    fn page(&mut self, block: u32, bytes: &[u8]) -> Result<()> {
        self.0.borrow_mut().pages.push_back((block, bytes.to_vec()));
        Ok(())
    }

    fn end(&mut self, size: u64) -> Result<()> {
        self.0.borrow_mut().size = Some(size);
        Ok(())
    }
}

/// What a delta's stream is checked against once it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Crc32c(u32),
    /// In records from before deltas had a CRC-32C.
    Sha256(String),
}

/// One delta of the chain, decoded as far as the merge needs.
pub struct Layer<C: Chunks> {
    key: String,
    check: Check,
    chunks: C,
    /// Gone once the stream ended and was checked whole.
    reader: Option<Reader<Applier<Queue>>>,
    decoded: Rc<RefCell<Decoded>>,
}

impl<C: Chunks> Layer<C> {
    /// The delta stored as object `key`, read from `chunks`.
    pub fn new(format: &Format, key: &str, check: Check, chunks: C) -> Result<Self> {
        let decoded = Rc::new(RefCell::new(Decoded::default()));
        let applier = Applier::new(Queue(decoded.clone()));
        let reader = match check {
            Check::Crc32c(_) => format.crc_reader(key, applier)?,
            Check::Sha256(_) => format.reader(key, applier)?,
        };
        Ok(Self {
            key: key.to_owned(),
            check,
            chunks,
            reader: Some(reader),
            decoded,
        })
    }

    /// Decodes until a page is waiting or the stream has ended.
    fn fill(&mut self) -> Result<()> {
        loop {
            {
                let decoded = self.decoded.borrow();
                if !decoded.pages.is_empty() || decoded.size.is_some() {
                    return Ok(());
                }
            }
            let Some(reader) = self.reader.as_mut() else {
                bail!("the page delta {} has no size", self.key);
            };
            match self.chunks.next_chunk()? {
                Some(chunk) => reader
                    .write_all(&chunk)
                    .with_context(|| format!("cannot read the page delta {}", self.key))?,
                None => {
                    let reader = self.reader.take().expect("present above");
                    let (applier, digest) = reader
                        .finish()
                        .with_context(|| format!("{} is truncated", self.key))?;
                    let matches = match &self.check {
                        Check::Crc32c(crc) => digest.crc32c == *crc,
                        Check::Sha256(sha256) => digest.sha256 == *sha256,
                    };
                    if !matches {
                        bail!("the page delta {} does not match its checksum", self.key);
                    }
                    applier
                        .finish()
                        .with_context(|| format!("cannot read the page delta {}", self.key))?;
                }
            }
        }
    }

    /// This delta's effect on `block`: its page there, if it carries one,
    /// and how many bytes of the block the file keeps after it.
    fn at(&mut self, block: u32) -> Result<(Option<Vec<u8>>, usize)> {
        self.fill()?;
        let page = {
            let mut decoded = self.decoded.borrow_mut();
            match decoded.pages.front() {
                Some(&(next, _)) if next < block => {
                    bail!("the page delta {} skipped back to block {next}", self.key)
                }
                Some(&(next, _)) if next == block => decoded.pages.pop_front().map(|(_, p)| p),
                _ => None,
            }
        };
        self.fill()?;
        let decoded = self.decoded.borrow();
        let kept = match (decoded.pages.front(), decoded.size) {
            // A page further on: the file reaches past this block.
            (Some(_), _) => BLOCK,
            (None, Some(size)) => size
                .saturating_sub(u64::from(block) * BLOCK as u64)
                .min(BLOCK as u64) as usize,
            (None, None) => unreachable!("filled above"),
        };
        Ok((page, kept))
    }

    /// Reads the rest of the stream (pages past the final file's end,
    /// cut by a later delta) and checks it ended whole.
    fn drain(&mut self) -> Result<()> {
        loop {
            self.fill()?;
            let mut decoded = self.decoded.borrow_mut();
            if decoded.pages.pop_front().is_none() {
                return Ok(());
            }
        }
    }
}

/// The base streams in through `write`; each block of the final file goes
/// out to `out` once, settled by every delta of the chain.
pub struct Merge<W: Write, C: Chunks> {
    out: W,
    /// Oldest first.
    layers: Vec<Layer<C>>,
    /// The base's bytes of the block being gathered.
    base: Vec<u8>,
    next: u32,
    /// The block being settled.
    block: Vec<u8>,
    /// Whether the final file ended before `next`.
    ended: bool,
}

impl<W: Write, C: Chunks> Merge<W, C> {
    pub fn new(layers: Vec<Layer<C>>, out: W) -> Result<Self> {
        if layers.is_empty() {
            bail!("a chain without a page delta");
        }
        Ok(Self {
            out,
            layers,
            base: Vec::with_capacity(BLOCK),
            next: 0,
            block: Vec::with_capacity(BLOCK),
            ended: false,
        })
    }

    /// Settles block `self.next` from the base bytes gathered for it and
    /// writes what the file keeps of it.
    fn settle(&mut self) -> Result<()> {
        let block = &mut self.block;
        block.clear();
        block.extend_from_slice(&self.base);
        for layer in &mut self.layers {
            let (page, kept) = layer.at(self.next)?;
            if let Some(page) = page {
                if block.len() < page.len() {
                    block.resize(page.len(), 0);
                }
                block[..page.len()].copy_from_slice(&page);
            }
            block.resize(kept, 0);
        }
        if block.len() < BLOCK {
            self.ended = true;
        }
        self.out
            .write_all(block)
            .context("cannot write the rebuilt file")?;
        self.base.clear();
        self.next += 1;
        Ok(())
    }

    /// Settles the blocks left (those past the base's end come from the
    /// deltas), reads every delta to its end, and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        if !self.base.is_empty() {
            self.settle()?;
        }
        while !self.ended {
            self.settle()?;
        }
        for layer in &mut self.layers {
            layer.drain()?;
        }
        Ok(self.out)
    }
}

impl<W: Write, C: Chunks> Write for Merge<W, C> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        while !buf.is_empty() {
            let n = (BLOCK - self.base.len()).min(buf.len());
            self.base.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.base.len() == BLOCK {
                self.settle()
                    .map_err(|err| io::Error::other(format!("{err:#}")))?;
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
    use crate::backup::delta::Writer;

    /// A stored object handed over in pieces of `piece` bytes.
    struct Pieces(VecDeque<Bytes>);

    impl Pieces {
        fn of(stored: &[u8], piece: usize) -> Self {
            Self(stored.chunks(piece).map(Bytes::copy_from_slice).collect())
        }
    }

    impl Chunks for Pieces {
        fn next_chunk(&mut self) -> Result<Option<Bytes>> {
            Ok(self.0.pop_front())
        }
    }

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
            crate::backup::delta::apply(&s[..], &file).unwrap();
        }
        std::fs::read(&path).unwrap()
    }

    /// The same through a merge: each stream stored by `format` and read
    /// in odd pieces, the base fed in others.
    fn merged(format: &Format, base: &[u8], streams: &[Vec<u8>]) -> Result<Vec<u8>> {
        let layers = streams
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let (stored, _) = format.write_to_vec(&s[..]).unwrap();
                let key = format!("b{n}/f.delta.{}", format.suffix());
                // Older records give a delta's SHA-256, newer ones its CRC-32C.
                let check = match n % 2 {
                    0 => Check::Crc32c(crc32c::crc32c(s)),
                    _ => Check::Sha256(crate::backup::codec::sha256_hex(s)),
                };
                Layer::new(format, &key, check, Pieces::of(&stored, 7 + 1000 * n))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut merge = Merge::new(layers, Vec::new())?;
        for piece in base.chunks(5000) {
            merge.write_all(piece)?;
        }
        merge.finish()
    }

    fn cases() -> Vec<Vec<Vec<u8>>> {
        let b = BLOCK as u64;
        vec![
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
            // Grown past the base, then cut back inside it: the older
            // delta's pages past the end are read and dropped.
            vec![
                stream(&[(11, 0xab, BLOCK), (14, 0xae, BLOCK)], 15 * b),
                stream(&[(2, 0xb2, BLOCK)], 4 * b + 10),
            ],
            // Cut mid-block, then grown: the cut block's tail is zeros.
            vec![stream(&[], 3 * b + 50), stream(&[], 5 * b)],
            // Emptied, then grown from nothing.
            vec![stream(&[], 0), stream(&[(0, 0xd0, BLOCK)], b)],
            // Emptied for good.
            vec![stream(&[(4, 0xe4, BLOCK)], 10 * b), stream(&[], 0)],
        ]
    }

    #[test]
    fn a_merged_chain_gives_what_laying_each_delta_in_turn_gives() {
        let base: Vec<u8> = (0..10 * BLOCK).map(|i| (i / BLOCK) as u8 + 1).collect();
        let encrypted = Format {
            key: Some(crate::backup::cipher::Key::from_bytes([3; 32])),
            ..Format::default()
        };
        let lz4 = Format {
            compression: crate::backup::codec::Compression::Lz4,
            key: None,
        };
        for format in [Format::default(), encrypted, lz4] {
            for (n, streams) in cases().iter().enumerate() {
                let want = sequential(&base, streams);
                let got = merged(&format, &base, streams).unwrap();
                assert_eq!(got.len(), want.len(), "case {n}");
                assert!(got == want, "case {n}: the merged file differs");
            }
        }
        // A base shorter than a block, and an empty one.
        for base in [vec![9u8; 300], Vec::new()] {
            for (n, streams) in cases().iter().enumerate() {
                let want = sequential(&base, streams);
                let got = merged(&Format::default(), &base, streams).unwrap();
                assert!(got == want, "case {n} on a base of {}", base.len());
            }
        }
    }

    #[test]
    fn a_delta_cut_short_or_past_its_size_is_refused() {
        let base = vec![1u8; 4 * BLOCK];
        let whole = stream(&[(1, 0xa1, BLOCK)], 4 * BLOCK as u64);
        let cut = whole[..whole.len() - 3].to_vec();
        let err = merged(&Format::default(), &base, &[cut]).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "cannot read the page delta b0/f.delta.zst: the page delta is cut short before its \
             size"
        );
        // Whole and well formed, but not the delta the record names.
        let format = Format::default();
        let other = stream(&[(2, 0xa2, BLOCK)], 4 * BLOCK as u64);
        let (stored, _) = format.write_to_vec(&other[..]).unwrap();
        for check in [
            Check::Crc32c(crc32c::crc32c(&whole)),
            Check::Sha256(crate::backup::codec::sha256_hex(&whole)),
        ] {
            let layer = Layer::new(&format, "b0/f.delta.zst", check, Pieces::of(&stored, 100));
            let mut merge = Merge::new(vec![layer.unwrap()], Vec::new()).unwrap();
            // Found as the stream ends, while the base streams or after.
            let err = match merge.write_all(&base) {
                Err(err) => anyhow::Error::from(err),
                Ok(()) => merge.finish().unwrap_err(),
            };
            assert_eq!(
                format!("{err:#}"),
                "the page delta b0/f.delta.zst does not match its checksum"
            );
        }
        let beyond = stream(&[(1, 0xa1, BLOCK), (5, 0xa5, BLOCK)], 4 * BLOCK as u64);
        let err = merged(&Format::default(), &base, &[beyond]).unwrap_err();
        assert!(
            format!("{err:#}").contains("writes block 5 beyond its size"),
            "{err:#}"
        );
        assert!(Merge::<Vec<u8>, Pieces>::new(Vec::new(), Vec::new()).is_err());
    }
}
