//! The header every nexus-obs frame starts with, and a panic-free reader.
//!
//! ```text
//! offset size field
//! 0      2    magic    protocol tag, e.g. b"LG" for logd
//! 2      1    version  protocol version (1)
//! 3      1    op       request op; replies set bit 7 (op | 0x80)
//! 4      8    nonce    u64 little-endian, chosen by the requester,
//!                      echoed unchanged in every reply (errors too)
//! ```
//!
//! These 12 bytes keep this layout in every version, so a server can answer
//! a frame of an unknown version with `unsupported` and the right nonce.
//! All integers on the wire are little-endian.

use alloc::vec::Vec;

pub use nexus_wire::{Header, Status, WireError, HEADER_LEN, REPLY_BIT};

/// A cursor over untrusted bytes. Every read checks the length first and
/// returns [`WireError::Truncated`] instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// Reads a byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads a `u8` length, then that many bytes.
    pub fn bytes_u8(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u8()?;
        self.bytes(usize::from(n))
    }
    /// Reads a `u16` length, then that many bytes.
    pub fn bytes_u16(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }

    /// Reads a `u16`-prefixed UTF-8 string.
    pub fn str_u16(&mut self) -> Result<&'a str, WireError> {
        core::str::from_utf8(self.bytes_u16()?).map_err(|_| WireError::BadValue)
    }
    /// Reads a `u8`-prefixed UTF-8 string.
    pub fn str_u8(&mut self) -> Result<&'a str, WireError> {
        core::str::from_utf8(self.bytes_u8()?).map_err(|_| WireError::BadValue)
    }

    /// The unread bytes, consuming them.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// Succeeds only if everything was read.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }
}

/// Appends a length-prefixed (`u8`) byte string. Fails if it does not fit.
pub fn put_bytes_u8(out: &mut Vec<u8>, b: &[u8]) -> Result<(), WireError> {
    let n = u8::try_from(b.len()).map_err(|_| WireError::BadValue)?;
    out.push(n);
    out.extend_from_slice(b);
    Ok(())
}

/// Appends a length-prefixed (`u16`) byte string. Fails if it does not fit.
pub fn put_bytes_u16(out: &mut Vec<u8>, b: &[u8]) -> Result<(), WireError> {
    let n = u16::try_from(b.len()).map_err(|_| WireError::BadValue)?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_layout_is_exact() {
        let h = Header {
            magic: *b"LG",
            version: 1,
            op: 2,
            nonce: 0x0102_0304_0506_0708,
        };
        let mut v = Vec::new();
        h.emit(&mut v);
        assert_eq!(v, [b'L', b'G', 1, 2, 8, 7, 6, 5, 4, 3, 2, 1]);
        v.push(0xAA);
        let (back, body) = Header::parse(&v, *b"LG").unwrap();
        assert_eq!(back, h);
        assert_eq!(body, [0xAA]);
        assert!(back.reply().is_reply());
        assert_eq!(back.reply().nonce, h.nonce);
        assert_eq!(Header::parse(&v, *b"MX"), Err(WireError::BadMagic));
        assert_eq!(Header::parse(&v[..11], *b"LG"), Err(WireError::Truncated));
    }

    #[test]
    fn replies_and_one_way_requests_are_never_answered() {
        let req = Header::request(*b"LG", 1, 1, 9);
        assert!(req.wants_reply(4));
        assert!(!Header { op: 4, ..req }.wants_reply(4), "one-way op");
        assert!(!req.reply().wants_reply(4), "a reply");
    }

    #[test]
    fn reader_rejects_short_input() {
        let mut r = Reader::new(&[3, b'a', b'b']);
        assert_eq!(r.bytes_u8(), Err(WireError::Truncated));
        let mut r = Reader::new(&[2, 0xff, 0xfe]);
        assert_eq!(r.str_u8(), Err(WireError::BadValue));
        let r = Reader::new(&[1]);
        assert_eq!(r.finish(), Err(WireError::TrailingBytes));
        let mut out = Vec::new();
        assert_eq!(put_bytes_u8(&mut out, &[0; 256]), Err(WireError::BadValue));
    }

    proptest! {
        #[test]
        fn header_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Header::parse(&bytes, *b"LG");
            let mut r = Reader::new(&bytes);
            while r.bytes_u16().is_ok() {}
        }
    }
}
