//! The `bench` program: benchmark tools for rumor. `bench check` is the
//! delivery checker (see [`check`]), `bench publish` measures publish
//! throughput (see [`publish`]) and `bench latency` publish-to-delivery
//! latency (see [`latency`]; with `--redis`, that of Redis streams through
//! the same harness, see [`redis_streams`]). `bench fanout` times one message reaching
//! many waiting long polls (see [`fanout`]), `bench pingpong` round trips
//! through two topics (see [`pingpong`]), `bench sweep` publish
//! throughput and latency as the number of clients grows (see [`sweep`]),
//! `bench queue` a work queue drained by one worker and by many (see
//! [`queue`]) and `bench failover` a steady load through a cluster of its
//! own while its leader and then a follower die and come back (see
//! [`failover`]).
//!
//! Exit codes: 0 when every check passes, 1 when a check fails or a broker
//! call fails or a `--plot` chart cannot be written (one line on stderr
//! says what), 2 on bad arguments (also a `--plot` file that is neither
//! .svg nor .png, or in no existing directory) or unreadable or malformed
//! input.

pub mod check;
pub mod connections;
pub mod failover;
pub mod fanout;
pub mod latency;
pub mod lean;
pub mod pingpong;
pub mod plot;
pub mod publish;
pub mod queue;
pub mod redis_streams;
pub mod report;
pub mod sweep;

use std::future::Future;
use std::path::PathBuf;

use client::connect::Token;
use client::delivery::{unix_ms, CheckReport};
use client::{Client, ClientError, Connect, PeerAddr};
use report::Measured;

/// Benchmark tools for rumor.
#[derive(Debug, clap::Parser)]
#[command(name = "bench", version, arg_required_else_help = false)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check delivery logs (`publisher --log`, `subscriber --log`): per
    /// subscriber, what was lost, duplicated, out of order or changed, and
    /// the latency from send to receipt
    Check(CheckArgs),
    /// Publish messages from concurrent connections to a fresh topic and
    /// report throughput and per-request latency
    Publish(publish::PublishArgs),
    /// Publish at a fixed rate while one subscriber long-polls, and report
    /// the latency from publish to delivery (or the same with Redis streams)
    #[command(
        override_usage = "bench latency --host <HOST> --port <PORT> [OPTIONS]\n       bench latency --redis <HOST:PORT> [OPTIONS]"
    )]
    Latency(latency::LatencyArgs),
    /// Let many subscribers long-poll at once, publish one message, and
    /// report the time until every one of them has it
    Fanout(fanout::FanoutArgs),
    /// Send one message at a time through a ping topic and back through a
    /// pong topic, and report the round-trip time
    Pingpong(pingpong::PingPongArgs),
    /// Publish in a closed loop from more and more concurrent clients, and
    /// report throughput and per-request latency at each step
    Sweep(sweep::SweepArgs),
    /// Drain a work queue (a shared subscription) with one worker, then
    /// with many, each message taking --work-ms, and report both rates
    Queue(queue::QueueArgs),
    /// Start a three-broker cluster, publish and pull at a steady rate
    /// while its leader and then a follower are killed and restarted, and
    /// report throughput, latency and the longest gaps per second and
    /// around each fault; check that nothing was lost
    Failover(failover::FailoverArgs),
}

impl Command {
    /// The broker a benchmark runs against (`check` has none, nor `latency
    /// --redis`; `failover` starts its own).
    fn broker(&mut self) -> Option<&mut BrokerArgs> {
        match self {
            Command::Check(_) | Command::Failover(_) => None,
            Command::Publish(args) => Some(&mut args.broker),
            Command::Latency(args) => args.broker.as_mut(),
            Command::Fanout(args) => Some(&mut args.broker),
            Command::Pingpong(args) => Some(&mut args.broker),
            Command::Sweep(args) => Some(&mut args.broker),
            Command::Queue(args) => Some(&mut args.broker),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print the report as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
    /// Sent and received log files, in any order
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// `--host <HOST> --port <PORT>`: the broker to benchmark (plain HTTP),
/// and the client token, if it needs one.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Broker host
    #[arg(long)]
    pub host: String,
    /// Broker port
    #[arg(long)]
    pub port: u16,
    /// Read the client token from FILE [default: the RUMOR_TOKEN environment variable]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The token of `--token-file` or `RUMOR_TOKEN`, read once by `run`.
    #[arg(skip)]
    pub token: Option<Token>,
}

impl BrokerArgs {
    /// A new client (its own keep-alive connections) for the broker.
    pub fn client(&self) -> Client {
        let broker = PeerAddr {
            host: self.host.clone(),
            port: self.port,
        };
        let connect = match &self.token {
            Some(token) => Connect::default().token(token.clone()),
            None => Connect::default(),
        };
        Client::to(&broker, &connect).expect("a plain-HTTP client always builds")
    }

    /// This broker with `host` and `port` replaced where given: the broker
    /// of a second client (a subscriber, the pong side) that defaults to
    /// the first's.
    pub fn overridden_by(&self, host: Option<&String>, port: Option<u16>) -> BrokerArgs {
        BrokerArgs {
            host: host.unwrap_or(&self.host).clone(),
            port: port.unwrap_or(self.port),
            ..self.clone()
        }
    }
}

/// `HOST:PORT` as an address (a broker's, Redis's) (the port after the last colon).
pub fn parse_host_port(text: &str) -> Result<PeerAddr, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{port:?} is no port (1-65535)"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("{text:?} is not HOST:PORT"));
    }
    Ok(PeerAddr {
        host: host.to_string(),
        port,
    })
}

/// Why the program failed; the text is its one error line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that cannot be read or parsed.
    #[error(transparent)]
    Input(#[from] check::InputError),
    /// An argument that cannot be used, found before the run.
    #[error("{0}")]
    Usage(String),
    /// A token file or `RUMOR_TOKEN` that cannot be used.
    #[error("{0}")]
    Token(String),
    /// A check that did not pass.
    #[error("{0}")]
    Failed(String),
    /// A broker call that failed during a benchmark.
    #[error(transparent)]
    Broker(#[from] ClientError),
    /// A `--plot` file of unknown format, or a chart that cannot be drawn.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    /// A Redis command that failed during `bench latency --redis`.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) | Error::Usage(_) | Error::Token(_) => 2,
            Error::Failed(_) | Error::Broker(_) | Error::Redis(_) => 1,
            Error::Plot(error) => error.exit_code(),
        }
    }
}

/// Runs the program, printing its report on stdout.
pub async fn run(mut cli: Cli) -> Result<(), Error> {
    if let Some(broker) = cli.command.broker() {
        broker.token = client::cli::token(broker.token_file.as_deref())
            .map_err(|e| Error::Token(e.to_string()))?;
    }
    match cli.command {
        Command::Check(args) => run_check(&args),
        Command::Publish(args) => {
            let run = publish::run(&args);
            measure(args.json, &args.plot, run, publish::table, publish::chart).await?;
            Ok(())
        }
        Command::Latency(args) => {
            let run = latency::run(&args);
            measure(args.json, &args.plot, run, latency::table, latency::chart).await?;
            Ok(())
        }
        Command::Fanout(args) => {
            let run = fanout::run(&args);
            let run = measure(args.json, &args.plot, run, fanout::table, fanout::chart).await?;
            fanout::verdict(&run.report)
        }
        Command::Pingpong(args) => {
            let run = pingpong::run(&args);
            measure(args.json, &args.plot, run, pingpong::table, pingpong::chart).await?;
            Ok(())
        }
        Command::Sweep(args) => {
            let run = sweep::run(&args);
            measure(args.json, &args.plot, run, sweep::table, sweep::chart).await?;
            Ok(())
        }
        Command::Queue(args) => {
            let run = queue::run(&args);
            measure(args.json, &args.plot, run, queue::table, queue::chart).await?;
            Ok(())
        }
        Command::Failover(args) => {
            let run = failover::run(&args);
            let run = measure(args.json, &args.plot, run, failover::table, failover::chart).await?;
            check_verdict(&run.report.check)
        }
    }
}

fn run_check(args: &CheckArgs) -> Result<(), Error> {
    let logs = check::read_logs(&args.files)?;
    let report = check::analyse(&logs);
    print_report(args.json, &report, check::table);
    check_verdict(&report)
}

/// Fails when the delivery check finds anything lost, duplicated or changed.
fn check_verdict(report: &CheckReport) -> Result<(), Error> {
    let problems = check::problems(report);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "delivery check failed: {}",
            problems.join("; ")
        )))
    }
}

/// Runs a benchmark, prints its report, then draws its chart into the
/// `--plot` file, if one was given; returns the run. The file is checked
/// before the run, so that a typo wastes no run.
async fn measure<R: serde::Serialize, S, E: Into<Error>>(
    json: bool,
    plot: &plot::PlotArgs,
    run: impl Future<Output = Result<Measured<R, S>, E>>,
    table: fn(&R) -> String,
    chart: fn(&Measured<R, S>) -> plot::LineChart,
) -> Result<Measured<R, S>, Error> {
    let plot = plot.file()?;
    let run = run.await.map_err(Into::into)?;
    print_report(json, &run.report, table);
    if let Some(file) = plot {
        chart(&run).draw(&file)?;
    }
    Ok(run)
}

/// Prints `report` on stdout as one JSON object or as `table` makes it.
fn print_report<R: serde::Serialize>(json: bool, report: &R, table: fn(&R) -> String) {
    if json {
        let json = serde_json::to_string(report).expect("plain strings and numbers serialize");
        println!("{json}");
    } else {
        print!("{}", table(report));
    }
}

/// A payload of `bytes` bytes (more if the number needs them): `number`
/// (a send time, a sequence number), a colon, then padding.
pub fn numbered_payload(number: impl std::fmt::Display, bytes: usize) -> String {
    let number = format!("{number}:");
    let padding = "x".repeat(bytes.saturating_sub(number.len()));
    number + &padding
}

/// The number a [`numbered_payload`] carries.
pub fn number_in<T: std::str::FromStr>(payload: &str) -> Option<T> {
    payload.split_once(':')?.0.parse().ok()
}

/// A name no earlier run used, for the benchmark's publisher, topic and
/// subscriber: `bench-<pid>-<unix ms>`.
pub fn unique_name() -> String {
    format!("bench-{}-{}", std::process::id(), unix_ms())
}

/// Registers a publisher and creates a topic of its name, both named
/// [`unique_name`], so that a run starts from an empty topic; returns the
/// name.
pub async fn fresh_topic(client: &Client) -> Result<String, ClientError> {
    let name = unique_name();
    client.register_publisher(&name).await?;
    client.create_topic(&name, &name).await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_number_and_have_the_size_asked() {
        let payload = numbered_payload(1_763_740_800_123_456_i64, 100);
        assert_eq!(payload.len(), 100);
        assert!(payload.starts_with("1763740800123456:xx"), "{payload}");
        assert_eq!(number_in(&payload), Some(1_763_740_800_123_456_i64));
        assert_eq!(numbered_payload(42, 1), "42:");
        assert_eq!(number_in::<i64>("no stamp"), None);
        let p = numbered_payload(12_345_u64, 200);
        assert_eq!(p.len(), 200);
        assert!(p.starts_with("12345:xx"), "{p}");
        assert_eq!(number_in(&p), Some(12_345_u64));
        assert_eq!(number_in::<u64>("no number"), None);
    }

    #[test]
    fn addresses_are_host_and_port() {
        let address = parse_host_port("127.0.0.1:7002").unwrap();
        assert_eq!(address.to_string(), "127.0.0.1:7002");
        let ipv6 = parse_host_port("[::1]:80").unwrap();
        assert_eq!((ipv6.host.as_str(), ipv6.port), ("[::1]", 80));
        for wrong in ["localhost", ":80", "h:0", "h:port", "h:70000"] {
            assert!(parse_host_port(wrong).is_err(), "{wrong}");
        }
    }
}
