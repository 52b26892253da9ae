//! What a stored object is, in one place: a file's bytes compressed (as the
//! repository's [`Format`] says), then encrypted when a key is configured.
//! Writers and readers are streaming `Write` adapters; checksums are of the
//! file's own bytes, whatever is stored.
//!
//! Reading needs no setting: an object's name says how it is compressed
//! (`codec`), and an encrypted object starts with its own header
//! (`cipher`), so objects written before compression or encryption was
//! changed still read. Without the key, or with another one, an encrypted
//! object fails with the key ids named and nothing of it passed on.
//!
//! A backup's `backup_label`, `tablespace_map` and `backup_manifest` are
//! small and stored uncompressed, encrypted like the rest. (PostgreSQL writes
//! them as text, which never starts with the encrypted header's first byte.)
//! The one object a reader could take for encrypted by mistake is a file
//! stored with `backup-compression=none` and no key whose own first 8 bytes
//! are that header's magic: it then fails to restore, loudly, and is never
//! turned into other bytes.

use std::io::{self, Write};

use anyhow::{Context as _, Result};

use super::cipher::{self, Decryptor, Encryptor, Key};
use super::codec::{Compression, Compressor, Decompressor, Digest};

/// How this repository writes objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Format {
    pub compression: Compression,
    /// Encrypt with this key (objects without one are read too).
    pub key: Option<Key>,
}

/// What the compressor writes into: the output, or an encryptor in front of it.
enum Sink<W: Write> {
    Plain(W),
    Sealed(Box<Encryptor<W>>),
}

impl<W: Write> Sink<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Sink::Plain(out) => Ok(out),
            Sink::Sealed(enc) => (*enc).finish(),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(out) => out.write(buf),
            Sink::Sealed(enc) => enc.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(out) => out.flush(),
            Sink::Sealed(enc) => enc.flush(),
        }
    }
}

/// A file's bytes in, the stored object out.
pub struct Writer<W: Write> {
    compressor: Compressor<Sink<W>>,
}

impl<W: Write> Writer<W> {
    /// Ends the object; returns the output and the digest of the file's bytes.
    pub fn finish(self) -> Result<(W, Digest)> {
        let (sink, digest) = self.compressor.finish()?;
        let out = sink
            .finish()
            .context("cannot finish the encrypted object")?;
        Ok((out, digest))
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.compressor.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.compressor.flush()
    }
}

/// A stored object in, the file's bytes out, once it is known whether the
/// object is encrypted (its first bytes).
enum Opening<W: Write> {
    Sniffing {
        start: Vec<u8>,
        out: Decompressor<W>,
    },
    Plain(Decompressor<W>),
    Sealed(Box<Decryptor<Decompressor<W>>>),
    /// Only while switching states.
    Gone,
}

/// A stored object in, the file's bytes out.
pub struct Reader<W: Write> {
    opening: Opening<W>,
    key: Option<Key>,
    object: String,
}

impl<W: Write> Reader<W> {
    fn decide(&mut self) -> io::Result<()> {
        if !matches!(self.opening, Opening::Sniffing { .. }) {
            return Ok(());
        }
        let Opening::Sniffing { start, out } = std::mem::replace(&mut self.opening, Opening::Gone)
        else {
            unreachable!("matched above");
        };
        self.opening = if cipher::is_encrypted(&start) {
            let mut dec = Decryptor::new(self.key.clone(), self.object.clone(), out);
            dec.write_all(&start)?;
            Opening::Sealed(Box::new(dec))
        } else {
            let mut out = out;
            out.write_all(&start)?;
            Opening::Plain(out)
        };
        Ok(())
    }

    /// Checks the object was whole (and authentic); returns the output and
    /// the digest of what was written to it.
    pub fn finish(mut self) -> Result<(W, Digest)> {
        self.decide()?;
        match self.opening {
            Opening::Plain(out) => out.finish(),
            Opening::Sealed(dec) => (*dec).finish()?.finish(),
            Opening::Sniffing { .. } | Opening::Gone => unreachable!("decided above"),
        }
    }
}

impl<W: Write> Write for Reader<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Opening::Sniffing { start, .. } = &mut self.opening {
            let n = buf.len().min(cipher::MAGIC.len() - start.len());
            start.extend_from_slice(&buf[..n]);
            if start.len() == cipher::MAGIC.len() {
                self.decide()?;
            }
            return Ok(n);
        }
        match &mut self.opening {
            Opening::Plain(out) => out.write(buf),
            Opening::Sealed(dec) => dec.write(buf),
            Opening::Sniffing { .. } | Opening::Gone => Err(io::Error::other("reader failed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Format {
    /// A writer of a data object (a file, or a WAL segment), whose name
    /// must end in `.` + [`Format::suffix`].
    pub fn writer<W: Write>(&self, out: W) -> Result<Writer<W>> {
        let sink = match &self.key {
            Some(key) => Sink::Sealed(Box::new(Encryptor::new(key, out)?)),
            None => Sink::Plain(out),
        };
        Ok(Writer {
            compressor: Compressor::new(sink, self.compression)?,
        })
    }

    /// The suffix of the data objects it writes.
    pub fn suffix(&self) -> &'static str {
        self.compression.suffix()
    }

    /// A reader of the data object `name` (compressed as its suffix says).
    pub fn reader<W: Write>(&self, name: &str, out: W) -> Result<Reader<W>> {
        self.reader_as(name, Compression::of_object(name)?, out)
    }

    /// A reader whose digest has no SHA-256: for an object whose content
    /// is checked further on (the base of a file rebuilt from page deltas,
    /// checked as the rebuilt file). Encrypted objects are still
    /// authenticated, and every stream checked for being whole.
    pub fn unhashed_reader<W: Write>(&self, name: &str, out: W) -> Result<Reader<W>> {
        let out = Decompressor::unhashed(out, Compression::of_object(name)?)?;
        Ok(self.opening(name, out))
    }

    /// A reader whose digest has a CRC-32C and no SHA-256: for a page
    /// delta, whose pages are checked again as part of the rebuilt file.
    pub fn crc_reader<W: Write>(&self, name: &str, out: W) -> Result<Reader<W>> {
        let out = Decompressor::crc_only(out, Compression::of_object(name)?)?;
        Ok(self.opening(name, out))
    }

    fn reader_as<W: Write>(
        &self,
        name: &str,
        compression: Compression,
        out: W,
    ) -> Result<Reader<W>> {
        Ok(self.opening(name, Decompressor::new(out, compression)?))
    }

    fn opening<W: Write>(&self, name: &str, out: Decompressor<W>) -> Reader<W> {
        Reader {
            opening: Opening::Sniffing {
                start: Vec::with_capacity(cipher::MAGIC.len()),
                out,
            },
            key: self.key.clone(),
            object: name.to_owned(),
        }
    }

    /// A whole data object, in memory.
    pub fn write_to_vec(&self, mut source: impl io::Read) -> Result<(Vec<u8>, Digest)> {
        let mut writer = self.writer(Vec::new())?;
        io::copy(&mut source, &mut writer).context("cannot read what is to be stored")?;
        writer.finish()
    }

    /// A whole data object read back, in memory.
    pub fn read_to_vec(&self, name: &str, stored: &[u8]) -> Result<(Vec<u8>, Digest)> {
        let mut reader = self.reader(name, Vec::new())?;
        reader.write_all(stored)?;
        reader.finish()
    }

    /// A small file stored as it is (uncompressed), encrypted when a key is set.
    pub fn seal_small(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        match &self.key {
            Some(key) => cipher::encrypt_to_vec(key, bytes),
            None => Ok(bytes.to_vec()),
        }
    }

    /// A small file read back: decrypted when it is encrypted.
    pub fn open_small(&self, name: &str, stored: &[u8]) -> Result<Vec<u8>> {
        let mut reader = self.reader_as(name, Compression::None, Vec::new())?;
        reader.write_all(stored)?;
        Ok(reader.finish()?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(seed: u8, compression: Compression) -> Format {
        Format {
            compression,
            key: Some(Key::from_bytes([seed; 32])),
        }
    }

    fn sample() -> Vec<u8> {
        let marker = b"0123456789 a row value 0123456789";
        marker.repeat(20_000)
    }

    #[test]
    fn every_format_round_trips_and_hides_the_content_when_keyed() {
        let raw = sample();
        for compression in [Compression::default(), Compression::Lz4, Compression::None] {
            for format in [
                Format {
                    compression,
                    key: None,
                },
                keyed(1, compression),
            ] {
                let (stored, digest) = format.write_to_vec(raw.as_slice()).unwrap();
                let name = format!("base/1.{}", format.suffix());
                let (back, digest2) = format.read_to_vec(&name, &stored).unwrap();
                assert_eq!(back, raw, "{format:?}");
                assert_eq!(digest, digest2);
                let leaks = stored.windows(22).any(|w| w == b" a row value 012345678");
                assert_eq!(
                    leaks,
                    format.key.is_none() && compression == Compression::None,
                    "{format:?}"
                );
            }
        }
    }

    #[test]
    fn a_keyed_reader_still_reads_plain_objects_and_a_plain_one_refuses_encrypted() {
        let raw = sample();
        let plain = Format::default();
        let (stored, _) = plain.write_to_vec(raw.as_slice()).unwrap();
        let keyed = keyed(1, Compression::default());
        assert_eq!(keyed.read_to_vec("w.zst", &stored).unwrap().0, raw);

        let (sealed, _) = keyed.write_to_vec(raw.as_slice()).unwrap();
        let err = format!("{:#}", plain.read_to_vec("w.zst", &sealed).unwrap_err());
        assert!(
            err.starts_with("w.zst is encrypted (key ") && err.contains("no encryption key"),
            "{err}"
        );
        let other = keyed_other();
        let err = format!("{:#}", other.read_to_vec("w.zst", &sealed).unwrap_err());
        assert!(err.contains("not the configured key"), "{err}");
    }

    fn keyed_other() -> Format {
        keyed(2, Compression::default())
    }

    #[test]
    fn small_files_are_stored_as_they_are_or_sealed() {
        let label = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n";
        let plain = Format::default();
        assert_eq!(plain.seal_small(label).unwrap(), label);
        assert_eq!(plain.open_small("backup_label", label).unwrap(), label);
        let keyed = keyed(1, Compression::Lz4);
        let sealed = keyed.seal_small(label).unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"START WAL "));
        assert_eq!(keyed.open_small("backup_label", &sealed).unwrap(), label);
        assert_eq!(keyed.open_small("short", b"abc").unwrap(), b"abc");
        assert!(plain.open_small("backup_label", &sealed).is_err());
    }
}
