//! `bench failover`: what clients see while brokers die. The bench starts
//! a three-broker cluster of its own (`cluster`), runs a steady publish and
//! pull load through failover clients over all three (`load`), kills the
//! leader and later a follower with SIGKILL and restarts each (`faults`),
//! then stops every broker and reports, per second, acknowledged publishes
//! and deliveries with their latency from each message's offer, and the
//! longest times without an acknowledged publish and without a delivery,
//! over the run and from each fault to the next (`timeline`). The delivery
//! logs (`sent.log`, `received.log`) are written as `publisher --log` and
//! `subscriber --log` write them and checked as `bench check` checks them;
//! the run fails when the check does.

mod cluster;
mod faults;
mod load;
mod timeline;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use client::bench::{FailoverEvent, FailoverReport, FailoverSecond, Gap};
use client::delivery::{CheckReport, Record};
use client::PeerAddr;

use self::cluster::{Cluster, Settings};
use self::faults::Happened;
use self::load::{Acked, Clock, Deliveries, Publisher, Stream, Subscriber, Taken};
use self::timeline::{longest_quiet, offered_us, per_second, Quiet, Sample};
use crate::check::{self, Logs};
use crate::plot::{LineChart, Panel, PlotArgs, Scale, Series};
use crate::report::{micros, percentiles_ms, Measured};
use crate::{unique_name, Error};

#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// The cluster's mode
    #[arg(long, value_enum, default_value_t = Mode::Gossip)]
    pub mode: Mode,
    /// The brokers' --durability
    #[arg(long, value_enum, default_value_t = Durability::Fsync)]
    pub durability: Durability,
    /// The broker program to start [default: `broker` beside this program]
    #[arg(long, value_name = "PATH")]
    pub broker_bin: Option<PathBuf>,
    /// Run the brokers on 127.0.0.1 ports P, P+1 and P+2 [default: three free ports]
    #[arg(long, value_name = "P")]
    pub base_port: Option<u16>,
    /// Messages offered per second
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// How long to offer messages, in seconds: the leader is killed at 1/5
    /// of it and restarted at 2/5, a follower killed at 3/5 and restarted
    /// at 4/5
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub seconds: u64,
    /// Keep the delivery logs (sent.log, received.log: `bench check` reads
    /// them) and the brokers' logs in DIR [default: a temporary directory,
    /// removed at the end]
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub plot: PlotArgs,
}

/// The brokers' `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Gossip,
    Leader,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Gossip => "gossip",
            Mode::Leader => "leader",
        }
    }

    /// The longest time without an acknowledged publish or a delivery
    /// that a fault may cause: a gossip broker takes publishes alone, a
    /// leader-mode cluster must notice the loss and elect first.
    fn gap_target(self) -> Duration {
        match self {
            Mode::Gossip => Duration::from_secs(2),
            Mode::Leader => Duration::from_secs(4),
        }
    }
}

/// The brokers' `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    Fsync,
    Normal,
}

impl Durability {
    fn name(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Normal => "normal",
        }
    }
}

/// What a run gathered, before it is summed up.
struct Run {
    /// The brokers in the order the clients try them.
    brokers: Vec<PeerAddr>,
    acked: Vec<Acked>,
    deliveries: Deliveries,
    faults: Vec<Happened>,
}

/// Runs the cluster, the load and the faults; every broker is stopped
/// before this returns, also on an error or Ctrl-C. Writes the delivery
/// logs and checks them.
pub async fn run(args: &FailoverArgs) -> Result<Measured<FailoverReport, ()>, Error> {
    let program = broker_program(args.broker_bin.as_deref())?;
    let scratch = tempfile::tempdir()
        .map_err(|e| Error::Failed(format!("cannot make a temporary directory: {e}")))?;
    let log_dir = args.log_dir.as_deref().unwrap_or(scratch.path());
    if !log_dir.is_dir() {
        return Err(Error::Usage(format!(
            "--log-dir {}: no such directory",
            log_dir.display()
        )));
    }
    let run = tokio::select! {
        run = measure(args, &program, scratch.path(), log_dir) => run?,
        // Without a handler (`Err`), the run goes on without one.
        Ok(()) = tokio::signal::ctrl_c() => return Err(Error::Failed("interrupted".to_string())),
    };
    let logs = delivery_logs(&run);
    write_logs(log_dir, &logs)?;
    Ok(Measured {
        report: report(args, &run, check::analyse(&logs)),
        samples_us: (),
    })
}

/// `--broker-bin`, or `broker` beside this program; it must exist.
fn broker_program(given: Option<&Path>) -> Result<PathBuf, Error> {
    let program = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| Error::Usage(format!("cannot find this program's directory: {e}")))?
            .with_file_name("broker"),
    };
    if program.is_file() {
        Ok(program)
    } else {
        Err(Error::Usage(format!(
            "no broker program at {} (give --broker-bin)",
            program.display()
        )))
    }
}

/// Starts the cluster, sets up the clients with the leader first in their
/// list, then runs the load and the faults at once.
async fn measure(
    args: &FailoverArgs,
    program: &Path,
    data_dir: &Path,
    log_dir: &Path,
) -> Result<Run, Error> {
    let settings = Settings {
        program,
        base_port: args.base_port,
        mode: args.mode.name(),
        durability: args.durability.name(),
        data_dir,
        log_dir,
    };
    let mut cluster = Cluster::start(&settings).await?;
    let brokers = leader_first(cluster.addresses(), &cluster.agreed_leader().await?);
    let stream = Stream {
        topic: unique_name(),
        rate: args.rate,
        total: u64::from(args.rate) * args.seconds,
    };
    let mut publisher = Publisher::ready(&brokers, &stream).await?;
    let subscriber = Subscriber::ready(&brokers, &stream.topic).await?;
    let clock = Clock::start();
    let published = OnceLock::<HashSet<String>>::new();
    let (acked, deliveries, faults) = tokio::try_join!(
        publisher.run(&clock, &published),
        subscriber.run(&clock, &published),
        faults::inject(&mut cluster, &brokers, args.seconds, &clock),
    )?;
    Ok(Run {
        brokers,
        acked,
        deliveries,
        faults,
    })
}

/// The brokers with `leader` moved to the front: the clients start on the
/// leader, so that killing it makes them fail over.
fn leader_first(mut brokers: Vec<PeerAddr>, leader: &str) -> Vec<PeerAddr> {
    if let Some(at) = brokers.iter().position(|b| b.id() == leader) {
        let first = brokers.remove(at);
        brokers.insert(0, first);
    }
    brokers
}

/// The run's `sent` and `received` records, as `bench check` reads them.
fn delivery_logs(run: &Run) -> Logs {
    Logs {
        sent: run.acked.iter().map(|a| a.record.clone()).collect(),
        received: run
            .deliveries
            .taken
            .iter()
            .map(|t| t.record.clone())
            .collect(),
    }
}

/// Writes `sent.log` and `received.log` into `dir`, replacing them.
fn write_logs(dir: &Path, logs: &Logs) -> Result<(), Error> {
    let sent = logs.sent.iter().cloned().map(Record::Sent);
    let received = logs.received.iter().cloned().map(Record::Received);
    write_log(&dir.join("sent.log"), sent)?;
    write_log(&dir.join("received.log"), received)
}

fn write_log(path: &Path, records: impl Iterator<Item = Record>) -> Result<(), Error> {
    let mut text = String::new();
    for record in records {
        let line = serde_json::to_string(&record).expect("records are strings and numbers");
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text)
        .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))
}

/// Sums the run up.
fn report(args: &FailoverArgs, run: &Run, check: CheckReport) -> FailoverReport {
    let rate = args.rate;
    let publishes: Vec<Sample> = run
        .acked
        .iter()
        .map(|a| sample(a.acked_us, a.n, rate))
        .collect();
    let deliveries = first_deliveries(&run.deliveries.taken, rate);
    let end_us = micros(Duration::from_secs(args.seconds));
    let gaps = Gaps::of(&publishes, &deliveries, end_us);
    let target_ms = millis(micros(args.mode.gap_target()));
    let (publish_gap, delivery_gap) = gaps.over(0..i64::MAX);
    FailoverReport {
        mode: args.mode.name().to_string(),
        durability: args.durability.name().to_string(),
        rate,
        seconds: args.seconds,
        brokers: run.brokers.iter().map(PeerAddr::id).collect(),
        offered: u64::from(rate) * args.seconds,
        acknowledged: run.acked.len() as u64,
        delivered: deliveries.len() as u64,
        redelivered: run.deliveries.redelivered,
        slowest_delivery: slowest(&deliveries),
        stored_twice: load::stored_twice(&run.deliveries.taken),
        per_second: seconds(&publishes, &deliveries, args.seconds),
        events: events(&run.faults, &gaps),
        gap_target_ms: target_ms,
        gap_target_met: publish_gap.ms < target_ms && delivery_gap.ms < target_ms,
        longest_publish_gap: publish_gap,
        longest_delivery_gap: delivery_gap,
        check,
    }
}

/// The first delivery of each message: a message stored twice (under two
/// ids) is delivered twice, and the copy counts apart (`stored_twice`).
fn first_deliveries(taken: &[Taken], rate: u32) -> Vec<Sample> {
    let mut delivered = HashSet::new();
    taken
        .iter()
        .filter_map(|t| Some((t.n?, t.received_us)))
        .filter(|&(n, _)| delivered.insert(n))
        .map(|(n, received_us)| sample(received_us, n, rate))
        .collect()
}

/// The sample longest after its message's offer, as a gap from the offer.
fn slowest(samples: &[Sample]) -> Gap {
    let slowest = samples.iter().max_by_key(|s| s.latency_us);
    let (from_us, to_us) = slowest.map_or((0, 0), |s| (s.at_us - s.latency_us, s.at_us));
    gap(Quiet { from_us, to_us })
}

/// An acknowledgement or delivery at `at_us` of message `n`.
fn sample(at_us: i64, n: u64, rate: u32) -> Sample {
    Sample {
        at_us,
        latency_us: at_us - offered_us(n, rate),
    }
}

/// The times of acknowledgements and of deliveries, sorted.
struct Gaps {
    publishes: Vec<i64>,
    deliveries: Vec<i64>,
    end_us: i64,
}

impl Gaps {
    fn of(publishes: &[Sample], deliveries: &[Sample], end_us: i64) -> Gaps {
        let sorted = |samples: &[Sample]| {
            let mut times: Vec<i64> = samples.iter().map(|s| s.at_us).collect();
            times.sort_unstable();
            times
        };
        Gaps {
            publishes: sorted(publishes),
            deliveries: sorted(deliveries),
            end_us,
        }
    }

    /// The longest gaps without an acknowledged publish and without a
    /// delivery that overlap `window`.
    fn over(&self, window: std::ops::Range<i64>) -> (Gap, Gap) {
        let gap = |times: &[i64]| gap(longest_quiet(times, self.end_us, window.clone()));
        (gap(&self.publishes), gap(&self.deliveries))
    }
}

fn gap(quiet: Quiet) -> Gap {
    Gap {
        from_s: quiet.from_us as f64 / 1e6,
        ms: millis(quiet.length_us()),
    }
}

fn millis(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// Each fault with the longest gaps from it to the next one (or the end).
fn events(faults: &[Happened], gaps: &Gaps) -> Vec<FailoverEvent> {
    let ends = faults.iter().skip(1).map(|f| f.at_us).chain([i64::MAX]);
    faults
        .iter()
        .zip(ends)
        .map(|(fault, end)| {
            let (publish_gap, delivery_gap) = gaps.over(fault.at_us..end);
            FailoverEvent {
                event: fault.fault.name().to_string(),
                broker: fault.broker.clone(),
                at_s: fault.at_us as f64 / 1e6,
                publish_gap,
                delivery_gap,
            }
        })
        .collect()
}

/// One row per second of acknowledgements and deliveries.
fn seconds(publishes: &[Sample], deliveries: &[Sample], seconds: u64) -> Vec<FailoverSecond> {
    let publishes = per_second(publishes, seconds);
    let deliveries = per_second(deliveries, seconds);
    let rows = publishes.len().max(deliveries.len());
    let at = |rows: &[Vec<i64>], second: usize| rows.get(second).cloned().unwrap_or_default();
    (0..rows)
        .map(|second| {
            let (published, delivered) = (at(&publishes, second), at(&deliveries, second));
            FailoverSecond {
                second: second as u64,
                acknowledged: published.len() as u64,
                delivered: delivered.len() as u64,
                publish_latency_ms: percentiles_ms(published),
                delivery_latency_ms: percentiles_ms(delivered),
            }
        })
        .collect()
}

/// The report as plain text: the run, a row per second, a row per fault,
/// the longest gaps against the target, the counts and the check.
pub fn table(report: &FailoverReport) -> String {
    [
        heading(report),
        seconds_table(&report.per_second),
        events_table(&report.events),
        gaps_text(report),
        counts_text(report),
        check::table(&report.check),
    ]
    .join("\n")
}

fn heading(report: &FailoverReport) -> String {
    format!(
        "bench failover: {} mode, durability {}, {} msg/s for {} s\nbrokers, in the order the clients try them: {}\n",
        report.mode,
        report.durability,
        report.rate,
        report.seconds,
        report.brokers.join(", ")
    )
}

fn seconds_table(rows: &[FailoverSecond]) -> String {
    let header = [
        "second",
        "acked",
        "delivered",
        "publish_p50_ms",
        "publish_p99_ms",
        "delivery_p50_ms",
        "delivery_p99_ms",
    ];
    let mut lines = vec![header.map(String::from).to_vec()];
    lines.extend(rows.iter().map(|row| {
        let mut cells: Vec<String> = [row.second, row.acknowledged, row.delivered]
            .map(|n| n.to_string())
            .to_vec();
        for latency in [&row.publish_latency_ms, &row.delivery_latency_ms] {
            let p50_p99 = latency.as_ref().map(|l| [l.p50, l.p99]);
            cells.extend(match p50_p99 {
                Some(ms) => ms.map(|ms| format!("{ms:.3}")),
                None => ["-", "-"].map(String::from),
            });
        }
        cells
    }));
    crate::report::table(&lines)
}

fn events_table(events: &[FailoverEvent]) -> String {
    let header = [
        "event",
        "broker",
        "at_s",
        "publish_gap_ms",
        "delivery_gap_ms",
    ];
    let mut lines = vec![header.map(String::from).to_vec()];
    lines.extend(events.iter().map(|e| {
        vec![
            e.event.clone(),
            e.broker.clone(),
            format!("{:.2}", e.at_s),
            format!("{:.1}", e.publish_gap.ms),
            format!("{:.1}", e.delivery_gap.ms),
        ]
    }));
    crate::report::table(&lines)
}

fn gaps_text(report: &FailoverReport) -> String {
    let gap = |g: &Gap| format!("{:.1} ms from {:.2} s", g.ms, g.from_s);
    let verdict = if report.gap_target_met {
        "met"
    } else {
        "NOT met"
    };
    format!(
        "longest gap without an acknowledged publish: {}\nlongest gap without a delivery: {}\ntarget ({} mode): both below {:.0} ms: {verdict}\nslowest delivery: {:.1} ms after its offer at {:.2} s\n",
        gap(&report.longest_publish_gap),
        gap(&report.longest_delivery_gap),
        report.mode,
        report.gap_target_ms,
        report.slowest_delivery.ms,
        report.slowest_delivery.from_s,
    )
}

fn counts_text(report: &FailoverReport) -> String {
    format!(
        "offered {}, acknowledged {}, delivered {}, redelivered {}, stored twice {}\n",
        report.offered,
        report.acknowledged,
        report.delivered,
        report.redelivered,
        report.stored_twice
    )
}

/// The chart of `--plot`: acknowledged publishes and deliveries per
/// second above their p99 latency, against seconds since the load
/// started, each fault a vertical line.
pub fn chart(run: &Measured<FailoverReport, ()>) -> LineChart {
    let report = &run.report;
    let series = |name: &str, y: fn(&FailoverSecond) -> Option<f64>| Series {
        name: name.to_string(),
        // Each second's figure in the middle of its second.
        points: report
            .per_second
            .iter()
            .filter_map(|row| Some((row.second as f64 + 0.5, y(row)?)))
            .collect(),
    };
    let throughput = vec![
        series("acknowledged publishes", |r| Some(r.acknowledged as f64)),
        series("deliveries", |r| Some(r.delivered as f64)),
    ];
    let latency = vec![
        series("publish p99", |r| {
            r.publish_latency_ms.as_ref().map(|l| l.p99)
        }),
        series("delivery p99", |r| {
            r.delivery_latency_ms.as_ref().map(|l| l.p99)
        }),
    ];
    LineChart {
        title: format!(
            "bench failover: {} mode, {} msg/s, the leader then a follower killed and restarted",
            report.mode, report.rate
        ),
        x_label: "seconds since the load started".to_string(),
        x_scale: Scale::Linear,
        panels: vec![
            with_events("per second", throughput, &report.events),
            with_events("latency from offer (ms)", latency, &report.events),
        ],
    }
}

/// A panel of `series`, and a vertical line up to their highest point at
/// each event.
fn with_events(y_label: &str, mut series: Vec<Series>, events: &[FailoverEvent]) -> Panel {
    let points = series.iter().flat_map(|s| &s.points);
    let top = points.map(|&(_, y)| y).fold(1.0, f64::max);
    series.extend(events.iter().map(|e| Series {
        name: format!("{} ({:.1} s)", e.event, e.at_s),
        points: vec![(e.at_s, 0.0), (e.at_s, top)],
    }));
    Panel {
        y_label: y_label.to_string(),
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Failover {
        #[command(flatten)]
        args: FailoverArgs,
    }

    #[test]
    fn runs_last_at_least_five_seconds_at_a_positive_rate() {
        let parse = |args: &[&str]| Failover::try_parse_from([&["failover"], args].concat());
        let defaults = parse(&[]).unwrap().args;
        assert_eq!((defaults.rate, defaults.seconds), (500, 30));
        assert_eq!(defaults.mode, Mode::Gossip);
        assert!(parse(&["--seconds", "4"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
        assert_eq!(
            parse(&["--mode", "leader"]).unwrap().args.mode,
            Mode::Leader
        );
    }

    #[test]
    fn clients_start_on_the_leader() {
        let brokers: Vec<PeerAddr> = [1, 2, 3]
            .map(|port| PeerAddr {
                host: "h".to_string(),
                port,
            })
            .to_vec();
        let ports = |brokers: Vec<PeerAddr>| brokers.iter().map(|b| b.port).collect::<Vec<_>>();
        assert_eq!(ports(leader_first(brokers.clone(), "h:3")), [3, 1, 2]);
        assert_eq!(ports(leader_first(brokers, "h:9")), [1, 2, 3]);
    }

    fn report() -> FailoverReport {
        let gap = |from_s, ms| Gap { from_s, ms };
        let event = |event: &str, at_s| FailoverEvent {
            event: event.to_string(),
            broker: "h:3".to_string(),
            at_s,
            publish_gap: gap(at_s, 800.0),
            delivery_gap: gap(at_s, 900.0),
        };
        let second = |second, n| FailoverSecond {
            second,
            acknowledged: n,
            delivered: n,
            publish_latency_ms: percentiles_ms(vec![1000, 3000]),
            delivery_latency_ms: None,
        };
        FailoverReport {
            mode: "gossip".to_string(),
            durability: "fsync".to_string(),
            rate: 100,
            seconds: 5,
            brokers: vec!["h:3".to_string(), "h:1".to_string(), "h:2".to_string()],
            offered: 500,
            acknowledged: 500,
            delivered: 500,
            redelivered: 3,
            slowest_delivery: gap(2.0, 1500.0),
            stored_twice: 0,
            per_second: (0..5).map(|s| second(s, 100)).collect(),
            events: vec![event("kill leader", 1.0), event("restart old leader", 2.0)],
            longest_publish_gap: gap(1.0, 800.0),
            longest_delivery_gap: gap(1.0, 900.0),
            gap_target_ms: 2000.0,
            gap_target_met: true,
            check: CheckReport {
                sent: 500,
                subscribers: Vec::new(),
            },
        }
    }

    #[test]
    fn table_has_a_row_per_second_and_per_event() {
        let text = table(&report());
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let at = |first: &str| {
            lines
                .iter()
                .position(|l| l.first() == Some(&first))
                .unwrap()
        };
        let seconds = at("second");
        assert_eq!(
            lines[seconds + 1],
            ["0", "100", "100", "1.000", "3.000", "-", "-"]
        );
        assert_eq!(lines[seconds + 5][0], "4");
        let events = at("event");
        assert_eq!(
            lines[events + 1],
            ["kill", "leader", "h:3", "1.00", "800.0", "900.0"]
        );
        assert!(text.contains("both below 2000 ms: met"), "{text}");
        assert!(text.contains("redelivered 3, stored twice 0"), "{text}");
        assert!(
            text.contains("slowest delivery: 1500.0 ms after its offer at 2.00 s"),
            "{text}"
        );
    }

    #[test]
    fn chart_marks_each_event_in_both_panels() {
        let run = Measured {
            report: report(),
            samples_us: (),
        };
        let chart = chart(&run);
        let [throughput, latency] = &chart.panels[..] else {
            panic!("two panels: {chart:?}");
        };
        assert_eq!(throughput.series[0].points[0], (0.5, 100.0));
        assert_eq!(throughput.series[2].name, "kill leader (1.0 s)");
        assert_eq!(throughput.series[2].points, [(1.0, 0.0), (1.0, 100.0)]);
        assert_eq!(latency.series.len(), 4);
        assert_eq!(latency.series[0].points[0], (0.5, 3.0));
    }

    #[test]
    fn a_message_stored_twice_counts_its_first_delivery_only() {
        let taken = |n, received_us| load::taken(n, &format!("o/{received_us}"), received_us);
        let all = [
            taken(Some(0), 10),
            taken(Some(1), 3_000),
            taken(Some(0), 9_000),
        ];
        let samples = first_deliveries(&all, 1000);
        let at = |at_us, latency_us| Sample { at_us, latency_us };
        assert_eq!(samples, [at(10, 10), at(3_000, 2_000)]);
        assert!(first_deliveries(&[taken(None, 5)], 1000).is_empty());
    }

    #[test]
    fn the_slowest_delivery_runs_from_its_offer() {
        let at = |at_us, latency_us| Sample { at_us, latency_us };
        let samples = [at(1_000, 10), at(3_000_000, 2_000_000), at(4_000_000, 5)];
        let found = slowest(&samples);
        assert_eq!((found.from_s, found.ms), (1.0, 2000.0));
        assert_eq!(slowest(&[]).ms, 0.0);
    }

    #[test]
    fn each_event_gets_the_longest_gaps_until_the_next() {
        let happened = |at_us| Happened {
            fault: faults::Fault::KillLeader,
            broker: "h:3".to_string(),
            at_us,
        };
        let at = |at_us| Sample {
            at_us,
            latency_us: 0,
        };
        let publishes = [at(100), at(1_000), at(2_900), at(3_000)];
        let gaps = Gaps::of(&publishes, &publishes[..1], 3_000);
        let events = events(&[happened(1_500), happened(2_950)], &gaps);
        assert_eq!(
            (events[0].publish_gap.ms, events[0].publish_gap.from_s),
            (1.9, 0.001)
        );
        assert_eq!(events[1].publish_gap.ms, 0.1);
        assert_eq!(events[1].delivery_gap.ms, 2.9);
    }
}
