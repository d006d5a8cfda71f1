//! `bench latency`: publish-to-delivery latency. One publisher offers
//! `--rate` messages a second for `--seconds`, each payload starting with
//! the time it was offered (`<unix µs>:<padding>`), each send in a task of
//! its own: a slow answer does not lower the offered rate. One receiver
//! takes each message's age on arrival.
//!
//! Against rumor the publisher sends over a pool of `--connections`
//! keep-alive connections (see `lean`): later messages wait for a free
//! connection, and the wait counts in their age. One subscriber, on the
//! same or another broker, long-polls (or reads a stream of Server-Sent
//! Events, `--transport sse`) with auto-acknowledgement. With `--redis` the
//! same pacing, stamps and percentiles measure Redis streams instead (see
//! `redis_streams`): a target is a `Publish` side and a `Receive` side.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client::bench::LatencyReport;
use client::http::EventStream;
use client::wire::{PullQuery, StartFrom};
use client::{Client, ClientError, PeerAddr};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;

use crate::lean::{Body, Publisher};
use crate::plot::{LineChart, PlotArgs};
use crate::report::{micros, percentiles_ms, run_table, Measured};
use crate::{
    fresh_topic, number_in, numbered_payload, parse_host_port, redis_streams, unique_name,
    BrokerArgs, Error,
};

/// How long the subscriber waits for missing messages once every publish
/// was answered.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a topic created on one broker may take to reach the subscriber's.
const REPLICATION_WAIT: Duration = Duration::from_secs(10);
/// Most messages one pull (or `XREAD`) returns.
pub(crate) const PULL_MAX: u32 = 1000;
/// Longest wait of one pull (or `XREAD BLOCK`), in ms.
pub(crate) const PULL_WAIT_MS: u64 = 1000;

#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub broker: Option<BrokerArgs>,
    /// Measure Redis streams at HOST:PORT instead of a rumor broker: an
    /// XADD per message, one consumer blocked in XREAD
    #[arg(
        long,
        value_name = "HOST:PORT",
        value_parser = parse_host_port,
        required_unless_present = "BrokerArgs",
        conflicts_with_all = ["BrokerArgs", "connections", "transport", "subscriber_host", "subscriber_port"],
    )]
    pub redis: Option<PeerAddr>,
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

/// The sending side of a measured target.
pub(crate) trait Publish {
    /// Sends one payload. The future runs in a task of its own, so that a
    /// slow answer holds back no later message.
    fn publish(&self, payload: String) -> impl Future<Output = Result<(), Error>> + Send + 'static;
}

/// The receiving side of a measured target.
pub(crate) trait Receive {
    /// The payloads that arrived, waiting at most about [`PULL_WAIT_MS`]
    /// for the first (none if none came); `None` once nothing more can
    /// come.
    async fn arrivals(&mut self) -> Result<Option<Vec<String>>, Error>;
}

/// Measures the rumor broker, or Redis with `--redis`, and reports,
/// keeping each message's age on arrival.
pub async fn run(args: &LatencyArgs) -> Result<Measured<LatencyReport>, Error> {
    match (&args.redis, &args.broker) {
        (Some(server), _) => run_redis(args, server).await,
        (None, Some(broker)) => run_rumor(args, broker).await,
        (None, None) => unreachable!("clap asks for --host and --port without --redis"),
    }
}

/// Sets up a fresh topic ([`fresh_topic`]), the publishers' pool and a
/// subscriber of the topic's name on the subscriber's broker, then
/// measures.
async fn run_rumor(
    args: &LatencyArgs,
    broker: &BrokerArgs,
) -> Result<Measured<LatencyReport>, Error> {
    let name = fresh_topic(&broker.client()).await?;
    let pool = Pool::connect(broker, &name, args.connections).await?;
    let subscriber = broker
        .overridden_by(args.subscriber_host.as_ref(), args.subscriber_port)
        .client();
    subscriber.register_subscriber(&name).await?;
    subscribe_when_replicated(&subscriber, &name).await?;
    let transport = args.transport.name();
    match args.transport {
        Transport::Poll => {
            let polls = LongPoll::new(subscriber, &name);
            measure(args, &name, transport, &pool, polls).await
        }
        Transport::Sse => {
            let events = subscriber.stream(&name, Some(&name), true).await?;
            measure(args, &name, transport, &pool, events).await
        }
    }
}

/// Opens the two connections to Redis for a fresh stream ([`unique_name`]),
/// then measures.
async fn run_redis(
    args: &LatencyArgs,
    server: &PeerAddr,
) -> Result<Measured<LatencyReport>, Error> {
    let key = unique_name();
    let (appender, consumer) = redis_streams::connect(server, &key).await?;
    measure(args, &key, redis_streams::TRANSPORT, &appender, consumer).await
}

/// Offers the messages through `publisher` while `receiver` takes each
/// one's age on arrival; reports them as sent to `topic` and received by
/// `transport`.
async fn measure(
    args: &LatencyArgs,
    topic: &str,
    transport: &str,
    publisher: &impl Publish,
    receiver: impl Receive,
) -> Result<Measured<LatencyReport>, Error> {
    let answered = OnceLock::new();
    let (sent, ages) = tokio::try_join!(
        offer(publisher, args, &answered),
        receive(receiver, message_count(args), &answered),
    )?;
    let report = LatencyReport {
        topic: topic.to_string(),
        transport: transport.to_string(),
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

/// Publishes [`message_count`] stamped messages, one every 1/rate s, and
/// sets `answered` when the last answer came; returns how many were
/// acknowledged (all of them, or the first error).
async fn offer(
    publisher: &impl Publish,
    args: &LatencyArgs,
    answered: &OnceLock<Instant>,
) -> Result<u64, Error> {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / args.rate);
    let (mut publishes, mut sent) = (JoinSet::new(), 0);
    for _ in 0..message_count(args) {
        ticks.tick().await;
        // Stamped before it is sent: any wait on the way counts.
        publishes.spawn(publisher.publish(numbered_payload(unix_micros(), args.payload_bytes)));
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

/// Takes what `receiver` brings until `count` messages came, or [`DRAIN`]
/// passed since every publish was `answered`, or the receiver ended;
/// returns each message's age on arrival, in µs.
async fn receive(
    mut receiver: impl Receive,
    count: u64,
    answered: &OnceLock<Instant>,
) -> Result<Vec<i64>, Error> {
    let mut ages = Vec::new();
    let drained = || answered.get().is_some_and(|at| at.elapsed() >= DRAIN);
    while (ages.len() as u64) < count && !drained() {
        let Some(payloads) = receiver.arrivals().await? else {
            break;
        };
        let now = unix_micros();
        let stamps = payloads
            .iter()
            .filter_map(|payload| number_in::<i64>(payload));
        ages.extend(stamps.map(|sent| now - sent));
    }
    Ok(ages)
}

/// Rumor's [`Publish`]: a pool of lean keep-alive connections to one
/// topic, each carrying one publish at a time.
struct Pool {
    topic: Arc<str>,
    free: mpsc::Sender<Publisher>,
    /// A fair lock: messages take free connections in the order they came.
    next_free: Arc<Mutex<mpsc::Receiver<Publisher>>>,
}

impl Pool {
    /// Opens `connections` connections to `broker` for `topic`.
    async fn connect(broker: &BrokerArgs, topic: &str, connections: u32) -> Result<Pool, Error> {
        let (free, next_free) = mpsc::channel(connections as usize);
        for _ in 0..connections {
            let publisher = Publisher::connect(broker, topic).await?;
            free.send(publisher).await.expect("the pool is open");
        }
        Ok(Pool {
            topic: topic.into(),
            free,
            next_free: Arc::new(Mutex::new(next_free)),
        })
    }
}

impl Publish for Pool {
    /// Publishes on the first free connection, as the topic's publisher
    /// (of the same name, see [`fresh_topic`]).
    fn publish(&self, payload: String) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let body = Body::new(&self.topic, &payload, 1);
        let (free, next_free) = (self.free.clone(), self.next_free.clone());
        async move {
            let body = body?;
            let mut publisher = next_free
                .lock()
                .await
                .recv()
                .await
                .expect("the pool is open");
            let published = publisher.publish(&body).await;
            // The pool outlives every publish: `offer` joins them all.
            let _ = free.send(publisher).await;
            published.map(drop)
        }
    }
}

/// Rumor's long polls as [`Receive`]: subscriber `name` pulls topic
/// `name`, acknowledging on receipt.
struct LongPoll {
    client: Client,
    subscriber: String,
    query: PullQuery,
}

impl LongPoll {
    fn new(client: Client, name: &str) -> LongPoll {
        let query = PullQuery {
            topic: Some(name.to_string()),
            max: Some(PULL_MAX),
            wait_ms: Some(PULL_WAIT_MS),
            auto_ack: Some(true),
        };
        LongPoll {
            client,
            subscriber: name.to_string(),
            query,
        }
    }
}

impl Receive for LongPoll {
    async fn arrivals(&mut self) -> Result<Option<Vec<String>>, Error> {
        let pulled = self.client.pull(&self.subscriber, &self.query).await?;
        let payloads = pulled.messages.into_iter().map(|message| message.payload);
        Ok(Some(payloads.collect()))
    }
}

/// Rumor's stream of Server-Sent Events (auto-acknowledged) as
/// [`Receive`]: one message at a time.
impl Receive for EventStream {
    async fn arrivals(&mut self) -> Result<Option<Vec<String>>, Error> {
        let wait = Duration::from_millis(PULL_WAIT_MS);
        match tokio::time::timeout(wait, self.next()).await {
            Err(_elapsed) => Ok(Some(Vec::new())),
            Ok(next) => Ok(next?.map(|message| vec![message.payload])),
        }
    }
}

/// Microseconds since the Unix epoch, now.
fn unix_micros() -> i64 {
    micros(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
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
    fn redis_or_a_rumor_broker_is_measured_never_both() {
        use clap::Parser;
        let parse =
            |args: &[&str]| crate::Cli::try_parse_from([&["bench", "latency"], args].concat());
        assert!(parse(&["--redis", "127.0.0.1:6379"]).is_ok());
        assert!(parse(&["--host", "127.0.0.1", "--port", "7000"]).is_ok());
        let wrong: [&[&str]; 5] = [
            &[],
            &["--redis", "h:1", "--host", "h", "--port", "1"],
            &["--redis", "h:1", "--transport", "sse"],
            &["--redis", "h:1", "--connections", "2"],
            &["--redis", "h:1", "--subscriber-port", "2"],
        ];
        for args in wrong {
            assert!(parse(args).is_err(), "{args:?}");
        }
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
