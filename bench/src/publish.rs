//! `bench publish`: publish throughput. `--connections` tasks, each with its
//! own keep-alive connection (a lean HTTP/1.1 client, see `lean`), share
//! out `--messages` messages in requests of `--batch` (single publishes
//! when 1) to a fresh topic, timing every request; a progress bar on stderr
//! shows the messages acknowledged.
//!
//! With `--replica`, once the last publish was acknowledged, each replica's
//! `GET /cluster` is read every 10 ms until its `have` covers the highest
//! seq acknowledged of every origin, i.e. it holds every message: whether
//! replication keeps up with one broker's publish rate, and how far behind
//! it runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::bench::{PublishReport, ReplicaLag};
use client::peer::Have;
use client::wire::Published;
use client::{Client, PeerAddr};
use indicatif::ProgressBar;
use tokio::task::JoinSet;

use crate::connections::ensure_open_files;
use crate::lean::{Body, Publisher};
use crate::plot::{LineChart, PlotArgs};
use crate::report::{micros, percentiles_ms, progress_bar, run_table, Measured};
use crate::{fresh_topic, parse_host_port, BrokerArgs, Error};

/// The pause between reads of a replica's `have`: a lag is known to
/// within this much. (Its `GET /cluster` costs the replica a read of one
/// small table, where counting a topic's messages took time in proportion
/// to them.)
const REPLICA_POLL: Duration = Duration::from_millis(10);
/// How long after the last acknowledgement a replica may take to hold
/// every message before the run fails.
const REPLICA_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Concurrent publishing tasks, each with its own connection
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
    /// Messages to publish in all
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    #[command(flatten)]
    pub request: RequestArgs,
    /// Another broker of the cluster: report how long after the last
    /// acknowledgement it held every message (repeatable)
    #[arg(long = "replica", value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub replicas: Vec<PeerAddr>,
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plot: PlotArgs,
}

/// `--payload-bytes` and `--batch`: what each publish request carries
/// (`bench publish`, `bench sweep`).
#[derive(Debug, Clone, clap::Args)]
pub struct RequestArgs {
    /// Bytes of each payload
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Messages per request: 1 publishes them one by one, more in batches
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
}

impl RequestArgs {
    /// The payload of every message.
    pub fn payload(&self) -> String {
        "x".repeat(self.payload_bytes)
    }
}

/// What every publishing task shares: where to publish, what, and the
/// index of the next request nobody has claimed yet.
struct Work {
    topic: String,
    payload: String,
    messages: u64,
    batch: u64,
    next: AtomicU64,
    progress: ProgressBar,
}

impl Work {
    /// Claims the next request; returns how many messages it carries.
    fn claim(&self) -> Option<u64> {
        request_size(
            self.next.fetch_add(1, Ordering::Relaxed),
            self.messages,
            self.batch,
        )
    }
}

/// Messages in request `index` when `messages` go out `batch` at a time;
/// `None` past the last request.
fn request_size(index: u64, messages: u64, batch: u64) -> Option<u64> {
    let first = index.checked_mul(batch)?;
    (first < messages).then(|| batch.min(messages - first))
}

/// Per origin, the highest seq of `published`.
fn highest_seqs<'a>(published: impl IntoIterator<Item = &'a Published>) -> Have {
    let mut highest = Have::new();
    for message in published {
        let seq = highest.entry(message.origin.clone()).or_default();
        *seq = (*seq).max(message.seq);
    }
    highest
}

/// Creates a fresh topic ([`fresh_topic`]), publishes, waits for the
/// replicas, and reports, keeping each request's time to answer.
pub async fn run(args: &PublishArgs) -> Result<Measured<PublishReport>, Error> {
    ensure_open_files(args.connections)?;
    let work = Arc::new(Work {
        topic: fresh_topic(&args.broker.client()).await?,
        payload: args.request.payload(),
        messages: args.messages,
        batch: args.request.batch,
        next: AtomicU64::new(0),
        progress: progress_bar(args.messages),
    });
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        tasks.spawn(publish_claimed(args.broker.clone(), Arc::clone(&work)));
    }
    let mut samples = Vec::new();
    let mut lasts = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let published = joined.expect("a publishing task does not panic")?;
        samples.extend(published.samples);
        lasts.extend(published.last);
    }
    let acknowledged = Instant::now();
    work.progress.finish_and_clear();
    let published = highest_seqs(&lasts);
    let replicas = replication_lag(&args.replicas, &published, acknowledged).await?;
    let seconds = acknowledged.duration_since(started).as_secs_f64();
    let requests = samples.len() as u64;
    let report = PublishReport {
        topic: work.topic.clone(),
        connections: args.connections,
        batch: args.request.batch,
        payload_bytes: args.request.payload_bytes as u64,
        messages: args.messages,
        requests,
        seconds,
        messages_per_sec: args.messages as f64 / seconds,
        requests_per_sec: requests as f64 / seconds,
        latency_ms: percentiles_ms(samples.clone()),
        replicas,
    };
    Ok(Measured {
        report,
        samples_us: samples,
    })
}

/// What one publishing task did: each request's time to answer, in µs,
/// and the last message it was acknowledged (the highest seq it got).
struct TaskPublished {
    samples: Vec<i64>,
    last: Option<Published>,
}

/// Sends claimed requests until none is left, on a connection of its own.
async fn publish_claimed(broker: BrokerArgs, work: Arc<Work>) -> Result<TaskPublished, Error> {
    let mut published = TaskPublished {
        samples: Vec::new(),
        last: None,
    };
    // Connected at the first claim. The body is serialized once, and again
    // for the last, smaller request when the messages do not divide into
    // batches.
    let mut connection: Option<Publisher> = None;
    let mut serialized: Option<Body> = None;
    while let Some(size) = work.claim() {
        let publisher = match connection.take() {
            Some(publisher) => connection.insert(publisher),
            None => {
                let publisher = Publisher::connect(&broker, &work.topic).await?;
                connection.insert(publisher)
            }
        };
        let body = match serialized.take() {
            Some(body) if body.size() == size => serialized.insert(body),
            _ => serialized.insert(Body::new(&work.topic, &work.payload, size)?),
        };
        let sent = Instant::now();
        let last = publisher.publish(body).await?;
        published.samples.push(micros(sent.elapsed()));
        published.last = last.or(published.last);
        work.progress.inc(size);
    }
    Ok(published)
}

/// Waits, for every replica at once, until it holds every event up to the
/// seqs of `published` (per origin, the highest acknowledged); returns
/// each one's lag behind `acknowledged` (the last acknowledgement), in the
/// order of `replicas`.
async fn replication_lag(
    replicas: &[PeerAddr],
    published: &Have,
    acknowledged: Instant,
) -> Result<Vec<ReplicaLag>, Error> {
    let mut polls = JoinSet::new();
    for (index, replica) in replicas.iter().enumerate() {
        let (replica, published) = (replica.clone(), published.clone());
        polls.spawn(async move {
            let lag = caught_up(&replica, &published, acknowledged).await;
            (index, lag)
        });
    }
    let mut lags = Vec::new();
    while let Some(joined) = polls.join_next().await {
        let (index, lag) = joined.expect("a replica poll does not panic");
        lags.push((index, lag?));
    }
    lags.sort_by_key(|&(index, _)| index);
    Ok(lags.into_iter().map(|(_, lag)| lag).collect())
}

/// Reads `replica`'s `have` every [`REPLICA_POLL`] until it covers
/// `published`; fails with what the replica held once [`REPLICA_DEADLINE`]
/// has passed since `acknowledged`.
async fn caught_up(
    replica: &PeerAddr,
    published: &Have,
    acknowledged: Instant,
) -> Result<ReplicaLag, Error> {
    let client = Client::new(replica.base_url());
    loop {
        let held = client.cluster().await?.have;
        let lag = acknowledged.elapsed();
        if covers(&held, published) {
            return Ok(ReplicaLag {
                replica: replica.to_string(),
                caught_up_ms: micros(lag) as f64 / 1000.0,
            });
        }
        if lag >= REPLICA_DEADLINE {
            return Err(Error::Failed(format!(
                "replica {replica} held {held:?}, not every message up to {published:?}, \
                 {REPLICA_DEADLINE:?} after the last acknowledgement"
            )));
        }
        tokio::time::sleep(REPLICA_POLL).await;
    }
}

/// Whether a broker holding `held` holds every event up to `published`.
fn covers(held: &Have, published: &Have) -> bool {
    published
        .iter()
        .all(|(origin, seq)| held.get(origin).is_some_and(|have| have >= seq))
}

/// The chart of `--plot`: the distribution of the requests' times to answer.
pub fn chart(run: &Measured<PublishReport>) -> LineChart {
    let r = &run.report;
    let title = format!(
        "bench publish: request latency ({} connections, batch {}, {} messages, {:.0} msg/s)",
        r.connections, r.batch, r.messages, r.messages_per_sec
    );
    LineChart::latency_distribution(&title, &[("publish request", &run.samples_us)])
}

/// The report as plain text: the topic, then a header and one row.
pub fn table(report: &PublishReport) -> String {
    const COLUMNS: [&str; 7] = [
        "connections",
        "batch",
        "messages",
        "requests",
        "seconds",
        "msg/s",
        "req/s",
    ];
    let mut row: Vec<String> = [
        report.connections,
        report.batch,
        report.messages,
        report.requests,
    ]
    .map(|n| n.to_string())
    .to_vec();
    row.push(format!("{:.2}", report.seconds));
    row.push(format!("{:.0}", report.messages_per_sec));
    row.push(format!("{:.0}", report.requests_per_sec));
    let mut text = run_table(&report.topic, &COLUMNS, row, report.latency_ms.as_ref());
    for lag in &report.replicas {
        text += &format!(
            "replica {}: every message {:.3} ms after the last acknowledgement\n",
            lag.replica, lag.caught_up_ms
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_a_batch_each_and_the_rest_last() {
        let sizes: Vec<u64> = (0..5).map_while(|i| request_size(i, 120, 50)).collect();
        assert_eq!(sizes, [50, 50, 20]);
        let singles = (0..).map_while(|i| request_size(i, 3, 1)).count();
        assert_eq!(singles, 3);
        assert_eq!(request_size(0, 0, 10), None);
        assert_eq!(request_size(u64::MAX, 10, 2), None);
    }

    #[test]
    fn table_has_a_header_and_one_row() {
        let report = PublishReport {
            topic: "t".to_string(),
            connections: 4,
            batch: 50,
            payload_bytes: 100,
            messages: 200,
            requests: 4,
            seconds: 0.5,
            messages_per_sec: 400.0,
            requests_per_sec: 8.0,
            latency_ms: percentiles_ms(vec![1000, 2000]),
            replicas: vec![ReplicaLag {
                replica: "h:2".to_string(),
                caught_up_ms: 12.5,
            }],
        };
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "topic: t");
        assert!(
            lines[1].starts_with("connections  batch  messages"),
            "{text}"
        );
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "4", "50", "200", "4", "0.50", "400", "8", "1.000", "2.000", "2.000", "2.000",
                "2.000"
            ]
        );
        assert_eq!(
            lines[3],
            "replica h:2: every message 12.500 ms after the last acknowledgement"
        );
    }

    #[test]
    fn a_replica_holds_every_message_once_its_have_covers_the_highest_seqs() {
        let message = |origin: &str, seq| Published {
            id: format!("{origin}/{seq}"),
            origin: origin.to_string(),
            seq,
            lamport: seq,
            duplicate: false,
        };
        let published = highest_seqs(&[message("a:1", 7), message("a:1", 9), message("b:1", 2)]);
        let have = |pairs: &[(&str, u64)]| -> Have {
            pairs.iter().map(|(o, s)| (o.to_string(), *s)).collect()
        };
        assert_eq!(published, have(&[("a:1", 9), ("b:1", 2)]));
        assert!(covers(
            &have(&[("a:1", 9), ("b:1", 5), ("c:1", 1)]),
            &published
        ));
        assert!(!covers(&have(&[("a:1", 8), ("b:1", 5)]), &published));
        assert!(!covers(&have(&[("a:1", 9)]), &published));
    }

    #[test]
    fn replicas_are_optional_and_absent_from_json_without_them() {
        let old = r#"{"topic":"t","connections":1,"batch":1,"payload_bytes":1,
            "messages":1,"requests":1,"seconds":1.0,"messages_per_sec":1.0,
            "requests_per_sec":1.0,"latency_ms":null}"#;
        let report: PublishReport = serde_json::from_str(old).unwrap();
        assert!(report.replicas.is_empty());
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("replicas"), "{json}");
    }
}
