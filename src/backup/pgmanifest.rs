//! PostgreSQL's own `backup_manifest` for a restored data directory, in the
//! format pg_basebackup writes and `pg_verifybackup` reads (manifest
//! version 1): every file with its size, modification time and checksum,
//! the backup's WAL ranges, and the manifest's own SHA-256 over every byte
//! before its last line. Also the SHA-256 of a file taken while it streams.
//!
//! A file's checksum is CRC32C, pg_basebackup's default and cheap for
//! `pg_verifybackup` to recompute (the charm's record keeps a SHA-256 of
//! every file, checked as each object is fetched); files of older backups
//! whose records hold no CRC32C are listed with their SHA-256, which
//! `pg_verifybackup` reads file by file. The checksums are of the bytes as
//! they will be in the restored directory (not as stored compressed), and
//! the manifest never lists itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path};

use anyhow::{bail, Context as _, Result};
use sha2::{Digest as _, Sha256};

/// The file's name in the data directory.
pub const MANIFEST_FILE: &str = "backup_manifest";

/// WAL a restore must replay from the backup, on one timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    pub timeline: u32,
    pub start_lsn: u64,
    pub end_lsn: u64,
}

impl WalRange {
    /// The range of a backup taken on one timeline, from its `backup_label`
    /// (`START WAL LOCATION`, `START TIMELINE`) and `pg_backup_stop`'s LSN.
    pub fn from_backup_label(label: &str, end_lsn: u64) -> Result<Self> {
        let field = |key: &str| {
            label
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .with_context(|| format!("the backup label has no {key:?} line"))
        };
        let start = field("START WAL LOCATION:")?;
        let start = start.split_whitespace().next().unwrap_or_default();
        let start_lsn = crate::postgres::sql::parse_lsn(start)
            .context("the backup label's start location is not an lsn")?;
        let timeline = field("START TIMELINE:")?
            .parse()
            .context("the backup label's start timeline is not a number")?;
        if end_lsn < start_lsn {
            bail!("the backup ends before it starts ({end_lsn:X} < {start_lsn:X})");
        }
        Ok(Self {
            timeline,
            start_lsn,
            end_lsn,
        })
    }
}

/// Collects the backup's files, in any order, and renders the manifest.
#[derive(Debug, Clone, Default)]
pub struct ManifestBuilder {
    /// Keyed by the path's bytes, so the output order is deterministic.
    files: BTreeMap<Vec<u8>, FileLine>,
    wal_ranges: Vec<WalRange>,
}

#[derive(Debug, Clone)]
struct FileLine {
    size: u64,
    last_modified: String,
    checksum: FileChecksum,
}

/// A file's checksum in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChecksum {
    /// The CRC-32C of the file (Castagnoli, as the `crc32c` crate and
    /// PostgreSQL compute it).
    Crc32c(u32),
    Sha256([u8; 32]),
}

impl FileChecksum {
    /// The `Checksum-Algorithm` and `Checksum` of a manifest line. PostgreSQL
    /// writes a CRC as the bytes of its in-memory `uint32` (on x86 and arm,
    /// least significant byte first: `15\n` is `8a744722`), so this does too.
    fn manifest_fields(&self) -> (&'static str, String) {
        match self {
            Self::Crc32c(crc) => ("CRC32C", hex::encode(crc.to_ne_bytes())),
            Self::Sha256(sha) => ("SHA256", hex::encode(sha)),
        }
    }
}

impl ManifestBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists a file: its path relative to the data directory (tablespace
    /// files as `pg_tblspc/<oid>/...`), the bytes it has in the restored
    /// directory and their checksum, and its mtime in seconds since the epoch.
    pub fn add_file(
        &mut self,
        path: &Path,
        size: u64,
        mtime: i64,
        checksum: FileChecksum,
    ) -> Result<()> {
        let key = relative_bytes(path)?;
        if key == MANIFEST_FILE.as_bytes() {
            bail!("the backup manifest never lists itself");
        }
        let last_modified = chrono::DateTime::from_timestamp(mtime, 0)
            .with_context(|| format!("{} has an impossible mtime {mtime}", path.display()))?
            .format("%Y-%m-%d %H:%M:%S GMT")
            .to_string();
        let line = FileLine {
            size,
            last_modified,
            checksum,
        };
        if self.files.insert(key, line).is_some() {
            bail!("{} is listed twice in the backup manifest", path.display());
        }
        Ok(())
    }

    /// Adds a WAL range; several only when the timeline changed during the
    /// backup, newest timeline first (PostgreSQL's order).
    pub fn add_wal_range(&mut self, range: WalRange) {
        self.wal_ranges.push(range);
    }

    /// The manifest's bytes, ending with its own checksum line.
    pub fn render(&self) -> Result<Vec<u8>> {
        if self.wal_ranges.is_empty() {
            bail!("the backup manifest needs the backup's wal range");
        }
        let mut out = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [");
        for (i, (path, file)) in self.files.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            match std::str::from_utf8(path) {
                Ok(text) => {
                    out.push_str("{ \"Path\": ");
                    push_json_string(&mut out, text);
                    out.push_str(", ");
                }
                Err(_) => {
                    let _ = write!(out, "{{ \"Encoded-Path\": \"{}\", ", hex::encode(path));
                }
            }
            let (algorithm, checksum) = file.checksum.manifest_fields();
            let _ = write!(
                out,
                "\"Size\": {}, \"Last-Modified\": \"{}\", \
                 \"Checksum-Algorithm\": \"{algorithm}\", \"Checksum\": \"{checksum}\" }}",
                file.size, file.last_modified,
            );
        }
        out.push_str("\n],\n\"WAL-Ranges\": [\n");
        for (i, range) in self.wal_ranges.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}",
                if i == 0 { "" } else { ",\n" },
                range.timeline,
                lsn(range.start_lsn),
                lsn(range.end_lsn)
            );
        }
        out.push_str("\n],\n");
        let checksum = hex::encode(Sha256::digest(out.as_bytes()));
        let _ = writeln!(out, "\"Manifest-Checksum\": \"{checksum}\"}}");
        Ok(out.into_bytes())
    }
}

/// An LSN as PostgreSQL prints it: `%X/%X`.
fn lsn(value: u64) -> String {
    format!("{:X}/{:X}", value >> 32, value & 0xFFFF_FFFF)
}

/// A JSON string escaped as PostgreSQL's `escape_json` does: the short
/// escapes, `\u00XX` for other control characters, everything else as is.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The path's bytes with `/` between its parts; only plain relative paths.
fn relative_bytes(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for part in path.components() {
        let Component::Normal(part) = part else {
            bail!("{} is not a plain relative path", path.display());
        };
        if !bytes.is_empty() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(part.as_bytes());
    }
    if bytes.is_empty() {
        bail!("a backup manifest entry needs a path");
    }
    Ok(bytes)
}

/// Reads through to `inner`, counting the bytes and taking their SHA-256.
pub struct Sha256Reader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Sha256Reader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The bytes read so far and their SHA-256.
    pub fn finish(self) -> (u64, [u8; 32]) {
        (self.size, self.hasher.finalize().into())
    }
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// The size and SHA-256 of a whole file, read once.
pub fn sha256_file(path: &Path) -> Result<(u64, [u8; 32])> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = Sha256Reader::new(file);
    std::io::copy(&mut reader, &mut std::io::sink())
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(reader.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn sha(text: &str) -> FileChecksum {
        FileChecksum::Sha256(Sha256::digest(text.as_bytes()).into())
    }

    fn hex_of(checksum: FileChecksum) -> String {
        checksum.manifest_fields().1
    }

    fn range() -> WalRange {
        WalRange {
            timeline: 1,
            start_lsn: 0x2000028,
            end_lsn: 0x1_0000_0138,
        }
    }

    #[test]
    fn renders_postgresqls_layout_sorted_by_path() {
        let mut m = ManifestBuilder::new();
        m.add_file(
            Path::new("global/pg_control"),
            8192,
            1_700_000_000,
            sha("b"),
        )
        .unwrap();
        m.add_file(Path::new("backup_label"), 225, 0, sha("a"))
            .unwrap();
        m.add_wal_range(range());
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        let body = format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n\
             {{ \"Path\": \"backup_label\", \"Size\": 225, \"Last-Modified\": \"1970-01-01 00:00:00 GMT\", \
             \"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"{}\" }},\n\
             {{ \"Path\": \"global/pg_control\", \"Size\": 8192, \"Last-Modified\": \"2023-11-14 22:13:20 GMT\", \
             \"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"{}\" }}\n\
             ],\n\"WAL-Ranges\": [\n\
             {{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"1/138\" }}\n\
             ],\n",
            hex_of(sha("a")),
            hex_of(sha("b"))
        );
        let last = format!(
            "\"Manifest-Checksum\": \"{}\"}}\n",
            hex::encode(Sha256::digest(body.as_bytes()))
        );
        assert_eq!(text, body + &last);
        serde_json::from_str::<serde_json::Value>(&text).expect("valid json");
    }

    #[test]
    fn crc32c_as_pg_basebackup_writes_it_beside_sha256() {
        // pg_basebackup --manifest-checksums=CRC32C lists PG_VERSION ("15\n") so.
        let mut m = ManifestBuilder::new();
        let crc = crc32c::crc32c(b"15\n");
        assert_eq!(crc, 0x2247_748a);
        m.add_file(Path::new("PG_VERSION"), 3, 0, FileChecksum::Crc32c(crc))
            .unwrap();
        m.add_file(Path::new("base/1/1259"), 1, 0, sha("x"))
            .unwrap();
        m.add_wal_range(range());
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(
            text.contains(
                "{ \"Path\": \"PG_VERSION\", \"Size\": 3, \"Last-Modified\": \"1970-01-01 00:00:00 GMT\", \
                 \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"8a744722\" }"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "\"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"{}\" }}",
                hex_of(sha("x"))
            )),
            "{text}"
        );
        assert_eq!(hex_of(FileChecksum::Crc32c(0)), "00000000");
    }

    #[test]
    fn odd_names_are_escaped_or_hex_encoded() {
        let mut m = ManifestBuilder::new();
        m.add_file(Path::new("a\"b\\c\td\u{1}é"), 1, 0, sha(""))
            .unwrap();
        let latin1 = Path::new(OsStr::from_bytes(b"caf\xe9"));
        m.add_file(latin1, 1, 0, sha("")).unwrap();
        m.add_wal_range(range());
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(
            text.contains(r#"{ "Path": "a\"b\\c\td\u0001é", "Size""#),
            "{text}"
        );
        assert!(
            text.contains(r#"{ "Encoded-Path": "636166e9", "Size""#),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["Files"][0]["Path"], "a\"b\\c\td\u{1}é");
    }

    #[test]
    fn refuses_itself_duplicates_bad_paths_and_no_wal() {
        let mut m = ManifestBuilder::new();
        assert!(m
            .add_file(Path::new("backup_manifest"), 1, 0, sha(""))
            .is_err());
        m.add_file(Path::new("base/1/1259"), 1, 0, sha("")).unwrap();
        assert!(m
            .add_file(Path::new("base//1/./1259"), 1, 0, sha(""))
            .is_err());
        for bad in ["/etc/passwd", "../x", "", "base/../x"] {
            assert!(m.add_file(Path::new(bad), 1, 0, sha("")).is_err(), "{bad}");
        }
        let err = m.render().unwrap_err().to_string();
        assert!(err.contains("wal range"), "{err}");
    }

    #[test]
    fn several_wal_ranges_keep_their_order() {
        let mut m = ManifestBuilder::new();
        m.add_wal_range(WalRange {
            timeline: 2,
            start_lsn: 0x3000000,
            end_lsn: 0x3000100,
        });
        m.add_wal_range(range());
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        assert!(text.contains(
            "\"WAL-Ranges\": [\n{ \"Timeline\": 2, \"Start-LSN\": \"0/3000000\", \"End-LSN\": \"0/3000100\" },\n\
             { \"Timeline\": 1,"
        ));
        assert!(text.contains("\"Files\": [\n],\n"), "no files: {text}");
    }

    #[test]
    fn wal_range_from_a_backup_label() {
        let label = "START WAL LOCATION: 0/9000028 (file 000000030000000000000009)\n\
                     CHECKPOINT LOCATION: 0/9000060\nBACKUP METHOD: streamed\n\
                     BACKUP FROM: primary\nSTART TIME: 2026-11-22 10:00:00 UTC\n\
                     LABEL: x\nSTART TIMELINE: 3\n";
        let r = WalRange::from_backup_label(label, 0x9000138).unwrap();
        assert_eq!(
            r,
            WalRange {
                timeline: 3,
                start_lsn: 0x9000028,
                end_lsn: 0x9000138
            }
        );
        assert!(WalRange::from_backup_label(label, 1).is_err());
        assert!(WalRange::from_backup_label("LABEL: x\n", 1).is_err());
    }

    #[test]
    fn sha256_while_streaming() {
        let data = vec![7u8; 100_000];
        let mut reader = Sha256Reader::new(&data[..]);
        let mut copy = Vec::new();
        reader.read_to_end(&mut copy).unwrap();
        assert_eq!(copy, data);
        let (size, digest) = reader.finish();
        assert_eq!(size, 100_000);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&data)));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        assert_eq!(sha256_file(&dir.path().join("f")).unwrap(), (size, digest));
        let err = sha256_file(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot open") && err.contains("none"), "{err}");
    }
}
