//! How much the next sync to a peer carries, after the peer refused syncs
//! as too large (`413`, over its body limit) or took them.
//!
//! A refusal halves the budget, down to one event. Each sync taken doubles
//! it again, back to the full budget, but never past half of the smallest
//! body the peer refused: growing back to a size it refused would have it
//! refuse every other sync while the events are that large. Only the bytes
//! are held down that way: a peer's limit is on bytes. A refused body made
//! large by one event alone (larger than the full budget) holds nothing
//! down, so a peer whose limit was raised gets full syncs again. A peer
//! that failed may come back with another limit: what it refused is
//! forgotten.

use crate::store::queries::SyncBudget;

#[derive(Debug)]
pub struct SyncSizing {
    full: SyncBudget,
    budget: SyncBudget,
    /// The smallest body, in bytes of encoded events, the peer refused
    /// since it last failed.
    smallest_refused: Option<usize>,
}

impl SyncSizing {
    pub fn new(full: SyncBudget) -> SyncSizing {
        SyncSizing {
            full,
            budget: full,
            smallest_refused: None,
        }
    }

    /// What the next sync may carry.
    pub fn budget(&self) -> SyncBudget {
        self.budget
    }

    /// The peer took a sync of `sent` events: with none, it has caught up
    /// and gets full syncs again; otherwise twice as much as before.
    pub fn taken(&mut self, sent: usize) {
        let wanted = if sent == 0 {
            self.full
        } else {
            SyncBudget {
                events: self.budget.events.saturating_mul(2),
                bytes: self.budget.bytes.saturating_mul(2),
            }
        };
        self.budget = SyncBudget {
            events: wanted.events.min(self.full.events),
            bytes: wanted.bytes.min(self.most_bytes()),
        };
    }

    /// The peer refused a sync whose events took `body` bytes: half as
    /// much next time, down to one event.
    pub fn refused(&mut self, body: usize) {
        self.smallest_refused = Some(self.smallest_refused.map_or(body, |b| b.min(body)));
        self.budget = SyncBudget {
            events: (self.budget.events / 2).max(1),
            bytes: (self.budget.bytes / 2).max(1),
        };
    }

    /// The peer failed: it may come back with another body limit.
    pub fn failed(&mut self) {
        self.smallest_refused = None;
    }

    fn most_bytes(&self) -> usize {
        match self.smallest_refused {
            Some(refused) => self.full.bytes.min(refused / 2).max(1),
            None => self.full.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: SyncBudget = SyncBudget {
        events: 5000,
        bytes: 4 * 1024 * 1024,
    };

    /// The bytes of the events a sync under `budget` carries when every
    /// event takes `size` bytes and `backlog` are waiting: events are
    /// added until the budget's bytes are reached (so the last may pass
    /// them), as `store::queries::missing` does.
    fn body(budget: SyncBudget, size: usize, backlog: usize) -> (usize, usize) {
        let by_bytes = budget.bytes.div_ceil(size).max(1);
        let events = budget.events.min(by_bytes).min(backlog);
        (events, events * size)
    }

    #[test]
    fn a_peer_taking_syncs_again_gets_full_ones_after_a_few() {
        let mut sizing = SyncSizing::new(FULL);
        // Refused down to one event by one event too large for the peer
        // (18 MiB), which it takes once its limit is raised.
        for _ in 0..13 {
            sizing.refused(18 * 1024 * 1024);
        }
        assert_eq!(sizing.budget().events, 1);
        let mut syncs = 0;
        while sizing.budget().events < FULL.events || sizing.budget().bytes < FULL.bytes {
            sizing.taken(sizing.budget().events);
            syncs += 1;
            assert!(syncs <= 13, "{:?} after {syncs} syncs", sizing.budget());
        }
    }

    #[test]
    fn a_peer_with_a_small_limit_refuses_a_few_syncs_then_none() {
        // Events of 600 KB each to a peer that takes bodies up to 1 MB,
        // with a long backlog: the peer takes one event at a time.
        let (size, limit) = (600 * 1000, 1000 * 1000);
        let mut sizing = SyncSizing::new(FULL);
        let mut refusals = Vec::new();
        for sync in 0..100 {
            let (events, bytes) = body(sizing.budget(), size, 10_000);
            if bytes > limit {
                refusals.push(sync);
                sizing.refused(bytes);
            } else {
                sizing.taken(events);
            }
        }
        assert!(refusals.len() <= 4, "refused syncs {refusals:?}");
        assert!(
            refusals.iter().all(|&sync| sync < 10),
            "refused syncs {refusals:?}"
        );
    }

    #[test]
    fn a_peer_with_a_small_limit_refuses_a_few_syncs_of_small_events() {
        // 2 KB events to a peer that takes bodies up to 1 MB: it settles
        // at bodies under its limit and stays there.
        let (size, limit) = (2000, 1000 * 1000);
        let mut sizing = SyncSizing::new(FULL);
        let mut refusals = 0;
        let mut last_events = 0;
        for _ in 0..100 {
            let (events, bytes) = body(sizing.budget(), size, 1_000_000);
            if bytes > limit {
                refusals += 1;
                sizing.refused(bytes);
            } else {
                sizing.taken(events);
                last_events = events;
            }
        }
        assert!(refusals <= 4, "{refusals} refused syncs");
        assert!(
            last_events * size > limit / 4,
            "settled at {last_events} events"
        );
    }

    #[test]
    fn a_caught_up_peer_gets_full_syncs_but_not_what_it_refused() {
        let mut sizing = SyncSizing::new(FULL);
        sizing.refused(2 * 1024 * 1024);
        sizing.taken(0);
        assert_eq!(sizing.budget().events, FULL.events);
        assert_eq!(sizing.budget().bytes, 1024 * 1024);
    }

    #[test]
    fn a_peer_that_failed_is_sent_full_syncs_again_once_caught_up() {
        let mut sizing = SyncSizing::new(FULL);
        sizing.refused(2 * 1024 * 1024);
        sizing.failed();
        sizing.taken(0);
        assert_eq!(sizing.budget().bytes, FULL.bytes);
    }
}
