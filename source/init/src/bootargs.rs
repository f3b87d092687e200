//! The runtime's boot arguments: whitespace-separated `key=value` words in
//! `/chosen/bootargs` (QEMU `-append`). Unknown words are ignored.
//!
//! | word | meaning |
//! |------|---------|
//! | `nexus.profile=NAME` | the boot profile (`recipes/boot/NAME.toml`); default: `bus` with a role and keys, `pair` with a role, else `single` |
//! | `nexus.role=a\|b` | this node's side in the two-node phases: A connects, B listens |
//! | `nexus.ip=192.0.2.1` | the interface's static IPv4 address (a /24) |
//! | `nexus.mac=52:54:00:00:00:01` | the interface's Ethernet address (default: the device's) |
//! | `nexus.peer=192.0.2.2` | the other node's address (node A connects to it) |
//! | `nexus.key=<64 hex>` | this device's static X25519 secret (test images only; a real node keeps it in its state store) |
//! | `nexus.peer_key=<64 hex>` | the peer's static X25519 public key (the static peer list) |
//!
//! Pure code, unit-tested on the host.

pub use selftest_client::Role;

/// The network words of the boot arguments. `Debug` never shows the key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NetArgs {
    /// `nexus.role`.
    pub role: Option<Role>,
    /// `nexus.ip`.
    pub ip: Option<[u8; 4]>,
    /// `nexus.mac`.
    pub mac: Option<[u8; 6]>,
    /// `nexus.peer`.
    pub peer: Option<[u8; 4]>,
    /// `nexus.key`.
    pub key: Option<[u8; 32]>,
    /// `nexus.peer_key`.
    pub peer_key: Option<[u8; 32]>,
}

/// The boot arguments with secret values (`nexus.key`) replaced, for the
/// console: secrets never reach a log.
pub fn redacted(args: &str) -> alloc::string::String {
    let mut out = alloc::string::String::new();
    for (i, word) in args.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match word.split_once('=') {
            Some(("nexus.key", _)) => out.push_str("nexus.key=<redacted>"),
            _ => out.push_str(word),
        }
    }
    out
}

/// Parses 64 hex digits.
pub fn parse_key(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = s.get(2 * i..2 * i + 2)?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

impl core::fmt::Debug for NetArgs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetArgs")
            .field("role", &self.role)
            .field("ip", &self.ip)
            .field("mac", &self.mac)
            .field("peer", &self.peer)
            .field("key", &self.key.map(|_| "<redacted>"))
            .field("peer_key", &self.peer_key)
            .finish()
    }
}

/// A malformed network boot argument: the key whose value did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadArg(pub &'static str);

/// The value of the first `key=value` word, if any.
pub fn value<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// Parses a dotted-quad IPv4 address (`192.0.2.1`).
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Parses a colon-separated Ethernet address (`52:54:00:00:00:01`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Reads the network words. A word that is present but malformed is an
/// error naming its key; absent words are `None`.
pub fn net_args(args: &str) -> Result<NetArgs, BadArg> {
    let role = match value(args, "nexus.role") {
        None => None,
        Some("a") => Some(Role::A),
        Some("b") => Some(Role::B),
        Some(_) => return Err(BadArg("nexus.role")),
    };
    let ip = value(args, "nexus.ip")
        .map(|v| parse_ipv4(v).ok_or(BadArg("nexus.ip")))
        .transpose()?;
    let mac = value(args, "nexus.mac")
        .map(|v| parse_mac(v).ok_or(BadArg("nexus.mac")))
        .transpose()?;
    let peer = value(args, "nexus.peer")
        .map(|v| parse_ipv4(v).ok_or(BadArg("nexus.peer")))
        .transpose()?;
    let key = value(args, "nexus.key")
        .map(|v| parse_key(v).ok_or(BadArg("nexus.key")))
        .transpose()?;
    let peer_key = value(args, "nexus.peer_key")
        .map(|v| parse_key(v).ok_or(BadArg("nexus.peer_key")))
        .transpose()?;
    Ok(NetArgs {
        role,
        ip,
        mac,
        peer,
        key,
        peer_key,
    })
}

/// The boot profile to run: `nexus.profile` if given, otherwise the one
/// the network words imply (so the two-node scripts need no new word).
pub fn profile_name<'a>(args: &'a str, net: &NetArgs) -> &'a str {
    match (value(args, "nexus.profile"), net.role, net.key) {
        (Some(name), _, _) => name,
        (None, Some(_), Some(_)) => "bus",
        (None, Some(_), None) => "pair",
        (None, None, _) => "single",
    }
}

/// `nexus.peer_key` names the peer a test image expects: it must be in
/// busd's static peer list (`recipes/observability/busd.toml`), and it
/// comes with `nexus.key`, never alone.
pub fn check_peer_key(net: &NetArgs) -> Result<(), alloc::string::String> {
    let Some(pk) = net.peer_key else {
        return Ok(());
    };
    if net.key.is_none() {
        return Err(alloc::string::String::from(
            "nexus.peer_key without nexus.key",
        ));
    }
    let cfg = busd::Config::builtin().map_err(|e| alloc::format!("{e}"))?;
    let listed = cfg
        .peers()
        .map_err(|e| alloc::format!("{e}"))?
        .iter()
        .any(|p| p.key == pk);
    if listed {
        Ok(())
    } else {
        Err(alloc::string::String::from(
            "nexus.peer_key is not in busd's peer list",
        ))
    }
}

/// Formats an IPv4 address as a dotted quad.
#[derive(Debug)]
pub struct Ipv4Display(pub [u8; 4]);

impl core::fmt::Display for Ipv4Display {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// Formats an Ethernet address as six colon-separated hex pairs.
#[derive(Debug)]
pub struct MacDisplay(pub [u8; 6]);

impl core::fmt::Display for MacDisplay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;

    #[test]
    fn keys_are_exactly_64_hex_digits_and_hidden_from_debug() {
        let hex = "a1".repeat(32);
        assert_eq!(parse_key(&hex), Some([0xa1; 32]));
        assert_eq!(parse_key(&format!("+{}", &hex[1..])), None);
        assert_eq!(parse_key(&hex[..62]), None);
        let a = net_args(&format!("nexus.key={hex}")).unwrap();
        assert!(!format!("{a:?}").contains("a1a1"));
    }

    #[test]
    fn the_device_secret_never_reaches_the_console() {
        let shown = redacted("nexus.role=a nexus.key=a1a1 nexus.peer_key=c3c3");
        assert_eq!(
            shown,
            "nexus.role=a nexus.key=<redacted> nexus.peer_key=c3c3"
        );
    }

    #[test]
    fn no_network_words_is_the_single_node_boot() {
        let a = net_args("nexus.profile=single nexus.boot=1").unwrap();
        assert_eq!(a, NetArgs::default());
        assert_eq!(net_args("").unwrap(), NetArgs::default());
    }

    #[test]
    fn pair_words_parse() {
        let a = net_args(
            "nexus.role=a nexus.ip=192.0.2.1 nexus.mac=52:54:00:00:00:01 nexus.peer=192.0.2.2",
        )
        .unwrap();
        assert_eq!(a.role, Some(Role::A));
        assert_eq!(a.ip, Some([192, 0, 2, 1]));
        assert_eq!(a.mac, Some([0x52, 0x54, 0, 0, 0, 1]));
        assert_eq!(a.peer, Some([192, 0, 2, 2]));
        assert_eq!(net_args("nexus.role=b").unwrap().role, Some(Role::B));
    }

    #[test]
    fn malformed_words_name_their_key() {
        assert_eq!(net_args("nexus.role=c"), Err(BadArg("nexus.role")));
        assert_eq!(net_args("nexus.ip=192.0.2"), Err(BadArg("nexus.ip")));
        assert_eq!(net_args("nexus.ip=192.0.2.256"), Err(BadArg("nexus.ip")));
        assert_eq!(net_args("nexus.ip=192.0.2.1.5"), Err(BadArg("nexus.ip")));
        assert_eq!(net_args("nexus.ip=+1.0.2.1"), Err(BadArg("nexus.ip")));
        assert_eq!(
            net_args("nexus.mac=52:54:00:00:00"),
            Err(BadArg("nexus.mac"))
        );
        assert_eq!(
            net_args("nexus.mac=52:54:00:00:00:0g"),
            Err(BadArg("nexus.mac"))
        );
        assert_eq!(net_args("nexus.peer="), Err(BadArg("nexus.peer")));
    }

    #[test]
    fn the_profile_comes_from_its_word_or_the_role() {
        let hex = "a1".repeat(32);
        let pick = |a: &str| {
            let n = net_args(a).unwrap();
            profile_name(a, &n).to_string()
        };
        assert_eq!(pick(""), "single");
        assert_eq!(pick("nexus.role=a"), "pair");
        assert_eq!(pick(&format!("nexus.role=b nexus.key={hex}")), "bus");
        assert_eq!(pick("nexus.profile=bus nexus.role=a"), "bus");
        assert_eq!(pick("nexus.profile=single"), "single");
    }

    #[test]
    fn keys_match_whole_words_only() {
        assert_eq!(value("nexus.ipx=1 nexus.ip=2", "nexus.ip"), Some("2"));
        assert_eq!(value("xnexus.ip=1", "nexus.ip"), None);
    }

    #[test]
    fn addresses_display_as_parsed() {
        assert_eq!(Ipv4Display([192, 0, 2, 1]).to_string(), "192.0.2.1");
        assert_eq!(
            MacDisplay([0x52, 0x54, 0, 0, 0, 0xab]).to_string(),
            "52:54:00:00:00:ab"
        );
    }
}
