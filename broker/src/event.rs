//! Events: every state change a broker makes or receives.
//!
//! An event is identified by `(origin, seq)`, the broker that sequenced it and
//! that broker's gapless counter, and ordered across origins by its
//! [`Stamp`]. Events are applied as merges that commute (see `store::apply`),
//! so two brokers holding the same events hold the same state.

use client::peer::{PeerChange, PeerEvent};
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
    /// A message its sender no longer holds (retention deleted it): only
    /// its seq counts as received.
    Pruned,
}

impl From<Event> for PeerEvent {
    fn from(event: Event) -> Self {
        let change = match event.change {
            Change::RegisterPublisher { publisher } => PeerChange::RegisterPublisher { publisher },
            Change::RegisterSubscriber { subscriber } => {
                PeerChange::RegisterSubscriber { subscriber }
            }
            Change::CreateTopic { topic, publisher } => {
                PeerChange::CreateTopic { topic, publisher }
            }
            Change::DeleteTopic { topic, publisher } => {
                PeerChange::DeleteTopic { topic, publisher }
            }
            Change::Subscribe {
                subscriber,
                topic,
                from,
            } => PeerChange::Subscribe {
                subscriber,
                topic,
                from,
            },
            Change::Unsubscribe { subscriber, topic } => {
                PeerChange::Unsubscribe { subscriber, topic }
            }
            Change::Ack {
                subscriber,
                topic,
                acked_origin,
                acked_seq,
            } => PeerChange::Ack {
                subscriber,
                topic,
                acked_origin,
                acked_seq,
            },
            Change::Publish {
                topic,
                publisher,
                payload,
                published_at_ms,
            } => PeerChange::Publish {
                topic,
                publisher,
                payload,
                published_at_ms,
            },
            Change::Pruned => PeerChange::Pruned,
        };
        PeerEvent {
            origin: event.origin,
            seq: event.seq,
            lamport: event.lamport,
            change,
        }
    }
}

impl From<PeerEvent> for Event {
    fn from(event: PeerEvent) -> Self {
        let change = match event.change {
            PeerChange::RegisterPublisher { publisher } => Change::RegisterPublisher { publisher },
            PeerChange::RegisterSubscriber { subscriber } => {
                Change::RegisterSubscriber { subscriber }
            }
            PeerChange::CreateTopic { topic, publisher } => {
                Change::CreateTopic { topic, publisher }
            }
            PeerChange::DeleteTopic { topic, publisher } => {
                Change::DeleteTopic { topic, publisher }
            }
            PeerChange::Subscribe {
                subscriber,
                topic,
                from,
            } => Change::Subscribe {
                subscriber,
                topic,
                from,
            },
            PeerChange::Unsubscribe { subscriber, topic } => {
                Change::Unsubscribe { subscriber, topic }
            }
            PeerChange::Ack {
                subscriber,
                topic,
                acked_origin,
                acked_seq,
            } => Change::Ack {
                subscriber,
                topic,
                acked_origin,
                acked_seq,
            },
            PeerChange::Publish {
                topic,
                publisher,
                payload,
                published_at_ms,
            } => Change::Publish {
                topic,
                publisher,
                payload,
                published_at_ms,
            },
            PeerChange::Pruned => Change::Pruned,
        };
        Event {
            origin: event.origin,
            seq: event.seq,
            lamport: event.lamport,
            change,
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
