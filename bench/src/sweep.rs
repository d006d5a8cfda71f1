//! `bench sweep`: publish throughput and latency as the number of clients
//! grows. For each count in `--clients`, that many clients, each with a
//! connection of its own (a lean HTTP/1.1 client, see `lean`, opened
//! before the step's clock starts), publish to one fresh topic in a closed
//! loop (a client sends its next request once the last was answered) for
//! `--seconds-per-step`, timing every request, while a prober asks
//! `GET /health` every 10 ms on a connection of its own; a progress bar on
//! stderr counts the steps done. A step's rate counts the messages
//! acknowledged within its window, so the answers still due when it ends
//! (many, with thousands of clients) do not stretch it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::bench::{SweepReport, SweepStep};
use client::Client;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::connections::{bounded, ensure_open_files};
use crate::lean::{Body, Publisher};
use crate::plot::{LineChart, Panel, PlotArgs, Scale, Series};
use crate::publish::RequestArgs;
use crate::report::{micros, percentiles_ms, progress_bar, rows_table, Measured};
use crate::{fresh_topic, BrokerArgs, Error};

/// How often the prober asks `GET /health` during a step.
const HEALTH_EVERY: Duration = Duration::from_millis(10);
/// How long a client whose request failed waits before its next, so that
/// a broker refusing everything is not asked in a tight loop.
const AFTER_ERROR: Duration = Duration::from_millis(10);

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Concurrent clients of each step, in order (a comma-separated list)
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [1, 10, 50, 100, 500, 1000, 5000, 10000],
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
    body: Body,
}

/// Creates a fresh topic ([`fresh_topic`]), runs the steps and reports
/// (the chart needs no samples: it draws the steps' percentiles).
pub async fn run(args: &SweepArgs) -> Result<Measured<SweepReport, ()>, Error> {
    ensure_open_files(args.clients.iter().copied().max().unwrap_or(0))?;
    let topic = fresh_topic(&args.broker.client()).await?;
    let body = Body::new(&topic, &args.request.payload(), args.request.batch)?;
    let work = Arc::new(Work { topic, body });
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

/// Connects `clients` publishers, then lets each publish in a closed loop
/// for `duration` while the broker's health is probed.
async fn step(
    broker: &BrokerArgs,
    work: &Arc<Work>,
    clients: u64,
    duration: Duration,
) -> Result<SweepStep, Error> {
    let connecting = (0..clients).map(|_| {
        let (broker, topic) = (broker.clone(), work.topic.clone());
        async move { Publisher::connect(&broker, &topic).await }
    });
    let publishers = bounded(connecting).await?;
    let until = Instant::now() + duration;
    let prober = spawn_prober(broker.client(), until)?;
    let mut tasks = JoinSet::new();
    for publisher in publishers {
        let (broker, work) = (broker.clone(), Arc::clone(work));
        tasks.spawn(publish_until(broker, publisher, work, until));
    }
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        tally.add(joined.expect("a publishing task does not panic"));
    }
    tally.add(prober.await.expect("the health prober does not panic"));
    if let Some(error) = &tally.first_error {
        eprintln!(
            "bench sweep: {clients} clients: {} errors, the first: {error}",
            tally.errors
        );
    }
    let seconds = duration.as_secs_f64();
    let messages = tally.in_window * work.body.size();
    Ok(SweepStep {
        clients,
        messages,
        requests: tally.samples.len() as u64,
        seconds,
        messages_per_sec: messages as f64 / seconds,
        latency_ms: percentiles_ms(tally.samples),
        errors: tally.errors,
        health_ms: percentiles_ms(tally.health),
    })
}

/// What the clients of a step saw.
#[derive(Default)]
struct Tally {
    /// Each answered publish's time to answer, in µs.
    samples: Vec<i64>,
    /// Publishes answered before the step's window closed.
    in_window: u64,
    /// Each `GET /health`'s time to answer, in µs.
    health: Vec<i64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.samples.extend(other.samples);
        self.in_window += other.in_window;
        self.health.extend(other.health);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn failed(&mut self, error: impl ToString) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| error.to_string());
    }
}

/// Sends requests one after another until `until`. A failed request's
/// connection is replaced by a new one (it may be the one that broke).
async fn publish_until(
    broker: BrokerArgs,
    mut publisher: Publisher,
    work: Arc<Work>,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        let sent = Instant::now();
        match publisher.publish(&work.body).await {
            Ok(_) => {
                let answered = Instant::now();
                tally.samples.push(micros(answered - sent));
                tally.in_window += u64::from(answered <= until);
            }
            Err(error) => {
                tally.failed(error);
                tokio::time::sleep(AFTER_ERROR).await;
                if let Ok(fresh) = Publisher::connect(&broker, &work.topic).await {
                    publisher = fresh;
                }
            }
        }
    }
    tally
}

/// Runs [`probe_health`] on a thread and runtime of its own (on the
/// publishers' runtime it would wait its turn behind thousands of ready
/// tasks, and time the load generator rather than the broker); its tally
/// arrives on the channel returned.
fn spawn_prober(client: Client, until: Instant) -> Result<oneshot::Receiver<Tally>, Error> {
    let failed =
        |error: std::io::Error| Error::Failed(format!("cannot start the health prober: {error}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    let (sender, tally) = oneshot::channel();
    std::thread::Builder::new()
        .name("health-prober".to_string())
        .spawn(move || {
            let _ = sender.send(runtime.block_on(probe_health(client, until)));
        })
        .map_err(failed)?;
    Ok(tally)
}

/// Asks `GET /health` every [`HEALTH_EVERY`] until `until`, timing each.
async fn probe_health(client: Client, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut ticks = tokio::time::interval(HEALTH_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while Instant::now() < until {
        ticks.tick().await;
        let sent = Instant::now();
        match client.health().await {
            Ok(_) => tally.health.push(micros(sent.elapsed())),
            Err(error) => tally.failed(format!("GET /health: {error}")),
        }
    }
    tally
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
            series("/health p99", |step| step.health_ms.as_ref().map(|l| l.p99)),
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

/// The report as plain text: the topic, then a header and a row per step
/// (the request latency last), then how the most clients fared against
/// the peak.
pub fn table(report: &SweepReport) -> String {
    const COLUMNS: [&str; 7] = [
        "clients",
        "messages",
        "requests",
        "errors",
        "msg/s",
        "health_p99_ms",
        "seconds",
    ];
    let rows = report.steps.iter().map(|step| {
        let mut cells: Vec<String> = [step.clients, step.messages, step.requests, step.errors]
            .map(|n| n.to_string())
            .to_vec();
        cells.push(format!("{:.0}", step.messages_per_sec));
        cells.push(match &step.health_ms {
            Some(health) => format!("{:.3}", health.p99),
            None => "-".to_string(),
        });
        cells.push(format!("{:.2}", step.seconds));
        (cells, step.latency_ms.as_ref())
    });
    let title = format!("topic: {} (batch {})", report.topic, report.batch);
    let mut text = rows_table(&title, &COLUMNS, rows.collect());
    if let Some(line) = most_clients_against_peak(report) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// "the step with the most clients kept X% of the peak", when there are
/// steps.
fn most_clients_against_peak(report: &SweepReport) -> Option<String> {
    let peak = report
        .steps
        .iter()
        .max_by(|a, b| a.messages_per_sec.total_cmp(&b.messages_per_sec))?;
    let most = report.steps.iter().max_by_key(|step| step.clients)?;
    let share = 100.0 * most.messages_per_sec / peak.messages_per_sec.max(f64::MIN_POSITIVE);
    Some(format!(
        "{} clients kept {share:.0}% of the peak ({:.0} msg/s at {} clients)",
        most.clients, peak.messages_per_sec, peak.clients
    ))
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
        assert_eq!(
            parse(&[]).unwrap(),
            [1, 10, 50, 100, 500, 1000, 5000, 10000]
        );
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
            errors: 0,
            health_ms: percentiles_ms(vec![2000]),
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
            lines[1][..8],
            [
                "clients",
                "messages",
                "requests",
                "errors",
                "msg/s",
                "health_p99_ms",
                "seconds",
                "p50_ms"
            ]
        );
        assert_eq!(
            lines[2][..8],
            ["4", "400", "400", "0", "400", "2.000", "1.00", "-"]
        );
        assert_eq!(
            lines[3][..8],
            ["1", "100", "100", "0", "100", "2.000", "1.00", "0.500"]
        );
        assert_eq!(
            lines[4].join(" "),
            "4 clients kept 100% of the peak (400 msg/s at 4 clients)"
        );
    }

    #[test]
    fn the_most_clients_are_measured_against_the_peak_wherever_it_is() {
        let mut report = report();
        report.steps[0].messages_per_sec = 300.0;
        report.steps.push(SweepStep {
            clients: 2,
            messages_per_sec: 400.0,
            ..report.steps[1].clone()
        });
        assert_eq!(
            most_clients_against_peak(&report).as_deref(),
            Some("4 clients kept 75% of the peak (400 msg/s at 2 clients)")
        );
        report.steps.clear();
        assert_eq!(most_clients_against_peak(&report), None);
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
        assert_eq!(names, ["p50", "p99", "/health p99"]);
        assert_eq!(latency.series[1].points, [(1.0, 0.5)]);
    }
}
