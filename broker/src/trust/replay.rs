//! The replay guard: a signed peer request is taken once, and only while
//! its timestamp is within `WINDOW` of this broker's clock (a pure state
//! machine; the caller passes the time).

use std::collections::HashMap;

/// How far a request's timestamp may be from this broker's clock: room for
/// clock skew between machines and a request's time in queues.
pub const WINDOW_MS: u64 = 30_000;

/// Longest nonce kept (a signed request's is 32 hex characters).
const MAX_NONCE_LEN: usize = 64;

/// Why a signed request is refused though its signature holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its timestamp is outside the window.
    Stale,
    /// Its nonce was taken before.
    Replayed,
    /// Its nonce is longer than any broker makes.
    BadNonce,
}

/// The nonces taken whose requests are still within the window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    /// Nonce -> the time after which its request is stale anyway.
    seen: HashMap<String, u64>,
    /// `seen` is purged of stale nonces when it grows to this size.
    purge_at: usize,
}

impl ReplayGuard {
    /// Takes a request signed at `time_ms` with `nonce`, at `now_ms`.
    pub fn admit(&mut self, nonce: &str, time_ms: u64, now_ms: u64) -> Result<(), Refusal> {
        if nonce.len() > MAX_NONCE_LEN {
            return Err(Refusal::BadNonce);
        }
        if time_ms.abs_diff(now_ms) > WINDOW_MS {
            return Err(Refusal::Stale);
        }
        if self.seen.contains_key(nonce) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= self.purge_at {
            self.seen.retain(|_, stale_after| *stale_after >= now_ms);
            // Amortised: a purge at most every time the map doubles.
            self.purge_at = (self.seen.len() * 2).max(1024);
        }
        self.seen
            .insert(nonce.to_string(), time_ms.saturating_add(WINDOW_MS));
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_nonce_is_taken_once() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.admit("a", NOW, NOW), Ok(()));
        assert_eq!(guard.admit("a", NOW, NOW + 1), Err(Refusal::Replayed));
        assert_eq!(guard.admit("b", NOW, NOW + 1), Ok(()));
    }

    #[test]
    fn only_within_the_window_either_way() {
        let mut guard = ReplayGuard::default();
        assert_eq!(
            guard.admit("old", NOW - WINDOW_MS - 1, NOW),
            Err(Refusal::Stale)
        );
        assert_eq!(
            guard.admit("ahead", NOW + WINDOW_MS + 1, NOW),
            Err(Refusal::Stale)
        );
        assert_eq!(guard.admit("edge", NOW - WINDOW_MS, NOW), Ok(()));
        assert_eq!(
            guard.admit("x".repeat(65).as_str(), NOW, NOW),
            Err(Refusal::BadNonce)
        );
    }

    #[test]
    fn a_replay_is_refused_for_as_long_as_its_timestamp_is_fresh() {
        let mut guard = ReplayGuard::default();
        // Stamped ahead of this broker's clock (skew): fresh until its own
        // time plus the window, and remembered that long through purges.
        let stamped = NOW + WINDOW_MS;
        guard.admit("skewed", stamped, NOW).unwrap();
        for n in 0..5_000u64 {
            let later = NOW + n * (2 * WINDOW_MS) / 5_000;
            guard.admit(&format!("n{n}"), later, later).unwrap();
        }
        let last_fresh = stamped + WINDOW_MS;
        assert_eq!(
            guard.admit("skewed", stamped, last_fresh),
            Err(Refusal::Replayed)
        );
        assert_eq!(
            guard.admit("skewed", stamped, last_fresh + 1),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn stale_nonces_are_forgotten() {
        let mut guard = ReplayGuard::default();
        for n in 0..10_000u64 {
            let now = NOW + n * 100;
            guard.admit(&format!("n{n}"), now, now).unwrap();
        }
        // 100 ms apart, a window of 30 s: about 300 fresh at any time.
        assert!(guard.len() < 2_000, "{} kept", guard.len());
    }
}
