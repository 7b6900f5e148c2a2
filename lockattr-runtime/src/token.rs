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

/// Random bytes read from the OS ahead of use, per thread, with the fork generation they
/// were read in: a forked child must not hand out its parent's tokens.
struct Pool {
    bytes: [u8; 16 * BATCH],
    next: usize,
    forks: u64,
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = const {
        std::cell::RefCell::new(Pool { bytes: [0; 16 * BATCH], next: BATCH, forks: 0 })
    };
}

/// How many times this process's line of ancestors forked since the pool was first used:
/// a `pthread_atfork` child handler counts up, so a check costs one atomic load instead
/// of a `getpid` system call per token.
#[cfg(unix)]
mod forks {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Once;

    static FORKS: AtomicU64 = AtomicU64::new(0);
    static WATCH: Once = Once::new();

    extern "C" fn forked() {
        FORKS.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn generation() -> u64 {
        WATCH.call_once(|| {
            // SAFETY: `forked` is a plain `extern "C" fn` that only touches an atomic, which
            // is async-signal-safe as a fork handler must be; registering it has no other
            // precondition. If registration fails (ENOMEM), every call below answers 0, which
            // makes each token a fresh read from the OS.
            if unsafe { libc::pthread_atfork(None, None, Some(forked)) } != 0 {
                FORKS.store(u64::MAX, Ordering::Relaxed);
            }
        });
        // Generation 0 is the value of a pool that never read: start counting at 1.
        match FORKS.load(Ordering::Relaxed) {
            u64::MAX => 0,
            n => n + 1,
        }
    }
}

/// Without `fork`, the generation never changes.
#[cfg(not(unix))]
mod forks {
    pub(super) fn generation() -> u64 {
        1
    }
}

impl OwnerToken {
    /// A fresh token: 16 bytes from the operating system's random source. The bytes are
    /// read 64 tokens at a time per thread (one system call instead of 64), each used
    /// once, and read again after a `fork`.
    pub fn random() -> Result<Self, getrandom::Error> {
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let forks = forks::generation();
            if pool.next == BATCH || pool.forks != forks || forks == 0 {
                getrandom::fill(&mut pool.bytes)?;
                pool.next = 0;
                pool.forks = forks;
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
        let digits = self.hex_digits();
        // The digits are ASCII.
        String::from_utf8_lossy(&digits).into_owned()
    }

    /// The 32 lower-case hex digits, without an allocation.
    pub(crate) fn hex_digits(&self) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        out
    }
}

impl fmt::Display for OwnerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.hex_digits();
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
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

    /// A forked child draws from the OS again instead of repeating the parent's pool.
    #[cfg(unix)]
    #[test]
    fn a_forked_child_does_not_repeat_the_parents_tokens() {
        let _warm = OwnerToken::random().unwrap();
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors `pipe` writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only takes a token (a thread-local read, perhaps `getrandom`),
        // writes it to the pipe and leaves with `_exit`, all async-signal-safe.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let bytes = OwnerToken::random()
                .map(|t| *t.as_bytes())
                .unwrap_or([0; 16]);
            // SAFETY: writes 16 bytes from a live buffer to the pipe, then exits the child.
            unsafe {
                libc::write(fds[1], bytes.as_ptr().cast(), 16);
                libc::_exit(0);
            }
        }
        let mut child = [0u8; 16];
        // SAFETY: reads at most 16 bytes into a live buffer of 16; waits for the child.
        unsafe {
            assert_eq!(libc::read(fds[0], child.as_mut_ptr().cast(), 16), 16);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let parent = OwnerToken::random().unwrap();
        assert_ne!(child, [0; 16], "the child got no token");
        assert_ne!(
            &child,
            parent.as_bytes(),
            "the child repeated the parent's next token"
        );
    }

    #[test]
    fn hex_matches_the_formatter() {
        let t = OwnerToken([
            0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 9, 10, 11, 12, 13, 14, 15, 16,
        ]);
        let expected: String = t.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(t.to_hex(), expected);
        assert_eq!(t.to_string(), expected);
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
