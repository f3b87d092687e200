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
//!
//! **Typed values** (fields text version 2). A value may carry a type: the
//! key is then followed by `:` and one marker letter, before the `=`:
//!
//! ```text
//! ok:b=true\n          a boolean: `true` or `false`
//! celsius:f=20.5\n     a finite float, written as a JSON number
//! status:i=200\n       an integer in i64::MIN..=u64::MAX, plain decimal
//! path=/index\n        a string (no marker): exactly the version 1 line
//! ```
//!
//! `:` is not a key byte, so a text without typed values is byte for byte
//! a version 1 text, and a version 1 parser refuses a typed line instead of
//! misreading it. Keys are compared, sorted and measured without their
//! marker; a typed value must parse as its type ([`FieldError::BadTypedValue`]).

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
    /// A type marker that is not `:i`, `:f` or `:b`, or a typed value that
    /// does not parse as its type.
    BadTypedValue,
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
            FieldError::BadTypedValue => "bad type marker or typed value",
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
    // RESERVED_KEYS, as a match (a length switch, then one compare).
    if matches!(
        key,
        "id" | "timestamp" | "level" | "target" | "message" | "sender"
    ) {
        return Err(FieldError::ReservedKey);
    }
    Ok(())
}

/// The type of a field value (fields text version 2; see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldType {
    /// A string (no marker; the only type of version 1).
    Str,
    /// An integer in `i64::MIN..=u64::MAX` (marker `:i`).
    Int,
    /// A finite float written as a JSON number (marker `:f`).
    Float,
    /// `true` or `false` (marker `:b`).
    Bool,
}

impl FieldType {
    /// The marker written after the key (`""` for a string).
    pub const fn marker(self) -> &'static str {
        match self {
            FieldType::Str => "",
            FieldType::Int => ":i",
            FieldType::Float => ":f",
            FieldType::Bool => ":b",
        }
    }

    fn from_letter(s: &str) -> Option<Self> {
        match s {
            "i" => Some(FieldType::Int),
            "f" => Some(FieldType::Float),
            "b" => Some(FieldType::Bool),
            _ => None,
        }
    }

    /// True if `value` is a valid text of this type.
    pub fn accepts(self, value: &str) -> bool {
        match self {
            FieldType::Str => !value.contains('\n'),
            FieldType::Bool => value == "true" || value == "false",
            FieldType::Int => is_int(value),
            FieldType::Float => {
                is_json_number(value) && value.parse::<f64>().is_ok_and(f64::is_finite)
            }
        }
    }
}

/// `-?(0|[1-9][0-9]*)` within `i64::MIN..=u64::MAX`, no `-0`.
fn is_int(v: &str) -> bool {
    let (neg, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v),
    };
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && !(neg && digits == "0");
    if !canonical {
        return false;
    }
    match digits.parse::<u64>() {
        Ok(n) => !neg || n <= 1u64 << 63,
        Err(_) => false,
    }
}

/// The JSON number grammar: `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`.
fn is_json_number(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b.get(int_start) == Some(&b'0')) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Splits one line (without its `\n`) into key, type and value, checking
/// the key grammar and the typed value. Never panics.
pub fn split_line(line: &str) -> Result<(&str, FieldType, &str), FieldError> {
    let (raw, value) = line.split_once('=').ok_or(FieldError::MissingEquals)?;
    let (key, ty) = match raw.split_once(':') {
        None => (raw, FieldType::Str),
        Some((k, t)) => (
            k,
            FieldType::from_letter(t).ok_or(FieldError::BadTypedValue)?,
        ),
    };
    check_key(key)?;
    if !ty.accepts(value) {
        return Err(FieldError::BadTypedValue);
    }
    Ok((key, ty, value))
}

/// True if some line of `text` carries a type marker (a `:` before its
/// first `=`): such text needs fields version 2 (and logd frame version 2).
pub fn text_has_types(text: &str) -> bool {
    // Most texts have no `:` at all: one byte scan answers them (a version
    // 1 QUERY page asks this of every record it carries).
    if !text.as_bytes().contains(&b':') {
        return false;
    }
    text.split_terminator('\n').any(|l| {
        let raw = l.split_once('=').map_or(l, |(k, _)| k);
        raw.contains(':')
    })
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
            let (k, _, _) = split_line(line)?;
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

    /// `(key, value)` pairs in key order (keys without their type marker).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter_typed().map(|(k, _, v)| (k, v))
    }

    /// `(key, type, value)` triples in key order.
    pub fn iter_typed(&self) -> impl Iterator<Item = (&str, FieldType, &str)> {
        self.0
            .split_terminator('\n')
            .filter_map(|l| split_line(l).ok())
    }

    /// `(key, type, value)` triples in key order, like
    /// [`Self::iter_typed`], without checking each line again: the text
    /// was validated when these fields were made.
    pub fn iter_trusted(&self) -> impl Iterator<Item = (&str, FieldType, &str)> {
        self.0.split_terminator('\n').map(|l| {
            let (raw, value) = l.split_once('=').unwrap_or((l, ""));
            match raw.split_once(':') {
                None => (raw, FieldType::Str, value),
                Some((k, t)) => (
                    k,
                    FieldType::from_letter(t).unwrap_or(FieldType::Str),
                    value,
                ),
            }
        })
    }

    /// The type of `key`'s value.
    pub fn get_typed(&self, key: &str) -> Option<(FieldType, &str)> {
        self.iter_typed()
            .find(|(k, _, _)| *k == key)
            .map(|(_, t, v)| (t, v))
    }

    /// True if some value is typed (the text is fields version 2).
    pub fn has_types(&self) -> bool {
        text_has_types(&self.0)
    }

    /// The same fields with every value as a string (markers removed): the
    /// version 1 text a version 1 reader gets.
    pub fn untyped(&self) -> Fields {
        if !self.has_types() {
            return self.clone();
        }
        let mut out = String::with_capacity(self.0.len());
        for (k, v) in self.iter() {
            out.push_str(k);
            out.push('=');
            out.push_str(v);
            out.push('\n');
        }
        Fields(out)
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
    map: BTreeMap<String, (FieldType, String)>,
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
        self.map
            .insert(String::from(key), (FieldType::Str, String::from(value)));
        Ok(self)
    }

    /// Adds or replaces a typed field: `value` must be a valid text of `ty`
    /// (see [`FieldType::accepts`]).
    pub fn insert_typed(
        &mut self,
        key: &str,
        ty: FieldType,
        value: &str,
    ) -> Result<&mut Self, FieldError> {
        check_key(key)?;
        if !ty.accepts(value) {
            return Err(if ty == FieldType::Str {
                FieldError::NewlineInValue
            } else {
                FieldError::BadTypedValue
            });
        }
        self.map
            .insert(String::from(key), (ty, String::from(value)));
        Ok(self)
    }

    /// Adds a field from a typed value; like [`insert_display`](Self::insert_display)
    /// it never fails the caller (a bad key is reported by `build`).
    pub fn insert_value(&mut self, key: &str, value: Value<'_>) -> &mut Self {
        if let Err(e) = check_key(key) {
            self.error.get_or_insert(e);
            return self;
        }
        let (ty, text) = value.to_text();
        self.map.insert(String::from(key), (ty, text));
        self
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
        self.map.insert(String::from(key), (FieldType::Str, s));
        self
    }

    /// The canonical fields, or the first key error seen.
    pub fn build(&self) -> Result<Fields, FieldError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut out = String::new();
        for (k, (ty, v)) in &self.map {
            out.push_str(k);
            out.push_str(ty.marker());
            out.push('=');
            out.push_str(v);
            out.push('\n');
        }
        Ok(Fields(out))
    }
}

/// A field value with its type, for [`FieldsBuilder::insert_value`] and the
/// log macros.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A string (newlines are written as the two characters `\n`).
    Str(&'a str),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float: finite ones are typed, NaN and infinities become the
    /// strings `NaN`, `inf`, `-inf` (JSON has no such numbers).
    F64(f64),
    /// A float from an `f32`, written with `f32` precision (`0.1`, not
    /// `0.10000000149011612`).
    F32(f32),
    /// A boolean.
    Bool(bool),
}

impl Value<'_> {
    /// The type and canonical text of the value.
    pub fn to_text(&self) -> (FieldType, String) {
        let mut s = String::new();
        let ty = match *self {
            Value::Str(v) => {
                s.push_str(v);
                if s.contains('\n') {
                    s = s.replace('\n', "\\n");
                }
                FieldType::Str
            }
            Value::I64(v) => {
                let _ = write!(s, "{v}");
                FieldType::Int
            }
            Value::U64(v) => {
                let _ = write!(s, "{v}");
                FieldType::Int
            }
            Value::F64(v) if v.is_finite() => {
                // Debug gives a JSON number for every finite f64
                // (`20.0`, `1e300`, `1.5e-7`).
                let _ = write!(s, "{v:?}");
                FieldType::Float
            }
            Value::F32(v) if v.is_finite() => {
                let _ = write!(s, "{v:?}");
                FieldType::Float
            }
            Value::F64(v) => return (FieldType::Str, non_finite(v.is_nan(), v > 0.0)),
            Value::F32(v) => return (FieldType::Str, non_finite(v.is_nan(), v > 0.0)),
            Value::Bool(v) => {
                s.push_str(if v { "true" } else { "false" });
                FieldType::Bool
            }
        };
        (ty, s)
    }
}

fn non_finite(nan: bool, positive: bool) -> String {
    String::from(match (nan, positive) {
        (true, _) => "NaN",
        (false, true) => "inf",
        (false, false) => "-inf",
    })
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
    fn typed_values_parse_only_as_their_type() {
        let ok =
            "a:b=true\nb:i=-9223372036854775808\nc:i=18446744073709551615\nd:f=-1.5e-7\ne=x:i=1\n";
        let f = Fields::parse(ok).unwrap();
        assert!(f.has_types());
        assert_eq!(
            f.get_typed("b"),
            Some((FieldType::Int, "-9223372036854775808"))
        );
        assert_eq!(f.get("e"), Some("x:i=1"));
        assert_eq!(
            f.untyped().as_str(),
            "a=true\nb=-9223372036854775808\nc=18446744073709551615\nd=-1.5e-7\ne=x:i=1\n"
        );
        for bad in [
            "a:b=1\n",
            "a:b=True\n",
            "a:i=1.0\n",
            "a:i=01\n",
            "a:i=-0\n",
            "a:i=\n",
            "a:i=18446744073709551616\n",
            "a:i=-9223372036854775809\n",
            "a:f=NaN\n",
            "a:f=inf\n",
            "a:f=1e999\n",
            "a:f=.5\n",
            "a:f=1.\n",
            "a:f=01\n",
            "a:x=1\n",
            "a:=1\n",
            "a:ii=1\n",
        ] {
            assert_eq!(Fields::parse(bad), Err(FieldError::BadTypedValue), "{bad}");
        }
        assert_eq!(Fields::parse("b:i=1\na=x\n"), Err(FieldError::NotSorted));
        assert_eq!(
            Fields::parse("a:i=1\na=x\n"),
            Err(FieldError::NotSorted),
            "one key, two lines"
        );
        assert_eq!(Fields::parse("level:i=1\n"), Err(FieldError::ReservedKey));
        assert!(!text_has_types("a=x:i\nb=1\n"));
        assert!(text_has_types("a:i=1\n"));
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
