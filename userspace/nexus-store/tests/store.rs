//! Behaviour of the store on a MemDisk: mount, append/flush, torn writes,
//! overflow, compaction and crashes.

use nexus_store::{
    BlockDevice, MemDisk, MemDiskError, MountReport, StateStore, StoreError, BLOCK_SIZE,
    ENTRY_HEADER_LEN, MAX_ENTRY,
};

type Store<D> = StateStore<D>;

#[cfg(test)]
mod support {
    use super::*;

    /// Mounts a device that the test expects to mount.
    pub fn mount<D: BlockDevice>(dev: D) -> (Store<D>, MountReport, Vec<Vec<u8>>) {
        StateStore::mount(dev).unwrap()
    }
}
use support::mount;

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// Byte offset of half `half` on a disk with `half_blocks` blocks per half.
fn half_offset(half_blocks: u64, half: u64) -> usize {
    ((1 + half * half_blocks) as usize) * BLOCK_SIZE
}

#[test]
fn blank_disk_is_formatted_and_mounts_empty() {
    let (store, report, entries) = mount(MemDisk::new(9));
    assert!(entries.is_empty());
    assert_eq!(
        report,
        MountReport {
            boot_count: 1,
            generation: 1,
            entries: 0,
            torn: false,
            formatted: true,
            bytes_used: 0,
            capacity: 4 * 512,
        }
    );
    let img = store.into_device().into_image();
    assert_eq!(&img[..8], b"NXSTORE1");

    let (_, report, entries) = mount(MemDisk::from_image(img));
    assert!(entries.is_empty());
    assert!(!report.formatted);
    assert_eq!(report.boot_count, 2);
}

#[test]
fn too_small_devices_are_refused() {
    for blocks in 0..5 {
        assert!(matches!(
            StateStore::mount(MemDisk::new(blocks)),
            Err(StoreError::TooSmall)
        ));
        assert!(matches!(
            StateStore::open_read_only(MemDisk::new(blocks)),
            Err(StoreError::TooSmall)
        ));
    }
    assert!(StateStore::mount(MemDisk::new(5)).is_ok());
}

#[test]
fn entries_survive_remount_in_order_and_boot_count_increments() {
    let (mut store, _, _) = mount(MemDisk::new(64));
    let want: Vec<Vec<u8>> = (0..20).map(|i| payload(i, i * 13)).collect();
    for p in &want {
        store.append(p).unwrap();
    }
    store.flush().unwrap();
    let mut dev = store.into_device();
    for boot in 2..6 {
        let (store, report, got) = mount(dev);
        assert_eq!(got, want);
        assert_eq!(report.boot_count, boot);
        assert_eq!(report.entries, 20);
        assert!(!report.torn && !report.formatted);
        dev = store.into_device();
    }
    // A read-only open sees the same and does not count a boot.
    let before = dev.clone();
    let (store, report, got) = StateStore::open_read_only(dev).unwrap();
    assert_eq!(got, want);
    assert_eq!(report.boot_count, 5);
    assert_eq!(store.into_device(), before);
}

#[test]
fn flushes_continue_the_stream() {
    let (mut store, _, _) = mount(MemDisk::new(64));
    let mut want = Vec::new();
    for round in 0..10 {
        for i in 0..3 {
            let p = payload(round * 3 + i, 50 + round * 40);
            store.append(&p).unwrap();
            want.push(p);
        }
        store.flush().unwrap();
        let report = store.report();
        assert_eq!(report.entries, want.len() as u64);
    }
    let (_, _, got) = mount(store.into_device());
    assert_eq!(got, want);
}

#[test]
fn unflushed_entries_are_lost_cleanly() {
    let (mut store, _, _) = mount(MemDisk::new(64));
    store.append(b"one").unwrap();
    store.append(b"two").unwrap();
    store.flush().unwrap();
    store.append(b"three").unwrap();
    store.append(&[9u8; 700]).unwrap();
    assert_eq!(store.report().entries, 4);
    assert!(store.pending_bytes() > 0);
    let (_, report, got) = mount(store.into_device());
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    assert!(!report.torn);
    assert_eq!(report.entries, 2);
}

#[test]
fn torn_last_entry_is_detected_skipped_and_overwritten() {
    let (mut store, _, _) = mount(MemDisk::new(64));
    let first = payload(1, 100);
    let second = payload(2, 200);
    let last = payload(3, 300);
    for p in [&first, &second, &last] {
        store.append(p).unwrap();
    }
    store.flush().unwrap();
    let mut dev = store.into_device();
    // Corrupt one byte of the last entry's payload.
    let last_payload_at = half_offset(31, 0) + 2 * ENTRY_HEADER_LEN + 300 + ENTRY_HEADER_LEN + 150;
    dev.as_bytes_mut()[last_payload_at] ^= 0xFF;

    let (mut store, report, got) = mount(dev);
    assert!(report.torn);
    assert_eq!(got, vec![first.clone(), second.clone()]);
    assert_eq!(report.entries, 2);
    assert_eq!(report.bytes_used, (2 * ENTRY_HEADER_LEN + 300) as u64);

    // The next append lands where the torn entry was.
    let replacement = payload(4, 10);
    store.append(&replacement).unwrap();
    store.flush().unwrap();
    let (_, report, got) = mount(store.into_device());
    assert!(!report.torn);
    assert_eq!(got, vec![first, second, replacement]);
}

#[test]
fn torn_length_field_is_detected() {
    let (mut store, _, _) = mount(MemDisk::new(64));
    store.append(b"keep").unwrap();
    store.append(b"lost").unwrap();
    store.flush().unwrap();
    let mut dev = store.into_device();
    let len_at = half_offset(31, 0) + ENTRY_HEADER_LEN + 4 + 8;
    dev.as_bytes_mut()[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let (_, report, got) = mount(dev);
    assert!(report.torn);
    assert_eq!(got, vec![b"keep".to_vec()]);
}

#[test]
fn a_header_cut_mid_flush_reads_as_the_end() {
    // A crash that wrote the header's block but not the next one: here the
    // payload block keeps zeros, so the CRC fails.
    let (mut store, _, _) = mount(MemDisk::new(64));
    let big = payload(1, 1000);
    store.append(&big).unwrap();
    store.flush().unwrap();
    let mut dev = store.into_device();
    let at = half_offset(31, 0) + 512;
    dev.as_bytes_mut()[at..at + 512].fill(0);
    let (_, report, got) = mount(dev);
    assert!(report.torn);
    assert!(got.is_empty());
}

#[test]
fn entries_span_block_boundaries() {
    let (mut store, _, _) = mount(MemDisk::new(64));
    // Sizes chosen so headers and payloads straddle 512-byte boundaries,
    // including a header split across two blocks.
    let sizes = [500usize, 3, 1021, 0, 509, MAX_ENTRY, 1, 511, 512, 513];
    let want: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i, n))
        .collect();
    for (i, p) in want.iter().enumerate() {
        store.append(p).unwrap();
        if i % 3 == 0 {
            store.flush().unwrap();
        }
    }
    store.flush().unwrap();
    let (_, report, got) = mount(store.into_device());
    assert_eq!(got, want);
    let used: usize = sizes.iter().map(|n| n + ENTRY_HEADER_LEN).sum();
    assert_eq!(report.bytes_used, used as u64);
}

#[test]
fn oversized_entries_are_refused() {
    let (mut store, _, _) = mount(MemDisk::new(64));
    assert!(matches!(
        store.append(&vec![0u8; MAX_ENTRY + 1]),
        Err(StoreError::EntryTooLarge)
    ));
    assert!(store.append(&vec![0u8; MAX_ENTRY]).is_ok());
    assert!(matches!(
        store.compact([vec![0u8; MAX_ENTRY + 1].as_slice()]),
        Err(StoreError::EntryTooLarge)
    ));
}

#[test]
fn full_half_is_reported_and_nothing_is_lost() {
    // 9 blocks: halves of 4 blocks = 2048 bytes.
    let (mut store, report, _) = mount(MemDisk::new(9));
    assert_eq!(report.capacity, 2048);
    let mut want = Vec::new();
    // 2048 = 8 entries of 16 + 240.
    for i in 0..8 {
        let p = payload(i, 240);
        store.append(&p).unwrap();
        want.push(p);
        if i == 3 {
            store.flush().unwrap();
        }
    }
    assert_eq!(store.report().bytes_used, 2048);
    assert!(matches!(store.append(b""), Err(StoreError::Full)));
    store.flush().unwrap();
    assert!(matches!(store.append(b""), Err(StoreError::Full)));
    let (mut store, report, got) = mount(store.into_device());
    assert_eq!(got, want);
    assert!(!report.torn);
    assert!(matches!(store.append(b"x"), Err(StoreError::Full)));

    // Buffered data counts too.
    let (mut store, _, _) = mount(MemDisk::new(9));
    store.append(&payload(0, 2000)).unwrap();
    assert!(matches!(
        store.append(&payload(1, 40)),
        Err(StoreError::Full)
    ));
    store.append(&payload(1, 2048 - 2016 - 16)).unwrap();
}

#[test]
fn compact_moves_the_live_set_to_a_new_generation() {
    let (mut store, _, _) = mount(MemDisk::new(9));
    let all: Vec<Vec<u8>> = (0..8).map(|i| payload(i, 240)).collect();
    for p in &all {
        store.append(p).unwrap();
    }
    store.flush().unwrap();
    assert!(matches!(store.append(b"more"), Err(StoreError::Full)));

    let live: Vec<&[u8]> = vec![&all[1], &all[6]];
    store.compact(live.iter().copied()).unwrap();
    let report = store.report();
    assert_eq!(report.generation, 2);
    assert_eq!(report.entries, 2);
    assert_eq!(report.bytes_used, 2 * 256);
    store.append(b"after").unwrap();
    store.flush().unwrap();

    let dev = store.into_device();
    // The old generation's bytes are still in half 0.
    let h0 = half_offset(4, 0);
    assert_eq!(&dev.as_bytes()[h0 + 16..h0 + 256], all[0].as_slice());

    let (mut store, report, got) = mount(dev);
    assert_eq!(got, vec![all[1].clone(), all[6].clone(), b"after".to_vec()]);
    assert_eq!(report.generation, 2);
    assert!(!report.torn);

    // Compact back into half 0 with a shorter set: the generation-1 entries
    // that follow it there are never read.
    store.compact([b"only".as_slice()]).unwrap();
    let (mut store, report, got) = mount(store.into_device());
    assert_eq!(got, vec![b"only".to_vec()]);
    assert_eq!(report.generation, 3);

    // An empty live set leaves an empty store.
    store.compact(std::iter::empty()).unwrap();
    let (_, report, got) = mount(store.into_device());
    assert!(got.is_empty());
    assert_eq!(report.generation, 4);
}

#[test]
fn stale_generation_right_after_the_end_is_never_trusted() {
    // Make the new generation end exactly on a block boundary in a half
    // that holds older entries: the terminator block must stop the scan.
    let (mut store, _, _) = mount(MemDisk::new(9));
    for i in 0..8 {
        store.append(&payload(i, 240)).unwrap();
    }
    store.flush().unwrap();
    store.compact([b"x".as_slice()]).unwrap(); // gen 2 in half 1
    let exact = payload(9, 512 - ENTRY_HEADER_LEN);
    store.compact([exact.as_slice()]).unwrap(); // gen 3 in half 0, ends at 512
    let (_, _, got) = mount(store.into_device());
    assert_eq!(got, vec![exact]);
}

#[test]
fn compact_refuses_a_live_set_that_does_not_fit() {
    let (mut store, _, _) = mount(MemDisk::new(9));
    store.append(b"kept").unwrap();
    store.flush().unwrap();
    let big = payload(0, 1500);
    assert!(matches!(
        store.compact([big.as_slice(), big.as_slice()]),
        Err(StoreError::Full)
    ));
    assert_eq!(store.report().generation, 1);
    store.append(b"still here").unwrap();
    store.flush().unwrap();
    let (_, report, got) = mount(store.into_device());
    assert_eq!(got, vec![b"kept".to_vec(), b"still here".to_vec()]);
    assert_eq!(report.generation, 1);
}

/// Simulates power loss: after `budget` block writes, every write is
/// acknowledged but never reaches the disk.
#[derive(Debug)]
struct LossyDisk {
    inner: MemDisk,
    budget: Option<usize>,
    /// Writes to block 0 only are dropped (once armed).
    drop_superblock: bool,
    /// After this many more writes, one write fails with an error.
    fail_at: Option<usize>,
}

impl LossyDisk {
    fn new(inner: MemDisk) -> Self {
        Self {
            inner,
            budget: None,
            drop_superblock: false,
            fail_at: None,
        }
    }
}

impl BlockDevice for LossyDisk {
    type Error = MemDiskError;

    fn block_count(&self) -> u64 {
        self.inner.block_count()
    }

    fn read_block(&mut self, index: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), MemDiskError> {
        self.inner.read_block(index, buf)
    }

    fn write_block(&mut self, index: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), MemDiskError> {
        match &mut self.fail_at {
            Some(0) => {
                self.fail_at = None;
                return Err(MemDiskError {
                    index,
                    block_count: 0,
                });
            }
            Some(n) => *n -= 1,
            None => {}
        }
        if self.drop_superblock && index == 0 {
            return Ok(());
        }
        match &mut self.budget {
            Some(0) => Ok(()),
            Some(n) => {
                *n -= 1;
                self.inner.write_block(index, buf)
            }
            None => self.inner.write_block(index, buf),
        }
    }
}

#[test]
fn lost_superblock_write_keeps_the_old_half() {
    let (mut store, _, _) = mount(LossyDisk::new(MemDisk::new(32)));
    let old: Vec<Vec<u8>> = (0..10).map(|i| payload(i, 100 + i)).collect();
    for p in &old {
        store.append(p).unwrap();
    }
    store.flush().unwrap();
    let mut dev = store.into_device();
    dev.drop_superblock = true;
    let (mut store, _, got) = mount(dev);
    assert_eq!(got, old);
    store.compact([b"new".as_slice()]).unwrap();
    // The store believes it switched; the disk never saw the superblock.
    assert_eq!(store.report().generation, 2);
    let disk = store.into_device().inner;
    let (_, report, got) = mount(disk);
    assert_eq!(got, old);
    assert_eq!(report.generation, 1);
    assert_eq!(report.boot_count, 2);
}

#[test]
fn crash_at_every_point_of_a_compaction_gives_old_or_new() {
    let (mut store, _, _) = mount(MemDisk::new(32));
    let old: Vec<Vec<u8>> = (0..10).map(|i| payload(i, 300)).collect();
    for p in &old {
        store.append(p).unwrap();
    }
    store.flush().unwrap();
    let base = store.into_device();
    let new: Vec<Vec<u8>> = vec![old[2].clone(), payload(99, 1200)];
    let mut saw_new = false;
    for budget in 0..12 {
        let mut dev = LossyDisk::new(base.clone());
        dev.budget = Some(budget + 1); // +1 for the mount's superblock write
        let (mut s, _, _) = mount(dev);
        s.compact(new.iter().map(Vec::as_slice)).unwrap();
        let (_, report, got) = mount(s.into_device().inner);
        assert!(!report.formatted);
        if got == new {
            saw_new = true;
            assert_eq!(report.generation, 2);
        } else {
            assert_eq!(got, old, "budget {budget}");
            assert_eq!(report.generation, 1);
        }
    }
    assert!(saw_new);
}

#[test]
fn crash_at_every_point_of_a_flush_gives_a_prefix() {
    let (mut store, _, _) = mount(MemDisk::new(64));
    let first: Vec<Vec<u8>> = (0..3).map(|i| payload(i, 200)).collect();
    for p in &first {
        store.append(p).unwrap();
    }
    store.flush().unwrap();
    let base = store.into_device();
    let more: Vec<Vec<u8>> = (3..12).map(|i| payload(i, 150 + 97 * i)).collect();
    let all: Vec<Vec<u8>> = first.iter().chain(&more).cloned().collect();
    let mut lengths = Vec::new();
    for budget in 0..20 {
        let mut dev = LossyDisk::new(base.clone());
        dev.budget = Some(budget + 1);
        let (mut s, _, _) = mount(dev);
        for p in &more {
            s.append(p).unwrap();
        }
        s.flush().unwrap();
        let (_, _, got) = mount(s.into_device().inner);
        assert!(got.len() >= first.len());
        assert_eq!(got[..], all[..got.len()], "budget {budget}");
        lengths.push(got.len());
    }
    assert_eq!(*lengths.last().unwrap(), all.len());
    assert!(lengths.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn corrupt_superblock_formats_on_mount_and_reads_empty_read_only() {
    let (mut store, _, _) = mount(MemDisk::new(32));
    store.append(b"data").unwrap();
    store.flush().unwrap();
    let mut dev = store.into_device();
    dev.as_bytes_mut()[20] ^= 1; // inside the generation field

    let before = dev.clone();
    let (mut ro, report, got) = StateStore::open_read_only(dev).unwrap();
    assert!(got.is_empty());
    assert_eq!(report.entries, 0);
    assert!(!report.formatted);
    assert!(matches!(ro.append(b"x"), Err(StoreError::ReadOnly)));
    assert!(matches!(ro.flush(), Err(StoreError::ReadOnly)));
    assert!(matches!(
        ro.compact(std::iter::empty()),
        Err(StoreError::ReadOnly)
    ));
    let dev = ro.into_device();
    assert_eq!(dev, before, "read-only open must not write");

    let (_, report, got) = mount(dev);
    assert!(got.is_empty());
    assert!(report.formatted);
    assert_eq!(report.generation, 1);
    assert_eq!(report.boot_count, 1);
}

#[test]
fn read_only_open_of_a_valid_image_refuses_writes() {
    let (mut store, _, _) = mount(MemDisk::new(32));
    store.append(b"a").unwrap();
    store.flush().unwrap();
    let (mut ro, report, got) = StateStore::open_read_only(store.into_device()).unwrap();
    assert_eq!(got, vec![b"a".to_vec()]);
    assert_eq!(report.boot_count, 1);
    assert!(matches!(ro.append(b"x"), Err(StoreError::ReadOnly)));
}

#[test]
fn borrowed_devices_work() {
    let mut disk = MemDisk::new(16);
    {
        let (mut store, _, _) = StateStore::mount(&mut disk).unwrap();
        store.append(b"via &mut").unwrap();
        store.flush().unwrap();
    }
    let (_, _, got) = mount(disk);
    assert_eq!(got, vec![b"via &mut".to_vec()]);
}

#[test]
fn a_failed_flush_reports_the_device_error_and_can_be_retried() {
    let mut dev = LossyDisk::new(MemDisk::new(16));
    // Writes: the format (half 0's first block, superblock), the boot
    // count, the first flush, the first block of the second flush; the one
    // after fails once.
    dev.fail_at = Some(5);
    let (mut store, _, _) = mount(dev);
    store.append(b"before").unwrap();
    store.flush().unwrap();
    let big = payload(1, 1500);
    store.append(&big).unwrap();
    store.append(b"tail").unwrap();
    let pending = store.pending_bytes();
    assert!(matches!(store.flush(), Err(StoreError::Device(_))));
    assert_eq!(store.pending_bytes(), pending);
    store.flush().unwrap();
    assert_eq!(store.pending_bytes(), 0);
    let (_, _, got) = mount(store.into_device().inner);
    assert_eq!(got, vec![b"before".to_vec(), big, b"tail".to_vec()]);
}

#[test]
fn a_failed_mount_write_is_an_error() {
    let mut dev = LossyDisk::new(MemDisk::new(16));
    dev.fail_at = Some(0);
    assert!(matches!(StateStore::mount(dev), Err(StoreError::Device(_))));
}

#[test]
fn entries_after_a_torn_one_never_come_back() {
    // e1 fills block 0 of the half exactly; e2 starts at block 1.
    let (mut store, _, _) = mount(MemDisk::new(64));
    let e1 = payload(1, BLOCK_SIZE - ENTRY_HEADER_LEN);
    let e2 = payload(2, 100);
    store.append(&e1).unwrap();
    store.append(&e2).unwrap();
    store.flush().unwrap();
    let mut dev = store.into_device();
    dev.as_bytes_mut()[half_offset(31, 0) + 100] ^= 0x55;
    let (mut store, report, got) = mount(dev);
    assert!(report.torn);
    assert!(got.is_empty());
    // The replacement also ends exactly on the block boundary, where the
    // intact, same-generation e2 still sits on disk.
    let x = payload(3, BLOCK_SIZE - ENTRY_HEADER_LEN);
    store.append(&x).unwrap();
    store.flush().unwrap();
    let (_, report, got) = mount(store.into_device());
    assert!(!report.torn);
    assert_eq!(got, vec![x]);
}
