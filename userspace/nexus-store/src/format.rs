//! Byte layout of the superblock and of entry headers (all little-endian).

use nexus_wire::{Reader, Writer};

use crate::BLOCK_SIZE;

/// Superblock magic, bytes 0..8 of block 0.
pub const SUPER_MAGIC: [u8; 8] = *b"NXSTORE1";
/// Superblock format version.
pub const VERSION: u32 = 1;
/// Entry header magic (`"ERXN"` as little-endian bytes).
pub const ENTRY_MAGIC: u32 = 0x4E58_5245;
/// Entry header length: magic, gen, len, crc, each a `u32`.
pub const ENTRY_HEADER_LEN: usize = 16;

/// Bytes of the superblock covered by its CRC.
const SUPER_CRC_AT: usize = 28;
/// Bytes of the superblock that are not padding: the fields and the CRC.
const SUPER_LEN: usize = SUPER_CRC_AT + 4;

/// Decoded contents of block 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Superblock {
    pub active: u32,
    pub generation: u64,
    pub boot_count: u32,
}

impl Superblock {
    /// A full block: fields, CRC, then zeros.
    pub fn encode(&self) -> [u8; BLOCK_SIZE] {
        let covered = Writer::to_array::<SUPER_CRC_AT>(|w| {
            w.bytes(&SUPER_MAGIC)
                .u32(VERSION)
                .u32(self.active)
                .u64(self.generation)
                .u32(self.boot_count);
        });
        // Fixed-size fields into arrays sized for them: cannot fail. Were it
        // to, the all-zero block has no magic and mounts as "no superblock".
        let Ok(covered) = covered else {
            return [0; BLOCK_SIZE];
        };
        Writer::to_array::<BLOCK_SIZE>(|w| {
            w.bytes(&covered)
                .u32(crc32fast::hash(&covered))
                .bytes(&[0; BLOCK_SIZE - SUPER_LEN]);
        })
        .unwrap_or([0; BLOCK_SIZE])
    }

    /// `None` unless magic, version, active half and CRC are all valid.
    pub fn decode(b: &[u8; BLOCK_SIZE]) -> Option<Self> {
        let mut r = Reader::new(b);
        if r.array::<8>().ok()? != SUPER_MAGIC || r.u32().ok()? != VERSION {
            return None;
        }
        let active = r.u32().ok()?;
        let generation = r.u64().ok()?;
        let boot_count = r.u32().ok()?;
        let crc = r.u32().ok()?;
        if crc32fast::hash(b.get(..SUPER_CRC_AT)?) != crc || active > 1 {
            return None;
        }
        Some(Self {
            active,
            generation,
            boot_count,
        })
    }
}

/// Decoded entry header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    pub magic: u32,
    pub gen: u32,
    pub len: u32,
    pub crc: u32,
}

impl EntryHeader {
    /// The header for `payload` under generation `gen`; `None` if the payload
    /// length does not fit a `u32`.
    pub fn for_payload(gen: u32, payload: &[u8]) -> Option<Self> {
        let len = u32::try_from(payload.len()).ok()?;
        Some(Self {
            magic: ENTRY_MAGIC,
            gen,
            len,
            crc: entry_crc(gen, len, payload),
        })
    }

    pub fn encode(&self) -> [u8; ENTRY_HEADER_LEN] {
        // Four u32 into 16 bytes: cannot fail (a zero header never verifies).
        Writer::to_array::<ENTRY_HEADER_LEN>(|w| {
            w.u32(self.magic).u32(self.gen).u32(self.len).u32(self.crc);
        })
        .unwrap_or([0; ENTRY_HEADER_LEN])
    }

    pub fn decode(b: &[u8; ENTRY_HEADER_LEN]) -> Self {
        // Four u32 from 16 bytes: every read succeeds.
        let mut r = Reader::new(b);
        Self {
            magic: r.u32().unwrap_or_default(),
            gen: r.u32().unwrap_or_default(),
            len: r.u32().unwrap_or_default(),
            crc: r.u32().unwrap_or_default(),
        }
    }
}

/// CRC-32 over the generation bytes, the length bytes and the payload.
pub(crate) fn entry_crc(gen: u32, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&gen.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_layout_is_byte_exact() {
        let sb = Superblock {
            active: 1,
            generation: 0x0102_0304_0506_0708,
            boot_count: 7,
        };
        let b = sb.encode();
        assert_eq!(&b[0..8], b"NXSTORE1");
        assert_eq!(&b[8..12], &[1, 0, 0, 0]);
        assert_eq!(&b[12..16], &[1, 0, 0, 0]);
        assert_eq!(&b[16..24], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[24..28], &[7, 0, 0, 0]);
        assert_eq!(&b[28..32], &crc32fast::hash(&b[..28]).to_le_bytes());
        assert!(b[32..].iter().all(|&x| x == 0));
        assert_eq!(Superblock::decode(&b), Some(sb));
    }

    #[test]
    fn superblock_rejects_any_flipped_bit_in_covered_bytes() {
        let b = Superblock {
            active: 0,
            generation: 9,
            boot_count: 3,
        }
        .encode();
        for i in 0..32 {
            for bit in 0..8 {
                let mut c = b;
                c[i] ^= 1 << bit;
                assert_eq!(Superblock::decode(&c), None, "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn superblock_rejects_active_half_two_even_with_good_crc() {
        let mut b = Superblock {
            active: 0,
            generation: 1,
            boot_count: 0,
        }
        .encode();
        b[12] = 2;
        let crc = crc32fast::hash(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Superblock::decode(&b), None);
    }

    #[test]
    fn entry_header_layout_is_byte_exact() {
        let h = EntryHeader::for_payload(5, b"abc").unwrap();
        let b = h.encode();
        assert_eq!(&b[0..4], &[0x45, 0x52, 0x58, 0x4E]);
        assert_eq!(&b[4..8], &[5, 0, 0, 0]);
        assert_eq!(&b[8..12], &[3, 0, 0, 0]);
        let mut covered = alloc::vec::Vec::new();
        covered.extend_from_slice(&5u32.to_le_bytes());
        covered.extend_from_slice(&3u32.to_le_bytes());
        covered.extend_from_slice(b"abc");
        assert_eq!(&b[12..16], &crc32fast::hash(&covered).to_le_bytes());
        assert_eq!(EntryHeader::decode(&b), h);
    }
}
