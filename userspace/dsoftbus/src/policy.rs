//! The accept-side policy: which devices may connect (by their static key,
//! learned and proven in the handshake), and which stream names each may
//! open. Every decision takes the authenticated `DeviceId` from the
//! session, never a claim in a payload.

use alloc::string::String;
use alloc::vec::Vec;

use crate::identity::DeviceId;

/// Most peers an ACL holds.
pub const MAX_PEERS: usize = 64;
/// Most stream names allowed per peer.
pub const MAX_STREAMS_PER_PEER: usize = 16;

/// One allowed device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its id (derived from the static key).
    pub id: DeviceId,
    /// Its static X25519 public key.
    pub static_key: [u8; 32],
    /// Stream names it may open here.
    pub streams: Vec<String>,
}

/// Why a peer could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclError {
    /// [`MAX_PEERS`] reached.
    Full,
    /// More than [`MAX_STREAMS_PER_PEER`] names.
    TooManyStreams,
}

/// The allow list.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    peers: Vec<Peer>,
}

impl Acl {
    /// Nobody allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows the device with `static_key` to connect and open `streams`.
    pub fn allow(&mut self, static_key: [u8; 32], streams: &[&str]) -> Result<DeviceId, AclError> {
        if streams.len() > MAX_STREAMS_PER_PEER {
            return Err(AclError::TooManyStreams);
        }
        let id = DeviceId::of(&static_key);
        self.peers.retain(|p| p.id != id);
        if self.peers.len() >= MAX_PEERS {
            return Err(AclError::Full);
        }
        self.peers.push(Peer {
            id,
            static_key,
            streams: streams.iter().map(|s| String::from(*s)).collect(),
        });
        Ok(id)
    }

    /// The handshake hook: the device is listed and presented the static
    /// key it is listed with.
    pub fn authorize(&self, id: DeviceId, static_key: &[u8; 32]) -> bool {
        self.peers
            .iter()
            .any(|p| p.id == id && &p.static_key == static_key)
    }

    /// The mux hook: `peer` may open a stream named `name` here.
    pub fn may_open(&self, peer: DeviceId, name: &str) -> bool {
        self.peers
            .iter()
            .any(|p| p.id == peer && p.streams.iter().any(|s| s == name))
    }

    /// The static key a listed device must present (to dial it).
    pub fn static_key_of(&self, id: DeviceId) -> Option<[u8; 32]> {
        self.peers.iter().find(|p| p.id == id).map(|p| p.static_key)
    }
}
