//! Fencing tokens in blocks: `block × 2²⁰ + n`, where `block` is a number this backend
//! took from the sequence `lockattr_fence` (see the module docs of `postgres`).

use super::{PgConn, Postgres};
use crate::error::BoxError;

/// A fencing token is `block << BLOCK_BITS | n`.
pub(super) const BLOCK_BITS: u32 = 20;

/// The fencing block this backend owns (`0`: none yet) and the next `n` in it.
#[derive(Default)]
pub(super) struct Fences {
    block: i64,
    next: u64,
}

impl Postgres {
    fn fences(&self) -> std::sync::MutexGuard<'_, Fences> {
        // Two plain numbers, updated together: a poisoned lock still holds a valid pair.
        self.fences.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The block a take presents to the server: the one owned, or `-1` (no sequence
    /// value) when it is used up, so that the statement takes a new one.
    pub(super) fn presented_block(&self) -> i64 {
        let fences = self.fences();
        if fences.next >> BLOCK_BITS == 0 {
            fences.block
        } else {
            -1
        }
    }

    /// The token of a granted take whose statement answered `answer`: `0` if the
    /// presented block was still the sequence's latest, or else the new block it took.
    /// `None` if the owned block is used up (another take used its last token since).
    ///
    /// A block owned now is at least the presented one, and every block of this backend
    /// was taken after the check of any answer that reaches here with a smaller one, so
    /// the newest block is always safe to use.
    fn token(&self, answer: i64) -> Option<u64> {
        let mut fences = self.fences();
        if answer > fences.block {
            fences.block = answer;
            fences.next = 0;
        }
        if fences.next >> BLOCK_BITS != 0 {
            return None;
        }
        let token = (fences.block as u64) << BLOCK_BITS | fences.next;
        fences.next += 1;
        Some(token)
    }

    /// The token of a granted take: from the statement's answer, or, in the rare case the
    /// block ran out meanwhile, from a new block taken on the same session.
    pub(super) async fn fence(&self, conn: &mut PgConn, answer: i64) -> Result<u64, BoxError> {
        let mut answer = answer;
        loop {
            if let Some(token) = self.token(answer) {
                return Ok(token);
            }
            answer = sqlx::query_scalar("SELECT nextval('lockattr_fence')")
                .fetch_one(&mut conn.conn)
                .await
                .map_err(|e| self.secrets.error(e))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect() -> Postgres {
        Postgres {
            options: sqlx::postgres::PgConnectOptions::new(),
            secrets: Default::default(),
            fences: Default::default(),
        }
    }

    #[test]
    fn tokens_count_up_within_a_block_and_jump_to_a_new_one() {
        let pg = dialect();
        assert_eq!(pg.presented_block(), 0, "no block yet");
        assert_eq!(pg.token(7), Some(7 << BLOCK_BITS));
        assert_eq!(pg.presented_block(), 7);
        assert_eq!(pg.token(0), Some((7 << BLOCK_BITS) + 1));
        // A stale new block (smaller than the one owned) never lowers the tokens.
        assert_eq!(pg.token(5), Some((7 << BLOCK_BITS) + 2));
        assert_eq!(pg.token(9), Some(9 << BLOCK_BITS));
    }

    #[test]
    fn a_used_up_block_is_never_overrun() {
        let pg = dialect();
        assert!(pg.token(3).is_some());
        pg.fences().next = 1 << BLOCK_BITS;
        assert_eq!(pg.presented_block(), -1, "a take must ask for a new block");
        assert_eq!(pg.token(0), None, "no token past the block's end");
        assert_eq!(pg.token(4), Some(4 << BLOCK_BITS));
    }
}
