//! `bench latency`: publish-to-delivery latency. One publisher offers
//! `--rate` messages a second for `--seconds` over a pool of `--connections`
//! keep-alive connections (see `lean`), each payload starting with the time
//! it was offered (`<unix µs>:<padding>`). A slow answer does not lower the
//! offered rate: later messages wait for a free connection, and the wait
//! counts in their age. One subscriber, on the same or another broker,
//! long-polls (or reads a stream of Server-Sent Events, `--transport sse`)
//! with auto-acknowledgement and takes each message's age on arrival.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client::bench::LatencyReport;
use client::wire::{PullQuery, StartFrom};
use client::{Client, ClientError};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;

use crate::lean::{Body, Publisher};
use crate::plot::{LineChart, PlotArgs};
use crate::report::{micros, percentiles_ms, run_table, Measured};
use crate::{fresh_topic, BrokerArgs, Error};

/// How long the subscriber waits for missing messages once every publish
/// was answered.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a topic created on one broker may take to reach the subscriber's.
const REPLICATION_WAIT: Duration = Duration::from_secs(10);
/// Most messages one pull returns.
const PULL_MAX: u32 = 1000;
/// Longest wait of one pull, in ms.
const PULL_WAIT_MS: u64 = 1000;

#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Messages offered per second
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// How long to offer messages, in seconds
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Bytes of each payload (at least the timestamp and its colon)
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Keep-alive connections the publisher sends over, each carrying one
    /// publish at a time
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub connections: u32,
    /// How the subscriber receives: long polls, or one stream of
    /// Server-Sent Events
    #[arg(long, value_enum, default_value_t = Transport::Poll)]
    pub transport: Transport,
    /// Subscribe on this host instead [default: --host]
    #[arg(long)]
    pub subscriber_host: Option<String>,
    /// Subscribe on this port instead [default: --port]
    #[arg(long)]
    pub subscriber_port: Option<u16>,
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plot: PlotArgs,
}

/// How `bench latency`'s subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Poll,
    Sse,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Poll => "poll",
            Transport::Sse => "sse",
        }
    }
}

impl LatencyArgs {
    /// The broker the subscriber reads from.
    fn subscriber_broker(&self) -> BrokerArgs {
        self.broker
            .overridden_by(self.subscriber_host.as_ref(), self.subscriber_port)
    }
}

/// Sets up a fresh topic ([`fresh_topic`]) and a subscriber of its name,
/// then publishes and receives at once, and reports, keeping each
/// message's age on arrival.
pub async fn run(args: &LatencyArgs) -> Result<Measured<LatencyReport>, Error> {
    let name = fresh_topic(&args.broker.client()).await?;
    let subscriber = args.subscriber_broker().client();
    subscriber.register_subscriber(&name).await?;
    subscribe_when_replicated(&subscriber, &name).await?;
    let answered = OnceLock::new();
    let (sent, ages) = tokio::try_join!(offer(&name, args, &answered), async {
        let count = message_count(args);
        let received = match args.transport {
            Transport::Poll => receive(&subscriber, &name, count, &answered).await,
            Transport::Sse => stream(&subscriber, &name, count, &answered).await,
        };
        received.map_err(Error::from)
    })?;
    let report = LatencyReport {
        topic: name,
        transport: args.transport.name().to_string(),
        rate: args.rate,
        seconds: args.seconds,
        payload_bytes: args.payload_bytes as u64,
        sent,
        received: ages.len() as u64,
        latency_ms: percentiles_ms(ages.clone()),
    };
    Ok(Measured {
        report,
        samples_us: ages,
    })
}

/// Subscribes `name` to topic `name` from its first message, retrying while
/// the topic, created on another broker, has not reached this one.
pub(crate) async fn subscribe_when_replicated(
    client: &Client,
    name: &str,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + REPLICATION_WAIT;
    loop {
        match client.subscribe(name, name, StartFrom::Earliest).await {
            Err(error) if error.code() == Some("topic_not_found") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return result.map(drop),
        }
    }
}

/// Messages offered in all: `rate × seconds`.
fn message_count(args: &LatencyArgs) -> u64 {
    u64::from(args.rate) * args.seconds
}

/// Publishes [`message_count`] stamped messages, one every 1/rate s, each
/// on the first free connection of the pool, and sets `answered` when the
/// last answer came; returns how many the broker acknowledged (all of them,
/// or the first error).
async fn offer(
    topic: &str,
    args: &LatencyArgs,
    answered: &OnceLock<Instant>,
) -> Result<u64, Error> {
    let (free, next_free) = mpsc::channel(args.connections as usize);
    for _ in 0..args.connections {
        let publisher = Publisher::connect(&args.broker, topic).await?;
        free.send(publisher).await.expect("the pool is open");
    }
    // A fair lock: messages take free connections in the order they came.
    let next_free = Arc::new(Mutex::new(next_free));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / args.rate);
    let (mut publishes, mut sent) = (JoinSet::new(), 0);
    for _ in 0..message_count(args) {
        ticks.tick().await;
        // Stamped before waiting for a connection: the wait counts.
        let body = Body::new(topic, &stamped(unix_micros(), args.payload_bytes), 1)?;
        let (free, next_free) = (free.clone(), next_free.clone());
        publishes.spawn(async move {
            let mut publisher = next_free
                .lock()
                .await
                .recv()
                .await
                .expect("the pool is open");
            let published = publisher.publish(&body).await;
            // The pool outlives every publish: `offer` joins them all.
            let _ = free.send(publisher).await;
            published
        });
        while let Some(joined) = publishes.try_join_next() {
            joined.expect("a publishing task does not panic")?;
            sent += 1;
        }
    }
    while let Some(joined) = publishes.join_next().await {
        joined.expect("a publishing task does not panic")?;
        sent += 1;
    }
    answered.get_or_init(Instant::now);
    Ok(sent)
}

/// Long-polls topic `name` as subscriber `name`, acknowledging on receipt,
/// until `count` messages came or [`DRAIN`] passed since every publish was
/// `answered`; returns each message's age on arrival, in µs.
async fn receive(
    client: &Client,
    name: &str,
    count: u64,
    answered: &OnceLock<Instant>,
) -> Result<Vec<i64>, ClientError> {
    let query = PullQuery {
        topic: Some(name.to_string()),
        max: Some(PULL_MAX),
        wait_ms: Some(PULL_WAIT_MS),
        auto_ack: Some(true),
    };
    let mut ages = Vec::new();
    let drained = || answered.get().is_some_and(|at| at.elapsed() >= DRAIN);
    while (ages.len() as u64) < count && !drained() {
        let pulled = client.pull(name, &query).await?;
        let now = unix_micros();
        let stamps = pulled.messages.iter().filter_map(|m| stamp_of(&m.payload));
        ages.extend(stamps.map(|sent| now - sent));
    }
    Ok(ages)
}

/// As [`receive`], from one stream of Server-Sent Events with
/// auto-acknowledgement.
async fn stream(
    client: &Client,
    name: &str,
    count: u64,
    answered: &OnceLock<Instant>,
) -> Result<Vec<i64>, ClientError> {
    let mut events = client.stream(name, Some(name), true).await?;
    let mut ages = Vec::new();
    let drained = || answered.get().is_some_and(|at| at.elapsed() >= DRAIN);
    while (ages.len() as u64) < count && !drained() {
        let wait = Duration::from_millis(PULL_WAIT_MS);
        let Ok(next) = tokio::time::timeout(wait, events.next()).await else {
            continue;
        };
        let Some(message) = next? else {
            break;
        };
        if let Some(sent) = stamp_of(&message.payload) {
            ages.push(unix_micros() - sent);
        }
    }
    Ok(ages)
}

/// Microseconds since the Unix epoch, now.
fn unix_micros() -> i64 {
    micros(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// A payload of `bytes` bytes (more if the stamp needs them): the send
/// time `micros`, a colon, then padding.
fn stamped(micros: i64, bytes: usize) -> String {
    let stamp = format!("{micros}:");
    let padding = "x".repeat(bytes.saturating_sub(stamp.len()));
    stamp + &padding
}

/// The send time a [`stamped`] payload carries.
fn stamp_of(payload: &str) -> Option<i64> {
    payload.split_once(':')?.0.parse().ok()
}

/// The chart of `--plot`: the distribution of the messages' ages on
/// arrival.
pub fn chart(run: &Measured<LatencyReport>) -> LineChart {
    let r = &run.report;
    let title = format!(
        "bench latency: publish to delivery by {} ({} msg/s for {} s, {} of {} received)",
        r.transport, r.rate, r.seconds, r.received, r.sent
    );
    LineChart::latency_distribution(&title, &[("publish → delivery", &run.samples_us)])
}

/// The report as plain text: the topic, then a header and one row.
pub fn table(report: &LatencyReport) -> String {
    const COLUMNS: [&str; 4] = ["rate", "seconds", "sent", "received"];
    let counts = [
        u64::from(report.rate),
        report.seconds,
        report.sent,
        report.received,
    ];
    let row = counts.map(|n| n.to_string()).to_vec();
    run_table(&report.topic, &COLUMNS, row, report.latency_ms.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_stamp_and_have_the_size_asked() {
        let payload = stamped(1_763_740_800_123_456, 100);
        assert_eq!(payload.len(), 100);
        assert!(payload.starts_with("1763740800123456:xx"), "{payload}");
        assert_eq!(stamp_of(&payload), Some(1_763_740_800_123_456));
        assert_eq!(stamped(42, 1), "42:");
        assert_eq!(stamp_of("no stamp"), None);
    }

    #[test]
    fn table_has_a_header_and_one_row() {
        let report = LatencyReport {
            topic: "t".to_string(),
            transport: "poll".to_string(),
            rate: 200,
            seconds: 1,
            payload_bytes: 100,
            sent: 200,
            received: 200,
            latency_ms: None,
        };
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "topic: t");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "rate", "seconds", "sent", "received", "p50_ms", "p90_ms", "p99_ms", "p99.9_ms",
                "max_ms"
            ]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["200", "1", "200", "200", "-", "-", "-", "-", "-"]
        );
    }
}
