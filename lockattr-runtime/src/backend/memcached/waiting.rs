//! Waiting for a key Memcached cannot tell us about: the waiters' line on the server
//! (tickets, the claim of the oldest one), the in-process wake-ups on a local release,
//! and the clean-up of an abandoned wait.
//!
//! Three names per lock `K` (see the [module docs](super)): `K|l` the lease, `K|t` the
//! ticket counter, `K|w` the line's head: `<ticket>` while the waiter holding that ticket
//! claims the next turn, `s<ticket>` once that waiter was served (or left) and nobody
//! claims yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::options::expiry_secs;
use super::protocol::{Command, Reply};
use super::{Client, Names, Taken};
use crate::backend::wait::{self, Poll, Waiting};
use crate::backend::{Acquire, BackendResult, Granted};

/// How long a claim or a served mark lasts without a refresh; a waiter that vanished
/// gives up its turn after this.
const CLAIM: Duration = Duration::from_secs(2);
/// How long the ticket counter lasts after its last ticket.
const TICKETS: Duration = Duration::from_secs(60);
/// The pauses between two polls of a waiter.
const POLL: Poll = Poll::new(2, 50);
/// How long a waiter lets each older ticket claim a served turn before it claims it.
const GRACE: Duration = Duration::from_millis(30);

/// The waiters of this process, by server and lock: a local release wakes them at once.
#[derive(Default)]
pub(super) struct LocalWaiters(Mutex<HashMap<String, Arc<Notify>>>);

/// One waiter's registration in [`LocalWaiters`]; dropping it unregisters.
pub(super) struct Registration {
    name: String,
    pub(super) notify: Arc<Notify>,
}

impl LocalWaiters {
    /// The one registry of the process: backends opened on the same server (several
    /// [`Locks`](crate::Locks), as in a test) wake each other's waiters.
    pub(super) fn global() -> &'static LocalWaiters {
        static WAITERS: OnceLock<LocalWaiters> = OnceLock::new();
        WAITERS.get_or_init(LocalWaiters::default)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn register(&'static self, name: String) -> Registration {
        let notify = self.map().entry(name.clone()).or_default().clone();
        Registration { name, notify }
    }

    /// Wakes every local waiter of `name`.
    pub(super) fn wake(&self, name: &str) {
        if let Some(notify) = self.map().get(name) {
            notify.notify_waiters();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = LocalWaiters::global().map();
        // The map's reference and ours: nobody else waits on this lock.
        if Arc::strong_count(&self.notify) == 2 {
            map.remove(&self.name);
        }
    }
}

/// The head of the line as read from `K|w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Nobody claims the next turn, and no turn was served lately.
    Empty,
    /// The waiter holding this ticket claims the next turn.
    Claimed(u64),
    /// The waiter holding this ticket was served or left; nobody claims yet.
    Served(u64),
}

fn head(reply: &Reply) -> (Head, u64) {
    match reply {
        Reply::Value { data, cas, .. } => {
            let text = std::str::from_utf8(data).unwrap_or("");
            let head = match text.strip_prefix('s') {
                Some(n) => n.parse().map(Head::Served),
                None => text.parse().map(Head::Claimed),
            };
            (head.unwrap_or(Head::Empty), cas.unwrap_or(0))
        }
        _ => (Head::Empty, 0),
    }
}

/// Whether a key just granted outside the line must be given back to the line: somebody
/// claims the next turn, or a turn was served while later tickets were out (the served
/// mark is deleted when none were).
pub(super) fn line_waits(head_reply: &Reply) -> bool {
    head(head_reply).0 != Head::Empty
}

/// An acquisition in flight. If it ends early (an error such as a timeout, or its future
/// dropped), the lease its last attempt may have taken is given back and a waiter's
/// claim passed on, in the background; should that fail, both run out by themselves.
pub(super) struct Pending {
    pub(super) client: Arc<Client>,
    pub(super) names: Names,
    pub(super) owner: [u8; 32],
    /// The waiter's ticket, once it has one.
    pub(super) ticket: Option<u64>,
    /// False once the acquisition ended normally: nothing to clean up.
    pub(super) in_flight: bool,
}

/// How often the clean-up of an abandoned attempt looks for its lease, and how far apart:
/// an attempt that timed out may reach a stalled server only when it answers again.
const CLEANUP_TRIES: u32 = 20;
const CLEANUP_PAUSE: Duration = Duration::from_millis(250);

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.in_flight {
            return;
        }
        let (client, names, owner, ticket) = (
            self.client.clone(),
            self.names.clone(),
            self.owner,
            self.ticket,
        );
        let what = format!(
            "a lock attempt on `{}` (backend {})",
            names.lock, client.pool.options.backend
        );
        wait::spawn_detached(format_args!("{what}"), async move {
            if let Some(t) = ticket {
                let _ = client.pass_turn(&names, t).await;
            }
            // Done once the lease was deleted, or not found twice by a server that answers
            // (the attempt's own command may arrive after the first look).
            let mut absent = 0;
            for _ in 0..CLEANUP_TRIES {
                match client.delete_if(&names.lock, &owner).await {
                    Ok(true) => return,
                    Ok(false) if absent == 1 => return,
                    Ok(false) => absent += 1,
                    Err(e) => {
                        tracing::debug!(error = %e, key = names.lock, "cleaning up an abandoned Memcached lock attempt failed; trying again")
                    }
                }
                tokio::time::sleep(CLEANUP_PAUSE).await;
            }
            tracing::debug!(
                key = names.lock,
                "gave up cleaning up an abandoned Memcached lock attempt; it expires by itself"
            );
        });
    }
}

impl Client {
    /// Takes the key, waiting in line until `deadline`: the first try is the uncontended
    /// one, and only a refused caller takes a ticket.
    pub(super) async fn acquire_queued(
        self: &Arc<Self>,
        req: Acquire<'_>,
        deadline: Instant,
    ) -> BackendResult<Option<Granted>> {
        let names = Names::of(req.key)?;
        let local = LocalWaiters::global().register(self.local_name(&names));
        let mut pending = Pending {
            client: self.clone(),
            names: names.clone(),
            owner: req.owner.hex_digits(),
            ticket: None,
            in_flight: true,
        };
        let woken = local.notify.notified();
        req.attempt.start();
        if let Taken::Granted(granted) = self.attempt(&names, &req).await? {
            pending.in_flight = false;
            return Ok(Some(granted));
        }
        let ticket = self.ticket(&names).await?;
        pending.ticket = Some(ticket);
        let mut waiting = Waiting::new(deadline, POLL);
        let mut seen: Option<(u64, Instant)> = None;
        if !waiting.pause(woken, None).await {
            pending.in_flight = false;
            self.pass_turn(&names, ticket).await?;
            return Ok(None);
        }
        loop {
            let woken = local.notify.notified();
            let (head, cas) = self.head(&names).await?;
            let mine = match head {
                Head::Claimed(t) if t == ticket => Some(cas),
                Head::Claimed(t) if t < ticket => None,
                Head::Empty => self.claim(&names, ticket, None).await?,
                Head::Served(n) => {
                    // The next ticket claims at once; later ones let each older one try
                    // first (it may be gone), counted from when this one saw the mark.
                    let since = match seen {
                        Some((c, at)) if c == cas => at,
                        _ => seen.insert((cas, Instant::now())).1,
                    };
                    let ahead = ticket.saturating_sub(n + 1);
                    if since.elapsed() >= GRACE * u32::try_from(ahead).unwrap_or(u32::MAX) {
                        self.claim(&names, ticket, Some(cas)).await?
                    } else {
                        None
                    }
                }
                // A younger ticket claims: take the turn from it.
                Head::Claimed(_) => self.claim(&names, ticket, Some(cas)).await?,
            };
            if let Some(claim) = mine {
                req.attempt.start();
                if let Some(granted) = self.take_turn(&names, &req, ticket, claim).await? {
                    pending.in_flight = false;
                    return Ok(Some(granted));
                }
            }
            if !waiting.pause(woken, None).await {
                pending.in_flight = false;
                self.pass_turn(&names, ticket).await?;
                return Ok(None);
            }
        }
    }

    /// A new ticket: the next number of `K|t` (created at 1 when missing).
    async fn ticket(&self, names: &Names) -> BackendResult<u64> {
        let ttl = expiry_secs(TICKETS);
        let cmd = Command::line(&format!("ma {} N{ttl} J1 T{ttl} v", names.tickets));
        match self.run_one(cmd).await? {
            Reply::Value { data, .. } => std::str::from_utf8(&data)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| "the server sent a ticket that is not a number".into()),
            other => Err(format!("unexpected answer to a ticket: {other:?}").into()),
        }
    }

    async fn head(&self, names: &Names) -> BackendResult<(Head, u64)> {
        let reply = self
            .run_one(Command::line(&format!("mg {} v c", names.wanted)))
            .await?;
        Ok(head(&reply))
    }

    /// Claims the next turn for `ticket`: added if nobody claims (`over` is `None`), else
    /// swapped for the head read with CAS `over`. The claim's CAS if it was stored.
    async fn claim(
        &self,
        names: &Names,
        ticket: u64,
        over: Option<u64>,
    ) -> BackendResult<Option<u64>> {
        let mode = match over {
            None => "ME".to_owned(),
            Some(cas) => format!("C{cas}"),
        };
        let flags = format!("T{} {mode} c", expiry_secs(CLAIM));
        let cmd = Command::set(&names.wanted, &flags, ticket.to_string().as_bytes());
        Ok(match self.run_one(cmd).await? {
            Reply::Stored { cas } => cas,
            _ => None,
        })
    }

    /// The claimant's try: takes the lease if it is free, and refreshes the claim in the
    /// same round trip; once granted, marks the turn served so the next ticket claims.
    async fn take_turn(
        &self,
        names: &Names,
        req: &Acquire<'_>,
        ticket: u64,
        claim: u64,
    ) -> BackendResult<Option<Granted>> {
        let touch = format!("mg {} T{} c", names.wanted, expiry_secs(CLAIM));
        let answers = self
            .run(&[self.take_command(names, req), Command::line(&touch)])
            .await?;
        let Some(granted) =
            self.granted(names, req, &answers.replies[0], answers.server_started)?
        else {
            return Ok(None);
        };
        let claim = match &answers.replies[1] {
            Reply::Stored { cas: Some(cas) } => *cas,
            _ => claim,
        };
        self.mark_served(names, ticket, claim).await?;
        Ok(Some(granted))
    }

    /// Sets the head to `s<ticket>` if it still holds this claim (CAS `claim`); deletes
    /// the mark again if no later ticket was handed out, so that the next uncontended
    /// acquisition finds the line empty.
    async fn mark_served(&self, names: &Names, ticket: u64, claim: u64) -> BackendResult<()> {
        let flags = format!("T{} C{claim} c", expiry_secs(CLAIM));
        let value = format!("s{ticket}");
        let answers = self
            .run(&[
                Command::set(&names.wanted, &flags, value.as_bytes()),
                Command::line(&format!("mg {} v", names.tickets)),
            ])
            .await?;
        let last_ticket = match &answers.replies[1] {
            Reply::Value { data, .. } => std::str::from_utf8(data)
                .ok()
                .and_then(|t| t.parse::<u64>().ok()),
            _ => None,
        };
        if let Reply::Stored { cas: Some(mark) } = answers.replies[0] {
            if last_ticket.is_none_or(|last| last <= ticket) {
                let md = format!("md {} C{mark}", names.wanted);
                self.run_one(Command::line(&md)).await?;
            }
        }
        Ok(())
    }

    /// A waiter that leaves passes its claim on (marks it served), if it holds one.
    pub(super) async fn pass_turn(&self, names: &Names, ticket: u64) -> BackendResult<()> {
        if let (Head::Claimed(t), cas) = self.head(names).await? {
            if t == ticket {
                self.mark_served(names, ticket, cas).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Reply {
        Reply::Value {
            data: text.as_bytes().to_vec(),
            cas: Some(7),
            ttl: None,
        }
    }

    #[test]
    fn the_head_is_read_from_its_value() {
        assert_eq!(head(&value("12")), (Head::Claimed(12), 7));
        assert_eq!(head(&value("s12")), (Head::Served(12), 7));
        assert_eq!(head(&Reply::NotFound).0, Head::Empty);
    }

    #[test]
    fn a_grant_outside_the_line_is_given_back_while_the_line_has_a_head() {
        assert!(!line_waits(&Reply::NotFound));
        assert!(line_waits(&value("3")));
        assert!(line_waits(&value("s3")));
    }
}
