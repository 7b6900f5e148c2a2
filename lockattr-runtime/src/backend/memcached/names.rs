//! The names a lock is stored under, and the check that Memcached can take them.

use crate::backend::BackendResult;

/// The length of the suffix of every name: `|l`, `|t`, `|w`.
pub(super) const SUFFIX_LEN: usize = 2;

/// The three names of one lock (see the [module docs](super)).
#[derive(Debug, Clone)]
pub(super) struct Names {
    pub(super) lock: String,
    pub(super) tickets: String,
    pub(super) wanted: String,
}

impl Names {
    /// The names of the lock stored as `stored`; an error for a key Memcached cannot take.
    pub(super) fn of(stored: &str) -> BackendResult<Self> {
        if stored.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "Memcached keys cannot hold spaces or control bytes, and `{}` does; build \
                 keys with the attribute or `lockattr::key::escape`",
                stored.escape_debug()
            )
            .into());
        }
        Ok(Names {
            lock: format!("{stored}|l"),
            tickets: format!("{stored}|t"),
            wanted: format!("{stored}|w"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_the_key_and_differ_in_a_two_byte_suffix() {
        let n = Names::of("lockattr:flush:acme").unwrap();
        assert_eq!(n.lock, "lockattr:flush:acme|l");
        assert_eq!(n.tickets, "lockattr:flush:acme|t");
        assert_eq!(n.wanted, "lockattr:flush:acme|w");
    }

    #[test]
    fn keys_with_spaces_or_control_bytes_are_refused() {
        for bad in ["a b", "a\r\nflush_all", "a\tb", "a\u{7f}"] {
            let e = Names::of(bad).unwrap_err().to_string();
            assert!(e.contains("spaces or control bytes"), "{e}");
        }
    }
}
