//! The Lamport clock: a pure state machine, no I/O; and how far a peer's
//! stamp or term may run ahead of a broker's own.

/// How far above a broker's own clock (or election term) a peer's stamp (or
/// term) may be: further is refused (API.md §5.1), so that no message can
/// push the counters near the largest value they hold.
pub const REACH: u64 = 1 << 32;

/// Whether a peer's `stamp` is within [`REACH`] of this broker's `own`.
pub fn within_reach(stamp: u64, own: u64) -> bool {
    stamp <= own.saturating_add(REACH)
}

/// A Lamport clock. Every local event ticks it; every received stamp pulls it
/// forward, so an event's stamp is greater than the stamp of every event its
/// broker had seen when it happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LamportClock {
    time: u64,
}

impl LamportClock {
    /// A clock that has seen stamps up to `time` (e.g. restored from disk).
    pub fn starting_at(time: u64) -> Self {
        LamportClock { time }
    }

    /// The current time: the greatest stamp seen or given out.
    pub fn now(&self) -> u64 {
        self.time
    }

    /// Stamps a local event.
    pub fn tick(&mut self) -> u64 {
        self.time = self.time.saturating_add(1);
        self.time
    }

    /// Takes in the stamp of a received event: the clock moves to
    /// `max(now, stamp) + 1`, so every later local event is stamped after it.
    pub fn observe(&mut self, stamp: u64) {
        self.time = self.time.max(stamp).saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_strictly_increase() {
        let mut clock = LamportClock::default();
        assert_eq!(clock.tick(), 1);
        assert_eq!(clock.tick(), 2);
        assert_eq!(clock.now(), 2);
    }

    #[test]
    fn observing_a_later_stamp_moves_past_it() {
        let mut clock = LamportClock::starting_at(3);
        clock.observe(10);
        assert_eq!(clock.now(), 11);
        assert_eq!(clock.tick(), 12);
    }

    #[test]
    fn a_stamp_is_within_reach_up_to_two_to_the_32_above_our_own() {
        assert!(within_reach(0, 0));
        assert!(within_reach(REACH, 0));
        assert!(!within_reach(REACH + 1, 0));
        assert!(within_reach(5, 1_000), "a stamp below ours is always fine");
        assert!(within_reach(1_000 + REACH, 1_000));
        assert!(!within_reach(u64::MAX, 1_000));
        assert!(within_reach(u64::MAX, u64::MAX - 1), "no overflow");
    }

    #[test]
    fn observing_an_earlier_stamp_still_advances() {
        let mut clock = LamportClock::starting_at(7);
        clock.observe(2);
        assert_eq!(clock.now(), 8);
        assert_eq!(clock.tick(), 9);
    }
}
