//! `bench publish`: publish throughput. `--connections` tasks, each with its
//! own keep-alive client, share out `--messages` messages in requests of
//! `--batch` (single publishes when 1) to a fresh topic, timing every
//! request; a progress bar on stderr shows the messages acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use client::bench::PublishReport;
use client::{Client, ClientError};
use indicatif::ProgressBar;
use tokio::task::JoinSet;

use crate::plot::{LineChart, PlotArgs};
use crate::report::{micros, percentiles_ms, progress_bar, run_table, Measured};
use crate::{unique_name, BrokerArgs};

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
    /// Bytes of each payload
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Messages per request: 1 publishes them one by one, more in batches
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plot: PlotArgs,
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

/// Registers a publisher, creates a fresh topic (both named
/// [`unique_name`]), publishes and reports, keeping each request's time to
/// answer.
pub async fn run(args: &PublishArgs) -> Result<Measured<PublishReport>, ClientError> {
    let topic = unique_name();
    let setup = args.broker.client();
    setup.register_publisher(&topic).await?;
    setup.create_topic(&topic, &topic).await?;
    let work = Arc::new(Work {
        payload: "x".repeat(args.payload_bytes),
        topic,
        messages: args.messages,
        batch: args.batch,
        next: AtomicU64::new(0),
        progress: progress_bar(args.messages),
    });
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        tasks.spawn(publish_claimed(args.broker.client(), Arc::clone(&work)));
    }
    let mut samples = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        samples.extend(joined.expect("a publishing task does not panic")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    work.progress.finish_and_clear();
    let requests = samples.len() as u64;
    let report = PublishReport {
        topic: work.topic.clone(),
        connections: args.connections,
        batch: args.batch,
        payload_bytes: args.payload_bytes as u64,
        messages: args.messages,
        requests,
        seconds,
        messages_per_sec: args.messages as f64 / seconds,
        requests_per_sec: requests as f64 / seconds,
        latency_ms: percentiles_ms(samples.clone()),
    };
    Ok(Measured {
        report,
        samples_us: samples,
    })
}

/// Sends claimed requests until none is left; returns each one's time to
/// answer, in µs.
async fn publish_claimed(client: Client, work: Arc<Work>) -> Result<Vec<i64>, ClientError> {
    let mut samples = Vec::new();
    while let Some(size) = work.claim() {
        let sent = Instant::now();
        if work.batch == 1 {
            client
                .publish(&work.topic, &work.topic, &work.payload)
                .await?;
        } else {
            let payloads = vec![work.payload.clone(); size as usize];
            client
                .publish_batch(&work.topic, &work.topic, payloads)
                .await?;
        }
        samples.push(micros(sent.elapsed()));
        work.progress.inc(size);
    }
    Ok(samples)
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
    run_table(&report.topic, &COLUMNS, row, report.latency_ms.as_ref())
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
    }
}
