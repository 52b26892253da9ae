//! Encryption at rest: what the repository stores of a file when a key is
//! configured, sealed with AES-256-GCM (ring) in a streaming construction,
//! so an object of any size is encrypted and decrypted in bounded memory
//! and no byte of it reaches the caller before it is authenticated.
//!
//! An encrypted object is self-describing:
//!
//! ```text
//! magic       8  \x89 P G C E N C \n  (a text file never starts with 0x89)
//! version     1  1
//! algorithm   1  1 = AES-256-GCM
//! chunk size  4  big endian: plaintext bytes per chunk (64 KiB)
//! key id      8  HMAC-SHA-256(master key, "key id")[..8]: names the key, never reveals it
//! salt       32  random, per object
//! chunks         each chunk-size bytes of plaintext (the last one shorter,
//!                perhaps empty) sealed with a 16-byte tag
//! ```
//!
//! Each object gets its own key, HKDF-SHA-256 of the master key with the
//! object's random salt, so nonces never repeat across objects; within an
//! object the nonce of chunk `i` is `i` (big endian) with its last byte
//! saying whether the chunk is the last (the STREAM construction). The
//! header is the associated data of every chunk. A truncated object fails
//! (its new last chunk was not sealed as the last one), and so does a
//! reordered, altered or appended one. What is encrypted is what would
//! otherwise be stored: the compressed stream.
//!
//! Errors name the object and say what to do: no key configured, another
//! key, or an object that fails authentication.

use std::fmt;
use std::io::{self, Write};

use anyhow::{bail, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};

/// The first bytes of every encrypted object.
pub const MAGIC: [u8; 8] = *b"\x89PGCENC\n";
const VERSION: u8 = 1;
const AES_256_GCM_ID: u8 = 1;
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 << 10;
const TAG: usize = 16;
const SALT: usize = 32;
const KEY_ID: usize = 8;
/// The header's length: magic, version, algorithm, chunk size, key id, salt.
pub const HEADER: usize = MAGIC.len() + 1 + 1 + 4 + KEY_ID + SALT;
const OBJECT_KEY_INFO: &[u8] = b"postgresql-charm object key v1";
const KEY_ID_INFO: &[u8] = b"postgresql-charm key id v1";

/// A master key: 32 bytes, given as 64 hex digits. Its `Debug` shows the
/// key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; 32],
    id: KeyId,
}

/// What names a key in objects, records and messages: 16 hex digits
/// derived from the key one way.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {})", self.id)
    }
}

impl Key {
    /// The key from 64 hex digits (either case, surrounding blanks ignored).
    /// The error never repeats the text, which may be most of a key.
    pub fn from_hex(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "the key must be 64 hexadecimal digits (32 bytes), not {} characters{}",
                text.chars().count(),
                if text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ""
                } else {
                    " with some that are not hexadecimal"
                }
            );
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).expect("64 hex digits checked above");
        Ok(Self::from_bytes(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &bytes), KEY_ID_INFO);
        let mut id = [0u8; KEY_ID];
        id.copy_from_slice(&tag.as_ref()[..KEY_ID]);
        Self {
            bytes,
            id: KeyId(id),
        }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key as 64 lowercase hex digits, for the private settings file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The AEAD key of the object whose salt is `salt`.
    fn object_key(&self, salt: &[u8]) -> LessSafeKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&self.bytes);
        let okm = prk
            .expand(&[OBJECT_KEY_INFO], &AES_256_GCM)
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

/// In the private settings file: 64 hex digits.
impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Key::from_hex(&text).map_err(|err| serde::de::Error::custom(format!("{err:#}")))
    }
}

/// Whether stored bytes start like an encrypted object.
pub fn is_encrypted(start: &[u8]) -> bool {
    start.starts_with(&MAGIC)
}

fn nonce(counter: u64, last: bool) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// Plaintext in, an encrypted object out to the inner writer.
pub struct Encryptor<W: Write> {
    inner: W,
    key: LessSafeKey,
    header: [u8; HEADER],
    buffer: Vec<u8>,
    counter: u64,
}

impl<W: Write> Encryptor<W> {
    /// Writes the header (with a fresh random salt) and gets ready for the content.
    pub fn new(key: &Key, mut inner: W) -> Result<Self> {
        let mut salt = [0u8; SALT];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
        let mut header = [0u8; HEADER];
        let mut at = 0;
        for part in [
            &MAGIC[..],
            &[VERSION, AES_256_GCM_ID],
            &(CHUNK as u32).to_be_bytes(),
            &key.id.0,
            &salt,
        ] {
            header[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        inner.write_all(&header)?;
        Ok(Self {
            inner,
            key: key.object_key(&salt),
            header,
            buffer: Vec::with_capacity(CHUNK + TAG),
            counter: 0,
        })
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        self.key
            .seal_in_place_append_tag(
                nonce(self.counter, last),
                Aad::from(&self.header[..]),
                &mut self.buffer,
            )
            .map_err(|_| io::Error::other("cannot encrypt a chunk"))?;
        self.counter += 1;
        self.inner.write_all(&self.buffer)?;
        self.buffer.clear();
        Ok(())
    }

    /// Seals the last chunk; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // A full chunk is sealed only once more follows: the last may be full.
        if self.buffer.len() == CHUNK {
            self.seal(false)?;
        }
        let n = buf.len().min(CHUNK - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An encrypted object in, its plaintext out to the inner writer, each
/// chunk only once authenticated.
pub struct Decryptor<W: Write> {
    inner: W,
    /// The key configured, if any.
    key: Option<Key>,
    /// The object, for messages.
    object: String,
    header: Vec<u8>,
    opened: Option<(LessSafeKey, usize)>,
    buffer: Vec<u8>,
    counter: u64,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<W: Write> Decryptor<W> {
    pub fn new(key: Option<Key>, object: impl Into<String>, inner: W) -> Self {
        Self {
            inner,
            key,
            object: object.into(),
            header: Vec::with_capacity(HEADER),
            opened: None,
            buffer: Vec::new(),
            counter: 0,
        }
    }

    /// Reads the header once complete: the right key, or a clear error.
    fn open_header(&mut self) -> io::Result<()> {
        let h = &self.header;
        let object = &self.object;
        if !is_encrypted(h) {
            return Err(invalid(format!("{object} is not an encrypted object")));
        }
        if h[8] != VERSION || h[9] != AES_256_GCM_ID {
            return Err(invalid(format!(
                "{object} is encrypted in a format this charm does not know (version {}, \
                 algorithm {}): upgrade the charm",
                h[8], h[9]
            )));
        }
        let chunk = u32::from_be_bytes([h[10], h[11], h[12], h[13]]) as usize;
        if chunk == 0 || chunk > 16 << 20 {
            return Err(invalid(format!(
                "{object} declares a chunk size of {chunk} bytes: it is damaged"
            )));
        }
        let mut id = [0u8; KEY_ID];
        id.copy_from_slice(&h[14..14 + KEY_ID]);
        let id = KeyId(id);
        let key = match &self.key {
            None => {
                return Err(invalid(format!(
                    "{object} is encrypted (key {id}) and no encryption key is configured: set \
                     backup-encryption-secret to the secret holding that key"
                )))
            }
            Some(key) if key.id != id => {
                return Err(invalid(format!(
                    "{object} was encrypted with key {id}, not the configured key {}: set \
                     backup-encryption-secret to the secret holding key {id}",
                    key.id
                )))
            }
            Some(key) => key,
        };
        self.opened = Some((key.object_key(&h[14 + KEY_ID..]), chunk));
        self.buffer.reserve(chunk + TAG);
        Ok(())
    }

    fn open_chunk(&mut self, last: bool) -> io::Result<()> {
        let (key, _) = self.opened.as_ref().expect("opened before any chunk");
        let plain = key
            .open_in_place(
                nonce(self.counter, last),
                Aad::from(&self.header[..]),
                &mut self.buffer,
            )
            .map_err(|_| {
                invalid(format!(
                    "{} fails authentication (chunk {}{}): it was altered, truncated or damaged \
                     in the repository",
                    self.object,
                    self.counter,
                    if last { ", the last" } else { "" }
                ))
            })?;
        self.inner.write_all(plain)?;
        self.counter += 1;
        self.buffer.clear();
        Ok(())
    }

    /// Authenticates the last chunk; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.opened.is_none() || self.buffer.len() < TAG {
            return Err(invalid(format!(
                "{} is truncated: it ends before its last encrypted chunk",
                self.object
            )));
        }
        self.open_chunk(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Decryptor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let Some((_, chunk)) = self.opened.as_ref() else {
            let n = buf.len().min(HEADER - self.header.len());
            self.header.extend_from_slice(&buf[..n]);
            if self.header.len() == HEADER {
                self.open_header()?;
            } else if !MAGIC.starts_with(&self.header[..self.header.len().min(MAGIC.len())]) {
                return Err(invalid(format!(
                    "{} is not an encrypted object",
                    self.object
                )));
            }
            return Ok(n);
        };
        let sealed = chunk + TAG;
        // A full chunk is opened only once more follows: the last may be full.
        if self.buffer.len() == sealed {
            self.open_chunk(false)?;
        }
        let n = buf.len().min(sealed - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Encrypts `plain` whole (small objects).
pub fn encrypt_to_vec(key: &Key, plain: &[u8]) -> Result<Vec<u8>> {
    let mut out = Encryptor::new(key, Vec::with_capacity(plain.len() + HEADER + TAG))?;
    out.write_all(plain)?;
    Ok(out.finish()?)
}

/// Decrypts a whole object (small objects).
pub fn decrypt_to_vec(key: Option<&Key>, object: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let mut out = Decryptor::new(key.cloned(), object, Vec::new());
    out.write_all(sealed)?;
    Ok(out.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> Key {
        Key::from_bytes([seed; 32])
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn message(err: anyhow::Error) -> String {
        format!("{err:#}")
    }

    #[test]
    fn round_trips_at_every_chunk_boundary_and_empty() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17] {
            let plain = sample(len);
            let sealed = encrypt_to_vec(&key(1), &plain).unwrap();
            let chunks = len.div_ceil(CHUNK).max(1);
            assert_eq!(sealed.len(), HEADER + len + chunks * TAG, "{len} bytes");
            assert!(is_encrypted(&sealed));
            assert_eq!(
                decrypt_to_vec(Some(&key(1)), "o", &sealed).unwrap(),
                plain,
                "{len}"
            );
        }
    }

    #[test]
    fn streaming_in_odd_pieces_gives_the_same_plaintext() {
        let plain = sample(3 * CHUNK + 5);
        let mut enc = Encryptor::new(&key(1), Vec::new()).unwrap();
        for piece in plain.chunks(1000) {
            enc.write_all(piece).unwrap();
        }
        let sealed = enc.finish().unwrap();
        let mut dec = Decryptor::new(Some(key(1)), "o", Vec::new());
        for piece in sealed.chunks(7) {
            dec.write_all(piece).unwrap();
        }
        assert_eq!(dec.finish().unwrap(), plain);
    }

    #[test]
    fn the_plaintext_is_nowhere_in_the_object_and_each_object_differs() {
        let marker = b"a distinctive row value that must not leak".repeat(50);
        let a = encrypt_to_vec(&key(1), &marker).unwrap();
        let b = encrypt_to_vec(&key(1), &marker).unwrap();
        assert_ne!(a, b, "a fresh salt per object");
        assert!(!a.windows(16).any(|w| marker.windows(16).any(|m| m == w)));
    }

    #[test]
    fn no_key_or_another_key_names_the_key_ids() {
        let sealed = encrypt_to_vec(&key(1), b"secret data").unwrap();
        let id = key(1).id();
        let err = message(decrypt_to_vec(None, "wal/x.zst", &sealed).unwrap_err());
        assert_eq!(
            err,
            format!(
                "wal/x.zst is encrypted (key {id}) and no encryption key is configured: set \
                 backup-encryption-secret to the secret holding that key"
            )
        );
        let err = message(decrypt_to_vec(Some(&key(2)), "wal/x.zst", &sealed).unwrap_err());
        assert_eq!(
            err,
            format!(
                "wal/x.zst was encrypted with key {id}, not the configured key {}: set \
                 backup-encryption-secret to the secret holding key {id}",
                key(2).id()
            )
        );
        assert!(!err.contains(&key(1).to_hex()) && !err.contains(&key(2).to_hex()));
    }

    #[test]
    fn a_flipped_byte_anywhere_fails_authentication_and_writes_nothing_of_its_chunk() {
        let plain = sample(2 * CHUNK + 100);
        let sealed = encrypt_to_vec(&key(1), &plain).unwrap();
        for at in [
            HEADER - 1,
            HEADER + 3,
            HEADER + CHUNK + TAG + 9,
            sealed.len() - 1,
        ] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x20;
            let mut dec = Decryptor::new(Some(key(1)), "obj", Vec::new());
            let result = dec.write_all(&bad).and_then(|()| dec.finish().map(drop));
            let err = result.unwrap_err().to_string();
            assert!(err.starts_with("obj fails authentication"), "{at}: {err}");
        }
        // A flip in the first chunk: nothing at all reaches the writer.
        let mut bad = sealed.clone();
        bad[HEADER] ^= 1;
        let mut dec = Decryptor::new(Some(key(1)), "obj", Vec::new());
        assert!(dec.write_all(&bad).is_err());
        assert!(dec.inner.is_empty());
    }

    #[test]
    fn truncation_is_detected_even_at_a_chunk_boundary() {
        let plain = sample(2 * CHUNK + 100);
        let sealed = encrypt_to_vec(&key(1), &plain).unwrap();
        for cut in [
            HEADER + CHUNK + TAG,
            HEADER + 2 * (CHUNK + TAG),
            sealed.len() - 1,
            HEADER + 5,
            HEADER,
            3,
        ] {
            let err = message(decrypt_to_vec(Some(&key(1)), "obj", &sealed[..cut]).unwrap_err());
            assert!(
                err.contains("fails authentication") || err.contains("is truncated"),
                "{cut}: {err}"
            );
        }
        // Appending a chunk sealed for another object fails too.
        let other = encrypt_to_vec(&key(1), &sample(10)).unwrap();
        let mut longer = sealed.clone();
        longer.extend_from_slice(&other[HEADER..]);
        assert!(decrypt_to_vec(Some(&key(1)), "obj", &longer).is_err());
    }

    #[test]
    fn plaintext_is_not_taken_for_an_encrypted_object() {
        let err = message(decrypt_to_vec(Some(&key(1)), "o", b"START WAL LOCATION").unwrap_err());
        assert_eq!(err, "o is not an encrypted object");
    }

    #[test]
    fn keys_are_64_hex_digits_and_never_shown() {
        let hex = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
        let k = Key::from_hex(&format!(" {hex}\n")).unwrap();
        assert_eq!(k.to_hex(), hex.to_lowercase());
        assert_eq!(k.id().to_string().len(), 16);
        assert_ne!(k.id(), key(0).id());
        assert!(!format!("{k:?}").contains("0011"), "{k:?}");
        let err = message(Key::from_hex("abc").unwrap_err());
        assert_eq!(
            err,
            "the key must be 64 hexadecimal digits (32 bytes), not 3 characters"
        );
        let err = message(Key::from_hex(&"z".repeat(64)).unwrap_err());
        assert!(err.ends_with("with some that are not hexadecimal"), "{err}");
    }
}
