//! Lock keys: escaping interpolated values, the key prefix, and hashing keys that are too
//! long for a backend.
//!
//! # Escaping
//!
//! A value interpolated into a key template (`<tenant>`) is written byte by byte: the bytes
//! of `[A-Za-z0-9._-]` go in as they are, every other byte (including `:`, `/`, `%` and
//! every non-ASCII byte) as `%XX` with upper-case hex. An escaped value therefore never
//! contains `:` or `/`, and the attribute requires `:` or `/` between two placeholders, so
//! distinct argument tuples always give distinct keys, while readable values stay readable:
//! `tenant = "acme"` gives `flush:acme`, the same key as `lockattr::lock("flush:acme")`.
//!
//! # Prefix and long keys
//!
//! Every key is stored under the backend's prefix (`lockattr:` unless the URL says
//! `?prefix=…`). A stored key longer than the backend allows is replaced by
//! [`storage_key`]'s stable form: as much of the readable key as fits, then `#` and the
//! first 32 hex digits of the SHA-256 of the whole prefixed key.

use std::borrow::Cow;
use std::fmt::{self, Display, Write as _};

use sha2::{Digest, Sha256};

/// The prefix every key is stored under unless the backend URL sets `?prefix=`.
pub const DEFAULT_PREFIX: &str = "lockattr:";

/// Hex digits of the SHA-256 kept in a hashed key.
const HASH_HEX_DIGITS: usize = 32;

/// True for the bytes that go into a key unescaped.
fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Escapes one interpolated value as the attribute does (see the [module docs](self)).
///
/// ```
/// assert_eq!(lockattr::key::escape("acme"), "acme");
/// assert_eq!(lockattr::key::escape("a:b"), "a%3Ab");
/// assert_eq!(lockattr::key::escape("Zürich 1"), "Z%C3%BCrich%201");
/// ```
pub fn escape(value: &str) -> Cow<'_, str> {
    if value.bytes().all(is_safe) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    // Writing to a String cannot fail.
    let _ = push_escaped(&mut out, value);
    Cow::Owned(out)
}

fn push_escaped(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = value;
    while !rest.is_empty() {
        let safe_len = rest.bytes().take_while(|&b| is_safe(b)).count();
        out.write_str(&rest[..safe_len])?;
        let unsafe_len = rest[safe_len..]
            .bytes()
            .take_while(|&b| !is_safe(b))
            .count();
        for b in rest[safe_len..safe_len + unsafe_len].bytes() {
            let pair = [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
            // The three bytes are ASCII.
            out.write_str(std::str::from_utf8(&pair).map_err(|_| fmt::Error)?)?;
        }
        rest = &rest[safe_len + unsafe_len..];
    }
    Ok(())
}

/// Formats a value with its `Display` impl and escapes the output (used by the attribute's
/// generated key code; public so that hand-built keys can match the attribute's).
///
/// ```
/// let key = format!("import:{}", lockattr::key::KeyValue(&"2024/05"));
/// assert_eq!(key, "import:2024%2F05");
/// ```
pub struct KeyValue<'a, T: ?Sized>(pub &'a T);

impl<T: Display + ?Sized> Display for KeyValue<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl fmt::Write for Escaper<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                push_escaped(self.0, s)
            }
        }
        write!(Escaper(f), "{}", self.0)
    }
}

/// The key as stored in a backend: `prefix + key`, or, when that is longer than
/// `max_len` bytes, the readable head that fits followed by `#` and 32 hex digits of the
/// SHA-256 of `prefix + key`.
///
/// The hashed form is stable across releases (tested against fixed vectors).
///
/// ```
/// use lockattr::key::storage_key;
/// assert_eq!(storage_key("lockattr:", "flush:acme", 64), "lockattr:flush:acme");
/// let long = "x".repeat(100);
/// let stored = storage_key("lockattr:", &long, 64);
/// assert_eq!(stored.len(), 64);
/// assert!(stored.starts_with("lockattr:xxx"));
/// ```
pub fn storage_key<'a>(prefix: &str, key: &'a str, max_len: usize) -> Cow<'a, str> {
    if prefix.len() + key.len() <= max_len {
        if prefix.is_empty() {
            return Cow::Borrowed(key);
        }
        let mut s = String::with_capacity(prefix.len() + key.len());
        s.push_str(prefix);
        s.push_str(key);
        return Cow::Owned(s);
    }
    let mut hasher = Sha256::new();
    hasher.update(prefix.as_bytes());
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut hash = String::with_capacity(HASH_HEX_DIGITS);
    for b in digest.iter().take(HASH_HEX_DIGITS / 2) {
        let _ = write!(hash, "{b:02x}");
    }
    let full = format!("{prefix}{key}");
    let mut head_len = max_len.saturating_sub(HASH_HEX_DIGITS + 1);
    while !full.is_char_boundary(head_len) {
        head_len -= 1;
    }
    Cow::Owned(format!("{}#{hash}", &full[..head_len]))
}

/// Whether `stored` has the form [`storage_key`] gives a key too long for `max_len`: at
/// most `max_len` bytes (and no more than 3 fewer, the most a character boundary takes
/// off), ending with `#` and 32 lower-case hex digits. Such a key cannot be read back.
///
/// ```
/// use lockattr::key::{looks_hashed, storage_key};
/// let long = "x".repeat(100);
/// assert!(looks_hashed(&storage_key("lockattr:", &long, 64), 64));
/// assert!(!looks_hashed("lockattr:flush:acme", 64));
/// ```
pub fn looks_hashed(stored: &str, max_len: usize) -> bool {
    let bytes = stored.as_bytes();
    bytes.len() <= max_len
        && bytes.len() + 3 >= max_len
        && bytes.len() > HASH_HEX_DIGITS
        && bytes[bytes.len() - HASH_HEX_DIGITS - 1] == b'#'
        && bytes[bytes.len() - HASH_HEX_DIGITS..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The shortest `max_len` a backend may declare: room for the `#` and the hash.
pub const MIN_HASHED_KEY_LEN: usize = HASH_HEX_DIGITS + 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_values_are_untouched() {
        assert!(matches!(
            escape("Acme-01_x.y"),
            Cow::Borrowed("Acme-01_x.y")
        ));
    }

    #[test]
    fn separators_and_percent_are_escaped() {
        assert_eq!(escape("a:b/c%d"), "a%3Ab%2Fc%25d");
        assert_eq!(escape(""), "");
        assert_eq!(escape("é"), "%C3%A9");
    }

    #[test]
    fn key_value_matches_escape() {
        assert_eq!(KeyValue(&"a:b").to_string(), "a%3Ab");
        assert_eq!(KeyValue(&42u32).to_string(), "42");
        assert_eq!(KeyValue(&-1.5f64).to_string(), "-1.5");
    }

    /// Fixed vectors (the hash checked with `sha256sum`): changing them changes which
    /// stored key a released version takes.
    #[test]
    fn hashed_storage_key_is_stable() {
        let key = "k".repeat(80);
        let stored = storage_key("lockattr:", &key, 64);
        assert_eq!(stored.len(), 64);
        assert_eq!(
            stored,
            "lockattr:kkkkkkkkkkkkkkkkkkkkkk#2997154860b3157cfee65d9b95feffe8"
        );
        assert_eq!(storage_key("p:", "short", 64), "p:short");
    }

    #[test]
    fn hashed_key_respects_char_boundaries() {
        let key = "é".repeat(60);
        let stored = storage_key("lockattr:", &key, 64);
        assert!(stored.len() <= 64);
        assert!(stored.contains('#'));
    }
}
