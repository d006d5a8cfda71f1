//! The reports of `bench publish`, `bench latency`, `bench fanout`, `bench
//! pingpong`, `bench sweep`, `bench queue` and `bench failover`.

use serde::{Deserialize, Serialize};

use crate::delivery::{CheckReport, Latency};

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
    /// How long each `--replica` took to hold every message; empty without
    /// `--replica` (and absent from the JSON then, as in older reports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaLag>,
}

/// How far one replica of `bench publish` lagged behind the broker the
/// messages were published to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaLag {
    /// The replica, `host:port`.
    pub replica: String,
    /// From the last acknowledgement to the replica holding every message,
    /// in ms.
    pub caught_up_ms: f64,
}

/// What `bench latency` measured: publish-to-delivery latency at a fixed
/// offered rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// The fresh topic (with `--redis`, stream) the messages went to.
    pub topic: String,
    /// How the subscriber received: `poll` (long polls), `sse` (a stream
    /// of Server-Sent Events) or `redis-xread` (Redis: a consumer blocked
    /// in `XREAD`).
    #[serde(default = "long_poll")]
    pub transport: String,
    /// Offered rate, messages per second.
    pub rate: u32,
    /// How long messages were offered.
    pub seconds: u64,
    /// Bytes of each payload.
    pub payload_bytes: u64,
    /// Messages acknowledged by the publishing broker (or Redis).
    pub sent: u64,
    /// Messages of the topic the subscriber received.
    pub received: u64,
    /// From each message's send timestamp to its receipt, in ms; `None`
    /// when nothing was received.
    pub latency_ms: Option<Latency<f64>>,
}

fn long_poll() -> String {
    "poll".to_string()
}

/// What `bench fanout` measured: one message reaching many waiting long
/// polls, round after round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutReport {
    /// The fresh topic every subscriber long-polls.
    pub topic: String,
    /// Subscribers, each long-polling on a connection of its own.
    pub subscribers: u64,
    /// Bytes of each payload.
    pub payload_bytes: u64,
    /// The broker's resident memory (VmRSS) in MB once the subscribers were
    /// set up, before any poll; `None` without `--broker-pid`.
    pub rss_idle_mb: Option<f64>,
    /// The broker's resident memory in MB with every poll waiting (the most
    /// over the rounds); `None` without `--broker-pid`.
    pub rss_mb: Option<f64>,
    /// The broker's CPU while every poll waited, in % of one core (the most
    /// over the rounds); `None` without `--broker-pid` and `--idle-seconds`.
    #[serde(default)]
    pub idle_cpu_percent: Option<f64>,
    /// Each round's figures, in order.
    pub rounds: Vec<FanoutRound>,
    /// The median over the rounds of the time to reach all (a round's
    /// slowest poll), in ms; `None` when no poll got the message.
    pub reach_all_ms: Option<f64>,
    /// Polls, over all rounds, that failed or answered anything but the
    /// round's message.
    pub errors: u64,
    /// What the first of those errors was.
    pub first_error: Option<String>,
}

/// One round of `bench fanout`: every subscriber's poll waiting, then one
/// publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutRound {
    /// Polls that answered with the round's message.
    pub received: u64,
    /// Polls that failed or answered anything else.
    pub errors: u64,
    /// From just before the publish to each poll's answer, in ms; the max
    /// is the time to reach all. `None` when no poll got the message.
    pub latency_ms: Option<Latency<f64>>,
}

/// What `bench pingpong` measured: round trips of one message at a time,
/// published on one topic and answered on another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingPongReport {
    /// The fresh topic the pings go to.
    pub ping_topic: String,
    /// The fresh topic the pongs come back on.
    pub pong_topic: String,
    /// Bytes of each payload.
    pub payload_bytes: u64,
    /// Round trips completed.
    pub round_trips: u64,
    /// Wall time from the first ping to the last pong.
    pub seconds: f64,
    pub round_trips_per_sec: f64,
    /// From publishing each ping to receiving its pong, in ms; `None`
    /// without round trips.
    pub latency_ms: Option<Latency<f64>>,
}

/// What `bench sweep` measured: closed-loop publish throughput and latency
/// at each number of concurrent clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// The fresh topic every step publishes to.
    pub topic: String,
    /// Messages per request (1: single publishes).
    pub batch: u64,
    /// Bytes of each payload.
    pub payload_bytes: u64,
    /// How long each step publishes.
    pub seconds_per_step: u64,
    /// One step per number of clients, in the order asked.
    pub steps: Vec<SweepStep>,
}

/// One step of `bench sweep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepStep {
    /// Concurrent publishing clients, each with a connection of its own.
    pub clients: u64,
    /// Messages published, every one acknowledged.
    pub messages: u64,
    /// Requests sent.
    pub requests: u64,
    /// Wall time from the first request to the last answer.
    pub seconds: f64,
    pub messages_per_sec: f64,
    /// Time from sending each request to its answer, in ms; `None`
    /// without requests.
    pub latency_ms: Option<Latency<f64>>,
    /// Requests that failed (refused, or the connection lost); a client
    /// whose connection broke opens a new one.
    #[serde(default)]
    pub errors: u64,
    /// Times of `GET /health` asked every 10 ms through the step on a
    /// connection of its own, in ms: how responsive the broker stays.
    #[serde(default)]
    pub health_ms: Option<Latency<f64>>,
}

/// `bench queue`: one shared subscription drained by one worker, then by
/// `workers` workers, each message taking `work_ms` to handle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueReport {
    pub messages: u64,
    pub work_ms: u64,
    pub workers: u64,
    /// The run with one worker.
    pub one: QueueRun,
    /// The run with `workers` workers.
    pub many: QueueRun,
    /// `many.messages_per_sec / one.messages_per_sec`.
    pub speedup: f64,
}

/// One drain of a fresh topic through a shared subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueRun {
    pub topic: String,
    pub workers: u64,
    /// From the first pull to the last acknowledgement.
    pub seconds: f64,
    pub messages_per_sec: f64,
    /// Messages given out more than once (a lease ended before its ack).
    pub redelivered: u64,
}

/// What `bench failover` measured: a steady load through a three-broker
/// cluster while its leader, then a follower, is killed and restarted.
/// Times are seconds since the load started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverReport {
    /// `gossip` or `leader`.
    pub mode: String,
    /// The brokers' `--durability`.
    pub durability: String,
    /// Messages offered per second.
    pub rate: u32,
    /// How long messages were offered.
    pub seconds: u64,
    /// The brokers, `host:port`, in the order the clients try them (the
    /// first leader first).
    pub brokers: Vec<String>,
    /// Messages offered: `rate × seconds`.
    pub offered: u64,
    /// Messages whose publish was acknowledged.
    pub acknowledged: u64,
    /// Messages the subscriber took (a message stored twice counts once).
    pub delivered: u64,
    /// Deliveries the subscriber passed over as taken before: given again
    /// because the broker serving the pull did not hold the subscriber's
    /// acknowledgement of them yet (its broker died before it passed the
    /// acknowledgement on, or in the seconds after a leader change).
    pub redelivered: u64,
    /// The message longest from its offer to its delivery: `from_s` its
    /// offer (e.g. one acknowledged by a broker killed before it passed
    /// the message on, delivered once that broker is back, in gossip mode).
    pub slowest_delivery: Gap,
    /// Messages delivered under more than one id: a publish tried again
    /// on another broker, stored there while the first copy lived only on
    /// the broker that died (API.md §6.1 allows it in gossip mode).
    pub stored_twice: u64,
    /// One row per second, from the load's start until the last
    /// acknowledgement or delivery (a message's first delivery).
    pub per_second: Vec<FailoverSecond>,
    /// The kills and restarts, in order.
    pub events: Vec<FailoverEvent>,
    /// The longest time without an acknowledged publish, over the run.
    pub longest_publish_gap: Gap,
    /// The longest time without a delivery, over the run.
    pub longest_delivery_gap: Gap,
    /// The mode's target for both longest gaps, in ms.
    pub gap_target_ms: f64,
    /// Whether both longest gaps are below the target.
    pub gap_target_met: bool,
    /// `bench check` of the delivery logs.
    pub check: CheckReport,
}

/// One second of a `bench failover` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverSecond {
    /// From `second` to `second + 1` since the load started.
    pub second: u64,
    /// Publishes acknowledged in this second.
    pub acknowledged: u64,
    /// Messages taken by the subscriber in this second.
    pub delivered: u64,
    /// From each message's offer to its acknowledgement, of those
    /// acknowledged in this second, in ms; `None` without any.
    pub publish_latency_ms: Option<Latency<f64>>,
    /// From each message's offer to its delivery, of those delivered in
    /// this second, in ms; `None` without any.
    pub delivery_latency_ms: Option<Latency<f64>>,
}

/// A kill or restart of `bench failover`, and the longest gaps from it
/// to the next event (or the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverEvent {
    /// `kill leader`, `restart old leader`, `kill follower` or `restart follower`.
    pub event: String,
    /// The broker killed or restarted, `host:port`.
    pub broker: String,
    /// When it happened.
    pub at_s: f64,
    /// The longest time without an acknowledged publish that overlaps the
    /// stretch from this event to the next.
    pub publish_gap: Gap,
    /// The same, without a delivery.
    pub delivery_gap: Gap,
}

/// A stretch of time without an acknowledged publish, or without a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// When it began: the last acknowledgement or delivery before it (or
    /// the load's start).
    pub from_s: f64,
    /// How long it lasted.
    pub ms: f64,
}
