//! `bench queue`: a work queue drained by competing consumers. A fresh
//! topic gets `--messages` messages; a shared subscription (API.md §6.2)
//! is drained first by one worker, then (on another fresh topic) by
//! `--workers` workers pulling as the same subscriber. Each worker pulls a
//! batch, spends `--work-ms` per message (a sleep: work that waits, as a
//! call to another service does), and acknowledges the batch by id. The
//! report gives both drain rates and their ratio.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::bench::{QueueReport, QueueRun};
use client::wire::{PullQuery, Subscribe};
use client::Client;

use crate::plot::{LineChart, Panel, PlotArgs, Scale, Series};
use crate::report::Measured;
use crate::{fresh_topic, BrokerArgs, Error};

/// Messages per publish while filling the topic.
const PUBLISH_BATCH: usize = 1_000;
/// How long a stuck drain may go without progress before the run fails.
const STALL: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Messages to drain in each run
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Workers of the second run
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub workers: u64,
    /// Time each message takes to handle, in ms
    #[arg(long, default_value_t = 1)]
    pub work_ms: u64,
    /// Messages per pull
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plot: PlotArgs,
}

/// Per run, the drain's progress: (seconds, messages acknowledged).
pub type Progress = Vec<Vec<(f64, u64)>>;

pub async fn run(args: &QueueArgs) -> Result<Measured<QueueReport, Progress>, Error> {
    let (one, one_progress) = drain(args, 1).await?;
    let (many, many_progress) = drain(args, args.workers).await?;
    let speedup = many.messages_per_sec / one.messages_per_sec;
    let report = QueueReport {
        messages: args.messages,
        work_ms: args.work_ms,
        workers: args.workers,
        one,
        many,
        speedup,
    };
    Ok(Measured {
        report,
        samples_us: vec![one_progress, many_progress],
    })
}

/// What the workers of one run share.
struct Drain {
    topic: String,
    subscriber: String,
    acked: Mutex<Acked>,
    given: Mutex<u64>,
    started: Instant,
    total: u64,
}

/// The message ids acknowledged so far, and the count after each batch.
#[derive(Default)]
struct Acked {
    ids: HashSet<String>,
    progress: Vec<(f64, u64)>,
}

/// Fills a fresh topic and drains it with `workers` workers.
async fn drain(args: &QueueArgs, workers: u64) -> Result<(QueueRun, Vec<(f64, u64)>), Error> {
    let setup = args.broker.client();
    let topic = fresh_topic(&setup).await?;
    let payload = "x".repeat(100);
    let mut left = args.messages as usize;
    while left > 0 {
        let n = left.min(PUBLISH_BATCH);
        setup
            .publish_batch(&topic, &topic, vec![payload.clone(); n])
            .await?;
        left -= n;
    }
    let subscriber = format!("{topic}-queue");
    setup.register_subscriber(&subscriber).await?;
    let shared = Subscribe {
        topic: topic.clone(),
        from: client::wire::StartFrom::Earliest,
        ack_wait_ms: Some(60_000),
        ..Subscribe::default()
    };
    setup.subscribe_with(&subscriber, &shared).await?;
    let drain = Arc::new(Drain {
        topic: topic.clone(),
        subscriber,
        acked: Mutex::default(),
        given: Mutex::new(0),
        started: Instant::now(),
        total: args.messages,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (drain, client) = (drain.clone(), args.broker.client());
        let (batch, work) = (args.batch, Duration::from_millis(args.work_ms));
        tasks.spawn(async move { work_until_drained(&drain, &client, batch, work).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| Error::Failed(format!("a worker failed: {e}")))??;
    }
    let seconds = drain.started.elapsed().as_secs_f64();
    let given = *drain.given.lock().expect("no worker panics holding it");
    let progress = std::mem::take(
        &mut drain
            .acked
            .lock()
            .expect("no worker panics holding it")
            .progress,
    );
    Ok((
        QueueRun {
            topic,
            workers,
            seconds,
            messages_per_sec: args.messages as f64 / seconds,
            redelivered: given.saturating_sub(args.messages),
        },
        progress,
    ))
}

/// Pulls, handles and acknowledges batches until every message of the
/// run is acknowledged.
async fn work_until_drained(
    drain: &Drain,
    client: &Client,
    batch: u32,
    work: Duration,
) -> Result<(), Error> {
    let query = PullQuery {
        topic: Some(drain.topic.clone()),
        max: Some(batch),
        wait_ms: Some(500),
        auto_ack: None,
    };
    let mut last_progress = Instant::now();
    loop {
        let acked = drain
            .acked
            .lock()
            .expect("no worker panics holding it")
            .ids
            .len();
        if acked as u64 >= drain.total {
            return Ok(());
        }
        let pulled = client.pull(&drain.subscriber, &query).await?;
        if pulled.messages.is_empty() {
            if last_progress.elapsed() > STALL {
                return Err(Error::Failed(format!("no message for {STALL:?}")));
            }
            continue;
        }
        last_progress = Instant::now();
        *drain.given.lock().expect("no worker panics holding it") += pulled.messages.len() as u64;
        for _ in &pulled.messages {
            tokio::time::sleep(work).await;
        }
        let ids: Vec<String> = pulled.messages.iter().map(|m| m.id.clone()).collect();
        client.ack_ids(&drain.subscriber, &ids).await?;
        let mut acked = drain.acked.lock().expect("no worker panics holding it");
        acked.ids.extend(ids);
        let count = acked.ids.len() as u64;
        acked
            .progress
            .push((drain.started.elapsed().as_secs_f64(), count));
    }
}

/// The drains' progress: messages acknowledged against time, per run.
pub fn chart(run: &Measured<QueueReport, Progress>) -> LineChart {
    let r = &run.report;
    let names = ["1 worker".to_string(), format!("{} workers", r.workers)];
    let series = names
        .into_iter()
        .zip(&run.samples_us)
        .map(|(name, points)| Series {
            name,
            points: points.iter().map(|&(t, n)| (t, n as f64)).collect(),
        })
        .collect();
    LineChart {
        title: format!(
            "bench queue: {} messages, {} ms each, speedup {:.1}x",
            r.messages, r.work_ms, r.speedup
        ),
        x_label: "seconds".to_string(),
        x_scale: Scale::Linear,
        panels: vec![Panel {
            y_label: "acknowledged".to_string(),
            series,
        }],
    }
}

/// The report as plain text: one row per run, then the speedup.
pub fn table(report: &QueueReport) -> String {
    let mut text = format!(
        "messages: {}, {} ms each\n{:>8} {:>10} {:>12} {:>12}\n",
        report.messages, report.work_ms, "workers", "seconds", "msg/s", "redelivered"
    );
    for run in [&report.one, &report.many] {
        text.push_str(&format!(
            "{:>8} {:>10.2} {:>12.0} {:>12}\n",
            run.workers, run.seconds, run.messages_per_sec, run.redelivered
        ));
    }
    text.push_str(&format!("speedup: {:.2}x\n", report.speedup));
    text
}
