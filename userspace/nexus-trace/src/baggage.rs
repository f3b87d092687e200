//! W3C Baggage: application `key=value` pairs (with optional properties)
//! that travel with a trace, bounded by [`BaggageLimits`].
//!
//! Grammar (W3C Baggage):
//!
//! ```text
//! baggage-string = list-member *( OWS "," OWS list-member )
//! list-member    = key OWS "=" OWS value *( OWS ";" OWS property )
//! property       = key OWS "=" OWS value / key OWS
//! key            = token                               ; RFC 7230 tchar
//! value          = *baggage-octet                      ; percent-encoded UTF-8
//! baggage-octet  = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
//! ```
//!
//! Values are kept decoded (UTF-8; a percent sequence that is not UTF-8
//! becomes U+FFFD) and encoded on output: every byte outside
//! `baggage-octet`, and `%` itself, as `%XX`. Properties are kept as
//! received. A bad member is skipped alone and counted; a member past
//! [`BaggageLimits::max_members`] or [`BaggageLimits::max_bytes`] (of the
//! header form) is dropped whole, never cut, and counted. A repeated key
//! keeps its first position and takes the last value.
//!
//! Privacy: a key `private:<token>` is node-local. It is accepted here
//! (an extension: `:` is not a token character, so no other W3C parser
//! accepts it), carried by local propagation, and removed — and counted
//! — by every cross-node injection ([`Scope::CrossNode`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The prefix of node-local baggage keys.
pub const PRIVATE_PREFIX: &str = "private:";

/// Where propagated context goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Stays on this node (IPC to a local service): everything travels.
    Local,
    /// Leaves the node (DSoftBus mux, HTTP to a host): `private:` baggage
    /// is dropped and counted.
    CrossNode,
}

/// Baggage bounds. The W3C minimums (64 members, 8192 bytes) are the
/// defaults; smaller values are allowed for constrained nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaggageLimits {
    /// Most members.
    pub max_members: usize,
    /// Most bytes of the header form (members, `,` separators).
    pub max_bytes: usize,
}

/// W3C: at least 64 members must be supported.
pub const DEFAULT_MAX_MEMBERS: usize = 64;
/// W3C: at least 8192 bytes must be supported.
pub const DEFAULT_MAX_BYTES: usize = 8192;

impl Default for BaggageLimits {
    fn default() -> Self {
        Self {
            max_members: DEFAULT_MAX_MEMBERS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Why an entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaggageError {
    /// Key not a token (nor `private:` + token).
    Key,
    /// A property outside the grammar.
    Property,
    /// It would pass [`BaggageLimits`].
    OverLimit,
}

impl fmt::Display for BaggageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Key => "bad baggage key",
            Self::Property => "bad baggage property",
            Self::OverLimit => "baggage limit reached",
        })
    }
}

/// What parsing skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BaggageReport {
    /// Members outside the grammar.
    pub invalid: u32,
    /// Members past the limits.
    pub dropped: u32,
    /// `private:` members refused ([`Scope::CrossNode`] extraction).
    pub private_dropped: u32,
}

/// One baggage member.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaggageEntry {
    key: String,
    value: String,
    /// Properties as received: key and optional raw value.
    properties: Vec<(String, Option<String>)>,
}

impl BaggageEntry {
    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The decoded value.
    pub fn value(&self) -> &str {
        &self.value
    }
    /// Properties (raw octets, not decoded).
    pub fn properties(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
    }
    /// True for a `private:` key.
    pub fn is_private(&self) -> bool {
        is_private(&self.key)
    }
    /// Bytes of its header form.
    fn wire_len(&self) -> usize {
        let props: usize = self
            .properties
            .iter()
            .map(|(k, v)| 1 + k.len() + v.as_ref().map_or(0, |v| 1 + v.len()))
            .sum();
        self.key.len() + 1 + encoded_len(&self.value) + props
    }
    fn write(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str(&self.key)?;
        f.write_char('=')?;
        encode_value(&self.value, f)?;
        for (k, v) in &self.properties {
            f.write_char(';')?;
            f.write_str(k)?;
            if let Some(v) = v {
                f.write_char('=')?;
                f.write_str(v)?;
            }
        }
        Ok(())
    }
}

/// RFC 7230 `tchar`.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(tchar)
}

/// True if `key` is a baggage key: a token, or `private:` and a token.
pub fn valid_key(key: &str) -> bool {
    token(key.strip_prefix(PRIVATE_PREFIX).unwrap_or(key))
}

/// True for a node-local key.
pub fn is_private(key: &str) -> bool {
    key.starts_with(PRIVATE_PREFIX)
}

/// `baggage-octet`.
fn octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn raw_value(s: &str) -> bool {
    s.bytes().all(octet)
}

fn needs_escape(b: u8) -> bool {
    !octet(b) || b == b'%'
}

fn encoded_len(v: &str) -> usize {
    v.bytes().map(|b| if needs_escape(b) { 3 } else { 1 }).sum()
}

fn encode_value(v: &str, f: &mut impl fmt::Write) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = v.as_bytes();
    while let Some(i) = rest.iter().position(|&b| needs_escape(b)) {
        let (plain, tail) = rest.split_at(i);
        // Plain runs are ASCII octets only.
        f.write_str(core::str::from_utf8(plain).map_err(|_| fmt::Error)?)?;
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        f.write_char('%')?;
        for nib in [b >> 4, b & 0xf] {
            f.write_char(char::from(
                HEX.get(usize::from(nib)).copied().unwrap_or(b'0'),
            ))?;
        }
        rest = tail;
    }
    f.write_str(core::str::from_utf8(rest).map_err(|_| fmt::Error)?)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes; `%` not followed by two hex digits stays literal;
/// bytes that are not UTF-8 become U+FFFD.
pub fn decode_value(v: &str) -> String {
    let b = v.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn trim_ows(s: &str) -> &str {
    crate::tracestate::trim_ows(s)
}

/// Parses one member: `None` if outside the grammar.
fn parse_member(m: &str) -> Option<BaggageEntry> {
    let mut parts = m.split(';');
    let kv = parts.next()?;
    let (k, v) = kv.split_once('=')?;
    let (k, v) = (trim_ows(k), trim_ows(v));
    if !valid_key(k) || !raw_value(v) {
        return None;
    }
    let mut properties = Vec::new();
    for p in parts {
        properties.push(parse_property(p)?);
    }
    Some(BaggageEntry {
        key: String::from(k),
        value: decode_value(v),
        properties,
    })
}

fn parse_property(p: &str) -> Option<(String, Option<String>)> {
    match p.split_once('=') {
        Some((k, v)) => {
            let (k, v) = (trim_ows(k), trim_ows(v));
            (token(k) && raw_value(v)).then(|| (String::from(k), Some(String::from(v))))
        }
        None => {
            let k = trim_ows(p);
            token(k).then(|| (String::from(k), None))
        }
    }
}

/// Bounded baggage. Empty costs no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Baggage {
    entries: Vec<BaggageEntry>,
    limits: BaggageLimits,
    bytes: usize,
}

impl Baggage {
    /// Empty baggage with `limits`.
    pub const fn new(limits: BaggageLimits) -> Self {
        Self {
            entries: Vec::new(),
            limits,
            bytes: 0,
        }
    }

    /// The limits.
    pub fn limits(&self) -> BaggageLimits {
        self.limits
    }

    /// Parses one header value (see the module docs for what is skipped).
    pub fn parse(header: &str, limits: BaggageLimits) -> (Self, BaggageReport) {
        Self::parse_all(core::iter::once(header), limits, Scope::Local)
    }

    /// Parses several header values as one list (repeated `baggage`
    /// headers). With [`Scope::CrossNode`] (received from another node)
    /// `private:` members are refused and counted.
    pub fn parse_all<'a>(
        headers: impl IntoIterator<Item = &'a str>,
        limits: BaggageLimits,
        scope: Scope,
    ) -> (Self, BaggageReport) {
        let mut bag = Self::new(limits);
        let mut report = BaggageReport::default();
        for h in headers {
            for m in h.split(',') {
                let m = trim_ows(m);
                if m.is_empty() {
                    continue;
                }
                match parse_member(m) {
                    None => report.invalid = report.invalid.saturating_add(1),
                    Some(e) if scope == Scope::CrossNode && e.is_private() => {
                        report.private_dropped = report.private_dropped.saturating_add(1);
                    }
                    Some(e) => {
                        if bag.put(e).is_err() {
                            report.dropped = report.dropped.saturating_add(1);
                        }
                    }
                }
            }
        }
        (bag, report)
    }

    fn put(&mut self, e: BaggageEntry) -> Result<(), BaggageError> {
        let len = e.wire_len();
        if let Some(i) = self.entries.iter().position(|x| x.key == e.key) {
            let old = self.entries.get(i).map_or(0, BaggageEntry::wire_len);
            let bytes = self.bytes - old + len;
            if bytes > self.limits.max_bytes {
                return Err(BaggageError::OverLimit);
            }
            if let Some(slot) = self.entries.get_mut(i) {
                *slot = e;
            }
            self.bytes = bytes;
            return Ok(());
        }
        let sep = usize::from(!self.entries.is_empty());
        let bytes = self.bytes + sep + len;
        if self.entries.len() >= self.limits.max_members || bytes > self.limits.max_bytes {
            return Err(BaggageError::OverLimit);
        }
        self.entries.push(e);
        self.bytes = bytes;
        Ok(())
    }

    /// Sets `key` to `value` (any UTF-8; encoded on output).
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), BaggageError> {
        self.insert_with_properties(key, value, &[])
    }

    /// Sets `key` to `value` with properties (`(key, raw value)`).
    pub fn insert_with_properties(
        &mut self,
        key: &str,
        value: &str,
        properties: &[(&str, Option<&str>)],
    ) -> Result<(), BaggageError> {
        if !valid_key(key) {
            return Err(BaggageError::Key);
        }
        let mut props = Vec::with_capacity(properties.len());
        for (k, v) in properties {
            if !token(k) || v.is_some_and(|v| !raw_value(v)) {
                return Err(BaggageError::Property);
            }
            props.push((String::from(*k), v.map(String::from)));
        }
        self.put(BaggageEntry {
            key: String::from(key),
            value: String::from(value),
            properties: props,
        })
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(BaggageEntry::value)
    }

    /// The member `key`.
    pub fn entry(&self, key: &str) -> Option<&BaggageEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Removes `key`; its value if it was there.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        let e = self.entries.remove(i);
        self.recount();
        Some(e.value)
    }

    /// Drops the last member (what goes first when space is short).
    pub fn pop_last(&mut self) -> Option<BaggageEntry> {
        let e = self.entries.pop();
        self.recount();
        e
    }

    fn recount(&mut self) {
        let body: usize = self.entries.iter().map(BaggageEntry::wire_len).sum();
        self.bytes = body + self.entries.len().saturating_sub(1);
    }

    /// Members in order.
    pub fn iter(&self) -> impl Iterator<Item = &BaggageEntry> {
        self.entries.iter()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there is no member.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the header form with everything ([`Scope::Local`]).
    pub fn header_len(&self) -> usize {
        self.bytes
    }

    /// Number of `private:` members.
    pub fn private_count(&self) -> usize {
        self.entries.iter().filter(|e| e.is_private()).count()
    }

    /// Writes the header form for `scope`; returns how many `private:`
    /// members were left out (always 0 for [`Scope::Local`]).
    pub fn write_header(&self, scope: Scope, out: &mut impl fmt::Write) -> Result<u32, fmt::Error> {
        let mut skipped = 0u32;
        let mut first = true;
        for e in &self.entries {
            if scope == Scope::CrossNode && e.is_private() {
                skipped = skipped.saturating_add(1);
                continue;
            }
            if !first {
                out.write_char(',')?;
            }
            first = false;
            e.write(out)?;
        }
        Ok(skipped)
    }

    /// The header form for `scope` and the number of `private:` members
    /// left out.
    pub fn to_header(&self, scope: Scope) -> (String, u32) {
        let mut s = String::new();
        let skipped = self.write_header(scope, &mut s).unwrap_or(0);
        (s, skipped)
    }
}

impl fmt::Display for Baggage {
    /// The local header form (everything, `private:` included).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_header(Scope::Local, f).map(|_| ())
    }
}
