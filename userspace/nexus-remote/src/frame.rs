//! Stream framing: a busd stream is a byte stream; both `obs.logs` and
//! `obs.metrics` cut it into frames.
//!
//! ```text
//! frame   len u32 (little-endian, body bytes, 0..=MAX_FRAME) | body
//! ```
//!
//! A length above [`MAX_FRAME`] is refused as soon as its four bytes have
//! arrived ([`RemoteError::FrameTooLarge`]): the receiver disconnects the
//! peer with that reason rather than buffer it. [`FrameReader`] takes the
//! chunks RECV returns, whatever their size and however they cut the
//! frames, and hands out whole bodies. It buffers at most one incomplete
//! frame plus the chunk being pushed: [`FrameReader::push`] refuses
//! ([`RemoteError::Undrained`]) while a whole frame is still waiting.

use alloc::vec::Vec;

use crate::RemoteError;

/// Largest frame body, in bytes (64 KiB).
pub const MAX_FRAME: usize = 64 * 1024;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// `body` with its length prefix. `FrameTooLarge` past [`MAX_FRAME`].
pub fn frame(body: &[u8]) -> Result<Vec<u8>, RemoteError> {
    let mut out = Vec::with_capacity(LEN_PREFIX + body.len());
    frame_into(&mut out, body)?;
    Ok(out)
}

/// Appends `body` with its length prefix to `out`; on error `out` is
/// unchanged.
pub fn frame_into(out: &mut Vec<u8>, body: &[u8]) -> Result<(), RemoteError> {
    let len = checked_len(body.len())?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

fn checked_len(n: usize) -> Result<u32, RemoteError> {
    let len = u32::try_from(n).map_err(|_| RemoteError::FrameTooLarge(u32::MAX))?;
    if n > MAX_FRAME {
        return Err(RemoteError::FrameTooLarge(len));
    }
    Ok(len)
}

/// Reassembles frames from arbitrary chunks of a byte stream.
///
/// Use: `push` each chunk RECV returned, then call `next_frame` until it
/// gives `None`; at `fin`, `finish` says whether the stream ended cleanly.
/// The first error is latched: every later call returns it.
///
/// ```
/// use nexus_remote::frame::{frame, FrameReader};
/// let mut bytes = frame(b"abc").unwrap();
/// bytes.extend(frame(b"").unwrap());
/// let mut fr = FrameReader::new();
/// let mut got = Vec::new();
/// for chunk in bytes.chunks(3) {
///     fr.push(chunk).unwrap();
///     while let Some(body) = fr.next_frame().unwrap() {
///         got.push(body.to_vec());
///     }
/// }
/// assert_eq!(got, [b"abc".to_vec(), Vec::new()]);
/// assert!(fr.finish().is_ok());
/// ```
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Start of the bytes not taken yet.
    start: usize,
    error: Option<RemoteError>,
}

impl FrameReader {
    /// An empty reader.
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            error: None,
        }
    }

    /// Bytes buffered and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// Adds a chunk. Refused with `Undrained` while a whole frame waits
    /// (so the buffer stays under one frame plus one chunk), and with
    /// `FrameTooLarge` when the next frame's length is over the limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), RemoteError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.peek()?.is_some() {
            return Err(RemoteError::Undrained);
        }
        self.buf.drain(..self.start.min(self.buf.len()));
        self.start = 0;
        self.buf.extend_from_slice(chunk);
        self.peek().map(|_| ())
    }

    /// The next whole frame body, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, RemoteError> {
        let Some(end) = self.peek()? else {
            return Ok(None);
        };
        let body = self.start.saturating_add(LEN_PREFIX)..end;
        self.start = end;
        Ok(self.buf.get(body))
    }

    /// At the end of the stream: `Ok` if it ended between frames.
    pub fn finish(&self) -> Result<(), RemoteError> {
        match self.error {
            Some(e) => Err(e),
            None if self.buffered() > 0 => Err(RemoteError::EndMidFrame),
            None => Ok(()),
        }
    }

    /// End offset of the whole frame at `start`, if it has arrived;
    /// latches `FrameTooLarge`.
    fn peek(&mut self) -> Result<Option<usize>, RemoteError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let avail = self.buf.get(self.start..).unwrap_or(&[]);
        let Some(prefix) = avail.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*prefix);
        let Ok(n) = usize::try_from(len) else {
            self.error = Some(RemoteError::FrameTooLarge(len));
            return Err(RemoteError::FrameTooLarge(len));
        };
        if n > MAX_FRAME {
            self.error = Some(RemoteError::FrameTooLarge(len));
            return Err(RemoteError::FrameTooLarge(len));
        }
        let whole = LEN_PREFIX + n;
        Ok((avail.len() >= whole).then(|| self.start + whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    /// Feeds `bytes` cut at `cuts`, draining after every chunk; returns the
    /// bodies and the first error.
    fn feed(bytes: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Option<RemoteError>, FrameReader) {
        let mut fr = FrameReader::new();
        let mut got = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            if let Err(e) = fr.push(c) {
                return (got, Some(e), fr);
            }
            assert!(fr.buffered() <= LEN_PREFIX + MAX_FRAME + c.len());
            loop {
                match fr.next_frame() {
                    Ok(Some(b)) => got.push(b.to_vec()),
                    Ok(None) => break,
                    Err(e) => return (got, Some(e), fr),
                }
            }
        }
        (got, None, fr)
    }

    #[test]
    fn max_frame_passes_and_one_more_byte_is_refused() {
        let body = vec![7u8; MAX_FRAME];
        let bytes = frame(&body).unwrap();
        let (got, err, fr) = feed(&bytes, 4096);
        assert_eq!((got.len(), err), (1, None));
        assert!(fr.finish().is_ok());
        assert_eq!(
            frame(&vec![0; MAX_FRAME + 1]),
            Err(RemoteError::FrameTooLarge(MAX_FRAME as u32 + 1))
        );
        // The length alone is enough to refuse; nothing else is buffered.
        let mut fr = FrameReader::new();
        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert_eq!(fr.push(&huge[..2]), Ok(()));
        assert_eq!(
            fr.push(&huge[2..]),
            Err(RemoteError::FrameTooLarge(MAX_FRAME as u32 + 1))
        );
        // Latched.
        assert!(fr.push(&[]).is_err() && fr.next_frame().is_err() && fr.finish().is_err());
        let mut fr = FrameReader::new();
        assert!(fr.push(&u32::MAX.to_le_bytes()).is_err());
    }

    #[test]
    fn undrained_push_is_refused_and_partial_end_is_reported() {
        let mut fr = FrameReader::new();
        fr.push(&frame(b"x").unwrap()).unwrap();
        assert_eq!(fr.push(b"more"), Err(RemoteError::Undrained));
        let mut fr = FrameReader::new();
        fr.push(&[3, 0, 0, 0, 1]).unwrap();
        assert_eq!(fr.next_frame(), Ok(None));
        assert_eq!(fr.finish(), Err(RemoteError::EndMidFrame));
    }

    proptest! {
        /// Any sequence of bodies, cut into any chunk size, comes back whole
        /// and in order.
        #[test]
        fn any_cut_gives_the_same_frames(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            chunk in 1usize..700,
        ) {
            let mut bytes = Vec::new();
            for b in &bodies {
                frame_into(&mut bytes, b).unwrap();
            }
            let (got, err, fr) = feed(&bytes, chunk);
            prop_assert_eq!(err, None);
            prop_assert_eq!(got, bodies.clone());
            prop_assert!(fr.finish().is_ok());
            // Every truncation of the stream ends mid-frame or between frames.
            for cut in 0..bytes.len() {
                let (got, err, fr) = feed(&bytes[..cut], chunk);
                prop_assert_eq!(err, None);
                let whole: usize = got.iter().map(|b| b.len() + LEN_PREFIX).sum();
                prop_assert_eq!(fr.finish().is_ok(), whole == cut);
            }
        }

        /// Arbitrary bytes never panic and never buffer past the bound.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..300) {
            let _ = feed(&bytes, chunk);
        }
    }
}
