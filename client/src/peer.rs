//! The brokers' own protocol (not part of the public API): event sync with
//! liveness and term heartbeats (`POST /peer/sync`) and bully election
//! messages (`POST /peer/election`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::wire::StartFrom;

/// Per origin, the highest seq below which a broker holds every event.
pub type Have = BTreeMap<String, u64>;

/// `POST /peer/sync`: events the receiver lacks, plus the sender's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub from: String,
    pub term: u64,
    pub leader: Option<String>,
    pub events: Vec<PeerEvent>,
    /// Leader mode, from the leader: per origin, the seq up to which a
    /// majority holds every event (what followers may deliver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<Have>,
}

/// The receiver's state after applying a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub from: String,
    pub term: u64,
    pub leader: Option<String>,
    pub have: Have,
}

/// One event as brokers exchange it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEvent {
    pub origin: String,
    pub seq: u64,
    pub lamport: u64,
    #[serde(flatten)]
    pub change: PeerChange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerChange {
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
    /// A broker joins the cluster.
    AddMember {
        host: String,
        port: u16,
    },
    /// A broker leaves the cluster.
    RemoveMember {
        member: String,
    },
    /// The cluster's replication mode from now on: `gossip` or `leader`.
    SetMode {
        mode: String,
    },
    /// A message the sender no longer holds (retention deleted it): the
    /// receiver only counts the seq as received.
    Pruned,
}

/// A bully election message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElectionKind {
    Election,
    Answer,
    Coordinator,
}

/// `POST /peer/election`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionMessage {
    pub from: String,
    pub kind: ElectionKind,
    pub term: u64,
}
