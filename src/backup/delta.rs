//! Page-level deltas of relation data files: which 8 KiB pages of a file
//! changed since a reference backup, the stream that carries only those
//! pages, and how a restore lays them over the reference's copy.
//!
//! The choice of pages is by page LSN, as WAL-G does, not by a block map
//! built from WAL. PostgreSQL 15 keeps no summary of the blocks WAL touched
//! (17's WAL summarizer came later), and building one would mean decoding
//! every record type of every resource manager; the page LSN is on every
//! page already. It is sound on the charm's clusters because they are
//! initialised with data checksums: from the reference backup's start (the
//! redo point of the checkpoint it began with, every older change flushed by
//! it), any change that reaches a page on disk comes with a WAL record whose
//! LSN the page takes, hint bits included (the first hint after a
//! checkpoint writes a full-page image). So a page whose LSN is at or
//! before that start is as the reference read it, and only newer ones need
//! storing. Three cases would break that, and are handled:
//!
//! - a page that is new (never initialised: `pd_upper` is 0, LSN 0), as a
//!   relation truncated and extended again leaves, is always taken: the
//!   reference may hold old tuples at that block;
//! - a file that is not the file the reference read (a relation dropped and
//!   its file name taken again, or `CREATE DATABASE ... STRATEGY FILE_COPY`
//!   copying old pages with their old LSNs) must be stored whole: the caller
//!   compares the inode and birth time the reference recorded;
//! - a page read while PostgreSQL wrote it may be half old, half new; the
//!   caller checks each page's checksum and reads a failing page again, as
//!   for a full backup; a page changed during the backup is rewritten by
//!   recovery from its full-page image whatever was read.
//!
//! The stream, before the repository's compression and encryption: a
//! header (`MAGIC`), then for each page taken its block number in the file
//! (u32, little-endian), its length (u32; 8192, or less for a last block
//! caught mid-extension) and its bytes, in ascending block order; then
//! `END` (u32) and the file's size (u64). The size comes last so that the
//! file can be streamed in one read.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use anyhow::{bail, ensure, Context as _, Result};
use sha2::{Digest as _, Sha256};

use super::codec::Digest;
use super::pages::{page_ok, BLOCK};

/// First bytes of a delta stream.
pub const MAGIC: &[u8; 8] = b"PGDELTA1";
/// Block number that ends the pages.
const END: u32 = u32::MAX;

/// A page's LSN (`pd_lsn`: the high then the low 32 bits, each in the
/// machine's order, little-endian here).
pub fn page_lsn(page: &[u8]) -> u64 {
    (u64::from(u32::from_le_bytes([page[0], page[1], page[2], page[3]])) << 32)
        | u64::from(u32::from_le_bytes([page[4], page[5], page[6], page[7]]))
}

/// Whether a page read now must be stored for a backup whose reference
/// started at `since`: changed after it, new, or too short to judge.
pub fn changed_since(page: &[u8], since: u64) -> bool {
    if page.len() < BLOCK {
        return true;
    }
    let upper = u16::from_le_bytes([page[14], page[15]]);
    upper == 0 || page_lsn(page) > since
}

/// Writes a delta stream: the header at once, then the pages given, then
/// the end mark and the size.
pub struct Writer<W: Write> {
    out: W,
    last: Option<u32>,
    /// Pages written so far.
    pub pages: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(Self {
            out,
            last: None,
            pages: 0,
        })
    }

    /// Adds the page at `block` of the file (blocks in ascending order).
    pub fn page(&mut self, block: u32, bytes: &[u8]) -> io::Result<()> {
        let ordered = block != END && self.last.is_none_or(|last| block > last);
        if !ordered || bytes.is_empty() || bytes.len() > BLOCK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "page {block} of {} bytes is out of order or size",
                    bytes.len()
                ),
            ));
        }
        self.out.write_all(&block.to_le_bytes())?;
        self.out.write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.out.write_all(bytes)?;
        self.last = Some(block);
        self.pages += 1;
        Ok(())
    }

    /// Ends the stream with the file's size; returns the writer.
    pub fn finish(mut self, size: u64) -> io::Result<W> {
        self.out.write_all(&END.to_le_bytes())?;
        self.out.write_all(&size.to_le_bytes())?;
        Ok(self.out)
    }
}

/// Checking pages on the way (see `pages`): the file being read, to read
/// a failing page again, the number of its first block in the relation,
/// and the LSN this backup started at.
pub struct Check {
    pub file: File,
    pub first_block: u32,
    pub start_lsn: u64,
}

/// The sink a relation file is copied into for a delta backup. Each page,
/// once whole, is checked (a page whose checksum fails is read again from
/// the file, as a read may meet a write half done), counted in the file's
/// digest as finally read (what PostgreSQL's manifest and the restore check
/// the reassembled file against), and passed on into the delta stream when
/// it changed since `since`, or still fails its checksum: the restore must
/// then give back what was read, not the reference's copy.
pub struct Selector<W: Write> {
    delta: Writer<W>,
    since: u64,
    check: Option<Check>,
    page: Vec<u8>,
    block: u32,
    hasher: Sha256,
    crc: u32,
    len: u64,
    /// Blocks (numbered in the relation) whose checksum failed twice.
    pub bad_pages: Vec<u32>,
}

impl<W: Write> Selector<W> {
    pub fn new(out: W, since: u64, check: Option<Check>) -> io::Result<Self> {
        Ok(Self {
            delta: Writer::new(out)?,
            since,
            check,
            page: Vec::with_capacity(BLOCK),
            block: 0,
            hasher: Sha256::new(),
            crc: 0,
            len: 0,
            bad_pages: Vec::new(),
        })
    }

    fn take(&mut self) -> io::Result<()> {
        let mut bad = false;
        if let Some(check) = self.check.as_ref().filter(|_| self.page.len() == BLOCK) {
            let blkno = check.first_block.wrapping_add(self.block);
            if !page_ok(&self.page, blkno, check.start_lsn) {
                let mut again = vec![0u8; BLOCK];
                let offset = u64::from(self.block) * BLOCK as u64;
                if check.file.read_exact_at(&mut again, offset).is_ok() {
                    self.page = again;
                }
                bad = !page_ok(&self.page, blkno, check.start_lsn);
                if bad {
                    self.bad_pages.push(blkno);
                }
            }
        }
        self.hasher.update(&self.page);
        self.crc = crc32c::crc32c_append(self.crc, &self.page);
        self.len += self.page.len() as u64;
        if bad || changed_since(&self.page, self.since) {
            self.delta.page(self.block, &self.page)?;
        }
        self.page.clear();
        self.block += 1;
        Ok(())
    }

    /// Ends the stream; returns the file's digest, the pages stored and
    /// the writer the stream went to.
    pub fn finish(mut self) -> io::Result<(Digest, u32, W)> {
        if !self.page.is_empty() {
            self.take()?;
        }
        let pages = self.delta.pages;
        let out = self.delta.finish(self.len)?;
        let digest = Digest {
            sha256: hex::encode(self.hasher.finalize()),
            crc32c: self.crc,
            len: self.len,
        };
        Ok((digest, pages, out))
    }
}

impl<W: Write> Write for Selector<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let n = (BLOCK - self.page.len()).min(rest.len());
            self.page.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.page.len() == BLOCK {
                self.take()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What applying a delta did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub pages: u32,
    pub size: u64,
}

/// Lays the pages of a delta stream over `file` (the reference's content,
/// already written) and sets the file to the size the stream ends with.
/// A stream cut short or malformed is an error, and `file` must then be
/// thrown away.
pub fn apply(mut stream: impl Read, file: &File) -> Result<Applied> {
    let mut applier = Applier::new(file);
    io::copy(&mut stream, &mut applier).map_err(unwrap_io)?;
    applier.finish()
}

/// Where the reading of a stream is.
enum State {
    Magic,
    /// A page's block number and length, or the end mark.
    Head,
    Page {
        block: u32,
        len: usize,
    },
    Size,
    Done {
        size: u64,
    },
}

/// Where the pages of a delta stream go as they are read: into the file
/// (laid over the reference's copy), or to a restore's merge of a chain
/// (see `restore::merge`).
pub trait Pages {
    /// The page at `block`: 8192 bytes, or fewer for a last block.
    fn page(&mut self, block: u32, bytes: &[u8]) -> Result<()>;
    /// The stream ended: the file has `size` bytes.
    fn end(&mut self, size: u64) -> Result<()>;
}

impl Pages for &File {
    fn page(&mut self, block: u32, bytes: &[u8]) -> Result<()> {
        self.write_all_at(bytes, u64::from(block) * BLOCK as u64)
            .with_context(|| format!("cannot write block {block}"))
    }

    fn end(&mut self, size: u64) -> Result<()> {
        self.set_len(size).context("cannot set the file's size")
    }
}

/// A delta stream written in pieces (as a restore decompresses it), its
/// pages handed on as they arrive; `finish` checks it was whole.
pub struct Applier<P: Pages> {
    sink: P,
    state: State,
    buf: Vec<u8>,
    last: Option<u32>,
    pages: u32,
}

impl<P: Pages> Applier<P> {
    pub fn new(sink: P) -> Self {
        Self {
            sink,
            state: State::Magic,
            buf: Vec::with_capacity(BLOCK),
            last: None,
            pages: 0,
        }
    }

    /// How many bytes the current state still waits for.
    fn wanted(&self) -> usize {
        match self.state {
            State::Magic | State::Size => 8,
            // The block number first: the end mark has no length after it.
            State::Head if self.buf.len() < 4 || self.buf[..4] == END.to_le_bytes() => 4,
            State::Head => 8,
            State::Page { len, .. } => len,
            State::Done { .. } => 0,
        }
    }

    /// Acts on a whole piece (`self.buf`) and moves on.
    fn step(&mut self) -> Result<()> {
        let word =
            |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        self.state = match self.state {
            State::Magic => {
                ensure!(
                    self.buf == MAGIC,
                    "this is not a page delta (unknown header)"
                );
                State::Head
            }
            State::Head if self.buf.len() == 4 => State::Size,
            State::Head => {
                let (block, len) = (word(&self.buf, 0), word(&self.buf, 4) as usize);
                if len == 0 || len > BLOCK || self.last.is_some_and(|l| block <= l) {
                    bail!("the page delta is malformed at block {block}");
                }
                State::Page { block, len }
            }
            State::Page { block, .. } => {
                self.sink.page(block, &self.buf)?;
                self.last = Some(block);
                self.pages += 1;
                State::Head
            }
            State::Size => {
                let size = u64::from_le_bytes(self.buf[..8].try_into().expect("8 bytes"));
                if let Some(block) = self.last {
                    ensure!(
                        u64::from(block) * (BLOCK as u64) < size,
                        "the page delta writes block {block} beyond its size of {size} bytes"
                    );
                }
                State::Done { size }
            }
            State::Done { .. } => bail!("the page delta goes on after its end"),
        };
        self.buf.clear();
        Ok(())
    }

    /// Checks the stream ended where it should, and sets the file's size.
    pub fn finish(self) -> Result<Applied> {
        let size = match self.state {
            State::Done { size } => size,
            State::Magic if self.buf.is_empty() => bail!("the page delta is empty"),
            State::Magic => bail!("this is not a page delta (unknown header)"),
            State::Page { block, .. } => bail!("the page delta is cut short in block {block}"),
            State::Size => bail!("the page delta is cut short before its size"),
            State::Head => bail!("the page delta is cut short"),
        };
        let mut sink = self.sink;
        sink.end(size)?;
        Ok(Applied {
            pages: self.pages,
            size,
        })
    }
}

impl<P: Pages> Write for Applier<P> {
    fn write(&mut self, mut bytes: &[u8]) -> io::Result<usize> {
        let total = bytes.len();
        while !bytes.is_empty() {
            if matches!(self.state, State::Done { .. }) {
                return Err(wrap_io(anyhow::anyhow!(
                    "the page delta goes on after its end"
                )));
            }
            let n = (self.wanted() - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == self.wanted() {
                self.step().map_err(wrap_io)?;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An error of the stream's content carried through `io::Write`.
fn wrap_io(err: anyhow::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{err:#}"))
}

fn unwrap_io(err: io::Error) -> anyhow::Error {
    anyhow::anyhow!("{err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page with LSN `lsn` and every other byte `fill` (pd_upper set, so not new).
    fn page(lsn: u64, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; BLOCK];
        p[0..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
        p[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
        p[14..16].copy_from_slice(&8000u16.to_le_bytes());
        p
    }

    /// The pages of `now` a delta since `since` takes, as a stream.
    fn delta(now: &[u8], since: u64) -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).unwrap();
        for (block, bytes) in now.chunks(BLOCK).enumerate() {
            if changed_since(bytes, since) {
                w.page(block as u32, bytes).unwrap();
            }
        }
        w.finish(now.len() as u64).unwrap()
    }

    fn file_with(content: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("16384");
        std::fs::write(&path, content).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, file)
    }

    fn content(file: &File) -> Vec<u8> {
        let mut out = Vec::new();
        let mut f = file.try_clone().unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn lsns_read_as_postgresql_writes_them() {
        let p = page(0x0000_0001_2345_6789, 0);
        assert_eq!(page_lsn(&p), 0x0000_0001_2345_6789);
        assert!(changed_since(&p, 0x0000_0001_2345_6788));
        assert!(!changed_since(&p, 0x0000_0001_2345_6789));
        // New pages (pd_upper 0) and short ones are always taken.
        assert!(changed_since(&vec![0u8; BLOCK], u64::MAX));
        assert!(changed_since(&p[..4096], u64::MAX));
    }

    #[test]
    fn only_newer_pages_travel_and_the_file_comes_back_whole() {
        let reference: Vec<u8> = [page(100, 1), page(100, 2), page(100, 3), page(100, 4)].concat();
        // Block 1 changed after the reference started, block 3 before it.
        let now: Vec<u8> = [page(100, 1), page(250, 9), page(100, 3), page(90, 4)].concat();
        let stream = delta(&now, 200);
        assert_eq!(stream.len(), 8 + 8 + BLOCK + 4 + 8);
        let (_dir, file) = file_with(&reference);
        let applied = apply(&stream[..], &file).unwrap();
        assert_eq!(
            applied,
            Applied {
                pages: 1,
                size: now.len() as u64
            }
        );
        let mut expected = reference.clone();
        expected[BLOCK..2 * BLOCK].copy_from_slice(&page(250, 9));
        assert_eq!(content(&file), expected);
    }

    #[test]
    fn truncated_then_extended_files_keep_no_old_tuples() {
        // The reference had three pages; the relation was truncated to one,
        // then extended by two new (all-zero) pages and one short block.
        let reference: Vec<u8> = [page(100, 1), page(100, 2), page(100, 3)].concat();
        let mut now: Vec<u8> = [page(100, 1), vec![0; BLOCK], vec![0; BLOCK]].concat();
        now.extend_from_slice(&[7u8; 100]);
        let (_dir, file) = file_with(&reference);
        let applied = apply(&delta(&now, 200)[..], &file).unwrap();
        assert_eq!(applied.pages, 3);
        assert_eq!(content(&file), now);

        // And shrunk: the size at the end cuts what the reference had beyond it.
        let shorter = page(100, 1);
        let (_dir, file) = file_with(&reference);
        assert_eq!(apply(&delta(&shorter, 200)[..], &file).unwrap().pages, 0);
        assert_eq!(content(&file), shorter);
    }

    #[test]
    fn a_stream_written_in_any_pieces_lays_the_same_pages() {
        let reference: Vec<u8> = [page(100, 1), page(100, 2), page(100, 3)].concat();
        let now: Vec<u8> = [page(300, 7), page(100, 2), page(300, 8)].concat();
        let stream = delta(&now, 200);
        for piece in [1, 3, 4, 7, 4096, 9000] {
            let (_dir, file) = file_with(&reference);
            let mut applier = Applier::new(&file);
            for chunk in stream.chunks(piece) {
                applier.write_all(chunk).unwrap();
            }
            assert_eq!(applier.finish().unwrap().pages, 2, "pieces of {piece}");
            assert_eq!(content(&file), now, "pieces of {piece}");
        }
        // A block out of order is malformed.
        let mut bad = stream.clone();
        let second = 8 + 8 + BLOCK;
        bad[second..second + 4].copy_from_slice(&0u32.to_le_bytes());
        let (_dir, file) = file_with(&reference);
        let err = format!("{:#}", apply(&bad[..], &file).unwrap_err());
        assert!(err.contains("malformed at block 0"), "{err}");
    }

    #[test]
    fn broken_streams_are_refused() {
        let now: Vec<u8> = [page(300, 1), page(300, 2)].concat();
        let good = delta(&now, 200);
        let (_dir, file) = file_with(&now);
        let error = |bytes: &[u8]| format!("{:#}", apply(bytes, &file).unwrap_err());
        assert!(error(&good[..good.len() - 3]).contains("cut short before its size"));
        assert!(error(&good[..20]).contains("cut short in block 0"));
        assert!(error(b"PGDELTA0").contains("not a page delta"));
        assert!(error(&[]).contains("the page delta is empty"));
        let mut longer = good.clone();
        longer.push(0);
        assert!(error(&longer).contains("goes on after its end"));
        let mut beyond = Writer::new(Vec::new()).unwrap();
        beyond.page(5, &page(300, 1)).unwrap();
        assert!(error(&beyond.finish(BLOCK as u64).unwrap()).contains("beyond its size"));
    }

    #[test]
    fn the_selector_digests_the_whole_file_and_passes_on_the_changed_pages() {
        let now: Vec<u8> = [page(100, 1), page(300, 2), page(100, 3)].concat();
        let mut sel = Selector::new(Vec::new(), 200, None).unwrap();
        // Written in pieces that straddle page boundaries.
        for piece in now.chunks(5000) {
            sel.write_all(piece).unwrap();
        }
        let (digest, pages, stream) = sel.finish().unwrap();
        assert_eq!(pages, 1);
        assert_eq!(stream, delta(&now, 200));
        assert_eq!(digest.len, now.len() as u64);
        assert_eq!(digest.sha256, crate::backup::codec::sha256_hex(&now));
        assert_eq!(digest.crc32c, crc32c::crc32c(&now));
    }

    /// `page(lsn, fill)` with its checksum as block `blkno`.
    fn summed(lsn: u64, fill: u8, blkno: u32) -> Vec<u8> {
        let mut p = page(lsn, fill);
        let sum = crate::backup::pages::checksum(&p, blkno);
        p[8..10].copy_from_slice(&sum.to_le_bytes());
        p
    }

    #[test]
    fn a_page_read_mid_write_is_read_again_and_a_bad_one_travels() {
        // On disk: three good old pages. The stream read saw block 1 torn
        // (a byte changed, the old LSN); block 2 is bad on disk too.
        let mut disk: Vec<u8> = [summed(100, 1, 0), summed(100, 2, 1), summed(100, 3, 2)].concat();
        disk[2 * BLOCK + 4000] ^= 0xff;
        let (_dir, file) = file_with(&disk);
        let mut read = disk.clone();
        read[BLOCK + 5000] ^= 0xff;
        let check = Check {
            file: file.try_clone().unwrap(),
            first_block: 0,
            start_lsn: 500,
        };
        let mut sel = Selector::new(Vec::new(), 200, Some(check)).unwrap();
        sel.write_all(&read).unwrap();
        let bad = sel.bad_pages.clone();
        let (digest, pages, stream) = sel.finish().unwrap();
        // Block 1 was taken as read again (unchanged: not stored); block 2
        // is bad and stored as read, so the reassembled file is the disk's.
        assert_eq!(bad, vec![2]);
        assert_eq!(pages, 1);
        assert_eq!(digest.sha256, crate::backup::codec::sha256_hex(&disk));
        let mut reference = disk.clone();
        reference[2 * BLOCK..].copy_from_slice(&summed(100, 3, 2));
        let (_dir, target) = file_with(&reference);
        apply(&stream[..], &target).unwrap();
        assert_eq!(content(&target), disk);
    }

    #[test]
    fn the_writer_takes_pages_in_order_only() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.page(3, &page(1, 1)).unwrap();
        assert!(w.page(3, &page(1, 1)).is_err());
        assert!(w.page(2, &page(1, 1)).is_err());
        assert!(w.page(4, &[]).is_err());
        assert!(w.page(4, &vec![0; BLOCK + 1]).is_err());
        assert_eq!(w.pages, 1);
    }
}
