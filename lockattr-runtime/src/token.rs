//! Owner tokens: the random secret a lease is taken with.

use std::fmt;

/// 128 random bits from the operating system, presented on every release and extend so
/// that a holder whose lease expired can never touch the next holder's lease.
///
/// This is not the fencing token: see [`LockGuard::token`](crate::LockGuard::token).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerToken([u8; 16]);

/// How many tokens one read of the OS's random source serves.
const BATCH: usize = 64;

/// Random bytes read from the OS ahead of use, per thread, with the process they were read
/// in: a forked child must not hand out its parent's tokens.
struct Pool {
    bytes: [u8; 16 * BATCH],
    next: usize,
    pid: u32,
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = const {
        std::cell::RefCell::new(Pool { bytes: [0; 16 * BATCH], next: BATCH, pid: 0 })
    };
}

impl OwnerToken {
    /// A fresh token: 16 bytes from the operating system's random source. The bytes are
    /// read 64 tokens at a time per thread (one system call instead of 64), each used
    /// once, and read again after a `fork`.
    pub fn random() -> Result<Self, getrandom::Error> {
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let pid = std::process::id();
            if pool.next == BATCH || pool.pid != pid {
                getrandom::fill(&mut pool.bytes)?;
                pool.next = 0;
                pool.pid = pid;
            }
            let start = pool.next * 16;
            let mut token = [0u8; 16];
            token.copy_from_slice(&pool.bytes[start..start + 16]);
            // Used bytes are wiped, so a token never lingers in the pool.
            pool.bytes[start..start + 16].fill(0);
            pool.next += 1;
            Ok(OwnerToken(token))
        })
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The token as 32 lower-case hex digits, as stored by text-based backends.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for OwnerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Debug never prints the secret itself, only a short fingerprint.
impl fmt::Debug for OwnerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerToken({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_many_batches_are_all_distinct() {
        let tokens: std::collections::HashSet<OwnerToken> = (0..BATCH * 5 + 3)
            .map(|_| OwnerToken::random().unwrap())
            .collect();
        assert_eq!(tokens.len(), BATCH * 5 + 3);
        assert!(!tokens.contains(&OwnerToken([0; 16])));
    }

    #[test]
    fn tokens_differ_and_print_as_hex() {
        let a = OwnerToken::random().unwrap();
        let b = OwnerToken::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_hex().len(), 32);
        assert!(a.to_hex().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
