//! How the engine compresses what it stores, and back: streaming zstd (at a
//! chosen level), lz4 (frame format) or none, hashing the uncompressed bytes
//! with SHA-256 (and CRC-32C, for PostgreSQL's backup manifest) as they
//! pass, so a file is read once and its checksums always describe what
//! PostgreSQL wrote, never the stored form.
//!
//! Both directions are `std::io::Write` adapters: feed them what you read,
//! `finish()` them, and they hand back the inner writer and the [`Digest`].
//! An object's name says how it is compressed (its suffix: `.zst`, `.lz4`
//! or `.raw`), so objects written before a change of setting still read.

use std::io::{self, Read, Write};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The default zstd level: fast, and about 3× on WAL.
pub const ZSTD_LEVEL: i32 = 3;

/// How objects are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase")]
pub enum Compression {
    Zstd { level: i32 },
    Lz4,
    None,
}

impl Default for Compression {
    fn default() -> Self {
        Self::Zstd { level: ZSTD_LEVEL }
    }
}

impl Compression {
    /// The suffix of the objects it writes (without the dot).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Zstd { .. } => "zst",
            Self::Lz4 => "lz4",
            Self::None => "raw",
        }
    }

    /// How an object was compressed, from its name's suffix.
    pub fn of_object(name: &str) -> Result<Self> {
        match name.rsplit_once('.').map(|(_, suffix)| suffix) {
            Some("zst") => Ok(Self::default()),
            Some("lz4") => Ok(Self::Lz4),
            Some("raw") => Ok(Self::None),
            _ => bail!("{name} does not say how it is compressed (.zst, .lz4 or .raw)"),
        }
    }

    /// Strips the suffix of a data object's name, if it has one of ours.
    pub fn strip_suffix(name: &str) -> Option<&str> {
        [".zst", ".lz4", ".raw"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
    }
}

/// The SHA-256 (lowercase hex), CRC-32C and length of some uncompressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub sha256: String,
    pub crc32c: u32,
    pub len: u64,
}

/// A CRC-32C as the catalog stores it: 8 lowercase hex digits of its value.
pub fn crc32c_hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// True when `s` has the form of a SHA-256 in lowercase hex.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A writer that hashes and counts what passes through it.
pub struct HashWriter<W: Write> {
    inner: W,
    /// None when only the CRC-32C or the length is wanted.
    hasher: Option<Sha256>,
    /// False when only the length is wanted (see `uncounted`).
    crc_wanted: bool,
    crc: u32,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Some(Sha256::new()),
            crc_wanted: true,
            crc: 0,
            len: 0,
        }
    }

    /// Computes the CRC-32C only (hardware-fast): its digest has no
    /// SHA-256 (empty).
    pub fn crc_only(inner: W) -> Self {
        Self {
            hasher: None,
            ..Self::new(inner)
        }
    }

    /// Counts the bytes only: its digest has no SHA-256 (empty) and a
    /// CRC-32C of 0. For data whose checksum is checked further on.
    pub fn uncounted(inner: W) -> Self {
        Self {
            hasher: None,
            crc_wanted: false,
            ..Self::new(inner)
        }
    }

    pub fn finish(self) -> (W, Digest) {
        let digest = Digest {
            sha256: self
                .hasher
                .map(|h| hex::encode(h.finalize()))
                .unwrap_or_default(),
            crc32c: self.crc,
            len: self.len,
        };
        (self.inner, digest)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        if self.crc_wanted {
            self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Lz4(lz4_flex::frame::FrameEncoder<W>),
    None(W),
}

/// Uncompressed bytes in, compressed out to the inner writer; hashes the input.
pub struct Compressor<W: Write> {
    encoder: Encoder<W>,
    hasher: Sha256,
    crc: u32,
    len: u64,
}

impl<W: Write> Compressor<W> {
    pub fn new(out: W, compression: Compression) -> Result<Self> {
        let encoder = match compression {
            Compression::Zstd { level } => Encoder::Zstd(
                zstd::stream::write::Encoder::new(out, level)
                    .context("cannot set up the zstd compressor")?,
            ),
            Compression::Lz4 => Encoder::Lz4(lz4_flex::frame::FrameEncoder::new(out)),
            Compression::None => Encoder::None(out),
        };
        Ok(Self {
            encoder,
            hasher: Sha256::new(),
            crc: 0,
            len: 0,
        })
    }

    /// Ends the compressed stream; returns the inner writer and the input's digest.
    pub fn finish(self) -> Result<(W, Digest)> {
        let out = match self.encoder {
            Encoder::Zstd(e) => e.finish().context("cannot finish the zstd frame")?,
            Encoder::Lz4(e) => e.finish().context("cannot finish the lz4 frame")?,
            Encoder::None(out) => out,
        };
        let digest = Digest {
            sha256: hex::encode(self.hasher.finalize()),
            crc32c: self.crc,
            len: self.len,
        };
        Ok((out, digest))
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.encoder {
            Encoder::Zstd(e) => e.write(buf)?,
            Encoder::Lz4(e) => e.write(buf)?,
            Encoder::None(out) => out.write(buf)?,
        };
        self.hasher.update(&buf[..n]);
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.encoder {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Lz4(e) => e.flush(),
            Encoder::None(out) => out.flush(),
        }
    }
}

enum Decoder<W: Write> {
    Zstd(zstd::stream::write::Decoder<'static, HashWriter<W>>),
    Lz4(super::lz4frame::Decoder<HashWriter<W>>),
    None(HashWriter<W>),
}

/// Compressed bytes in, uncompressed bytes out to the inner writer; hashes the output.
pub struct Decompressor<W: Write> {
    decoder: Decoder<W>,
}

impl<W: Write> Decompressor<W> {
    pub fn new(out: W, compression: Compression) -> Result<Self> {
        Self::with(HashWriter::new(out), compression)
    }

    /// One whose output is not hashed (see `HashWriter::uncounted`).
    pub fn unhashed(out: W, compression: Compression) -> Result<Self> {
        Self::with(HashWriter::uncounted(out), compression)
    }

    /// One whose output gets a CRC-32C only (see `HashWriter::crc_only`).
    pub fn crc_only(out: W, compression: Compression) -> Result<Self> {
        Self::with(HashWriter::crc_only(out), compression)
    }

    fn with(out: HashWriter<W>, compression: Compression) -> Result<Self> {
        let decoder = match compression {
            Compression::Zstd { .. } => Decoder::Zstd(
                zstd::stream::write::Decoder::new(out)
                    .context("cannot set up the zstd decompressor")?,
            ),
            Compression::Lz4 => Decoder::Lz4(super::lz4frame::Decoder::new(out)),
            Compression::None => Decoder::None(out),
        };
        Ok(Self { decoder })
    }

    /// Checks the input ended on a complete frame; returns the inner writer
    /// and the digest of what was written to it.
    pub fn finish(self) -> Result<(W, Digest)> {
        let hashing = match self.decoder {
            Decoder::Zstd(d) => d
                .finish()
                .context("the compressed data is truncated (no complete zstd frame)")?,
            Decoder::Lz4(d) => d.finish().context("the compressed data is truncated")?,
            Decoder::None(out) => out,
        };
        Ok(hashing.finish())
    }
}

impl<W: Write> Write for Decompressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.decoder {
            Decoder::Zstd(d) => d.write(buf),
            Decoder::Lz4(d) => d.write(buf),
            Decoder::None(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.decoder {
            Decoder::Zstd(d) => d.flush(),
            Decoder::Lz4(d) => d.flush(),
            Decoder::None(out) => out.flush(),
        }
    }
}

/// Compresses everything `reader` yields into memory with zstd at the
/// default level (for objects small enough to store with one request).
pub fn compress_to_vec(mut reader: impl Read) -> Result<(Vec<u8>, Digest)> {
    let mut compressor = Compressor::new(Vec::new(), Compression::default())?;
    io::copy(&mut reader, &mut compressor).context("cannot read what is to be compressed")?;
    compressor.finish()
}

/// Decompresses a whole zstd buffer into memory.
pub fn decompress_to_vec(compressed: &[u8]) -> Result<(Vec<u8>, Digest)> {
    let mut decompressor = Decompressor::new(Vec::new(), Compression::default())?;
    decompressor
        .write_all(compressed)
        .context("the compressed data is not valid zstd")?;
    decompressor.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn round_trip_keeps_bytes_and_hashes_the_uncompressed_side() {
        let raw = sample();
        let (packed, digest) = compress_to_vec(raw.as_slice()).unwrap();
        assert!(packed.len() < raw.len() / 10, "{} bytes", packed.len());
        assert_eq!(digest.sha256, sha256_hex(&raw));
        assert_eq!(digest.crc32c, crc32c::crc32c(&raw));
        assert_eq!(digest.len, raw.len() as u64);
        let (back, digest2) = decompress_to_vec(&packed).unwrap();
        assert_eq!(back, raw);
        assert_eq!(digest2, digest);
    }

    #[test]
    fn decompression_is_streaming_in_small_chunks() {
        let raw = sample();
        let (packed, digest) = compress_to_vec(raw.as_slice()).unwrap();
        let mut d = Decompressor::new(Vec::new(), Compression::default()).unwrap();
        for chunk in packed.chunks(7) {
            d.write_all(chunk).unwrap();
        }
        let (back, digest2) = d.finish().unwrap();
        assert_eq!(back, raw);
        assert_eq!(digest2, digest);
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error() {
        let (packed, _) = compress_to_vec(sample().as_slice()).unwrap();
        let err = decompress_to_vec(&packed[..packed.len() / 2]).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
        assert!(decompress_to_vec(b"not zstd at all").is_err());
    }

    #[test]
    fn known_crc32c_in_pieces() {
        // The check value of CRC-32C.
        let mut c = Compressor::new(Vec::new(), Compression::default()).unwrap();
        c.write_all(b"1234").unwrap();
        c.write_all(b"56789").unwrap();
        let (_, digest) = c.finish().unwrap();
        assert_eq!(digest.crc32c, 0xe306_9283);
        assert_eq!(crc32c_hex(digest.crc32c), "e3069283");
        assert_eq!(crc32c_hex(1), "00000001");
    }

    #[test]
    fn every_compression_round_trips_and_is_named_by_its_suffix() {
        let raw = sample();
        for compression in [
            Compression::Zstd { level: 1 },
            Compression::Zstd { level: 19 },
            Compression::Lz4,
            Compression::None,
        ] {
            let mut c = Compressor::new(Vec::new(), compression).unwrap();
            c.write_all(&raw).unwrap();
            let (packed, digest) = c.finish().unwrap();
            if compression == Compression::None {
                assert_eq!(packed, raw);
            } else {
                assert!(packed.len() < raw.len() / 4, "{compression:?}");
            }
            let name = format!("base/1.{}", compression.suffix());
            let read_as = Compression::of_object(&name).unwrap();
            let mut d = Decompressor::new(Vec::new(), read_as).unwrap();
            for piece in packed.chunks(4099) {
                d.write_all(piece).unwrap();
            }
            let (back, digest2) = d.finish().unwrap();
            assert_eq!(back, raw, "{compression:?}");
            assert_eq!(digest2, digest);
            assert_eq!(Compression::strip_suffix(&name), Some("base/1"));
        }
        assert!(Compression::of_object("backups/x/backup_label").is_err());
    }

    #[test]
    fn known_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&sha256_hex(b"")));
        assert!(!is_sha256_hex("ABC"));
    }
}
