//! W3C `tracestate`: an ordered list of at most 32 vendor `key=value`
//! members, most recently updated first.
//!
//! Grammar (W3C Trace Context Level 1, section 3.3):
//!
//! ```text
//! key       = simple-key / multi-tenant-key
//! simple-key       = lcalpha 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//! multi-tenant-key = tenant-id "@" system-id
//! tenant-id        = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//! system-id        = lcalpha 0*13( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//! value     = 0*255(chr) nblk-chr
//! nblk-chr  = %x21-2B / %x2D-3C / %x3E-7E      ; printable, not "," or "="
//! chr       = %x20 / nblk-chr
//! list      = list-member 0*31( OWS "," OWS list-member ), empty members allowed
//! ```
//!
//! Parsing is all or nothing: a bad member, a duplicate key or more than
//! 32 (non-empty) members makes the whole header invalid, and the caller
//! drops it. Empty members and optional whitespace (space, tab) around
//! members are accepted and not kept.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Most members a `tracestate` may have.
pub const MAX_MEMBERS: usize = 32;
/// Longest value.
pub const MAX_VALUE_LEN: usize = 256;
/// Longest simple key.
pub const MAX_SIMPLE_KEY_LEN: usize = 256;
/// Longest tenant id of a multi-tenant key.
pub const MAX_TENANT_LEN: usize = 241;
/// Longest system id of a multi-tenant key.
pub const MAX_SYSTEM_LEN: usize = 14;

/// Why a `tracestate` (or one member) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceStateError {
    /// A key outside the key grammar.
    Key,
    /// A value outside the value grammar.
    Value,
    /// A member without `=`.
    Member,
    /// The same key twice.
    Duplicate,
    /// More than [`MAX_MEMBERS`] members.
    TooMany,
}

impl fmt::Display for TraceStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Key => "bad tracestate key",
            Self::Value => "bad tracestate value",
            Self::Member => "tracestate member without '='",
            Self::Duplicate => "duplicate tracestate key",
            Self::TooMany => "more than 32 tracestate members",
        })
    }
}

fn key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// True if `k` is a simple or multi-tenant key.
pub fn valid_key(k: &str) -> bool {
    let b = k.as_bytes();
    match k.split_once('@') {
        None => {
            (1..=MAX_SIMPLE_KEY_LEN).contains(&b.len())
                && b.first().is_some_and(u8::is_ascii_lowercase)
                && b.iter().all(|&c| key_char(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=MAX_TENANT_LEN).contains(&t.len())
                && t.first()
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && t.iter().all(|&c| key_char(c))
                && (1..=MAX_SYSTEM_LEN).contains(&s.len())
                && s.first().is_some_and(u8::is_ascii_lowercase)
                && s.iter().all(|&c| key_char(c))
        }
    }
}

/// True if `v` is a value: 1 to 256 printable ASCII characters (space
/// allowed, `,` and `=` not), the last one not a space.
pub fn valid_value(v: &str) -> bool {
    let b = v.as_bytes();
    (1..=MAX_VALUE_LEN).contains(&b.len())
        && b.iter().all(|&c| c == b' ' || nblk(c))
        && b.last().is_some_and(|&c| c != b' ')
}

fn nblk(c: u8) -> bool {
    matches!(c, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e)
}

pub(crate) fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// An ordered `tracestate`, leftmost (most recent) first. Empty costs no
/// allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceState {
    members: Vec<(String, String)>,
}

impl TraceState {
    /// No member.
    pub const fn new() -> Self {
        Self {
            members: Vec::new(),
        }
    }

    /// Parses one header value (all or nothing, see the module docs).
    pub fn parse(header: &str) -> Result<Self, TraceStateError> {
        Self::parse_all(core::iter::once(header))
    }

    /// Parses several header values as one list, in order (what a
    /// receiver does with repeated `tracestate` headers: join with `,`).
    pub fn parse_all<'a>(
        headers: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, TraceStateError> {
        let mut members: Vec<(String, String)> = Vec::new();
        for h in headers {
            for m in h.split(',') {
                let m = trim_ows(m);
                if m.is_empty() {
                    continue;
                }
                let (k, v) = m.split_once('=').ok_or(TraceStateError::Member)?;
                if !valid_key(k) {
                    return Err(TraceStateError::Key);
                }
                if !valid_value(v) {
                    return Err(TraceStateError::Value);
                }
                if members.iter().any(|(mk, _)| mk == k) {
                    return Err(TraceStateError::Duplicate);
                }
                if members.len() >= MAX_MEMBERS {
                    return Err(TraceStateError::TooMany);
                }
                members.push((String::from(k), String::from(v)));
            }
        }
        Ok(Self { members })
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value` and moves it to the front (the W3C update
    /// rule). If that makes 33 members, the rightmost one is dropped and
    /// returned.
    pub fn insert(
        &mut self,
        key: &str,
        value: &str,
    ) -> Result<Option<(String, String)>, TraceStateError> {
        if !valid_key(key) {
            return Err(TraceStateError::Key);
        }
        if !valid_value(value) {
            return Err(TraceStateError::Value);
        }
        self.remove(key);
        self.members
            .insert(0, (String::from(key), String::from(value)));
        Ok(if self.members.len() > MAX_MEMBERS {
            self.members.pop()
        } else {
            None
        })
    }

    /// Deletes `key`; its value if it was there.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.members.iter().position(|(k, _)| k == key)?;
        Some(self.members.remove(i).1)
    }

    /// Drops the rightmost member (what goes first when space is short).
    pub fn pop_last(&mut self) -> Option<(String, String)> {
        self.members.pop()
    }

    /// Members, leftmost first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True if there is no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Length of the header form ([`fmt::Display`]) in bytes.
    pub fn header_len(&self) -> usize {
        let body: usize = self
            .members
            .iter()
            .map(|(k, v)| k.len() + 1 + v.len())
            .sum();
        body + self.members.len().saturating_sub(1)
    }
}

impl fmt::Display for TraceState {
    /// The header form: `k=v,k2=v2` (no whitespace).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}
