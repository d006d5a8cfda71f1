//! Liveness of peers: a peer is alive while it was heard from recently.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Membership {
    dead_after: Duration,
    peers: HashMap<String, PeerLiveness>,
}

#[derive(Debug, Clone, Copy)]
struct PeerLiveness {
    last_heard: Instant,
    reported_down: bool,
}

impl Membership {
    pub fn new(dead_after: Duration) -> Self {
        Membership {
            dead_after,
            peers: HashMap::new(),
        }
    }

    pub fn heard(&mut self, peer: &str, now: Instant) {
        self.peers.insert(
            peer.to_string(),
            PeerLiveness {
                last_heard: now,
                reported_down: false,
            },
        );
    }

    pub fn is_alive(&self, peer: &str, now: Instant) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| now.duration_since(p.last_heard) < self.dead_after)
    }

    /// True exactly once when a peer that was alive has now been silent too
    /// long (a peer never heard from is not reported: calls to it just fail).
    pub fn went_down(&mut self, peer: &str, now: Instant) -> bool {
        match self.peers.get_mut(peer) {
            Some(p) if !p.reported_down && now.duration_since(p.last_heard) >= self.dead_after => {
                p.reported_down = true;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_alive_until_silent_too_long_and_reported_down_once() {
        let mut membership = Membership::new(Duration::from_secs(1));
        let start = Instant::now();
        assert!(!membership.is_alive("a:1", start));
        membership.heard("a:1", start);
        assert!(membership.is_alive("a:1", start + Duration::from_millis(900)));
        assert!(!membership.went_down("a:1", start + Duration::from_millis(900)));
        let later = start + Duration::from_secs(2);
        assert!(!membership.is_alive("a:1", later));
        assert!(membership.went_down("a:1", later));
        assert!(!membership.went_down("a:1", later));
        membership.heard("a:1", later);
        assert!(membership.is_alive("a:1", later));
    }
}
