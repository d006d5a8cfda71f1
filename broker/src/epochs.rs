//! Leader-mode delivery order, a pure function of the lead events.
//!
//! Ordering by Lamport stamp let a cut-off leader's writes, which never got
//! a majority, come back after the heal with old stamps and land before
//! messages subscribers had already consumed. The order is instead built
//! from leads: every leader, when it starts ordering, records a lead event
//! naming the lead it follows on (`prev`) and `base`, what it held then.
//! Following `prev` from the current leader's lead gives a chain of leads;
//! each lead opens an epoch, and an epoch holds
//!
//! 1. what the lead's `base` holds that no earlier epoch held (writes of
//!    earlier leaders that reach the order only now, and the history from
//!    before leader mode), then
//! 2. the leader's own events after its lead, up to where the next lead's
//!    `base` ends them (for the last lead: up to what a majority holds).
//!
//! Messages are delivered by epoch, and within an epoch by `(lamport,
//! origin)`, which puts part 1 first (the leader's clock passed every stamp
//! it held). Everything a subscriber was given lies in epochs that are
//! already closed or in the last one, and anything that becomes deliverable
//! later lies at the end of the last epoch or in a new one: the order never
//! changes. Every broker computes it from the same events and the same
//! leader, so all deliver the same order.

use std::collections::HashMap;

use client::peer::{EventId, Have};

/// A lead event as the order needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead {
    pub id: EventId,
    pub term: u64,
    pub prev: Option<EventId>,
    pub base: Have,
    /// Messages its base brings in that repeat a `msg_id` ordered before.
    pub repeats: Vec<EventId>,
}

/// Where each epoch of the chain ends: `bounds[i]` holds, per origin, the
/// seq up to which epochs `0..=i` reach (two epochs per lead: its base, its
/// own events); the last bound is what may be delivered at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Epochs {
    bounds: Vec<Have>,
    /// The repeats of every lead of the chain: never delivered.
    repeats: Vec<EventId>,
}

impl Epochs {
    /// The epochs of the chain that ends at `tip`, its leader's own events
    /// delivered up to `committed`; `None` while a lead of the chain is
    /// missing (it has not arrived yet).
    pub fn build(leads: &HashMap<EventId, Lead>, tip: &EventId, committed: u64) -> Option<Epochs> {
        let mut chain = Vec::new();
        let mut next = Some(tip);
        while let Some(id) = next {
            let lead = leads.get(id)?;
            // A lead names an earlier event; a loop means a malformed one.
            if chain.len() > leads.len() {
                return None;
            }
            chain.push(lead);
            next = lead.prev.as_ref();
        }
        chain.reverse();
        // Per lead two bounds: its base (what reaches the order with it),
        // then its own events up to the next lead's base (or `committed`).
        let mut bounds: Vec<Have> = Vec::with_capacity(2 * chain.len());
        let repeats = chain.iter().flat_map(|lead| lead.repeats.clone()).collect();
        for (i, lead) in chain.iter().enumerate() {
            let opened = raised(bounds.last(), &lead.base);
            let own_end = match chain.get(i + 1) {
                Some(next) => next.base.get(&lead.id.origin).copied().unwrap_or(0),
                None => committed,
            };
            let mut closed = opened.clone();
            let own = closed.entry(lead.id.origin.clone()).or_default();
            *own = (*own).max(own_end);
            bounds.push(opened);
            bounds.push(closed);
        }
        Some(Epochs { bounds, repeats })
    }

    /// Per origin, the seq up to which messages may be delivered.
    pub fn limit(&self) -> Have {
        self.bounds.last().cloned().unwrap_or_default()
    }

    /// The seq up to which `origin`'s messages may be delivered.
    pub fn limit_of(&self, origin: &str) -> u64 {
        self.bounds
            .last()
            .and_then(|limit| limit.get(origin))
            .copied()
            .unwrap_or(0)
    }

    /// The epoch of event `seq` of `origin`: the first whose bound reaches
    /// it (past the limit: after every epoch).
    pub fn epoch_of(&self, origin: &str, seq: u64) -> usize {
        self.bounds
            .partition_point(|bound| bound.get(origin).copied().unwrap_or(0) < seq)
    }

    /// Where message `seq` of `origin`, stamped `lamport`, stands in the
    /// order: by epoch, then by stamp.
    pub fn place<'a>(&self, origin: &'a str, seq: u64, lamport: u64) -> (usize, u64, &'a str) {
        (self.epoch_of(origin, seq), lamport, origin)
    }

    /// The ranges `(origin, after, upto]` that a new lead with `base`
    /// brings into the order after these epochs (built up to the lead it
    /// follows on, whose own events end at `base`): writes of an earlier
    /// leader that reached a majority only after it lost the lead, or of a
    /// broker that took writes before it learnt of leader mode. They land
    /// in the epoch after these (`epoch_of` says so for anything past the
    /// limit). Only these can repeat a message ordered before them: a
    /// leader looks each write it takes up among everything it holds, and
    /// it holds every earlier epoch.
    pub fn brought_in_by(&self, base: &Have) -> Vec<(String, u64, u64)> {
        base.iter()
            .filter_map(|(origin, &upto)| {
                let after = self.limit_of(origin);
                (upto > after).then(|| (origin.clone(), after, upto))
            })
            .collect()
    }

    /// The messages the chain's leads drop as repeats.
    pub fn repeats(&self) -> &[EventId] {
        &self.repeats
    }
}

/// `base` raised to at least `floor` for every origin, so that the bounds
/// never go back whatever a lead holds.
fn raised(floor: Option<&Have>, base: &Have) -> Have {
    let mut bound = floor.cloned().unwrap_or_default();
    for (origin, &seq) in base {
        let held = bound.entry(origin.clone()).or_default();
        *held = (*held).max(seq);
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::have;

    fn id(origin: &str, seq: u64) -> EventId {
        EventId {
            origin: origin.to_string(),
            seq,
        }
    }

    fn lead(origin: &str, seq: u64, term: u64, prev: Option<EventId>, base: Have) -> Lead {
        Lead {
            id: id(origin, seq),
            term,
            prev,
            base,
            repeats: Vec::new(),
        }
    }

    fn index(leads: &[Lead]) -> HashMap<EventId, Lead> {
        leads.iter().map(|l| (l.id.clone(), l.clone())).collect()
    }

    #[test]
    fn one_leader_delivers_its_events_up_to_the_commit() {
        let leads = index(&[lead("C", 4, 2, None, have(&[("A", 9), ("C", 3)]))]);
        let epochs = Epochs::build(&leads, &id("C", 4), 10).unwrap();
        assert_eq!(epochs.limit(), have(&[("A", 9), ("C", 10)]));
        assert_eq!(epochs.epoch_of("A", 9), 0, "history before the lead");
        assert_eq!(epochs.epoch_of("C", 3), 0);
        assert_eq!(epochs.epoch_of("C", 5), 1, "the leader's own events");
        assert_eq!(epochs.epoch_of("C", 11), 2, "past the limit");
    }

    /// The bug this order fixes: C leads, is cut off and records writes no
    /// majority holds (C:6..8); B leads meanwhile and its messages are
    /// delivered; after the heal C leads again holding everything.
    #[test]
    fn a_cut_off_leaders_writes_come_after_what_was_delivered_meanwhile() {
        let c1 = lead("C", 1, 2, None, have(&[]));
        // B held C's events up to 5 (committed); C's 6..8 never reached it.
        let b1 = lead("B", 1, 4, Some(id("C", 1)), have(&[("C", 5)]));
        let c9 = lead("C", 9, 5, Some(id("B", 1)), have(&[("B", 7), ("C", 8)]));
        let leads = index(&[c1, b1, c9]);
        let while_b_led = Epochs::build(&leads, &id("B", 1), 7).unwrap();
        let after = Epochs::build(&leads, &id("C", 9), 12).unwrap();
        // B's messages and C's committed ones were delivered while B led.
        assert!(while_b_led.epoch_of("C", 5) < while_b_led.epoch_of("B", 2));
        assert_eq!(while_b_led.limit(), have(&[("B", 7), ("C", 5)]));
        // The orphans come after everything B's epoch delivered, in both.
        for epochs in [&while_b_led, &after] {
            assert!(epochs.epoch_of("C", 6) > epochs.epoch_of("B", 7));
        }
        assert_eq!(after.epoch_of("C", 5), while_b_led.epoch_of("C", 5));
        assert_eq!(after.epoch_of("B", 7), while_b_led.epoch_of("B", 7));
        assert_eq!(after.epoch_of("C", 6), after.epoch_of("C", 8));
        assert!(after.epoch_of("C", 10) > after.epoch_of("C", 8));
    }

    #[test]
    fn a_new_lead_brings_in_what_its_base_holds_past_the_order_it_follows() {
        let c1 = lead("C", 1, 2, None, have(&[("A", 4)]));
        let b1 = lead("B", 1, 4, Some(id("C", 1)), have(&[("C", 5)]));
        // C, leading again, follows on B's lead; B's own events end at 7.
        let before = Epochs::build(&index(&[c1.clone(), b1.clone()]), &id("B", 1), 7).unwrap();
        let base = have(&[("A", 4), ("B", 7), ("C", 8)]);
        // Gossip history (A up to 4) and B's own writes are ordered already;
        // C's writes 6..8, which no majority held while B led, come now,
        // after everything: in the epoch past the order's last.
        assert_eq!(before.brought_in_by(&base), [("C".to_string(), 5, 8)]);
        assert!(before.epoch_of("C", 6) > before.epoch_of("B", 7));
        let mut c9 = lead("C", 9, 5, Some(id("B", 1)), base);
        c9.repeats = vec![id("C", 7)];
        let after = Epochs::build(&index(&[c1, b1, c9]), &id("C", 9), 12).unwrap();
        assert_eq!(after.repeats(), [id("C", 7)]);
        assert_eq!(before.repeats(), []);
    }

    #[test]
    fn a_lead_off_the_chain_changes_nothing() {
        let c1 = lead("C", 1, 2, None, have(&[]));
        let b1 = lead("B", 1, 4, Some(id("C", 1)), have(&[("C", 5)]));
        // A lead of a leader that never got a majority, on another branch.
        let a1 = lead("A", 1, 3, Some(id("C", 1)), have(&[("A", 0), ("C", 2)]));
        let without = Epochs::build(&index(&[c1.clone(), b1.clone()]), &id("B", 1), 6).unwrap();
        let with = Epochs::build(&index(&[c1, b1, a1]), &id("B", 1), 6).unwrap();
        assert_eq!(with, without);
    }

    #[test]
    fn no_order_while_a_lead_of_the_chain_is_missing() {
        let b1 = lead("B", 1, 4, Some(id("C", 1)), have(&[("C", 5)]));
        assert_eq!(Epochs::build(&index(&[b1]), &id("B", 1), 3), None);
        let looped = lead("B", 1, 4, Some(id("B", 1)), have(&[]));
        assert_eq!(Epochs::build(&index(&[looped]), &id("B", 1), 3), None);
    }

    #[test]
    fn bounds_never_go_back_whatever_a_lead_holds() {
        let c1 = lead("C", 1, 2, None, have(&[("A", 9)]));
        let b1 = lead("B", 1, 4, Some(id("C", 1)), have(&[("A", 3), ("C", 5)]));
        let epochs = Epochs::build(&index(&[c1, b1]), &id("B", 1), 2).unwrap();
        assert_eq!(epochs.epoch_of("A", 9), 0);
        assert_eq!(epochs.limit(), have(&[("A", 9), ("B", 2), ("C", 5)]));
    }
}
