//! The reports of `bench publish` and `bench latency`.

use serde::{Deserialize, Serialize};

use crate::delivery::Latency;

/// What `bench publish` measured: throughput of concurrent publishers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishReport {
    /// The fresh topic the messages went to.
    pub topic: String,
    /// Concurrent publishing tasks, each with its own keep-alive client.
    pub connections: u64,
    /// Messages per request (1: single publishes).
    pub batch: u64,
    /// Bytes of each payload.
    pub payload_bytes: u64,
    /// Messages published, every one acknowledged.
    pub messages: u64,
    /// Requests sent.
    pub requests: u64,
    /// Wall time from the first request to the last answer.
    pub seconds: f64,
    pub messages_per_sec: f64,
    pub requests_per_sec: f64,
    /// Time from sending each request to its answer, in ms; `None`
    /// without requests.
    pub latency_ms: Option<Latency<f64>>,
}

/// What `bench latency` measured: publish-to-delivery latency at a fixed
/// offered rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// The fresh topic the messages went to.
    pub topic: String,
    /// Offered rate, messages per second.
    pub rate: u32,
    /// How long messages were offered.
    pub seconds: u64,
    /// Bytes of each payload.
    pub payload_bytes: u64,
    /// Messages acknowledged by the publishing broker.
    pub sent: u64,
    /// Messages of the topic the subscriber received.
    pub received: u64,
    /// From each message's send timestamp to its receipt, in ms; `None`
    /// when nothing was received.
    pub latency_ms: Option<Latency<f64>>,
}
