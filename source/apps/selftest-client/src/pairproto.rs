//! The byte protocol of the two-node pair test, without any I/O.
//!
//! Node A opens a TCP connection to node B and sends a 12-byte header
//! (`NXP1`, then the payload length as u64 little endian) followed by the
//! payload: [`STREAM_BYTES`] bytes of the deterministic [`ByteStream`]
//! seeded with [`SEED`]. Node B folds every payload byte into FNV-1a-64,
//! checks the length and the checksum against the ones the same generator
//! gives, and replies with 20 bytes: `NXPR`, the length and the checksum
//! (u64 little endian each). Node A compares the reply with its own
//! length and checksum.
//!
//! Pure code: both nodes' phases (`pair`, `bus`) use it, and it is
//! unit-tested on the host.

use nexus_wire::{Reader, Writer};

/// The TCP port node B listens on.
pub const PORT: u16 = 7000;
/// Payload bytes node A sends: 1 MiB.
pub const STREAM_BYTES: u64 = 1 << 20;
/// Seed of the payload generator, shared by both nodes.
pub const SEED: u64 = 0x6e65_7875_735f_7032; // "nexus_p2"
/// Magic of A's header.
pub const HEADER_MAGIC: [u8; 4] = *b"NXP1";
/// Magic of B's reply.
pub const REPLY_MAGIC: [u8; 4] = *b"NXPR";
/// Bytes of A's header.
pub const HEADER_LEN: usize = 12;
/// Bytes of B's reply.
pub const REPLY_LEN: usize = 20;

/// Deterministic pseudo-random bytes (SplitMix64, little-endian words).
#[derive(Debug, Clone)]
pub struct ByteStream {
    state: u64,
    word: u64,
    left: u8,
}

impl ByteStream {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed,
            word: 0,
            left: 0,
        }
    }

    fn next_word(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            if self.left == 0 {
                self.word = self.next_word();
                self.left = 8;
            }
            *b = self.word as u8;
            self.word >>= 8;
            self.left -= 1;
        }
    }
}

/// FNV-1a, 64 bits.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a64 {
    /// Folds `data` in.
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The checksum of everything folded in so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The checksum of the first `len` bytes of the stream for `seed`.
pub fn expected_checksum(seed: u64, len: u64) -> u64 {
    let mut s = ByteStream::new(seed);
    let mut h = Fnv1a64::default();
    let mut chunk = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        if let Some(c) = chunk.get_mut(..n) {
            s.fill(c);
            h.update(c);
        }
        left -= n as u64;
    }
    h.finish()
}

/// A's header for a payload of `len` bytes.
pub fn header(len: u64) -> [u8; HEADER_LEN] {
    // Magic and a u64 into 12 bytes: cannot fail (zeros would be refused
    // by B as a bad magic).
    Writer::to_array(|w| {
        w.bytes(&HEADER_MAGIC).u64(len);
    })
    .unwrap_or([0; HEADER_LEN])
}

/// B's reply: the length and checksum it received.
pub fn reply(len: u64, checksum: u64) -> [u8; REPLY_LEN] {
    // Magic and two u64 into 20 bytes: cannot fail (zeros would be refused
    // by A as a bad magic).
    Writer::to_array(|w| {
        w.bytes(&REPLY_MAGIC).u64(len).u64(checksum);
    })
    .unwrap_or([0; REPLY_LEN])
}

/// Decodes B's reply into `(len, checksum)`; `None` on a wrong magic.
pub fn parse_reply(r: &[u8; REPLY_LEN]) -> Option<(u64, u64)> {
    let mut r = Reader::new(r);
    (r.array::<4>().ok()? == REPLY_MAGIC).then_some(())?;
    Some((r.u64().ok()?, r.u64().ok()?))
}

/// Bytes of B's reply on the mux stream of the device-bus proof.
pub const STREAM_REPLY_LEN: usize = 16;

/// B's reply on the mux stream (`bus`): the length and the checksum it
/// received, u64 little endian each, no magic (the stream is authenticated).
pub fn stream_reply(len: u64, checksum: u64) -> [u8; STREAM_REPLY_LEN] {
    // Two u64 into 16 bytes: cannot fail.
    Writer::to_array(|w| {
        w.u64(len).u64(checksum);
    })
    .unwrap_or([0; STREAM_REPLY_LEN])
}

/// Decodes [`stream_reply`]: `(len, checksum)`, `None` unless exactly
/// [`STREAM_REPLY_LEN`] bytes.
pub fn parse_stream_reply(b: &[u8]) -> Option<(u64, u64)> {
    let mut r = Reader::new(b);
    let got = (r.u64().ok()?, r.u64().ok()?);
    r.finish().ok()?;
    Some(got)
}

/// Why B refused the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The header's magic is not [`HEADER_MAGIC`].
    BadMagic,
    /// The header announces more than the receiver's limit.
    TooLong(u64),
    /// Bytes arrived after the announced payload.
    Trailing,
}

/// B's side: parses the header, folds the payload into FNV-1a-64, and
/// says when the announced length has arrived. Any chunking works.
#[derive(Debug, Clone)]
pub struct StreamReceiver {
    limit: u64,
    hdr: [u8; HEADER_LEN],
    hdr_got: usize,
    total: Option<u64>,
    got: u64,
    sum: Fnv1a64,
}

impl StreamReceiver {
    /// A receiver that refuses headers announcing more than `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            hdr: [0; HEADER_LEN],
            hdr_got: 0,
            total: None,
            got: 0,
            sum: Fnv1a64::default(),
        }
    }

    /// Payload bytes received so far.
    pub fn received(&self) -> u64 {
        self.got
    }

    /// Feeds the next received bytes. Returns `(len, checksum)` once the
    /// whole announced payload has arrived.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Option<(u64, u64)>, StreamError> {
        if self.total.is_none() {
            let want = HEADER_LEN.saturating_sub(self.hdr_got);
            let take = want.min(data.len());
            let (head, rest) = data.split_at(take);
            if let Some(dst) = self.hdr.get_mut(self.hdr_got..self.hdr_got + take) {
                dst.copy_from_slice(head);
            }
            self.hdr_got += take;
            data = rest;
            if self.hdr_got < HEADER_LEN {
                return Ok(None);
            }
            let mut hdr = Reader::new(&self.hdr);
            if hdr.array::<4>() != Ok(HEADER_MAGIC) {
                return Err(StreamError::BadMagic);
            }
            let total = hdr.u64().unwrap_or(u64::MAX);
            if total > self.limit {
                return Err(StreamError::TooLong(total));
            }
            self.total = Some(total);
        }
        let total = self.total.unwrap_or(0);
        if data.len() as u64 > total - self.got {
            return Err(StreamError::Trailing);
        }
        self.sum.update(data);
        self.got += data.len() as u64;
        Ok((self.got == total).then(|| (total, self.sum.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use alloc::{format, vec};

    #[test]
    fn fnv_matches_the_reference_vectors() {
        let mut h = Fnv1a64::default();
        assert_eq!(h.finish(), 0xcbf2_9ce4_8422_2325);
        h.update(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv1a64::default();
        h.update(b"foobar");
        assert_eq!(h.finish(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn stream_is_deterministic_and_chunking_free() {
        let mut a = ByteStream::new(SEED);
        let mut whole = vec![0u8; 1000];
        a.fill(&mut whole);
        let mut b = ByteStream::new(SEED);
        let mut parts = vec![0u8; 1000];
        for c in parts.chunks_mut(7) {
            b.fill(c);
        }
        assert_eq!(whole, parts);
        assert_ne!(whole[..8], whole[8..16]);
        let mut other = vec![0u8; 1000];
        ByteStream::new(SEED + 1).fill(&mut other);
        assert_ne!(whole, other);
    }

    fn full_message() -> Vec<u8> {
        let mut m = header(STREAM_BYTES).to_vec();
        let mut p = vec![0u8; STREAM_BYTES as usize];
        ByteStream::new(SEED).fill(&mut p);
        m.extend_from_slice(&p);
        m
    }

    #[test]
    fn receiver_verifies_any_chunking() {
        let msg = full_message();
        let want = expected_checksum(SEED, STREAM_BYTES);
        for chunk in [1usize, 5, 12, 13, 1460, 4096, msg.len()] {
            let mut r = StreamReceiver::new(STREAM_BYTES);
            let mut done = None;
            for c in msg.chunks(chunk) {
                assert!(done.is_none());
                done = r.feed(c).unwrap();
            }
            assert_eq!(done, Some((STREAM_BYTES, want)), "chunk {chunk}");
        }
    }

    #[test]
    fn receiver_refuses_bad_headers_and_trailing_bytes() {
        let mut r = StreamReceiver::new(STREAM_BYTES);
        assert_eq!(r.feed(b"XXP1\0\0\0\0\0\0\0\0"), Err(StreamError::BadMagic));
        let mut r = StreamReceiver::new(16);
        assert_eq!(r.feed(&header(17)), Err(StreamError::TooLong(17)));
        let mut r = StreamReceiver::new(16);
        let mut m = header(2).to_vec();
        m.extend_from_slice(b"abc");
        assert_eq!(r.feed(&m), Err(StreamError::Trailing));
        let mut r = StreamReceiver::new(16);
        assert_eq!(
            r.feed(&header(0)),
            Ok(Some((0, Fnv1a64::default().finish())))
        );
    }

    #[test]
    fn stream_reply_round_trips() {
        let r = stream_reply(STREAM_BYTES, 0x0123_4567_89ab_cdef);
        assert_eq!(r[..8], STREAM_BYTES.to_le_bytes());
        assert_eq!(
            parse_stream_reply(&r),
            Some((STREAM_BYTES, 0x0123_4567_89ab_cdef))
        );
        assert_eq!(parse_stream_reply(&r[..15]), None);
    }

    #[test]
    fn reply_round_trips() {
        let r = reply(STREAM_BYTES, 0x0123_4567_89ab_cdef);
        assert_eq!(parse_reply(&r), Some((STREAM_BYTES, 0x0123_4567_89ab_cdef)));
        let mut bad = r;
        bad[0] = b'X';
        assert_eq!(parse_reply(&bad), None);
    }

    /// The checksum node B prints is pinned in its expected marker list.
    #[test]
    fn profile_pair_b_pins_the_checksum() {
        let line = format!(
            "SELFTEST: pair recv ok {} {:016x}",
            STREAM_BYTES,
            expected_checksum(SEED, STREAM_BYTES)
        );
        let profile = include_str!("../../../../scripts/profiles/pair.b");
        assert!(
            profile.lines().any(|l| l == line),
            "scripts/profiles/pair.b must list '{line}'"
        );
    }
}
