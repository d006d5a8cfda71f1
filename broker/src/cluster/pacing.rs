//! Pacing (pure): whether writes through this broker wait for its peers.
//!
//! Replication is asynchronous, so clients could publish faster than a peer
//! applies, and that peer would fall behind without bound. Instead a write
//! waits while a live peer lacks more than `max_lag` of this broker's
//! events. A peer that stays that far behind longer than `patience` (one
//! catching up on a long history, or one too slow to keep up at all) stops
//! holding writes back until it is within `max_lag` again, so a write never
//! waits longer than `patience` for it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A peer as pacing sees it: how many of this broker's events it lacks.
pub struct PeerLag<'a> {
    pub id: &'a str,
    pub lag: u64,
    pub alive: bool,
}

pub struct Pacing {
    max_lag: u64,
    patience: Duration,
    /// Per peer, since when it has lacked more than `max_lag` events.
    behind_since: HashMap<String, Instant>,
}

impl Pacing {
    pub fn new(max_lag: u64, patience: Duration) -> Pacing {
        Pacing {
            max_lag,
            patience,
            behind_since: HashMap::new(),
        }
    }

    /// Whether a write waits now, given every peer this broker knows the
    /// holdings of.
    pub fn holds_back(&mut self, peers: &[PeerLag<'_>], now: Instant) -> bool {
        self.behind_since
            .retain(|id, _| peers.iter().any(|peer| peer.id == id));
        let mut held = false;
        for peer in peers {
            if peer.lag <= self.max_lag {
                self.behind_since.remove(peer.id);
                continue;
            }
            let since = *self.behind_since.entry(peer.id.to_string()).or_insert(now);
            held |= peer.alive && now.duration_since(since) < self.patience;
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENCE: Duration = Duration::from_secs(1);

    fn peer(id: &str, lag: u64, alive: bool) -> PeerLag<'_> {
        PeerLag { id, lag, alive }
    }

    #[test]
    fn a_live_peer_too_far_behind_holds_writes_back() {
        let mut pacing = Pacing::new(100, PATIENCE);
        let now = Instant::now();
        assert!(!pacing.holds_back(&[peer("b", 100, true)], now));
        assert!(pacing.holds_back(&[peer("b", 101, true)], now));
        assert!(!pacing.holds_back(&[peer("b", 101, false)], now), "dead");
        assert!(!pacing.holds_back(&[], now), "no peers");
    }

    #[test]
    fn a_peer_behind_longer_than_the_patience_stops_holding_back() {
        let mut pacing = Pacing::new(100, PATIENCE);
        let start = Instant::now();
        assert!(pacing.holds_back(&[peer("b", 500, true)], start));
        let later = start + PATIENCE / 2;
        assert!(pacing.holds_back(&[peer("b", 400, true)], later));
        let past = start + PATIENCE;
        assert!(!pacing.holds_back(&[peer("b", 300, true)], past));
        // Back within the limit, it holds writes back again when it falls behind.
        assert!(!pacing.holds_back(&[peer("b", 50, true)], past));
        assert!(pacing.holds_back(&[peer("b", 150, true)], past));
    }

    #[test]
    fn every_lagging_peer_is_timed_on_its_own() {
        let mut pacing = Pacing::new(100, PATIENCE);
        let start = Instant::now();
        assert!(pacing.holds_back(&[peer("b", 500, true), peer("c", 0, true)], start));
        let past = start + PATIENCE;
        assert!(!pacing.holds_back(&[peer("b", 500, true), peer("c", 0, true)], past));
        assert!(pacing.holds_back(&[peer("b", 500, true), peer("c", 200, true)], past));
    }
}
