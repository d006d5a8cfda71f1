//! Events: every state change a broker makes or receives.
//!
//! An event is identified by `(origin, seq)`, the broker that sequenced it and
//! that broker's gapless counter, and ordered across origins by its
//! [`Stamp`]. Events are applied as merges that commute (see `store::apply`),
//! so two brokers holding the same events hold the same state.

use client::wire::StartFrom;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub origin: String,
    pub seq: u64,
    pub lamport: u64,
    pub change: Change,
}

impl Event {
    pub fn stamp(&self) -> Stamp {
        Stamp {
            lamport: self.lamport,
            origin: self.origin.clone(),
        }
    }
}

/// What an event changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    RegisterPublisher {
        publisher: String,
    },
    RegisterSubscriber {
        subscriber: String,
    },
    CreateTopic {
        topic: String,
        publisher: String,
    },
    DeleteTopic {
        topic: String,
        publisher: String,
    },
    Subscribe {
        subscriber: String,
        topic: String,
        from: StartFrom,
    },
    Unsubscribe {
        subscriber: String,
        topic: String,
    },
    /// The subscriber has read `topic` up to `seq` of `acked_origin`.
    Ack {
        subscriber: String,
        topic: String,
        acked_origin: String,
        acked_seq: u64,
    },
    Publish {
        topic: String,
        publisher: String,
        payload: String,
        published_at_ms: i64,
    },
}

/// Wall-clock time in milliseconds since the Unix epoch, for `published_at_ms`.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
