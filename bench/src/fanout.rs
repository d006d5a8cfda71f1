//! `bench fanout`: one message to many waiting subscribers. `--subscribers`
//! subscribers of a fresh topic, each with its own client and so its own
//! connection, long-poll the topic with auto-acknowledgement. Once the
//! broker's `rumor_waiting_pulls` gauge shows them all waiting (and, with
//! `--broker-pid`, the broker's resident memory was read), one message is
//! published, and each poll's time from just before the publish to its
//! answer is taken; the slowest is the time to reach all. That time
//! includes each poll's acknowledgement, which the broker commits before it
//! answers. `--rounds` rounds, each arming every poll anew; `--plot` draws
//! the distribution of the polls' times, a line per round.

use std::time::{Duration, Instant};

use client::bench::{FanoutReport, FanoutRound};
use client::wire::{PullQuery, Pulled, StartFrom};
use client::{Client, ClientError};
use indicatif::ProgressBar;
use tokio::task::JoinSet;

use crate::connections::{bounded, ensure_open_files, warm};
use crate::plot::{LineChart, PlotArgs};
use crate::report::{micros, percentiles_ms, progress_bar, rows_table, Measured};
use crate::{fresh_topic, BrokerArgs, Error};

/// The broker's gauge of the long polls waiting now (`GET /metrics`).
const WAITING_GAUGE: &str = "rumor_waiting_pulls";
/// How long a poll waits for the message, in ms: the API's cap, well past
/// [`ARM_DEADLINE`], so that no poll gives up while the others are armed.
const POLL_WAIT_MS: u64 = 60_000;
/// How long the polls may take until the gauge shows them all waiting.
const ARM_DEADLINE: Duration = Duration::from_secs(30);
/// How often the gauge is read while the polls are armed.
const GAUGE_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Subscribers, each long-polling on a connection of its own
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub subscribers: u64,
    /// Bytes of the payload
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Rounds, each arming every poll anew and publishing one message
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,
    /// The broker's process id (on this machine): report its resident
    /// memory while every poll waits
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// With --broker-pid: in each round, measure the broker's CPU over this
    /// many seconds while every poll waits, before the publish
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=50))]
    pub idle_seconds: u64,
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plot: PlotArgs,
}

/// A subscriber of the topic with a client (and so a connection) of its own.
struct Subscriber {
    id: String,
    client: Client,
}

/// What a poll's task yields: when the answer came, and the answer.
type Answer = (Instant, Result<Pulled, ClientError>);

/// What one round measured.
#[derive(Debug, Default)]
struct Outcome {
    /// From just before the publish to each poll that got the message, in µs.
    samples: Vec<i64>,
    errors: u64,
    first_error: Option<String>,
    /// The broker's resident memory with every poll waiting.
    rss_mb: Option<f64>,
    /// The broker's CPU while every poll waited, in % of one core.
    idle_cpu_percent: Option<f64>,
}

/// Everything the rounds share.
struct Fanout {
    setup: Client,
    topic: String,
    payload: String,
    subscribers: Vec<Subscriber>,
    broker_pid: Option<u32>,
    /// How long to measure the broker's CPU while every poll waits.
    idle: Duration,
    progress: ProgressBar,
}

/// Creates a fresh topic ([`fresh_topic`]) and registers the subscribers
/// (`<topic>-s<i>`), runs the rounds and reports, keeping each round's
/// times to answer.
pub async fn run(args: &FanoutArgs) -> Result<Measured<FanoutReport, Vec<Vec<i64>>>, Error> {
    ensure_open_files(args.subscribers)?;
    let setup = args.broker.client();
    let topic = fresh_topic(&setup).await?;
    let progress = progress_bar(args.subscribers.saturating_mul(args.rounds + 1));
    let subscribers = set_up_subscribers(&args.broker, &topic, args.subscribers, &progress).await?;
    let rss_idle_mb = args.broker_pid.map(rss_mb).transpose()?;
    let fanout = Fanout {
        setup,
        payload: "x".repeat(args.payload_bytes),
        topic,
        subscribers,
        broker_pid: args.broker_pid,
        idle: Duration::from_secs(args.idle_seconds),
        progress,
    };
    let mut outcomes = Vec::new();
    for _ in 0..args.rounds {
        outcomes.push(fanout.round().await?);
    }
    fanout.progress.finish_and_clear();
    let samples_us = outcomes.iter().map(|o| o.samples.clone()).collect();
    Ok(Measured {
        report: report(fanout.topic, args, rss_idle_mb, outcomes),
        samples_us,
    })
}

/// Registers `n` subscribers of `topic`, each with a client of its own,
/// a bounded number at a time.
async fn set_up_subscribers(
    broker: &BrokerArgs,
    topic: &str,
    n: u64,
    progress: &ProgressBar,
) -> Result<Vec<Subscriber>, ClientError> {
    let jobs = (0..n).map(|i| {
        let subscriber = Subscriber {
            id: format!("{topic}-s{i}"),
            client: broker.client(),
        };
        let (topic, progress) = (topic.to_string(), progress.clone());
        async move {
            let Subscriber { id, client } = &subscriber;
            client.register_subscriber(id).await?;
            client.subscribe(id, &topic, StartFrom::Earliest).await?;
            progress.inc(1);
            Ok(subscriber)
        }
    });
    bounded(jobs).await
}

impl Fanout {
    /// Arms every subscriber's poll, waits until the broker counts them all
    /// waiting, reads its memory, publishes once and collects the answers.
    async fn round(&self) -> Result<Outcome, Error> {
        warm(self.subscribers.iter().map(|s| s.client.clone())).await?;
        let mut polls = self.arm();
        let n = self.subscribers.len() as u64;
        wait_until_waiting(&self.setup, n, &mut polls).await?;
        let rss_mb = self.broker_pid.map(rss_mb).transpose()?;
        let idle_cpu_percent = match self.broker_pid {
            Some(pid) if !self.idle.is_zero() => Some(cpu_percent(pid, self.idle).await?),
            _ => None,
        };
        let published_at = Instant::now();
        let published = self
            .setup
            .publish(&self.topic, &self.topic, &self.payload)
            .await?;
        let mut outcome = Outcome {
            rss_mb,
            idle_cpu_percent,
            ..Outcome::default()
        };
        while let Some(joined) = polls.join_next().await {
            let (answered_at, answer) = joined.expect("a poll task does not panic");
            self.progress.inc(1);
            match only_message(answer, &published.id) {
                Ok(()) => {
                    let took = answered_at.saturating_duration_since(published_at);
                    outcome.samples.push(micros(took));
                }
                Err(why) => {
                    outcome.errors += 1;
                    outcome.first_error.get_or_insert(why);
                }
            }
        }
        Ok(outcome)
    }

    /// Starts every subscriber's long poll, each in a task of its own.
    fn arm(&self) -> JoinSet<Answer> {
        let query = PullQuery {
            topic: Some(self.topic.clone()),
            max: None,
            wait_ms: Some(POLL_WAIT_MS),
            auto_ack: Some(true),
        };
        let mut polls = JoinSet::new();
        for Subscriber { id, client } in &self.subscribers {
            let (id, client, query) = (id.clone(), client.clone(), query.clone());
            polls.spawn(async move {
                let answer = client.pull(&id, &query).await;
                (Instant::now(), answer)
            });
        }
        polls
    }
}

/// Reads the broker's waiting-pulls gauge until it counts `n` polls (other
/// clients' polls count too: run on a broker nobody else long-polls). A
/// poll that answers before the publish fails the run.
async fn wait_until_waiting(
    client: &Client,
    n: u64,
    polls: &mut JoinSet<Answer>,
) -> Result<(), Error> {
    let deadline = Instant::now() + ARM_DEADLINE;
    loop {
        if let Some(joined) = polls.try_join_next() {
            let (_, answer) = joined.expect("a poll task does not panic");
            let why = match answer {
                Ok(pulled) => format!("it answered {} messages", pulled.messages.len()),
                Err(error) => error.to_string(),
            };
            return Err(Error::Failed(format!(
                "a poll ended before the publish: {why}"
            )));
        }
        let metrics = client.metrics().await?;
        let waiting = gauge(&metrics, WAITING_GAUGE).ok_or_else(|| {
            Error::Failed(format!(
                "the broker's /metrics has no gauge {WAITING_GAUGE}"
            ))
        })?;
        if waiting >= n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "only {waiting} of {n} polls waiting after {ARM_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(GAUGE_EVERY).await;
    }
}

/// The value of the unlabelled metric `name` in Prometheus text.
fn gauge(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

/// Whether a poll answered with exactly the message `id`; if not, why not.
fn only_message(answer: Result<Pulled, ClientError>, id: &str) -> Result<(), String> {
    let pulled = answer.map_err(|error| error.to_string())?;
    match &pulled.messages[..] {
        [message] if message.id == id => Ok(()),
        messages => {
            let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
            Err(format!("answered {ids:?} instead of [{id:?}]"))
        }
    }
}

/// The CPU process `pid` uses over `period`, in % of one core.
async fn cpu_percent(pid: u32, period: Duration) -> Result<f64, Error> {
    let before = cpu_ticks(pid)?;
    tokio::time::sleep(period).await;
    let used = cpu_ticks(pid)?.saturating_sub(before);
    // SAFETY: sysconf(3) has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(100.0 * used as f64 / per_second / period.as_secs_f64())
}

/// User and system time process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, Error> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .map_err(|e| Error::Failed(format!("cannot read {path}: {e}")))?;
    stat_cpu_ticks(&stat).ok_or_else(|| Error::Failed(format!("{path} is not a stat line")))
}

/// utime + stime of a `/proc/<pid>/stat` line: fields 14 and 15, counted
/// after the command name in parentheses (which may hold spaces).
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory (VmRSS) of process `pid`, in MB of 1024 kB.
fn rss_mb(pid: u32) -> Result<f64, Error> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .map_err(|e| Error::Failed(format!("cannot read {path}: {e}")))?;
    vm_rss_mb(&status).ok_or_else(|| Error::Failed(format!("{path} has no VmRSS line")))
}

/// The VmRSS line of `/proc/<pid>/status` (`VmRSS:   1234 kB`), in MB.
fn vm_rss_mb(status: &str) -> Option<f64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb as f64 / 1024.0)
}

/// The report of the rounds' `outcomes`.
fn report(
    topic: String,
    args: &FanoutArgs,
    rss_idle_mb: Option<f64>,
    outcomes: Vec<Outcome>,
) -> FanoutReport {
    let reach_all_us = outcomes.iter().filter_map(|o| o.samples.iter().max());
    let reach_all_ms = percentiles_ms(reach_all_us.copied().collect()).map(|p| p.p50);
    let rss_mb = outcomes.iter().filter_map(|o| o.rss_mb).reduce(f64::max);
    let idle_cpu_percent = outcomes
        .iter()
        .filter_map(|o| o.idle_cpu_percent)
        .reduce(f64::max);
    let errors = outcomes.iter().map(|o| o.errors).sum();
    let first_error = outcomes.iter().find_map(|o| o.first_error.clone());
    let rounds = outcomes
        .into_iter()
        .map(|o| FanoutRound {
            received: o.samples.len() as u64,
            errors: o.errors,
            latency_ms: percentiles_ms(o.samples),
        })
        .collect();
    FanoutReport {
        topic,
        subscribers: args.subscribers,
        payload_bytes: args.payload_bytes as u64,
        rss_idle_mb,
        rss_mb,
        idle_cpu_percent,
        rounds,
        reach_all_ms,
        errors,
        first_error,
    }
}

/// Fails when any poll failed.
pub fn verdict(report: &FanoutReport) -> Result<(), Error> {
    if report.errors == 0 {
        return Ok(());
    }
    let polls = report.subscribers * report.rounds.len() as u64;
    let first = report.first_error.as_deref().unwrap_or("?");
    Err(Error::Failed(format!(
        "{} of {polls} polls failed; the first: {first}",
        report.errors
    )))
}

/// The chart of `--plot`: per round, the distribution of the polls' times
/// from the publish to their answer (its maximum is the time to reach all).
pub fn chart(run: &Measured<FanoutReport, Vec<Vec<i64>>>) -> LineChart {
    let r = &run.report;
    let reach_all = match r.reach_all_ms {
        Some(ms) => format!("{ms:.1} ms"),
        None => "-".to_string(),
    };
    let title = format!(
        "bench fanout: publish to each waiting poll's answer ({} subscribers, reach all {reach_all})",
        r.subscribers
    );
    let names: Vec<String> = (1..=run.samples_us.len())
        .map(|round| format!("round {round}"))
        .collect();
    let rounds: Vec<(&str, &[i64])> = names
        .iter()
        .zip(&run.samples_us)
        .map(|(name, samples)| (name.as_str(), samples.as_slice()))
        .collect();
    LineChart::latency_distribution(&title, &rounds)
}

/// The report as plain text: the topic, a row per round, then the time to
/// reach all and the broker's memory.
pub fn table(report: &FanoutReport) -> String {
    const COLUMNS: [&str; 3] = ["round", "received", "errors"];
    let rows = report.rounds.iter().enumerate().map(|(i, round)| {
        let cells = [i as u64 + 1, round.received, round.errors].map(|n| n.to_string());
        (cells.to_vec(), round.latency_ms.as_ref())
    });
    let title = format!(
        "topic: {} ({} subscribers)",
        report.topic, report.subscribers
    );
    let mut text = rows_table(&title, &COLUMNS, rows.collect());
    let reach_all = match report.reach_all_ms {
        Some(ms) => format!("{ms:.3} ms"),
        None => "-".to_string(),
    };
    text += &format!("reach all (median of the rounds' max): {reach_all}\n");
    if let (Some(idle), Some(waiting)) = (report.rss_idle_mb, report.rss_mb) {
        text +=
            &format!("broker RSS: {idle:.1} MB idle, {waiting:.1} MB with every poll waiting\n");
    }
    if let Some(cpu) = report.idle_cpu_percent {
        text += &format!(
            "broker CPU while every poll waited: {cpu:.2}% of a core (most of the rounds)\n"
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_reads_the_value_of_the_named_metric() {
        let metrics = "# HELP rumor_waiting_pulls Long polls.\n\
                       # TYPE rumor_waiting_pulls gauge\n\
                       rumor_waiting_pulls 17\n\
                       rumor_waiting_pulls_other 3\n";
        assert_eq!(gauge(metrics, "rumor_waiting_pulls"), Some(17));
        assert_eq!(gauge(metrics, "rumor_waiting"), None);
        assert_eq!(gauge("", "rumor_waiting_pulls"), None);
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime_after_the_command_name() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 10 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(12));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn vm_rss_is_read_in_megabytes() {
        let status = "Name:\tbroker\nVmHWM:\t  4096 kB\nVmRSS:\t  2560 kB\nThreads:\t5\n";
        assert_eq!(vm_rss_mb(status), Some(2.5));
        assert_eq!(vm_rss_mb("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn rss_of_this_process_is_more_than_nothing() {
        let mb = rss_mb(std::process::id()).expect("our own /proc status");
        assert!(mb > 0.0, "{mb}");
    }

    #[test]
    fn an_answer_counts_only_with_exactly_the_published_message() {
        let empty = Pulled {
            messages: Vec::new(),
            cursor: String::new(),
        };
        let why = only_message(Ok(empty), "h:1/9").expect_err("no message");
        assert!(why.contains("[] instead of [\"h:1/9\"]"), "{why}");
        let refused = ClientError::Api {
            status: 404,
            code: "not_subscribed".to_string(),
            message: "no".to_string(),
        };
        let why = only_message(Err(refused), "h:1/9").expect_err("an error");
        assert!(why.contains("not_subscribed"), "{why}");
    }

    #[test]
    fn report_takes_the_median_of_the_rounds_slowest_polls() {
        let args = FanoutArgs {
            broker: BrokerArgs {
                host: "h".to_string(),
                port: 1,
                token_file: None,
                token: None,
            },
            subscribers: 2,
            payload_bytes: 10,
            rounds: 3,
            broker_pid: None,
            idle_seconds: 0,
            json: true,
            plot: PlotArgs { plot: None },
        };
        let round = |samples: Vec<i64>, rss_mb| Outcome {
            samples,
            rss_mb,
            ..Outcome::default()
        };
        let failed = Outcome {
            samples: vec![1000],
            errors: 1,
            first_error: Some("timed out".to_string()),
            rss_mb: Some(30.0),
            idle_cpu_percent: None,
        };
        let outcomes = vec![
            round(vec![1000, 5000], Some(20.0)),
            round(vec![2000, 3000], Some(40.0)),
            failed,
        ];
        let report = report("t".to_string(), &args, Some(10.0), outcomes);
        assert_eq!(report.reach_all_ms, Some(3.0));
        assert_eq!(
            (report.rss_idle_mb, report.rss_mb),
            (Some(10.0), Some(40.0))
        );
        assert_eq!(report.errors, 1);
        assert_eq!(report.rounds[2].received, 1);
        let error = verdict(&report).expect_err("a poll failed");
        assert_eq!(
            error.to_string(),
            "1 of 6 polls failed; the first: timed out"
        );
        let text = table(&report);
        assert!(
            text.starts_with("topic: t (2 subscribers)\nround"),
            "{text}"
        );
        assert!(text.contains("reach all (median of the rounds' max): 3.000 ms\n"));
        assert!(text.ends_with("broker RSS: 10.0 MB idle, 40.0 MB with every poll waiting\n"));
    }
}
