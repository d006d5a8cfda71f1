//! Gathering (pure): how many events a peer lacks, and whether a replicator
//! waits for more before its next sync to it.
//!
//! Only one sync is in flight per peer, and the peer commits each sync in a
//! transaction of its own (with an fsync under `--durability fsync`, the
//! default). Under a steady load of single publishes a sync carries what
//! arrived during the round trip of the one before: a few dozen events,
//! each sync a commit on the peer. A sync that carried many events, but
//! not a full one, shows that events come faster than the peer takes them
//! one sync at a time; the next then waits a little for more (as a Kafka
//! producer's `linger.ms`), unless the peer already lacks enough for a
//! large sync. A sync of few events (a light load) is followed at once, so
//! a message crosses brokers as fast as before when little happens.
//!
//! Acknowledgements of this broker's own gather longer: when a replicator
//! has nothing to send and this broker then records acknowledgements
//! only, the next sync waits up to `ACK_LINGER` for more. The wait ends
//! at once when the peer lacks any other own event (whenever it was
//! recorded), or enough events, or the mode is no longer gossip. A
//! subscriber acknowledging each message at 1,000 messages a second
//! otherwise made its broker send about 600 syncs a second of an
//! acknowledgement or two, each a commit with an fsync on the publishing
//! broker, whose publishes waited behind them. (Acknowledgements recorded
//! while syncs of other events follow one another go with them at once.)
//!
//! Only in gossip mode: in leader mode a write waits for a majority to
//! hold it, so every wait for more events is a wait of the writes too
//! (50 publishing connections took 19% fewer messages a second with it).

use std::collections::HashSet;
use std::time::Duration;

use client::peer::Have;

use crate::config::Mode;

/// A sync of at least this many events makes the next one wait. At 1,000
/// messages a second a sync carries one or two.
const GATHER_AFTER: usize = 16;
/// Longest wait for more events: with three brokers on two cores, single
/// publishes through one broker took 11–20% more messages a second with
/// 2 ms (4 ms: 3–6% more again, but at 5,000 messages a second the p50
/// across brokers grew by 1.3 ms).
const LINGER: Duration = Duration::from_millis(2);
/// Longest wait for more acknowledgements (see the module's docs): short
/// beside anything a client notices of another broker's acknowledgement
/// arriving later.
const ACK_LINGER: Duration = Duration::from_millis(20);
/// The peer lacking this many events ends the wait (a sync that large costs
/// its commit little per event), also when it catches up on a history.
const ENOUGH: u64 = 1000;

#[derive(Debug)]
pub struct Gathering {
    enough: u64,
}

impl Gathering {
    /// `max_lag`: how many events a peer may lack before writes wait for it
    /// (`pacing`). A wait for more than that would only ever end at its
    /// deadline, with the writes held back.
    pub fn new(max_lag: u64) -> Gathering {
        Gathering {
            enough: ENOUGH.min(max_lag),
        }
    }

    /// After a sync of `sent` events (`filled`: as many as its budget
    /// allowed, so more are waiting), in replication `mode`: how long to
    /// wait for more before the next sync, at most.
    pub fn linger(&self, mode: Mode, sent: usize, filled: bool) -> Option<Duration> {
        (mode == Mode::Gossip && sent >= GATHER_AFTER && !filled).then_some(LINGER)
    }

    /// After this broker recorded nothing but acknowledgements, in `mode`:
    /// how long to wait for more before the next sync, at most.
    pub fn ack_linger(&self, mode: Mode) -> Option<Duration> {
        (mode == Mode::Gossip).then_some(ACK_LINGER)
    }

    /// Whether a wait for more acknowledgements ends now, in `mode`: when
    /// the peer, holding this broker's own events up to `theirs_own`
    /// (`None`: unknown), lacks one that is not an acknowledgement (the
    /// latest is `own_besides_acks`).
    pub fn ends_ack_wait(
        &self,
        mode: Mode,
        theirs_own: Option<u64>,
        own_besides_acks: u64,
    ) -> bool {
        self.ack_linger(mode).is_none() || theirs_own.unwrap_or(0) < own_besides_acks
    }

    /// Whether a peer lacking `lacking` events gets the next sync at once.
    pub fn lacks_enough(&self, lacking: u64) -> bool {
        lacking >= self.enough
    }
}

/// How many events `mine` holds that `theirs` lacks, of the origins not in
/// `skip`: what syncs would carry (all of them, when `theirs` is unknown).
pub fn lacking(theirs: Option<&Have>, mine: &Have, skip: &HashSet<String>) -> u64 {
    mine.iter()
        .filter(|(origin, _)| !skip.contains(*origin))
        .map(|(origin, seq)| {
            let held = theirs.and_then(|have| have.get(origin)).copied();
            seq.saturating_sub(held.unwrap_or(0))
        })
        .fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::have;

    #[test]
    fn a_peer_lacks_what_it_does_not_hold_of_the_origins_it_is_sent() {
        let mine = have(&[("a:1", 10), ("b:2", 7), ("c:3", 4)]);
        let theirs = have(&[("a:1", 4), ("b:2", 9)]);
        let none = HashSet::new();
        assert_eq!(lacking(Some(&theirs), &mine, &none), 6 + 4);
        let skip: HashSet<String> = ["c:3".to_string()].into();
        assert_eq!(lacking(Some(&theirs), &mine, &skip), 6);
        assert_eq!(lacking(None, &mine, &none), 21);
        let huge = have(&[("a:1", u64::MAX), ("b:2", u64::MAX)]);
        assert_eq!(lacking(None, &huge, &none), u64::MAX);
    }

    #[test]
    fn a_sync_of_few_events_is_followed_at_once() {
        let gathering = Gathering::new(10_000);
        assert_eq!(gathering.linger(Mode::Gossip, 0, false), None);
        assert_eq!(gathering.linger(Mode::Gossip, 1, false), None);
        assert_eq!(
            gathering.linger(Mode::Gossip, GATHER_AFTER - 1, false),
            None
        );
    }

    #[test]
    fn a_sync_of_many_events_makes_the_next_wait_unless_it_was_full() {
        let gathering = Gathering::new(10_000);
        assert_eq!(
            gathering.linger(Mode::Gossip, GATHER_AFTER, false),
            Some(LINGER)
        );
        assert_eq!(gathering.linger(Mode::Gossip, 4999, false), Some(LINGER));
        // Full by events, or by bytes (a few large events, or a budget
        // cut down after a peer refused a sync as too large).
        assert_eq!(gathering.linger(Mode::Gossip, 5000, true), None);
        assert_eq!(gathering.linger(Mode::Gossip, GATHER_AFTER, true), None);
    }

    #[test]
    fn acknowledgements_alone_wait_for_more_in_gossip_mode() {
        let gathering = Gathering::new(10_000);
        assert_eq!(gathering.ack_linger(Mode::Gossip), Some(ACK_LINGER));
    }

    #[test]
    fn a_peer_lacking_an_own_event_besides_acknowledgements_ends_the_wait() {
        let gathering = Gathering::new(10_000);
        // It holds everything but acknowledgements after seq 7.
        assert!(!gathering.ends_ack_wait(Mode::Gossip, Some(7), 7));
        assert!(!gathering.ends_ack_wait(Mode::Gossip, Some(9), 7));
        // A publish (seq 8) it lacks, recorded with or before them.
        assert!(gathering.ends_ack_wait(Mode::Gossip, Some(7), 8));
        // What it holds is unknown.
        assert!(gathering.ends_ack_wait(Mode::Gossip, None, 1));
        assert!(!gathering.ends_ack_wait(Mode::Gossip, None, 0));
        // The mode became leader meanwhile.
        assert!(gathering.ends_ack_wait(Mode::Leader, Some(9), 7));
    }

    #[test]
    fn in_leader_mode_no_sync_waits() {
        let gathering = Gathering::new(10_000);
        assert_eq!(gathering.linger(Mode::Leader, GATHER_AFTER, false), None);
        assert_eq!(gathering.linger(Mode::Leader, 4999, false), None);
        assert_eq!(gathering.ack_linger(Mode::Leader), None);
    }

    #[test]
    fn a_peer_lacking_enough_events_gets_them_at_once() {
        let gathering = Gathering::new(10_000);
        assert!(!gathering.lacks_enough(ENOUGH - 1));
        assert!(gathering.lacks_enough(ENOUGH));
        assert!(gathering.lacks_enough(u64::MAX));
    }

    #[test]
    fn enough_is_never_more_than_pacing_lets_a_peer_lack() {
        let gathering = Gathering::new(100);
        assert!(!gathering.lacks_enough(99));
        assert!(gathering.lacks_enough(100));
        assert!(Gathering::new(0).lacks_enough(0));
    }
}
