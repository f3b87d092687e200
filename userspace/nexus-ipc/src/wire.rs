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
use core::fmt;

/// Length of [`Header`] on the wire.
pub const HEADER_LEN: usize = 12;
/// Bit set in the op of every reply.
pub const REPLY_BIT: u8 = 0x80;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Input ended before a field did.
    Truncated,
    /// The magic is not this protocol's.
    BadMagic,
    /// Bytes left over after the last field.
    TrailingBytes,
    /// A field holds a value the format does not allow.
    BadValue,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated",
            WireError::BadMagic => "bad magic",
            WireError::TrailingBytes => "trailing bytes",
            WireError::BadValue => "bad value",
        })
    }
}

/// The outcome of a request: the first byte of every reply body, in every
/// nexus-obs protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// The frame does not parse.
    Malformed = 1,
    /// Unknown version or op.
    Unsupported = 2,
    /// Parses, but a value breaks a rule (grammar, identity claim, zero count, …).
    InvalidArgs = 3,
    /// A size limit is exceeded.
    OverLimit = 4,
    /// The sender's token bucket is empty.
    RateLimited = 5,
    /// The query policy does not let this sender read that.
    Denied = 6,
}

impl Status {
    /// Every status, in wire order.
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::Malformed,
        Status::Unsupported,
        Status::InvalidArgs,
        Status::OverLimit,
        Status::RateLimited,
        Status::Denied,
    ];

    /// Decodes a status byte.
    pub fn from_u8(b: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| *s as u8 == b)
    }

    /// The snake_case name used in docs, markers and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Malformed => "malformed",
            Status::Unsupported => "unsupported",
            Status::InvalidArgs => "invalid_args",
            Status::OverLimit => "over_limit",
            Status::RateLimited => "rate_limited",
            Status::Denied => "denied",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The common frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol tag.
    pub magic: [u8; 2],
    /// Protocol version.
    pub version: u8,
    /// Operation; replies have [`REPLY_BIT`] set.
    pub op: u8,
    /// Correlation nonce.
    pub nonce: u64,
}

impl Header {
    /// Parses the header of `frame` if it carries `magic`, returning the
    /// header and the body after it. Version and op are not judged here.
    pub fn parse(frame: &[u8], magic: [u8; 2]) -> Result<(Header, &[u8]), WireError> {
        let mut r = Reader::new(frame);
        let m = r.array::<2>()?;
        if m != magic {
            return Err(WireError::BadMagic);
        }
        let version = r.u8()?;
        let op = r.u8()?;
        let nonce = r.u64()?;
        Ok((
            Header {
                magic: m,
                version,
                op,
                nonce,
            },
            r.rest(),
        ))
    }

    /// Appends the header to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.magic);
        out.push(self.version);
        out.push(self.op);
        out.extend_from_slice(&self.nonce.to_le_bytes());
    }

    /// The header of the reply to this request.
    pub fn reply(&self) -> Header {
        Header {
            op: self.op | REPLY_BIT,
            ..*self
        }
    }

    /// True if this is a reply.
    pub fn is_reply(&self) -> bool {
        self.op & REPLY_BIT != 0
    }

    /// The header of a request of protocol `magic`/`version`.
    pub const fn request(magic: [u8; 2], version: u8, op: u8, nonce: u64) -> Header {
        Header {
            magic,
            version,
            op,
            nonce,
        }
    }

    /// Whether a frame with this header may be answered at all: never a
    /// reply (two servers would bounce frames forever) and never the
    /// protocol's one-way op (its sender does not read replies). Every
    /// server applies this, also to frames it refuses.
    pub fn wants_reply(&self, oneway_op: u8) -> bool {
        !self.is_reply() && self.op != oneway_op
    }
}

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
