//! Gathering (pure): how many events a peer lacks, and whether a replicator
//! waits for more before its next sync to it.
//!
//! Only one sync is in flight per peer, and the peer commits each sync in a
//! transaction of its own, with an fsync. Under a steady load of single
//! publishes a sync carries what arrived during the round trip of the one
//! before: a few dozen events, each sync a commit on the peer. A sync that
//! carried many events shows that events come faster than the peer takes
//! them one sync at a time; the next then waits a little for more (as a
//! Kafka producer's `linger.ms`), unless the peer already lacks enough for
//! a large sync. A sync of few events (a light load) is followed at once,
//! so a message crosses brokers as fast as before when little happens.

use std::collections::HashSet;
use std::time::Duration;

use client::peer::Have;

/// A sync of at least this many events makes the next one wait. At 1,000
/// messages a second a sync carries one or two.
const GATHER_AFTER: usize = 16;
/// Longest wait for more events: with three brokers on two cores, single
/// publishes through one broker replicated 13–18% faster with 1–3 ms.
const LINGER: Duration = Duration::from_millis(2);
/// The peer lacking this many events ends the wait (a sync that large costs
/// its commit little per event), also when it catches up on a history.
const ENOUGH: u64 = 1000;

/// After a sync of `sent` events, with the peer lacking `lacking` of the
/// events it is sent: how long to wait for more before the next sync.
pub fn linger(sent: usize, lacking: u64) -> Option<Duration> {
    (sent >= GATHER_AFTER && !enough(lacking)).then_some(LINGER)
}

/// Whether the peer lacks enough events for the next sync to go at once.
pub fn enough(lacking: u64) -> bool {
    lacking >= ENOUGH
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

    fn have(entries: &[(&str, u64)]) -> Have {
        entries.iter().map(|(o, s)| (o.to_string(), *s)).collect()
    }

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
        assert_eq!(linger(0, 0), None);
        assert_eq!(linger(1, 5), None);
        assert_eq!(linger(GATHER_AFTER - 1, 500), None);
    }

    #[test]
    fn a_sync_of_many_events_makes_the_next_wait_for_more() {
        assert_eq!(linger(GATHER_AFTER, 0), Some(LINGER));
        assert_eq!(linger(5000, ENOUGH - 1), Some(LINGER));
    }

    #[test]
    fn a_peer_lacking_enough_events_gets_them_at_once() {
        assert_eq!(linger(GATHER_AFTER, ENOUGH), None);
        assert_eq!(linger(5000, 100_000), None);
        assert!(enough(ENOUGH));
        assert!(!enough(ENOUGH - 1));
    }
}
