//! busd's configuration: the static peer list with each peer's ACL, the
//! caps, the reconnect backoff. Mirrored by `recipes/observability/busd.toml`
//! (built into the OS image; a test keeps the two equal).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use dsoftbus::identity::DeviceId;
use serde::Deserialize;

/// The recipe built into the image.
pub const RECIPE: &str = include_str!("../../../../recipes/observability/busd.toml");

/// One peer of the static list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// A name for people (logs, docs).
    pub name: String,
    /// Its static X25519 public key, 64 lower-case hex digits.
    pub key: String,
    /// Where it listens, `a.b.c.d:port` (the side with the lower device id
    /// dials; the other waits).
    pub addr: String,
    /// Stream names it may open here (its ACL).
    pub streams: Vec<String>,
}

/// Caps; over one, the request is refused with `over_limit` and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Stream names with a handler, across services.
    pub max_listeners: u32,
    /// Live streams one service owns.
    pub max_streams_per_service: u32,
    /// Live streams with one peer (also the mux's stream cap).
    pub max_streams_per_peer: u32,
    /// Services receiving peer up/down events.
    pub max_watchers: u32,
    /// Incoming connections still in their handshake.
    pub max_pending_accepts: u32,
    /// Receive window per stream, bytes: memory per stream is bounded by it.
    pub window: u32,
}

/// Reconnect backoff after a session is lost or a dial fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// First wait, ms.
    pub initial_ms: u64,
    /// Longest wait, ms (the wait doubles up to it).
    pub max_ms: u64,
}

/// busd's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// TCP port busd listens on.
    pub listen_port: u16,
    /// A handshake (dialled or accepted) that takes longer is dropped.
    pub handshake_timeout_ms: u64,
    /// Services (by name) allowed to DROP a session.
    pub control: Vec<String>,
    /// Caps.
    pub limits: Limits,
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// The static peer list (this node's own entry, if listed, is skipped).
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Not TOML of this shape.
    Syntax(String),
    /// A peer's key is not 64 lower-case hex digits.
    BadKey(String),
    /// A peer's address is not `a.b.c.d:port`.
    BadAddr(String),
    /// A stream name is empty or longer than 64 bytes.
    BadStream(String),
    /// A cap is zero, or the per-peer stream cap is above 255.
    BadLimit(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax(e) => write!(f, "busd config: {e}"),
            ConfigError::BadKey(p) => write!(f, "busd config: peer {p}: key is not 64 hex digits"),
            ConfigError::BadAddr(p) => {
                write!(f, "busd config: peer {p}: address is not a.b.c.d:port")
            }
            ConfigError::BadStream(s) => write!(f, "busd config: stream name '{s}'"),
            ConfigError::BadLimit(k) => write!(f, "busd config: limits.{k}"),
        }
    }
}

/// A peer, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    /// Its name.
    pub name: String,
    /// Its static public key.
    pub key: [u8; 32],
    /// Its id.
    pub id: DeviceId,
    /// Its address.
    pub ip: [u8; 4],
    /// Its port.
    pub port: u16,
    /// Stream names it may open here.
    pub streams: Vec<String>,
}

/// Parses 64 lower-case hex digits.
pub fn parse_key(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let hex = core::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// Parses `a.b.c.d:port`.
pub fn parse_addr(s: &str) -> Option<([u8; 4], u16)> {
    let (ip, port) = s.split_once(':')?;
    let mut out = [0u8; 4];
    let mut parts = ip.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    if parts.next().is_some() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((out, port.parse().ok()?))
}

impl Config {
    /// Parses and checks a recipe.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(alloc::format!("{e}")))?;
        cfg.peers()?;
        let l = cfg.limits;
        for (k, v) in [
            ("max_listeners", l.max_listeners),
            ("max_streams_per_service", l.max_streams_per_service),
            ("max_streams_per_peer", l.max_streams_per_peer),
            ("max_watchers", l.max_watchers),
            ("max_pending_accepts", l.max_pending_accepts),
            ("window", l.window),
        ] {
            if v == 0 {
                return Err(ConfigError::BadLimit(k));
            }
        }
        if l.max_streams_per_peer > 255 {
            return Err(ConfigError::BadLimit("max_streams_per_peer"));
        }
        Ok(cfg)
    }

    /// The built-in recipe.
    pub fn builtin() -> Result<Config, ConfigError> {
        Config::parse(RECIPE)
    }

    /// The peer list, checked.
    pub fn peers(&self) -> Result<Vec<PeerEntry>, ConfigError> {
        self.peers
            .iter()
            .map(|p| {
                let key = parse_key(&p.key).ok_or_else(|| ConfigError::BadKey(p.name.clone()))?;
                let (ip, port) =
                    parse_addr(&p.addr).ok_or_else(|| ConfigError::BadAddr(p.name.clone()))?;
                for s in &p.streams {
                    if dsoftbus::mux::wire::check_name(s).is_err() {
                        return Err(ConfigError::BadStream(s.clone()));
                    }
                }
                Ok(PeerEntry {
                    name: p.name.clone(),
                    key,
                    id: DeviceId::of(&key),
                    ip,
                    port,
                    streams: p.streams.clone(),
                })
            })
            .collect()
    }
}
