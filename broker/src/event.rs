//! Events: every state change a broker makes or receives.
//!
//! An event is identified by `(origin, seq)`, the broker that sequenced it and
//! that broker's gapless counter, and ordered across origins by its
//! [`Stamp`]. Events are applied as merges that commute (see `store::apply`),
//! so two brokers holding the same events hold the same state.
//!
//! The event is the brokers' exchange format itself (`client::peer`): the
//! same value is recorded, stored, merged and sent to peers.

pub use client::peer::{PeerChange as Change, PeerEvent as Event};

/// The greatest Lamport stamp or election term a broker accepts from a peer:
/// far beyond any real count, far below where the counters (and SQLite's
/// integers) overflow.
pub const MAX_STAMP: u64 = 1 << 62;

/// A total order on events: Lamport time, ties broken by origin.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub lamport: u64,
    pub origin: String,
}

impl Stamp {
    /// Before every event: where an `earliest` subscription starts.
    pub fn zero() -> Self {
        Stamp {
            lamport: 0,
            origin: String::new(),
        }
    }

    /// The stamp of `event`.
    pub fn of(event: &Event) -> Self {
        Stamp {
            lamport: event.lamport,
            origin: event.origin.clone(),
        }
    }
}

/// Wall-clock time in milliseconds since the Unix epoch, for `published_at_ms`.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
