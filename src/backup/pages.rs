//! Page checksums of relation data files, checked while a backup reads them
//! (on clusters initialised with data checksums, as the charm's are).
//!
//! PostgreSQL's page checksum is a 16-bit fold of an FNV-1a variant over
//! the 8 KiB page taken as 32 columns of 32-bit words, with the page's own
//! checksum field counted as zero and the block number mixed in. A page is
//! not judged when it is new (never written: `pd_upper` is 0) or when its
//! LSN is at or after the backup's start: it changed during the backup, and
//! recovery replays it from WAL whatever was read. A page that fails is
//! read again once from the file (a read may meet a write half done) and
//! only then counted as bad, as `pg_basebackup` does.

use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// PostgreSQL's block size.
pub const BLOCK: usize = 8192;
/// Blocks in one 1 GiB segment file of a relation.
const SEGMENT_BLOCKS: u32 = (1 << 30) / BLOCK as u32;
/// The columns summed in parallel, and each column's starting value.
const COLUMNS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
const OFFSETS: [u32; COLUMNS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

fn mix(sum: u32, value: u32) -> u32 {
    let t = sum ^ value;
    t.wrapping_mul(FNV_PRIME) ^ (t >> 17)
}

/// The checksum PostgreSQL stores in page `blkno` (of the whole relation).
pub fn checksum(page: &[u8], blkno: u32) -> u16 {
    let mut sums = OFFSETS;
    for (i, word) in page[..BLOCK].chunks_exact(4).enumerate() {
        // The checksum field (bytes 8 and 9) counts as zero.
        let mut bytes = [word[0], word[1], word[2], word[3]];
        if i == 2 {
            bytes[0] = 0;
            bytes[1] = 0;
        }
        let column = i % COLUMNS;
        sums[column] = mix(sums[column], u32::from_le_bytes(bytes));
    }
    let folded = sums
        .iter()
        .fold(0u32, |acc, &sum| acc ^ mix(mix(sum, 0), 0));
    ((folded ^ blkno) % 65535 + 1) as u16
}

/// Whether page `blkno` may be kept as read: new, changed since the backup
/// started (`start_lsn`), or with a matching checksum.
pub fn page_ok(page: &[u8], blkno: u32, start_lsn: u64) -> bool {
    let upper = u16::from_le_bytes([page[14], page[15]]);
    if upper == 0 {
        return true;
    }
    let lsn = (u64::from(u32::from_le_bytes([page[0], page[1], page[2], page[3]])) << 32)
        | u64::from(u32::from_le_bytes([page[4], page[5], page[6], page[7]]));
    if lsn >= start_lsn {
        return true;
    }
    u16::from_le_bytes([page[8], page[9]]) == checksum(page, blkno)
}

/// The number of the first block of the relation data file at `path`
/// (relative to the data directory), or None for any other file.
pub fn first_block(path: &str) -> Option<u32> {
    let parts: Vec<&str> = path.split('/').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let in_relation_dir = match parts.as_slice() {
        ["global", _] => true,
        ["base", db, _] => digits(db),
        ["pg_tblspc", space, version, db, _] => {
            digits(space) && version.starts_with("PG_") && digits(db)
        }
        _ => false,
    };
    if !in_relation_dir {
        return None;
    }
    let name = parts.last()?;
    let (stem, segment) = match name.split_once('.') {
        Some((stem, segment)) if digits(segment) => (stem, segment.parse::<u32>().ok()?),
        Some(_) => return None,
        None => (*name, 0),
    };
    let node = ["_fsm", "_vm", "_init"]
        .iter()
        .find_map(|fork| stem.strip_suffix(fork))
        .unwrap_or(stem);
    digits(node).then(|| segment.checked_mul(SEGMENT_BLOCKS))?
}

/// Whether `path` is a segment of a relation's main fork (not its
/// free-space map, visibility map or init fork).
pub fn is_main_fork(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    first_block(path).is_some() && stem.bytes().all(|b| b.is_ascii_digit())
}

/// A reader that checks every whole page passing through it.
pub struct Checked<R> {
    inner: R,
    first_block: u32,
    start_lsn: u64,
    /// The bytes of the page being read, and how many pages came before.
    page: Vec<u8>,
    pages: u32,
    /// Pages that failed, by number in the file.
    pub failed: Vec<u32>,
}

impl<R: Read> Checked<R> {
    pub fn new(inner: R, first_block: u32, start_lsn: u64) -> Self {
        Self {
            inner,
            first_block,
            start_lsn,
            page: Vec::with_capacity(BLOCK),
            pages: 0,
            failed: Vec::new(),
        }
    }

    fn take(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let wanted = BLOCK - self.page.len();
            let (head, rest) = bytes.split_at(wanted.min(bytes.len()));
            self.page.extend_from_slice(head);
            bytes = rest;
            if self.page.len() == BLOCK {
                let blkno = self.first_block.wrapping_add(self.pages);
                if !page_ok(&self.page, blkno, self.start_lsn) {
                    self.failed.push(self.pages);
                }
                self.page.clear();
                self.pages += 1;
            }
        }
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.take(&buf[..n]);
        Ok(n)
    }
}

/// Of the pages of `file` that failed, those that still fail when read
/// again: the bad pages, as block numbers in the relation.
pub fn confirm(file: &Path, first_block: u32, start_lsn: u64, failed: &[u32]) -> Vec<u32> {
    let Ok(handle) = std::fs::File::open(file) else {
        return Vec::new();
    };
    let mut page = vec![0u8; BLOCK];
    failed
        .iter()
        .filter(|&&n| {
            // A page gone since (the relation was truncated) is not bad.
            handle
                .read_exact_at(&mut page, u64::from(n) * BLOCK as u64)
                .is_ok()
                && !page_ok(&page, first_block.wrapping_add(n), start_lsn)
        })
        .map(|&n| first_block.wrapping_add(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A written page: LSN 0/1000, pd_upper 8000, some content, its checksum.
    fn page(blkno: u32) -> Vec<u8> {
        let mut page: Vec<u8> = (0..BLOCK).map(|i| (i * 7 % 251) as u8).collect();
        page[..8].copy_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
        page[14..16].copy_from_slice(&8000u16.to_le_bytes());
        let sum = checksum(&page, blkno);
        page[8..10].copy_from_slice(&sum.to_le_bytes());
        page
    }

    #[test]
    fn a_good_page_passes_and_a_flipped_byte_fails() {
        let good = page(5);
        assert!(page_ok(&good, 5, 1 << 40));
        assert!(
            !page_ok(&good, 6, 1 << 40),
            "the block number is part of it"
        );
        let mut bad = good.clone();
        bad[4000] ^= 1;
        assert!(!page_ok(&bad, 5, 1 << 40));
        // Changed after the backup started: left to WAL replay.
        assert!(page_ok(&bad, 5, 0x1000));
        // A new page is never judged.
        assert!(page_ok(&vec![0u8; BLOCK], 5, 1 << 40));
    }

    #[test]
    fn the_reader_reports_bad_pages_by_number_whatever_the_reads() {
        let mut file = Vec::new();
        for n in 0..4 {
            file.extend(page(SEGMENT_BLOCKS + n));
        }
        file[2 * BLOCK + 100] ^= 0x80;
        let mut reader = Checked::new(&file[..], SEGMENT_BLOCKS, 1 << 40);
        let mut out = Vec::new();
        // Odd-sized reads split pages across calls.
        let mut chunk = [0u8; 3000];
        loop {
            let n = reader.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(out, file);
        assert_eq!(reader.failed, [2]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("16384.1");
        std::fs::write(&path, &file).unwrap();
        assert_eq!(
            confirm(&path, SEGMENT_BLOCKS, 1 << 40, &[1, 2, 9]),
            [SEGMENT_BLOCKS + 2]
        );
    }

    #[test]
    fn relation_files_and_their_first_blocks() {
        assert_eq!(first_block("base/5/16384"), Some(0));
        assert_eq!(first_block("base/5/16384.2"), Some(2 * SEGMENT_BLOCKS));
        assert_eq!(first_block("base/5/16384_fsm"), Some(0));
        assert_eq!(first_block("base/5/16384_vm.1"), Some(SEGMENT_BLOCKS));
        assert_eq!(first_block("global/1262"), Some(0));
        assert_eq!(
            first_block("pg_tblspc/16390/PG_15_202209061/5/16391"),
            Some(0)
        );
        for other in [
            "global/pg_control",
            "global/pg_filenode.map",
            "base/5/PG_VERSION",
            "base/5/pg_internal.init",
            "pg_xact/0000",
            "base/5/16384.x",
            "base/pgsql_tmp/1",
        ] {
            assert_eq!(first_block(other), None, "{other}");
            assert!(!is_main_fork(other), "{other}");
        }
        for main in ["base/5/16384", "base/5/16384.2", "global/1262"] {
            assert!(is_main_fork(main), "{main}");
        }
        for fork in ["base/5/16384_fsm", "base/5/16384_vm.1", "base/5/16384_init"] {
            assert!(!is_main_fork(fork), "{fork}");
        }
    }
}
