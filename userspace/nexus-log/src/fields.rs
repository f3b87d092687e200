//! The fields convention: a record's structured fields travel as text,
//!
//! ```text
//! key=value\n
//! key=value\n
//! ```
//!
//! * keys match `[a-z0-9_.-]+`, are unique, and appear sorted (byte order);
//! * values are any UTF-8 without `\n` (they may be empty, may contain `=`);
//! * every line, the last one included, ends with `\n`; no fields is `""`.
//!
//! The encoding is canonical: one set of fields has exactly one encoding,
//! so equal fields compare equal as bytes. Keys that would collide with the
//! standard JSON keys ([`RESERVED_KEYS`]) are refused.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::fmt::{self, Write as _};

/// Keys a record's fields may not use: they are the standard keys of a JSON
/// line. (`trace_id` and `span_id` are fields and are lifted to the top.)
pub const RESERVED_KEYS: [&str; 6] = ["id", "timestamp", "level", "target", "message", "sender"];

/// Why fields were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// A key is empty or has a byte outside `[a-z0-9_.-]`.
    BadKey,
    /// A key is one of [`RESERVED_KEYS`].
    ReservedKey,
    /// A line has no `=`.
    MissingEquals,
    /// A value contains `\n` (builder only).
    NewlineInValue,
    /// Keys are not strictly ascending (unsorted or duplicated).
    NotSorted,
    /// The text does not end with `\n`.
    Unterminated,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldError::BadKey => "key must match [a-z0-9_.-]+",
            FieldError::ReservedKey => "key is reserved",
            FieldError::MissingEquals => "line without '='",
            FieldError::NewlineInValue => "value contains a newline",
            FieldError::NotSorted => "keys not sorted or duplicated",
            FieldError::Unterminated => "last line not terminated",
        })
    }
}

/// Checks a key against the grammar and the reserved list.
pub fn check_key(key: &str) -> Result<(), FieldError> {
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
    if !ok {
        return Err(FieldError::BadKey);
    }
    if RESERVED_KEYS.contains(&key) {
        return Err(FieldError::ReservedKey);
    }
    Ok(())
}

/// Validated fields in their canonical text form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Fields(String);

impl Fields {
    /// No fields.
    pub const fn empty() -> Self {
        Fields(String::new())
    }

    /// Validates `text` and keeps it. Never panics on any input.
    pub fn parse(text: &str) -> Result<Fields, FieldError> {
        Self::check(text)?;
        Ok(Fields(String::from(text)))
    }

    /// Validates `text` without keeping it (what [`Fields::parse`] checks).
    pub fn check(text: &str) -> Result<(), FieldError> {
        let mut prev: Option<&str> = None;
        for line in lines(text)? {
            let (k, _) = line.split_once('=').ok_or(FieldError::MissingEquals)?;
            check_key(k)?;
            if prev.is_some_and(|p| p >= k) {
                return Err(FieldError::NotSorted);
            }
            prev = Some(k);
        }
        Ok(())
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of fields.
    pub fn count(&self) -> usize {
        self.iter().count()
    }

    /// `(key, value)` pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .split_terminator('\n')
            .filter_map(|l| l.split_once('='))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

fn lines(text: &str) -> Result<core::str::SplitTerminator<'_, char>, FieldError> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(FieldError::Unterminated);
    }
    Ok(text.split_terminator('\n'))
}

/// Collects fields in any order and emits the canonical form.
///
/// [`insert`](Self::insert) is strict (bad keys and newlines are errors);
/// [`insert_display`](Self::insert_display), used by the log macros, never
/// fails the caller: it writes a newline in a value as the two characters
/// `\n` and remembers a bad key so that [`build`](Self::build) reports it.
#[derive(Debug, Clone, Default)]
pub struct FieldsBuilder {
    map: BTreeMap<String, String>,
    error: Option<FieldError>,
}

impl FieldsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a field.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<&mut Self, FieldError> {
        check_key(key)?;
        if value.contains('\n') {
            return Err(FieldError::NewlineInValue);
        }
        self.map.insert(String::from(key), String::from(value));
        Ok(self)
    }

    /// Adds a field from any `Display` value, escaping newlines.
    pub fn insert_display(&mut self, key: &str, value: &dyn fmt::Display) -> &mut Self {
        if let Err(e) = check_key(key) {
            self.error.get_or_insert(e);
            return self;
        }
        let mut s = String::new();
        let _ = write!(s, "{value}");
        if s.contains('\n') {
            s = s.replace('\n', "\\n");
        }
        self.map.insert(String::from(key), s);
        self
    }

    /// The canonical fields, or the first key error seen.
    pub fn build(&self) -> Result<Fields, FieldError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut out = String::new();
        for (k, v) in &self.map {
            out.push_str(k);
            out.push('=');
            out.push_str(v);
            out.push('\n');
        }
        Ok(Fields(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builder_sorts_and_parse_accepts_its_output() {
        let mut b = FieldsBuilder::new();
        b.insert("zeta", "1")
            .unwrap()
            .insert("alpha.b-c_d", "x=y")
            .unwrap();
        let f = b.build().unwrap();
        assert_eq!(f.as_str(), "alpha.b-c_d=x=y\nzeta=1\n");
        assert_eq!(Fields::parse(f.as_str()).unwrap(), f);
        assert_eq!(f.get("alpha.b-c_d"), Some("x=y"));
        assert_eq!(f.count(), 2);
    }

    #[test]
    fn parse_rejects_every_rule_violation() {
        assert_eq!(Fields::parse("b=1\na=2\n"), Err(FieldError::NotSorted));
        assert_eq!(Fields::parse("a=1\na=2\n"), Err(FieldError::NotSorted));
        assert_eq!(Fields::parse("A=1\n"), Err(FieldError::BadKey));
        assert_eq!(Fields::parse("=1\n"), Err(FieldError::BadKey));
        assert_eq!(Fields::parse("a b=1\n"), Err(FieldError::BadKey));
        assert_eq!(Fields::parse("noequals\n"), Err(FieldError::MissingEquals));
        assert_eq!(Fields::parse("a=1"), Err(FieldError::Unterminated));
        assert_eq!(Fields::parse("a=1\n\n"), Err(FieldError::MissingEquals));
        assert_eq!(Fields::parse("level=1\n"), Err(FieldError::ReservedKey));
        assert_eq!(Fields::parse(""), Ok(Fields::empty()));
        assert_eq!(Fields::parse("a=\n").unwrap().get("a"), Some(""));
    }

    #[test]
    fn display_insert_escapes_newlines_and_reports_bad_keys() {
        let mut b = FieldsBuilder::new();
        b.insert_display("err", &"line1\nline2");
        assert_eq!(b.build().unwrap().as_str(), "err=line1\\nline2\n");
        b.insert_display("Bad", &1);
        assert_eq!(b.build(), Err(FieldError::BadKey));
        assert_eq!(
            FieldsBuilder::new().insert("a", "x\ny").err(),
            Some(FieldError::NewlineInValue)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = Fields::parse(&s);
        }

        #[test]
        fn canonical_round_trip(pairs in proptest::collection::btree_map("[a-z0-9_.-]{1,12}", "[^\n]{0,20}", 0..8)) {
            let mut b = FieldsBuilder::new();
            let mut expected = alloc::vec::Vec::new();
            for (k, v) in &pairs {
                if check_key(k).is_ok() {
                    b.insert(k, v).unwrap();
                    expected.push((k.as_str(), v.as_str()));
                }
            }
            let f = b.build().unwrap();
            let back = Fields::parse(f.as_str()).unwrap();
            let got: alloc::vec::Vec<_> = back.iter().collect();
            prop_assert_eq!(got, expected);
        }
    }
}
