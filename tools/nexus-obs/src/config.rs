//! The cluster file (`recipes/observability/nexus-obs.toml` by default):
//! the host's own device on the bus, the nodes it watches, and the bearer
//! tokens of `serve`. Everything is on 127.0.0.1: the tool never listens
//! on or dials another address.

use std::fmt;

use dsoftbus::identity::DeviceKey;
use nexus_bus::DeviceId;
use serde::Deserialize;

/// The shipped cluster file.
pub const RECIPE: &str = include_str!("../../../recipes/observability/nexus-obs.toml");

/// A problem with the cluster file, said so a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    secret: String,
    port: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    key: Option<String>,
    port: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    token: String,
    read: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    endpoint: String,
    #[serde(default)]
    logs_endpoint: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    host: RawHost,
    #[serde(default)]
    otlp: Option<RawOtlp>,
    #[serde(rename = "node", default)]
    nodes: Vec<RawNode>,
    #[serde(rename = "token", default)]
    tokens: Vec<RawToken>,
}

/// The host's device.
#[derive(Clone)]
pub struct Host {
    /// Its peer name in the nodes' bus config.
    pub name: String,
    /// Its device secret (a test key from the file).
    pub secret: [u8; 32],
    /// Its busd listens on 127.0.0.1:port.
    pub port: u16,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is never printed.
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A node the host watches.
#[derive(Clone)]
pub struct NodeEntry {
    /// Its name (busd peer name, the `node` label).
    pub name: String,
    /// Its public key.
    pub public: [u8; 32],
    /// Its device id.
    pub id: DeviceId,
    /// Its secret, when the file has one (test nodes `nexus-obs node` runs).
    pub secret: Option<[u8; 32]>,
    /// Its busd listens on 127.0.0.1:port.
    pub port: u16,
}

impl fmt::Debug for NodeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeEntry")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// What one bearer token may read: `node/service` patterns, `*` for any
/// part (`node-a/*`, `*/7`, `*`).
#[derive(Clone)]
pub struct Token {
    /// The token (compared in constant time, never logged).
    pub token: String,
    /// What it may read.
    pub read: Vec<(String, String)>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// True if the token may read `service` (a sender id) on `node`.
    pub fn allows(&self, node: &str, service: u32) -> bool {
        let service = service.to_string();
        self.read
            .iter()
            .any(|(n, s)| (n == "*" || n == node) && (s == "*" || *s == service))
    }

    /// True if the token may read something on `node` (traces, metrics).
    pub fn allows_node(&self, node: &str) -> bool {
        self.read.iter().any(|(n, _)| n == "*" || n == node)
    }
}

/// The whole file, checked.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The host.
    pub host: Host,
    /// The nodes, in file order.
    pub nodes: Vec<NodeEntry>,
    /// `serve`'s tokens.
    pub tokens: Vec<Token>,
    /// Where completed traces are exported over OTLP/HTTP (JSON), when the
    /// file has an `[otlp]` table (off otherwise).
    pub otlp: Option<traced::config::OtlpConfig>,
    /// Where log records are exported over OTLP/HTTP (JSON) by `serve`:
    /// `[otlp] logs_endpoint`, else `endpoint` with `/v1/traces` replaced
    /// by `/v1/logs`.
    pub otlp_logs: Option<traced::config::OtlpConfig>,
}

fn hex32(what: &str, s: &str) -> Result<[u8; 32], ConfigError> {
    let bad = || ConfigError(format!("{what}: expected 64 lower-case hex digits"));
    if s.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = s.get(2 * i..2 * i + 2).ok_or_else(bad)?;
        if pair.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        *o = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn device_of_public(public: &[u8; 32]) -> DeviceId {
    DeviceId(dsoftbus::identity::DeviceId::of(public).to_bytes())
}

impl Cluster {
    /// Parses and checks a cluster file.
    pub fn parse(text: &str) -> Result<Cluster, ConfigError> {
        let raw: RawCluster =
            toml::from_str(text).map_err(|e| ConfigError(format!("cluster file: {e}")))?;
        let host = Host {
            secret: hex32("host.secret", &raw.host.secret)?,
            name: raw.host.name,
            port: raw.host.port,
        };
        let mut nodes = Vec::new();
        for n in raw.nodes {
            let what = format!("node '{}'", n.name);
            let (public, secret) = match (n.secret, n.key) {
                (Some(s), None) => {
                    let secret = hex32(&format!("{what} secret"), &s)?;
                    (DeviceKey::from_secret(secret).public(), Some(secret))
                }
                (None, Some(k)) => (hex32(&format!("{what} key"), &k)?, None),
                _ => {
                    return Err(ConfigError(format!(
                    "{what}: give exactly one of `secret` (a test node) or `key` (its public key)"
                )))
                }
            };
            if nodes.iter().any(|x: &NodeEntry| x.name == n.name) || n.name == host.name {
                return Err(ConfigError(format!("{what}: the name is used twice")));
            }
            nodes.push(NodeEntry {
                id: device_of_public(&public),
                name: n.name,
                public,
                secret,
                port: n.port,
            });
        }
        let mut tokens = Vec::new();
        for t in raw.tokens {
            if t.token.len() < 8 {
                return Err(ConfigError(String::from(
                    "a token must be at least 8 characters",
                )));
            }
            let mut read = Vec::new();
            for r in &t.read {
                let (n, s) = r.split_once('/').unwrap_or((r.as_str(), "*"));
                read.push((String::from(n), String::from(s)));
            }
            tokens.push(Token {
                token: t.token,
                read,
            });
        }
        let local = |what: &str, e: &str| {
            if e.starts_with("http://127.0.0.1:") || e.starts_with("http://localhost:") {
                Ok(traced::config::OtlpConfig {
                    enabled: true,
                    endpoint: e.to_string(),
                    ..traced::config::OtlpConfig::default()
                })
            } else {
                Err(ConfigError(format!(
                    "otlp.{what}: only http://127.0.0.1:PORT/... (or localhost) is allowed"
                )))
            }
        };
        let (otlp, otlp_logs) = match raw.otlp {
            None => (None, None),
            Some(o) => {
                let logs = match &o.logs_endpoint {
                    Some(l) => Some(local("logs_endpoint", l)?),
                    None => o
                        .endpoint
                        .strip_suffix("/v1/traces")
                        .map(|base| local("endpoint", &format!("{base}/v1/logs")))
                        .transpose()?,
                };
                (Some(local("endpoint", &o.endpoint)?), logs)
            }
        };
        Ok(Cluster {
            host,
            nodes,
            tokens,
            otlp,
            otlp_logs,
        })
    }

    /// The shipped file.
    pub fn builtin() -> Result<Cluster, ConfigError> {
        Self::parse(RECIPE)
    }

    /// The host's device id.
    pub fn host_id(&self) -> DeviceId {
        DeviceId(DeviceKey::from_secret(self.host.secret).id().to_bytes())
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeEntry, ConfigError> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            ConfigError(format!(
                "no node '{name}' in the cluster file (nodes: {})",
                names.join(", ")
            ))
        })
    }

    /// The node with device `id`.
    pub fn node_by_id(&self, id: DeviceId) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The token `presented` is, if any (compared without early exit).
    pub fn token(&self, presented: &str) -> Option<&Token> {
        self.tokens
            .iter()
            .find(|t| constant_time_eq(t.token.as_bytes(), presented.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
