//! Which keys name secrets: the one rule shared by span attributes here
//! and metricsd's labels and attributes (`redact.deny_key_segments`).
//!
//! A key is cut into segments at `_`, `.`, `-` and where a lower-case
//! letter or a digit is followed by an upper-case letter (`apiKey` →
//! `api`, `Key`). A deny word (itself cut the same way, so `api_key` is
//! the run `api`, `key`) matches when its segments appear as a run of
//! consecutive segments of the key, compared ASCII case-insensitively:
//! `api_key` matches `x_api_key`, `apiKey`, `API_KEY`, never `monkey`.
//! Matching allocates nothing.

/// What a secret attribute value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The default deny words (metricsd's default `redact.deny_key_segments`).
pub const DEFAULT_SECRET_SEGMENTS: [&str; 17] = [
    "token",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "auth",
    "authorization",
    "bearer",
    "cookie",
    "credential",
    "credentials",
    "session",
    "jwt",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
];

/// The segments of a key, in order (empty ones skipped).
pub fn segments(key: &str) -> impl Iterator<Item = &str> + Clone {
    let bytes = key.as_bytes();
    let mut start = 0;
    let mut i = 0;
    core::iter::from_fn(move || {
        while i <= bytes.len() {
            let at = i;
            i += 1;
            let b = bytes.get(at).copied();
            let sep = matches!(b, None | Some(b'_' | b'.' | b'-'));
            let camel = at > 0
                && b.is_some_and(|c| c.is_ascii_uppercase())
                && bytes
                    .get(at - 1)
                    .is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            if sep || camel {
                let seg = key.get(start..at).unwrap_or("");
                start = if sep { at + 1 } else { at };
                if !seg.is_empty() {
                    return Some(seg);
                }
            }
        }
        None
    })
}

/// True if the segments of `word` appear as a run in the segments of
/// `key`, case-insensitively. A word with no segment matches nothing.
pub fn has_segment_run(key: &str, word: &str) -> bool {
    let w = segments(word);
    if w.clone().next().is_none() {
        return false;
    }
    let mut k = segments(key);
    loop {
        let mut kk = k.clone();
        let mut ww = w.clone();
        let matched = loop {
            match ww.next() {
                None => break true,
                Some(ws) => match kk.next() {
                    Some(ks) if ks.eq_ignore_ascii_case(ws) => {}
                    _ => break false,
                },
            }
        };
        if matched {
            return true;
        }
        if k.next().is_none() {
            return false;
        }
    }
}

/// True if one of `words` matches `key` (see the module docs).
pub fn is_secret_key<W: AsRef<str>>(key: &str, words: &[W]) -> bool {
    words.iter().any(|w| has_segment_run(key, w.as_ref()))
}

/// [`is_secret_key`] with [`DEFAULT_SECRET_SEGMENTS`].
pub fn is_default_secret_key(key: &str) -> bool {
    is_secret_key(key, &DEFAULT_SECRET_SEGMENTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn segments_cut_at_separators_and_case_changes() {
        let s: Vec<&str> = segments("x_apiKey.v2-Token").collect();
        assert_eq!(s, ["x", "api", "Key", "v2", "Token"]);
        let s: Vec<&str> = segments("__a..B").collect();
        assert_eq!(s, ["a", "B"]);
        assert_eq!(segments("").count(), 0);
        assert_eq!(segments("API_KEY").collect::<Vec<_>>(), ["API", "KEY"]);
    }

    #[test]
    fn secret_keys_match_whole_segment_runs_only() {
        for k in [
            "token",
            "api_key",
            "x_api_key",
            "apiKey",
            "API_KEY",
            "authToken",
            "db.password",
            "session_id",
            "set-cookie",
            "private_key_path",
        ] {
            assert!(is_default_secret_key(k), "{k}");
        }
        for k in [
            "monkey", "tokens", "keyboard", "author", "api", "key", "", "_",
        ] {
            assert!(!is_default_secret_key(k), "{k}");
        }
        assert!(!is_secret_key("token", &[""; 1]));
        assert!(!is_secret_key::<&str>("token", &[]));
    }
}
