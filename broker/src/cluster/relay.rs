//! Which other brokers' events this broker relays to one peer: a pure
//! state machine, no I/O.
//!
//! Every broker pushes its own events to every peer. Relaying every origin's
//! events as well made each broker of a three-broker cluster receive (and
//! parse) each event twice. So the events of an origin that is alive are
//! left to it, unless the peer has lacked some of them for `relay_after`
//! without catching up (the origin cannot reach the peer, or lost its
//! data): from then on they are relayed until the peer holds all that this
//! broker holds. Events of this broker and of origins that are down or no
//! longer members are always sent (see `replicator`); the peer's own only
//! when it lost them (`lost_own_events`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use client::peer::Have;

/// What one peer lacks of each origin, as this broker saw it.
#[derive(Debug)]
pub struct Relays {
    relay_after: Duration,
    lacking: HashMap<String, Lacking>,
}

#[derive(Debug)]
struct Lacking {
    /// What the peer held of the origin when last seen.
    theirs: u64,
    /// Since when the peer has lacked events without holding more.
    since: Instant,
    /// Relaying started: it goes on until the peer holds all we hold.
    relaying: bool,
}

impl Relays {
    pub fn new(relay_after: Duration) -> Relays {
        Relays {
            relay_after,
            lacking: HashMap::new(),
        }
    }

    /// A sync was answered: the peer holds `theirs`, this broker held `mine`.
    pub fn observe(&mut self, mine: &Have, theirs: &Have, now: Instant) {
        for (origin, &held) in mine {
            let their_seq = theirs.get(origin).copied().unwrap_or(0);
            if their_seq >= held {
                self.lacking.remove(origin);
                continue;
            }
            let lacking = self.lacking.entry(origin.clone()).or_insert(Lacking {
                theirs: their_seq,
                since: now,
                relaying: false,
            });
            if lacking.theirs != their_seq {
                lacking.theirs = their_seq;
                lacking.since = now;
            }
        }
    }

    /// Whether to relay `origin`'s events now: the peer has lacked them for
    /// `relay_after` without holding more. Once started, relaying goes on
    /// (the peer's progress is then ours) until it holds all we hold.
    pub fn relay(&mut self, origin: &str, now: Instant) -> bool {
        let relay_after = self.relay_after;
        self.lacking.get_mut(origin).is_some_and(|lacking| {
            lacking.relaying |= now.duration_since(lacking.since) >= relay_after;
            lacking.relaying
        })
    }
}

/// Whether `peer` lost events of its own: it answered a sync holding fewer
/// of them (`answer`) than this broker held when it sent that sync
/// (`asked_with`). A broker holds every event it made, so only lost data
/// explains that (a wiped data directory, or under `--durability normal`
/// a tail of commits not yet on disk). Holding fewer than this broker
/// holds *now* explains nothing: the peer made more since its answer, and
/// sent them.
pub fn lost_own_events(peer: &str, asked_with: &Have, answer: &Have) -> bool {
    let held = |have: &Have| have.get(peer).copied().unwrap_or(0);
    held(answer) < held(asked_with)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::have;

    const AFTER: Duration = Duration::from_secs(1);

    #[test]
    fn a_peer_that_keeps_catching_up_is_left_to_the_origin() {
        let mut relays = Relays::new(AFTER);
        let start = Instant::now();
        for step in 0..10u64 {
            let now = start + AFTER / 2 * step as u32;
            relays.observe(&have(&[("a", 100 + step)]), &have(&[("a", 10 * step)]), now);
            assert!(!relays.relay("a", now), "step {step}");
        }
    }

    #[test]
    fn a_peer_lacking_events_without_progress_is_relayed_them_until_it_holds_them() {
        let mut relays = Relays::new(AFTER);
        let start = Instant::now();
        let mine = have(&[("a", 50)]);
        relays.observe(&mine, &have(&[("a", 10)]), start);
        assert!(!relays.relay("a", start + AFTER / 2));
        relays.observe(&mine, &have(&[("a", 10)]), start + AFTER / 2);
        assert!(relays.relay("a", start + AFTER));
        assert!(!relays.relay("b", start + AFTER));
        // Relayed events arrive: relaying goes on while the peer still lacks some.
        relays.observe(&mine, &have(&[("a", 30)]), start + AFTER);
        assert!(relays.relay("a", start + AFTER));
        relays.observe(&mine, &have(&[("a", 50)]), start + AFTER * 2);
        assert!(!relays.relay("a", start + AFTER * 2));
    }

    #[test]
    fn an_origin_the_peer_is_not_behind_on_is_never_relayed() {
        let mut relays = Relays::new(AFTER);
        let start = Instant::now();
        relays.observe(&have(&[("a", 5)]), &have(&[("a", 9)]), start);
        relays.observe(&have(&[("a", 5)]), &have(&[("a", 9)]), start + AFTER * 3);
        assert!(!relays.relay("a", start + AFTER * 3));
        assert!(!relays.relay("unknown", start + AFTER * 3));
    }

    #[test]
    fn a_peer_lost_its_own_events_only_if_it_answered_holding_fewer_than_were_here() {
        let asked_with = have(&[("p", 40), ("a", 7)]);
        assert!(!lost_own_events("p", &asked_with, &have(&[("p", 40)])));
        assert!(!lost_own_events("p", &asked_with, &have(&[("p", 90)])));
        assert!(lost_own_events("p", &asked_with, &have(&[("p", 39)])));
        assert!(lost_own_events("p", &asked_with, &Have::new()));
        // Nothing of the peer here: nothing to give back.
        assert!(!lost_own_events("q", &asked_with, &Have::new()));
    }
}
