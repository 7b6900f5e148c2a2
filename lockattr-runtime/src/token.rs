//! Owner tokens: the random secret a lease is taken with.

use std::fmt;

/// 128 random bits from the operating system, presented on every release and extend so
/// that a holder whose lease expired can never touch the next holder's lease.
///
/// This is not the fencing token: see [`LockGuard::token`](crate::LockGuard::token).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerToken([u8; 16]);

impl OwnerToken {
    /// A fresh token from the operating system's random source.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(OwnerToken(bytes))
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
    fn tokens_differ_and_print_as_hex() {
        let a = OwnerToken::random().unwrap();
        let b = OwnerToken::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_hex().len(), 32);
        assert!(a.to_hex().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
