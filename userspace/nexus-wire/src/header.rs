use alloc::vec::Vec;

use crate::{Reader, WireError, Writer};

/// Length of [`Header`] on the wire.
pub const HEADER_LEN: usize = 12;
/// Bit set in the op of every reply.
pub const REPLY_BIT: u8 = 0x80;

/// The header every nexus-obs IPC frame starts with.
///
/// ```text
/// offset size field
/// 0      2    magic    protocol tag, e.g. b"LG" for logd
/// 2      1    version  protocol version
/// 3      1    op       request op; replies set bit 7 (op | 0x80)
/// 4      8    nonce    u64 little-endian, chosen by the requester,
///                      echoed unchanged in every reply (errors too)
/// ```
///
/// These 12 bytes keep this layout in every version, so a server can answer
/// a frame of an unknown version with `unsupported` and the right nonce.
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
    /// The header of a request of protocol `magic`/`version`.
    pub const fn request(magic: [u8; 2], version: u8, op: u8, nonce: u64) -> Header {
        Header {
            magic,
            version,
            op,
            nonce,
        }
    }

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
        // Unbounded writer, fixed-size fields: cannot fail.
        let _ = Writer::new(out).header(self).finish();
    }

    /// The header of the reply to this request.
    pub const fn reply(&self) -> Header {
        Header {
            op: self.op | REPLY_BIT,
            ..*self
        }
    }

    /// True if this is a reply.
    pub const fn is_reply(&self) -> bool {
        self.op & REPLY_BIT != 0
    }

    /// Whether a frame with this header may be answered at all: never a
    /// reply (two servers would bounce frames forever) and never the
    /// protocol's one-way op (its sender does not read replies). Every
    /// server applies this, also to frames it refuses.
    pub const fn wants_reply(&self, oneway_op: u8) -> bool {
        !self.is_reply() && self.op != oneway_op
    }
}
