use alloc::vec::Vec;

use crate::{Header, WireError};

/// Appends fields to a byte buffer, little-endian, optionally under a bound.
///
/// Writes never panic and never cut a value short. The first failure (a
/// string longer than its length prefix, or the buffer passing the bound)
/// is latched: later writes do nothing, and [`Writer::finish`] returns the
/// error. So an encoder writes its fields in a row and checks once:
///
/// ```
/// let mut frame = Vec::new();
/// let mut w = nexus_wire::Writer::new(&mut frame);
/// w.u8(1).str_u8("cpu").u64(7);
/// assert_eq!(w.finish(), Ok(13));
/// assert_eq!(frame, [1, 3, b'c', b'p', b'u', 7, 0, 0, 0, 0, 0, 0, 0]);
/// ```
#[derive(Debug)]
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Largest total length of `out` allowed.
    max_len: usize,
    error: Option<WireError>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out`, unbounded (beyond the prefixes).
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self::bounded(out, usize::MAX)
    }

    /// A writer appending to `out` that fails with
    /// [`WireError::TooLarge`] rather than let `out` grow past `max_len`
    /// bytes in total.
    pub fn bounded(out: &'a mut Vec<u8>, max_len: usize) -> Self {
        let error = (out.len() > max_len).then_some(WireError::TooLarge);
        Self {
            out,
            max_len,
            error,
        }
    }

    /// Appends to `out` with `f` under the bound `max_len`, all or
    /// nothing: on error `out` is cut back to its length before the call,
    /// so a refused value never leaves half a frame behind.
    ///
    /// ```
    /// let mut out = vec![9];
    /// let r = nexus_wire::Writer::append(&mut out, usize::MAX, |w| {
    ///     w.u8(1).str_u8(&"x".repeat(300));
    /// });
    /// assert_eq!(r, Err(nexus_wire::WireError::BadValue));
    /// assert_eq!(out, [9]);
    /// ```
    pub fn append(
        out: &mut Vec<u8>,
        max_len: usize,
        f: impl FnOnce(&mut Writer<'_>),
    ) -> Result<usize, WireError> {
        let start = out.len();
        let mut w = Writer::bounded(out, max_len);
        f(&mut w);
        let done = w.finish();
        if done.is_err() {
            out.truncate(start);
        }
        done
    }

    /// Encodes exactly `N` bytes with `f` into an array (fixed-size
    /// headers). `TooLarge` past `N`, `Truncated` short of it.
    ///
    /// ```
    /// let h = nexus_wire::Writer::to_array::<6>(|w| {
    ///     w.bytes(b"NX").u32(7);
    /// });
    /// assert_eq!(h, Ok([b'N', b'X', 7, 0, 0, 0]));
    /// ```
    pub fn to_array<const N: usize>(f: impl FnOnce(&mut Writer<'_>)) -> Result<[u8; N], WireError> {
        let mut out = Vec::with_capacity(N);
        let mut w = Writer::bounded(&mut out, N);
        f(&mut w);
        w.finish()?;
        <[u8; N]>::try_from(out).map_err(|_| WireError::Truncated)
    }

    /// Length of the buffer so far (including what was there before).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// True if the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Bytes still allowed under the bound.
    pub fn room(&self) -> usize {
        self.max_len.saturating_sub(self.out.len())
    }

    /// The first error so far, if any.
    pub fn error(&self) -> Option<WireError> {
        self.error
    }

    /// Ends writing: the buffer length, or the first error.
    pub fn finish(&self) -> Result<usize, WireError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.out.len()),
        }
    }

    fn fail(&mut self, e: WireError) -> &mut Self {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self
    }

    /// Appends raw bytes, no prefix.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        if b.len() > self.room() {
            return self.fail(WireError::TooLarge);
        }
        self.out.extend_from_slice(b);
        self
    }

    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    /// Appends a little-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Appends a little-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Appends a little-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Appends a little-endian u128.
    pub fn u128(&mut self, v: u128) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Appends a little-endian two's-complement i64.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Appends a flag byte, `0` or `1`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// Appends the count of the items that follow as a u8; `BadValue`
    /// past 255 (the caller then writes the items).
    pub fn count_u8(&mut self, n: usize) -> &mut Self {
        match u8::try_from(n) {
            Ok(n) => self.u8(n),
            Err(_) => self.fail(WireError::BadValue),
        }
    }
    /// Appends the count of the items that follow as a u16; `BadValue`
    /// past 65,535.
    pub fn count_u16(&mut self, n: usize) -> &mut Self {
        match u16::try_from(n) {
            Ok(n) => self.u16(n),
            Err(_) => self.fail(WireError::BadValue),
        }
    }

    /// Appends a `u8` length, then the bytes; `BadValue` past 255 bytes.
    pub fn bytes_u8(&mut self, b: &[u8]) -> &mut Self {
        match u8::try_from(b.len()) {
            Ok(n) => self.u8(n).bytes(b),
            Err(_) => self.fail(WireError::BadValue),
        }
    }
    /// Appends a `u16` length, then the bytes; `BadValue` past 65,535 bytes.
    pub fn bytes_u16(&mut self, b: &[u8]) -> &mut Self {
        match u16::try_from(b.len()) {
            Ok(n) => self.u16(n).bytes(b),
            Err(_) => self.fail(WireError::BadValue),
        }
    }
    /// Appends a `u32` length, then the bytes.
    pub fn bytes_u32(&mut self, b: &[u8]) -> &mut Self {
        match u32::try_from(b.len()) {
            Ok(n) => self.u32(n).bytes(b),
            Err(_) => self.fail(WireError::BadValue),
        }
    }
    /// Appends a `u8`-prefixed UTF-8 string.
    pub fn str_u8(&mut self, s: &str) -> &mut Self {
        self.bytes_u8(s.as_bytes())
    }
    /// Appends a `u16`-prefixed UTF-8 string.
    pub fn str_u16(&mut self, s: &str) -> &mut Self {
        self.bytes_u16(s.as_bytes())
    }
    /// Appends a `u32`-prefixed UTF-8 string.
    pub fn str_u32(&mut self, s: &str) -> &mut Self {
        self.bytes_u32(s.as_bytes())
    }

    /// Appends a frame header.
    pub fn header(&mut self, h: &Header) -> &mut Self {
        self.bytes(&h.magic).u8(h.version).u8(h.op).u64(h.nonce)
    }

    /// Overwrites the u16 at offset `at` (a count known only at the end,
    /// e.g. entries in a batch). `BadValue` if `at` is not inside the buffer.
    pub fn patch_u16(&mut self, at: usize, v: u16) -> &mut Self {
        let end = at.saturating_add(2);
        match self.out.get_mut(at..end) {
            Some(slot) => {
                slot.copy_from_slice(&v.to_le_bytes());
                self
            }
            None => self.fail(WireError::BadValue),
        }
    }
}
