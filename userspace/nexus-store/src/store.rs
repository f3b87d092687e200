//! The store: mount/scan, buffered appends, flush and A/B compaction.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::format::{EntryHeader, Superblock, ENTRY_HEADER_LEN, ENTRY_MAGIC};
use crate::{BlockDevice, MountReport, StoreError, BLOCK_SIZE, MAX_ENTRY, MAX_HALF_BLOCKS};

const BLOCK_U64: u64 = BLOCK_SIZE as u64;
const SUPERBLOCK: u64 = 0;

type Opened<D> = (StateStore<D>, MountReport, Vec<Vec<u8>>);

/// An append-only record store on a [`BlockDevice`].
///
/// State kept in memory: the durable end of the active half (`end`), a copy
/// of the block that contains it (`tail`, rewritten by the next flush), and
/// the encoded entries not yet flushed (`pending`, never larger than the
/// free space of the half).
pub struct StateStore<D: BlockDevice> {
    dev: D,
    half_blocks: u64,
    active: u32,
    generation: u64,
    boot_count: u32,
    read_only: bool,
    torn: bool,
    formatted: bool,
    /// Byte offset in the active half where the flushed entries end.
    end: u64,
    /// Contents of block `end / BLOCK_SIZE` of the active half: bytes before
    /// `end % BLOCK_SIZE` are entry data, the rest zero.
    tail: [u8; BLOCK_SIZE],
    /// Encoded entries (headers and payloads) appended but not yet flushed.
    pending: Vec<u8>,
    /// Entries in the active half, flushed and pending.
    entries: u64,
}

impl<D: BlockDevice> fmt::Debug for StateStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("half_blocks", &self.half_blocks)
            .field("active", &self.active)
            .field("generation", &self.generation)
            .field("boot_count", &self.boot_count)
            .field("read_only", &self.read_only)
            .field("end", &self.end)
            .field("pending_bytes", &self.pending.len())
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

/// Blocks per half for a device of `block_count` blocks.
fn half_blocks_for<E>(block_count: u64) -> Result<u64, StoreError<E>> {
    let h = block_count.saturating_sub(1) / 2;
    if h < 2 {
        return Err(StoreError::TooSmall);
    }
    Ok(h.min(MAX_HALF_BLOCKS))
}

/// First device block of half `half` (0 or 1).
fn half_base(half_blocks: u64, half: u32) -> u64 {
    // half_blocks <= 2^32 and half <= 1: no overflow.
    1 + u64::from(half) * half_blocks
}

fn read<D: BlockDevice>(dev: &mut D, index: u64) -> Result<[u8; BLOCK_SIZE], StoreError<D::Error>> {
    let mut buf = [0u8; BLOCK_SIZE];
    dev.read_block(index, &mut buf)
        .map_err(StoreError::Device)?;
    Ok(buf)
}

fn write<D: BlockDevice>(
    dev: &mut D,
    index: u64,
    buf: &[u8; BLOCK_SIZE],
) -> Result<(), StoreError<D::Error>> {
    dev.write_block(index, buf).map_err(StoreError::Device)
}

/// Reads byte ranges of one half through a one-block cache.
struct HalfReader<'a, D: BlockDevice> {
    dev: &'a mut D,
    base: u64,
    cached: Option<u64>,
    buf: [u8; BLOCK_SIZE],
}

impl<D: BlockDevice> HalfReader<'_, D> {
    /// Fills `out` from byte `pos` of the half. The caller keeps
    /// `pos + out.len()` within the half.
    fn read(&mut self, mut pos: u64, out: &mut [u8]) -> Result<(), StoreError<D::Error>> {
        let mut done = 0usize;
        while done < out.len() {
            let block = pos / BLOCK_U64;
            let off = (pos % BLOCK_U64) as usize;
            if self.cached != Some(block) {
                self.cached = None;
                self.dev
                    .read_block(self.base + block, &mut self.buf)
                    .map_err(StoreError::Device)?;
                self.cached = Some(block);
            }
            let n = (BLOCK_SIZE - off).min(out.len() - done);
            if let (Some(dst), Some(src)) =
                (out.get_mut(done..done + n), self.buf.get(off..off + n))
            {
                dst.copy_from_slice(src);
            }
            done += n;
            pos += n as u64;
        }
        Ok(())
    }
}

/// Streams bytes into one half, writing each block once it is full.
///
/// `finish` writes the partial last block padded with zeros, which also
/// terminates the entry stream: the byte right after the last entry is zero,
/// and no entry magic starts with a zero byte.
struct HalfWriter {
    base: u64,
    half_blocks: u64,
    pos: u64,
    buf: [u8; BLOCK_SIZE],
}

impl HalfWriter {
    fn capacity(&self) -> u64 {
        self.half_blocks * BLOCK_U64
    }

    fn push<D: BlockDevice>(
        &mut self,
        dev: &mut D,
        mut data: &[u8],
    ) -> Result<(), StoreError<D::Error>> {
        let fits = self
            .pos
            .checked_add(data.len() as u64)
            .is_some_and(|e| e <= self.capacity());
        if !fits {
            return Err(StoreError::Full);
        }
        while !data.is_empty() {
            let off = (self.pos % BLOCK_U64) as usize;
            let n = (BLOCK_SIZE - off).min(data.len());
            let Some((head, rest)) = data.split_at_checked(n) else {
                break;
            };
            if let Some(dst) = self.buf.get_mut(off..off + n) {
                dst.copy_from_slice(head);
            }
            self.pos += n as u64;
            data = rest;
            if off + n == BLOCK_SIZE {
                write(dev, self.base + (self.pos - 1) / BLOCK_U64, &self.buf)?;
                self.buf = [0; BLOCK_SIZE];
            }
        }
        Ok(())
    }

    /// Writes the block holding `pos` (unless the half is exactly full).
    fn finish<D: BlockDevice>(&mut self, dev: &mut D) -> Result<(), StoreError<D::Error>> {
        let block = self.pos / BLOCK_U64;
        if block < self.half_blocks {
            write(dev, self.base + block, &self.buf)?;
        }
        Ok(())
    }
}

/// Result of scanning a half.
struct Scan {
    payloads: Vec<Vec<u8>>,
    end: u64,
    torn: bool,
}

/// Reads the entries of a half in order, stopping at the first one that is
/// not a valid entry of generation `gen32`.
fn scan<D: BlockDevice>(
    dev: &mut D,
    base: u64,
    half_blocks: u64,
    gen32: u32,
) -> Result<Scan, StoreError<D::Error>> {
    let capacity = half_blocks * BLOCK_U64;
    let mut reader = HalfReader {
        dev,
        base,
        cached: None,
        buf: [0; BLOCK_SIZE],
    };
    let mut payloads = Vec::new();
    let mut pos = 0u64;
    let mut torn = false;
    while let Some(body) = pos
        .checked_add(ENTRY_HEADER_LEN as u64)
        .filter(|&b| b <= capacity)
    {
        let mut raw = [0u8; ENTRY_HEADER_LEN];
        reader.read(pos, &mut raw)?;
        let h = EntryHeader::decode(&raw);
        if h.magic != ENTRY_MAGIC || h.gen != gen32 {
            break;
        }
        let len = h.len as usize;
        let next = body.checked_add(u64::from(h.len));
        let Some(next) = next.filter(|&n| len <= MAX_ENTRY && n <= capacity) else {
            torn = true;
            break;
        };
        let mut payload = vec![0u8; len];
        reader.read(body, &mut payload)?;
        if crate::format::entry_crc(h.gen, h.len, &payload) != h.crc {
            torn = true;
            break;
        }
        payloads.push(payload);
        pos = next;
    }
    Ok(Scan {
        payloads,
        end: pos,
        torn,
    })
}

impl<D: BlockDevice> StateStore<D> {
    /// Opens for writing: formats the device if the superblock is
    /// missing/corrupt (`formatted = true`), increments and persists the boot
    /// counter, scans the active half. Returns the store, the report and
    /// every valid entry payload in append order.
    pub fn mount(mut dev: D) -> Result<Opened<D>, StoreError<D::Error>> {
        let half_blocks = half_blocks_for(dev.block_count())?;
        let found = Superblock::decode(&read(&mut dev, SUPERBLOCK)?);
        let formatted = found.is_none();
        let mut sb = match found {
            Some(sb) => sb,
            None => {
                // Empty half 0 first, then the superblock that points at it:
                // a crash in between leaves no valid superblock, so the next
                // mount formats again.
                write(&mut dev, half_base(half_blocks, 0), &[0; BLOCK_SIZE])?;
                let sb = Superblock {
                    active: 0,
                    generation: 1,
                    boot_count: 0,
                };
                write(&mut dev, SUPERBLOCK, &sb.encode())?;
                sb
            }
        };
        sb.boot_count = sb.boot_count.saturating_add(1);
        write(&mut dev, SUPERBLOCK, &sb.encode())?;
        Self::open_with(dev, half_blocks, sb, false, formatted)
    }

    /// Opens without writing anything (for host tools reading an image); the
    /// boot counter is not incremented. An image without a valid superblock
    /// gives an empty result (`formatted = false`, no entries, generation 0)
    /// and is left as it is.
    pub fn open_read_only(mut dev: D) -> Result<Opened<D>, StoreError<D::Error>> {
        let half_blocks = half_blocks_for(dev.block_count())?;
        match Superblock::decode(&read(&mut dev, SUPERBLOCK)?) {
            Some(sb) => Self::open_with(dev, half_blocks, sb, true, false),
            None => {
                let store = Self {
                    dev,
                    half_blocks,
                    active: 0,
                    generation: 0,
                    boot_count: 0,
                    read_only: true,
                    torn: false,
                    formatted: false,
                    end: 0,
                    tail: [0; BLOCK_SIZE],
                    pending: Vec::new(),
                    entries: 0,
                };
                let report = store.report();
                Ok((store, report, Vec::new()))
            }
        }
    }

    fn open_with(
        mut dev: D,
        half_blocks: u64,
        sb: Superblock,
        read_only: bool,
        formatted: bool,
    ) -> Result<Opened<D>, StoreError<D::Error>> {
        let base = half_base(half_blocks, sb.active);
        let found = scan(&mut dev, base, half_blocks, sb.generation as u32)?;
        let mut tail = [0u8; BLOCK_SIZE];
        let tail_block = found.end / BLOCK_U64;
        let used = (found.end % BLOCK_U64) as usize;
        if used > 0 {
            let block = read(&mut dev, base + tail_block)?;
            if let (Some(dst), Some(src)) = (tail.get_mut(..used), block.get(..used)) {
                dst.copy_from_slice(src);
            }
        }
        let store = Self {
            dev,
            half_blocks,
            active: sb.active,
            generation: sb.generation,
            boot_count: sb.boot_count,
            read_only,
            torn: found.torn,
            formatted,
            end: found.end,
            tail,
            pending: Vec::new(),
            entries: found.payloads.len() as u64,
        };
        let report = store.report();
        Ok((store, report, found.payloads))
    }

    fn capacity(&self) -> u64 {
        self.half_blocks * BLOCK_U64
    }

    fn gen32(&self) -> u32 {
        // The low 32 bits are what an entry header records.
        self.generation as u32
    }

    /// Buffers one entry (payload up to [`MAX_ENTRY`] bytes). `Err(Full)` if
    /// it would not fit in the active half together with what is already
    /// there and already buffered: the caller then calls
    /// [`compact`](Self::compact) with its live set.
    pub fn append(&mut self, payload: &[u8]) -> Result<(), StoreError<D::Error>> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        if payload.len() > MAX_ENTRY {
            return Err(StoreError::EntryTooLarge);
        }
        let header =
            EntryHeader::for_payload(self.gen32(), payload).ok_or(StoreError::EntryTooLarge)?;
        let need = (ENTRY_HEADER_LEN + payload.len()) as u64;
        let fits = self
            .end
            .checked_add(self.pending.len() as u64)
            .and_then(|u| u.checked_add(need))
            .is_some_and(|u| u <= self.capacity());
        if !fits {
            return Err(StoreError::Full);
        }
        self.pending.extend_from_slice(&header.encode());
        self.pending.extend_from_slice(payload);
        self.entries += 1;
        Ok(())
    }

    /// Writes buffered entries to the device, whole blocks at a time; the
    /// partial last block is written zero-padded, kept in memory and
    /// rewritten by the next flush. On error nothing is marked flushed, so a
    /// retry rewrites the same bytes.
    pub fn flush(&mut self) -> Result<(), StoreError<D::Error>> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut w = HalfWriter {
            base: half_base(self.half_blocks, self.active),
            half_blocks: self.half_blocks,
            pos: self.end,
            buf: self.tail,
        };
        w.push(&mut self.dev, &self.pending)?;
        w.finish(&mut self.dev)?;
        self.end = w.pos;
        self.tail = w.buf;
        self.pending.clear();
        Ok(())
    }

    /// Writes `live` (the payloads that should survive) into the other half
    /// under a new generation, then switches the superblock to it. A crash
    /// before the superblock write leaves the old half active and intact.
    ///
    /// `live` replaces the store's contents: entries buffered but not
    /// flushed are dropped unless they are part of `live`. `Err(Full)` if
    /// `live` does not fit in a half, `Err(EntryTooLarge)` if one payload is
    /// too long; after either (or a device error) the old half stays active
    /// and nothing in memory changes, although the inactive half may have
    /// been partly written.
    pub fn compact<'a>(
        &mut self,
        live: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), StoreError<D::Error>> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let target = 1 - self.active;
        let generation = self.generation.checked_add(1).ok_or(StoreError::Full)?;
        let gen32 = generation as u32;
        let mut w = HalfWriter {
            base: half_base(self.half_blocks, target),
            half_blocks: self.half_blocks,
            pos: 0,
            buf: [0; BLOCK_SIZE],
        };
        let mut entries = 0u64;
        for payload in live {
            if payload.len() > MAX_ENTRY {
                return Err(StoreError::EntryTooLarge);
            }
            let header =
                EntryHeader::for_payload(gen32, payload).ok_or(StoreError::EntryTooLarge)?;
            let need = (ENTRY_HEADER_LEN + payload.len()) as u64;
            if w.pos.checked_add(need).is_none_or(|e| e > w.capacity()) {
                return Err(StoreError::Full);
            }
            w.push(&mut self.dev, &header.encode())?;
            w.push(&mut self.dev, payload)?;
            entries += 1;
        }
        w.finish(&mut self.dev)?;
        let sb = Superblock {
            active: target,
            generation,
            boot_count: self.boot_count,
        };
        write(&mut self.dev, SUPERBLOCK, &sb.encode())?;
        self.active = target;
        self.generation = generation;
        self.end = w.pos;
        self.tail = w.buf;
        self.pending.clear();
        self.entries = entries;
        Ok(())
    }

    /// The store's current numbers (entries and bytes include buffered
    /// entries; `torn` and `formatted` are as found at mount).
    pub fn report(&self) -> MountReport {
        MountReport {
            boot_count: self.boot_count,
            generation: self.generation,
            entries: self.entries,
            torn: self.torn,
            formatted: self.formatted,
            bytes_used: self.end + self.pending.len() as u64,
            capacity: self.capacity(),
        }
    }

    /// Bytes appended but not yet flushed.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Gives the device back (buffered entries are dropped).
    pub fn into_device(self) -> D {
        self.dev
    }
}
