//! LZ4 frames decoded as their bytes arrive: a `Write` adapter, as the
//! engine's other decoders are (lz4_flex decodes frames only by pulling
//! from a `Read`). It follows the LZ4 frame format: the header, then blocks
//! decoded one at a time with lz4_flex's block decoder (the previous 64 KiB
//! of output as the dictionary when blocks are linked), up to the end mark.
//! Optional checksums are skipped: the engine checks every file's SHA-256.
//! Memory: one block (at most 4 MiB) and, for linked blocks, 64 KiB.

use std::io::{self, Write};

const MAGIC: u32 = 0x184D_2204;
const WINDOW: usize = 64 << 10;

enum State {
    /// Collecting the frame header (its length known once FLG is read).
    Header,
    /// Collecting a block's 4-byte size.
    BlockSize,
    /// Collecting a block of `len` bytes (plus its checksum when present).
    Block {
        len: usize,
        compressed: bool,
    },
    /// Skipping the content checksum after the end mark.
    Trailer,
    Done,
}

pub struct Decoder<W: Write> {
    inner: W,
    state: State,
    pending: Vec<u8>,
    block_max: usize,
    block_checksum: bool,
    content_checksum: bool,
    linked: bool,
    window: Vec<u8>,
    out: Vec<u8>,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl<W: Write> Decoder<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            state: State::Header,
            pending: Vec::new(),
            block_max: 0,
            block_checksum: false,
            content_checksum: false,
            linked: false,
            window: Vec::new(),
            out: Vec::new(),
        }
    }

    /// How many bytes the current state needs in `pending`.
    fn wanted(&self) -> usize {
        match self.state {
            State::Header => {
                if self.pending.len() < 5 {
                    return 7;
                }
                let flg = self.pending[4];
                7 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 }
            }
            State::BlockSize => 4,
            State::Block { len, .. } => len + if self.block_checksum { 4 } else { 0 },
            State::Trailer => {
                if self.content_checksum {
                    4
                } else {
                    0
                }
            }
            State::Done => 0,
        }
    }

    fn step(&mut self) -> io::Result<()> {
        let p = std::mem::take(&mut self.pending);
        self.state = match self.state {
            State::Header => {
                if u32::from_le_bytes([p[0], p[1], p[2], p[3]]) != MAGIC {
                    return Err(invalid("not an lz4 frame (wrong magic number)"));
                }
                let (flg, bd) = (p[4], p[5]);
                if flg >> 6 != 1 {
                    return Err(invalid("an lz4 frame of an unknown version"));
                }
                if flg & 0x01 != 0 {
                    return Err(invalid("an lz4 frame that needs a dictionary"));
                }
                self.linked = flg & 0x20 == 0;
                self.block_checksum = flg & 0x10 != 0;
                self.content_checksum = flg & 0x04 != 0;
                self.block_max = match (bd >> 4) & 0x07 {
                    4 => 64 << 10,
                    5 => 256 << 10,
                    6 => 1 << 20,
                    7 => 4 << 20,
                    _ => return Err(invalid("an lz4 frame with an invalid block size")),
                };
                State::BlockSize
            }
            State::BlockSize => {
                let raw = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                if raw == 0 {
                    State::Trailer
                } else {
                    let len = (raw & 0x7FFF_FFFF) as usize;
                    if len > self.block_max {
                        return Err(invalid("an lz4 block larger than its frame allows"));
                    }
                    State::Block {
                        len,
                        compressed: raw & 0x8000_0000 == 0,
                    }
                }
            }
            State::Block { len, compressed } => {
                let data = &p[..len];
                if compressed {
                    self.out.resize(self.block_max, 0);
                    let n = if self.linked {
                        lz4_flex::block::decompress_into_with_dict(
                            data,
                            &mut self.out,
                            &self.window,
                        )
                    } else {
                        lz4_flex::block::decompress_into(data, &mut self.out)
                    }
                    .map_err(|e| invalid(format!("an lz4 block does not decode: {e}")))?;
                    self.out.truncate(n);
                } else {
                    self.out.clear();
                    self.out.extend_from_slice(data);
                }
                self.inner.write_all(&self.out)?;
                if self.linked {
                    self.window.extend_from_slice(&self.out);
                    let excess = self.window.len().saturating_sub(WINDOW);
                    self.window.drain(..excess);
                }
                State::BlockSize
            }
            State::Trailer | State::Done => State::Done,
        };
        self.pending = p;
        self.pending.clear();
        Ok(())
    }

    /// Checks the frame ended; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if matches!(self.state, State::Trailer) && self.pending.len() == self.wanted() {
            self.step()?;
        }
        match self.state {
            State::Done => Ok(self.inner),
            _ => Err(invalid("the lz4 frame is truncated (no end mark)")),
        }
    }
}

impl<W: Write> Write for Decoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut used = 0;
        while used < buf.len() {
            if matches!(self.state, State::Done) {
                return Err(invalid("bytes after the end of the lz4 frame"));
            }
            let want = self.wanted();
            let take = want
                .saturating_sub(self.pending.len())
                .min(buf.len() - used);
            self.pending.extend_from_slice(&buf[used..used + take]);
            used += take;
            // The header's length is known only once its flags are in.
            if self.pending.len() >= self.wanted() {
                self.step()?;
            }
        }
        Ok(used)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};

    fn encode(info: FrameInfo, data: &[u8]) -> Vec<u8> {
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn decode_in(pieces: usize, framed: &[u8]) -> io::Result<Vec<u8>> {
        let mut dec = Decoder::new(Vec::new());
        for piece in framed.chunks(pieces) {
            dec.write_all(piece)?;
        }
        dec.finish()
    }

    fn sample() -> Vec<u8> {
        (0..700_000u32)
            .flat_map(|i| ((i / 3) % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn frames_lz4_flex_writes_decode_in_any_pieces() {
        let data = sample();
        let infos = [
            FrameInfo::new(),
            FrameInfo::new()
                .block_mode(BlockMode::Linked)
                .block_size(BlockSize::Max64KB)
                .block_checksums(true)
                .content_checksum(true)
                .content_size(Some(data.len() as u64)),
            FrameInfo::new().block_size(BlockSize::Max4MB),
        ];
        for info in infos {
            let framed = encode(info, &data);
            assert!(framed.len() < data.len() / 2);
            for pieces in [1, 7, 4096, framed.len()] {
                assert_eq!(decode_in(pieces, &framed).unwrap(), data, "{pieces}");
            }
        }
        // Incompressible bytes go in uncompressed blocks.
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert_eq!(
            decode_in(999, &encode(FrameInfo::new(), &noise)).unwrap(),
            noise
        );
        assert_eq!(decode_in(3, &encode(FrameInfo::new(), b"")).unwrap(), b"");
    }

    #[test]
    fn truncated_or_foreign_input_is_an_error() {
        let framed = encode(FrameInfo::new(), &sample());
        let err = decode_in(100, &framed[..framed.len() - 2]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(decode_in(10, b"not an lz4 frame at all").is_err());
        let mut longer = framed.clone();
        longer.push(0);
        assert!(decode_in(100, &longer).is_err());
    }
}
