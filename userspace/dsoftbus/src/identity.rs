//! Device identity on the bus: a static X25519 key pair and the short id
//! derived from its public half.
//!
//! * A [`DeviceKey`] holds the 32-byte X25519 private key of this device.
//!   Its public key is computed once, at construction. The secret is never
//!   printed (`Debug` shows the device id only) and is overwritten with
//!   zeroes when the key is dropped.
//! * A [`DeviceId`] names a device by its public key:
//!
//!   ```text
//!   id = BLAKE2s-256("nexus-dsoftbus-device-id" || public_key)[0..8]
//!   ```
//!
//!   It is a pure function of the public key, so whoever authenticated a
//!   peer's static key (see `session`) knows its id too: an id is never
//!   taken from a payload field. Its text form is exactly 16 lower-case hex
//!   digits; [`DeviceId::parse`] accepts that form only, so
//!   `parse(id.to_string()) == Some(id)` and text ids compare byte-wise.

use blake2::{Blake2s256, Digest};
use core::fmt;
use curve25519_dalek::montgomery::MontgomeryPoint;
use zeroize::Zeroize;

/// Domain separation prefix hashed in front of the public key.
const DEVICE_ID_DOMAIN: &[u8] = b"nexus-dsoftbus-device-id";

/// Length of a [`DeviceId`] in bytes.
pub const DEVICE_ID_LEN: usize = 8;
/// Length of a [`DeviceId`] in its text form.
pub const DEVICE_ID_HEX_LEN: usize = 2 * DEVICE_ID_LEN;

/// The static X25519 private key of this device.
pub struct DeviceKey {
    secret: [u8; 32],
    public: [u8; 32],
}

impl DeviceKey {
    /// A key from 32 secret bytes (any bytes: X25519 clamps them).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let public = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        DeviceKey { secret, public }
    }

    /// The X25519 public key that peers pin or learn in the handshake.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The id of this device.
    pub fn id(&self) -> DeviceId {
        DeviceId::of(&self.public)
    }

    /// The secret bytes, for the handshake only.
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl Drop for DeviceKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// The short name of a device: the first 8 bytes of a domain-separated
/// BLAKE2s-256 hash of its static public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId([u8; DEVICE_ID_LEN]);

impl DeviceId {
    /// The id of the device whose static public key is `public`.
    pub fn of(public: &[u8; 32]) -> Self {
        let mut h = Blake2s256::new();
        h.update(DEVICE_ID_DOMAIN);
        h.update(public);
        let digest = h.finalize();
        let mut id = [0u8; DEVICE_ID_LEN];
        for (dst, src) in id.iter_mut().zip(digest.iter()) {
            *dst = *src;
        }
        DeviceId(id)
    }

    /// Parses the text form: exactly 16 lower-case hex digits.
    pub fn parse(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != DEVICE_ID_HEX_LEN {
            return None;
        }
        let mut id = [0u8; DEVICE_ID_LEN];
        for (dst, pair) in id.iter_mut().zip(bytes.chunks_exact(2)) {
            let mut byte = 0u8;
            for &c in pair {
                byte = (byte << 4) | hex_value(c)?;
            }
            *dst = byte;
        }
        Some(DeviceId(id))
    }

    /// An id from its raw bytes (as carried by a wire format).
    pub const fn from_bytes(bytes: [u8; DEVICE_ID_LEN]) -> Self {
        DeviceId(bytes)
    }

    /// The raw bytes of the id.
    pub const fn to_bytes(self) -> [u8; DEVICE_ID_LEN] {
        self.0
    }
}

/// The value of one lower-case hex digit.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}
