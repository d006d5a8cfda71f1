//! `bench sweep`: publish throughput and latency as the number of clients
//! grows. For each count in `--clients`, that many clients, each with a
//! connection of its own (opened before the step's clock starts), publish
//! to one fresh topic in a closed loop (a client sends its next request
//! once the last was answered) for `--seconds-per-step`, timing every
//! request; a progress bar on stderr counts the steps done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::bench::{SweepReport, SweepStep};
use client::{Client, ClientError};
use tokio::task::JoinSet;

use crate::connections::{connected_clients, ensure_open_files};
use crate::plot::{LineChart, Panel, PlotArgs, Scale, Series};
use crate::publish::RequestArgs;
use crate::report::{micros, percentiles_ms, progress_bar, rows_table, Measured};
use crate::{fresh_topic, BrokerArgs, Error};

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Concurrent clients of each step, in order (a comma-separated list)
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [1, 10, 50, 100, 500, 1000, 5000],
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub clients: Vec<u64>,
    /// How long each step publishes, in seconds
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds_per_step: u64,
    #[command(flatten)]
    pub request: RequestArgs,
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plot: PlotArgs,
}

/// What every publishing client sends: where, and what.
struct Work {
    topic: String,
    payload: String,
    batch: u64,
}

/// Creates a fresh topic ([`fresh_topic`]), runs the steps and reports
/// (the chart needs no samples: it draws the steps' percentiles).
pub async fn run(args: &SweepArgs) -> Result<Measured<SweepReport, ()>, Error> {
    ensure_open_files(args.clients.iter().copied().max().unwrap_or(0))?;
    let work = Arc::new(Work {
        topic: fresh_topic(&args.broker.client()).await?,
        payload: args.request.payload(),
        batch: args.request.batch,
    });
    let duration = Duration::from_secs(args.seconds_per_step);
    let progress = progress_bar(args.clients.len() as u64);
    let mut steps = Vec::new();
    for &clients in &args.clients {
        steps.push(step(&args.broker, &work, clients, duration).await?);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let report = SweepReport {
        topic: work.topic.clone(),
        batch: args.request.batch,
        payload_bytes: args.request.payload_bytes as u64,
        seconds_per_step: args.seconds_per_step,
        steps,
    };
    Ok(Measured {
        report,
        samples_us: (),
    })
}

/// Connects `clients` clients, then lets each publish in a closed loop
/// for `duration`.
async fn step(
    broker: &BrokerArgs,
    work: &Arc<Work>,
    clients: u64,
    duration: Duration,
) -> Result<SweepStep, ClientError> {
    let connected = connected_clients(broker, clients).await?;
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = JoinSet::new();
    for client in connected {
        tasks.spawn(publish_until(client, Arc::clone(work), until));
    }
    let mut samples = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        samples.extend(joined.expect("a publishing task does not panic")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = samples.len() as u64;
    let messages = requests * work.batch;
    Ok(SweepStep {
        clients,
        messages,
        requests,
        seconds,
        messages_per_sec: messages as f64 / seconds,
        latency_ms: percentiles_ms(samples),
    })
}

/// Sends requests one after another until `until`; returns each one's
/// time to answer, in µs.
async fn publish_until(
    client: Client,
    work: Arc<Work>,
    until: Instant,
) -> Result<Vec<i64>, ClientError> {
    let mut samples = Vec::new();
    while Instant::now() < until {
        let sent = Instant::now();
        publish_request(&client, &work.topic, &work.payload, work.batch).await?;
        samples.push(micros(sent.elapsed()));
    }
    Ok(samples)
}

/// Publishes `size` messages of `payload` to `topic` as the publisher of
/// the same name, in one request: a single publish when `size` is 1, else
/// a batch.
async fn publish_request(
    client: &Client,
    topic: &str,
    payload: &str,
    size: u64,
) -> Result<(), ClientError> {
    if size == 1 {
        client.publish(topic, topic, payload).await?;
    } else {
        let payloads = vec![payload.to_string(); size as usize];
        client.publish_batch(topic, topic, payloads).await?;
    }
    Ok(())
}

/// The chart of `--plot`: throughput above request latency (p50, p99),
/// against the number of clients on a log scale, the steps in order of
/// clients.
pub fn chart(run: &Measured<SweepReport, ()>) -> LineChart {
    let report = &run.report;
    let mut steps: Vec<&SweepStep> = report.steps.iter().collect();
    steps.sort_by_key(|step| step.clients);
    let series = |name: &str, y: fn(&SweepStep) -> Option<f64>| Series {
        name: name.to_string(),
        points: steps
            .iter()
            .filter_map(|step| Some((step.clients as f64, y(step)?)))
            .collect(),
    };
    let throughput = Panel {
        y_label: "throughput (msg/s)".to_string(),
        series: vec![series("msg/s", |step| Some(step.messages_per_sec))],
    };
    let latency = Panel {
        y_label: "request latency (ms)".to_string(),
        series: vec![
            series("p50", |step| step.latency_ms.as_ref().map(|l| l.p50)),
            series("p99", |step| step.latency_ms.as_ref().map(|l| l.p99)),
        ],
    };
    LineChart {
        title: format!(
            "bench sweep: closed-loop publishes ({} B payloads, batch {}, {} s per step)",
            report.payload_bytes, report.batch, report.seconds_per_step
        ),
        x_label: "clients".to_string(),
        x_scale: Scale::Log,
        panels: vec![throughput, latency],
    }
}

/// The report as plain text: the topic, then a header and a row per step.
pub fn table(report: &SweepReport) -> String {
    const COLUMNS: [&str; 5] = ["clients", "messages", "requests", "seconds", "msg/s"];
    let rows = report.steps.iter().map(|step| {
        let mut cells: Vec<String> = [step.clients, step.messages, step.requests]
            .map(|n| n.to_string())
            .to_vec();
        cells.push(format!("{:.2}", step.seconds));
        cells.push(format!("{:.0}", step.messages_per_sec));
        (cells, step.latency_ms.as_ref())
    });
    let title = format!("topic: {} (batch {})", report.topic, report.batch);
    rows_table(&title, &COLUMNS, rows.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Sweep {
        #[command(flatten)]
        args: SweepArgs,
    }

    #[test]
    fn clients_are_a_comma_separated_list_of_positive_counts() {
        let parse = |clients: &[&str]| {
            let at = ["sweep", "--host", "h", "--port", "1"];
            Sweep::try_parse_from(at.iter().chain(clients)).map(|s| s.args.clients)
        };
        assert_eq!(parse(&[]).unwrap(), [1, 10, 50, 100, 500, 1000, 5000]);
        assert_eq!(parse(&["--clients", "1,4"]).unwrap(), [1, 4]);
        assert!(parse(&["--clients", "1,0"]).is_err());
    }

    /// A report of steps of 1 and 4 clients, the second without latency.
    fn report() -> SweepReport {
        let step = |clients, latency_ms| SweepStep {
            clients,
            messages: 100 * clients,
            requests: 100 * clients,
            seconds: 1.0,
            messages_per_sec: 100.0 * clients as f64,
            latency_ms,
        };
        SweepReport {
            topic: "t".to_string(),
            batch: 1,
            payload_bytes: 100,
            seconds_per_step: 1,
            steps: vec![step(4, None), step(1, percentiles_ms(vec![500]))],
        }
    }

    #[test]
    fn table_has_a_row_per_step() {
        let text = table(&report());
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["topic:", "t", "(batch", "1)"]);
        assert_eq!(
            lines[1][..6],
            ["clients", "messages", "requests", "seconds", "msg/s", "p50_ms"]
        );
        assert_eq!(lines[2][..6], ["4", "400", "400", "1.00", "400", "-"]);
        assert_eq!(lines[3][..6], ["1", "100", "100", "1.00", "100", "0.500"]);
    }

    #[test]
    fn chart_puts_throughput_above_latency_in_order_of_clients() {
        let run = Measured {
            report: report(),
            samples_us: (),
        };
        let chart = chart(&run);
        assert_eq!(
            (chart.x_label.as_str(), chart.x_scale),
            ("clients", Scale::Log)
        );
        assert!(
            chart.title.contains("100 B payloads, batch 1"),
            "{}",
            chart.title
        );
        let [throughput, latency] = &chart.panels[..] else {
            panic!("two panels: {chart:?}");
        };
        assert_eq!(throughput.series[0].points, [(1.0, 100.0), (4.0, 400.0)]);
        let names: Vec<&str> = latency.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["p50", "p99"]);
        assert_eq!(latency.series[1].points, [(1.0, 0.5)]);
    }
}
