//! The checksum of a file as a restore writes it: SHA-256 (and CRC-32C),
//! computed on the writer's thread for a small file, and on a thread of its
//! own for a large one, so that decompressing and hashing a large file
//! (each about as costly) run side by side on two cores instead of one
//! after the other. A large file is the longest path of a restore: a
//! PostgreSQL relation's 1 GiB segment is still being written alone when
//! every smaller file is done.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

use crate::backup::codec::{Digest, HashWriter};

/// Files at least this large are hashed on a thread of their own.
pub const ASIDE_FROM: u64 = 16 << 20;
/// Bytes handed to the hashing thread at a time.
const PIECE: usize = 1 << 20;
/// Pieces waiting for the hashing thread.
const PIECES_WAITING: usize = 4;

/// Passes everything through to the writer inside and hashes it.
pub enum Hashed<W: Write> {
    Inline(HashWriter<W>),
    Aside(Aside<W>),
}

impl<W: Write> Hashed<W> {
    /// Hashes aside when the file will have `size` bytes of at least
    /// [`ASIDE_FROM`].
    pub fn new(out: W, size: u64) -> Self {
        match size >= ASIDE_FROM {
            true => Self::Aside(Aside::new(out)),
            false => Self::Inline(HashWriter::new(out)),
        }
    }

    /// The writer inside, and the digest of everything written.
    pub fn finish(self) -> io::Result<(W, Digest)> {
        match self {
            Self::Inline(hashing) => Ok(hashing.finish()),
            Self::Aside(aside) => aside.finish(),
        }
    }
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Inline(hashing) => hashing.write(buf),
            Self::Aside(aside) => aside.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Inline(hashing) => hashing.flush(),
            Self::Aside(aside) => aside.flush(),
        }
    }
}

/// Writes through, and hands copies of what it wrote, a piece at a time,
/// to a hashing thread; its pieces come back to be filled again. Dropped
/// unfinished (an error on the way), it closes the channel and the thread
/// ends on its own.
pub struct Aside<W: Write> {
    out: W,
    piece: Vec<u8>,
    to_hash: Option<SyncSender<Vec<u8>>>,
    hashed: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Digest>>,
}

impl<W: Write> Aside<W> {
    fn new(out: W) -> Self {
        let (to_hash, pieces) = mpsc::sync_channel::<Vec<u8>>(PIECES_WAITING);
        let (give_back, hashed) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let (mut sha256, mut crc, mut len) = (Sha256::new(), 0u32, 0u64);
            for piece in pieces {
                sha256.update(&piece);
                crc = crc32c::crc32c_append(crc, &piece);
                len += piece.len() as u64;
                let _ = give_back.send(piece);
            }
            Digest {
                sha256: hex::encode(sha256.finalize()),
                crc32c: crc,
                len,
            }
        });
        Self {
            out,
            piece: Vec::with_capacity(PIECE),
            to_hash: Some(to_hash),
            hashed,
            thread: Some(thread),
        }
    }

    /// Hands the piece filled so far to the hashing thread.
    fn hand_over(&mut self) -> io::Result<()> {
        let mut next = self.hashed.try_recv().unwrap_or_default();
        next.clear();
        next.reserve(PIECE);
        let full = std::mem::replace(&mut self.piece, next);
        self.to_hash
            .as_ref()
            .and_then(|tx| tx.send(full).ok())
            .ok_or_else(|| io::Error::other("the hashing thread stopped"))
    }

    fn finish(mut self) -> io::Result<(W, Digest)> {
        if !self.piece.is_empty() {
            self.hand_over()?;
        }
        drop(self.to_hash.take());
        let digest = self
            .thread
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        Ok((self.out, digest))
    }
}

impl<W: Write> Write for Aside<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let room = (PIECE - self.piece.len()).min(rest.len());
            self.piece.extend_from_slice(&rest[..room]);
            rest = &rest[room..];
            if self.piece.len() == PIECE {
                self.hand_over()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::codec::{crc32c_hex, sha256_hex};

    #[test]
    fn both_ways_give_the_digest_of_what_was_written() {
        let data: Vec<u8> = (0..3 * PIECE + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for size in [0, ASIDE_FROM] {
            let mut hashed = Hashed::new(Vec::new(), size);
            assert_eq!(matches!(hashed, Hashed::Aside(_)), size > 0);
            for piece in data.chunks(70_001) {
                hashed.write_all(piece).unwrap();
            }
            let (out, digest) = hashed.finish().unwrap();
            assert!(out == data);
            assert_eq!(digest.sha256, sha256_hex(&data));
            assert_eq!(crc32c_hex(digest.crc32c), crc32c_hex(crc32c::crc32c(&data)));
            assert_eq!(digest.len, data.len() as u64);
        }
        let (_, empty) = Hashed::new(Vec::new(), ASIDE_FROM).finish().unwrap();
        assert_eq!(empty.sha256, sha256_hex(b""));
    }
}
