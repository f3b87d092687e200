//! LEB128 varints in the [`Writer`]/[`Reader`] style.
//!
//! An unsigned value is written 7 bits at a time, least significant group
//! first, with the high bit of each byte set when another byte follows:
//! `0..=127` take one byte, a `u64` at most ten. Decoding accepts only the
//! canonical (shortest) form, so every value has exactly one encoding:
//! a last byte of `0x00` after others, or a tenth byte above `0x01`, is
//! [`WireError::BadValue`]; running out of input is `Truncated`.
//!
//! Signed values are zigzag-mapped first (`0, -1, 1, -2, …` → `0, 1, 2, 3,
//! …`) so small magnitudes of either sign stay short.

use nexus_wire::{Reader, WireError, Writer};

/// Longest encoding of a `u64`.
pub const MAX_VARINT_LEN: usize = 10;

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_u64(w: &mut Writer<'_>, mut v: u64) {
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            w.u8(low);
            return;
        }
        w.u8(low | 0x80);
    }
}

/// Appends `v` zigzag-mapped, as a varint.
pub fn put_i64(w: &mut Writer<'_>, v: i64) {
    put_u64(w, zigzag(v));
}

/// Reads a canonical unsigned LEB128 varint.
pub fn get_u64(r: &mut Reader<'_>) -> Result<u64, WireError> {
    let mut v: u64 = 0;
    for i in 0..MAX_VARINT_LEN {
        let b = r.u8()?;
        let shift = 7 * i as u32;
        if i == MAX_VARINT_LEN - 1 && b > 1 {
            return Err(WireError::BadValue);
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(WireError::BadValue);
            }
            return Ok(v);
        }
    }
    Err(WireError::BadValue)
}

/// Reads a zigzag varint.
pub fn get_i64(r: &mut Reader<'_>) -> Result<i64, WireError> {
    get_u64(r).map(unzigzag)
}

/// Reads a varint that must fit a `u32`.
pub fn get_u32(r: &mut Reader<'_>) -> Result<u32, WireError> {
    u32::try_from(get_u64(r)?).map_err(|_| WireError::BadValue)
}

/// Zigzag mapping of a signed value.
pub const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub const fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Bytes `v` takes as a varint.
pub const fn len_u64(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut Writer::new(&mut out), v);
        out
    }

    #[test]
    fn fixed_vectors() {
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
        assert_eq!(*enc(u64::MAX).last().unwrap(), 1);
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn non_canonical_and_overlong_are_refused() {
        for bad in [
            &[0x80, 0x00][..],
            &[0xff, 0x80, 0x00],
            &[0xff; 10],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        ] {
            assert_eq!(get_u64(&mut Reader::new(bad)), Err(WireError::BadValue));
        }
        assert_eq!(
            get_u64(&mut Reader::new(&[0x80])),
            Err(WireError::Truncated)
        );
        assert_eq!(get_u64(&mut Reader::new(&[])), Err(WireError::Truncated));
        assert_eq!(
            get_u32(&mut Reader::new(&enc(1 << 32))),
            Err(WireError::BadValue)
        );
    }

    proptest! {
        #[test]
        fn round_trip(v in any::<u64>(), s in any::<i64>()) {
            let b = enc(v);
            prop_assert_eq!(b.len(), len_u64(v));
            let mut r = Reader::new(&b);
            prop_assert_eq!(get_u64(&mut r), Ok(v));
            prop_assert!(r.is_empty());
            prop_assert_eq!(unzigzag(zigzag(s)), s);
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut r = Reader::new(&b);
            if let Ok(v) = get_u64(&mut r) {
                // Canonical: re-encoding gives the bytes read.
                let used = b.len() - r.remaining();
                prop_assert_eq!(&enc(v)[..], &b[..used]);
            }
        }
    }
}
