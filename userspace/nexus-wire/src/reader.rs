use crate::WireError;

/// A cursor over untrusted bytes.
///
/// Invariant: every read checks the length first; a short input is
/// [`WireError::Truncated`], bad UTF-8 or a bad flag is
/// [`WireError::BadValue`]. No method panics on any input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    pub const fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// True when everything was read.
    pub const fn is_empty(&self) -> bool {
        self.buf.is_empty()
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
    /// Reads a little-endian u128.
    pub fn u128(&mut self) -> Result<u128, WireError> {
        Ok(u128::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian two's-complement i64.
    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Reads a flag byte: `0` or `1`, anything else is `BadValue`.
    pub fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::BadValue),
        }
    }

    /// Reads a byte and decodes it with `decode` (e.g. a
    /// [`byte_enum!`](crate::byte_enum)'s `from_u8`); `None` is `BadValue`.
    pub fn enum_u8<T>(&mut self, decode: impl FnOnce(u8) -> Option<T>) -> Result<T, WireError> {
        decode(self.u8()?).ok_or(WireError::BadValue)
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
    /// Reads a `u32` length, then that many bytes.
    pub fn bytes_u32(&mut self) -> Result<&'a [u8], WireError> {
        let n = usize::try_from(self.u32()?).map_err(|_| WireError::Truncated)?;
        self.bytes(n)
    }

    /// Reads a `u8`-prefixed UTF-8 string.
    pub fn str_u8(&mut self) -> Result<&'a str, WireError> {
        utf8(self.bytes_u8()?)
    }
    /// Reads a `u16`-prefixed UTF-8 string.
    pub fn str_u16(&mut self) -> Result<&'a str, WireError> {
        utf8(self.bytes_u16()?)
    }
    /// Reads a `u32`-prefixed UTF-8 string.
    pub fn str_u32(&mut self) -> Result<&'a str, WireError> {
        utf8(self.bytes_u32()?)
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

fn utf8(b: &[u8]) -> Result<&str, WireError> {
    core::str::from_utf8(b).map_err(|_| WireError::BadValue)
}
