//! Property tests: the store against a Vec model, crashes at random points,
//! and arbitrary or corrupted images.

use std::cell::Cell;
use std::rc::Rc;

use nexus_store::{
    BlockDevice, MemDisk, MemDiskError, StateStore, StoreError, BLOCK_SIZE, ENTRY_HEADER_LEN,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// 17 blocks: halves of 8 blocks (4096 bytes), so `Full` happens often.
const BLOCKS: u64 = 17;
const CAPACITY: usize = 8 * BLOCK_SIZE;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Flush,
    /// Keep the entries whose flag is set (durable then pending, in order),
    /// then add `extra`.
    Compact {
        keep: Vec<bool>,
        extra: Vec<Vec<u8>>,
    },
    Remount,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..700).prop_map(Op::Append),
        3 => Just(Op::Flush),
        1 => (vec(any::<bool>(), 0..40), vec(vec(any::<u8>(), 0..400), 0..3))
            .prop_map(|(keep, extra)| Op::Compact { keep, extra }),
        1 => Just(Op::Remount),
    ]
}

fn used(entries: &[Vec<u8>]) -> usize {
    entries.iter().map(|e| ENTRY_HEADER_LEN + e.len()).sum()
}

fn live_set(
    durable: &[Vec<u8>],
    pending: &[Vec<u8>],
    keep: &[bool],
    extra: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    durable
        .iter()
        .chain(pending)
        .zip(keep.iter().chain(std::iter::repeat(&false)))
        .filter(|(_, &k)| k)
        .map(|(e, _)| e.clone())
        .chain(extra.iter().cloned())
        .collect()
}

/// A device that silently drops every write after the first `budget`
/// (power loss), counting all writes in a shared cell.
#[derive(Debug)]
struct CrashDisk {
    inner: MemDisk,
    writes: Rc<Cell<usize>>,
    budget: usize,
}

impl BlockDevice for CrashDisk {
    type Error = MemDiskError;

    fn block_count(&self) -> u64 {
        self.inner.block_count()
    }

    fn read_block(&mut self, index: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), MemDiskError> {
        self.inner.read_block(index, buf)
    }

    fn write_block(&mut self, index: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), MemDiskError> {
        let n = self.writes.get();
        self.writes.set(n + 1);
        if n < self.budget {
            self.inner.write_block(index, buf)
        } else {
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn store_matches_a_vec_model(ops in vec(op(), 1..60)) {
        let (mut store, report, got) = StateStore::mount(MemDisk::new(BLOCKS)).unwrap();
        prop_assert!(got.is_empty());
        prop_assert_eq!(report.capacity, CAPACITY as u64);
        let mut durable: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut boot = 1u32;
        let mut generation = 1u64;
        for op in ops {
            match op {
                Op::Append(p) => {
                    let fits = used(&durable) + used(&pending) + ENTRY_HEADER_LEN + p.len() <= CAPACITY;
                    let r = store.append(&p);
                    if fits {
                        prop_assert!(r.is_ok());
                        pending.push(p);
                    } else {
                        prop_assert!(matches!(r, Err(StoreError::Full)));
                    }
                }
                Op::Flush => {
                    store.flush().unwrap();
                    durable.append(&mut pending);
                }
                Op::Compact { keep, extra } => {
                    let live = live_set(&durable, &pending, &keep, &extra);
                    let r = store.compact(live.iter().map(Vec::as_slice));
                    if used(&live) <= CAPACITY {
                        prop_assert!(r.is_ok());
                        durable = live;
                        pending.clear();
                        generation += 1;
                    } else {
                        prop_assert!(matches!(r, Err(StoreError::Full)));
                    }
                }
                Op::Remount => {
                    let (s, report, got) = StateStore::mount(store.into_device()).unwrap();
                    store = s;
                    pending.clear();
                    boot += 1;
                    prop_assert_eq!(&got, &durable);
                    prop_assert!(!report.torn);
                    prop_assert!(!report.formatted);
                    prop_assert_eq!(report.boot_count, boot);
                }
            }
            let report = store.report();
            prop_assert_eq!(report.entries, (durable.len() + pending.len()) as u64);
            prop_assert_eq!(report.bytes_used, (used(&durable) + used(&pending)) as u64);
            prop_assert_eq!(report.generation, generation);
        }
        let (_, _, got) = StateStore::open_read_only(store.into_device()).unwrap();
        prop_assert_eq!(got, durable);
    }

    #[test]
    fn a_crash_at_any_write_leaves_a_consistent_state(
        ops in vec(op(), 1..40),
        budget in 0usize..80,
    ) {
        let writes = Rc::new(Cell::new(0usize));
        let dev = CrashDisk { inner: MemDisk::new(BLOCKS), writes: Rc::clone(&writes), budget };
        let (mut store, _, _) = StateStore::mount(dev).unwrap();
        let mut durable: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        // The states a remount may show if the crash happened in the last op.
        let mut acceptable: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
        let mut crashed = writes.get() > budget;
        for op in ops {
            if crashed {
                break;
            }
            let before = durable.clone();
            acceptable = match op {
                Op::Append(p) => {
                    if store.append(&p).is_ok() {
                        pending.push(p);
                    }
                    vec![before]
                }
                Op::Flush => {
                    store.flush().unwrap();
                    let all: Vec<Vec<u8>> = before.iter().chain(&pending).cloned().collect();
                    durable.append(&mut pending);
                    (before.len()..=all.len()).map(|k| all[..k].to_vec()).collect()
                }
                Op::Compact { keep, extra } => {
                    let live = live_set(&durable, &pending, &keep, &extra);
                    if store.compact(live.iter().map(Vec::as_slice)).is_ok() {
                        durable = live.clone();
                        pending.clear();
                    }
                    vec![before, live]
                }
                Op::Remount => {
                    let (s, _, got) = StateStore::mount(store.into_device()).unwrap();
                    store = s;
                    pending.clear();
                    prop_assert_eq!(&got, &durable);
                    vec![before]
                }
            };
            crashed = writes.get() > budget;
        }
        if !crashed {
            acceptable = vec![durable];
        }
        let disk = store.into_device().inner;
        let (_, report, got) = StateStore::mount(disk).unwrap();
        prop_assert!(
            acceptable.contains(&got),
            "got {} entries, acceptable lengths {:?}",
            got.len(),
            acceptable.iter().map(Vec::len).collect::<Vec<_>>()
        );
        prop_assert_eq!(report.entries, got.len() as u64);
    }

    #[test]
    fn arbitrary_images_never_panic(image in vec(any::<u8>(), 0..12 * BLOCK_SIZE)) {
        check_image(image)?;
    }

    #[test]
    fn corrupted_images_never_panic_and_stay_appendable(
        entries in vec(vec(any::<u8>(), 0..600), 0..12),
        compact_first in any::<bool>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        words in vec((any::<prop::sample::Index>(), any::<u32>()), 0..4),
    ) {
        let (mut store, _, _) = StateStore::mount(MemDisk::new(BLOCKS)).unwrap();
        if compact_first {
            store.compact([b"old".as_slice()]).unwrap();
        }
        for e in &entries {
            if store.append(e).is_err() {
                break;
            }
        }
        store.flush().unwrap();
        let mut image = store.into_device().into_image();
        let len = image.len();
        for (at, x) in flips {
            image[at.index(len)] ^= x;
        }
        for (at, w) in words {
            let at = at.index(len - 4);
            image[at..at + 4].copy_from_slice(&w.to_le_bytes());
        }
        check_image(image)?;
    }
}

fn fail(e: StoreError<MemDiskError>) -> TestCaseError {
    TestCaseError::fail(format!("{e}"))
}

/// Neither open panics; what mount returns stays readable, and one more
/// entry appended after it comes back after a remount.
fn check_image(image: Vec<u8>) -> Result<(), TestCaseError> {
    let disk = MemDisk::from_image(image);
    let before = disk.clone();
    let ro = StateStore::open_read_only(disk.clone());
    if let Ok((store, report, got)) = ro {
        prop_assert_eq!(report.entries, got.len() as u64);
        prop_assert_eq!(store.into_device(), before);
    }
    let Ok((mut store, report, got)) = StateStore::mount(disk) else {
        return Ok(());
    };
    prop_assert_eq!(report.entries, got.len() as u64);
    prop_assert!(report.bytes_used <= report.capacity);
    let fits = store.append(b"probe").is_ok();
    store.flush().map_err(fail)?;
    let (_, report2, got2) = StateStore::mount(store.into_device()).map_err(fail)?;
    let mut want = got;
    if fits {
        want.push(b"probe".to_vec());
    }
    prop_assert_eq!(got2, want);
    prop_assert!(!report2.formatted);
    Ok(())
}
