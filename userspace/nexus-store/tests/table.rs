//! The region table: create, reopen, extend, refuse.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::rc::Rc;

use nexus_store::{
    BlockDevice, LayoutError, MemDisk, RegionTable, StateStore, BLOCK_SIZE, MAX_REGIONS,
};
use proptest::prelude::*;

#[test]
fn a_blank_disk_gets_a_table_and_regions_in_order() {
    let mut disk = MemDisk::new(1000);
    let (t, r) = RegionTable::open(&mut disk, &[("logd", 300), ("metricsd", 200)]).unwrap();
    assert!(r.formatted);
    assert_eq!(r.added, ["logd", "metricsd"]);
    assert_eq!(t.boot, 1);
    let l = t.get("logd").unwrap();
    let m = t.get("metricsd").unwrap();
    assert_eq!((l.first, l.blocks), (1, 300));
    assert_eq!((m.first, m.blocks), (301, 200));
    assert_eq!(RegionTable::read(&mut disk).unwrap(), Some(t));
}

#[test]
fn reopening_keeps_offsets_and_counts_the_boot() {
    let mut disk = MemDisk::new(1000);
    let (t1, _) = RegionTable::open(&mut disk, &[("logd", 300), ("metricsd", 200)]).unwrap();
    // A profile that lists them in another order, with other sizes, moves nothing.
    let (t2, r) = RegionTable::open(&mut disk, &[("metricsd", 50), ("logd", 999)]).unwrap();
    assert!(!r.formatted && r.added.is_empty());
    assert_eq!(t2.entries, t1.entries);
    assert_eq!(t2.boot, 2);
}

#[test]
fn adding_a_region_never_moves_the_existing_ones() {
    let disk = Rc::new(RefCell::new(MemDisk::new(1000)));
    let (t1, _) = RegionTable::open(&mut *disk.borrow_mut(), &[("logd", 300)]).unwrap();
    // logd writes its store in its region.
    {
        let region = t1.region(&disk, "logd").unwrap();
        let (mut store, _, _) = StateStore::mount(region).unwrap();
        store.append(b"kept").unwrap();
        store.flush().unwrap();
    }
    let (t2, r) =
        RegionTable::open(&mut *disk.borrow_mut(), &[("logd", 300), ("traced", 100)]).unwrap();
    assert_eq!(r.added, ["traced"]);
    assert_eq!(t2.get("logd"), t1.get("logd"));
    assert_eq!(t2.get("traced").unwrap().first, 301);
    let (_, mount, entries) = StateStore::mount(t2.region(&disk, "logd").unwrap()).unwrap();
    assert!(!mount.formatted);
    assert_eq!(entries, vec![b"kept".to_vec()]);
}

#[test]
fn the_first_wave_layout_is_refused_not_guessed() {
    // The old runtime split the disk in two halves by position: logd's
    // store superblock sits in block 0.
    let mut disk = MemDisk::new(1000);
    {
        let (mut store, _, _) = StateStore::mount(&mut disk).unwrap();
        store.append(b"old").unwrap();
        store.flush().unwrap();
    }
    assert_eq!(
        RegionTable::open(&mut disk, &[("logd", 300)]),
        Err(LayoutError::LegacyLayout)
    );
}

#[test]
fn garbage_and_corrupt_tables_are_refused() {
    let mut disk = MemDisk::new(1000);
    disk.write_block(0, &[0x5a; BLOCK_SIZE]).unwrap();
    assert_eq!(
        RegionTable::open(&mut disk, &[("logd", 10)]),
        Err(LayoutError::Unrecognised)
    );
    let mut disk = MemDisk::new(1000);
    RegionTable::open(&mut disk, &[("logd", 10)]).unwrap();
    let mut b = [0u8; BLOCK_SIZE];
    disk.read_block(0, &mut b).unwrap();
    b[20] ^= 1;
    disk.write_block(0, &b).unwrap();
    assert_eq!(
        RegionTable::open(&mut disk, &[("logd", 10)]),
        Err(LayoutError::Unrecognised)
    );
}

#[test]
fn bounds_names_and_space_are_checked() {
    let mut disk = MemDisk::new(100);
    assert_eq!(
        RegionTable::open(&mut disk, &[("logd", 100)]),
        Err(LayoutError::NoSpace {
            name: "logd".into(),
            need: 100,
            free: 99
        })
    );
    for bad in ["", "Logd", "a-very-long-region-name", "lo gd"] {
        assert_eq!(
            RegionTable::open(&mut disk, &[(bad, 1)]),
            Err(LayoutError::BadName(bad.into())),
            "{bad:?}"
        );
    }
    assert_eq!(
        RegionTable::open(&mut disk, &[("a", 1), ("a", 1)]),
        Err(LayoutError::BadName("a".into()))
    );
    let names: Vec<String> = (0..=MAX_REGIONS).map(|i| format!("r{i}")).collect();
    let wanted: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    assert_eq!(
        RegionTable::open(&mut disk, &wanted),
        Err(LayoutError::TooManyRegions)
    );
    assert!(RegionTable::open(&mut disk, &wanted[..MAX_REGIONS]).is_ok());
}

proptest! {
    #[test]
    fn decode_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), BLOCK_SIZE),
                                           sizes in proptest::collection::vec(1u64..50, 0..MAX_REGIONS)) {
        let block: [u8; BLOCK_SIZE] = bytes.try_into().unwrap();
        let _ = RegionTable::decode(&block, 10_000);
        let mut disk = MemDisk::new(1 + 50 * MAX_REGIONS as u64);
        let names: Vec<String> = (0..sizes.len()).map(|i| format!("r{i}")).collect();
        let wanted: Vec<(&str, u64)> = names.iter().map(String::as_str).zip(sizes.iter().copied()).collect();
        let (t, _) = RegionTable::open(&mut disk, &wanted).unwrap();
        prop_assert_eq!(RegionTable::decode(&t.encode(), disk.block_count()), Some(t));
    }
}
